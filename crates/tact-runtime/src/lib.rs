//! tact-runtime: the decision pipeline between the process and the pure core.
//!
//! Owns validated settings ([`config`]), the pipeline job that runs on the stateful edge
//! ([`pipeline`]: decode once, interleave the two inputs in event time, fold through the core,
//! timers, releases, erasure), its service wiring ([`service`]), "what do you know about me"
//! ([`inspect`]) and the synthetic clickstream ([`generator`], [`feed`]). Invariant: nothing here
//! talks to Kafka or commits on its own; the edge does, so an input offset is committed only
//! after the state it produced, and every record produced from it, are durable.

pub mod config;
pub mod feed;
pub mod generator;
pub mod inspect;
pub mod pipeline;
pub mod service;

pub use pipeline::RunSummary;
