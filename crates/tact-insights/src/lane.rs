//! The Kafka and RocksDB edge of the insights lane. Same crash-safe pattern as the decision
//! pipeline: decode at the edge, skip offsets at or below the applied offset, fold (pure), write
//! session buffers + window aggregates + watermarks + applied offsets + outgoing findings in ONE
//! store commit, produce from the outbox, and commit input offsets in order once the broker has
//! acknowledged everything produced from them.
//!
//! Store layout (one RocksDB of its own, so prefixes never meet the decision lane's keys):
//! state `s` + partition (4 bytes BE) + session ref (16) -> session buffer; `w` + window start
//! (8 bytes, order-preserving) -> window aggregate. The timer index lists them so they can be
//! restored without a range scan: (partition, session start, ref) and (-1, window start, "w").
//! Meta: `insights/wm/<p>` watermarks, `insights/closed_through`, `insights/salt`.

use crate::codec::{
    decode_outbox, decode_session, decode_window, encode_finding, encode_outbox, encode_session,
    encode_window,
};
use crate::config::InsightsSettings;
use crate::core::{Aggregator, ClosedWindow, SessionRef, Tally};
use crate::metrics::{Health, InsightsMetrics, KindLabel};
use std::collections::{BTreeMap, HashMap, VecDeque};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{channel, Receiver};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};
use tact_codec::decode_click;
use tact_kafka::rdkafka::config::RDKafkaLogLevel;
use tact_kafka::rdkafka::consumer::{BaseConsumer, CommitMode, Consumer};
use tact_kafka::rdkafka::error::{KafkaError, RDKafkaErrorCode};
use tact_kafka::rdkafka::producer::{BaseRecord, Producer, ThreadedProducer};
use tact_kafka::rdkafka::{Message, Offset, TopicPartitionList};
use tact_kafka::{consumer_config, producer_config, Delivery, DeliveryContext, OffsetTracker};
use tact_store::{Commit, RocksOptions, RocksStore, StateStore, StoreError, Timer};

/// Timer-index partition holding the open windows (input partitions are >= 0).
const WINDOW_INDEX: i32 = -1;
const STORE_RETRIES: u32 = 50;
const MAX_IN_FLIGHT: usize = 50_000;

/// What stops the lane, and what the operator should do about it.
#[derive(Debug, thiserror::Error)]
pub enum InsightsError {
    /// Configuration or cluster not as required (missing topic, unreachable broker, locked dir).
    #[error("{0}")]
    Setup(String),
    /// Continuing could lose or double count; stop and look.
    #[error("fatal: {0}")]
    Fatal(String),
}

impl From<StoreError> for InsightsError {
    fn from(e: StoreError) -> Self {
        InsightsError::Fatal(e.to_string())
    }
}

/// Counts for the end-of-run log line.
#[derive(Debug, Default, Clone)]
pub struct InsightsSummary {
    pub events: u64,
    pub skipped: u64,
    pub sessions_assembled: u64,
    pub windows_closed: u64,
    pub findings_published: u64,
    pub findings_held_back: u64,
    pub unacknowledged_at_exit: usize,
}

fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
}

fn session_key(partition: i32, session: &SessionRef) -> Vec<u8> {
    let mut k = Vec::with_capacity(21);
    k.push(b's');
    k.extend_from_slice(&partition.to_be_bytes());
    k.extend_from_slice(session);
    k
}

fn window_key(start: i64) -> Vec<u8> {
    let mut k = Vec::with_capacity(9);
    k.push(b'w');
    k.extend_from_slice(&((start as u64) ^ (1 << 63)).to_be_bytes());
    k
}

fn wm_name(partition: i32) -> String {
    format!("insights/wm/{partition}")
}

/// The salted session reference: 128 bits of two FNV-1a passes over salt, customer and session.
/// The salt is random per state directory, so a reference cannot be recomputed from a guessed id
/// elsewhere; it never leaves the store and dies with the session buffer.
pub fn session_ref(salt: i64, customer_id: &str, session_id: &str) -> SessionRef {
    const PRIME: u64 = 0x0000_0100_0000_01b3;
    let mut a: u64 = 0xcbf2_9ce4_8422_2325;
    let mut b: u64 = 0x6c62_272e_07bb_0142;
    let mut feed = |bytes: &[u8]| {
        for &byte in bytes {
            a = (a ^ u64::from(byte)).wrapping_mul(PRIME);
            b = (b ^ u64::from(byte.rotate_left(3))).wrapping_mul(PRIME);
        }
    };
    feed(&salt.to_le_bytes());
    feed(&[0xff]);
    feed(customer_id.as_bytes());
    feed(&[0xff]);
    feed(session_id.as_bytes());
    let mut out = [0u8; 16];
    out[..8].copy_from_slice(&a.to_be_bytes());
    out[8..].copy_from_slice(&b.to_be_bytes());
    out
}

/// The store side of the lane: restores the aggregator, applies batches, writes commits. No
/// Kafka here, so tests can drive it directly.
pub struct LaneCore<S: StateStore> {
    store: S,
    agg: Aggregator,
    topic: String,
    insights_topic: String,
    format: tact_codec::InputFormat,
    max_message_bytes: usize,
    salt: i64,
    applied: HashMap<i32, i64>,
    next_seq: u64,
    metrics: Arc<InsightsMetrics>,
    pub summary: InsightsSummary,
}

impl<S: StateStore> std::fmt::Debug for LaneCore<S> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LaneCore")
            .field("next_seq", &self.next_seq)
            .finish()
    }
}

/// One consumed record.
#[derive(Debug, Clone)]
pub struct Input {
    pub partition: i32,
    pub offset: i64,
    pub value: Option<Vec<u8>>,
}

/// A finding to produce: (outbox sequence, message key, payload).
pub type OutRecord = (u64, Vec<u8>, Vec<u8>);

/// What a processed batch asks the Kafka edge to do.
#[derive(Debug, Default)]
pub struct Processed {
    /// (outbox sequence, key, payload), already durable in the store.
    pub records: Vec<OutRecord>,
    /// (topic, partition, highest offset consumed).
    pub consumed: Vec<(String, i32, i64)>,
}

impl<S: StateStore> LaneCore<S> {
    /// Restores every open session and window of `partitions` from `store`.
    pub fn open(
        settings: &InsightsSettings,
        store: S,
        partitions: &[i32],
        metrics: Arc<InsightsMetrics>,
    ) -> Result<Self, InsightsError> {
        let mut agg = Aggregator::new(settings.rules.clone());
        let mut applied = HashMap::new();
        let corrupt = |e: crate::codec::StateCodecError| {
            InsightsError::Fatal(format!(
                "{e}; inspect {} before restarting",
                settings.state_dir.display()
            ))
        };
        for &p in partitions {
            if let Some(o) = store.applied_offset(&settings.clickstream_topic, p)? {
                applied.insert(p, o);
            }
            if let Some(w) = store.meta(&wm_name(p))? {
                agg.restore_watermark(p, w);
            }
            // The index of one partition holds at most max_sessions_in_flight entries.
            let index = store.timers_in(p, i64::MIN, i64::MAX, usize::MAX)?;
            let refs: Vec<SessionRef> = index
                .iter()
                .filter_map(|t| <SessionRef>::try_from(t.key.as_slice()).ok())
                .collect();
            let keys: Vec<Vec<u8>> = refs.iter().map(|r| session_key(p, r)).collect();
            let key_refs: Vec<&[u8]> = keys.iter().map(Vec::as_slice).collect();
            for (r, v) in refs.iter().zip(store.multi_get(&key_refs)?) {
                if let Some(bytes) = v {
                    agg.restore_session(p, *r, decode_session(&bytes).map_err(corrupt)?);
                }
            }
        }
        let windows = store.timers_in(WINDOW_INDEX, i64::MIN, i64::MAX, usize::MAX)?;
        for t in windows {
            if let Some(bytes) = store.multi_get(&[window_key(t.due).as_slice()])?.remove(0) {
                agg.restore_window(t.due, decode_window(&bytes).map_err(corrupt)?);
            }
        }
        if let Some(c) = store.meta("insights/closed_through")? {
            agg.restore_closed_through(c);
        }
        let salt = match store.meta("insights/salt")? {
            Some(s) => s,
            None => {
                let nanos = SystemTime::now()
                    .duration_since(UNIX_EPOCH)
                    .map_or(0, |d| d.as_nanos());
                let salt = (nanos as i64) ^ (i64::from(std::process::id()) << 32) ^ 0x5bd1_e995;
                store.commit(&Commit {
                    meta_puts: vec![("insights/salt".into(), salt)],
                    ..Commit::default()
                })?;
                salt
            }
        };
        let next_seq = store.next_outbox_seq()?;
        metrics
            .sessions_in_flight
            .set(i64::try_from(agg.sessions_in_flight()).unwrap_or(i64::MAX));
        tracing::info!(
            sessions = agg.sessions_in_flight(),
            windows = ?agg.open_windows(),
            "insights state restored"
        );
        Ok(LaneCore {
            store,
            agg,
            topic: settings.clickstream_topic.clone(),
            insights_topic: settings.insights_topic.clone(),
            format: settings.clickstream_format,
            max_message_bytes: settings.max_message_bytes,
            salt,
            applied,
            next_seq,
            metrics,
            summary: InsightsSummary::default(),
        })
    }

    pub fn store(&self) -> &S {
        &self.store
    }

    pub fn aggregator(&self) -> &Aggregator {
        &self.agg
    }

    /// Applies one batch and writes it in one commit (with `outbox_deletes`, the acknowledged
    /// findings of earlier batches).
    pub fn process(
        &mut self,
        batch: Vec<Input>,
        outbox_deletes: Vec<u64>,
    ) -> Result<Processed, InsightsError> {
        let mut consumed: BTreeMap<i32, i64> = BTreeMap::new();
        let mut applied: BTreeMap<i32, i64> = BTreeMap::new();
        let mut tally = Tally::default();
        for input in batch {
            let slot = consumed.entry(input.partition).or_insert(input.offset);
            *slot = (*slot).max(input.offset);
            self.metrics.events_consumed.inc();
            let done = applied
                .get(&input.partition)
                .or(self.applied.get(&input.partition))
                .copied()
                .unwrap_or(-1);
            if input.offset <= done {
                self.metrics.events_skipped.inc();
                self.summary.skipped += 1;
                continue;
            }
            applied.insert(input.partition, input.offset);
            let bytes = input.value.as_deref().unwrap_or_default();
            match decode_click(bytes, self.format, self.max_message_bytes) {
                Ok(ev) => {
                    let r = session_ref(self.salt, &ev.customer_id, &ev.session_id);
                    self.agg.apply(input.partition, r, &ev, &mut tally);
                    self.summary.events += 1;
                }
                Err(e) => {
                    // The decision lane dead-letters the same record; here it is only counted.
                    self.metrics.decode_errors.inc();
                    tracing::debug!(partition = input.partition, offset = input.offset, error = %e, "undecodable record skipped");
                }
            }
        }
        let closed = self.agg.close_ready();
        let offsets: Vec<(String, i32, i64)> = applied
            .iter()
            .map(|(p, o)| (self.topic.clone(), *p, *o))
            .collect();
        let records = self.commit(tally, closed, offsets, outbox_deletes)?;
        self.applied.extend(applied);
        Ok(Processed {
            records,
            consumed: consumed
                .into_iter()
                .map(|(p, o)| (self.topic.clone(), p, o))
                .collect(),
        })
    }

    /// The input is idle: move every partition's watermark to wall-clock `now`, ending sessions
    /// and closing windows a quiet site would otherwise keep open.
    pub fn advance_all(
        &mut self,
        partitions: &[i32],
        now: i64,
        outbox_deletes: Vec<u64>,
    ) -> Result<Processed, InsightsError> {
        let mut tally = Tally::default();
        for &p in partitions {
            self.agg.advance(p, now, &mut tally);
        }
        let closed = self.agg.close_ready();
        let records = self.commit(tally, closed, Vec::new(), outbox_deletes)?;
        Ok(Processed {
            records,
            consumed: Vec::new(),
        })
    }

    fn commit(
        &mut self,
        tally: Tally,
        closed: Vec<ClosedWindow>,
        offsets: Vec<(String, i32, i64)>,
        outbox_deletes: Vec<u64>,
    ) -> Result<Vec<OutRecord>, InsightsError> {
        let changes = self.agg.take_changes();
        let mut c = Commit {
            offsets,
            outbox_deletes,
            ..Commit::default()
        };
        for (p, r) in &changes.sessions_put {
            if let Some(buf) = self.agg.session(*p, r) {
                c.state_puts.push((session_key(*p, r), encode_session(buf)));
            }
        }
        for (p, r) in &changes.sessions_deleted {
            c.state_deletes.push(session_key(*p, r));
        }
        for (p, start, r) in &changes.session_index_put {
            c.timer_puts.push(Timer {
                partition: *p,
                due: *start,
                key: r.to_vec(),
            });
        }
        for (p, start, r) in &changes.session_index_deleted {
            c.timer_deletes.push(Timer {
                partition: *p,
                due: *start,
                key: r.to_vec(),
            });
        }
        for start in &changes.windows_put {
            if let Some(w) = self.agg.window(*start) {
                c.state_puts.push((window_key(*start), encode_window(w)));
            }
        }
        for start in &changes.windows_created {
            c.timer_puts.push(Timer {
                partition: WINDOW_INDEX,
                due: *start,
                key: b"w".to_vec(),
            });
        }
        for start in &changes.windows_deleted {
            c.state_deletes.push(window_key(*start));
            c.timer_deletes.push(Timer {
                partition: WINDOW_INDEX,
                due: *start,
                key: b"w".to_vec(),
            });
        }
        for p in &changes.watermarks {
            if let Some(w) = self.agg.watermark(*p) {
                c.meta_puts.push((wm_name(*p), w));
            }
        }
        if changes.closed_through_moved {
            c.meta_puts
                .push(("insights/closed_through".into(), self.agg.closed_through()));
        }
        let mut records = Vec::new();
        let mut published = 0u64;
        let mut held = 0u64;
        for window in &closed {
            for f in &window.findings {
                let key = f.finding_id.clone().into_bytes();
                let payload = encode_finding(f);
                c.outbox_puts
                    .push((self.next_seq, encode_outbox(&key, &payload)));
                records.push((self.next_seq, key, payload));
                self.next_seq += 1;
                published += 1;
            }
            for n in window.held_back.values() {
                held += n;
            }
        }
        if c.is_empty() {
            return Ok(records);
        }
        self.write(&c)?;
        // Count only what is durable.
        self.metrics.record(&tally);
        self.metrics
            .sessions_in_flight
            .set(i64::try_from(self.agg.sessions_in_flight()).unwrap_or(i64::MAX));
        for window in &closed {
            self.metrics.windows_closed.inc();
            for f in &window.findings {
                self.metrics
                    .findings_published
                    .get_or_create(&KindLabel {
                        kind: f.kind.as_str(),
                    })
                    .inc();
            }
            for (kind, n) in &window.held_back {
                self.metrics
                    .findings_held_back
                    .get_or_create(&KindLabel {
                        kind: kind.as_str(),
                    })
                    .inc_by(*n);
            }
            tracing::info!(
                window_start = window.start,
                window_end = window.end,
                sessions = window.sessions,
                findings = window.findings.len(),
                held_back = window.held_back.values().sum::<u64>(),
                "window closed"
            );
        }
        self.summary.sessions_assembled += tally.sessions_assembled;
        self.summary.windows_closed += closed.len() as u64;
        self.summary.findings_published += published;
        self.summary.findings_held_back += held;
        Ok(records)
    }

    pub fn write(&mut self, commit: &Commit) -> Result<(), InsightsError> {
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

    /// Outbox entries the previous run wrote but did not see acknowledged.
    pub fn pending(&self) -> Result<Vec<OutRecord>, InsightsError> {
        self.store
            .pending_outbox()?
            .into_iter()
            .map(|(seq, bytes)| {
                decode_outbox(&bytes)
                    .map(|(k, v)| (seq, k, v))
                    .ok_or_else(|| InsightsError::Fatal(format!("outbox entry {seq} is corrupt")))
            })
            .collect()
    }

    pub fn insights_topic(&self) -> &str {
        &self.insights_topic
    }
}

/// The running lane: the store side plus the consumer, the producer and the offset tracker.
struct Lane {
    settings: InsightsSettings,
    core: LaneCore<RocksStore>,
    consumer: BaseConsumer,
    producer: ThreadedProducer<DeliveryContext>,
    reports: Receiver<Delivery>,
    tracker: OffsetTracker,
    metrics: Arc<InsightsMetrics>,
    health: Arc<Health>,
    partitions: Vec<i32>,
    in_flight: HashMap<u64, (Vec<u8>, Vec<u8>)>,
    resend: VecDeque<u64>,
    acknowledged: Vec<u64>,
    last_commit: Instant,
    last_input: Instant,
    advanced_at_idle: bool,
}

/// Partitions of `topic`, after checking that `also` exists too. Retries for 30 s.
fn partitions_of(
    consumer: &BaseConsumer,
    settings: &InsightsSettings,
) -> Result<Vec<i32>, InsightsError> {
    let deadline = Instant::now() + Duration::from_secs(30);
    let md = loop {
        match consumer.fetch_metadata(None, Duration::from_secs(5)) {
            Ok(m) => break m,
            Err(e) if Instant::now() < deadline => {
                tracing::warn!(error = %e, bootstrap = %settings.bootstrap_servers, "cluster not reachable yet; retrying");
                std::thread::sleep(Duration::from_millis(500));
            }
            Err(e) => {
                return Err(InsightsError::Setup(format!(
                    "cannot reach Kafka at {}: {e}",
                    settings.bootstrap_servers
                )))
            }
        }
    };
    let find = |name: &str| {
        md.topics()
            .iter()
            .find(|t| t.name() == name && !t.partitions().is_empty())
            .map(|t| t.partitions().iter().map(|p| p.id()).collect::<Vec<i32>>())
    };
    let missing: Vec<&str> = [&settings.clickstream_topic, &settings.insights_topic]
        .into_iter()
        .filter(|t| find(t).is_none())
        .map(String::as_str)
        .collect();
    if !missing.is_empty() {
        return Err(InsightsError::Setup(format!(
            "topic(s) {missing:?} do not exist on {}; create them first (tact creates no topics)",
            settings.bootstrap_servers
        )));
    }
    let mut parts = find(&settings.clickstream_topic).unwrap_or_default();
    parts.sort_unstable();
    Ok(parts)
}

/// Runs the insights lane until `stop` is set, then drains within the shutdown deadline.
/// Serves `/metrics`, `/healthz`, `/readyz` on `settings.http_listen` meanwhile.
///
/// The lane is a singleton per consumer group: it assigns itself every partition of the
/// clickstream (windows need all of them) and keeps offsets in its own group.
pub fn run_insights(
    settings: InsightsSettings,
    stop: &AtomicBool,
) -> Result<InsightsSummary, InsightsError> {
    let mut registry = prometheus_client::registry::Registry::with_prefix("tact");
    let metrics = Arc::new(InsightsMetrics::register(&mut registry));
    let health = Arc::new(Health::default());
    let http_stop = Arc::new(AtomicBool::new(false));
    let bound = crate::metrics::serve(
        settings.http_listen,
        Arc::new(registry),
        health.clone(),
        http_stop.clone(),
    )
    .map_err(|e| InsightsError::Setup(format!("cannot listen on {}: {e}", settings.http_listen)))?;
    tracing::info!(addr = %bound, "serving /metrics /healthz /readyz");
    let result = run_with(settings, stop, metrics, health);
    http_stop.store(true, Ordering::Relaxed);
    result
}

/// [`run_insights`] with metrics and health owned by the caller (e.g. registered in a shared
/// registry served elsewhere).
pub fn run_with(
    settings: InsightsSettings,
    stop: &AtomicBool,
    metrics: Arc<InsightsMetrics>,
    health: Arc<Health>,
) -> Result<InsightsSummary, InsightsError> {
    let consumer: BaseConsumer = consumer_config(
        &settings.bootstrap_servers,
        &settings.group_id,
        &settings.client,
    )
    .set_log_level(RDKafkaLogLevel::Warning)
    .create()
    .map_err(|e| InsightsError::Setup(format!("cannot create the Kafka consumer: {e}")))?;
    let (tx, reports) = channel();
    let producer: ThreadedProducer<DeliveryContext> =
        producer_config(&settings.bootstrap_servers, &settings.client)
            .create_with_context(DeliveryContext { reports: tx })
            .map_err(|e| InsightsError::Setup(format!("cannot create the Kafka producer: {e}")))?;
    let partitions = partitions_of(&consumer, &settings)?;
    let store = RocksStore::open(
        &settings.state_dir,
        &RocksOptions {
            block_cache_bytes: settings.block_cache_bytes,
            ..RocksOptions::default()
        },
    )
    .map_err(|e| InsightsError::Setup(e.to_string()))?;
    let core = LaneCore::open(&settings, store, &partitions, metrics.clone())?;
    let lane = Lane {
        settings,
        core,
        consumer,
        producer,
        reports,
        tracker: OffsetTracker::new(),
        metrics,
        health,
        partitions,
        in_flight: HashMap::new(),
        resend: VecDeque::new(),
        acknowledged: Vec::new(),
        last_commit: Instant::now(),
        last_input: Instant::now(),
        advanced_at_idle: false,
    };
    lane.run(stop)
}

impl Lane {
    fn run(mut self, stop: &AtomicBool) -> Result<InsightsSummary, InsightsError> {
        for (seq, key, payload) in self.core.pending()? {
            self.send(seq, key, payload)?;
            self.tracker.open_batch(Vec::new(), &[seq]);
        }
        let mut tpl = TopicPartitionList::new();
        for p in &self.partitions {
            tpl.add_partition_offset(&self.settings.clickstream_topic, *p, Offset::Stored)
                .map_err(|e| InsightsError::Setup(format!("cannot assign partition {p}: {e}")))?;
        }
        self.consumer
            .assign(&tpl)
            .map_err(|e| InsightsError::Setup(format!("cannot assign the clickstream: {e}")))?;
        self.health.ready.store(true, Ordering::Relaxed);
        tracing::info!(
            topic = %self.settings.clickstream_topic,
            partitions = ?self.partitions,
            group = %self.settings.group_id,
            "insights lane consuming"
        );
        let result = self.work(stop);
        let drained = self.drain();
        result.and(drained).map(|()| self.core.summary.clone())
    }

    fn work(&mut self, stop: &AtomicBool) -> Result<(), InsightsError> {
        while !stop.load(Ordering::Relaxed) {
            self.pump_deliveries()?;
            self.maybe_commit(false)?;
            if self.in_flight.len() >= MAX_IN_FLIGHT {
                std::thread::sleep(Duration::from_millis(5));
                continue;
            }
            let batch = self.poll_batch(stop);
            if !batch.is_empty() {
                self.last_input = Instant::now();
                self.advanced_at_idle = false;
                let acknowledged = std::mem::take(&mut self.acknowledged);
                let processed = self.core.process(batch, acknowledged)?;
                self.dispatch(processed)?;
            } else if let Some(idle) = self.settings.idle_advance {
                if !self.advanced_at_idle && self.last_input.elapsed() >= idle {
                    let acknowledged = std::mem::take(&mut self.acknowledged);
                    let parts = self.partitions.clone();
                    let processed = self.core.advance_all(&parts, now_ms(), acknowledged)?;
                    self.dispatch(processed)?;
                    self.advanced_at_idle = true;
                    self.last_input = Instant::now();
                }
            }
        }
        Ok(())
    }

    fn dispatch(&mut self, processed: Processed) -> Result<(), InsightsError> {
        let mut seqs = Vec::with_capacity(processed.records.len());
        for (seq, key, payload) in processed.records {
            self.send(seq, key, payload)?;
            seqs.push(seq);
        }
        self.tracker.open_batch(processed.consumed, &seqs);
        self.metrics
            .outbox_pending
            .set(i64::try_from(self.in_flight.len()).unwrap_or(i64::MAX));
        Ok(())
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
                Some(Ok(m)) => batch.push(Input {
                    partition: m.partition(),
                    offset: m.offset(),
                    value: m.payload().map(<[u8]>::to_vec),
                }),
            }
            if remaining.is_zero() {
                break;
            }
        }
        batch
    }

    fn send(&mut self, seq: u64, key: Vec<u8>, payload: Vec<u8>) -> Result<(), InsightsError> {
        loop {
            let attempt = BaseRecord::with_opaque_to(&self.settings.insights_topic, seq as usize)
                .key(&key[..])
                .payload(&payload[..]);
            match self.producer.send(attempt) {
                Ok(()) => break,
                Err((KafkaError::MessageProduction(RDKafkaErrorCode::QueueFull), _)) => {
                    self.pump_deliveries()?;
                    std::thread::sleep(Duration::from_millis(2));
                }
                Err((e, _)) => {
                    return Err(InsightsError::Fatal(format!(
                        "cannot produce to {}: {e}; the finding stays in the outbox and is re-sent on restart",
                        self.settings.insights_topic
                    )))
                }
            }
        }
        self.in_flight.insert(seq, (key, payload));
        Ok(())
    }

    fn pump_deliveries(&mut self) -> Result<(), InsightsError> {
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
            if let Some((key, payload)) = self.in_flight.remove(&seq) {
                self.send(seq, key, payload)?;
            }
        }
        self.metrics
            .outbox_pending
            .set(i64::try_from(self.in_flight.len()).unwrap_or(i64::MAX));
        Ok(())
    }

    fn maybe_commit(&mut self, force: bool) -> Result<(), InsightsError> {
        if !force && self.last_commit.elapsed() < self.settings.commit_interval {
            return Ok(());
        }
        self.last_commit = Instant::now();
        let offsets = self.tracker.take_committable();
        if !self.acknowledged.is_empty() {
            let deletes = std::mem::take(&mut self.acknowledged);
            self.core.write(&Commit {
                outbox_deletes: deletes,
                ..Commit::default()
            })?;
        }
        if offsets.is_empty() {
            return Ok(());
        }
        // What these offsets produced must survive power loss before Kafka forgets the input.
        self.core.store().sync()?;
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
            Err(e) => {
                tracing::warn!(error = %e, "offset commit failed; applied offsets in the store prevent double counting");
                0
            }
        };
        Ok(())
    }

    fn drain(&mut self) -> Result<(), InsightsError> {
        self.health.draining.store(true, Ordering::Relaxed);
        let deadline = Instant::now() + self.settings.shutdown_deadline;
        while !self.in_flight.is_empty() && Instant::now() < deadline {
            self.pump_deliveries()?;
            std::thread::sleep(Duration::from_millis(5));
        }
        self.pump_deliveries()?;
        self.maybe_commit(true)?;
        self.core.store().sync()?;
        let _ = self.producer.flush(Duration::from_secs(1));
        self.core.summary.unacknowledged_at_exit = self.in_flight.len();
        if !self.in_flight.is_empty() {
            tracing::warn!(
                records = self.in_flight.len(),
                "findings not acknowledged before the shutdown deadline stay in the outbox and are re-sent on restart"
            );
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::codec::decode_finding;
    use tact_codec::{encode_click, InputFormat};
    use tact_core::{ClickEvent, EventKind, Timestamp};

    const MIN: i64 = 60_000;
    const T0: i64 = 1_717_200_000_000;

    fn settings(dir: &std::path::Path) -> InsightsSettings {
        let mut s = InsightsSettings::load(None, &[]).expect("defaults");
        s.state_dir = dir.to_owned();
        s.clickstream_format = InputFormat::Json;
        s.rules.min_sessions = 3;
        s.rules.target_pages = vec!["/help/shipping".into()];
        s
    }

    /// Two partitions; 8 sessions each walking a long way to the shipping page, then one event
    /// per partition far in the future that closes the window.
    fn input() -> Vec<Input> {
        let pages = ["/", "/c/a", "/c/b", "/p/x", "/help", "/help/shipping"];
        let mut per_part: Vec<Vec<Vec<u8>>> = vec![Vec::new(), Vec::new()];
        for s in 0..16i64 {
            for (i, page) in pages.iter().enumerate() {
                let ev = ClickEvent {
                    event_id: format!("e{s}-{i}"),
                    customer_id: format!("cust-{s}"),
                    session_id: format!("sess-{s}"),
                    event_time: Timestamp(T0 + s * MIN + i as i64 * MIN),
                    kind: EventKind::PageView,
                    page: Some((*page).into()),
                    category: None,
                    product_id: None,
                    search_query: None,
                    search_results: None,
                    scroll_depth: None,
                    dwell_ms: None,
                    items: vec![],
                    gift: false,
                    decision_id: None,
                    suggestion_kind: None,
                    gpc: false,
                };
                per_part[(s % 2) as usize].push(encode_click(&ev, InputFormat::Json, 0));
            }
        }
        for (p, records) in per_part.iter_mut().enumerate() {
            let ev = ClickEvent {
                event_id: format!("flush-{p}"),
                customer_id: format!("flush-{p}"),
                session_id: "flush".into(),
                event_time: Timestamp(T0 + 24 * 60 * MIN),
                kind: EventKind::Other,
                page: None,
                category: None,
                product_id: None,
                search_query: None,
                search_results: None,
                scroll_depth: None,
                dwell_ms: None,
                items: vec![],
                gift: false,
                decision_id: None,
                suggestion_kind: None,
                gpc: false,
            };
            records.push(encode_click(&ev, InputFormat::Json, 0));
        }
        let mut out = Vec::new();
        for (p, records) in per_part.into_iter().enumerate() {
            for (o, v) in records.into_iter().enumerate() {
                out.push(Input {
                    partition: p as i32,
                    offset: o as i64,
                    value: Some(v),
                });
            }
        }
        // Interleave the partitions like a consumer would.
        out.sort_by_key(|i| (i.offset, i.partition));
        out
    }

    fn findings(records: &[OutRecord]) -> Vec<(String, i64, String)> {
        let mut out: Vec<(String, i64, String)> = records
            .iter()
            .map(|(_, _, v)| {
                let f = decode_finding(v).expect("decodes");
                (f.finding_id, f.sessions, f.kind)
            })
            .collect();
        out.sort();
        out.dedup();
        out
    }

    #[test]
    fn a_crash_and_replay_from_older_offsets_never_double_counts_a_window() {
        let metrics = Arc::new(InsightsMetrics::default());
        let all = input();
        // Straight run, one record per batch.
        let dir = tempfile::tempdir().expect("tempdir");
        let s = settings(dir.path());
        let store = RocksStore::open(dir.path(), &RocksOptions::default()).expect("open");
        let mut core = LaneCore::open(&s, store, &[0, 1], metrics.clone()).expect("core");
        let mut straight = Vec::new();
        for i in &all {
            straight.extend(
                core.process(vec![i.clone()], vec![])
                    .expect("batch")
                    .records,
            );
        }
        let straight = findings(&straight);
        assert!(
            straight
                .iter()
                .any(|(_, n, k)| k == "HARD_TO_FIND" && *n == 16),
            "{straight:?}"
        );

        // Crashed run: stop after a prefix (state committed, Kafka offsets not), reopen the
        // store, and replay everything from offset 0 in different batch sizes.
        let dir = tempfile::tempdir().expect("tempdir");
        let s = settings(dir.path());
        let mut crashed = Vec::new();
        for cut in [37usize, 61] {
            let store = RocksStore::open(dir.path(), &RocksOptions::default()).expect("open");
            let mut core = LaneCore::open(&s, store, &[0, 1], metrics.clone()).expect("core");
            crashed.extend(core.pending().expect("outbox"));
            for chunk in all[..cut].chunks(7) {
                crashed.extend(core.process(chunk.to_vec(), vec![]).expect("batch").records);
            }
        }
        let store = RocksStore::open(dir.path(), &RocksOptions::default()).expect("open");
        let mut core = LaneCore::open(&s, store, &[0, 1], metrics).expect("core");
        crashed.extend(core.pending().expect("outbox"));
        for chunk in all.chunks(13) {
            crashed.extend(core.process(chunk.to_vec(), vec![]).expect("batch").records);
        }
        assert!(core.summary.skipped > 0, "the replay re-read applied input");
        assert_eq!(findings(&crashed), straight);
    }
}
