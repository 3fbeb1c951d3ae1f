//! An in-memory store: the reference the RocksDB store is checked against, and a fast store for
//! unit tests. Not durable. It keeps keys in their encoded form, so it orders exactly like RocksDB.

use crate::keys::{
    outbox_key, parse_outbox_key, parse_timer_key, partition_range, prefix_end, scoped, timer_key,
    timer_prefix, unscope,
};
use crate::{
    Commit, IndexEntries, IndexKey, IndexPrefix, LocalKey, MetaKey, Partition, Purge, StateEntries,
    StateKey, StateKind, StateStore, StoreError, Timer, PROCESS,
};
use std::collections::{BTreeMap, BTreeSet};
use std::ops::Bound;
use std::sync::Mutex;

type Space = BTreeMap<Vec<u8>, Vec<u8>>;

#[derive(Debug, Default)]
struct Inner {
    state: Space,
    meta: Space,
    local: Space,
    outbox: Space,
    timers: Space,
    index: Space,
}

impl Inner {
    fn spaces(&mut self) -> [&mut Space; 6] {
        [
            &mut self.state,
            &mut self.meta,
            &mut self.local,
            &mut self.outbox,
            &mut self.timers,
            &mut self.index,
        ]
    }
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

/// Entries of `space` in `[lower, upper)` after `after`, at most `limit`.
fn range<'a>(
    space: &'a Space,
    lower: Vec<u8>,
    upper: Option<Vec<u8>>,
    after: Option<Vec<u8>>,
) -> impl Iterator<Item = (&'a Vec<u8>, &'a Vec<u8>)> + 'a {
    let lo = match after {
        Some(a) if a >= lower => Bound::Excluded(a),
        _ => Bound::Included(lower),
    };
    let hi = upper.map_or(Bound::Unbounded, Bound::Excluded);
    space.range((lo, hi))
}

fn remove_range(space: &mut Space, lo: &[u8], hi: &[u8]) {
    let doomed: Vec<Vec<u8>> = space
        .range(lo.to_vec()..hi.to_vec())
        .map(|(k, _)| k.clone())
        .collect();
    for k in doomed {
        space.remove(&k);
    }
}

impl StateStore for MemoryStore {
    fn multi_get(
        &self,
        keys: &[(Partition, &StateKey)],
    ) -> Result<Vec<Option<Vec<u8>>>, StoreError> {
        let inner = self.lock();
        Ok(keys
            .iter()
            .map(|(p, k)| inner.state.get(&scoped(*p, &k.encode())).cloned())
            .collect())
    }

    fn scan_state(
        &self,
        p: Partition,
        kind: StateKind,
        after: Option<&StateKey>,
        limit: usize,
    ) -> Result<StateEntries, StoreError> {
        let inner = self.lock();
        let prefix = scoped(p, &[kind.tag()]);
        range(
            &inner.state,
            prefix.clone(),
            prefix_end(&prefix),
            after.map(|a| scoped(p, &a.encode())),
        )
        .take(limit)
        .map(|(k, v)| {
            let key = unscope(k)
                .and_then(|(_, rest)| StateKey::decode(rest))
                .ok_or_else(|| StoreError::Fatal("a state key is corrupt".into()))?;
            Ok((key, v.clone()))
        })
        .collect()
    }

    fn meta(&self, p: Partition, key: &MetaKey) -> Result<Option<Vec<u8>>, StoreError> {
        Ok(self.lock().meta.get(&scoped(p, &key.encode())).cloned())
    }

    fn metas(&self, p: Partition) -> Result<Vec<(MetaKey, Vec<u8>)>, StoreError> {
        let inner = self.lock();
        let (lo, hi) = partition_range(p);
        range(&inner.meta, lo, Some(hi), None)
            .map(|(k, v)| {
                let key = unscope(k)
                    .and_then(|(_, rest)| MetaKey::decode(rest))
                    .ok_or_else(|| StoreError::Fatal("a meta key is corrupt".into()))?;
                Ok((key, v.clone()))
            })
            .collect()
    }

    fn local(&self, p: Partition, key: LocalKey) -> Result<Option<Vec<u8>>, StoreError> {
        Ok(self.lock().local.get(&scoped(p, key.encode())).cloned())
    }

    fn commit(&self, c: &Commit) -> Result<(), StoreError> {
        let mut inner = self.lock();
        for p in &c.drop_partitions {
            let (lo, hi) = partition_range(*p);
            for space in inner.spaces() {
                remove_range(space, &lo, &hi);
            }
        }
        for (p, k, v) in &c.state_puts {
            inner.state.insert(scoped(*p, &k.encode()), v.clone());
        }
        for (p, k) in &c.state_deletes {
            inner.state.remove(&scoped(*p, &k.encode()));
        }
        for (p, k, v) in &c.meta_puts {
            inner.meta.insert(scoped(*p, &k.encode()), v.clone());
        }
        for (p, k) in &c.local_deletes {
            inner.local.remove(&scoped(*p, k.encode()));
        }
        for (p, k, v) in &c.local_puts {
            inner.local.insert(scoped(*p, k.encode()), v.clone());
        }
        for (p, seq, v) in &c.outbox_puts {
            inner.outbox.insert(outbox_key(*p, *seq), v.clone());
        }
        for (p, seq) in &c.outbox_deletes {
            inner.outbox.remove(&outbox_key(*p, *seq));
        }
        for t in &c.timer_deletes {
            inner.timers.remove(&timer_key(t));
        }
        for t in &c.timer_puts {
            inner.timers.insert(timer_key(t), Vec::new());
        }
        for (p, k) in &c.index_deletes {
            inner.index.remove(&scoped(*p, &k.encode()));
        }
        for (p, k, v) in &c.index_puts {
            inner.index.insert(scoped(*p, &k.encode()), v.clone());
        }
        Ok(())
    }

    fn outbox(&self, p: Partition) -> Result<Vec<(u64, Vec<u8>)>, StoreError> {
        let inner = self.lock();
        let (lo, hi) = partition_range(p);
        range(&inner.outbox, lo, Some(hi), None)
            .map(|(k, v)| {
                let (_, seq) = parse_outbox_key(k)
                    .ok_or_else(|| StoreError::Fatal("an outbox key is corrupt".into()))?;
                Ok((seq, v.clone()))
            })
            .collect()
    }

    fn partitions(&self) -> Result<Vec<Partition>, StoreError> {
        let mut inner = self.lock();
        let mut found = BTreeSet::new();
        for space in inner.spaces() {
            for k in space.keys() {
                if let Some((p, _)) = unscope(k) {
                    if p != PROCESS {
                        found.insert(p);
                    }
                }
            }
        }
        Ok(found.into_iter().collect())
    }

    fn timers_in(
        &self,
        partition: Partition,
        from: i64,
        until: i64,
        limit: usize,
    ) -> Result<Vec<Timer>, StoreError> {
        if from > until {
            return Ok(Vec::new());
        }
        let inner = self.lock();
        let upper = match until.checked_add(1) {
            Some(next) => timer_prefix(partition, next),
            None => partition_range(partition).1,
        };
        range(
            &inner.timers,
            timer_prefix(partition, from),
            Some(upper),
            None,
        )
        .take(limit)
        .map(|(k, _)| {
            parse_timer_key(k).ok_or_else(|| StoreError::Fatal("a timer key is corrupt".into()))
        })
        .collect()
    }

    fn index_scan(
        &self,
        p: Partition,
        prefix: &IndexPrefix,
        after: Option<&IndexKey>,
        limit: usize,
    ) -> Result<IndexEntries, StoreError> {
        let inner = self.lock();
        let lower = scoped(p, &prefix.encode());
        let upper = prefix_end(&lower);
        range(
            &inner.index,
            lower,
            upper,
            after.map(|a| scoped(p, &a.encode())),
        )
        .take(limit)
        .map(|(k, v)| {
            let key = unscope(k)
                .and_then(|(_, rest)| IndexKey::decode(rest))
                .ok_or_else(|| StoreError::Fatal("an index key is corrupt".into()))?;
            Ok((key, v.clone()))
        })
        .collect()
    }

    fn sync(&self) -> Result<(), StoreError> {
        Ok(())
    }

    fn size_bytes(&self) -> u64 {
        0
    }

    fn purge(&self, _what: &Purge) -> Result<bool, StoreError> {
        Ok(false)
    }
}
