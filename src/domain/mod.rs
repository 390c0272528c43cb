//! Pure rules: identifiers, the directory, chat validation. No I/O.

pub mod chat;
pub mod directory;
pub mod ids;
