//! Pure rules: identifiers, the directory, chat validation. No I/O.

pub mod apaas;
pub mod chat;
pub mod chat_ops;
pub mod directory;
pub mod events;
pub mod ids;
pub mod message;
