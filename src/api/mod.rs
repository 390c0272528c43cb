//! HTTP handlers, one module per Feishu API family. Handlers are thin: parse → domain → store → answer.

pub mod apaas;
pub mod auth;
pub mod extract;
pub mod im;
pub mod longconn;
