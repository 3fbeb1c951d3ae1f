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

/// (key, value) pairs of the secondary index.
pub type IndexEntries = Vec<(Vec<u8>, Vec<u8>)>;

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
    /// Durable timers to add and remove.
    pub timer_puts: Vec<Timer>,
    pub timer_deletes: Vec<Timer>,
    /// Small named values (e.g. the event-time watermark).
    pub meta_puts: Vec<(String, i64)>,
    /// Secondary index entries (e.g. who follows whom) and progress markers, by opaque key.
    pub index_puts: Vec<(Vec<u8>, Vec<u8>)>,
    pub index_deletes: Vec<Vec<u8>>,
}

impl Commit {
    pub fn is_empty(&self) -> bool {
        self.state_puts.is_empty()
            && self.state_deletes.is_empty()
            && self.offsets.is_empty()
            && self.outbox_puts.is_empty()
            && self.outbox_deletes.is_empty()
            && self.timer_puts.is_empty()
            && self.timer_deletes.is_empty()
            && self.meta_puts.is_empty()
            && self.index_puts.is_empty()
            && self.index_deletes.is_empty()
    }
}

/// A durable timer: `key` (a customer) needs attention at event time `due` on input `partition`.
/// Timers are ordered by partition, then due time, then key.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Timer {
    pub partition: i32,
    pub due: i64,
    pub key: Vec<u8>,
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

    /// Timers of `partition` due in `from..=until`, earliest first, at most `limit`. Bounded on
    /// both sides so a scan never walks deleted entries outside the range.
    fn timers_in(
        &self,
        partition: i32,
        from: i64,
        until: i64,
        limit: usize,
    ) -> Result<Vec<Timer>, StoreError>;

    /// A named value written with `meta_puts`.
    fn meta(&self, name: &str) -> Result<Option<i64>, StoreError>;

    /// Index entries whose key starts with `prefix` and sorts after `after` (all of them when
    /// `None`), in key order, at most `limit`.
    fn index_scan(
        &self,
        prefix: &[u8],
        after: Option<&[u8]>,
        limit: usize,
    ) -> Result<IndexEntries, StoreError>;

    /// Approximate bytes on disk (0 for the in-memory store).
    fn size_bytes(&self) -> u64;

    /// Makes an erasure of `key` real on disk: its deleted state, its timer entries and any
    /// acknowledged outbox records leave the files (and the write-ahead log). Returns whether
    /// files were rewritten (false for a store without files).
    /// `None` purges every customer's deleted values (after a crash interrupted a purge).
    fn purge(&self, key: Option<&[u8]>) -> Result<bool, StoreError>;
}

/// Shared ownership: the pipeline writes through one handle while read-only views (the admin
/// endpoint) read through another.
impl<T: StateStore + Sync> StateStore for std::sync::Arc<T> {
    fn multi_get(&self, keys: &[&[u8]]) -> Result<Vec<Option<Vec<u8>>>, StoreError> {
        (**self).multi_get(keys)
    }
    fn applied_offset(&self, topic: &str, partition: i32) -> Result<Option<i64>, StoreError> {
        (**self).applied_offset(topic, partition)
    }
    fn commit(&self, commit: &Commit) -> Result<(), StoreError> {
        (**self).commit(commit)
    }
    fn pending_outbox(&self) -> Result<Vec<(u64, Vec<u8>)>, StoreError> {
        (**self).pending_outbox()
    }
    fn next_outbox_seq(&self) -> Result<u64, StoreError> {
        (**self).next_outbox_seq()
    }
    fn sync(&self) -> Result<(), StoreError> {
        (**self).sync()
    }
    fn timers_in(
        &self,
        partition: i32,
        from: i64,
        until: i64,
        limit: usize,
    ) -> Result<Vec<Timer>, StoreError> {
        (**self).timers_in(partition, from, until, limit)
    }
    fn meta(&self, name: &str) -> Result<Option<i64>, StoreError> {
        (**self).meta(name)
    }
    fn index_scan(
        &self,
        prefix: &[u8],
        after: Option<&[u8]>,
        limit: usize,
    ) -> Result<IndexEntries, StoreError> {
        (**self).index_scan(prefix, after, limit)
    }
    fn size_bytes(&self) -> u64 {
        (**self).size_bytes()
    }
    fn purge(&self, key: Option<&[u8]>) -> Result<bool, StoreError> {
        (**self).purge(key)
    }
}

/// Timer keys sort by partition, then due time: flipping the sign bit makes big-endian bytes
/// order like the signed numbers.
fn timer_prefix(partition: i32, due: i64) -> Vec<u8> {
    let mut out = Vec::with_capacity(12);
    out.extend_from_slice(&((partition as u32) ^ (1 << 31)).to_be_bytes());
    out.extend_from_slice(&((due as u64) ^ (1 << 63)).to_be_bytes());
    out
}

fn timer_key(t: &Timer) -> Vec<u8> {
    let mut out = timer_prefix(t.partition, t.due);
    out.extend_from_slice(&t.key);
    out
}

fn parse_timer_key(raw: &[u8]) -> Option<Timer> {
    let (partition, rest) = raw.split_first_chunk::<4>()?;
    let (due, key) = rest.split_first_chunk::<8>()?;
    Some(Timer {
        partition: (u32::from_be_bytes(*partition) ^ (1 << 31)) as i32,
        due: (u64::from_be_bytes(*due) ^ (1 << 63)) as i64,
        key: key.to_vec(),
    })
}

fn meta_key(name: &str) -> Vec<u8> {
    format!("meta/{name}").into_bytes()
}

fn offset_key(topic: &str, partition: i32) -> Vec<u8> {
    let mut key = Vec::with_capacity(topic.len() + 6);
    key.extend_from_slice(b"applied/");
    key.extend_from_slice(topic.as_bytes());
    key.push(0);
    key.extend_from_slice(&partition.to_be_bytes());
    key
}
