//! tact-runtime: everything between the process and the pure core.
//!
//! Owns validated settings, the pipeline loop (consume, decode, skip applied offsets, fold, one
//! atomic store commit, produce from the outbox, commit offsets in order after delivery),
//! backpressure, drain and shutdown, and the synthetic clickstream generator. Invariant: an input
//! offset is committed to Kafka only after the state it produced and its outgoing records are in
//! the store, and every outgoing record is acknowledged by the broker.

pub mod config;
pub mod demo;
pub mod engine;
pub mod feed;
pub mod generator;
pub mod inspect;
pub mod interleave;
pub mod outbox;
pub mod pipeline;
