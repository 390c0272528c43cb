//! The integration test binary: in-process tests through `larkstack::app(state)`, and black-box
//! tests that spawn the real binary on port 0 with a fresh data dir.

mod support;

mod apaas;
mod architecture;
mod auth;
mod console;
mod control;
mod create_chat;
mod delivery_store;
mod durability;
mod errors;
mod events;
mod feishu_events;
mod fuzz_regressions;
mod hardening;
mod idempotency;
mod lifecycle;
mod members;
mod messages;
mod multinode;
mod openapi;
mod ratelimit;
mod tenancy;
mod transport;
mod storage;
mod webhooks;
mod wire;
