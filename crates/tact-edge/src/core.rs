//! Everything of the edge but the group consumer: the job, the store, the producer and the relay,
//! the co-partitioned, global and changelog readers, and the partitions' lifecycle. It lives
//! behind a mutex because the group consumer's rebalance callback (which runs inside its poll,
//! on the same thread) must reach it to hand a revoked partition over cleanly.

use crate::assemble::assemble;
use crate::changelog::{self, Entry};
use crate::failpoint::crash_point;
use crate::job::{Cx, Emit, Input, Job, Record};
use crate::outbox::{InFlight, OutboxEntry};
use crate::purger::Purger;
use crate::settings::EdgeSettings;
use crate::EdgeError;
use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};
use std::sync::atomic::Ordering;
use std::sync::mpsc::Receiver;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};
use tact_kafka::rdkafka::consumer::{BaseConsumer, CommitMode, Consumer, ConsumerContext};
use tact_kafka::rdkafka::error::{KafkaError, RDKafkaErrorCode};
use tact_kafka::rdkafka::producer::{BaseRecord, ThreadedProducer};
use tact_kafka::rdkafka::{Message, Offset, TopicPartitionList};
use tact_kafka::{Delivery, DeliveryContext, DeliveryError, Kind, Relay};
use tact_store::{
    decode_i64, encode_i64, with_retry, Commit, LocalKey, MetaKey, Partition, Purge, Retrying,
    StateKey, StateKind, StateStore, StoreError, PROCESS,
};
use tact_telemetry::{ActionLabel, EdgeMetrics, EventLabel, Health, TopicLabel, TopicPartition};

/// Sequence numbers of restore markers (never outbox entries).
const MARKER_BASE: u64 = 1 << 62;
/// Changelog records written to the store per restore commit.
const RESTORE_CHUNK: usize = 5_000;
/// Restored state entries handed to the job per derive call.
const DERIVE_PAGE: usize = 2_000;
/// Global records taken per turn of the loop (each may be many commits).
const GLOBAL_PER_TURN: usize = 16;
/// How often the wanted offsets are committed again though none changed.
const RECOMMIT_EVERY: Duration = Duration::from_secs(30);
/// Time for global input per turn of the loop.
const GLOBAL_TURN: Duration = Duration::from_millis(100);
/// Store write attempts before a busy store is an error.
const STORE_ATTEMPTS: usize = 12;

/// High watermarks per (topic, partition), from librdkafka's statistics.
pub(crate) type Watermarks = Arc<Mutex<HashMap<(String, i32), i64>>>;

fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

/// Where a restoring partition is.
#[derive(Debug)]
enum Phase {
    /// The marker is to be written.
    Start,
    /// The marker (its sequence number) is on its way.
    Marker(u64),
    /// Reading the changelog up to the marker. `verify`: this store's data is the base and only
    /// has to be shown current (every record since its checkpoint is its own). `fence`: the
    /// newest tenure read so far; a record of an older one is stale.
    Reading {
        until: i64,
        position: i64,
        verify: bool,
        fence: i64,
        pending: Box<Chunk>,
    },
}

/// Restored changes not yet written, in changelog order: the last write of a key wins (a put,
/// a tombstone and a put again must end as the put, whatever order a commit applies them in).
#[derive(Debug, Default)]
struct Chunk {
    state: BTreeMap<StateKey, Option<Vec<u8>>>,
    meta: BTreeMap<MetaKey, Vec<u8>>,
    records: usize,
}

impl Chunk {
    fn into_commit(self, p: Partition) -> Commit {
        let mut c = Commit::default();
        for (k, v) in self.state {
            match v {
                Some(v) => c.state_puts.push((p, k, v)),
                None => c.state_deletes.push((p, k)),
            }
        }
        c.meta_puts = self.meta.into_iter().map(|(k, v)| (p, k, v)).collect();
        c
    }
}

#[derive(Debug)]
struct Restore {
    since: Instant,
    phase: Phase,
    records: u64,
    remaining: i64,
}

impl Part {
    fn phase(&self) -> Option<&Phase> {
        match self {
            Part::Restoring(r) => Some(&r.phase),
            _ => None,
        }
    }
}

#[derive(Debug)]
enum Part {
    Restoring(Box<Restore>),
    /// Restored; waiting for its inputs to be positioned.
    Ready,
    Active,
}

/// The process's lifecycle.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Process {
    Running,
    Draining,
}

pub(crate) struct Core<J: Job> {
    pub(crate) s: EdgeSettings,
    job: Option<J>,
    store: Arc<dyn StateStore>,
    store_id: [u8; 16],
    producer: ThreadedProducer<DeliveryContext>,
    reports: Receiver<Delivery>,
    follower: Option<BaseConsumer<crate::edge::StatsContext>>,
    global: Option<BaseConsumer<crate::edge::StatsContext>>,
    global_partitions: Vec<i32>,
    /// Next offset to read per global partition (None: not reading).
    global_position: BTreeMap<i32, i64>,
    /// The global record a job is not done with yet (continued next turn).
    global_current: Option<Record>,
    reader: BaseConsumer<crate::edge::StatsContext>,
    relay: Relay,
    /// Records of batches not yet done, for sending in their stage and re-sending.
    records: InFlight,
    next_seq: u64,
    markers: HashMap<u64, Partition>,
    next_marker: u64,
    /// Per partition held: the offset of the restore marker this instance's tenure began with,
    /// stamped on every changelog record it writes (see `changelog`).
    tenure: HashMap<Partition, i64>,
    /// Applied offsets of a ready partition whose outbox still holds output: committed when
    /// that output is acknowledged.
    resume_offsets: HashMap<Partition, Vec<(String, i64)>>,
    parts: BTreeMap<Partition, Part>,
    pub(crate) partition_count: i32,
    /// Last offset applied per (partition, input), as the store says.
    applied: HashMap<(Partition, Input), i64>,
    /// Next offset to read per co-partitioned (partition, input).
    co_position: HashMap<(Partition, u8), i64>,
    deletable: Vec<(Partition, u64)>,
    /// Outbox records now carrying their smaller form (refused once as too large).
    shrunk: HashSet<u64>,
    checkpoints: Vec<(Partition, i64)>,
    /// The offsets (next to read) to have committed per (topic, partition), and whether any
    /// changed since the last commit. A commit can fail unseen (a rebalance in progress; the
    /// client does not report manual asynchronous commits), so they are all committed again
    /// every `RECOMMIT_EVERY`: a partition that gets no more input keeps no old offset.
    commit_wanted: BTreeMap<(String, Partition), i64>,
    pub(crate) commit_dirty: bool,
    last_recommit: Instant,
    orphans: BTreeSet<Partition>,
    orphan_deadline: Option<Instant>,
    purger: Purger,
    pub(crate) metrics: EdgeMetrics,
    pub(crate) health: Arc<Health>,
    watermarks: Watermarks,
    pub(crate) process: Process,
    /// An error inside a rebalance callback, returned by the next turn of the loop.
    pub(crate) failed: Option<EdgeError>,
    last_commit: Instant,
    last_input: Instant,
    last_size_probe: Instant,
}

/// How to build a [`Core`].
pub(crate) struct Parts<J> {
    pub s: EdgeSettings,
    pub job: J,
    pub store: Arc<dyn StateStore>,
    pub producer: ThreadedProducer<DeliveryContext>,
    pub reports: Receiver<Delivery>,
    pub follower: Option<BaseConsumer<crate::edge::StatsContext>>,
    pub global: Option<BaseConsumer<crate::edge::StatsContext>>,
    pub global_partitions: Vec<i32>,
    pub reader: BaseConsumer<crate::edge::StatsContext>,
    pub partition_count: i32,
    pub metrics: EdgeMetrics,
    pub health: Arc<Health>,
    pub watermarks: Watermarks,
}

/// Store attempts of a job's reads before a busy store is an error.
const READ_ATTEMPTS: usize = 12;

fn never() -> bool {
    false
}

/// The view of the store a job gets: reads wait out a busy store.
fn retrying(store: &dyn StateStore) -> Retrying<'_> {
    Retrying {
        inner: store,
        attempts: READ_ATTEMPTS,
        stop: &never,
    }
}

fn fatal(e: StoreError) -> EdgeError {
    EdgeError::Fatal(e.to_string())
}

impl<J: Job> Core<J> {
    pub(crate) fn new(p: Parts<J>) -> Result<Core<J>, EdgeError> {
        let store = p.store;
        let store_id = match store.local(PROCESS, LocalKey::StoreId).map_err(fatal)? {
            Some(id) => <[u8; 16]>::try_from(id.as_slice())
                .map_err(|_| EdgeError::Fatal("the store id is corrupt".into()))?,
            None => {
                use rand::{Rng, SeedableRng};
                let id: [u8; 16] = rand::rngs::SmallRng::from_os_rng().random();
                store
                    .commit(&Commit {
                        local_puts: vec![(PROCESS, LocalKey::StoreId, id.to_vec())],
                        ..Commit::default()
                    })
                    .map_err(fatal)?;
                id
            }
        };
        if store
            .local(PROCESS, LocalKey::PurgePending)
            .map_err(fatal)?
            .is_some()
        {
            tracing::info!("a purge was interrupted; purging every deleted value now");
            store.purge(&Purge::All).map_err(fatal)?;
            store
                .commit(&Commit {
                    local_deletes: vec![(PROCESS, LocalKey::PurgePending)],
                    ..Commit::default()
                })
                .map_err(fatal)?;
        }
        let held = store.partitions().map_err(fatal)?;
        let mut next_seq = store
            .local(PROCESS, LocalKey::OutboxNext)
            .map_err(fatal)?
            .and_then(|v| decode_i64(&v))
            .map_or(0, |v| u64::try_from(v).unwrap_or(0));
        for q in &held {
            if let Some((seq, _)) = store.outbox(*q).map_err(fatal)?.last() {
                next_seq = next_seq.max(seq + 1);
            }
        }
        if !held.is_empty() {
            tracing::info!(partitions = ?held, "the store holds data of these partitions; each is checked against its changelog when assigned, and dropped if the group gives it to another instance");
        }
        let purger = Purger::start(store.clone());
        Ok(Core {
            s: p.s,
            job: Some(p.job),
            store,
            store_id,
            producer: p.producer,
            reports: p.reports,
            follower: p.follower,
            global: p.global,
            global_partitions: p.global_partitions,
            global_position: BTreeMap::new(),
            global_current: None,
            reader: p.reader,
            relay: Relay::new(),
            records: InFlight::default(),
            next_seq,
            markers: HashMap::new(),
            next_marker: MARKER_BASE,
            tenure: HashMap::new(),
            resume_offsets: HashMap::new(),
            parts: BTreeMap::new(),
            partition_count: p.partition_count,
            applied: HashMap::new(),
            co_position: HashMap::new(),
            deletable: Vec::new(),
            shrunk: HashSet::new(),
            checkpoints: Vec::new(),
            commit_wanted: BTreeMap::new(),
            commit_dirty: false,
            last_recommit: Instant::now(),
            orphans: held.into_iter().collect(),
            orphan_deadline: None,
            purger,
            metrics: p.metrics,
            health: p.health,
            watermarks: p.watermarks,
            process: Process::Running,
            failed: None,
            last_commit: Instant::now(),
            last_input: Instant::now(),
            last_size_probe: Instant::now(),
        })
    }

    pub(crate) fn store(&self) -> &Arc<dyn StateStore> {
        &self.store
    }

    pub(crate) fn take_job(&mut self) -> Option<J> {
        self.job.take()
    }

    fn job(&mut self) -> Result<&mut J, EdgeError> {
        self.job
            .as_mut()
            .ok_or_else(|| EdgeError::Fatal("the job has stopped".into()))
    }

    fn input_topic(&self, input: Input) -> Option<&str> {
        match input {
            Input::Driving => Some(&self.s.driving.name),
            Input::Co(i) => self
                .s
                .co_partitioned
                .get(usize::from(i))
                .map(|t| t.name.as_str()),
            Input::Global => self.s.global.as_ref().map(|t| t.name.as_str()),
        }
    }

    fn input_label(&self, input: Input) -> &'static str {
        match input {
            Input::Driving => self.s.driving.label,
            Input::Co(i) => self
                .s
                .co_partitioned
                .get(usize::from(i))
                .map_or("unknown", |t| t.label),
            Input::Global => self.s.global.as_ref().map_or("unknown", |t| t.label),
        }
    }

    /// Every partition assigned here, in any phase.
    pub(crate) fn assigned(&self) -> Vec<Partition> {
        self.parts.keys().copied().collect()
    }

    pub(crate) fn active(&self) -> Vec<Partition> {
        self.parts
            .iter()
            .filter(|(_, s)| matches!(s, Part::Active))
            .map(|(p, _)| *p)
            .collect()
    }

    fn write(&self, commit: &Commit) -> Result<(), EdgeError> {
        let stop = || false;
        with_retry(STORE_ATTEMPTS, &stop, || self.store.commit(commit)).map_err(fatal)
    }

    fn update_gauges(&self) {
        let restoring = self
            .parts
            .values()
            .filter(|s| !matches!(s, Part::Active))
            .count();
        self.metrics
            .partitions_assigned
            .set(i64::try_from(self.parts.len()).unwrap_or(i64::MAX));
        self.metrics
            .partitions_restoring
            .set(i64::try_from(restoring).unwrap_or(i64::MAX));
        let remaining: i64 = self
            .parts
            .values()
            .filter_map(|s| match s {
                Part::Restoring(r) => Some(r.remaining.max(0)),
                _ => None,
            })
            .sum();
        self.metrics.restore_remaining.set(remaining);
        self.health.restoring.store(restoring, Ordering::Relaxed);
        *lock(&self.health.partitions) = self.parts.keys().copied().collect();
        self.metrics
            .outbox_pending
            .set(i64::try_from(self.relay.outstanding()).unwrap_or(i64::MAX));
        self.metrics
            .outbox_pending_bytes
            .set(i64::try_from(self.records.bytes()).unwrap_or(i64::MAX));
    }

    // ---- sending ----------------------------------------------------------------------------

    /// Produces outbox records; a full producer queue is backpressure, not an error.
    fn send(&mut self, seqs: Vec<u64>) -> Result<(), EdgeError> {
        let mut queue = std::collections::VecDeque::from(seqs);
        while let Some(seq) = queue.pop_front() {
            if let Some(refusal) = self.produce(seq)? {
                queue.extend(self.refused_too_large(seq, &refusal)?);
            }
        }
        Ok(())
    }

    /// Hands one outbox record to the producer; returns the refusal when the record is too
    /// large to be sent as it is.
    fn produce(&mut self, seq: u64) -> Result<Option<String>, EdgeError> {
        let Some((p, entry)) = self.records.get(seq) else {
            return Ok(None); // withdrawn by an erasure
        };
        let r = &entry.record;
        let headers = (entry.kind != Kind::Output)
            .then(|| changelog::Stamp::headers(&self.store_id, self.tenure.get(p).copied()));
        loop {
            let mut attempt = BaseRecord::with_opaque_to(&r.topic, seq as usize).key(&r.key[..]);
            if let Some(v) = &r.value {
                attempt = attempt.payload(&v[..]);
            }
            if let Some(p) = r.partition {
                attempt = attempt.partition(p);
            }
            if let Some(h) = &headers {
                attempt = attempt.headers(h.clone());
            }
            match self.producer.send(attempt) {
                Ok(()) => break,
                Err((KafkaError::MessageProduction(RDKafkaErrorCode::QueueFull), _)) => {
                    self.health.progressed();
                    std::thread::sleep(Duration::from_millis(2));
                }
                Err((e, _)) if tact_kafka::refused_as_too_large(&e) => {
                    return Ok(Some(format!("{e} (topic {})", r.topic)));
                }
                Err((e, _)) => {
                    return Err(EdgeError::Fatal(format!(
                        "cannot produce to {}: {e}; the record stays in the outbox and is re-sent on restart",
                        r.topic
                    )))
                }
            }
        }
        if entry.kind != Kind::Output {
            self.metrics.changelog_records.inc();
        }
        Ok(None)
    }

    /// A record the producer or the broker will never take as it is: its smaller form goes
    /// instead; one whose smaller form was refused too is dropped (it must not stop its
    /// partition); one without a smaller form stops the process (a configuration problem).
    /// Returns what to send now.
    fn refused_too_large(&mut self, seq: u64, refusal: &str) -> Result<Vec<u64>, EdgeError> {
        let Some((p, topic, had_smaller)) = self.records.shrink(seq) else {
            return Ok(Vec::new());
        };
        if had_smaller {
            tracing::warn!(partition = p, %topic, error = %refusal, "record refused as too large; sending its smaller form");
            self.shrunk.insert(seq);
            self.metrics
                .oversized_outputs
                .get_or_create(&ActionLabel { action: "replaced" })
                .inc();
            return Ok(vec![seq]);
        }
        if self.shrunk.remove(&seq) {
            tracing::error!(partition = p, %topic, error = %refusal, "even the smaller form of a record was refused as too large; dropping it (raise the topic's max.message.bytes)");
            self.metrics
                .oversized_outputs
                .get_or_create(&ActionLabel { action: "dropped" })
                .inc();
            self.records.remove(seq);
            self.deletable.push((p, seq));
            return Ok(self.relay.withdraw(&[seq]));
        }
        Err(EdgeError::Fatal(format!(
            "a record for {topic} is larger than the producer or the topic accepts ({refusal}); raise message.max.bytes (kafka.client) and the topic's max.message.bytes; the record stays in the outbox"
        )))
    }

    /// Handles delivery reports that arrived (waiting up to `wait` for the first).
    pub(crate) fn pump(&mut self, wait: Duration) -> Result<(), EdgeError> {
        let mut first = true;
        loop {
            let report = if first && !wait.is_zero() {
                self.reports.recv_timeout(wait).ok()
            } else {
                self.reports.try_recv().ok()
            };
            first = false;
            let Some(report) = report else {
                break;
            };
            if let Some(p) = self.markers.remove(&report.seq) {
                self.marker_delivered(p, report.seq, report.result)?;
                continue;
            }
            let again = match report.result {
                Ok((_, offset)) => {
                    crash_point("edge::after_delivery");
                    self.relay.acked(report.seq, offset)
                }
                Err(e) if e.too_large => {
                    self.metrics.delivery_errors.inc();
                    let mut again = self.relay.failed(report.seq);
                    again.retain(|s| *s != report.seq);
                    let mut first = self.refused_too_large(report.seq, &e.message)?;
                    first.append(&mut again);
                    first
                }
                Err(e) => {
                    self.metrics.delivery_errors.inc();
                    tracing::warn!(error = %e, "delivery failed; sending again from the outbox");
                    self.relay.failed(report.seq)
                }
            };
            self.send(again)?;
        }
        for (p, seq) in self.relay.take_deletable() {
            self.records.remove(seq);
            self.shrunk.remove(&seq);
            self.deletable.push((p, seq));
        }
        self.checkpoints.extend(self.relay.take_checkpoints());
        self.update_gauges();
        Ok(())
    }

    /// Whether the broker is too far behind to take more input.
    pub(crate) fn backpressured(&self) -> bool {
        self.relay.outstanding() >= self.s.max_in_flight
            || self.records.bytes() >= self.s.max_in_flight_bytes
    }

    // ---- committing -------------------------------------------------------------------------

    /// Outbox deletes, checkpoints and the outbox sequence to write with the next commit.
    fn bookkeeping(&mut self, commit: &mut Commit) {
        commit.outbox_deletes.append(&mut self.deletable);
        for (p, ck) in self.checkpoints.drain(..) {
            commit
                .local_puts
                .push((p, LocalKey::Checkpoint, encode_i64(ck)));
        }
    }

    /// Writes what one job call asked for in one commit, and sends what may go now.
    pub(crate) fn apply(&mut self, emit: Emit) -> Result<(), EdgeError> {
        if emit.is_empty() {
            return Ok(());
        }
        let topics: Vec<(Input, String)> = std::iter::once(Input::Driving)
            .chain((0..self.s.co_partitioned.len()).map(|i| Input::Co(i as u8)))
            .filter_map(|i| self.input_topic(i).map(|t| (i, t.to_owned())))
            .collect();
        let topic_of = |input: Input| {
            topics
                .iter()
                .find(|(i, _)| *i == input)
                .map(|(_, t)| t.clone())
        };
        let mut a = assemble(emit, self.next_seq, &self.s.changelog, &topic_of);
        self.bookkeeping(&mut a.commit);
        // An erasure's purge is queued with its commit (which carries the pending flag).
        let purge = std::mem::take(&mut a.purge);
        if purge.is_empty() {
            self.write(&a.commit)?;
        } else {
            self.purger.schedule(|| self.write(&a.commit), purge)?;
        }
        crash_point("edge::after_store_commit");
        self.next_seq = a.next_seq;
        for (p, input, offset) in &a.applied {
            self.applied.insert((*p, *input), *offset);
        }
        for (seq, p, entry) in a.entries {
            self.records.insert(seq, p, entry);
        }
        for s in &a.withdrawn {
            self.records.remove(*s);
            self.shrunk.remove(s);
        }
        let mut send = self.relay.withdraw(&a.withdrawn);
        for (p, b) in a.stages {
            send.extend(self.relay.open(p, b.offsets, b.outputs, b.data, b.meta));
        }
        self.send(send)?;
        crash_point("edge::after_send");
        self.update_gauges();
        Ok(())
    }

    /// Writes acknowledged deletes and checkpoints, makes the store durable, and commits the
    /// input offsets whose batches are done (every `commit_interval`, or now with `force`).
    pub(crate) fn commit_offsets<C: ConsumerContext>(
        &mut self,
        group: &BaseConsumer<C>,
        force: bool,
    ) -> Result<(), EdgeError> {
        if !force && self.last_commit.elapsed() < self.s.commit_interval {
            return Ok(());
        }
        self.last_commit = Instant::now();
        let mut commit = Commit::default();
        self.bookkeeping(&mut commit);
        if !commit.is_empty() {
            self.write(&commit)?;
            crash_point("edge::after_outbox_delete");
        }
        for (topic, partition, next) in self.relay.take_committable() {
            let slot = self.commit_wanted.entry((topic, partition)).or_insert(next);
            *slot = (*slot).max(next);
            self.commit_dirty = true;
        }
        self.update_lag();
        let recommit = !self.commit_wanted.is_empty()
            && (force || self.last_recommit.elapsed() >= RECOMMIT_EVERY);
        if !self.commit_dirty && !recommit {
            return Ok(());
        }
        self.last_recommit = Instant::now();
        self.commit_dirty = false;
        // The state behind these offsets must survive power loss before Kafka forgets the input.
        self.store.sync().map_err(fatal)?;
        let mut tpl = TopicPartitionList::new();
        for ((topic, partition), next) in &self.commit_wanted {
            if let Err(e) = tpl.add_partition_offset(topic, *partition, Offset::Offset(*next)) {
                tracing::warn!(error = %e, "cannot stage an offset commit");
            }
        }
        crash_point("edge::before_offset_commit");
        match group.commit(&tpl, CommitMode::Async) {
            Ok(()) => {
                crash_point("edge::after_offset_commit");
                self.metrics.commits.inc()
            }
            // Harmless: positions come from the applied offsets in the store and changelog.
            Err(e) => {
                tracing::warn!(error = %e, "offset commit failed; applied offsets in the store prevent re-application");
                self.commit_dirty = true;
                0
            }
        };
        Ok(())
    }

    fn update_lag(&self) {
        let hi = lock(&self.watermarks).clone();
        for p in self.active() {
            let inputs = std::iter::once(Input::Driving)
                .chain((0..self.s.co_partitioned.len()).map(|i| Input::Co(i as u8)));
            for input in inputs {
                let Some(topic) = self.input_topic(input) else {
                    continue;
                };
                let Some(high) = hi.get(&(topic.to_owned(), p)) else {
                    continue;
                };
                let next = self.applied.get(&(p, input)).map_or(0, |o| o + 1);
                self.metrics
                    .consumer_lag
                    .get_or_create(&TopicPartition {
                        topic: self.input_label(input),
                        partition: p,
                    })
                    .set((high - next).max(0));
            }
        }
    }

    // ---- processing -------------------------------------------------------------------------

    /// Records the co-partitioned consumer has ready.
    pub(crate) fn drain_follower(&mut self, batch: &mut Vec<Record>, max: usize) {
        let Some(follower) = &self.follower else {
            return;
        };
        while batch.len() < max {
            match follower.poll(Duration::ZERO) {
                None => break,
                Some(Err(e)) => {
                    tracing::warn!(error = %e, "consumer error (librdkafka retries)");
                    break;
                }
                Some(Ok(m)) => {
                    let Some(i) = self
                        .s
                        .co_partitioned
                        .iter()
                        .position(|t| t.name == m.topic())
                    else {
                        continue;
                    };
                    let i = i as u8;
                    self.co_position.insert((m.partition(), i), m.offset() + 1);
                    batch.push(Record {
                        input: Input::Co(i),
                        partition: m.partition(),
                        offset: m.offset(),
                        key: m.key().map(<[u8]>::to_vec),
                        value: m.payload().map(<[u8]>::to_vec),
                    });
                }
            }
        }
    }

    fn cx<'a>(store: &'a Retrying<'a>, partitions: &'a [Partition], count: i32) -> Cx<'a> {
        Cx {
            store,
            partitions,
            partition_count: count,
        }
    }

    /// Hands records of active partitions not yet applied to the job, and commits its answer.
    pub(crate) fn process(&mut self, batch: Vec<Record>) -> Result<(), EdgeError> {
        let held = self.job.as_ref().map_or(0, Job::held);
        if batch.is_empty() && held == 0 {
            return Ok(());
        }
        if !batch.is_empty() {
            self.last_input = Instant::now();
        }
        let started = Instant::now();
        let mut fresh = Vec::with_capacity(batch.len());
        // Counted as consumed once the job's answer is committed (below), so that a reader who
        // sees N consumed also sees what they produced pending (no window between the two).
        let mut consumed: Vec<&'static str> = Vec::with_capacity(batch.len());
        for r in batch {
            if !matches!(self.parts.get(&r.partition), Some(Part::Active)) {
                continue; // revoked meanwhile: its new owner reads it again
            }
            let label = self.input_label(r.input);
            consumed.push(label);
            if self
                .applied
                .get(&(r.partition, r.input))
                .is_some_and(|a| r.offset <= *a)
            {
                self.metrics
                    .events_skipped
                    .get_or_create(&TopicLabel { topic: label })
                    .inc();
                continue;
            }
            fresh.push(r);
        }
        if fresh.is_empty() && held == 0 {
            for label in consumed {
                self.metrics.consumed(label);
            }
            return Ok(());
        }
        let active = self.active();
        let count = self.partition_count;
        let store = self.store.clone();
        let view = retrying(&*store);
        let emit = self
            .job()?
            .process(&Self::cx(&view, &active, count), fresh)
            .map_err(|e| EdgeError::Fatal(e.0))?;
        self.apply(emit)?;
        for label in consumed {
            self.metrics.consumed(label);
        }
        self.metrics
            .batch_duration
            .observe(started.elapsed().as_secs_f64());
        Ok(())
    }

    /// Reads a few records of the global input and lets the job apply each to its partitions.
    pub(crate) fn process_global(&mut self) -> Result<(), EdgeError> {
        if self.global_position.is_empty() {
            return Ok(());
        }
        // A turn is bounded in records and time: a release that fans out to many followers
        // takes several turns, and the loop keeps polling the group in between.
        let turn_ends = Instant::now() + GLOBAL_TURN;
        let mut polled = 0;
        while Instant::now() < turn_ends {
            let m = match self.global_current.take() {
                Some(m) => m,
                None => {
                    if polled >= GLOBAL_PER_TURN {
                        return Ok(());
                    }
                    let Some(global) = &self.global else {
                        return Ok(());
                    };
                    let m = match global.poll(Duration::ZERO) {
                        None => return Ok(()),
                        Some(Err(e)) => {
                            tracing::warn!(error = %e, "global input consumer error (librdkafka retries)");
                            return Ok(());
                        }
                        Some(Ok(m)) => Record {
                            input: Input::Global,
                            partition: m.partition(),
                            offset: m.offset(),
                            key: m.key().map(<[u8]>::to_vec),
                            value: m.payload().map(<[u8]>::to_vec),
                        },
                    };
                    polled += 1;
                    self.global_position.insert(m.partition, m.offset + 1);
                    if let Some(label) = self.s.global.as_ref().map(|t| t.label) {
                        self.metrics.consumed(label);
                    }
                    m
                }
            };
            if self.backpressured() {
                self.pump(Duration::from_millis(5))?;
                self.global_current = Some(m);
                continue;
            }
            let active = self.active();
            let count = self.partition_count;
            let store = self.store.clone();
            let view = retrying(&*store);
            let (emit, done) = self
                .job()?
                .process_global(&Self::cx(&view, &active, count), &m)
                .map_err(|e| EdgeError::Fatal(e.0))?;
            self.apply(emit)?;
            self.pump(Duration::ZERO)?;
            if !done {
                self.global_current = Some(m);
            }
        }
        Ok(())
    }

    pub(crate) fn idle(&mut self) -> Result<(), EdgeError> {
        let Some(after) = self.s.idle_after else {
            return Ok(());
        };
        if self.last_input.elapsed() < after || self.active().is_empty() {
            return Ok(());
        }
        let active = self.active();
        let count = self.partition_count;
        let store = self.store.clone();
        let view = retrying(&*store);
        let emit = self
            .job()?
            .idle(&Self::cx(&view, &active, count), now_ms())
            .map_err(|e| EdgeError::Fatal(e.0))?;
        self.apply(emit)
    }

    /// Housekeeping: dropped partitions' purges, orphans past their grace, the store size gauge.
    pub(crate) fn housekeeping(&mut self) -> Result<(), EdgeError> {
        if self
            .orphan_deadline
            .is_some_and(|d| Instant::now() >= d && !self.orphans.is_empty())
        {
            let orphans: Vec<Partition> = std::mem::take(&mut self.orphans).into_iter().collect();
            tracing::info!(partitions = ?orphans, "dropping the data of partitions the group gave to other instances");
            let drop = Commit {
                drop_partitions: orphans.clone(),
                local_puts: vec![Purger::flag()],
                ..Commit::default()
            };
            let purges = orphans.into_iter().map(Purge::Partition).collect();
            self.purger.schedule(|| self.write(&drop), purges)?;
        }
        if self.last_size_probe.elapsed() > Duration::from_secs(10) {
            self.metrics.store_size.set(self.store.size_bytes());
            self.last_size_probe = Instant::now();
        }
        Ok(())
    }

    // ---- the partition lifecycle ------------------------------------------------------------

    /// The group gave this instance `parts` (of the driving topic).
    pub(crate) fn on_assigned(&mut self, parts: &[Partition]) {
        self.metrics
            .rebalances
            .get_or_create(&EventLabel { event: "assigned" })
            .inc_by(parts.len() as u64);
        for p in parts {
            self.orphans.remove(p);
            self.parts.insert(
                *p,
                Part::Restoring(Box::new(Restore {
                    since: Instant::now(),
                    phase: Phase::Start,
                    records: 0,
                    remaining: 0,
                })),
            );
        }
        if self.orphan_deadline.is_none() {
            self.orphan_deadline = Some(Instant::now() + self.s.orphan_grace);
        }
        if !parts.is_empty() {
            tracing::info!(partitions = ?parts, "partitions assigned; checking their state against the changelog");
        }
        self.health.assigned.store(true, Ordering::Relaxed);
        self.update_gauges();
    }

    /// The group takes `parts` away. Unless they are `lost` (this instance was too slow and the
    /// group moved on without it), their output is waited for (up to the revoke deadline) and
    /// their offsets committed before they go; then their data leaves this store.
    pub(crate) fn on_revoked<C: ConsumerContext>(
        &mut self,
        group: &BaseConsumer<C>,
        parts: &[Partition],
        lost: bool,
    ) {
        let event = if lost { "lost" } else { "revoked" };
        self.metrics
            .rebalances
            .get_or_create(&EventLabel { event })
            .inc_by(parts.len() as u64);
        if parts.is_empty() {
            return;
        }
        tracing::info!(partitions = ?parts, lost, "partitions revoked");
        // While draining, the drain has already waited for the output (up to its deadline).
        if !lost && self.process == Process::Running {
            let deadline = Instant::now() + self.s.revoke_deadline;
            while parts.iter().any(|p| self.relay.busy(*p)) && Instant::now() < deadline {
                if let Err(e) = self.pump(Duration::from_millis(10)) {
                    self.failed = Some(e);
                    return;
                }
                self.health.progressed();
            }
            if let Err(e) = self.commit_offsets(group, true) {
                self.failed = Some(e);
                return;
            }
        }
        for p in parts {
            if self.relay.busy(*p) {
                tracing::warn!(
                    partition = p,
                    "revoked before all its output was acknowledged; its next owner restores from the changelog and applies again what the changelog lacks (any duplicate carries the original id)"
                );
            }
            if let Err(e) = self.close_partition(*p) {
                self.failed = Some(e);
                return;
            }
        }
        self.update_gauges();
    }

    /// Forgets a partition here. While running, its data leaves the store (its next owner
    /// restores it; an erasure there must not be undone by a stale copy here). While draining,
    /// the data stays, with its checkpoint, for a restart that gets it back.
    fn close_partition(&mut self, p: Partition) -> Result<(), EdgeError> {
        let state = self.parts.remove(&p);
        self.markers.retain(|_, q| *q != p);
        self.tenure.remove(&p);
        self.resume_offsets.remove(&p);
        for seq in self.relay.drop_partition(p) {
            self.records.remove(seq);
        }
        self.records.forget_partition(p);
        self.shrunk.retain(|s| self.records.contains(*s));
        self.deletable.retain(|(q, _)| *q != p);
        self.checkpoints.retain(|(q, _)| *q != p);
        self.applied.retain(|(q, _), _| *q != p);
        self.co_position.retain(|(q, _), _| *q != p);
        self.commit_wanted.retain(|(_, q), _| *q != p);
        if let Some(job) = self.job.as_mut() {
            job.close(p);
        }
        if matches!(state, Some(Part::Restoring(_))) {
            self.reassign_reader();
        }
        self.reassign_follower();
        self.reposition_global()?;
        if self.process == Process::Running {
            let drop = Commit {
                drop_partitions: vec![p],
                local_puts: vec![Purger::flag()],
                ..Commit::default()
            };
            self.purger
                .schedule(|| self.write(&drop), vec![Purge::Partition(p)])?;
        }
        Ok(())
    }

    // ---- restoring --------------------------------------------------------------------------

    fn marker_delivered(
        &mut self,
        p: Partition,
        seq: u64,
        result: Result<(i32, i64), DeliveryError>,
    ) -> Result<(), EdgeError> {
        let Some(Part::Restoring(r)) = self.parts.get_mut(&p) else {
            return Ok(()); // revoked meanwhile
        };
        if !matches!(r.phase, Phase::Marker(s) if s == seq) {
            return Ok(()); // the marker of an earlier assignment of this partition
        }
        let until = match result {
            Ok((_, offset)) => offset,
            Err(e) => {
                self.metrics.delivery_errors.inc();
                tracing::warn!(partition = p, error = %e, "cannot write the restore marker; retrying");
                r.phase = Phase::Start;
                return Ok(());
            }
        };
        let checkpoint = self
            .store
            .local(p, LocalKey::Checkpoint)
            .map_err(fatal)?
            .and_then(|v| decode_i64(&v));
        let (from, verify) = match checkpoint {
            Some(ck) if ck <= until + 1 => (ck, true),
            Some(ck) => {
                tracing::warn!(partition = p, checkpoint = ck, marker = until, "the changelog is shorter than this store's checkpoint (was it recreated?); restoring in full");
                (0, false)
            }
            None => (0, false),
        };
        if !verify {
            // The data here (if any) is not to be trusted: start the partition from nothing.
            self.write(&Commit {
                drop_partitions: vec![p],
                ..Commit::default()
            })?;
        }
        let Some(Part::Restoring(r)) = self.parts.get_mut(&p) else {
            return Ok(());
        };
        r.remaining = until - from;
        r.phase = Phase::Reading {
            until,
            position: from,
            verify,
            fence: -1,
            pending: Box::default(),
        };
        tracing::info!(
            partition = p,
            changelog = %self.s.changelog,
            from,
            to = until,
            mode = if verify { "checking that the state here is current" } else { "restoring in full" },
            "reading the changelog"
        );
        self.reassign_reader();
        Ok(())
    }

    /// Points the changelog reader at every partition being read, from where each stands.
    fn reassign_reader(&mut self) {
        let mut tpl = TopicPartitionList::new();
        for (p, s) in &self.parts {
            if let Some(Phase::Reading {
                position, until, ..
            }) = s.phase()
            {
                if position < until {
                    let _ =
                        tpl.add_partition_offset(&self.s.changelog, *p, Offset::Offset(*position));
                }
            }
        }
        if let Err(e) = self.reader.assign(&tpl) {
            tracing::warn!(error = %e, "cannot assign the changelog reader");
        }
    }

    /// Moves restores forward; returns the partitions whose state became ready.
    pub(crate) fn restore_step(&mut self) -> Result<Vec<Partition>, EdgeError> {
        // Markers for partitions that just arrived.
        let starting: Vec<Partition> = self
            .parts
            .iter()
            .filter(|(_, s)| matches!(s.phase(), Some(Phase::Start)))
            .map(|(p, _)| *p)
            .collect();
        for p in starting {
            let seq = self.next_marker;
            self.next_marker += 1;
            let value = self.store_id.to_vec();
            let key = changelog::marker_key();
            let headers = changelog::Stamp::headers(&self.store_id, None);
            let record = BaseRecord::with_opaque_to(&self.s.changelog, seq as usize)
                .key(&key[..])
                .payload(&value[..])
                .partition(p)
                .headers(headers);
            match self.producer.send(record) {
                Ok(()) => {
                    self.markers.insert(seq, p);
                    if let Some(Part::Restoring(r)) = self.parts.get_mut(&p) {
                        r.phase = Phase::Marker(seq);
                    }
                }
                Err((e, _)) => {
                    tracing::warn!(partition = p, error = %e, "cannot write the restore marker yet")
                }
            }
        }
        // Changelog records of partitions being read.
        let reading = self
            .parts
            .values()
            .any(|s| matches!(s.phase(), Some(Phase::Reading { .. })));
        let deadline = Instant::now() + Duration::from_millis(50);
        let mut done: BTreeSet<Partition> = BTreeSet::new();
        // Nothing between the checkpoint and the marker: ready without reading.
        for (p, s) in &self.parts {
            if let Some(Phase::Reading {
                position, until, ..
            }) = s.phase()
            {
                if position >= until {
                    done.insert(*p);
                }
            }
        }
        while reading && Instant::now() < deadline {
            let Some(item) = self.reader.poll(Duration::from_millis(10)) else {
                continue;
            };
            let m = match item {
                Ok(m) => m,
                Err(e) => {
                    tracing::warn!(error = %e, "changelog reader error (librdkafka retries)");
                    continue;
                }
            };
            let p = m.partition();
            let offset = m.offset();
            let headers = changelog::Stamp::read(m.headers());
            let ours = headers
                .store
                .as_ref()
                .is_some_and(|v| v[..] == self.store_id[..]);
            let key = m.key().map(<[u8]>::to_vec).unwrap_or_default();
            let value = m.payload().map(<[u8]>::to_vec);
            let bytes = key.len() + value.as_ref().map_or(0, Vec::len);
            let Some(Part::Restoring(r)) = self.parts.get_mut(&p) else {
                continue;
            };
            let Phase::Reading {
                until,
                position,
                verify,
                fence,
                pending,
            } = &mut r.phase
            else {
                continue;
            };
            if offset < *position {
                continue; // already read (a reassignment re-reads nothing twice)
            }
            *position = offset + 1;
            if offset >= *until {
                done.insert(p);
                continue;
            }
            r.records += 1;
            r.remaining = *until - offset - 1;
            self.metrics.restore_records.inc();
            self.metrics.restore_bytes.inc_by(bytes as u64);
            let entry = changelog::decode_key(&key);
            // A record stamped with a tenure older than one already written was written by an
            // instance that had lost the partition (a zombie: paused, cut off) after the next
            // owner began writing; that owner never saw it, so neither may we. Only a written
            // tenure fences: a marker alone does not (its writer may have lost the partition
            // before it landed, and never write).
            let stale = match headers.tenure {
                Some(t) if t < *fence => true,
                Some(t) => {
                    *fence = t;
                    false
                }
                None => false,
            };
            if *verify {
                if !ours || stale {
                    tracing::info!(partition = p, offset, "another instance wrote this partition since this store last held it; restoring in full");
                    *verify = false;
                    *position = 0;
                    *fence = -1;
                    r.remaining = *until;
                    **pending = Chunk::default();
                    let drop = Commit {
                        drop_partitions: vec![p],
                        ..Commit::default()
                    };
                    self.write(&drop)?;
                    self.reassign_reader();
                }
                continue;
            }
            if stale {
                self.metrics.restore_stale_records.inc();
                tracing::debug!(
                    partition = p,
                    offset,
                    "skipped a record written after its writer lost the partition"
                );
                continue;
            }
            match entry {
                Entry::State(k) => {
                    pending.state.insert(k, value);
                }
                Entry::Meta(k) => {
                    if let Some(v) = value {
                        pending.meta.insert(k, v);
                    }
                }
                Entry::Marker => {}
                Entry::Unknown => {
                    tracing::warn!(
                        partition = p,
                        offset,
                        "a changelog record this version does not know; skipped"
                    );
                }
            }
            pending.records += 1;
            if pending.records >= RESTORE_CHUNK {
                let chunk = std::mem::take(&mut **pending);
                self.write(&chunk.into_commit(p))?;
                crash_point("edge::after_restore_chunk");
            }
        }
        let mut ready = Vec::new();
        for p in done {
            self.finish_restore(p)?;
            ready.push(p);
        }
        if !ready.is_empty() {
            self.reassign_reader();
        }
        self.update_gauges();
        Ok(ready)
    }

    /// The changelog up to the marker is in the store: rebuild what the job derives from it,
    /// record the checkpoint, and mark the partition ready.
    fn finish_restore(&mut self, p: Partition) -> Result<(), EdgeError> {
        let Some(Part::Restoring(r)) = self.parts.remove(&p) else {
            return Ok(());
        };
        let r = *r;
        let Phase::Reading {
            until,
            verify,
            pending,
            ..
        } = r.phase
        else {
            self.parts.insert(p, Part::Restoring(Box::new(r)));
            return Ok(());
        };
        self.write(&pending.into_commit(p))?;
        crash_point("edge::after_restore_chunk");
        // From here this instance writes the partition: its records carry the marker's offset.
        self.tenure.insert(p, until);
        if !verify {
            // Timers and indexes follow from the state: rebuilt from what was restored.
            let job = self
                .job
                .as_ref()
                .ok_or_else(|| EdgeError::Fatal("the job has stopped".into()))?;
            for kind in [
                StateKind::Customer,
                StateKind::Session,
                StateKind::Window,
                StateKind::Merge,
            ] {
                let mut after = None;
                loop {
                    let page = self
                        .store
                        .scan_state(p, kind, after.as_ref(), DERIVE_PAGE)
                        .map_err(fatal)?;
                    if page.is_empty() {
                        break;
                    }
                    let derived = job.derive(p, &page).map_err(|e| EdgeError::Fatal(e.0))?;
                    if !derived.is_empty() {
                        with_retry(STORE_ATTEMPTS, &|| false, || self.store.commit(&derived))
                            .map_err(fatal)?;
                    }
                    after = page.last().map(|(k, _)| k.clone());
                    if page.len() < DERIVE_PAGE {
                        break;
                    }
                }
            }
        }
        let checkpoint = Commit {
            local_puts: vec![(p, LocalKey::Checkpoint, encode_i64(until + 1))],
            ..Commit::default()
        };
        if verify {
            self.write(&checkpoint)?;
        } else {
            // The changelog holds a deleted value until its tombstone (an erased customer's
            // earlier states, until the broker compacts them): a restore wrote it and deleted it
            // again, so it must leave the files like any erasure.
            let mut checkpoint = checkpoint;
            checkpoint.local_puts.push(Purger::flag());
            self.purger
                .schedule(|| self.write(&checkpoint), vec![Purge::Partition(p)])?;
        }
        let seconds = r.since.elapsed().as_secs_f64();
        self.metrics.restore_duration.observe(seconds);
        tracing::info!(
            partition = p,
            records = r.records,
            seconds = format!("{seconds:.2}"),
            mode = if verify {
                "state here was current"
            } else {
                "restored in full"
            },
            "partition state ready"
        );
        self.parts.insert(p, Part::Ready);
        Ok(())
    }

    /// Where each input of a ready partition resumes: after the last applied offset.
    pub(crate) fn resume_positions(
        &mut self,
        p: Partition,
    ) -> Result<Vec<(Input, Option<i64>)>, EdgeError> {
        let mut out = Vec::new();
        let inputs: Vec<Input> = std::iter::once(Input::Driving)
            .chain((0..self.s.co_partitioned.len()).map(|i| Input::Co(i as u8)))
            .collect();
        // Output of this store's last run still in its outbox: the offsets behind it are
        // committed once it is acknowledged, not before (it is sent again at activation).
        let outbox_pending = !self.store.outbox(p).map_err(fatal)?.is_empty();
        let mut held_back = Vec::new();
        for input in inputs {
            let Some(topic) = self.input_topic(input).map(str::to_owned) else {
                continue;
            };
            let applied = self
                .store
                .meta(p, &MetaKey::Applied(topic.clone()))
                .map_err(fatal)?
                .and_then(|v| decode_i64(&v));
            out.push((input, applied.map(|a| a + 1)));
            if let Some(a) = applied {
                self.applied.insert((p, input), a);
                if outbox_pending {
                    held_back.push((topic, a));
                } else {
                    // What a previous owner applied may not have been committed (its last
                    // commit can fail in the rebalance that moved the partition): commit it.
                    self.commit_wanted.insert((topic, p), a + 1);
                    self.commit_dirty = true;
                }
            }
        }
        if !held_back.is_empty() {
            self.resume_offsets.insert(p, held_back);
        }
        Ok(out)
    }

    /// The partition's inputs are positioned: open it in the job, resend what its outbox still
    /// holds, and start reading its co-partitioned and global inputs.
    pub(crate) fn activate(
        &mut self,
        p: Partition,
        co_positions: Vec<(u8, i64)>,
    ) -> Result<(), EdgeError> {
        let mut open: Vec<Partition> = self.active();
        open.push(p);
        open.sort_unstable();
        let count = self.partition_count;
        let store = self.store.clone();
        let view = retrying(&*store);
        self.job()?
            .open(&Self::cx(&view, &open, count), p)
            .map_err(|e| EdgeError::Fatal(e.0))?;
        for (i, pos) in co_positions {
            self.co_position.insert((p, i), pos);
        }
        self.parts.insert(p, Part::Active);
        self.resend_outbox(p)?;
        self.reassign_follower();
        self.reposition_global()?;
        self.update_gauges();
        Ok(())
    }

    /// Records of `p` a previous run wrote and did not see through: one batch again, outputs
    /// first, then the changelog, in their order.
    fn resend_outbox(&mut self, p: Partition) -> Result<(), EdgeError> {
        let pending = self.store.outbox(p).map_err(fatal)?;
        let offsets = self.resume_offsets.remove(&p).unwrap_or_default();
        if pending.is_empty() {
            for (topic, a) in offsets {
                self.commit_wanted.insert((topic, p), a + 1);
                self.commit_dirty = true;
            }
            return Ok(());
        }
        tracing::info!(
            partition = p,
            records = pending.len(),
            "sending again what the previous run wrote but did not see acknowledged"
        );
        let (mut outputs, mut data, mut meta) = (Vec::new(), Vec::new(), Vec::new());
        for (seq, bytes) in pending {
            let entry = OutboxEntry::decode(&bytes).ok_or_else(|| {
                EdgeError::Fatal(format!("outbox entry {seq} of partition {p} is corrupt"))
            })?;
            match entry.kind {
                Kind::Output => outputs.push(seq),
                Kind::ChangelogData => data.push(seq),
                Kind::ChangelogMeta => meta.push(seq),
            }
            self.records.insert(seq, p, entry);
        }
        let send = self.relay.open(p, offsets, outputs, data, meta);
        self.send(send)
    }

    /// Points the co-partitioned consumer at every active partition's position.
    fn reassign_follower(&mut self) {
        let Some(follower) = &self.follower else {
            return;
        };
        let mut tpl = TopicPartitionList::new();
        for p in self.active() {
            for (i, t) in self.s.co_partitioned.iter().enumerate() {
                let offset = self
                    .co_position
                    .get(&(p, i as u8))
                    .map_or(Offset::Beginning, |o| Offset::Offset(*o));
                let _ = tpl.add_partition_offset(&t.name, p, offset);
            }
        }
        if let Err(e) = follower.assign(&tpl) {
            tracing::warn!(error = %e, "cannot assign the co-partitioned inputs");
        }
    }

    /// Reads the global input from the earliest position any active partition still needs.
    fn reposition_global(&mut self) -> Result<(), EdgeError> {
        let Some(topic) = self.s.global.as_ref().map(|t| t.name.clone()) else {
            return Ok(());
        };
        let active = self.active();
        let mut wanted: BTreeMap<i32, i64> = BTreeMap::new();
        if !active.is_empty() {
            let job = self
                .job
                .as_ref()
                .ok_or_else(|| EdgeError::Fatal("the job has stopped".into()))?;
            for c in &self.global_partitions {
                let mut need = i64::MAX;
                for p in &active {
                    let at = job
                        .global_position(&*self.store, *p, *c)
                        .map_err(|e| EdgeError::Fatal(e.0))?
                        .unwrap_or(0);
                    need = need.min(at);
                }
                wanted.insert(*c, need);
            }
        }
        let moved = wanted
            .iter()
            .any(|(c, need)| self.global_position.get(c).is_none_or(|at| need < at))
            || (wanted.is_empty() != self.global_position.is_empty());
        if !moved {
            return Ok(());
        }
        let mut tpl = TopicPartitionList::new();
        for (c, need) in &wanted {
            let at = self
                .global_position
                .get(c)
                .map_or(*need, |at| (*at).min(*need));
            let _ = tpl.add_partition_offset(&topic, *c, Offset::Offset(at));
        }
        self.global_position = wanted
            .iter()
            .map(|(c, need)| {
                (
                    *c,
                    self.global_position
                        .get(c)
                        .map_or(*need, |at| (*at).min(*need)),
                )
            })
            .collect();
        // A record under way is read again if its partition moved back to or before it.
        if let Some(m) = &self.global_current {
            if self
                .global_position
                .get(&m.partition)
                .is_none_or(|at| *at <= m.offset)
            {
                self.global_current = None;
            }
        }
        if let Some(global) = &self.global {
            global.assign(&tpl).map_err(|e| {
                EdgeError::Fatal(format!("cannot read the global input {topic}: {e}"))
            })?;
        }
        Ok(())
    }

    /// Waits until everything written is acknowledged (or the deadline), then writes the last
    /// bookkeeping and commits the offsets.
    pub(crate) fn drain<C: ConsumerContext>(
        &mut self,
        group: &BaseConsumer<C>,
        deadline: Instant,
    ) -> Result<usize, EdgeError> {
        self.process = Process::Draining;
        self.health.draining.store(true, Ordering::Relaxed);
        while self.relay.outstanding() > 0 && Instant::now() < deadline {
            self.pump(Duration::from_millis(10))?;
        }
        self.pump(Duration::ZERO)?;
        self.commit_offsets(group, true)?;
        self.store.sync().map_err(fatal)?;
        self.metrics.store_size.set(self.store.size_bytes());
        let left = self.relay.outstanding();
        if left > 0 {
            tracing::warn!(
                records = left,
                "not acknowledged before the shutdown deadline; they stay in the outbox and are sent again on restart"
            );
        }
        Ok(left)
    }
}
