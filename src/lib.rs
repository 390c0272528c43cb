//! larkstack: a Feishu/Lark Open Platform–compatible server for group chats.

pub mod api;
pub mod clock;
pub mod cluster;
pub mod control;
pub mod delivery;
pub mod domain;
pub mod envelope;
pub mod error;
pub mod faults;
pub mod journal;
pub mod longconn;
pub mod metrics;
pub mod openapi;
pub mod ratelimit;
pub mod secrets;
pub mod server;
pub mod state;
pub mod store;
pub mod transport;

pub use server::app;
