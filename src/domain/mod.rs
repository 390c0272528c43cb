//! Pure rules: identifiers, the directory, chat validation. No I/O.

pub mod apaas;
pub mod cards;
pub mod chat;
pub mod chat_ops;
pub mod contacts;
pub mod custom_bots;
pub mod directory;
pub mod events;
pub mod feishu_events;
pub mod ids;
pub mod media;
pub mod message;
pub mod reaction;
pub mod subscriptions;

/// A query enum's value by its wire name, which is its serde name: `None` for any other string.
/// The same enum derives the OpenAPI schema, so the document lists exactly what is accepted.
pub fn wire_name<T: serde::de::DeserializeOwned>(s: &str) -> Option<T> {
    T::deserialize(serde::de::value::StrDeserializer::<serde::de::value::Error>::new(s)).ok()
}
