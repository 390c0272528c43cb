//! The integration test binary: in-process tests through `larkstack::app(state)`, and black-box
//! tests that spawn the real binary on port 0 with a fresh data dir.

mod support;

mod apaas;
mod app_tickets;
mod architecture;
mod auth;
mod bot;
mod card_actions;
mod console;
mod contacts;
mod control;
mod create_chat;
mod custom_bots;
mod delivery_store;
mod durability;
mod errors;
mod events;
mod feishu_events;
mod fuzz_regressions;
mod hardening;
mod invitations;
mod idempotency;
mod lifecycle;
mod media;
mod longconn;
mod members;
mod message_ops;
mod messages;
mod multinode;
mod openapi;
mod ratelimit;
mod reactions;
mod tenancy;
mod transport;
mod user_adds_bot;
mod storage;
mod webhooks;
mod wire;
