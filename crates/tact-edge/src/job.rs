//! What a processor provides to run on the edge: its fold over records, the writes it wants, and
//! how to rebuild what it derives from restored state.

use crate::outbox::{OutRecord, OutboxEntry};
use tact_kafka::Kind;
use tact_store::{Commit, Partition, Purge, StateEntries, StateStore, StoreError};

/// Which of the edge's inputs a record came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Input {
    /// The topic whose partitions the consumer group assigns (each instance owns some).
    Driving,
    /// The n-th topic co-partitioned with the driving one: partition p goes where the driving
    /// topic's partition p goes.
    Co(u8),
    /// The topic every instance reads in full.
    Global,
}

/// One consumed record.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Record {
    pub input: Input,
    pub partition: i32,
    pub offset: i64,
    pub key: Option<Vec<u8>>,
    pub value: Option<Vec<u8>>,
}

/// What one call of the job asks the edge to write and send, all in one store commit.
#[derive(Debug, Default)]
pub struct Emit {
    /// The job's own writes: `state` and `meta` puts and deletes are also written to the
    /// partition's changelog; timers and indexes stay local.
    pub commit: Commit,
    /// Records to produce, each under the input partition it belongs to.
    pub outputs: Vec<(Partition, OutRecord)>,
    /// The last offset applied per (partition, input); committed once everything is delivered.
    pub applied: Vec<(Partition, Input, i64)>,
    /// Outbox records of earlier calls to drop unsent (an erasure).
    pub withdraw: Vec<(Partition, u64)>,
    /// What to make physically gone from the files after the commit.
    pub purge: Vec<Purge>,
}

impl Emit {
    pub fn is_empty(&self) -> bool {
        self.commit.is_empty()
            && self.outputs.is_empty()
            && self.applied.is_empty()
            && self.withdraw.is_empty()
            && self.purge.is_empty()
    }
}

/// A record still in the outbox, as a job sees it (to withdraw an erased customer's).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Pending {
    pub seq: u64,
    pub kind: Kind,
    pub topic: String,
    pub key: Vec<u8>,
}

/// What a job may read while it works.
pub struct Cx<'a> {
    pub store: &'a dyn StateStore,
    /// Partitions open here (their state is ready), ascending.
    pub partitions: &'a [Partition],
    /// How many partitions the driving topic has (and every co-partitioned topic, and the
    /// changelog).
    pub partition_count: i32,
}

impl std::fmt::Debug for Cx<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Cx")
            .field("partitions", &self.partitions)
            .field("partition_count", &self.partition_count)
            .finish()
    }
}

impl Cx<'_> {
    /// Records of partition `p` written and not yet known to be delivered (in sequence order).
    pub fn pending(&self, p: Partition) -> Result<Vec<Pending>, StoreError> {
        let mut out = Vec::new();
        for (seq, bytes) in self.store.outbox(p)? {
            let entry = OutboxEntry::decode(&bytes).ok_or_else(|| {
                StoreError::Fatal(format!("outbox entry {seq} of partition {p} is corrupt"))
            })?;
            out.push(Pending {
                seq,
                kind: entry.kind,
                topic: entry.record.topic,
                key: entry.record.key,
            });
        }
        Ok(out)
    }
}

/// The largest record each output topic takes: the producer's `message.max.bytes`, lowered to
/// a topic's `max.message.bytes` where the broker reports one (known at start).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RecordLimits {
    pub producer: usize,
    pub topics: std::collections::BTreeMap<String, usize>,
}

impl RecordLimits {
    /// The limit for records to `topic`.
    pub fn of(&self, topic: &str) -> usize {
        self.topics
            .get(topic)
            .map_or(self.producer, |t| (*t).min(self.producer))
    }
}

impl Default for RecordLimits {
    fn default() -> Self {
        RecordLimits {
            producer: tact_kafka::DEFAULT_MESSAGE_MAX_BYTES,
            topics: std::collections::BTreeMap::new(),
        }
    }
}

/// A job failed; the edge stops cleanly (the store holds everything committed so far).
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct JobError(pub String);

impl From<StoreError> for JobError {
    fn from(e: StoreError) -> Self {
        JobError(e.to_string())
    }
}

/// A processor on the edge. Calls come from one thread, in order; every call's [`Emit`] is
/// committed before the next call. A job keeps nothing in memory that the store cannot give back:
/// after [`Job::open`] it must behave as if it had never stopped.
pub trait Job: Send + 'static {
    /// What the producer and the output topics accept, learned at start before any call below.
    /// A job whose records could not fit refuses to start.
    fn limits(&mut self, _limits: &RecordLimits) -> Result<(), JobError> {
        Ok(())
    }
    /// Partition `p`'s data is ready in the store (restored, or current already): load what the
    /// job keeps in memory for it.
    fn open(&mut self, cx: &Cx<'_>, p: Partition) -> Result<(), JobError>;

    /// Partition `p` is no longer this instance's: forget it (caches, held records).
    fn close(&mut self, p: Partition);

    /// Applies records of open partitions, in the order consumed. Records at or below the
    /// applied offset have been skipped already. Records the job holds back (e.g. to interleave
    /// two inputs) are not reported as applied and are re-read after a crash.
    fn process(&mut self, cx: &Cx<'_>, records: Vec<Record>) -> Result<Emit, JobError>;

    /// Records the job holds back without applying them yet (the edge calls [`Job::process`]
    /// again, with no new records, while there are any, so they go when their time comes).
    fn held(&self) -> usize {
        0
    }

    /// One record of the global input. Returns whether the job is done with it; if not, the
    /// edge commits the emit and calls again with the same record (bounded work per commit).
    fn process_global(&mut self, cx: &Cx<'_>, record: &Record) -> Result<(Emit, bool), JobError> {
        let _ = (cx, record);
        Ok((Emit::default(), true))
    }

    /// Where partition `p` needs the global input's partition `global` read from (the next
    /// offset it has not applied; `None`: from the beginning).
    fn global_position(
        &self,
        store: &dyn StateStore,
        p: Partition,
        global: i32,
    ) -> Result<Option<i64>, JobError> {
        let _ = (store, p, global);
        Ok(None)
    }

    /// No input arrived for the configured idle time (wall-clock work such as timers).
    fn idle(&mut self, cx: &Cx<'_>, now_ms: i64) -> Result<Emit, JobError> {
        let _ = (cx, now_ms);
        Ok(Emit::default())
    }

    /// The derived writes (timers, indexes) for state restored into partition `p`, one page at a
    /// time after the restore wrote it.
    fn derive(&self, p: Partition, restored: &StateEntries) -> Result<Commit, JobError>;
}
