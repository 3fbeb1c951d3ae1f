//! The engine: one batch of input records in, one atomic store commit and the records to produce
//! out. No Kafka here, so the data path can be driven directly by tests and benchmarks.

use crate::config::Settings;
use crate::outbox::OutboxRecord;
use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};
use tact_codec::{
    decode_click, decode_command, decode_state, encode_state, DeadLetter, Encoder, ErrorClass,
    Stage,
};
use tact_core::{
    apply_command, apply_event, ClickEvent, CommandEffect, CustomerState, EventKind, Outcome,
    ProfileCommand,
};
use tact_store::{Commit, StateStore, StoreError};
use tact_telemetry::{GateReason, KindChannel, Metrics, TopicClass, TopicLabel};

/// Attempts at a store write that reports "busy" before giving up.
const STORE_RETRIES: u32 = 50;

/// What stops the pipeline, and what the operator should do about it.
#[derive(Debug, thiserror::Error)]
pub enum PipelineError {
    /// The configuration or the cluster is not as required (missing topic, unreachable broker).
    #[error("{0}")]
    Setup(String),
    /// Continuing could lose or corrupt data; stop and look.
    #[error("fatal: {0}")]
    Fatal(String),
}

impl From<StoreError> for PipelineError {
    fn from(e: StoreError) -> Self {
        PipelineError::Fatal(e.to_string())
    }
}

/// The two input topics.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Source {
    Clickstream,
    ProfileCommands,
}

impl Source {
    pub fn label(self) -> &'static str {
        match self {
            Source::Clickstream => "clickstream",
            Source::ProfileCommands => "profile_commands",
        }
    }
}

/// Counts for the end-of-run summary.
#[derive(Debug, Default, Clone)]
pub struct RunSummary {
    pub events: u64,
    pub commands: u64,
    pub skipped: u64,
    pub dead_lettered: u64,
    pub decisions: BTreeMap<&'static str, u64>,
    pub suppressions: BTreeMap<(&'static str, &'static str), u64>,
    pub elapsed: Duration,
    pub unacknowledged_at_exit: usize,
}

/// One consumed record, as the engine sees it.
#[derive(Debug, Clone)]
pub struct Input {
    pub source: Source,
    pub topic: String,
    pub partition: i32,
    pub offset: i64,
    pub key: Option<Vec<u8>>,
    pub value: Option<Vec<u8>>,
}

enum Work {
    Click(ClickEvent),
    Command(ProfileCommand),
    Dead(ErrorClass, String),
}

struct Slot {
    state: CustomerState,
    changed: bool,
    erased: bool,
}

fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
}

/// What a processed batch asks the Kafka edge to do.
#[derive(Debug)]
pub struct Processed {
    /// Records to produce, with their outbox sequence numbers (already durable in the store).
    pub records: Vec<(u64, OutboxRecord)>,
    /// (topic, partition, highest offset consumed), skipped records included.
    pub consumed: Vec<(String, i32, i64)>,
}

/// Applies batches to the store. Owns the store and the applied-offset cache.
pub struct Engine<S: StateStore> {
    settings: Settings,
    store: S,
    encoder: Encoder,
    metrics: Arc<Metrics>,
    /// Last applied offset per input partition, read from the store once, then kept current.
    applied: HashMap<(Source, i32), i64>,
    next_seq: u64,
    pub summary: RunSummary,
}

impl<S: StateStore> std::fmt::Debug for Engine<S> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Engine")
            .field("next_seq", &self.next_seq)
            .finish()
    }
}

impl<S: StateStore> Engine<S> {
    pub fn new(settings: Settings, store: S, metrics: Arc<Metrics>) -> Result<Self, PipelineError> {
        let next_seq = store.next_outbox_seq()?;
        Ok(Engine {
            encoder: Encoder::new(settings.output),
            settings,
            store,
            metrics,
            applied: HashMap::new(),
            next_seq,
            summary: RunSummary::default(),
        })
    }

    pub fn store(&self) -> &S {
        &self.store
    }

    /// Drops the cached applied offset of a partition this instance no longer owns.
    pub fn forget(&mut self, source: Source, partition: i32) {
        self.applied.remove(&(source, partition));
    }

    pub fn applied_offset(
        &mut self,
        source: Source,
        topic: &str,
        partition: i32,
    ) -> Result<i64, PipelineError> {
        if let Some(o) = self.applied.get(&(source, partition)) {
            return Ok(*o);
        }
        let o = self.store.applied_offset(topic, partition)?.unwrap_or(-1);
        self.applied.insert((source, partition), o);
        Ok(o)
    }

    /// Applies one batch: decode, skip what is already applied, fold, and write the next states,
    /// the applied offsets and the outgoing records in one store commit (with `outbox_deletes`,
    /// the acknowledged records of earlier batches). Returns what to produce.
    pub fn process(
        &mut self,
        batch: Vec<Input>,
        outbox_deletes: Vec<u64>,
    ) -> Result<Processed, PipelineError> {
        let started = Instant::now();
        let max = self.settings.max_message_bytes;
        // Decode at the edge; skip what an earlier run already applied.
        let mut work: Vec<(Input, Work)> = Vec::with_capacity(batch.len());
        let mut consumed: BTreeMap<(String, i32), i64> = BTreeMap::new();
        for input in batch {
            let slot = consumed
                .entry((input.topic.clone(), input.partition))
                .or_insert(input.offset);
            *slot = (*slot).max(input.offset);
            let label = input.source.label();
            self.metrics.consumed(label);
            if input.offset <= self.applied_offset(input.source, &input.topic, input.partition)? {
                self.metrics
                    .events_skipped
                    .get_or_create(&TopicLabel { topic: label })
                    .inc();
                self.summary.skipped += 1;
                continue;
            }
            let bytes = input.value.as_deref().unwrap_or_default();
            let decoded = match input.source {
                Source::Clickstream => {
                    decode_click(bytes, self.settings.clickstream_format, max).map(Work::Click)
                }
                Source::ProfileCommands => {
                    decode_command(bytes, self.settings.profile_commands_format, max)
                        .map(Work::Command)
                }
            };
            let w = decoded.unwrap_or_else(|e| {
                self.metrics
                    .decode_errors
                    .get_or_create(&TopicClass {
                        topic: label,
                        error_class: e.class.as_str(),
                    })
                    .inc();
                Work::Dead(e.class, e.message)
            });
            work.push((input, w));
        }

        // Read the state of every customer in the batch at once.
        let mut ids: Vec<&str> = Vec::new();
        let mut seen = HashSet::new();
        for (_, w) in &work {
            let id = match w {
                Work::Click(e) => e.customer_id.as_str(),
                Work::Command(c) => c.customer_id.as_str(),
                Work::Dead(..) => continue,
            };
            if seen.insert(id) {
                ids.push(id);
            }
        }
        let keys: Vec<&[u8]> = ids.iter().map(|id| id.as_bytes()).collect();
        let raw = self.store.multi_get(&keys)?;
        let mut slots: HashMap<String, Slot> = HashMap::with_capacity(ids.len());
        for (id, value) in ids.iter().zip(raw) {
            let state = match value {
                None => CustomerState::default(),
                Some(bytes) => decode_state(&bytes).map_err(|e| {
                    PipelineError::Fatal(format!(
                        "stored state is unreadable ({e}); inspect the state directory before restarting"
                    ))
                })?,
            };
            slots.insert(
                (*id).to_owned(),
                Slot {
                    state,
                    changed: false,
                    erased: false,
                },
            );
        }

        // Fold, in input order.
        let mut out: Vec<OutboxRecord> = Vec::new();
        let mut applied: BTreeMap<(Source, String, i32), i64> = BTreeMap::new();
        let policy = &self.settings.policy;
        for (input, w) in &work {
            applied.insert(
                (input.source, input.topic.clone(), input.partition),
                input.offset,
            );
            match w {
                Work::Click(ev) => {
                    let Some(slot) = slots.get_mut(&ev.customer_id) else {
                        continue;
                    };
                    if matches!(ev.kind, EventKind::Unknown(_)) {
                        self.metrics
                            .unknown_events
                            .get_or_create(&TopicLabel {
                                topic: input.source.label(),
                            })
                            .inc();
                    }
                    let outcome = apply_event(&mut slot.state, ev, policy);
                    slot.changed = true;
                    self.summary.events += 1;
                    record_outcome(
                        &mut self.encoder,
                        &self.metrics,
                        &mut self.summary,
                        &self.settings,
                        outcome,
                        &mut out,
                    );
                }
                Work::Command(cmd) => {
                    let Some(slot) = slots.get_mut(&cmd.customer_id) else {
                        continue;
                    };
                    self.summary.commands += 1;
                    if apply_command(&mut slot.state, cmd, policy) == CommandEffect::Erase {
                        slot.erased = true;
                        self.metrics.erasures.inc();
                    }
                    slot.changed = true;
                }
                Work::Dead(class, message) => {
                    let record = DeadLetter {
                        source_topic: &input.topic,
                        source_partition: input.partition,
                        source_offset: input.offset,
                        original_key: input.key.as_deref(),
                        original_value: input.value.as_deref(),
                        stage: if *class == ErrorClass::InvalidField {
                            Stage::Validate
                        } else {
                            Stage::Decode
                        },
                        error_class: *class,
                        message,
                        dead_lettered_at_ms: now_ms(),
                    };
                    tracing::warn!(
                        topic = %input.topic, partition = input.partition, offset = input.offset,
                        class = class.as_str(), %message, "dead-lettering an input record"
                    );
                    self.metrics
                        .dead_lettered
                        .get_or_create(&TopicClass {
                            topic: input.source.label(),
                            error_class: class.as_str(),
                        })
                        .inc();
                    self.summary.dead_lettered += 1;
                    out.push(OutboxRecord {
                        topic: self.settings.topics.dead_letter.clone(),
                        key: input.key.clone().unwrap_or_default(),
                        payload: self.encoder.dead_letter(&record),
                    });
                }
            }
        }

        // One atomic commit: next states, applied offsets, outgoing records.
        let mut commit = Commit::default();
        let mut erased_keys = Vec::new();
        for (id, slot) in slots {
            if !slot.changed {
                continue;
            }
            if slot.erased {
                erased_keys.push(id.clone().into_bytes());
            }
            if slot.state.is_empty() {
                commit.state_deletes.push(id.into_bytes());
            } else {
                commit
                    .state_puts
                    .push((id.into_bytes(), encode_state(&slot.state)));
            }
        }
        commit.offsets = applied
            .iter()
            .map(|((_, t, p), o)| (t.clone(), *p, *o))
            .collect();
        let mut seqs = Vec::with_capacity(out.len());
        for record in &out {
            let seq = self.next_seq;
            self.next_seq += 1;
            seqs.push(seq);
            commit.outbox_puts.push((seq, record.encode()));
        }
        commit.outbox_deletes = outbox_deletes;
        self.write(&commit)?;
        for ((source, _, p), o) in applied {
            self.applied.insert((source, p), o);
        }
        for key in erased_keys {
            // Deleted values stay in files until compaction: compact so erasure is real.
            let mut end = key.clone();
            end.push(0);
            self.store.compact_state_range(&key, &end)?;
        }

        self.metrics
            .batch_duration
            .observe(started.elapsed().as_secs_f64());
        Ok(Processed {
            records: seqs.into_iter().zip(out).collect(),
            consumed: consumed.into_iter().map(|((t, p), o)| (t, p, o)).collect(),
        })
    }

    pub fn write(&mut self, commit: &Commit) -> Result<(), PipelineError> {
        let mut attempt = 0;
        loop {
            match self.store.commit(commit) {
                Ok(()) => return Ok(()),
                Err(StoreError::Transient(e)) if attempt < STORE_RETRIES => {
                    attempt += 1;
                    tracing::warn!(error = %e, attempt, "state store busy; retrying");
                    std::thread::sleep(Duration::from_millis(20 * u64::from(attempt)));
                }
                Err(e) => return Err(e.into()),
            }
        }
    }
}

fn record_outcome(
    encoder: &mut Encoder,
    metrics: &Metrics,
    summary: &mut RunSummary,
    settings: &Settings,
    outcome: Outcome,
    out: &mut Vec<OutboxRecord>,
) {
    for d in outcome.decisions {
        metrics
            .decisions
            .get_or_create(&KindChannel {
                kind: d.kind.as_str(),
                channel: d.channel.as_str(),
            })
            .inc();
        *summary.decisions.entry(d.kind.as_str()).or_default() += 1;
        out.push(OutboxRecord {
            topic: settings.topics.decisions.clone(),
            key: d.customer_id.clone().into_bytes(),
            payload: encoder.decision(&d),
        });
    }
    for s in outcome.suppressed {
        metrics
            .suppressions
            .get_or_create(&GateReason {
                gate: s.gate.as_str(),
                reason: s.reason_code,
            })
            .inc();
        *summary
            .suppressions
            .entry((s.gate.as_str(), s.reason_code))
            .or_default() += 1;
        out.push(OutboxRecord {
            topic: settings.topics.suppressed.clone(),
            key: s.customer_id.clone().into_bytes(),
            payload: encoder.suppressed(&s),
        });
    }
}

#[cfg(test)]
mod tests;
