//! An in-memory store: the reference the RocksDB store is checked against, and a fast store for
//! unit tests. Not durable.

use crate::{meta_key, offset_key, Commit, StateStore, StoreError, Timer};
use std::collections::{BTreeMap, BTreeSet};
use std::sync::Mutex;

#[derive(Debug, Default)]
struct Inner {
    state: BTreeMap<Vec<u8>, Vec<u8>>,
    meta: BTreeMap<Vec<u8>, i64>,
    outbox: BTreeMap<u64, Vec<u8>>,
    timers: BTreeSet<Timer>,
    index: BTreeMap<Vec<u8>, Vec<u8>>,
}

#[derive(Debug, Default)]
pub struct MemoryStore {
    inner: Mutex<Inner>,
}

impl MemoryStore {
    pub fn new() -> MemoryStore {
        MemoryStore::default()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        // A panic while holding the lock cannot leave a half-applied commit: commits are applied
        // from a fully built value below, so the data is still consistent.
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }
}

impl StateStore for MemoryStore {
    fn multi_get(&self, keys: &[&[u8]]) -> Result<Vec<Option<Vec<u8>>>, StoreError> {
        let inner = self.lock();
        Ok(keys.iter().map(|k| inner.state.get(*k).cloned()).collect())
    }

    fn applied_offset(&self, topic: &str, partition: i32) -> Result<Option<i64>, StoreError> {
        Ok(self.lock().meta.get(&offset_key(topic, partition)).copied())
    }

    fn commit(&self, c: &Commit) -> Result<(), StoreError> {
        let mut inner = self.lock();
        for (k, v) in &c.state_puts {
            inner.state.insert(k.clone(), v.clone());
        }
        for k in &c.state_deletes {
            inner.state.remove(k);
        }
        for (topic, partition, offset) in &c.offsets {
            inner.meta.insert(offset_key(topic, *partition), *offset);
        }
        for (seq, v) in &c.outbox_puts {
            inner.outbox.insert(*seq, v.clone());
        }
        for seq in &c.outbox_deletes {
            inner.outbox.remove(seq);
        }
        for t in &c.timer_deletes {
            inner.timers.remove(t);
        }
        for t in &c.timer_puts {
            inner.timers.insert(t.clone());
        }
        for (name, v) in &c.meta_puts {
            inner.meta.insert(meta_key(name), *v);
        }
        for k in &c.index_deletes {
            inner.index.remove(k);
        }
        for (k, v) in &c.index_puts {
            inner.index.insert(k.clone(), v.clone());
        }
        Ok(())
    }

    fn pending_outbox(&self) -> Result<Vec<(u64, Vec<u8>)>, StoreError> {
        Ok(self
            .lock()
            .outbox
            .iter()
            .map(|(k, v)| (*k, v.clone()))
            .collect())
    }

    fn next_outbox_seq(&self) -> Result<u64, StoreError> {
        Ok(self.lock().outbox.keys().next_back().map_or(0, |s| s + 1))
    }

    fn sync(&self) -> Result<(), StoreError> {
        Ok(())
    }

    fn timers_in(
        &self,
        partition: i32,
        from: i64,
        until: i64,
        limit: usize,
    ) -> Result<Vec<Timer>, StoreError> {
        let start = Timer {
            partition,
            due: from,
            key: Vec::new(),
        };
        Ok(self
            .lock()
            .timers
            .range(start..)
            .take_while(|t| t.partition == partition && t.due <= until)
            .take(limit)
            .cloned()
            .collect())
    }

    fn meta(&self, name: &str) -> Result<Option<i64>, StoreError> {
        Ok(self.lock().meta.get(&meta_key(name)).copied())
    }

    fn index_scan(
        &self,
        prefix: &[u8],
        after: Option<&[u8]>,
        limit: usize,
    ) -> Result<crate::IndexEntries, StoreError> {
        use std::ops::Bound;
        let lower = match after {
            Some(a) => Bound::Excluded(a.to_vec()),
            None => Bound::Included(prefix.to_vec()),
        };
        Ok(self
            .lock()
            .index
            .range((lower, Bound::Unbounded))
            .take_while(|(k, _)| k.starts_with(prefix))
            .take(limit)
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect())
    }

    fn size_bytes(&self) -> u64 {
        0
    }

    fn purge(&self, _key: Option<&[u8]>) -> Result<bool, StoreError> {
        Ok(false)
    }
}
