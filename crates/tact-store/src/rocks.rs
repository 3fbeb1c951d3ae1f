//! The RocksDB store. One column family per keyspace (`state`, `meta`, `local`, `outbox`,
//! `timers`, `index`), all written through one WriteBatch; every key starts with its partition
//! (see [`crate::keys`]).

use crate::keys::{
    outbox_key, parse_outbox_key, parse_timer_key, partition_range, prefix_end, scoped, timer_key,
    timer_prefix, unscope,
};
use crate::{
    Commit, IndexEntries, IndexKey, IndexPrefix, LocalKey, MetaKey, Partition, Purge, StateEntries,
    StateKey, StateKind, StateStore, StoreError, Timer, PROCESS,
};
use rocksdb::{
    BlockBasedOptions, Cache, ColumnFamilyDescriptor, DBCompressionType, Direction, ErrorKind,
    IteratorMode, Options, ReadOptions, WriteBatch, WriteOptions, DB,
};
use std::path::Path;

const CF_STATE: &str = "state";
const CF_META: &str = "meta";
const CF_LOCAL: &str = "local";
const CF_OUTBOX: &str = "outbox";
const CF_TIMERS: &str = "timers";
const CF_INDEX: &str = "index";
const ALL_CFS: [&str; 6] = [CF_STATE, CF_META, CF_LOCAL, CF_OUTBOX, CF_TIMERS, CF_INDEX];

/// The layout this version writes. A store written with another one is refused at open.
pub const LAYOUT_VERSION: i64 = 3;

/// Tuning that matters in production; everything else keeps RocksDB's defaults (including the
/// WAL recovery mode, which tolerates a torn last record after `kill -9`).
#[derive(Debug, Clone)]
pub struct RocksOptions {
    /// Shared block cache for state reads.
    pub block_cache_bytes: usize,
    /// Memtable size of the state column family before a flush.
    pub write_buffer_bytes: usize,
    pub compression: Compression,
}

/// How the state column family's files are compressed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Compression {
    /// LZ4: smaller files, little CPU.
    #[default]
    Lz4,
    /// Plain: an auditor can search the files for a customer's bytes (after an erasure, say),
    /// which compression would hide.
    None,
}

impl Default for RocksOptions {
    fn default() -> Self {
        RocksOptions {
            block_cache_bytes: 256 << 20,
            write_buffer_bytes: 64 << 20,
            compression: Compression::Lz4,
        }
    }
}

pub struct RocksStore {
    db: DB,
    /// Commits are not fsynced one by one (a process crash keeps the OS page cache); `sync` makes
    /// them power-loss durable before input offsets are committed.
    write: WriteOptions,
}

impl std::fmt::Debug for RocksStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RocksStore")
            .field("path", &self.db.path())
            .finish()
    }
}

fn classify(e: rocksdb::Error) -> StoreError {
    match e.kind() {
        ErrorKind::Busy | ErrorKind::TryAgain | ErrorKind::TimedOut | ErrorKind::Incomplete => {
            StoreError::Transient(e.to_string())
        }
        _ => StoreError::Fatal(e.to_string()),
    }
}

fn descriptors(opts: &RocksOptions) -> Vec<ColumnFamilyDescriptor> {
    let cache = Cache::new_lru_cache(opts.block_cache_bytes);
    let mut table = BlockBasedOptions::default();
    table.set_block_cache(&cache);
    // Point lookups dominate: a bloom filter skips files that cannot hold the key.
    table.set_bloom_filter(10.0, false);
    table.set_cache_index_and_filter_blocks(true);
    let mut state = Options::default();
    state.set_block_based_table_factory(&table);
    state.set_compression_type(match opts.compression {
        Compression::Lz4 => DBCompressionType::Lz4,
        Compression::None => DBCompressionType::None,
    });
    state.set_write_buffer_size(opts.write_buffer_bytes);
    let small = Options::default();
    ALL_CFS
        .iter()
        .map(|name| {
            let o = if *name == CF_STATE {
                state.clone()
            } else {
                small.clone()
            };
            ColumnFamilyDescriptor::new(*name, o)
        })
        .collect()
}

fn corrupt(what: &str) -> StoreError {
    StoreError::Fatal(format!("{what} is corrupt"))
}

/// Reads with `[lower, upper)` bounds (iterators never walk outside them).
fn bounded(lower: Vec<u8>, upper: Option<Vec<u8>>) -> ReadOptions {
    let mut opts = ReadOptions::default();
    opts.set_iterate_lower_bound(lower);
    if let Some(u) = upper {
        opts.set_iterate_upper_bound(u);
    }
    opts
}

impl RocksStore {
    /// Opens (creating if needed) the store in `dir`. Fails if another process holds it, or if it
    /// was written with another layout.
    pub fn open(dir: &Path, opts: &RocksOptions) -> Result<RocksStore, StoreError> {
        let mut db_opts = Options::default();
        db_opts.create_if_missing(true);
        db_opts.create_missing_column_families(true);
        db_opts.set_keep_log_file_num(5);
        // The manifest logs file boundaries, which are keys: rolling it often bounds how long an
        // erased customer's key can linger there (it is also rewritten at every open).
        db_opts.set_max_manifest_file_size(1 << 20);
        if dir.join("CURRENT").exists() {
            let cfs = DB::list_cf(&db_opts, dir).map_err(|e| {
                StoreError::Fatal(format!(
                    "cannot open state directory {}: {e}",
                    dir.display()
                ))
            })?;
            if !cfs.iter().any(|c| c == CF_LOCAL) {
                return Err(StoreError::Fatal(format!(
                    "state directory {} was written by an earlier tact (layout before {LAYOUT_VERSION}); \
                     move it away: partitions are restored from their changelog",
                    dir.display()
                )));
            }
        }
        let db = DB::open_cf_descriptors(&db_opts, dir, descriptors(opts)).map_err(|e| {
            StoreError::Fatal(format!(
                "cannot open state directory {}: {e}",
                dir.display()
            ))
        })?;
        let store = RocksStore {
            db,
            write: WriteOptions::default(),
        };
        match store.local(PROCESS, LocalKey::LayoutVersion)? {
            None => store.commit(&Commit {
                local_puts: vec![(
                    PROCESS,
                    LocalKey::LayoutVersion,
                    crate::encode_i64(LAYOUT_VERSION),
                )],
                ..Commit::default()
            })?,
            Some(v) if crate::decode_i64(&v) == Some(LAYOUT_VERSION) => {}
            Some(v) => {
                return Err(StoreError::Fatal(format!(
                    "state directory {} has layout {:?}, this tact writes {LAYOUT_VERSION}",
                    dir.display(),
                    crate::decode_i64(&v)
                )))
            }
        }
        Ok(store)
    }

    /// Opens an existing store read-only (e.g. `tact inspect` beside a running pipeline).
    pub fn open_read_only(dir: &Path) -> Result<RocksStore, StoreError> {
        if !dir.join("CURRENT").exists() {
            return Err(StoreError::Fatal(format!(
                "{} is not a tact state directory (no CURRENT file)",
                dir.display()
            )));
        }
        let db = DB::open_cf_descriptors_read_only(
            &Options::default(),
            dir,
            descriptors(&RocksOptions {
                block_cache_bytes: 8 << 20,
                write_buffer_bytes: 4 << 20,
                compression: Compression::default(), // reading decompresses either way
            }),
            false,
        )
        .map_err(|e| StoreError::Fatal(format!("cannot read {}: {e}", dir.display())))?;
        Ok(RocksStore {
            db,
            write: WriteOptions::default(),
        })
    }

    fn cf(&self, name: &str) -> Result<&rocksdb::ColumnFamily, StoreError> {
        self.db
            .cf_handle(name)
            .ok_or_else(|| StoreError::Fatal(format!("column family {name} missing")))
    }

    /// Flushes memtables to files (used before inspecting raw files and by erasure).
    pub fn flush(&self) -> Result<(), StoreError> {
        for name in ALL_CFS {
            self.db.flush_cf(self.cf(name)?).map_err(classify)?;
        }
        Ok(())
    }

    /// A RocksDB property of the state column family (exported as gauges).
    pub fn state_property(&self, name: &str) -> Option<u64> {
        self.db
            .property_int_value_cf(self.cf(CF_STATE).ok()?, name)
            .ok()
            .flatten()
    }

    fn compact(&self, cf: &str, range: Option<(&[u8], &[u8])>) -> Result<(), StoreError> {
        // Bottommost compaction too: otherwise old values can survive in a file that only looks
        // compacted, which would make erasure a lie.
        let mut opts = rocksdb::CompactOptions::default();
        opts.set_bottommost_level_compaction(rocksdb::BottommostLevelCompaction::Force);
        opts.set_exclusive_manual_compaction(true);
        let cf = self.cf(cf)?;
        match range {
            Some((lo, hi)) => self.db.compact_range_cf_opt(cf, Some(lo), Some(hi), &opts),
            None => self
                .db
                .compact_range_cf_opt(cf, None::<&[u8]>, None::<&[u8]>, &opts),
        }
        Ok(())
    }

    fn get(&self, cf: &str, key: Vec<u8>) -> Result<Option<Vec<u8>>, StoreError> {
        self.db.get_cf(self.cf(cf)?, key).map_err(classify)
    }
}

impl StateStore for RocksStore {
    fn multi_get(
        &self,
        keys: &[(Partition, &StateKey)],
    ) -> Result<Vec<Option<Vec<u8>>>, StoreError> {
        let cf = self.cf(CF_STATE)?;
        let raw: Vec<Vec<u8>> = keys.iter().map(|(p, k)| scoped(*p, &k.encode())).collect();
        self.db
            .batched_multi_get_cf(cf, raw.iter(), false)
            .into_iter()
            .map(|r| r.map(|v| v.map(|s| s.to_vec())).map_err(classify))
            .collect()
    }

    fn scan_state(
        &self,
        p: Partition,
        kind: StateKind,
        after: Option<&StateKey>,
        limit: usize,
    ) -> Result<StateEntries, StoreError> {
        let prefix = scoped(p, &[kind.tag()]);
        let opts = bounded(prefix.clone(), prefix_end(&prefix));
        let from = after.map(|a| scoped(p, &a.encode()));
        let mode = match &from {
            Some(a) => IteratorMode::From(a, Direction::Forward),
            None => IteratorMode::Start,
        };
        let mut out = Vec::new();
        for item in self.db.iterator_cf_opt(self.cf(CF_STATE)?, opts, mode) {
            let (k, v) = item.map_err(classify)?;
            if from.as_deref().is_some_and(|a| *k <= *a) {
                continue;
            }
            if out.len() >= limit {
                break;
            }
            let (_, rest) = unscope(&k).ok_or_else(|| corrupt("a state key"))?;
            out.push((
                StateKey::decode(rest).ok_or_else(|| corrupt("a state key"))?,
                v.to_vec(),
            ));
        }
        Ok(out)
    }

    fn meta(&self, p: Partition, key: &MetaKey) -> Result<Option<Vec<u8>>, StoreError> {
        self.get(CF_META, scoped(p, &key.encode()))
    }

    fn metas(&self, p: Partition) -> Result<Vec<(MetaKey, Vec<u8>)>, StoreError> {
        let (lo, hi) = partition_range(p);
        let mut out = Vec::new();
        for item in self.db.iterator_cf_opt(
            self.cf(CF_META)?,
            bounded(lo, Some(hi)),
            IteratorMode::Start,
        ) {
            let (k, v) = item.map_err(classify)?;
            let (_, rest) = unscope(&k).ok_or_else(|| corrupt("a meta key"))?;
            out.push((
                MetaKey::decode(rest).ok_or_else(|| corrupt("a meta key"))?,
                v.to_vec(),
            ));
        }
        Ok(out)
    }

    fn local(&self, p: Partition, key: LocalKey) -> Result<Option<Vec<u8>>, StoreError> {
        self.get(CF_LOCAL, scoped(p, key.encode()))
    }

    fn commit(&self, c: &Commit) -> Result<(), StoreError> {
        let (state, meta, local, outbox, timers, index) = (
            self.cf(CF_STATE)?,
            self.cf(CF_META)?,
            self.cf(CF_LOCAL)?,
            self.cf(CF_OUTBOX)?,
            self.cf(CF_TIMERS)?,
            self.cf(CF_INDEX)?,
        );
        let mut batch = WriteBatch::default();
        for p in &c.drop_partitions {
            let (lo, hi) = partition_range(*p);
            for cf in [state, meta, local, outbox, timers, index] {
                batch.delete_range_cf(cf, &lo, &hi);
            }
        }
        for (p, k, v) in &c.state_puts {
            batch.put_cf(state, scoped(*p, &k.encode()), v);
        }
        for (p, k) in &c.state_deletes {
            batch.delete_cf(state, scoped(*p, &k.encode()));
        }
        for (p, k, v) in &c.meta_puts {
            batch.put_cf(meta, scoped(*p, &k.encode()), v);
        }
        for (p, k) in &c.local_deletes {
            batch.delete_cf(local, scoped(*p, k.encode()));
        }
        for (p, k, v) in &c.local_puts {
            batch.put_cf(local, scoped(*p, k.encode()), v);
        }
        for (p, seq, v) in &c.outbox_puts {
            batch.put_cf(outbox, outbox_key(*p, *seq), v);
        }
        // Acknowledged records come in runs of consecutive sequence numbers: one range tombstone
        // per run instead of one per record keeps the outbox cheap to write and to scan.
        let mut seqs = c.outbox_deletes.clone();
        seqs.sort_unstable();
        seqs.dedup();
        let mut i = 0;
        while i < seqs.len() {
            let (p, start) = seqs[i];
            let mut end = start;
            while i + 1 < seqs.len() && seqs[i + 1] == (p, end + 1) {
                i += 1;
                end = seqs[i].1;
            }
            if end == start {
                batch.delete_cf(outbox, outbox_key(p, start));
            } else {
                batch.delete_range_cf(outbox, outbox_key(p, start), outbox_key(p, end + 1));
            }
            i += 1;
        }
        for t in &c.timer_deletes {
            batch.delete_cf(timers, timer_key(t));
        }
        for t in &c.timer_puts {
            batch.put_cf(timers, timer_key(t), []);
        }
        for (p, k) in &c.index_deletes {
            batch.delete_cf(index, scoped(*p, &k.encode()));
        }
        for (p, k, v) in &c.index_puts {
            batch.put_cf(index, scoped(*p, &k.encode()), v);
        }
        self.db.write_opt(batch, &self.write).map_err(classify)
    }

    fn outbox(&self, p: Partition) -> Result<Vec<(u64, Vec<u8>)>, StoreError> {
        let (lo, hi) = partition_range(p);
        let mut out = Vec::new();
        for item in self.db.iterator_cf_opt(
            self.cf(CF_OUTBOX)?,
            bounded(lo, Some(hi)),
            IteratorMode::Start,
        ) {
            let (k, v) = item.map_err(classify)?;
            let (_, seq) = parse_outbox_key(&k).ok_or_else(|| corrupt("an outbox key"))?;
            out.push((seq, v.to_vec()));
        }
        Ok(out)
    }

    fn partitions(&self) -> Result<Vec<Partition>, StoreError> {
        let mut found = std::collections::BTreeSet::new();
        for name in ALL_CFS {
            let cf = self.cf(name)?;
            // Skip from one partition's range to the next: one seek per partition present.
            let mut from = partition_range(PROCESS).1;
            loop {
                let mut it = self
                    .db
                    .iterator_cf(cf, IteratorMode::From(&from, Direction::Forward));
                let Some(item) = it.next() else {
                    break;
                };
                let (k, _) = item.map_err(classify)?;
                let (p, _) = unscope(&k).ok_or_else(|| corrupt("a key"))?;
                found.insert(p);
                match p.checked_add(1) {
                    Some(next) => from = partition_range(next).0,
                    None => break,
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
        let mut out = Vec::new();
        if from > until {
            return Ok(out);
        }
        // Exclusive upper bound: the first key past `until` (the next partition when `until` is
        // the largest due time).
        let upper = match until.checked_add(1) {
            Some(next) => timer_prefix(partition, next),
            None => partition_range(partition).1,
        };
        let opts = bounded(timer_prefix(partition, from), Some(upper));
        for item in self
            .db
            .iterator_cf_opt(self.cf(CF_TIMERS)?, opts, IteratorMode::Start)
        {
            let (k, _) = item.map_err(classify)?;
            if out.len() >= limit {
                break;
            }
            out.push(parse_timer_key(&k).ok_or_else(|| corrupt("a timer key"))?);
        }
        Ok(out)
    }

    fn index_scan(
        &self,
        p: Partition,
        prefix: &IndexPrefix,
        after: Option<&IndexKey>,
        limit: usize,
    ) -> Result<IndexEntries, StoreError> {
        let lower = scoped(p, &prefix.encode());
        let opts = bounded(lower.clone(), prefix_end(&lower));
        let from = after.map(|a| scoped(p, &a.encode()));
        let mode = match &from {
            Some(a) => IteratorMode::From(a, Direction::Forward),
            None => IteratorMode::Start,
        };
        let mut out = Vec::new();
        for item in self.db.iterator_cf_opt(self.cf(CF_INDEX)?, opts, mode) {
            let (k, v) = item.map_err(classify)?;
            if from.as_deref().is_some_and(|a| *k <= *a) {
                continue;
            }
            if out.len() >= limit {
                break;
            }
            let (_, rest) = unscope(&k).ok_or_else(|| corrupt("an index key"))?;
            out.push((
                IndexKey::decode(rest).ok_or_else(|| corrupt("an index key"))?,
                v.to_vec(),
            ));
        }
        Ok(out)
    }

    fn sync(&self) -> Result<(), StoreError> {
        self.db.flush_wal(true).map_err(classify)
    }

    fn size_bytes(&self) -> u64 {
        ALL_CFS
            .iter()
            .filter_map(|name| {
                let cf = self.db.cf_handle(name)?;
                let sst = self
                    .db
                    .property_int_value_cf(cf, "rocksdb.live-sst-files-size")
                    .ok()??;
                let mem = self
                    .db
                    .property_int_value_cf(cf, "rocksdb.cur-size-all-mem-tables")
                    .ok()??;
                Some(sst + mem)
            })
            .sum()
    }

    fn purge(&self, what: &Purge) -> Result<bool, StoreError> {
        // Flush every column family first: the write-ahead log holding the old values becomes
        // obsolete and is deleted, and the deletions reach the files compaction rewrites.
        self.flush()?;
        match what {
            Purge::Key(p, key) => {
                let lo = scoped(*p, &key.encode());
                let mut hi = lo.clone();
                hi.push(0);
                self.compact(CF_STATE, Some((&lo, &hi)))?;
                // Timer keys and outbox records name the customer and cannot be range-selected
                // by customer, so the partition's (small) ranges of those families go whole.
                let (plo, phi) = partition_range(*p);
                for cf in [CF_TIMERS, CF_OUTBOX, CF_INDEX] {
                    self.compact(cf, Some((&plo, &phi)))?;
                }
            }
            Purge::Partition(p) => {
                let (lo, hi) = partition_range(*p);
                for cf in ALL_CFS {
                    self.compact(cf, Some((&lo, &hi)))?;
                }
            }
            Purge::All => {
                for cf in ALL_CFS {
                    self.compact(cf, None)?;
                }
            }
        }
        self.db.flush_wal(true).map_err(classify)?;
        Ok(true)
    }
}
