//! tact-edge: the one stateful Kafka edge every processor (the decision pipeline, the insights
//! lane) plugs into as a [`Job`].
//!
//! Owns: the consumer group membership (cooperative-sticky, optionally static), the
//! co-partitioned and global inputs, each partition's lifecycle (assigned → restoring → active →
//! revoked), restore from the changelog, the one store commit per job call, the outbox relay and
//! the in-order offset commits, and the process's drain.
//!
//! Invariants:
//! * A job call's state, applied offsets and outgoing records (outputs and changelog records)
//!   are in one store commit before anything is sent.
//! * Per partition, outputs are acknowledged before the changelog records of their batch, and
//!   those before the batch's applied offsets are written to the changelog and its input offsets
//!   committed to Kafka: whoever restores a partition from its changelog re-applies exactly the
//!   input whose effects it lacks, and never misses an output.
//! * A partition is processed only once its state is here: restored from the changelog up to a
//!   marker written after its assignment, or shown current by a checkpoint and the changelog's
//!   own records since. An instance never treats a partition it has no state for as new.
//! * A revoked partition's data leaves this store (its next owner has the changelog), and is
//!   purged from the files on a thread of its own; a purge cut short is redone at the next start.
//! * Changelog records carry their writer's tenure; a restore never applies a record written
//!   after its writer had lost the partition (see `changelog`).

mod assemble;
mod changelog;
mod core;
mod edge;
pub mod failpoint;
mod job;
mod offline;
mod outbox;
mod purger;
mod settings;

pub use crate::changelog::{
    decode_key as decode_changelog_key, state_key as changelog_state_key, Entry as ChangelogEntry,
    STORE_HEADER, TENURE_HEADER,
};
pub use crate::edge::{connections_closing, Edge, GroupContext, StatsContext, Stopped};
pub use crate::job::{Cx, Emit, Input, Job, JobError, Pending, Record, RecordLimits};
pub use crate::offline::{Offline, OfflineTopics, Produced};
pub use crate::outbox::{OutRecord, OutboxEntry};
pub use crate::settings::{EdgeSettings, Topic};

/// What stops the edge, and what the operator should do about it.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum EdgeError {
    /// The configuration or the cluster is not as required (missing topic, partition counts
    /// that differ, an uncompacted changelog, an unreachable broker). Exit code 3.
    #[error("{0}")]
    Setup(String),
    /// Continuing could lose or corrupt data; stop and look. Exit code 4.
    #[error("fatal: {0}")]
    Fatal(String),
}
