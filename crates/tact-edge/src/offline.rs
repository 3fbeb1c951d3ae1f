//! A job driven without Kafka: records in, the job's emits committed to a store exactly as the
//! edge commits them (outputs and changelog records in the outbox), and every record treated as
//! delivered at once. For benchmarks of the data path and for tests of jobs.

use crate::assemble::assemble;
use crate::job::{Cx, Emit, Input, Job, JobError, Record};
use crate::outbox::OutRecord;
use std::collections::HashMap;
use tact_kafka::Kind;
use tact_store::{decode_i64, with_retry, Commit, MetaKey, Partition, StateStore};

/// The topics an offline run names in the store (as the edge would).
#[derive(Debug, Clone)]
pub struct OfflineTopics {
    pub driving: String,
    pub co_partitioned: Vec<String>,
    pub changelog: String,
}

/// What one call produced: outputs (sequence number, record), the changelog records written,
/// and what was withdrawn.
#[derive(Debug, Default)]
pub struct Produced {
    pub outputs: Vec<(u64, OutRecord)>,
    pub changelog: usize,
    pub withdrawn: Vec<u64>,
}

pub struct Offline<J: Job> {
    pub job: J,
    store: std::sync::Arc<dyn StateStore>,
    topics: OfflineTopics,
    partitions: Vec<Partition>,
    partition_count: i32,
    next_seq: u64,
    applied: HashMap<(Partition, Input), i64>,
    /// Records skipped because they were applied already.
    pub skipped: u64,
    /// Keep outbox entries (as if nothing were acknowledged yet) instead of deleting them.
    pub keep_outbox: bool,
}

impl<J: Job> std::fmt::Debug for Offline<J> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Offline")
            .field("partitions", &self.partitions)
            .finish_non_exhaustive()
    }
}

impl<J: Job> Offline<J> {
    /// Opens `partitions` (of `partition_count`) of `store` for `job`.
    pub fn new(
        job: J,
        store: std::sync::Arc<dyn StateStore>,
        topics: OfflineTopics,
        partitions: &[Partition],
        partition_count: i32,
    ) -> Result<Offline<J>, JobError> {
        let mut o = Offline {
            job,
            store,
            topics,
            partitions: Vec::new(),
            partition_count,
            next_seq: 0,
            applied: HashMap::new(),
            skipped: 0,
            keep_outbox: false,
        };
        for p in partitions {
            if let Some((seq, _)) = o.store.outbox(*p)?.last() {
                o.next_seq = o.next_seq.max(seq + 1);
            }
        }
        for p in partitions {
            o.open(*p)?;
        }
        Ok(o)
    }

    fn topic(&self, input: Input) -> Option<String> {
        match input {
            Input::Driving => Some(self.topics.driving.clone()),
            Input::Co(i) => self.topics.co_partitioned.get(usize::from(i)).cloned(),
            Input::Global => None,
        }
    }

    pub fn open(&mut self, p: Partition) -> Result<(), JobError> {
        let inputs: Vec<Input> = std::iter::once(Input::Driving)
            .chain((0..self.topics.co_partitioned.len()).map(|i| Input::Co(i as u8)))
            .collect();
        for input in inputs {
            if let Some(topic) = self.topic(input) {
                if let Some(a) = self
                    .store
                    .meta(p, &MetaKey::Applied(topic))?
                    .and_then(|v| decode_i64(&v))
                {
                    self.applied.insert((p, input), a);
                }
            }
        }
        self.partitions.push(p);
        self.partitions.sort_unstable();
        self.partitions.dedup();
        let cx = Cx {
            store: &*self.store,
            partitions: &self.partitions,
            partition_count: self.partition_count,
        };
        self.job.open(&cx, p)
    }

    pub fn store(&self) -> &std::sync::Arc<dyn StateStore> {
        &self.store
    }

    /// Commits `emit` as the edge would; unless `keep_outbox`, its records count as delivered.
    pub fn commit(&mut self, emit: Emit) -> Result<Produced, JobError> {
        if emit.is_empty() {
            return Ok(Produced::default());
        }
        let topics = self.topics.clone();
        let topic_of = |input: Input| match input {
            Input::Driving => Some(topics.driving.clone()),
            Input::Co(i) => topics.co_partitioned.get(usize::from(i)).cloned(),
            Input::Global => None,
        };
        let a = assemble(emit, self.next_seq, &self.topics.changelog, &topic_of);
        with_retry(8, &|| false, || self.store.commit(&a.commit))?;
        self.next_seq = a.next_seq;
        for (p, input, o) in &a.applied {
            self.applied.insert((*p, *input), *o);
        }
        for what in &a.purge {
            self.store.purge(what)?;
        }
        let mut produced = Produced {
            withdrawn: a.withdrawn,
            ..Produced::default()
        };
        let mut delivered = Commit::default();
        for (seq, p, entry) in a.entries {
            if entry.kind == Kind::Output {
                produced.outputs.push((seq, entry.record));
            } else {
                produced.changelog += 1;
            }
            delivered.outbox_deletes.push((p, seq));
        }
        if !self.keep_outbox {
            self.store.commit(&delivered)?;
        }
        Ok(produced)
    }

    /// Feeds records (those at or below the applied offset are skipped, as the edge does).
    pub fn feed(&mut self, records: Vec<Record>) -> Result<Produced, JobError> {
        let before = records.len();
        let fresh: Vec<Record> = records
            .into_iter()
            .filter(|r| {
                self.applied
                    .get(&(r.partition, r.input))
                    .is_none_or(|a| r.offset > *a)
            })
            .collect();
        self.skipped += (before - fresh.len()) as u64;
        let cx = Cx {
            store: &*self.store,
            partitions: &self.partitions,
            partition_count: self.partition_count,
        };
        let emit = self.job.process(&cx, fresh)?;
        self.commit(emit)
    }

    /// Announces one global record until the job is done with it.
    pub fn global(&mut self, record: &Record) -> Result<Produced, JobError> {
        let mut all = Produced::default();
        for _ in 0..1_000_000 {
            let cx = Cx {
                store: &*self.store,
                partitions: &self.partitions,
                partition_count: self.partition_count,
            };
            let (emit, done) = self.job.process_global(&cx, record)?;
            let p = self.commit(emit)?;
            all.outputs.extend(p.outputs);
            all.changelog += p.changelog;
            all.withdrawn.extend(p.withdrawn);
            if done {
                return Ok(all);
            }
        }
        Err(JobError("the job never finished a global record".into()))
    }

    /// One call of the job's idle work at wall-clock `now_ms`.
    pub fn idle(&mut self, now_ms: i64) -> Result<Produced, JobError> {
        let cx = Cx {
            store: &*self.store,
            partitions: &self.partitions,
            partition_count: self.partition_count,
        };
        let emit = self.job.idle(&cx, now_ms)?;
        self.commit(emit)
    }
}
