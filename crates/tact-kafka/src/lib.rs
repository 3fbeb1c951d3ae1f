//! tact-kafka: the Kafka edge.
//!
//! Owns librdkafka configuration (user settings first, safety-critical keys last so they cannot
//! be overridden by accident), the consumer and producer contexts, and [`OffsetTracker`], which
//! keeps the invariant that an input offset is committed only after every record produced from it
//! and from every earlier batch has been acknowledged by the broker.

mod client;
mod tracker;

pub use client::{
    consumer_config, producer_config, ConsumerHooks, Delivery, DeliveryContext, TactConsumerContext,
};
pub use rdkafka;
pub use tracker::OffsetTracker;
