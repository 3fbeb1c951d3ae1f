//! The edge on librdkafka's mock cluster with a small counting job: every record of a key gets
//! the next number, so the outputs show at a glance whether anything was lost (a gap), applied
//! twice (a number reused for another record) or re-sent (a duplicate, allowed, identical).

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tact_edge::{
    changelog_state_key, Cx, Edge, EdgeSettings, Emit, Job, JobError, OutRecord, Record, Topic,
    STORE_HEADER, TENURE_HEADER,
};
use tact_kafka::rdkafka::config::ClientConfig;
use tact_kafka::rdkafka::consumer::{BaseConsumer, Consumer};
use tact_kafka::rdkafka::message::{Header, Headers, OwnedHeaders};
use tact_kafka::rdkafka::mocking::{MockCluster, MockCoordinator};
use tact_kafka::rdkafka::producer::{BaseProducer, BaseRecord, Producer};
use tact_kafka::rdkafka::types::{RDKafkaApiKey, RDKafkaRespErr};
use tact_kafka::rdkafka::{Message, Offset, TopicPartitionList};
use tact_store::{Commit, MemoryStore, Partition, StateEntries, StateKey, StateStore};
use tact_telemetry::{EdgeMetrics, Exporter, Health};

const IN: &str = "in";
const CHANGELOG: &str = "counter-changelog";
const OUT: &str = "counted";
const PARTITIONS: i32 = 4;

/// State per key: the count and the input offset it last applied (so a partially restored
/// changelog never applies a record twice).
fn encode(count: i64, version: i64) -> Vec<u8> {
    [count.to_be_bytes(), version.to_be_bytes()].concat()
}

fn decode(v: &[u8]) -> (i64, i64) {
    let c = i64::from_be_bytes(v[..8].try_into().expect("count"));
    let o = i64::from_be_bytes(v[8..16].try_into().expect("version"));
    (c, o)
}

#[derive(Debug, Default)]
struct Counter {
    applied: u64,
}

impl Job for Counter {
    fn open(&mut self, _cx: &Cx<'_>, _p: Partition) -> Result<(), JobError> {
        Ok(())
    }

    fn close(&mut self, _p: Partition) {}

    fn process(&mut self, cx: &Cx<'_>, records: Vec<Record>) -> Result<Emit, JobError> {
        let mut emit = Emit::default();
        let mut seen: HashMap<(Partition, String), (i64, i64)> = HashMap::new();
        for r in records {
            let key = String::from_utf8(r.key.clone().unwrap_or_default()).expect("utf8");
            let slot = match seen.get(&(r.partition, key.clone())) {
                Some(v) => *v,
                None => {
                    let k = StateKey::Customer(key.clone());
                    cx.store
                        .multi_get(&[(r.partition, &k)])?
                        .remove(0)
                        .map_or((0, -1), |v| decode(&v))
                }
            };
            let (mut count, version) = slot;
            if r.offset > version {
                count += 1;
                self.applied += 1;
                let counted = format!("{key}:{count}").into_bytes();
                // Payloads that ask for a record larger than the producer takes: with a smaller
                // form that fits, with one that does not, with none.
                let out = match r.value.as_deref() {
                    Some(b"big") => {
                        OutRecord::keyed(OUT, key.clone().into_bytes(), vec![b'x'; 60_000])
                            .or_smaller(counted)
                    }
                    Some(b"bigger") => {
                        OutRecord::keyed(OUT, key.clone().into_bytes(), vec![b'x'; 60_000])
                            .or_smaller(vec![b'y'; 60_000])
                    }
                    Some(b"huge") => {
                        OutRecord::keyed(OUT, key.clone().into_bytes(), vec![b'x'; 60_000])
                    }
                    // 10 KB of output (trailing spaces, which the readers trim).
                    Some(b"wide") => {
                        let mut v = counted;
                        v.resize(10_000, b' ');
                        OutRecord::keyed(OUT, key.clone().into_bytes(), v)
                    }
                    _ => OutRecord::keyed(OUT, key.clone().into_bytes(), counted),
                };
                emit.outputs.push((r.partition, out));
            }
            seen.insert((r.partition, key), (count, r.offset.max(version)));
            emit.applied.push((r.partition, r.input, r.offset));
        }
        for ((p, key), (count, version)) in seen {
            emit.commit
                .state_puts
                .push((p, StateKey::Customer(key), encode(count, version)));
        }
        Ok(emit)
    }

    fn derive(&self, _p: Partition, _restored: &StateEntries) -> Result<Commit, JobError> {
        Ok(Commit::default())
    }
}

fn settings(bootstrap: &str, group: &str) -> EdgeSettings {
    EdgeSettings {
        bootstrap_servers: bootstrap.to_owned(),
        group_id: group.to_owned(),
        instance_id: None,
        client: [
            ("session.timeout.ms", "6000"),
            ("heartbeat.interval.ms", "200"),
            ("statistics.interval.ms", "0"),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_owned(), v.to_owned()))
        .collect(),
        driving: Topic {
            name: IN.into(),
            label: "in",
        },
        co_partitioned: Vec::new(),
        global: None,
        changelog: CHANGELOG.into(),
        outputs: vec![OUT.into()],
        batch_max_events: 50,
        batch_max_wait: Duration::from_millis(20),
        commit_interval: Duration::from_millis(50),
        shutdown_deadline: Duration::from_secs(5),
        revoke_deadline: Duration::from_secs(5),
        idle_after: None,
        max_in_flight: 10_000,
        max_in_flight_bytes: 64 << 20,
        orphan_grace: Duration::from_secs(1),
        require_compaction: false,
        connect_timeout: Duration::from_secs(10),
    }
}

struct Instance {
    stop: Arc<AtomicBool>,
    metrics: EdgeMetrics,
    thread: std::thread::JoinHandle<Result<(u64, usize), String>>,
}

fn start(bootstrap: &str, group: &str, store: Arc<dyn StateStore>) -> Instance {
    start_with(settings(bootstrap, group), store)
}

fn start_with(s: EdgeSettings, store: Arc<dyn StateStore>) -> Instance {
    let _ = tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
        .with_test_writer()
        .try_init();
    let stop = Arc::new(AtomicBool::new(false));
    let flag = stop.clone();
    let metrics = EdgeMetrics::register(&mut Exporter::registry(), &["in"]);
    let shared = metrics.clone();
    let thread = std::thread::spawn(move || {
        let health = Arc::new(Health::new(30_000));
        let edge = Edge::new(s, Counter::default(), store, shared, health, &flag)
            .map_err(|e| e.to_string())?;
        let stopped = edge.run(&flag).map_err(|e| e.to_string())?;
        Ok((stopped.job.applied, stopped.unacknowledged))
    });
    Instance {
        stop,
        metrics,
        thread,
    }
}

impl Instance {
    /// Waits until this instance owns `n` partitions, all of them restored.
    fn wait_owning(&self, n: i64, timeout: Duration) {
        let deadline = Instant::now() + timeout;
        while Instant::now() < deadline {
            if self.metrics.partitions_assigned.get() == n
                && self.metrics.partitions_restoring.get() == 0
            {
                return;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        panic!(
            "the instance owns {} partitions ({} restoring), wanted {n}",
            self.metrics.partitions_assigned.get(),
            self.metrics.partitions_restoring.get()
        );
    }

    fn stop(self) -> u64 {
        self.stop_reporting().0
    }

    /// Stops; returns what was applied and how many records were left unacknowledged.
    fn stop_reporting(self) -> (u64, usize) {
        self.stop.store(true, Ordering::Relaxed);
        self.thread
            .join()
            .expect("edge thread")
            .expect("edge stopped cleanly")
    }
}

fn produce(bootstrap: &str, keys: &[String], from: usize, n: usize) {
    produce_payloads(bootstrap, keys, from, n, &HashMap::new());
}

/// Like [`produce`], with the payload of record `i` from `payloads` where it has one.
fn produce_payloads(
    bootstrap: &str,
    keys: &[String],
    from: usize,
    n: usize,
    payloads: &HashMap<usize, &str>,
) {
    let p: BaseProducer = ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
        .create()
        .expect("producer");
    for i in from..from + n {
        let key = &keys[i % keys.len()];
        let part = (i % keys.len()) as i32 % PARTITIONS;
        let payload = payloads.get(&i).copied().unwrap_or("x");
        p.send(BaseRecord::to(IN).key(key).payload(payload).partition(part))
            .expect("send");
        p.poll(Duration::ZERO);
    }
    p.flush(Duration::from_secs(10)).expect("flush");
}

/// Every value in the output topic.
fn outputs(bootstrap: &str) -> Vec<String> {
    let c: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
        .set("group.id", "reader")
        .set("enable.auto.commit", "false")
        .create()
        .expect("consumer");
    let mut tpl = TopicPartitionList::new();
    tpl.add_partition_offset(OUT, 0, Offset::Beginning)
        .expect("tpl");
    c.assign(&tpl).expect("assign");
    let mut out = Vec::new();
    let mut idle = Instant::now();
    while idle.elapsed() < Duration::from_millis(700) {
        if let Some(Ok(m)) = c.poll(Duration::from_millis(50)) {
            out.push(
                String::from_utf8_lossy(m.payload().unwrap_or_default())
                    .trim_end()
                    .to_owned(),
            );
            idle = Instant::now();
        }
    }
    out
}

/// Waits until the outputs hold exactly `1..=n` for every key (nothing lost, nothing counted
/// twice), duplicates of those allowed. Returns the outputs.
fn wait_complete(
    bootstrap: &str,
    expected: &BTreeMap<String, i64>,
    timeout: Duration,
) -> Vec<String> {
    let want: BTreeSet<String> = expected
        .iter()
        .flat_map(|(k, n)| (1..=*n).map(move |c| format!("{k}:{c}")))
        .collect();
    let deadline = Instant::now() + timeout;
    loop {
        let got = outputs(bootstrap);
        let distinct: BTreeSet<String> = got.iter().cloned().collect();
        if distinct == want || Instant::now() > deadline {
            let missing: Vec<&String> = want.difference(&distinct).take(5).collect();
            let extra: Vec<&String> = distinct.difference(&want).take(5).collect();
            assert!(
                missing.is_empty() && extra.is_empty(),
                "outputs differ from a straight count: missing {missing:?}, extra {extra:?}"
            );
            return got;
        }
        std::thread::sleep(Duration::from_millis(200));
    }
}

fn cluster() -> (
    MockCluster<'static, tact_kafka::rdkafka::producer::DefaultProducerContext>,
    String,
) {
    let mock = MockCluster::new(1).expect("mock cluster");
    mock.create_topic(IN, PARTITIONS, 1).expect("topic");
    mock.create_topic(CHANGELOG, PARTITIONS, 1).expect("topic");
    mock.create_topic(OUT, 1, 1).expect("topic");
    let bootstrap = mock.bootstrap_servers();
    (mock, bootstrap)
}

/// Two brokers: input, changelog and `group`'s coordinator on the first, the output topic on the
/// second, so output can stop while input still flows.
fn split_cluster(
    group: &str,
) -> (
    MockCluster<'static, tact_kafka::rdkafka::producer::DefaultProducerContext>,
    String,
) {
    let mock = MockCluster::new(2).expect("mock cluster");
    mock.create_topic(IN, PARTITIONS, 1).expect("topic");
    mock.create_topic(CHANGELOG, PARTITIONS, 1).expect("topic");
    mock.create_topic(OUT, 1, 1).expect("topic");
    for p in 0..PARTITIONS {
        mock.partition_leader(IN, p, Some(1)).expect("leader");
        mock.partition_leader(CHANGELOG, p, Some(1))
            .expect("leader");
    }
    mock.partition_leader(OUT, 0, Some(2)).expect("leader");
    mock.coordinator(MockCoordinator::Group(group.into()), 1)
        .expect("coordinator");
    let bootstrap = mock.bootstrap_servers();
    (mock, bootstrap)
}

fn expected(keys: &[String], n: usize) -> BTreeMap<String, i64> {
    let mut e = BTreeMap::new();
    for i in 0..n {
        *e.entry(keys[i % keys.len()].clone()).or_insert(0) += 1;
    }
    e
}

#[test]
fn a_second_instance_takes_partitions_with_their_state_and_nothing_is_lost_or_counted_twice() {
    let (_mock, bootstrap) = cluster();
    let keys: Vec<String> = (0..12).map(|i| format!("k{i}")).collect();
    produce(&bootstrap, &keys, 0, 240);
    let a = start(&bootstrap, "g1", Arc::new(MemoryStore::new()));
    wait_complete(&bootstrap, &expected(&keys, 240), Duration::from_secs(60));
    // B joins while input keeps arriving: A hands half its partitions over mid-stream and B
    // restores their counts from the changelog.
    let b = start(&bootstrap, "g1", Arc::new(MemoryStore::new()));
    produce(&bootstrap, &keys, 240, 240);
    b.wait_owning(2, Duration::from_secs(60));
    a.wait_owning(2, Duration::from_secs(60));
    produce(&bootstrap, &keys, 480, 240);
    wait_complete(&bootstrap, &expected(&keys, 720), Duration::from_secs(60));
    let applied_a = a.stop();
    let applied_b = b.stop();
    assert!(
        applied_b > 0,
        "the second instance never processed anything"
    );
    assert!(applied_a + applied_b >= 720);
}

#[test]
fn refused_deliveries_are_sent_again_and_nothing_is_lost() {
    let (mock, bootstrap) = cluster();
    let keys: Vec<String> = (0..6).map(|i| format!("r{i}")).collect();
    let a = start(&bootstrap, "g2", Arc::new(MemoryStore::new()));
    // Every produce request fails a few times (outputs and changelog alike) before it succeeds.
    mock.request_errors(
        RDKafkaApiKey::Produce,
        &[RDKafkaRespErr::RD_KAFKA_RESP_ERR_NOT_ENOUGH_REPLICAS; 20],
    );
    produce(&bootstrap, &keys, 0, 120);
    wait_complete(&bootstrap, &expected(&keys, 120), Duration::from_secs(60));
    a.stop();
}

#[test]
fn a_restart_on_the_same_store_resumes_without_counting_anything_again() {
    let (_mock, bootstrap) = cluster();
    let keys: Vec<String> = (0..8).map(|i| format!("s{i}")).collect();
    let store: Arc<dyn StateStore> = Arc::new(MemoryStore::new());
    produce(&bootstrap, &keys, 0, 80);
    let a = start(&bootstrap, "g3", store.clone());
    wait_complete(&bootstrap, &expected(&keys, 80), Duration::from_secs(60));
    assert_eq!(a.stop(), 80);
    produce(&bootstrap, &keys, 80, 80);
    let again = start(&bootstrap, "g3", store);
    wait_complete(&bootstrap, &expected(&keys, 160), Duration::from_secs(60));
    assert_eq!(
        again.stop(),
        80,
        "only the new records are applied after a restart"
    );
}

#[test]
fn a_lost_disk_is_restored_from_the_changelog() {
    let (_mock, bootstrap) = cluster();
    let keys: Vec<String> = (0..8).map(|i| format!("d{i}")).collect();
    produce(&bootstrap, &keys, 0, 80);
    let a = start(&bootstrap, "g4", Arc::new(MemoryStore::new()));
    wait_complete(&bootstrap, &expected(&keys, 80), Duration::from_secs(60));
    a.stop();
    produce(&bootstrap, &keys, 80, 80);
    // A fresh, empty store: the counts must come back from the changelog, not start at 1.
    let again = start(&bootstrap, "g4", Arc::new(MemoryStore::new()));
    wait_complete(&bootstrap, &expected(&keys, 160), Duration::from_secs(60));
    assert_eq!(again.stop(), 80);
}

#[test]
fn a_drain_with_output_in_flight_keeps_its_deadline_and_the_restart_sends_the_rest() {
    let (mock, bootstrap) = split_cluster("g5");
    let keys: Vec<String> = (0..6).map(|i| format!("f{i}")).collect();
    let store: Arc<dyn StateStore> = Arc::new(MemoryStore::new());
    let mut s = settings(&bootstrap, "g5");
    s.shutdown_deadline = Duration::from_secs(2);
    let a = start_with(s.clone(), store.clone());
    produce(&bootstrap, &keys, 0, 60);
    wait_complete(&bootstrap, &expected(&keys, 60), Duration::from_secs(60));
    // The broker goes away while more input is being processed: outputs cannot be delivered.
    // (The output topic's broker goes first, so the output is surely still in flight when the
    // other one goes too, however fast this machine is.)
    mock.broker_down(2).expect("output broker down");
    produce(&bootstrap, &keys, 60, 60);
    let deadline = Instant::now() + Duration::from_secs(30);
    while a
        .metrics
        .events_consumed
        .get_or_create(&tact_telemetry::TopicLabel { topic: "in" })
        .get()
        < 120
    {
        assert!(Instant::now() < deadline, "the second half never arrived");
        std::thread::sleep(Duration::from_millis(20));
    }
    mock.broker_down(1).expect("broker down");
    std::thread::sleep(Duration::from_millis(300));
    let stopping = Instant::now();
    let (applied, left) = a.stop_reporting();
    assert!(
        stopping.elapsed() < Duration::from_secs(15),
        "the drain kept to its deadline ({:?})",
        stopping.elapsed()
    );
    assert!(
        left > 0,
        "output was still in flight when the broker went away"
    );
    mock.broker_up(1).expect("broker up");
    mock.broker_up(2).expect("output broker up");
    // The restart sends what the outbox holds (and applies what the drain did not reach, on a
    // loaded machine); nothing is counted twice.
    let again = start_with(s, store);
    wait_complete(&bootstrap, &expected(&keys, 120), Duration::from_secs(60));
    assert_eq!(
        applied + again.stop(),
        120,
        "every record was applied exactly once over the two runs"
    );
}

fn oversized(i: &Instance, action: &'static str) -> u64 {
    i.metrics
        .oversized_outputs
        .get_or_create(&tact_telemetry::ActionLabel { action })
        .get()
}

#[test]
fn a_record_too_large_to_send_goes_in_its_smaller_form_and_one_that_never_fits_is_dropped_without_stopping_its_partition(
) {
    let (_mock, bootstrap) = cluster();
    let keys: Vec<String> = (0..4).map(|i| format!("z{i}")).collect();
    let mut s = settings(&bootstrap, "g7");
    s.client.insert("message.max.bytes".into(), "20000".into());
    let a = start_with(s, Arc::new(MemoryStore::new()));
    // z1's 2nd record asks for a 60 KB output with a small form, its 3rd for one whose small
    // form is 60 KB too; everything after them must still be counted and sent.
    let payloads = HashMap::from([(5, "big"), (9, "bigger")]);
    produce_payloads(&bootstrap, &keys, 0, 40, &payloads);
    let mut want: BTreeSet<String> = expected(&keys, 40)
        .iter()
        .flat_map(|(k, n)| (1..=*n).map(move |c| format!("{k}:{c}")))
        .collect();
    want.remove("z1:3");
    let deadline = Instant::now() + Duration::from_secs(60);
    let got = loop {
        let got: BTreeSet<String> = outputs(&bootstrap).into_iter().collect();
        if got == want || Instant::now() > deadline {
            break got;
        }
        std::thread::sleep(Duration::from_millis(200));
    };
    assert_eq!(
        got, want,
        "the small form of z1:2 is sent, z1:3 is dropped, and every later record of the partition is counted"
    );
    // Both went in their smaller form; one of those did not fit either.
    assert_eq!(oversized(&a, "replaced"), 2);
    assert_eq!(oversized(&a, "dropped"), 1);
    a.stop();
}

#[test]
fn a_record_too_large_to_send_without_a_smaller_form_stops_the_edge_with_what_to_change() {
    let (_mock, bootstrap) = cluster();
    let keys: Vec<String> = vec!["h0".into()];
    let mut s = settings(&bootstrap, "g8");
    s.client.insert("message.max.bytes".into(), "20000".into());
    let a = start_with(s, Arc::new(MemoryStore::new()));
    produce_payloads(&bootstrap, &keys, 0, 1, &HashMap::from([(0, "huge")]));
    let deadline = Instant::now() + Duration::from_secs(60);
    while !a.thread.is_finished() {
        assert!(Instant::now() < deadline, "the edge kept running");
        std::thread::sleep(Duration::from_millis(50));
    }
    let err = a
        .thread
        .join()
        .expect("edge thread")
        .expect_err("a fatal stop");
    assert!(
        err.contains("larger than the producer or the topic accepts")
            && err.contains("message.max.bytes"),
        "{err}"
    );
}

#[test]
fn a_stalled_broker_pauses_the_input_once_the_unacknowledged_bytes_reach_their_bound() {
    // The output topic's broker goes down; input keeps arriving, each record producing 10 KB.
    let (mock, bootstrap) = split_cluster("g9");
    let keys: Vec<String> = (0..8).map(|i| format!("w{i}")).collect();
    let mut s = settings(&bootstrap, "g9");
    s.max_in_flight_bytes = 200_000;
    let a = start_with(s, Arc::new(MemoryStore::new()));
    a.wait_owning(i64::from(PARTITIONS), Duration::from_secs(60));
    mock.broker_down(2).expect("output broker down");
    let wide: HashMap<usize, &str> = (0..600).map(|i| (i, "wide")).collect();
    produce_payloads(&bootstrap, &keys, 0, 600, &wide);
    let consumed = || {
        a.metrics
            .events_consumed
            .get_or_create(&tact_telemetry::TopicLabel { topic: "in" })
            .get()
    };
    // It reads until the bound, then waits; what it holds stays near the bound (a batch per
    // partition over at most), however long the broker is away.
    let mut last = u64::MAX;
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        std::thread::sleep(Duration::from_secs(2));
        let now = consumed();
        if now == last || Instant::now() > deadline {
            break;
        }
        last = now;
    }
    let held = a.metrics.outbox_pending_bytes.get();
    assert!(
        consumed() > 0 && consumed() < 600,
        "read {} of 600 while the broker was away",
        consumed()
    );
    assert!(
        (200_000..200_000 + 4 * 50 * 10_100).contains(&held),
        "{held} bytes held for a bound of 200000"
    );
    std::thread::sleep(Duration::from_secs(3));
    assert_eq!(
        consumed(),
        last,
        "reading went on while the output could not be delivered"
    );
    // Back: everything is delivered, nothing lost.
    mock.broker_up(2).expect("output broker up");
    wait_complete(&bootstrap, &expected(&keys, 600), Duration::from_secs(120));
    a.stop();
}

/// Every record of one changelog partition: offset, key, value and the tenure header.
#[allow(clippy::type_complexity)]
fn changelog_records(bootstrap: &str, p: i32) -> Vec<(i64, Vec<u8>, Option<Vec<u8>>, Option<i64>)> {
    let c: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
        .set("group.id", "changelog-reader")
        .set("enable.auto.commit", "false")
        .create()
        .expect("consumer");
    let mut tpl = TopicPartitionList::new();
    tpl.add_partition_offset(CHANGELOG, p, Offset::Beginning)
        .expect("tpl");
    c.assign(&tpl).expect("assign");
    let mut out = Vec::new();
    let mut idle = Instant::now();
    while idle.elapsed() < Duration::from_millis(700) {
        if let Some(Ok(m)) = c.poll(Duration::from_millis(50)) {
            let tenure = m.headers().and_then(|h| {
                h.iter()
                    .find(|h| h.key == TENURE_HEADER)
                    .and_then(|h| std::str::from_utf8(h.value?).ok()?.parse().ok())
            });
            out.push((
                m.offset(),
                m.key().unwrap_or_default().to_vec(),
                m.payload().map(<[u8]>::to_vec),
                tenure,
            ));
            idle = Instant::now();
        }
    }
    out
}

#[test]
fn a_zombies_late_writes_and_a_late_marker_change_nothing_restored_and_the_last_write_of_a_key_wins(
) {
    let (_mock, bootstrap) = cluster();
    // Four keys, one per partition: k0 lives in partition 0.
    let keys: Vec<String> = (0..4).map(|i| format!("z{i}")).collect();
    let store: Arc<dyn StateStore> = Arc::new(MemoryStore::new());
    produce(&bootstrap, &keys, 0, 40);
    let a = start(&bootstrap, "g6", store.clone());
    wait_complete(&bootstrap, &expected(&keys, 40), Duration::from_secs(60));
    a.stop();
    let tenure_a = changelog_records(&bootstrap, 0)
        .iter()
        .find_map(|(_, k, _, t)| (k.first() == Some(&b's')).then_some(*t).flatten())
        .expect("the changelog records carry their writer's tenure");
    // Another owner takes partition 0 (its marker), and then the old owner, which has not noticed
    // that it lost the partition, writes once more: that write must not come back.
    let z0 = changelog_state_key(&StateKey::Customer("z0".into()));
    let extra = changelog_state_key(&StateKey::Customer("extra".into()));
    let p: BaseProducer = ClientConfig::new()
        .set("bootstrap.servers", &bootstrap)
        .create()
        .expect("producer");
    let send = |key: &[u8], value: Option<Vec<u8>>, store_id: &str, tenure: Option<i64>| {
        let mut h = OwnedHeaders::new().insert(Header {
            key: STORE_HEADER,
            value: Some(store_id.as_bytes()),
        });
        if let Some(t) = tenure {
            h = h.insert(Header {
                key: TENURE_HEADER,
                value: Some(t.to_string().as_bytes()),
            });
        }
        let mut r = BaseRecord::<[u8], [u8]>::to(CHANGELOG)
            .key(key)
            .partition(0)
            .headers(h);
        if let Some(v) = &value {
            r = r.payload(&v[..]);
        }
        p.send(r).expect("send");
        p.flush(Duration::from_secs(10)).expect("flush");
    };
    send(b"x", Some(b"other".to_vec()), "other-instance", None);
    let marker_b = changelog_records(&bootstrap, 0)
        .iter()
        .filter(|(_, k, _, _)| k == b"x")
        .map(|(o, _, _, _)| *o)
        .max()
        .expect("marker");
    // The new owner puts, deletes and puts a key again (a restore must end with the last put);
    // in between, the old owner writes once more, and a third instance's marker lands late (it
    // lost the partition before writing anything): neither may change what is restored.
    send(&extra, Some(encode(1, 1)), "other-instance", Some(marker_b));
    send(&z0, Some(encode(1000, 1000)), "old-owner", Some(tenure_a));
    send(&extra, None, "other-instance", Some(marker_b));
    send(b"x", Some(b"late".to_vec()), "revoked-instance", None);
    send(&extra, Some(encode(2, 2)), "other-instance", Some(marker_b));
    // The first owner comes back on its own store (which the other owner's records make it
    // restore in full) and on a fresh one: both count on from 10.
    for store in [store, Arc::new(MemoryStore::new()) as Arc<dyn StateStore>] {
        let again = start(&bootstrap, "g6", store.clone());
        again.wait_owning(i64::from(PARTITIONS), Duration::from_secs(60));
        let got = store
            .multi_get(&[
                (0, &StateKey::Customer("z0".into())),
                (0, &StateKey::Customer("extra".into())),
            ])
            .expect("read");
        assert_eq!(
            got[0].as_deref().map(decode).map(|v| v.0),
            Some(10),
            "the zombie's write came back"
        );
        assert_eq!(
            got[1].as_deref().map(decode),
            Some((2, 2)),
            "put, delete, put did not end as the put"
        );
        assert!(again.metrics.restore_stale_records.get() >= 1);
        again.stop();
    }
}
