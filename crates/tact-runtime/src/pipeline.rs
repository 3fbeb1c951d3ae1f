//! The Kafka edge of the data path: consume a batch, hand it to the [`Engine`] (decode, skip what
//! is already applied, fold, one atomic store commit), produce from the outbox, and commit input
//! offsets in order once the broker has acknowledged the output.

use crate::config::Settings;
use crate::engine::{Engine, Processed};
pub use crate::engine::{Input, PipelineError, RunSummary, Source};
use crate::interleave::Interleaver;
use crate::outbox::OutboxRecord;
use std::collections::{HashMap, HashSet, VecDeque};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{channel, Receiver};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tact_kafka::rdkafka::consumer::{BaseConsumer, CommitMode, Consumer, DefaultConsumerContext};
use tact_kafka::rdkafka::error::{KafkaError, RDKafkaErrorCode};
use tact_kafka::rdkafka::producer::{BaseRecord, ThreadedProducer};
use tact_kafka::rdkafka::{Message, Offset, TopicPartitionList};
use tact_kafka::{
    consumer_config, producer_config, ConsumerHooks, Delivery, DeliveryContext, OffsetTracker,
    TactConsumerContext,
};
use tact_store::{Commit, StateStore};
use tact_telemetry::{Health, Metrics, TopicPartition};

/// Records produced but not yet acknowledged beyond which no new input is polled.
const MAX_IN_FLIGHT: usize = 100_000;
/// Catalog records taken per turn of the loop (each may be many pages of followers).
const RELEASES_PER_TURN: usize = 16;

pub struct Pipeline<S: StateStore> {
    settings: Settings,
    engine: Engine<S>,
    consumer: BaseConsumer<TactConsumerContext>,
    /// Reads the whole catalog topic (assigned, not subscribed: every instance reads all of it),
    /// from the offsets applied in the store.
    catalog: BaseConsumer<DefaultConsumerContext>,
    catalog_partitions: Vec<i32>,
    interleaver: Interleaver,
    producer: ThreadedProducer<DeliveryContext>,
    reports: Receiver<Delivery>,
    tracker: OffsetTracker,
    metrics: Arc<Metrics>,
    health: Arc<Health>,
    /// Partitions revoked since the last turn (their cached offsets are dropped).
    revoked: Arc<Mutex<Vec<(String, i32)>>>,
    /// Records produced and not yet acknowledged, by outbox sequence.
    in_flight: HashMap<u64, OutboxRecord>,
    /// Deliveries that failed and must be produced again.
    resend: VecDeque<u64>,
    /// Acknowledged outbox entries to delete with the next commit.
    acknowledged: Vec<u64>,
    last_commit: Instant,
    last_size_probe: Instant,
    last_input: Instant,
    /// Partitions currently assigned (kept by the rebalance hooks).
    assigned: Arc<Mutex<HashSet<(String, i32)>>>,
}

impl<S: StateStore> std::fmt::Debug for Pipeline<S> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Pipeline")
            .field("in_flight", &self.in_flight.len())
            .finish()
    }
}

impl<S: StateStore> Pipeline<S> {
    /// Connects to the cluster and checks that every topic exists.
    pub fn new(
        settings: Settings,
        store: S,
        metrics: Arc<Metrics>,
        health: Arc<Health>,
    ) -> Result<Self, PipelineError> {
        let k = &settings.kafka;
        let revoked = Arc::new(Mutex::new(Vec::new()));
        let assigned: Arc<Mutex<HashSet<(String, i32)>>> = Arc::default();
        let assigned_view = assigned.clone();
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
                        revoked
                            .lock()
                            .unwrap_or_else(|p| p.into_inner())
                            .extend(parts.iter().cloned());
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
                            .get_or_create(&TopicPartition {
                                topic: label,
                                partition: *partition,
                            })
                            .set(*lag);
                    }
                }),
            }
        };
        let consumer: BaseConsumer<TactConsumerContext> =
            consumer_config(&k.bootstrap_servers, &k.group_id, &k.client)
                .create_with_context(TactConsumerContext { hooks })
                .map_err(|e| {
                    PipelineError::Setup(format!("cannot create the Kafka consumer: {e}"))
                })?;
        let (tx, reports) = channel();
        let producer: ThreadedProducer<DeliveryContext> =
            producer_config(&k.bootstrap_servers, &k.client)
                .create_with_context(DeliveryContext { reports: tx })
                .map_err(|e| {
                    PipelineError::Setup(format!("cannot create the Kafka producer: {e}"))
                })?;
        let catalog_partitions = check_topics(&consumer, &settings)?;
        let catalog: BaseConsumer<DefaultConsumerContext> = consumer_config(
            &k.bootstrap_servers,
            &format!("{}-catalog", k.group_id),
            &k.client,
        )
        .create()
        .map_err(|e| PipelineError::Setup(format!("cannot create the catalog consumer: {e}")))?;
        Ok(Pipeline {
            engine: Engine::new(settings.clone(), store, metrics.clone())?,
            interleaver: Interleaver::new(settings.interleave_wait),
            settings,
            consumer,
            catalog,
            catalog_partitions,
            producer,
            reports,
            tracker: OffsetTracker::new(),
            metrics,
            health,
            revoked,
            in_flight: HashMap::new(),
            resend: VecDeque::new(),
            acknowledged: Vec::new(),
            last_commit: Instant::now(),
            last_size_probe: Instant::now(),
            last_input: Instant::now(),
            assigned: assigned_view,
        })
    }

    /// Runs until `stop` is set, then drains within the shutdown deadline.
    pub fn run(mut self, stop: &AtomicBool) -> Result<RunSummary, PipelineError> {
        let started = Instant::now();
        self.resend_outbox()?;
        self.probe_store_size();
        self.assign_catalog()?;
        let topics = [
            self.settings.topics.clickstream.as_str(),
            self.settings.topics.profile_commands.as_str(),
        ];
        self.consumer
            .subscribe(&topics)
            .map_err(|e| PipelineError::Setup(format!("cannot subscribe to {topics:?}: {e}")))?;
        self.health.state_ready.store(true, Ordering::Relaxed);
        tracing::info!(?topics, group = %self.settings.kafka.group_id, "consuming");
        let result = self.work(stop);
        let drained = self.drain();
        self.engine.summary.elapsed = started.elapsed();
        result.and(drained).map(|()| self.engine.summary)
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
            let now = Instant::now();
            if !batch.is_empty() {
                self.last_input = now;
            }
            self.interleaver.push(batch, now);
            let settings = &self.settings;
            let ready = self
                .interleaver
                .release(now, &mut |input| event_time(input, settings));
            self.metrics
                .interleave_held
                .set(self.interleaver.held() as i64);
            self.poll_releases()?;
            if !ready.is_empty() {
                self.process(ready)?;
            } else if self.interleaver.held() == 0
                && self
                    .settings
                    .idle_timer_wall_clock
                    .is_some_and(|idle| self.last_input.elapsed() >= idle)
            {
                self.fire_wall_clock_timers()?;
            }
            if self.last_size_probe.elapsed() > Duration::from_secs(10) {
                self.probe_store_size();
            }
        }
        Ok(())
    }

    fn forget_revoked(&mut self) {
        let revoked: Vec<(String, i32)> =
            std::mem::take(&mut *self.revoked.lock().unwrap_or_else(|p| p.into_inner()));
        for (topic, partition) in revoked {
            if let Some(source) = self.source_of(&topic) {
                self.engine.forget(source, partition);
                self.interleaver.forget(partition);
            }
        }
    }

    /// Assigns every catalog partition from just after the offset the store says is applied.
    fn assign_catalog(&mut self) -> Result<(), PipelineError> {
        let topic = self.settings.topics.catalog.clone();
        let mut tpl = TopicPartitionList::new();
        for p in self.catalog_partitions.clone() {
            let applied = self.engine.applied_offset(Source::Catalog, &topic, p)?;
            let from = if applied < 0 {
                Offset::Beginning
            } else {
                Offset::Offset(applied + 1)
            };
            tpl.add_partition_offset(&topic, p, from)
                .map_err(|e| PipelineError::Setup(format!("cannot assign {topic}/{p}: {e}")))?;
        }
        self.catalog.assign(&tpl).map_err(|e| {
            PipelineError::Setup(format!("cannot read the catalog topic {topic}: {e}"))
        })
    }

    /// Announces new releases: each catalog record, page by page of followers, every page one
    /// commit whose records are produced before the next.
    fn poll_releases(&mut self) -> Result<(), PipelineError> {
        for _ in 0..RELEASES_PER_TURN {
            let input = match self.catalog.poll(Duration::ZERO) {
                None => return Ok(()),
                Some(Err(e)) => {
                    tracing::warn!(error = %e, "catalog consumer error (librdkafka retries)");
                    return Ok(());
                }
                Some(Ok(m)) => Input {
                    source: Source::Catalog,
                    topic: m.topic().to_owned(),
                    partition: m.partition(),
                    offset: m.offset(),
                    key: m.key().map(<[u8]>::to_vec),
                    value: m.payload().map(<[u8]>::to_vec),
                },
            };
            loop {
                while self.in_flight.len() >= MAX_IN_FLIGHT {
                    self.pump_deliveries()?;
                    self.health.progressed();
                    std::thread::sleep(Duration::from_millis(5));
                }
                let acknowledged = std::mem::take(&mut self.acknowledged);
                let (processed, done) = self.engine.process_release(&input, acknowledged)?;
                self.emit(processed)?;
                self.pump_deliveries()?;
                if done {
                    break;
                }
            }
        }
        Ok(())
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
                    let Some(source) = self.source_of(m.topic()) else {
                        continue;
                    };
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

    fn process(&mut self, batch: Vec<Input>) -> Result<(), PipelineError> {
        let acknowledged = std::mem::take(&mut self.acknowledged);
        let processed = self.engine.process(batch, acknowledged)?;
        self.emit(processed)
    }

    /// Produces a processed batch's records; its input offsets follow once every record of it
    /// (and of earlier batches) is acknowledged.
    fn emit(&mut self, processed: Processed) -> Result<(), PipelineError> {
        // An erasure dropped these: never re-send them, and do not let them hold back offsets.
        for seq in processed.dropped {
            if self.in_flight.remove(&seq).is_some() {
                self.tracker.delivered(seq);
            }
        }
        let mut seqs = Vec::with_capacity(processed.records.len());
        for (seq, record) in processed.records {
            self.send(seq, record)?;
            seqs.push(seq);
        }
        self.tracker.open_batch(processed.consumed, &seqs);
        self.metrics.outbox_pending.set(self.in_flight.len() as i64);
        Ok(())
    }

    fn probe_store_size(&mut self) {
        self.metrics
            .store_size
            .set(self.engine.store().size_bytes());
        self.last_size_probe = Instant::now();
    }

    /// The input is idle: let wall-clock time move timers (sessions end, carts come due).
    fn fire_wall_clock_timers(&mut self) -> Result<(), PipelineError> {
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX));
        let mut partitions: Vec<i32> = self
            .assigned
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .iter()
            .map(|(_, p)| *p)
            .collect();
        partitions.sort_unstable();
        partitions.dedup();
        match self
            .engine
            .fire_timers(now, &partitions, &mut self.acknowledged)?
        {
            Some(processed) => self.emit(processed),
            None => Ok(()),
        }
    }

    fn write(&mut self, commit: &Commit) -> Result<(), PipelineError> {
        self.engine.write(commit)
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
            self.write(&Commit {
                outbox_deletes: deletes,
                ..Commit::default()
            })?;
        }
        if offsets.is_empty() {
            return Ok(());
        }
        // The state behind these offsets must survive power loss before Kafka forgets the input.
        self.engine.store().sync()?;
        let mut tpl = TopicPartitionList::new();
        for (topic, partition, next) in &offsets {
            if let Err(e) = tpl.add_partition_offset(topic, *partition, Offset::Offset(*next)) {
                tracing::warn!(error = %e, "cannot stage an offset commit");
            }
        }
        let mode = if force {
            CommitMode::Sync
        } else {
            CommitMode::Async
        };
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
        let pending = self.engine.store().pending_outbox()?;
        if pending.is_empty() {
            return Ok(());
        }
        tracing::info!(
            records = pending.len(),
            "re-sending records the previous run wrote but did not see acknowledged"
        );
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
        // Forced: deletes acknowledged outbox entries, syncs the store, commits offsets.
        self.maybe_commit(true)?;
        self.probe_store_size();
        self.engine.summary.unacknowledged_at_exit = self.in_flight.len();
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

/// The event time of an input record, for interleaving (`i64::MIN` if it does not decode: it goes
/// first, to the dead-letter topic).
fn event_time(input: &Input, settings: &Settings) -> i64 {
    let bytes = input.value.as_deref().unwrap_or_default();
    let max = settings.max_message_bytes;
    match input.source {
        Source::Clickstream => tact_codec::decode_click(bytes, settings.clickstream_format, max)
            .map(|e| e.event_time.millis()),
        Source::ProfileCommands => {
            tact_codec::decode_command(bytes, settings.profile_commands_format, max)
                .map(|c| c.issued_at.millis())
        }
        Source::Catalog => return i64::MIN,
    }
    .unwrap_or(i64::MIN)
}

/// Fails with a clear message when the cluster cannot be reached or a topic does not exist
/// (tact creates no topics: partition counts and retention are the operator's choice).
/// Returns the catalog topic's partitions.
fn check_topics(
    consumer: &BaseConsumer<TactConsumerContext>,
    settings: &Settings,
) -> Result<Vec<i32>, PipelineError> {
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
    let missing: Vec<&str> = [
        &t.clickstream,
        &t.profile_commands,
        &t.decisions,
        &t.suppressed,
        &t.dead_letter,
        &t.erasure_receipts,
        &t.catalog,
    ]
    .into_iter()
    .filter(|name| {
        !metadata
            .topics()
            .iter()
            .any(|m| m.name() == name.as_str() && !m.partitions().is_empty())
    })
    .map(String::as_str)
    .collect();
    if missing.is_empty() {
        Ok(metadata
            .topics()
            .iter()
            .filter(|m| m.name() == t.catalog)
            .flat_map(|m| m.partitions().iter().map(|p| p.id()))
            .collect())
    } else {
        Err(PipelineError::Setup(format!(
            "topic(s) {missing:?} do not exist on {}; create them first (tact creates no topics)",
            settings.kafka.bootstrap_servers
        )))
    }
}
