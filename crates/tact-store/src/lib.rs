//! tact-store: where per-customer state, applied input offsets and the outbox live.
//!
//! Invariant: a [`Commit`] is atomic. The next state of every customer in a batch, the offset of
//! the last input applied per partition, and the outgoing records produced from that batch are
//! written together or not at all, so after any crash the store is at a batch boundary: replaying
//! input at or below `applied_offset` is skipped, and the outbox holds exactly what was decided but
//! not yet acknowledged by the broker. Values are opaque bytes; this crate knows no event types.

mod memory;
mod rocks;

pub mod conformance;

pub use memory::MemoryStore;
pub use rocks::{RocksOptions, RocksStore};

/// One atomic write: state changes, applied offsets and outbox changes.
#[derive(Debug, Default, Clone, PartialEq)]
pub struct Commit {
    pub state_puts: Vec<(Vec<u8>, Vec<u8>)>,
    pub state_deletes: Vec<Vec<u8>>,
    /// (topic, partition, offset of the last record applied).
    pub offsets: Vec<(String, i32, i64)>,
    /// (sequence number, record); sequence numbers only grow.
    pub outbox_puts: Vec<(u64, Vec<u8>)>,
    pub outbox_deletes: Vec<u64>,
}

impl Commit {
    pub fn is_empty(&self) -> bool {
        self.state_puts.is_empty()
            && self.state_deletes.is_empty()
            && self.offsets.is_empty()
            && self.outbox_puts.is_empty()
            && self.outbox_deletes.is_empty()
    }
}

/// A store failure, classified by what the caller should do.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// Retry after a pause (e.g. a write stall).
    #[error("state store busy, retry: {0}")]
    Transient(String),
    /// Stop cleanly; the operator must look (disk full, corruption, wrong directory).
    #[error("state store failed: {0}")]
    Fatal(String),
}

/// The storage the pipeline needs. Implementations must pass [`conformance::run_all`].
pub trait StateStore: Send {
    /// Current values of `keys` in the state keyspace, in the same order.
    fn multi_get(&self, keys: &[&[u8]]) -> Result<Vec<Option<Vec<u8>>>, StoreError>;

    /// The offset of the last record applied from `topic`/`partition`, if any.
    fn applied_offset(&self, topic: &str, partition: i32) -> Result<Option<i64>, StoreError>;

    /// Writes `commit` atomically.
    fn commit(&self, commit: &Commit) -> Result<(), StoreError>;

    /// Every outbox record not yet deleted, in sequence order.
    fn pending_outbox(&self) -> Result<Vec<(u64, Vec<u8>)>, StoreError>;

    /// One past the highest outbox sequence number ever written and still present (0 if none).
    fn next_outbox_seq(&self) -> Result<u64, StoreError>;

    /// Makes every commit so far survive power loss (not only a process crash).
    fn sync(&self) -> Result<(), StoreError>;

    /// Approximate bytes on disk (0 for the in-memory store).
    fn size_bytes(&self) -> u64;

    /// Rewrites the state range `[from, to)` so deleted values leave the files.
    fn compact_state_range(&self, from: &[u8], to: &[u8]) -> Result<(), StoreError>;
}

fn offset_key(topic: &str, partition: i32) -> Vec<u8> {
    let mut key = Vec::with_capacity(topic.len() + 6);
    key.extend_from_slice(b"applied/");
    key.extend_from_slice(topic.as_bytes());
    key.push(0);
    key.extend_from_slice(&partition.to_be_bytes());
    key
}
