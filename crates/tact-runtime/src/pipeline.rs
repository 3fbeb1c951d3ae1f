//! The worker loop: consume a batch, decode at the edge, skip what is already applied, fold it
//! through the core, write state + applied offsets + outgoing records in one store commit, produce
//! from the outbox, and commit input offsets in order once the broker has acknowledged the output.

use crate::config::Settings;
use crate::outbox::OutboxRecord;
use std::collections::{BTreeMap, HashMap, HashSet, VecDeque};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{channel, Receiver};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};
use tact_codec::{decode_click, decode_command, encode_state, decode_state, DeadLetter, Encoder, ErrorClass, Stage};
use tact_core::{apply_command, apply_event, ClickEvent, CommandEffect, CustomerState, EventKind, Outcome, ProfileCommand};
use tact_kafka::rdkafka::consumer::{BaseConsumer, CommitMode, Consumer};
use tact_kafka::rdkafka::error::{KafkaError, RDKafkaErrorCode};
use tact_kafka::rdkafka::producer::{BaseRecord, ThreadedProducer};
use tact_kafka::rdkafka::{Message, Offset, TopicPartitionList};
use tact_kafka::{consumer_config, producer_config, ConsumerHooks, Delivery, DeliveryContext, OffsetTracker, TactConsumerContext};
use tact_store::{Commit, StateStore, StoreError};
use tact_telemetry::{GateReason, Health, KindChannel, Metrics, TopicClass, TopicLabel, TopicPartition};

/// Records produced but not yet acknowledged beyond which no new input is polled.
const MAX_IN_FLIGHT: usize = 100_000;
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

struct Input {
    source: Source,
    topic: String,
    partition: i32,
    offset: i64,
    key: Option<Vec<u8>>,
    value: Option<Vec<u8>>,
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

pub struct Pipeline<S: StateStore> {
    settings: Settings,
    store: S,
    consumer: BaseConsumer<TactConsumerContext>,
    producer: ThreadedProducer<DeliveryContext>,
    reports: Receiver<Delivery>,
    tracker: OffsetTracker,
    encoder: Encoder,
    metrics: Arc<Metrics>,
    health: Arc<Health>,
    /// Last applied offset per input partition, read from the store once, then kept current.
    applied: HashMap<(Source, i32), i64>,
    /// Partitions revoked since the last turn (their cached offsets are dropped).
    revoked: Arc<Mutex<Vec<(String, i32)>>>,
    /// Records produced and not yet acknowledged, by outbox sequence.
    in_flight: HashMap<u64, OutboxRecord>,
    /// Deliveries that failed and must be produced again.
    resend: VecDeque<u64>,
    /// Acknowledged outbox entries to delete with the next commit.
    acknowledged: Vec<u64>,
    next_seq: u64,
    last_commit: Instant,
    last_size_probe: Instant,
    summary: RunSummary,
}

impl<S: StateStore> std::fmt::Debug for Pipeline<S> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Pipeline").field("in_flight", &self.in_flight.len()).finish()
    }
}

impl<S: StateStore> Pipeline<S> {
    /// Connects to the cluster and checks that every topic exists.
    pub fn new(settings: Settings, store: S, metrics: Arc<Metrics>, health: Arc<Health>) -> Result<Self, PipelineError> {
        let k = &settings.kafka;
        let revoked = Arc::new(Mutex::new(Vec::new()));
        let assigned: Arc<Mutex<HashSet<(String, i32)>>> = Arc::default();
        let hooks = {
            let health = health.clone();
            let revoked = revoked.clone();
            let lag_metrics = metrics.clone();
            let topics = settings.topics.clone();
            ConsumerHooks {
                on_rebalance: Box::new(move |assign, parts| {
                    let mut set = assigned.lock().unwrap_or_else(|p| p.into_inner());
                    for part in parts {
                        if assign {
                            set.insert(part.clone());
                        } else {
                            set.remove(part);
                        }
                    }
                    if !assign {
                        revoked.lock().unwrap_or_else(|p| p.into_inner()).extend(parts.iter().cloned());
                    }
                    health.assigned.store(!set.is_empty(), Ordering::Relaxed);
                }),
                on_lag: Box::new(move |lags| {
                    for (topic, partition, lag) in lags {
                        let label = if *topic == topics.clickstream {
                            Source::Clickstream.label()
                        } else if *topic == topics.profile_commands {
                            Source::ProfileCommands.label()
                        } else {
                            continue;
                        };
                        lag_metrics
                            .consumer_lag
                            .get_or_create(&TopicPartition { topic: label, partition: *partition })
                            .set(*lag);
                    }
                }),
            }
        };
        let consumer: BaseConsumer<TactConsumerContext> = consumer_config(&k.bootstrap_servers, &k.group_id, &k.client)
            .create_with_context(TactConsumerContext { hooks })
            .map_err(|e| PipelineError::Setup(format!("cannot create the Kafka consumer: {e}")))?;
        let (tx, reports) = channel();
        let producer: ThreadedProducer<DeliveryContext> = producer_config(&k.bootstrap_servers, &k.client)
            .create_with_context(DeliveryContext { reports: tx })
            .map_err(|e| PipelineError::Setup(format!("cannot create the Kafka producer: {e}")))?;
        check_topics(&consumer, &settings)?;
        let next_seq = store.next_outbox_seq()?;
        Ok(Pipeline {
            encoder: Encoder::new(settings.output),
            settings,
            store,
            consumer,
            producer,
            reports,
            tracker: OffsetTracker::new(),
            metrics,
            health,
            applied: HashMap::new(),
            revoked,
            in_flight: HashMap::new(),
            resend: VecDeque::new(),
            acknowledged: Vec::new(),
            next_seq,
            last_commit: Instant::now(),
            last_size_probe: Instant::now(),
            summary: RunSummary::default(),
        })
    }

    /// Runs until `stop` is set, then drains within the shutdown deadline.
    pub fn run(mut self, stop: &AtomicBool) -> Result<RunSummary, PipelineError> {
        let started = Instant::now();
        self.resend_outbox()?;
        let topics = [self.settings.topics.clickstream.as_str(), self.settings.topics.profile_commands.as_str()];
        self.consumer
            .subscribe(&topics)
            .map_err(|e| PipelineError::Setup(format!("cannot subscribe to {topics:?}: {e}")))?;
        self.health.state_ready.store(true, Ordering::Relaxed);
        tracing::info!(?topics, group = %self.settings.kafka.group_id, "consuming");
        let result = self.work(stop);
        let drained = self.drain();
        self.summary.elapsed = started.elapsed();
        result.and(drained).map(|()| self.summary)
    }

    fn work(&mut self, stop: &AtomicBool) -> Result<(), PipelineError> {
        while !stop.load(Ordering::Relaxed) {
            self.health.progressed();
            self.forget_revoked();
            self.pump_deliveries()?;
            self.maybe_commit(false)?;
            if self.in_flight.len() >= MAX_IN_FLIGHT {
                // Backpressure: the broker is behind; wait for acknowledgements, not new input.
                std::thread::sleep(Duration::from_millis(5));
                continue;
            }
            let batch = self.poll_batch(stop);
            if !batch.is_empty() {
                self.process(batch)?;
            }
            if self.last_size_probe.elapsed() > Duration::from_secs(10) {
                self.metrics.store_size.set(self.store.size_bytes());
                self.last_size_probe = Instant::now();
            }
        }
        Ok(())
    }

    fn forget_revoked(&mut self) {
        let revoked: Vec<(String, i32)> = std::mem::take(&mut *self.revoked.lock().unwrap_or_else(|p| p.into_inner()));
        for (topic, partition) in revoked {
            if let Some(source) = self.source_of(&topic) {
                self.applied.remove(&(source, partition));
            }
        }
    }

    fn source_of(&self, topic: &str) -> Option<Source> {
        if topic == self.settings.topics.clickstream {
            Some(Source::Clickstream)
        } else if topic == self.settings.topics.profile_commands {
            Some(Source::ProfileCommands)
        } else {
            None
        }
    }

    fn poll_batch(&mut self, stop: &AtomicBool) -> Vec<Input> {
        let deadline = Instant::now() + self.settings.batch_max_wait;
        let mut batch = Vec::new();
        while batch.len() < self.settings.batch_max_events && !stop.load(Ordering::Relaxed) {
            let remaining = deadline.saturating_duration_since(Instant::now());
            match self.consumer.poll(remaining) {
                None => break,
                Some(Err(e)) => {
                    tracing::warn!(error = %e, "consumer error (librdkafka retries)");
                    break;
                }
                Some(Ok(m)) => {
                    let Some(source) = self.source_of(m.topic()) else { continue };
                    batch.push(Input {
                        source,
                        topic: m.topic().to_owned(),
                        partition: m.partition(),
                        offset: m.offset(),
                        key: m.key().map(<[u8]>::to_vec),
                        value: m.payload().map(<[u8]>::to_vec),
                    });
                }
            }
            if remaining.is_zero() {
                break;
            }
        }
        batch
    }

    fn applied_offset(&mut self, source: Source, topic: &str, partition: i32) -> Result<i64, PipelineError> {
        if let Some(o) = self.applied.get(&(source, partition)) {
            return Ok(*o);
        }
        let o = self.store.applied_offset(topic, partition)?.unwrap_or(-1);
        self.applied.insert((source, partition), o);
        Ok(o)
    }

    fn process(&mut self, batch: Vec<Input>) -> Result<(), PipelineError> {
        let started = Instant::now();
        let max = self.settings.max_message_bytes;
        // Decode at the edge; skip what an earlier run already applied.
        let mut work: Vec<(Input, Work)> = Vec::with_capacity(batch.len());
        let mut consumed: BTreeMap<(String, i32), i64> = BTreeMap::new();
        for input in batch {
            let slot = consumed.entry((input.topic.clone(), input.partition)).or_insert(input.offset);
            *slot = (*slot).max(input.offset);
            let label = input.source.label();
            self.metrics.consumed(label);
            if input.offset <= self.applied_offset(input.source, &input.topic, input.partition)? {
                self.metrics.events_skipped.get_or_create(&TopicLabel { topic: label }).inc();
                self.summary.skipped += 1;
                continue;
            }
            let bytes = input.value.as_deref().unwrap_or_default();
            let decoded = match input.source {
                Source::Clickstream => decode_click(bytes, self.settings.clickstream_format, max).map(Work::Click),
                Source::ProfileCommands => {
                    decode_command(bytes, self.settings.profile_commands_format, max).map(Work::Command)
                }
            };
            let w = decoded.unwrap_or_else(|e| {
                self.metrics
                    .decode_errors
                    .get_or_create(&TopicClass { topic: label, error_class: e.class.as_str() })
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
            slots.insert((*id).to_owned(), Slot { state, changed: false, erased: false });
        }

        // Fold, in input order.
        let mut out: Vec<OutboxRecord> = Vec::new();
        let mut applied: BTreeMap<(Source, String, i32), i64> = BTreeMap::new();
        let policy = &self.settings.policy;
        for (input, w) in &work {
            applied.insert((input.source, input.topic.clone(), input.partition), input.offset);
            match w {
                Work::Click(ev) => {
                    let Some(slot) = slots.get_mut(&ev.customer_id) else { continue };
                    if matches!(ev.kind, EventKind::Unknown(_)) {
                        self.metrics.unknown_events.get_or_create(&TopicLabel { topic: input.source.label() }).inc();
                    }
                    let outcome = apply_event(&mut slot.state, ev, policy);
                    slot.changed = true;
                    self.summary.events += 1;
                    record_outcome(&mut self.encoder, &self.metrics, &mut self.summary, &self.settings, outcome, &mut out);
                }
                Work::Command(cmd) => {
                    let Some(slot) = slots.get_mut(&cmd.customer_id) else { continue };
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
                        stage: if *class == ErrorClass::InvalidField { Stage::Validate } else { Stage::Decode },
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
                        .get_or_create(&TopicClass { topic: input.source.label(), error_class: class.as_str() })
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
                commit.state_puts.push((id.into_bytes(), encode_state(&slot.state)));
            }
        }
        commit.offsets = applied.iter().map(|((_, t, p), o)| (t.clone(), *p, *o)).collect();
        let mut seqs = Vec::with_capacity(out.len());
        for record in &out {
            let seq = self.next_seq;
            self.next_seq += 1;
            seqs.push(seq);
            commit.outbox_puts.push((seq, record.encode()));
        }
        commit.outbox_deletes = std::mem::take(&mut self.acknowledged);
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

        // Produce; offsets follow once every record of this batch (and earlier ones) is acknowledged.
        for (seq, record) in seqs.iter().zip(out) {
            self.send(*seq, record)?;
        }
        self.tracker
            .open_batch(consumed.into_iter().map(|((t, p), o)| (t, p, o)).collect(), &seqs);
        self.metrics.outbox_pending.set(self.in_flight.len() as i64);
        self.metrics.batch_duration.observe(started.elapsed().as_secs_f64());
        Ok(())
    }

    fn write(&mut self, commit: &Commit) -> Result<(), PipelineError> {
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

    /// Produces one outbox record; a full producer queue is backpressure, not an error.
    fn send(&mut self, seq: u64, record: OutboxRecord) -> Result<(), PipelineError> {
        loop {
            let attempt = BaseRecord::with_opaque_to(&record.topic, seq as usize)
                .key(&record.key[..])
                .payload(&record.payload[..]);
            match self.producer.send(attempt) {
                Ok(()) => break,
                Err((KafkaError::MessageProduction(RDKafkaErrorCode::QueueFull), _)) => {
                    self.pump_deliveries()?;
                    self.health.progressed();
                    std::thread::sleep(Duration::from_millis(2));
                }
                Err((e, _)) => {
                    return Err(PipelineError::Fatal(format!(
                        "cannot produce to {}: {e}; the record stays in the outbox and is re-sent on restart",
                        record.topic
                    )))
                }
            }
        }
        self.in_flight.insert(seq, record);
        Ok(())
    }

    fn pump_deliveries(&mut self) -> Result<(), PipelineError> {
        while let Ok(report) = self.reports.try_recv() {
            match report.result {
                Ok(()) => {
                    if self.in_flight.remove(&report.seq).is_some() {
                        self.tracker.delivered(report.seq);
                        self.acknowledged.push(report.seq);
                    }
                }
                Err(e) => {
                    self.metrics.delivery_errors.inc();
                    tracing::warn!(error = %e, "delivery failed; re-sending from the outbox");
                    self.resend.push_back(report.seq);
                }
            }
        }
        while let Some(seq) = self.resend.pop_front() {
            if let Some(record) = self.in_flight.remove(&seq) {
                self.send(seq, record)?;
            }
        }
        self.metrics.outbox_pending.set(self.in_flight.len() as i64);
        Ok(())
    }

    fn maybe_commit(&mut self, force: bool) -> Result<(), PipelineError> {
        if !force && self.last_commit.elapsed() < self.settings.commit_interval {
            return Ok(());
        }
        self.last_commit = Instant::now();
        let offsets = self.tracker.take_committable();
        if offsets.is_empty() && !force {
            return Ok(());
        }
        if !self.acknowledged.is_empty() {
            let deletes = std::mem::take(&mut self.acknowledged);
            self.write(&Commit { outbox_deletes: deletes, ..Commit::default() })?;
        }
        if offsets.is_empty() {
            return Ok(());
        }
        // The state behind these offsets must survive power loss before Kafka forgets the input.
        self.store.sync()?;
        let mut tpl = TopicPartitionList::new();
        for (topic, partition, next) in &offsets {
            if let Err(e) = tpl.add_partition_offset(topic, *partition, Offset::Offset(*next)) {
                tracing::warn!(error = %e, "cannot stage an offset commit");
            }
        }
        let mode = if force { CommitMode::Sync } else { CommitMode::Async };
        match self.consumer.commit(&tpl, mode) {
            Ok(()) => self.metrics.commits.inc(),
            // Harmless: input re-read after a restart is skipped by its applied offset.
            Err(e) => {
                tracing::warn!(error = %e, "offset commit failed; applied offsets in the store prevent re-application");
                0
            }
        };
        Ok(())
    }

    fn resend_outbox(&mut self) -> Result<(), PipelineError> {
        let pending = self.store.pending_outbox()?;
        if pending.is_empty() {
            return Ok(());
        }
        tracing::info!(records = pending.len(), "re-sending records the previous run wrote but did not see acknowledged");
        let mut seqs = Vec::with_capacity(pending.len());
        for (seq, bytes) in pending {
            let record = OutboxRecord::decode(&bytes)
                .ok_or_else(|| PipelineError::Fatal(format!("outbox entry {seq} is corrupt")))?;
            self.send(seq, record)?;
            seqs.push(seq);
        }
        self.tracker.open_batch(Vec::new(), &seqs);
        Ok(())
    }

    /// Stops consuming, waits for acknowledgements up to the deadline, commits, syncs the store.
    fn drain(&mut self) -> Result<(), PipelineError> {
        self.health.draining.store(true, Ordering::Relaxed);
        let deadline = Instant::now() + self.settings.shutdown_deadline;
        while !self.in_flight.is_empty() && Instant::now() < deadline {
            self.pump_deliveries()?;
            std::thread::sleep(Duration::from_millis(5));
        }
        self.pump_deliveries()?;
        self.maybe_commit(true)?;
        if !self.acknowledged.is_empty() {
            let deletes = std::mem::take(&mut self.acknowledged);
            self.write(&Commit { outbox_deletes: deletes, ..Commit::default() })?;
        }
        self.store.sync()?;
        self.summary.unacknowledged_at_exit = self.in_flight.len();
        if !self.in_flight.is_empty() {
            tracing::warn!(
                records = self.in_flight.len(),
                "not acknowledged before the shutdown deadline; they stay in the outbox and are re-sent on restart"
            );
        }
        self.consumer.unsubscribe();
        Ok(())
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
            .get_or_create(&KindChannel { kind: d.kind.as_str(), channel: d.channel.as_str() })
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
            .get_or_create(&GateReason { gate: s.gate.as_str(), reason: s.reason_code })
            .inc();
        *summary.suppressions.entry((s.gate.as_str(), s.reason_code)).or_default() += 1;
        out.push(OutboxRecord {
            topic: settings.topics.suppressed.clone(),
            key: s.customer_id.clone().into_bytes(),
            payload: encoder.suppressed(&s),
        });
    }
}

/// Fails with a clear message when the cluster cannot be reached or a topic does not exist
/// (tact creates no topics: partition counts and retention are the operator's choice).
fn check_topics(consumer: &BaseConsumer<TactConsumerContext>, settings: &Settings) -> Result<(), PipelineError> {
    let deadline = Instant::now() + Duration::from_secs(30);
    let metadata = loop {
        match consumer.fetch_metadata(None, Duration::from_secs(5)) {
            Ok(m) => break m,
            Err(e) if Instant::now() < deadline => {
                tracing::warn!(error = %e, bootstrap = %settings.kafka.bootstrap_servers, "cluster not reachable yet; retrying");
                std::thread::sleep(Duration::from_millis(500));
            }
            Err(e) => {
                return Err(PipelineError::Setup(format!(
                    "cannot reach Kafka at {}: {e}",
                    settings.kafka.bootstrap_servers
                )))
            }
        }
    };
    let t = &settings.topics;
    let missing: Vec<&str> = [&t.clickstream, &t.profile_commands, &t.decisions, &t.suppressed, &t.dead_letter]
        .into_iter()
        .filter(|name| !metadata.topics().iter().any(|m| m.name() == name.as_str() && !m.partitions().is_empty()))
        .map(String::as_str)
        .collect();
    if missing.is_empty() {
        Ok(())
    } else {
        Err(PipelineError::Setup(format!(
            "topic(s) {missing:?} do not exist on {}; create them first (tact creates no topics)",
            settings.kafka.bootstrap_servers
        )))
    }
}
