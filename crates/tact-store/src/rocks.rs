//! The RocksDB store. Five column families: `state` (customer id -> encoded state), `meta`
//! (applied offsets, watermarks), `outbox` (big-endian sequence -> record), `timers` (the due-time
//! index) and `index` (secondary indexes such as followers), written through one WriteBatch.

use crate::{
    meta_key, offset_key, parse_timer_key, timer_key, timer_prefix, Commit, StateStore, StoreError,
    Timer,
};
use rocksdb::{
    BlockBasedOptions, Cache, ColumnFamilyDescriptor, DBCompressionType, ErrorKind, IteratorMode,
    Options, WriteBatch, WriteOptions, DB,
};
use std::path::Path;

const CF_STATE: &str = "state";
const CF_META: &str = "meta";
const CF_OUTBOX: &str = "outbox";
const CF_TIMERS: &str = "timers";
const CF_INDEX: &str = "index";

/// Tuning that matters in production; everything else keeps RocksDB's defaults (including the
/// WAL recovery mode, which tolerates a torn last record after `kill -9`).
#[derive(Debug, Clone)]
pub struct RocksOptions {
    /// Shared block cache for state reads.
    pub block_cache_bytes: usize,
    /// Memtable size per column family before a flush.
    pub write_buffer_bytes: usize,
}

impl Default for RocksOptions {
    fn default() -> Self {
        RocksOptions {
            block_cache_bytes: 256 << 20,
            write_buffer_bytes: 64 << 20,
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
    state.set_compression_type(DBCompressionType::Lz4);
    state.set_write_buffer_size(opts.write_buffer_bytes);
    let small = Options::default();
    vec![
        ColumnFamilyDescriptor::new(CF_STATE, state),
        ColumnFamilyDescriptor::new(CF_META, small.clone()),
        ColumnFamilyDescriptor::new(CF_OUTBOX, small.clone()),
        ColumnFamilyDescriptor::new(CF_TIMERS, small.clone()),
        ColumnFamilyDescriptor::new(CF_INDEX, small),
    ]
}

impl RocksStore {
    /// Opens (creating if needed) the store in `dir`. Fails if another process holds it.
    pub fn open(dir: &Path, opts: &RocksOptions) -> Result<RocksStore, StoreError> {
        let mut db_opts = Options::default();
        db_opts.create_if_missing(true);
        db_opts.create_missing_column_families(true);
        db_opts.set_keep_log_file_num(5);
        // The manifest logs file boundaries, which are keys: rolling it often bounds how long an
        // erased customer's key can linger there (it is also rewritten at every open).
        db_opts.set_max_manifest_file_size(1 << 20);
        let db = DB::open_cf_descriptors(&db_opts, dir, descriptors(opts)).map_err(|e| {
            StoreError::Fatal(format!(
                "cannot open state directory {}: {e}",
                dir.display()
            ))
        })?;
        Ok(RocksStore {
            db,
            write: WriteOptions::default(),
        })
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
        for name in [CF_STATE, CF_META, CF_OUTBOX, CF_TIMERS] {
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
}

impl StateStore for RocksStore {
    fn multi_get(&self, keys: &[&[u8]]) -> Result<Vec<Option<Vec<u8>>>, StoreError> {
        let cf = self.cf(CF_STATE)?;
        self.db
            .batched_multi_get_cf(cf, keys.iter().copied(), false)
            .into_iter()
            .map(|r| r.map(|v| v.map(|s| s.to_vec())).map_err(classify))
            .collect()
    }

    fn applied_offset(&self, topic: &str, partition: i32) -> Result<Option<i64>, StoreError> {
        let raw = self
            .db
            .get_cf(self.cf(CF_META)?, offset_key(topic, partition))
            .map_err(classify)?;
        raw.map(|v| {
            <[u8; 8]>::try_from(v.as_slice())
                .map(i64::from_be_bytes)
                .map_err(|_| {
                    StoreError::Fatal(format!("applied offset of {topic}/{partition} is corrupt"))
                })
        })
        .transpose()
    }

    fn commit(&self, c: &Commit) -> Result<(), StoreError> {
        let (state, meta, outbox, timers) = (
            self.cf(CF_STATE)?,
            self.cf(CF_META)?,
            self.cf(CF_OUTBOX)?,
            self.cf(CF_TIMERS)?,
        );
        let mut batch = WriteBatch::default();
        for (k, v) in &c.state_puts {
            batch.put_cf(state, k, v);
        }
        for k in &c.state_deletes {
            batch.delete_cf(state, k);
        }
        for (topic, partition, offset) in &c.offsets {
            batch.put_cf(meta, offset_key(topic, *partition), offset.to_be_bytes());
        }
        for (seq, v) in &c.outbox_puts {
            batch.put_cf(outbox, seq.to_be_bytes(), v);
        }
        // Acknowledged records come in runs of consecutive sequence numbers: one range tombstone
        // per run instead of one per record keeps the outbox cheap to write and to scan.
        let mut seqs = c.outbox_deletes.clone();
        seqs.sort_unstable();
        seqs.dedup();
        let mut i = 0;
        while i < seqs.len() {
            let start = seqs[i];
            let mut end = start;
            while i + 1 < seqs.len() && seqs[i + 1] == end + 1 {
                i += 1;
                end = seqs[i];
            }
            if end == start {
                batch.delete_cf(outbox, start.to_be_bytes());
            } else {
                batch.delete_range_cf(outbox, start.to_be_bytes(), (end + 1).to_be_bytes());
            }
            i += 1;
        }
        for t in &c.timer_deletes {
            batch.delete_cf(timers, timer_key(t));
        }
        for t in &c.timer_puts {
            batch.put_cf(timers, timer_key(t), []);
        }
        for (name, v) in &c.meta_puts {
            batch.put_cf(meta, meta_key(name), v.to_be_bytes());
        }
        if !c.index_puts.is_empty() || !c.index_deletes.is_empty() {
            let index = self.cf(CF_INDEX)?;
            for k in &c.index_deletes {
                batch.delete_cf(index, k);
            }
            for (k, v) in &c.index_puts {
                batch.put_cf(index, k, v);
            }
        }
        self.db.write_opt(batch, &self.write).map_err(classify)
    }

    fn pending_outbox(&self) -> Result<Vec<(u64, Vec<u8>)>, StoreError> {
        let mut out = Vec::new();
        for item in self
            .db
            .iterator_cf(self.cf(CF_OUTBOX)?, IteratorMode::Start)
        {
            let (k, v) = item.map_err(classify)?;
            let seq = <[u8; 8]>::try_from(&*k)
                .map(u64::from_be_bytes)
                .map_err(|_| StoreError::Fatal("outbox key is corrupt".into()))?;
            out.push((seq, v.to_vec()));
        }
        Ok(out)
    }

    fn next_outbox_seq(&self) -> Result<u64, StoreError> {
        let mut it = self.db.iterator_cf(self.cf(CF_OUTBOX)?, IteratorMode::End);
        match it.next() {
            None => Ok(0),
            Some(item) => {
                let (k, _) = item.map_err(classify)?;
                <[u8; 8]>::try_from(&*k)
                    .map(|b| u64::from_be_bytes(b) + 1)
                    .map_err(|_| StoreError::Fatal("outbox key is corrupt".into()))
            }
        }
    }

    fn sync(&self) -> Result<(), StoreError> {
        self.db.flush_wal(true).map_err(classify)
    }

    fn timers_in(
        &self,
        partition: i32,
        from: i64,
        until: i64,
        limit: usize,
    ) -> Result<Vec<Timer>, StoreError> {
        let mut out = Vec::new();
        if from > until {
            return Ok(out);
        }
        let mut opts = rocksdb::ReadOptions::default();
        opts.set_iterate_lower_bound(timer_prefix(partition, from));
        // Exclusive upper bound: the first key past `until` (the next partition when `until` is
        // the largest due time).
        let upper = match until.checked_add(1) {
            Some(next) => timer_prefix(partition, next),
            None => match partition.checked_add(1) {
                Some(p) => timer_prefix(p, i64::MIN),
                None => vec![0xff; 13],
            },
        };
        opts.set_iterate_upper_bound(upper);
        for item in self
            .db
            .iterator_cf_opt(self.cf(CF_TIMERS)?, opts, IteratorMode::Start)
        {
            let (k, _) = item.map_err(classify)?;
            let timer = parse_timer_key(&k)
                .ok_or_else(|| StoreError::Fatal("timer key is corrupt".into()))?;
            if out.len() >= limit {
                break;
            }
            out.push(timer);
        }
        Ok(out)
    }

    fn meta(&self, name: &str) -> Result<Option<i64>, StoreError> {
        let raw = self
            .db
            .get_cf(self.cf(CF_META)?, meta_key(name))
            .map_err(classify)?;
        raw.map(|v| {
            <[u8; 8]>::try_from(v.as_slice())
                .map(i64::from_be_bytes)
                .map_err(|_| StoreError::Fatal(format!("meta value {name} is corrupt")))
        })
        .transpose()
    }

    fn index_scan(
        &self,
        prefix: &[u8],
        after: Option<&[u8]>,
        limit: usize,
    ) -> Result<crate::IndexEntries, StoreError> {
        let mut opts = rocksdb::ReadOptions::default();
        opts.set_iterate_lower_bound(prefix.to_vec());
        // Exclusive upper bound: the prefix with its last non-0xff byte incremented.
        let mut upper = prefix.to_vec();
        while upper.last() == Some(&0xff) {
            upper.pop();
        }
        if let Some(last) = upper.last_mut() {
            *last += 1;
            opts.set_iterate_upper_bound(upper);
        }
        let start = match after {
            Some(a) => IteratorMode::From(a, rocksdb::Direction::Forward),
            None => IteratorMode::Start,
        };
        let mut out = Vec::new();
        for item in self.db.iterator_cf_opt(self.cf(CF_INDEX)?, opts, start) {
            let (k, v) = item.map_err(classify)?;
            if after.is_some_and(|a| *k <= *a) {
                continue;
            }
            if out.len() >= limit {
                break;
            }
            out.push((k.to_vec(), v.to_vec()));
        }
        Ok(out)
    }

    fn size_bytes(&self) -> u64 {
        [CF_STATE, CF_META, CF_OUTBOX, CF_TIMERS, CF_INDEX]
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

    fn purge(&self, key: Option<&[u8]>) -> Result<bool, StoreError> {
        // Flush every column family first: the write-ahead log holding the old values becomes
        // obsolete and is deleted, and the deletions reach the files compaction rewrites.
        self.flush()?;
        // Bottommost compaction too: otherwise old values can survive in a file that only looks
        // compacted, which would make erasure a lie. Timer keys and outbox records name the
        // customer and cannot be range-selected by customer, so those (small) families are
        // compacted whole.
        let mut opts = rocksdb::CompactOptions::default();
        opts.set_bottommost_level_compaction(rocksdb::BottommostLevelCompaction::Force);
        opts.set_exclusive_manual_compaction(true);
        match key {
            Some(key) => {
                let mut end = key.to_vec();
                end.push(0);
                self.db.compact_range_cf_opt(
                    self.cf(CF_STATE)?,
                    Some(key),
                    Some(end.as_slice()),
                    &opts,
                );
            }
            None => self.db.compact_range_cf_opt(
                self.cf(CF_STATE)?,
                None::<&[u8]>,
                None::<&[u8]>,
                &opts,
            ),
        }
        self.db
            .compact_range_cf_opt(self.cf(CF_TIMERS)?, None::<&[u8]>, None::<&[u8]>, &opts);
        self.db
            .compact_range_cf_opt(self.cf(CF_OUTBOX)?, None::<&[u8]>, None::<&[u8]>, &opts);
        self.db
            .compact_range_cf_opt(self.cf(CF_INDEX)?, None::<&[u8]>, None::<&[u8]>, &opts);
        self.db.flush_wal(true).map_err(classify)?;
        Ok(true)
    }
}
