//! tact-kafka: the Kafka-only parts of the edge.
//!
//! Owns librdkafka configuration (user settings first, safety-critical keys last so they cannot
//! be overridden by accident), the delivery callback, topic administration (what `tact topics
//! create` creates and what a start checks), and [`Relay`], the pure bookkeeping that keeps the
//! order outputs → changelog data → changelog meta → committed input offset. No RocksDB and no
//! decision logic here.

pub mod admin;
mod client;
mod properties;
mod relay;

pub use client::{
    consumer_config, max_message_bytes, producer_config, refused_as_too_large, Delivery,
    DeliveryContext, DeliveryError, Membership, DEFAULT_MESSAGE_MAX_BYTES, MANAGED_KEYS,
};
pub use properties::{check_bootstrap, check_client, is_sensitive, shown};
pub use rdkafka;
pub use relay::{Kind, Relay};
