//! The edge's loop and its group consumer: join the group on the driving topic, restore what is
//! assigned, feed the job, relay its output, commit, hand partitions over on revoke, drain.

use crate::core::{Core, Parts, Process, Watermarks};
use crate::job::{Input, Job, Record, RecordLimits};
use crate::settings::EdgeSettings;
use crate::EdgeError;
use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::mpsc::{channel, Receiver};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};
use tact_kafka::admin::{partition_counts, topic_configs};
use tact_kafka::rdkafka::client::ClientContext;
use tact_kafka::rdkafka::consumer::{BaseConsumer, Consumer, ConsumerContext, RebalanceProtocol};
use tact_kafka::rdkafka::error::KafkaResult;
use tact_kafka::rdkafka::statistics::Statistics;
use tact_kafka::rdkafka::types::RDKafkaRespErr;
use tact_kafka::rdkafka::{Message, Offset, TopicPartitionList};
use tact_kafka::{consumer_config, producer_config, DeliveryContext, Membership};
use tact_store::{Partition, StateStore};
use tact_telemetry::{EdgeMetrics, Health};

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

/// Keeps the high watermarks librdkafka's statistics report (for the lag gauges).
#[derive(Debug, Clone, Default)]
pub struct StatsContext {
    watermarks: Watermarks,
}

fn record_watermarks(watermarks: &Watermarks, statistics: &Statistics) {
    let mut w = lock(watermarks);
    for (topic, t) in &statistics.topics {
        for (p, part) in &t.partitions {
            if *p >= 0 && part.hi_offset >= 0 {
                w.insert((topic.clone(), *p), part.hi_offset);
            }
        }
    }
}

impl ClientContext for StatsContext {
    fn stats(&self, statistics: Statistics) {
        record_watermarks(&self.watermarks, &statistics);
    }
}

impl ConsumerContext for StatsContext {}

/// The group consumer's context: rebalances reach the core inside the consumer's poll.
pub struct GroupContext<J: Job> {
    core: Arc<Mutex<Core<J>>>,
    watermarks: Watermarks,
}

impl<J: Job> std::fmt::Debug for GroupContext<J> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("GroupContext")
    }
}

impl<J: Job> ClientContext for GroupContext<J> {
    fn stats(&self, statistics: Statistics) {
        record_watermarks(&self.watermarks, &statistics);
    }
}

fn driving_partitions(tpl: &TopicPartitionList, topic: &str) -> Vec<Partition> {
    let mut out: Vec<Partition> = tpl
        .elements()
        .iter()
        .filter(|e| e.topic() == topic)
        .map(|e| e.partition())
        .collect();
    out.sort_unstable();
    out
}

impl<J: Job> ConsumerContext for GroupContext<J> {
    fn rebalance(
        &self,
        consumer: &BaseConsumer<Self>,
        err: RDKafkaRespErr,
        tpl: &mut TopicPartitionList,
    ) {
        let cooperative = matches!(
            consumer.rebalance_protocol(),
            RebalanceProtocol::Cooperative
        );
        let mut core = lock(&self.core);
        let topic = core.s.driving.name.clone();
        match err {
            RDKafkaRespErr::RD_KAFKA_RESP_ERR__ASSIGN_PARTITIONS => {
                let result = if cooperative {
                    consumer.incremental_assign(tpl)
                } else {
                    consumer.assign(tpl)
                };
                if let Err(e) = result {
                    tracing::error!(error = %e, "cannot take the assigned partitions");
                    return;
                }
                // Nothing is read before the partition's state is ready and its position known.
                if tpl.count() > 0 {
                    if let Err(e) = consumer.pause(tpl) {
                        tracing::warn!(error = %e, "cannot pause newly assigned partitions");
                    }
                }
                core.on_assigned(&driving_partitions(tpl, &topic));
            }
            RDKafkaRespErr::RD_KAFKA_RESP_ERR__REVOKE_PARTITIONS => {
                let lost = consumer.assignment_lost();
                core.on_revoked(consumer, &driving_partitions(tpl, &topic), lost);
                let result = if cooperative {
                    consumer.incremental_unassign(tpl)
                } else {
                    consumer.unassign()
                };
                if let Err(e) = result {
                    tracing::warn!(error = %e, "cannot release the revoked partitions");
                }
            }
            other => {
                // Whatever this instance held may already be another's: treated as lost.
                tracing::warn!(error = ?other, "consumer group rebalance failed; dropping the assignment");
                let held = core.assigned();
                core.on_revoked(consumer, &held, true);
                let _ = consumer.unassign();
            }
        }
    }

    /// librdkafka answers manual asynchronous commits only through a configured commit
    /// callback, which rust-rdkafka's event API does not set: this may never be called. The
    /// edge does not wait for it (it re-commits the offsets it wants now and then, and closing
    /// the consumer waits for commits in flight).
    fn commit_callback(&self, result: KafkaResult<()>, _offsets: &TopicPartitionList) {
        if let Err(e) = result {
            tracing::info!(error = %e, "offset commit failed; committed again later");
            lock(&self.core).commit_dirty = true;
        }
    }
}

/// What the edge reports when it stops.
#[derive(Debug)]
pub struct Stopped<J> {
    pub job: J,
    /// Records still unacknowledged at exit (they stay in the outbox).
    pub unacknowledged: usize,
}

/// How long the connections may take to close after the drain (leaving the group, closing the
/// producer); past it the edge returns and leaves them to a thread of their own.
const TEARDOWN_GRACE: Duration = Duration::from_secs(2);

/// Threads still closing the broker connections of stopped edges.
static CLOSING: AtomicUsize = AtomicUsize::new(0);

/// Whether a stopped edge's broker connections are still closing on a thread of their own (the
/// broker did not answer in time). A process about to exit should then end without running
/// library destructors (RocksDB's, librdkafka's), which would race that thread and abort.
pub fn connections_closing() -> bool {
    CLOSING.load(Ordering::SeqCst) > 0
}

/// Runs `close` on a thread of its own, counted in [`connections_closing`] until it returns
/// (inline if no thread can be started). Returns a receiver that gets a message when it is done.
fn close_aside(name: &str, close: impl FnOnce() + Send + 'static) -> Receiver<()> {
    let (done_tx, done_rx) = channel();
    CLOSING.fetch_add(1, Ordering::SeqCst);
    let run = move || {
        close();
        CLOSING.fetch_sub(1, Ordering::SeqCst);
        let _ = done_tx.send(());
    };
    let shared = Arc::new(Mutex::new(Some(run)));
    let for_thread = shared.clone();
    let spawned = std::thread::Builder::new()
        .name(name.into())
        .spawn(move || {
            if let Some(run) = lock(&for_thread).take() {
                run();
            }
        });
    if spawned.is_err() {
        if let Some(run) = lock(&shared).take() {
            run();
        }
    }
    done_rx
}

/// The stateful Kafka edge, ready to run one job.
pub struct Edge<J: Job> {
    group: Option<BaseConsumer<GroupContext<J>>>,
    core: Arc<Mutex<Core<J>>>,
    driving: String,
    /// Driving records fetched while backpressure paused the input, for the next batch.
    carry: Vec<Record>,
    /// The partitions backpressure paused.
    held_back: Vec<Partition>,
}

impl<J: Job> std::fmt::Debug for Edge<J> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Edge")
            .field("driving", &self.driving)
            .finish()
    }
}

/// Partition counts of every topic, retrying while the cluster is not reachable yet (giving up
/// after `timeout`, or at once when `stop` is set).
fn wait_for_cluster<C: ConsumerContext>(
    consumer: &BaseConsumer<C>,
    names: &[&str],
    bootstrap: &str,
    timeout: Duration,
    stop: &AtomicBool,
) -> Result<BTreeMap<String, Option<usize>>, EdgeError> {
    use backon::BackoffBuilder;
    let deadline = Instant::now() + timeout;
    let mut delays = backon::ExponentialBuilder::default()
        .with_min_delay(Duration::from_millis(200))
        .with_max_delay(Duration::from_secs(5))
        .without_max_times()
        .build();
    loop {
        match partition_counts(consumer, names, Duration::from_secs(5)) {
            Ok(c) => return Ok(c),
            Err(e) if Instant::now() < deadline && !stop.load(Ordering::Relaxed) => {
                tracing::warn!(error = %e, bootstrap, "cluster not reachable yet; retrying");
                let pause = delays.next().unwrap_or(Duration::from_secs(1));
                let until = Instant::now() + pause;
                while Instant::now() < until && !stop.load(Ordering::Relaxed) {
                    std::thread::sleep(Duration::from_millis(50));
                }
            }
            Err(e) => {
                return Err(EdgeError::Setup(format!(
                    "cannot reach Kafka at {bootstrap}: {e}"
                )))
            }
        }
    }
}

impl<J: Job> Edge<J> {
    /// Connects, checks every topic (existence, partition counts, a compacted changelog) and
    /// prepares the store. Nothing is consumed before [`Edge::run`].
    pub fn new(
        s: EdgeSettings,
        mut job: J,
        store: Arc<dyn StateStore>,
        metrics: EdgeMetrics,
        health: Arc<Health>,
        stop: &AtomicBool,
    ) -> Result<Edge<J>, EdgeError> {
        let watermarks: Watermarks = Arc::default();
        let reader_config = |what: &str| {
            consumer_config(&s.bootstrap_servers, &Membership::Reader, &s.client)
                .set("client.id", format!("tact-{what}"))
                .clone()
        };
        let stats = StatsContext {
            watermarks: watermarks.clone(),
        };
        let reader: BaseConsumer<StatsContext> = reader_config("changelog-reader")
            .create_with_context(stats.clone())
            .map_err(|e| EdgeError::Setup(format!("cannot create the changelog reader: {e}")))?;
        let names: Vec<&str> = s
            .inputs()
            .iter()
            .map(|t| t.name.as_str())
            .chain(std::iter::once(s.changelog.as_str()))
            .chain(s.outputs.iter().map(String::as_str))
            .collect();
        let counts = wait_for_cluster(
            &reader,
            &names,
            &s.bootstrap_servers,
            s.connect_timeout,
            stop,
        )?;
        let missing: Vec<&str> = counts
            .iter()
            .filter(|(_, c)| c.is_none())
            .map(|(n, _)| n.as_str())
            .collect();
        if !missing.is_empty() {
            return Err(EdgeError::Setup(format!(
                "topic(s) {missing:?} do not exist on {}; create them with `tact topics create --config FILE` (or yourself, see the README)",
                s.bootstrap_servers
            )));
        }
        let count = |name: &str| counts.get(name).copied().flatten().unwrap_or(0);
        let partitions = count(&s.driving.name);
        let mut problems = Vec::new();
        for t in &s.co_partitioned {
            if count(&t.name) != partitions {
                problems.push(format!(
                    "{} has {} partitions but {} has {partitions}: co-partitioned topics must have the same number (a customer's records must meet on one partition number)",
                    t.name,
                    count(&t.name),
                    s.driving.name
                ));
            }
        }
        if count(&s.changelog) != partitions {
            problems.push(format!(
                "the changelog {} has {} partitions but {} has {partitions}: partition p of the changelog holds the state of input partition p",
                s.changelog,
                count(&s.changelog),
                s.driving.name
            ));
        }
        let mut limits = RecordLimits {
            producer: tact_kafka::max_message_bytes(&s.client).map_err(EdgeError::Setup)?,
            topics: BTreeMap::new(),
        };
        if s.require_compaction {
            let names: Vec<&str> = std::iter::once(s.changelog.as_str())
                .chain(s.outputs.iter().map(String::as_str))
                .collect();
            let configs = topic_configs(
                &s.bootstrap_servers,
                &s.client,
                &names,
                Duration::from_secs(10),
            )
            .map_err(EdgeError::Setup)?;
            let config = |topic: &str, key: &str| {
                configs
                    .get(topic)
                    .cloned()
                    .flatten()
                    .and_then(|c| c.get(key).cloned())
            };
            match config(&s.changelog, "cleanup.policy") {
                Some(p) if p.split(',').any(|v| v.trim() == "compact") => {}
                Some(p) => problems.push(format!(
                    "the changelog {} has cleanup.policy={p}; it must be compact (deleting old segments would lose state)",
                    s.changelog
                )),
                None => problems.push(format!(
                    "the broker does not report cleanup.policy for the changelog {}; create it with `tact topics create` so it is compacted",
                    s.changelog
                )),
            }
            for topic in &s.outputs {
                if let Some(max) = config(topic, "max.message.bytes").and_then(|v| v.parse().ok()) {
                    limits.topics.insert(topic.clone(), max);
                }
            }
        }
        job.limits(&limits).map_err(|e| EdgeError::Setup(e.0))?;
        if !problems.is_empty() {
            return Err(EdgeError::Setup(problems.join("; ")));
        }
        let partition_count = i32::try_from(partitions).unwrap_or(i32::MAX);
        let (tx, reports) = channel();
        let producer = producer_config(&s.bootstrap_servers, &s.client)
            .create_with_context(DeliveryContext { reports: tx })
            .map_err(|e| EdgeError::Setup(format!("cannot create the Kafka producer: {e}")))?;
        let follower = if s.co_partitioned.is_empty() {
            None
        } else {
            Some(
                reader_config("co-partitioned")
                    .create_with_context(stats.clone())
                    .map_err(|e| {
                        EdgeError::Setup(format!("cannot create the co-partitioned consumer: {e}"))
                    })?,
            )
        };
        let (global, global_partitions) = match &s.global {
            None => (None, Vec::new()),
            Some(t) => {
                let consumer: BaseConsumer<StatsContext> = reader_config("global")
                    .create_with_context(stats.clone())
                    .map_err(|e| {
                        EdgeError::Setup(format!("cannot create the consumer of {}: {e}", t.name))
                    })?;
                let n = i32::try_from(count(&t.name)).unwrap_or(0);
                (Some(consumer), (0..n).collect())
            }
        };
        let driving = s.driving.name.clone();
        let membership = Membership::Member {
            group_id: s.group_id.clone(),
            instance_id: s.instance_id.clone(),
        };
        let group_config = consumer_config(&s.bootstrap_servers, &membership, &s.client);
        let core = Core::new(Parts {
            s,
            job,
            store,
            producer,
            reports,
            follower,
            global,
            global_partitions,
            reader,
            partition_count,
            metrics,
            health,
            watermarks: watermarks.clone(),
        })?;
        let core = Arc::new(Mutex::new(core));
        let group: BaseConsumer<GroupContext<J>> = group_config
            .create_with_context(GroupContext {
                core: core.clone(),
                watermarks,
            })
            .map_err(|e| EdgeError::Setup(format!("cannot create the Kafka consumer: {e}")))?;
        Ok(Edge {
            group: Some(group),
            core,
            driving,
            carry: Vec::new(),
            held_back: Vec::new(),
        })
    }

    fn group(&self) -> Result<&BaseConsumer<GroupContext<J>>, EdgeError> {
        self.group
            .as_ref()
            .ok_or_else(|| EdgeError::Fatal("the consumer is closed".into()))
    }

    /// The store the edge writes (read-only views may share it).
    pub fn store(&self) -> Arc<dyn StateStore> {
        lock(&self.core).store().clone()
    }

    /// Runs until `stop` is set, then drains within the shutdown deadline.
    pub fn run(mut self, stop: &AtomicBool) -> Result<Stopped<J>, EdgeError> {
        let driving = self.driving.clone();
        self.group()?
            .subscribe(&[driving.as_str()])
            .map_err(|e| EdgeError::Setup(format!("cannot subscribe to {driving}: {e}")))?;
        {
            let core = lock(&self.core);
            core.health.state_ready.store(true, Ordering::Relaxed);
            tracing::info!(topic = %driving, group = %core.s.group_id, instance = ?core.s.instance_id, "joining the consumer group");
        }
        let result = self.work(stop);
        let deadline = {
            let core = lock(&self.core);
            Instant::now() + core.s.shutdown_deadline
        };
        // The job is done: taken now, so nothing that closes the group waits for it.
        let job = lock(&self.core).take_job();
        let drained = self.drain(deadline);
        // The producer and the readers still talk to the broker as they are torn down; with a
        // broker that does not answer that can block past the deadline. Their teardown gets a
        // thread of its own, so the process stops on time (the outbox keeps what was left).
        let Edge { group, core, .. } = self;
        let _ = close_aside("tact-teardown", move || {
            drop(group);
            drop(core);
        });
        let grace = Instant::now() + TEARDOWN_GRACE;
        while connections_closing() && Instant::now() < grace {
            std::thread::sleep(Duration::from_millis(10));
        }
        if connections_closing() {
            tracing::warn!(
                grace_seconds = TEARDOWN_GRACE.as_secs(),
                "the broker connections did not close in time; stopping without them"
            );
        }
        let unacknowledged = match (result, drained) {
            (Err(e), _) | (Ok(()), Err(e)) => return Err(e),
            (Ok(()), Ok(left)) => left,
        };
        let job = job.ok_or_else(|| EdgeError::Fatal("the job was already taken".into()))?;
        Ok(Stopped {
            job,
            unacknowledged,
        })
    }

    fn work(&mut self, stop: &AtomicBool) -> Result<(), EdgeError> {
        while !stop.load(Ordering::Relaxed) {
            let ready = {
                let mut core = lock(&self.core);
                if let Some(e) = core.failed.take() {
                    return Err(e);
                }
                core.health.progressed();
                core.pump(Duration::ZERO)?;
                let group = self
                    .group
                    .as_ref()
                    .ok_or_else(|| EdgeError::Fatal("the consumer is closed".into()))?;
                core.commit_offsets(group, false)?;
                core.restore_step()?
            };
            for p in ready {
                self.start_partition(p)?;
            }
            if lock(&self.core).backpressured() {
                // The broker is behind: wait for acknowledgements, not new input. The driving
                // partitions are paused (the group consumer is still polled so the membership
                // stays alive); what was already fetched is kept for the next batch.
                if self.held_back.is_empty() {
                    self.pause_active();
                }
                lock(&self.core).pump(Duration::from_millis(5))?;
                let group = self.group()?;
                if let Some(Ok(m)) = group.poll(Duration::ZERO) {
                    if m.topic() == self.driving {
                        self.carry.push(driving_record(&m));
                    }
                }
                continue;
            }
            if !self.held_back.is_empty() {
                self.resume_held_back();
            }
            let batch = self.poll_batch(stop)?;
            let mut core = lock(&self.core);
            if let Some(e) = core.failed.take() {
                return Err(e);
            }
            core.process(batch)?;
            core.process_global()?;
            core.idle()?;
            core.housekeeping()?;
        }
        Ok(())
    }

    /// Up to `batch_max_events` records from the group consumer and the co-partitioned one,
    /// waiting at most `batch_max_wait`.
    fn poll_batch(&mut self, stop: &AtomicBool) -> Result<Vec<Record>, EdgeError> {
        let (max, wait) = {
            let core = lock(&self.core);
            (core.s.batch_max_events, core.s.batch_max_wait)
        };
        let deadline = Instant::now() + wait;
        let mut batch = std::mem::take(&mut self.carry);
        let group = self.group()?;
        while batch.len() < max && !stop.load(Ordering::Relaxed) {
            lock(&self.core).drain_follower(&mut batch, max);
            let remaining = deadline.saturating_duration_since(Instant::now());
            // Short polls: co-partitioned records need not wait for the driving topic.
            match group.poll(remaining.min(Duration::from_millis(10))) {
                None => {}
                Some(Err(e)) => {
                    tracing::warn!(error = %e, "consumer error (librdkafka retries)");
                }
                Some(Ok(m)) if m.topic() == self.driving => {
                    batch.push(driving_record(&m));
                    continue;
                }
                Some(Ok(_)) => {}
            }
            if remaining.is_zero() {
                break;
            }
        }
        Ok(batch)
    }

    /// Pauses the driving partitions being processed (backpressure).
    fn pause_active(&mut self) {
        let active = lock(&self.core).active();
        let mut tpl = TopicPartitionList::new();
        for p in &active {
            let _ = tpl.add_partition(&self.driving, *p);
        }
        let Ok(group) = self.group() else { return };
        match group.pause(&tpl) {
            Ok(()) => self.held_back = active,
            Err(e) => tracing::warn!(error = %e, "cannot pause the input for backpressure"),
        }
    }

    /// Resumes what backpressure paused (partitions revoked meanwhile are not resumed).
    fn resume_held_back(&mut self) {
        let active: BTreeSet<Partition> = lock(&self.core).active().into_iter().collect();
        let mut tpl = TopicPartitionList::new();
        for p in std::mem::take(&mut self.held_back) {
            if active.contains(&p) {
                let _ = tpl.add_partition(&self.driving, p);
            }
        }
        if let Ok(group) = self.group() {
            if let Err(e) = group.resume(&tpl) {
                tracing::warn!(error = %e, "cannot resume the input after backpressure");
            }
        }
    }

    /// A restored partition: seek its inputs to after the last applied offset (or the group's
    /// committed offset when nothing was applied yet), then let it go.
    fn start_partition(&mut self, p: Partition) -> Result<(), EdgeError> {
        // Records of p fetched before it moved away and came back are read again from its
        // position; while backpressure holds the input back, p is resumed with the others.
        self.carry.retain(|r| r.partition != p);
        let hold = !self.held_back.is_empty();
        if hold {
            self.held_back.push(p);
        }
        let (positions, co_topics) = {
            let mut core = lock(&self.core);
            let positions = core.resume_positions(p)?;
            let co: Vec<String> = core
                .s
                .co_partitioned
                .iter()
                .map(|t| t.name.clone())
                .collect();
            (positions, co)
        };
        let group = self.group()?;
        // Committed offsets only matter for input nothing was applied from yet.
        let mut ask = TopicPartitionList::new();
        for (input, pos) in &positions {
            if pos.is_none() {
                let topic = match input {
                    Input::Driving => self.driving.clone(),
                    Input::Co(i) => co_topics.get(usize::from(*i)).cloned().unwrap_or_default(),
                    Input::Global => continue,
                };
                let _ = ask.add_partition(&topic, p);
            }
        }
        let committed: HashMap<String, i64> = if ask.count() > 0 {
            committed_offsets(group, &ask, &lock(&self.core).health.clone())?
                .elements()
                .iter()
                .filter_map(|e| match e.offset() {
                    Offset::Offset(o) => Some((e.topic().to_owned(), o)),
                    _ => None,
                })
                .collect()
        } else {
            HashMap::new()
        };
        let mut co_positions = Vec::new();
        for (input, pos) in positions {
            match input {
                Input::Driving => {
                    let at = pos.or_else(|| committed.get(&self.driving).copied());
                    let offset = at.map_or(Offset::Beginning, Offset::Offset);
                    group
                        .seek(&self.driving, p, offset, Duration::from_secs(10))
                        .map_err(|e| {
                            EdgeError::Fatal(format!("cannot position {}/{p}: {e}", self.driving))
                        })?;
                }
                Input::Co(i) => {
                    let topic = co_topics.get(usize::from(i)).cloned().unwrap_or_default();
                    let at = pos.or_else(|| committed.get(&topic).copied()).unwrap_or(0);
                    co_positions.push((i, at));
                }
                Input::Global => {}
            }
        }
        lock(&self.core).activate(p, co_positions)?;
        if hold {
            return Ok(());
        }
        let mut tpl = TopicPartitionList::new();
        let _ = tpl.add_partition(&self.driving, p);
        group
            .resume(&tpl)
            .map_err(|e| EdgeError::Fatal(format!("cannot resume {}/{p}: {e}", self.driving)))?;
        Ok(())
    }

    /// Stops taking input, waits for what is in flight, commits, and leaves the group (a static
    /// member keeps its partitions for a restart within the session timeout). Every step keeps
    /// to the shutdown deadline.
    fn drain(&mut self, deadline: Instant) -> Result<usize, EdgeError> {
        let left = {
            let mut core = lock(&self.core);
            let group = self
                .group
                .as_ref()
                .ok_or_else(|| EdgeError::Fatal("the consumer is closed".into()))?;
            core.drain(group, deadline)?
        };
        lock(&self.core).process = Process::Draining;
        // Closing a consumer waits for the commits in flight and the group's answer to the
        // leave; never past the deadline.
        if let Some(group) = self.group.take() {
            // Closing revokes the assignment and leaves the group itself. (An explicit
            // unsubscribe first left tansu's group unable to assign to a later member.)
            let done = close_aside("tact-close", move || drop(group));
            let wait = deadline
                .saturating_duration_since(Instant::now())
                .max(Duration::from_millis(200));
            if done.recv_timeout(wait).is_err() {
                tracing::warn!("the consumer group did not answer the leave before the shutdown deadline; stopping anyway");
            }
        }
        Ok(left)
    }
}

fn driving_record<M: Message>(m: &M) -> Record {
    Record {
        input: Input::Driving,
        partition: m.partition(),
        offset: m.offset(),
        key: m.key().map(<[u8]>::to_vec),
        value: m.payload().map(<[u8]>::to_vec),
    }
}

/// The group's committed offsets of `ask`, retried a few times: a partition that nothing was
/// applied from starts there, and guessing (from the beginning) would apply old input again.
fn committed_offsets<C: ConsumerContext>(
    group: &BaseConsumer<C>,
    ask: &TopicPartitionList,
    health: &Health,
) -> Result<TopicPartitionList, EdgeError> {
    const ATTEMPTS: u32 = 3;
    let mut last = None;
    for attempt in 1..=ATTEMPTS {
        health.progressed();
        match group.committed_offsets(ask.clone(), Duration::from_secs(5)) {
            Ok(tpl) => return Ok(tpl),
            Err(e) => {
                tracing::warn!(error = %e, attempt, "cannot read the group's committed offsets");
                last = Some(e);
                if attempt < ATTEMPTS {
                    std::thread::sleep(Duration::from_millis(500 << attempt));
                }
            }
        }
    }
    Err(EdgeError::Fatal(format!(
        "cannot read the group's committed offsets ({}); stopping rather than reading partitions from their beginning",
        last.map_or_else(String::new, |e| e.to_string())
    )))
}
