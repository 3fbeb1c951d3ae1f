//! tact-store: where per-partition state, its metadata, the outbox and the local bookkeeping live.
//!
//! Invariants:
//! * A [`Commit`] is atomic. The next state of every key in a batch, the applied input offsets
//!   and the outgoing records produced from that batch are written together or not at all, so
//!   after any crash the store is at a batch boundary.
//! * Every key belongs to one input partition ([`keys`] is the one layout, and the only code that
//!   turns keys into bytes), so a partition's data can be dropped, restored and compacted alone.
//! * `state` and `meta` are what a partition's changelog replicates; `timers` and `index` are
//!   derived from the state and rebuilt on restore; `outbox` and `local` describe this store
//!   only. Values are opaque bytes: this crate knows no event types.

pub mod conformance;
pub mod keys;
mod memory;
mod rocks;

pub use keys::{
    IndexKey, IndexPrefix, LocalKey, MetaKey, Partition, StateKey, StateKind, Timer, PROCESS,
};
pub use memory::MemoryStore;
pub use rocks::{Compression, RocksOptions, RocksStore};

/// One atomic write. `drop_partitions` is applied first, so a commit can replace a partition.
#[derive(Debug, Default, Clone, PartialEq)]
pub struct Commit {
    /// Everything of these partitions goes, in every keyspace.
    pub drop_partitions: Vec<Partition>,
    pub state_puts: Vec<(Partition, StateKey, Vec<u8>)>,
    pub state_deletes: Vec<(Partition, StateKey)>,
    pub meta_puts: Vec<(Partition, MetaKey, Vec<u8>)>,
    pub local_puts: Vec<(Partition, LocalKey, Vec<u8>)>,
    pub local_deletes: Vec<(Partition, LocalKey)>,
    /// (partition, sequence number, record); sequence numbers only grow.
    pub outbox_puts: Vec<(Partition, u64, Vec<u8>)>,
    pub outbox_deletes: Vec<(Partition, u64)>,
    pub timer_puts: Vec<Timer>,
    pub timer_deletes: Vec<Timer>,
    pub index_puts: Vec<(Partition, IndexKey, Vec<u8>)>,
    pub index_deletes: Vec<(Partition, IndexKey)>,
}

impl Commit {
    pub fn is_empty(&self) -> bool {
        self.drop_partitions.is_empty()
            && self.state_puts.is_empty()
            && self.state_deletes.is_empty()
            && self.meta_puts.is_empty()
            && self.local_puts.is_empty()
            && self.local_deletes.is_empty()
            && self.outbox_puts.is_empty()
            && self.outbox_deletes.is_empty()
            && self.timer_puts.is_empty()
            && self.timer_deletes.is_empty()
            && self.index_puts.is_empty()
            && self.index_deletes.is_empty()
    }

    /// Appends `other`'s writes (after this commit's own).
    pub fn extend(&mut self, other: Commit) {
        self.drop_partitions.extend(other.drop_partitions);
        self.state_puts.extend(other.state_puts);
        self.state_deletes.extend(other.state_deletes);
        self.meta_puts.extend(other.meta_puts);
        self.local_puts.extend(other.local_puts);
        self.local_deletes.extend(other.local_deletes);
        self.outbox_puts.extend(other.outbox_puts);
        self.outbox_deletes.extend(other.outbox_deletes);
        self.timer_puts.extend(other.timer_puts);
        self.timer_deletes.extend(other.timer_deletes);
        self.index_puts.extend(other.index_puts);
        self.index_deletes.extend(other.index_deletes);
    }
}

/// What a purge makes physically gone from the files (and the write-ahead log).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Purge {
    /// One key's deleted values, and its partition's derived entries and acknowledged outbox.
    Key(Partition, StateKey),
    /// Everything deleted of one partition (after it was dropped).
    Partition(Partition),
    /// Everything deleted anywhere (after a crash interrupted a purge).
    All,
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

/// Entries of one keyspace.
pub type StateEntries = Vec<(StateKey, Vec<u8>)>;
pub type IndexEntries = Vec<(IndexKey, Vec<u8>)>;

/// The storage the edge and its jobs need. Implementations must pass [`conformance::run_all`].
pub trait StateStore: Send + Sync {
    /// Current state values of `keys`, in the same order.
    fn multi_get(
        &self,
        keys: &[(Partition, &StateKey)],
    ) -> Result<Vec<Option<Vec<u8>>>, StoreError>;

    /// State entries of `kind` in partition `p` sorting after `after` (from the first when
    /// `None`), in key order, at most `limit`.
    fn scan_state(
        &self,
        p: Partition,
        kind: StateKind,
        after: Option<&StateKey>,
        limit: usize,
    ) -> Result<StateEntries, StoreError>;

    fn meta(&self, p: Partition, key: &MetaKey) -> Result<Option<Vec<u8>>, StoreError>;

    /// Every metadata entry of partition `p`.
    fn metas(&self, p: Partition) -> Result<Vec<(MetaKey, Vec<u8>)>, StoreError>;

    fn local(&self, p: Partition, key: LocalKey) -> Result<Option<Vec<u8>>, StoreError>;

    /// Writes `commit` atomically.
    fn commit(&self, commit: &Commit) -> Result<(), StoreError>;

    /// Outbox records of partition `p` not yet deleted, in sequence order.
    fn outbox(&self, p: Partition) -> Result<Vec<(u64, Vec<u8>)>, StoreError>;

    /// Partitions (not [`PROCESS`]) holding anything in any keyspace, ascending.
    fn partitions(&self) -> Result<Vec<Partition>, StoreError>;

    /// Timers of `partition` due in `from..=until`, earliest first, at most `limit`. Bounded on
    /// both sides so a scan never walks deleted entries outside the range.
    fn timers_in(
        &self,
        partition: Partition,
        from: i64,
        until: i64,
        limit: usize,
    ) -> Result<Vec<Timer>, StoreError>;

    /// Index entries of partition `p` under `prefix` sorting after `after` (all when `None`), in
    /// key order, at most `limit`.
    fn index_scan(
        &self,
        p: Partition,
        prefix: &IndexPrefix,
        after: Option<&IndexKey>,
        limit: usize,
    ) -> Result<IndexEntries, StoreError>;

    /// Makes every commit so far survive power loss (not only a process crash).
    fn sync(&self) -> Result<(), StoreError>;

    /// Approximate bytes on disk (0 for the in-memory store).
    fn size_bytes(&self) -> u64;

    /// Makes deleted values physically gone from the files. Returns whether files were rewritten
    /// (false for a store without files).
    fn purge(&self, what: &Purge) -> Result<bool, StoreError>;
}

/// Shared ownership: the pipeline writes through one handle while read-only views (the admin
/// endpoint) read through another.
impl<T: StateStore> StateStore for std::sync::Arc<T> {
    fn multi_get(
        &self,
        keys: &[(Partition, &StateKey)],
    ) -> Result<Vec<Option<Vec<u8>>>, StoreError> {
        (**self).multi_get(keys)
    }
    fn scan_state(
        &self,
        p: Partition,
        kind: StateKind,
        after: Option<&StateKey>,
        limit: usize,
    ) -> Result<StateEntries, StoreError> {
        (**self).scan_state(p, kind, after, limit)
    }
    fn meta(&self, p: Partition, key: &MetaKey) -> Result<Option<Vec<u8>>, StoreError> {
        (**self).meta(p, key)
    }
    fn metas(&self, p: Partition) -> Result<Vec<(MetaKey, Vec<u8>)>, StoreError> {
        (**self).metas(p)
    }
    fn local(&self, p: Partition, key: LocalKey) -> Result<Option<Vec<u8>>, StoreError> {
        (**self).local(p, key)
    }
    fn commit(&self, commit: &Commit) -> Result<(), StoreError> {
        (**self).commit(commit)
    }
    fn outbox(&self, p: Partition) -> Result<Vec<(u64, Vec<u8>)>, StoreError> {
        (**self).outbox(p)
    }
    fn partitions(&self) -> Result<Vec<Partition>, StoreError> {
        (**self).partitions()
    }
    fn timers_in(
        &self,
        partition: Partition,
        from: i64,
        until: i64,
        limit: usize,
    ) -> Result<Vec<Timer>, StoreError> {
        (**self).timers_in(partition, from, until, limit)
    }
    fn index_scan(
        &self,
        p: Partition,
        prefix: &IndexPrefix,
        after: Option<&IndexKey>,
        limit: usize,
    ) -> Result<IndexEntries, StoreError> {
        (**self).index_scan(p, prefix, after, limit)
    }
    fn sync(&self) -> Result<(), StoreError> {
        (**self).sync()
    }
    fn size_bytes(&self) -> u64 {
        (**self).size_bytes()
    }
    fn purge(&self, what: &Purge) -> Result<bool, StoreError> {
        (**self).purge(what)
    }
}

/// An `i64` value as stored (big-endian).
pub fn encode_i64(v: i64) -> Vec<u8> {
    v.to_be_bytes().to_vec()
}

/// The `i64` stored by [`encode_i64`] (`None` if the bytes are not one).
pub fn decode_i64(bytes: &[u8]) -> Option<i64> {
    <[u8; 8]>::try_from(bytes).ok().map(i64::from_be_bytes)
}

/// Runs `op` until it stops reporting [`StoreError::Transient`]: exponential back-off (from 20 ms,
/// capped at 1 s, at most `max_attempts` tries), giving up early once `stop()` says the process is
/// stopping (the last error is returned then). The one retry rule for store writes.
pub fn with_retry<T>(
    max_attempts: usize,
    stop: &dyn Fn() -> bool,
    mut op: impl FnMut() -> Result<T, StoreError>,
) -> Result<T, StoreError> {
    use backon::BackoffBuilder;
    let mut delays = backon::ExponentialBuilder::default()
        .with_min_delay(std::time::Duration::from_millis(20))
        .with_max_delay(std::time::Duration::from_secs(1))
        .with_max_times(max_attempts.saturating_sub(1))
        .build();
    loop {
        match op() {
            Err(StoreError::Transient(e)) if !stop() => match delays.next() {
                Some(pause) => {
                    tracing::warn!(error = %e, retry_in = ?pause, "state store busy; retrying");
                    std::thread::sleep(pause);
                }
                None => return Err(StoreError::Transient(e)),
            },
            other => return other,
        }
    }
}

/// A store whose every call retries while the store reports [`StoreError::Transient`] (see
/// [`with_retry`]), so a busy disk slows a job down instead of stopping it. Fatal errors and a
/// stopping process (`stop()`) end the retries.
pub struct Retrying<'a> {
    pub inner: &'a dyn StateStore,
    pub attempts: usize,
    pub stop: &'a (dyn Fn() -> bool + Sync),
}

impl std::fmt::Debug for Retrying<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Retrying")
            .field("attempts", &self.attempts)
            .finish_non_exhaustive()
    }
}

impl Retrying<'_> {
    fn retry<T>(&self, op: impl FnMut() -> Result<T, StoreError>) -> Result<T, StoreError> {
        with_retry(self.attempts, &|| (self.stop)(), op)
    }
}

impl StateStore for Retrying<'_> {
    fn multi_get(
        &self,
        keys: &[(Partition, &StateKey)],
    ) -> Result<Vec<Option<Vec<u8>>>, StoreError> {
        self.retry(|| self.inner.multi_get(keys))
    }
    fn scan_state(
        &self,
        p: Partition,
        kind: StateKind,
        after: Option<&StateKey>,
        limit: usize,
    ) -> Result<StateEntries, StoreError> {
        self.retry(|| self.inner.scan_state(p, kind, after, limit))
    }
    fn meta(&self, p: Partition, key: &MetaKey) -> Result<Option<Vec<u8>>, StoreError> {
        self.retry(|| self.inner.meta(p, key))
    }
    fn metas(&self, p: Partition) -> Result<Vec<(MetaKey, Vec<u8>)>, StoreError> {
        self.retry(|| self.inner.metas(p))
    }
    fn local(&self, p: Partition, key: LocalKey) -> Result<Option<Vec<u8>>, StoreError> {
        self.retry(|| self.inner.local(p, key))
    }
    fn commit(&self, commit: &Commit) -> Result<(), StoreError> {
        self.retry(|| self.inner.commit(commit))
    }
    fn outbox(&self, p: Partition) -> Result<Vec<(u64, Vec<u8>)>, StoreError> {
        self.retry(|| self.inner.outbox(p))
    }
    fn partitions(&self) -> Result<Vec<Partition>, StoreError> {
        self.retry(|| self.inner.partitions())
    }
    fn timers_in(
        &self,
        partition: Partition,
        from: i64,
        until: i64,
        limit: usize,
    ) -> Result<Vec<Timer>, StoreError> {
        self.retry(|| self.inner.timers_in(partition, from, until, limit))
    }
    fn index_scan(
        &self,
        p: Partition,
        prefix: &IndexPrefix,
        after: Option<&IndexKey>,
        limit: usize,
    ) -> Result<IndexEntries, StoreError> {
        self.retry(|| self.inner.index_scan(p, prefix, after, limit))
    }
    fn sync(&self) -> Result<(), StoreError> {
        self.retry(|| self.inner.sync())
    }
    fn size_bytes(&self) -> u64 {
        self.inner.size_bytes()
    }
    fn purge(&self, what: &Purge) -> Result<bool, StoreError> {
        self.retry(|| self.inner.purge(what))
    }
}

#[cfg(test)]
mod retry_tests {
    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering};

    /// Busy for the first `busy` calls of `meta`, then fine.
    struct Flaky {
        inner: MemoryStore,
        busy: AtomicUsize,
    }

    impl StateStore for Flaky {
        fn multi_get(
            &self,
            keys: &[(Partition, &StateKey)],
        ) -> Result<Vec<Option<Vec<u8>>>, StoreError> {
            self.inner.multi_get(keys)
        }
        fn scan_state(
            &self,
            p: Partition,
            k: StateKind,
            a: Option<&StateKey>,
            l: usize,
        ) -> Result<StateEntries, StoreError> {
            self.inner.scan_state(p, k, a, l)
        }
        fn meta(&self, p: Partition, key: &MetaKey) -> Result<Option<Vec<u8>>, StoreError> {
            if self.busy.load(Ordering::Relaxed) > 0 {
                self.busy.fetch_sub(1, Ordering::Relaxed);
                return Err(StoreError::Transient("write stall".into()));
            }
            self.inner.meta(p, key)
        }
        fn metas(&self, p: Partition) -> Result<Vec<(MetaKey, Vec<u8>)>, StoreError> {
            self.inner.metas(p)
        }
        fn local(&self, p: Partition, key: LocalKey) -> Result<Option<Vec<u8>>, StoreError> {
            self.inner.local(p, key)
        }
        fn commit(&self, c: &Commit) -> Result<(), StoreError> {
            self.inner.commit(c)
        }
        fn outbox(&self, p: Partition) -> Result<Vec<(u64, Vec<u8>)>, StoreError> {
            self.inner.outbox(p)
        }
        fn partitions(&self) -> Result<Vec<Partition>, StoreError> {
            self.inner.partitions()
        }
        fn timers_in(
            &self,
            p: Partition,
            f: i64,
            u: i64,
            l: usize,
        ) -> Result<Vec<Timer>, StoreError> {
            self.inner.timers_in(p, f, u, l)
        }
        fn index_scan(
            &self,
            p: Partition,
            x: &IndexPrefix,
            a: Option<&IndexKey>,
            l: usize,
        ) -> Result<IndexEntries, StoreError> {
            self.inner.index_scan(p, x, a, l)
        }
        fn sync(&self) -> Result<(), StoreError> {
            self.inner.sync()
        }
        fn size_bytes(&self) -> u64 {
            0
        }
        fn purge(&self, w: &Purge) -> Result<bool, StoreError> {
            self.inner.purge(w)
        }
    }

    #[test]
    fn a_busy_store_is_waited_for_and_a_stopping_process_stops_waiting() {
        let flaky = Flaky {
            inner: MemoryStore::new(),
            busy: AtomicUsize::new(3),
        };
        let never = || false;
        let view = Retrying {
            inner: &flaky,
            attempts: 8,
            stop: &never,
        };
        assert_eq!(view.meta(0, &MetaKey::Watermark).expect("retried"), None);
        flaky.busy.store(100, Ordering::Relaxed);
        let stopping = || true;
        let view = Retrying {
            inner: &flaky,
            attempts: 8,
            stop: &stopping,
        };
        assert!(matches!(
            view.meta(0, &MetaKey::Watermark),
            Err(StoreError::Transient(_))
        ));
        assert_eq!(
            flaky.busy.load(Ordering::Relaxed),
            99,
            "no retry once stopping"
        );
    }
}
