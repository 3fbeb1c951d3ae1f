//! The engine: one batch of input records in, one atomic store commit and the records to produce
//! out. No Kafka here, so the data path can be driven directly by tests and benchmarks.
//!
//! Timers follow each input partition's offset order: a customer's due timer fires before their
//! next event, and after every event the partition's event-time watermark fires the timers it has
//! passed. Where a timer fires therefore never depends on how input was cut into batches, so a
//! crash and replay reproduce the same decisions.

use crate::config::Settings;
use crate::outbox::OutboxRecord;
use std::cmp::Reverse;
use std::collections::{BTreeMap, BinaryHeap, HashMap, HashSet};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};
use tact_codec::{
    decode_click, decode_command, decode_release, decode_state, encode_state, DeadLetter, Encoder,
    ErrorClass, Receipt, Stage,
};
use tact_core::{
    apply_command, apply_event, apply_release, apply_timer, next_due, ClickEvent, CommandBody,
    CommandEffect, CustomerState, EventKind, Outcome, ProfileCommand, Rules, Timestamp,
};
use tact_store::{Commit, StateStore, StoreError, Timer};
use tact_telemetry::{GateReason, KindChannel, Metrics, TopicClass, TopicLabel};

/// Attempts at a store write that reports "busy" before giving up.
const STORE_RETRIES: u32 = 50;
/// Set (to 1) in the commit that erases a customer, cleared after the purge.
const PURGE_PENDING: &str = "purge_pending";
/// Timers read from the index at once.
const TIMER_PAGE: usize = 1000;
/// Index times are rounded up to this: a customer active every minute moves their index entry
/// once per bucket, not once per event (each move leaves a deleted entry for scans to skip).
/// Timers still fire at their exact due time; the index only says when to look.
const TIMER_BUCKET_MS: i64 = 5 * 60_000;
/// Followers handled per commit when a release is announced: a release with a million
/// followers is many bounded commits, each recording how far it got.
const RELEASE_PAGE: usize = 500;

/// Follow-index keys: `f`, the subject's length, the subject, then the customer id, so one
/// subject's followers are one contiguous, prefix-scannable range.
fn follow_prefix(subject: &str) -> Vec<u8> {
    let len = u16::try_from(subject.len()).unwrap_or(u16::MAX);
    let mut out = Vec::with_capacity(3 + subject.len());
    out.push(b'f');
    out.extend_from_slice(&len.to_be_bytes());
    out.extend_from_slice(subject.as_bytes());
    out
}

fn follow_key(subject: &str, customer: &str) -> Vec<u8> {
    let mut out = follow_prefix(subject);
    out.extend_from_slice(customer.as_bytes());
    out
}

/// How far the announcement of the release at (topic, partition) has reached: its offset and
/// the last follow key handled.
fn release_cursor_key(topic: &str, partition: i32) -> Vec<u8> {
    let mut out = b"r".to_vec();
    out.extend_from_slice(topic.as_bytes());
    out.push(0);
    out.extend_from_slice(&partition.to_be_bytes());
    out
}

fn index_due(due: Timestamp) -> i64 {
    due.millis()
        .saturating_add(TIMER_BUCKET_MS - 1)
        .div_euclid(TIMER_BUCKET_MS)
        .saturating_mul(TIMER_BUCKET_MS)
}

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
    /// New releases, read in full by every instance.
    Catalog,
}

impl Source {
    pub fn label(self) -> &'static str {
        match self {
            Source::Clickstream => "clickstream",
            Source::ProfileCommands => "profile_commands",
            Source::Catalog => "catalog",
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
    /// Erased, or a category made private: deleted values must leave the files after commit.
    purge: bool,
    /// The input partition this customer's records arrive on (their timers live there).
    partition: Option<i32>,
    /// The stored state's timer index time, so a changed state moves its index entry.
    due_before: Option<i64>,
    /// The stored state's follows, so a change moves its follow-index entries.
    follows_before: Vec<String>,
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
    /// Outbox records of earlier batches an erasure dropped: never to be (re)sent.
    pub dropped: Vec<u64>,
}

/// Per-batch bookkeeping for timers.
#[derive(Default)]
struct TimerScan {
    /// How far the store index was scanned in this batch, per partition.
    checked: HashMap<i32, i64>,
    /// Next-due times of customers changed in this batch, per partition (a min-heap; entries
    /// superseded by a later change are skipped when popped).
    batch_due: HashMap<i32, BinaryHeap<Reverse<(i64, String)>>>,
    /// Index entries whose customer's state no longer wants them.
    stale: Vec<Timer>,
    /// Partitions whose watermark moved.
    moved: HashSet<i32>,
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
    /// Event-time watermark per input partition (latest event time applied), persisted.
    watermarks: HashMap<i32, i64>,
    /// Per partition, every index entry due before this has been handled (in memory only: after
    /// a restart the first scan starts from the beginning).
    floors: HashMap<i32, i64>,
    pub summary: RunSummary,
}

impl<S: StateStore> std::fmt::Debug for Engine<S> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Engine")
            .field("next_seq", &self.next_seq)
            .finish()
    }
}

fn watermark_name(partition: i32) -> String {
    format!("watermark/{partition}")
}

impl<S: StateStore> Engine<S> {
    pub fn new(settings: Settings, store: S, metrics: Arc<Metrics>) -> Result<Self, PipelineError> {
        let next_seq = store.next_outbox_seq()?;
        if store.meta(PURGE_PENDING)? == Some(1) {
            tracing::info!("an erasure's purge was interrupted; purging every deleted value now");
            store.purge(None)?;
            store.commit(&Commit {
                meta_puts: vec![(PURGE_PENDING.to_owned(), 0)],
                ..Commit::default()
            })?;
        }
        Ok(Engine {
            encoder: Encoder::new(settings.output),
            settings,
            store,
            metrics,
            applied: HashMap::new(),
            next_seq,
            watermarks: HashMap::new(),
            floors: HashMap::new(),
            summary: RunSummary::default(),
        })
    }

    pub fn store(&self) -> &S {
        &self.store
    }

    /// Drops the cached offsets and watermark of a partition this instance no longer owns.
    pub fn forget(&mut self, source: Source, partition: i32) {
        self.applied.remove(&(source, partition));
        self.watermarks.remove(&partition);
        self.floors.remove(&partition);
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

    /// The event-time watermark of `partition` (`i64::MIN` before its first event).
    pub fn watermark(&mut self, partition: i32) -> Result<i64, PipelineError> {
        if let Some(w) = self.watermarks.get(&partition) {
            return Ok(*w);
        }
        let w = self
            .store
            .meta(&watermark_name(partition))?
            .unwrap_or(i64::MIN);
        self.watermarks.insert(partition, w);
        Ok(w)
    }

    /// Applies one batch: decode, skip what is already applied, fold (firing timers in offset
    /// order), and write the next states, timers, watermarks, applied offsets and outgoing records
    /// in one store commit (with `outbox_deletes`, the acknowledged records of earlier batches).
    pub fn process(
        &mut self,
        batch: Vec<Input>,
        outbox_deletes: Vec<u64>,
    ) -> Result<Processed, PipelineError> {
        let started = Instant::now();
        let max = self.settings.max_message_bytes;
        // Decode at the edge; skip what an earlier run already applied.
        let mut work: Vec<(Input, Work)> = Vec::with_capacity(batch.len());
        let mut consumed: BTreeMap<(Source, i32), i64> = BTreeMap::new();
        for input in batch {
            let slot = consumed
                .entry((input.source, input.partition))
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
                Source::Catalog => {
                    return Err(PipelineError::Fatal(
                        "catalog records go through process_release".into(),
                    ))
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
        let mut slots = self.load(&ids)?;

        // Fold, in input order.
        let mut out: Vec<OutboxRecord> = Vec::new();
        let mut applied: BTreeMap<(Source, i32), i64> = BTreeMap::new();
        let mut scan = TimerScan::default();
        let mut dropped: Vec<u64> = Vec::new();
        for (input, w) in &work {
            applied.insert((input.source, input.partition), input.offset);
            let p = input.partition;
            match w {
                Work::Click(ev) => {
                    if matches!(ev.kind, EventKind::Unknown(_)) {
                        self.metrics
                            .unknown_events
                            .get_or_create(&TopicLabel {
                                topic: input.source.label(),
                            })
                            .inc();
                    }
                    let rules = &self.settings.rules;
                    let Some(slot) = slots.get_mut(&ev.customer_id) else {
                        continue;
                    };
                    slot.partition = Some(p);
                    // A timer due before this event fires first.
                    fire_due(
                        &mut slot.state,
                        &ev.customer_id,
                        ev.event_time,
                        rules,
                        &mut self.encoder,
                        &self.metrics,
                        &mut self.summary,
                        &self.settings,
                        &mut out,
                    );
                    let outcome = apply_event(&mut slot.state, ev, rules);
                    slot.changed = true;
                    note_due(&mut scan, p, &ev.customer_id, &slot.state, rules);
                    self.summary.events += 1;
                    record_outcome(
                        &mut self.encoder,
                        &self.metrics,
                        &mut self.summary,
                        &self.settings,
                        outcome,
                        &mut out,
                    );
                    // The partition's event time moved: fire what it has passed, in offset order.
                    let wm = self.watermark(p)?.max(ev.event_time.millis());
                    if Some(&wm) != self.watermarks.get(&p) {
                        self.watermarks.insert(p, wm);
                        scan.moved.insert(p);
                    }
                    self.fire_partition(p, wm, &mut slots, &mut scan, &mut out)?;
                }
                Work::Command(cmd) => {
                    let rules = &self.settings.rules;
                    let Some(slot) = slots.get_mut(&cmd.customer_id) else {
                        continue;
                    };
                    slot.partition = Some(p);
                    self.summary.commands += 1;
                    fire_due(
                        &mut slot.state,
                        &cmd.customer_id,
                        cmd.issued_at,
                        rules,
                        &mut self.encoder,
                        &self.metrics,
                        &mut self.summary,
                        &self.settings,
                        &mut out,
                    );
                    let mut before = matches!(cmd.body, CommandBody::Erase { .. })
                        .then(|| slot.state.erasure_report());
                    // A category newly made private: its traces are deleted now and purged from
                    // the files after the commit, like an erasure of just that part.
                    if let CommandBody::SetPreferences(update) = &cmd.body {
                        let held = &slot.state.preferences.private_categories;
                        if update.private_categories.iter().any(|c| !held.contains(c)) {
                            slot.purge = true;
                        }
                    }
                    if apply_command(&mut slot.state, cmd, rules) == CommandEffect::Erase {
                        // What was decided about the customer and not yet sent goes too.
                        let key = cmd.customer_id.as_bytes();
                        let receipts = &self.settings.topics.erasure_receipts;
                        let queued = out.len();
                        out.retain(|r| r.key != key || r.topic == *receipts);
                        let mut gone = queued - out.len();
                        for (seq, bytes) in self.store.pending_outbox()? {
                            if OutboxRecord::decode(&bytes)
                                .is_some_and(|r| r.key == key && r.topic != *receipts)
                                && !dropped.contains(&seq)
                            {
                                dropped.push(seq);
                                gone += 1;
                            }
                        }
                        if let Some(report) = before.as_mut() {
                            report.pending_outputs = u32::try_from(gone).unwrap_or(u32::MAX);
                        }
                        slot.purge = true;
                        self.metrics.erasures.inc();
                        let erased_at = now_ms();
                        self.metrics
                            .erasure_lag
                            .observe((erased_at - cmd.issued_at.millis()).max(0) as f64 / 1000.0);
                        let request_ref = match &cmd.body {
                            CommandBody::Erase { request_ref } => request_ref.as_deref(),
                            _ => None,
                        };
                        // The receipt names the request, not the person: it is keyed by command id.
                        out.push(OutboxRecord {
                            topic: self.settings.topics.erasure_receipts.clone(),
                            key: cmd.command_id.clone().into_bytes(),
                            payload: self.encoder.erasure_receipt(&Receipt {
                                command_id: &cmd.command_id,
                                request_ref,
                                requested_at_ms: cmd.issued_at.millis(),
                                erased_at_ms: erased_at,
                                removed: &before.unwrap_or_default(),
                                purged: true,
                            }),
                        });
                    }
                    slot.changed = true;
                    note_due(&mut scan, p, &cmd.customer_id, &slot.state, rules);
                }
                Work::Dead(class, message) => {
                    self.dead_letter(input, *class, message, &mut out);
                }
            }
        }

        // One atomic commit: next states, timers, watermarks, applied offsets, outgoing records.
        let offsets = applied
            .iter()
            .map(|((src, p), o)| (self.topic(*src).to_owned(), *p, *o))
            .collect();
        let mut outbox_deletes = outbox_deletes;
        outbox_deletes.extend(dropped.iter().copied());
        let seqs = self.commit(slots, &out, offsets, outbox_deletes, scan)?;
        for ((source, p), o) in applied {
            self.applied.insert((source, p), o);
        }
        self.metrics
            .batch_duration
            .observe(started.elapsed().as_secs_f64());
        Ok(Processed {
            records: seqs.into_iter().zip(out).collect(),
            consumed: consumed
                .into_iter()
                .map(|((src, p), o)| (self.topic(src).to_owned(), p, o))
                .collect(),
            dropped,
        })
    }

    /// Announces one release from the catalog topic to the next page of its subject's followers
    /// (found through the follow index), in one commit that also records how far it got.
    /// Returns the records to produce and whether the release is done (its offset applied).
    /// Call again with the same input until it is.
    pub fn process_release(
        &mut self,
        input: &Input,
        outbox_deletes: Vec<u64>,
    ) -> Result<(Processed, bool), PipelineError> {
        let started = Instant::now();
        let topic = input.topic.as_str();
        let p = input.partition;
        let nothing = |dropped| Processed {
            records: Vec::new(),
            consumed: Vec::new(),
            dropped,
        };
        if input.offset <= self.applied_offset(Source::Catalog, topic, p)? {
            return Ok((nothing(Vec::new()), true));
        }
        self.metrics.consumed(Source::Catalog.label());
        let mut out: Vec<OutboxRecord> = Vec::new();
        let mut commit = Commit {
            outbox_deletes,
            ..Commit::default()
        };
        let release = match decode_release(
            input.value.as_deref().unwrap_or_default(),
            self.settings.catalog_format,
            self.settings.max_message_bytes,
        ) {
            Ok(r) => r,
            Err(e) => {
                self.dead_letter(input, e.class, &e.message, &mut out);
                commit.offsets = vec![(topic.to_owned(), p, input.offset)];
                let seqs = self.commit_records(commit, &out)?;
                self.applied.insert((Source::Catalog, p), input.offset);
                return Ok((
                    Processed {
                        records: seqs.into_iter().zip(out).collect(),
                        ..nothing(Vec::new())
                    },
                    true,
                ));
            }
        };
        let cursor_key = release_cursor_key(topic, p);
        let after = self
            .store
            .index_scan(&cursor_key, None, 1)?
            .into_iter()
            .find(|(k, _)| *k == cursor_key)
            .and_then(|(_, v)| {
                let (offset, last) = v.split_first_chunk::<8>()?;
                (i64::from_be_bytes(*offset) == input.offset).then(|| last.to_vec())
            });
        let prefix = follow_prefix(&release.subject);
        let page = self
            .store
            .index_scan(&prefix, after.as_deref(), RELEASE_PAGE)?;
        let ids: Vec<String> = page
            .iter()
            .map(|(k, _)| String::from_utf8_lossy(&k[prefix.len()..]).into_owned())
            .collect();
        let refs: Vec<&str> = ids.iter().map(String::as_str).collect();
        let mut slots = self.load(&refs)?;
        let rules = &self.settings.rules;
        for ((_, partition), id) in page.iter().zip(&ids) {
            let Some(slot) = slots.get_mut(id) else {
                continue;
            };
            slot.partition = <[u8; 4]>::try_from(partition.as_slice())
                .ok()
                .map(i32::from_be_bytes);
            let outcome = apply_release(&mut slot.state, id, &release, rules);
            if outcome != Outcome::default() {
                slot.changed = true;
            }
            record_outcome(
                &mut self.encoder,
                &self.metrics,
                &mut self.summary,
                &self.settings,
                outcome,
                &mut out,
            );
        }
        let done = page.len() < RELEASE_PAGE;
        if done {
            commit.offsets = vec![(topic.to_owned(), p, input.offset)];
            commit.index_deletes.push(cursor_key);
        } else if let Some((last, _)) = page.last() {
            let mut v = input.offset.to_be_bytes().to_vec();
            v.extend_from_slice(last);
            commit.index_puts.push((cursor_key, v));
        }
        let seqs = self.commit_slots(slots, &out, commit, TimerScan::default())?;
        if done {
            self.applied.insert((Source::Catalog, p), input.offset);
            tracing::info!(release = %release.release_id, subject = %release.subject, "release announced to its followers");
        }
        self.metrics
            .batch_duration
            .observe(started.elapsed().as_secs_f64());
        Ok((
            Processed {
                records: seqs.into_iter().zip(out).collect(),
                ..nothing(Vec::new())
            },
            done,
        ))
    }

    fn dead_letter(
        &mut self,
        input: &Input,
        class: ErrorClass,
        message: &str,
        out: &mut Vec<OutboxRecord>,
    ) {
        let record = DeadLetter {
            source_topic: &input.topic,
            source_partition: input.partition,
            source_offset: input.offset,
            original_key: input.key.as_deref(),
            original_value: input.value.as_deref(),
            stage: if class == ErrorClass::InvalidField {
                Stage::Validate
            } else {
                Stage::Decode
            },
            error_class: class,
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

    /// Writes `commit` with `out` appended to the outbox; returns their sequence numbers.
    fn commit_records(
        &mut self,
        mut commit: Commit,
        out: &[OutboxRecord],
    ) -> Result<Vec<u64>, PipelineError> {
        let mut seqs = Vec::with_capacity(out.len());
        for record in out {
            seqs.push(self.next_seq);
            commit.outbox_puts.push((self.next_seq, record.encode()));
            self.next_seq += 1;
        }
        self.write(&commit)?;
        Ok(seqs)
    }

    /// The configured topic name of an input.
    fn topic(&self, source: Source) -> &str {
        match source {
            Source::Clickstream => &self.settings.topics.clickstream,
            Source::ProfileCommands => &self.settings.topics.profile_commands,
            Source::Catalog => &self.settings.topics.catalog,
        }
    }

    /// Fires the timers of `partition` that event time `wm` has passed: customers changed in
    /// this batch from their live state, the rest from the store index.
    fn fire_partition(
        &mut self,
        p: i32,
        wm: i64,
        slots: &mut HashMap<String, Slot>,
        scan: &mut TimerScan,
        out: &mut Vec<OutboxRecord>,
    ) -> Result<(), PipelineError> {
        let rules = &self.settings.rules;
        if let Some(heap) = scan.batch_due.get_mut(&p) {
            let mut again = Vec::new();
            while heap.peek().is_some_and(|Reverse((d, _))| *d <= wm) {
                let Some(Reverse((due, id))) = heap.pop() else {
                    break;
                };
                let Some(slot) = slots.get_mut(&id) else {
                    continue;
                };
                if next_due(&slot.state, &rules.policy).map(Timestamp::millis) != Some(due) {
                    continue; // superseded by a later change of this customer
                }
                fire_due(
                    &mut slot.state,
                    &id,
                    Timestamp(wm),
                    rules,
                    &mut self.encoder,
                    &self.metrics,
                    &mut self.summary,
                    &self.settings,
                    out,
                );
                if let Some(next) = next_due(&slot.state, &rules.policy) {
                    again.push(Reverse((next.millis(), id)));
                }
            }
            heap.extend(again.into_iter().filter(|Reverse((d, _))| *d > wm));
        }
        // The index, from where earlier scans left off up to `wm`: bounded on both sides, so a
        // scan never walks the deleted entries that rescheduled timers leave behind.
        let floor = self.floors.get(&p).copied().unwrap_or(i64::MIN);
        let from = floor.max(
            scan.checked
                .get(&p)
                .map_or(i64::MIN, |c| c.saturating_add(1)),
        );
        if from > wm {
            return Ok(());
        }
        let mut cursor = from;
        let mut complete = true;
        loop {
            let due = self.store.timers_in(p, cursor, wm, TIMER_PAGE)?;
            let ids: Vec<String> = due
                .iter()
                .map(|t| String::from_utf8_lossy(&t.key).into_owned())
                .filter(|id| !slots.contains_key(id))
                .collect();
            let mut refs: Vec<&str> = ids.iter().map(String::as_str).collect();
            refs.sort_unstable();
            refs.dedup();
            slots.extend(self.load(&refs)?);
            let rules = &self.settings.rules;
            for t in &due {
                let id = String::from_utf8_lossy(&t.key).into_owned();
                let Some(slot) = slots.get_mut(&id) else {
                    continue;
                };
                if slot.changed {
                    // Live state in this batch governs (handled above); the commit moves its entry.
                    continue;
                }
                if slot.due_before != Some(t.due) {
                    scan.stale.push(t.clone());
                    continue;
                }
                slot.partition = Some(p);
                fire_due(
                    &mut slot.state,
                    &id,
                    Timestamp(wm),
                    rules,
                    &mut self.encoder,
                    &self.metrics,
                    &mut self.summary,
                    &self.settings,
                    out,
                );
                slot.changed = true;
                note_due(scan, p, &id, &slot.state, rules);
            }
            let Some(last) = due.last().map(|t| t.due) else {
                break;
            };
            if due.len() < TIMER_PAGE {
                break;
            }
            // A full page: continue strictly after its last due time so the scan always advances.
            // Entries left at that very instant wait for the next batch (the floor stays there).
            complete = false;
            cursor = last.saturating_add(1);
            self.floors.insert(p, last);
            if cursor > wm {
                break;
            }
        }
        scan.checked.insert(p, wm);
        if complete {
            self.floors.insert(p, wm.saturating_add(1).max(floor));
        }
        Ok(())
    }

    fn load(&self, ids: &[&str]) -> Result<HashMap<String, Slot>, PipelineError> {
        let keys: Vec<&[u8]> = ids.iter().map(|id| id.as_bytes()).collect();
        let raw = self.store.multi_get(&keys)?;
        let mut slots = HashMap::with_capacity(ids.len());
        for (id, value) in ids.iter().zip(raw) {
            let state = match value {
                None => CustomerState::default(),
                Some(bytes) => decode_state(&bytes).map_err(|e| {
                    PipelineError::Fatal(format!("stored state is unreadable ({e}); inspect the state directory before restarting"))
                })?,
            };
            let due_before = next_due(&state, &self.settings.rules.policy).map(index_due);
            let follows_before = state.follows.clone();
            slots.insert(
                (*id).to_owned(),
                Slot {
                    state,
                    changed: false,
                    purge: false,
                    partition: None,
                    due_before,
                    follows_before,
                },
            );
        }
        Ok(slots)
    }

    /// Writes changed states, their timer entries, moved watermarks, applied offsets and the
    /// outbox in one commit; returns the outbox sequence numbers of `out`.
    fn commit(
        &mut self,
        slots: HashMap<String, Slot>,
        out: &[OutboxRecord],
        offsets: Vec<(String, i32, i64)>,
        outbox_deletes: Vec<u64>,
        scan: TimerScan,
    ) -> Result<Vec<u64>, PipelineError> {
        let commit = Commit {
            offsets,
            outbox_deletes,
            ..Commit::default()
        };
        self.commit_slots(slots, out, commit, scan)
    }

    /// [`Engine::commit`] onto a prepared `commit` (offsets, index entries, outbox deletes).
    fn commit_slots(
        &mut self,
        slots: HashMap<String, Slot>,
        out: &[OutboxRecord],
        mut commit: Commit,
        scan: TimerScan,
    ) -> Result<Vec<u64>, PipelineError> {
        commit.timer_deletes.extend(scan.stale);
        let mut purge_keys = Vec::new();
        for (id, slot) in slots {
            if !slot.changed {
                continue;
            }
            // The follow index moves with the state (an erased state follows nothing).
            for s in &slot.follows_before {
                if !slot.state.follows.contains(s) {
                    commit.index_deletes.push(follow_key(s, &id));
                }
            }
            if let Some(partition) = slot.partition {
                for s in &slot.state.follows {
                    if !slot.follows_before.contains(s) {
                        commit
                            .index_puts
                            .push((follow_key(s, &id), partition.to_be_bytes().to_vec()));
                    }
                }
            }
            let key = id.into_bytes();
            let due_after = if slot.state.is_empty() {
                None
            } else {
                next_due(&slot.state, &self.settings.rules.policy).map(index_due)
            };
            if let Some(partition) = slot.partition {
                if slot.due_before != due_after {
                    if let Some(due) = slot.due_before {
                        commit.timer_deletes.push(Timer {
                            partition,
                            due,
                            key: key.clone(),
                        });
                    }
                    if let Some(due) = due_after {
                        // A timer earlier than what the index was scanned up to (late events):
                        // scans must start from it again.
                        let floor = self.floors.entry(partition).or_insert(i64::MIN);
                        *floor = (*floor).min(due);
                        commit.timer_puts.push(Timer {
                            partition,
                            due,
                            key: key.clone(),
                        });
                    }
                }
            }
            if slot.purge {
                purge_keys.push(key.clone());
            }
            if slot.state.is_empty() {
                commit.state_deletes.push(key);
            } else {
                commit.state_puts.push((key, encode_state(&slot.state)));
            }
        }
        if !purge_keys.is_empty() {
            // Set with the erasure, cleared after the purge: a crash in between re-runs it.
            commit.meta_puts.push((PURGE_PENDING.to_owned(), 1));
        }
        for p in scan.moved {
            if let Some(w) = self.watermarks.get(&p) {
                commit.meta_puts.push((watermark_name(p), *w));
            }
        }
        let seqs = self.commit_records(commit, out)?;
        if !purge_keys.is_empty() {
            for key in &purge_keys {
                // Deleted values stay in files and the write-ahead log until compaction.
                self.store.purge(Some(key))?;
            }
            self.write(&Commit {
                meta_puts: vec![(PURGE_PENDING.to_owned(), 0)],
                ..Commit::default()
            })?;
        }
        Ok(seqs)
    }

    /// The input is idle: fire every timer of `partitions` due by wall-clock time `until`, in one
    /// commit with the records it produces. `outbox_deletes` are taken only when it commits.
    pub fn fire_timers(
        &mut self,
        until: i64,
        partitions: &[i32],
        outbox_deletes: &mut Vec<u64>,
    ) -> Result<Option<Processed>, PipelineError> {
        let mut slots = HashMap::new();
        let mut out = Vec::new();
        let mut scan = TimerScan::default();
        for p in partitions {
            let wm = self.watermark(*p)?.max(until);
            self.fire_partition(*p, wm, &mut slots, &mut scan, &mut out)?;
        }
        if slots.values().all(|s| !s.changed) && scan.stale.is_empty() {
            return Ok(None);
        }
        let seqs = self.commit(
            slots,
            &out,
            Vec::new(),
            std::mem::take(outbox_deletes),
            scan,
        )?;
        Ok(Some(Processed {
            records: seqs.into_iter().zip(out).collect(),
            consumed: Vec::new(),
            dropped: Vec::new(),
        }))
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

/// Remembers when a customer changed in this batch is next due, per partition.
fn note_due(scan: &mut TimerScan, partition: i32, id: &str, state: &CustomerState, rules: &Rules) {
    if let Some(d) = next_due(state, &rules.policy) {
        scan.batch_due
            .entry(partition)
            .or_default()
            .push(Reverse((d.millis(), id.to_owned())));
    }
}

/// Runs every timer of this customer due at or before `now`, each at its own due time.
#[allow(clippy::too_many_arguments)]
fn fire_due(
    state: &mut CustomerState,
    customer_id: &str,
    now: Timestamp,
    rules: &Rules,
    encoder: &mut Encoder,
    metrics: &Metrics,
    summary: &mut RunSummary,
    settings: &Settings,
    out: &mut Vec<OutboxRecord>,
) {
    // Bounded: each firing moves the next due time forward (session ended, cart nudged/deferred).
    for _ in 0..8 {
        let Some(due) = next_due(state, &rules.policy).filter(|d| *d <= now) else {
            return;
        };
        let outcome = apply_timer(state, customer_id, due, rules);
        record_outcome(encoder, metrics, summary, settings, outcome, out);
        if next_due(state, &rules.policy) == Some(due) {
            return;
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
