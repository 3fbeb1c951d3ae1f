//! `tact-bench`: the decision pipeline's data path alone (in-process input, real RocksDB and Avro,
//! the edge's own commit with outputs and changelog records in the outbox) against the raw
//! RocksDB read-modify-write rate for the same keys and state size, in one run, per CPU-second of
//! this process (RocksDB's background threads included), plus peak resident memory.

use clap::Parser;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Instant;
use tact_codec::{encode_click, encode_command, InputFormat};
use tact_core::state::{CategoryInterest, ConsentRecord};
use tact_core::{CustomerState, Purpose, Timestamp};
use tact_edge::{Input, Offline, OfflineTopics, Record};
use tact_runtime::config::Settings;
use tact_runtime::generator::{Generated, Generator, GeneratorConfig};
use tact_runtime::pipeline::envelope::{self, Versions};
use tact_runtime::pipeline::Pipeline;
use tact_store::{Commit, RocksOptions, RocksStore, StateKey, StateStore};
use tact_telemetry::{Metrics, Names};

/// The same allocator as the `tact` binary, so the engine is measured as it runs.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[derive(Parser, Debug)]
struct Args {
    #[arg(long, default_value_t = 1_000_000)]
    customers: u64,
    #[arg(long, default_value_t = 300_000)]
    events: usize,
    #[arg(long, default_value_t = 1000)]
    batch: usize,
    /// Scratch directory for the two RocksDB stores (removed afterwards).
    #[arg(long)]
    dir: Option<PathBuf>,
    /// Also write the results as JSON here.
    #[arg(long)]
    json: Option<PathBuf>,
}

/// CPU seconds (user + system) this process has used, from /proc (USER_HZ = 100 on Linux).
fn cpu_seconds() -> f64 {
    let stat = std::fs::read_to_string("/proc/self/stat").unwrap_or_default();
    // Fields after the parenthesised command name; utime and stime are the 12th and 13th.
    let rest = stat.rsplit_once(')').map_or("", |(_, r)| r);
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let ticks = |i: usize| {
        fields
            .get(i)
            .and_then(|f| f.parse::<f64>().ok())
            .unwrap_or(0.0)
    };
    (ticks(11) + ticks(12)) / 100.0
}

fn peak_rss_mib() -> f64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<f64>().ok())
        .map_or(0.0, |kb| kb / 1024.0)
}

fn customer_key(n: u64) -> String {
    format!("cust-{n:07}")
}

/// A typical returning customer's stored state (consent, two interests), as the store holds it.
fn warm_state() -> Vec<u8> {
    let interest = |c: &str| CategoryInterest {
        category: c.into(),
        views: 4,
        last_viewed_at: Timestamp(1_763_000_000_000),
        recent_products: (1..=4).map(|i| format!("{c}-{i}")).collect(),
        evidence: vec![format!("ev-{c}")],
    };
    envelope::encode(
        &Versions::new(),
        &CustomerState {
            first_seen: Some(Timestamp(1_760_000_000_000)),
            last_event_at: Some(Timestamp(1_763_000_000_000)),
            visits: 6,
            consents: vec![ConsentRecord {
                purpose: Purpose::Personalization,
                channel: None,
                granted: true,
                source: "consent_banner".into(),
                at: Timestamp(1_760_000_000_000),
                expires_at: None,
            }],
            interests: vec![interest("widgets"), interest("kitchen")],
            ..CustomerState::default()
        },
    )
}

fn warm(store: &RocksStore, customers: u64) {
    warm_dyn(store, customers);
    store.flush().expect("flush");
}

fn warm_dyn(store: &dyn StateStore, customers: u64) {
    let value = warm_state();
    let mut commit = Commit::default();
    for n in 0..customers {
        commit
            .state_puts
            .push((0, StateKey::Customer(customer_key(n)), value.clone()));
        if commit.state_puts.len() == 20_000 {
            store.commit(&commit).expect("warm-up write");
            commit = Commit::default();
        }
    }
    store.commit(&commit).expect("warm-up write");
}

fn main() {
    let args = Args::parse();
    let scratch = args
        .dir
        .clone()
        .unwrap_or_else(|| std::env::temp_dir().join(format!("tact-bench-{}", std::process::id())));
    let _ = std::fs::remove_dir_all(&scratch);

    // Input, prepared before anything is measured: Avro clicks, JSON consent commands.
    let gen = Generator::new(GeneratorConfig {
        customers: args.customers,
        concurrent_sessions: 4096,
        ..GeneratorConfig::default()
    });
    let mut inputs: Vec<Record> = Vec::with_capacity(args.events);
    let mut keys: Vec<StateKey> = Vec::with_capacity(args.events);
    let (mut clicks, mut commands) = (0i64, 0i64);
    for g in gen.take(args.events) {
        let (input, offset, value) = match &g {
            Generated::Click(e) => {
                clicks += 1;
                (
                    Input::Driving,
                    clicks - 1,
                    encode_click(e, InputFormat::AvroConfluent, 1),
                )
            }
            Generated::Command(c) => {
                commands += 1;
                (
                    Input::Co(0),
                    commands - 1,
                    encode_command(c, InputFormat::Json, 2),
                )
            }
        };
        keys.push(StateKey::Customer(g.customer_id().to_owned()));
        inputs.push(Record {
            input,
            partition: 0,
            offset,
            key: Some(g.customer_id().as_bytes().to_vec()),
            value: Some(value),
        });
    }
    let value_bytes = warm_state().len();

    // 1. The limit: raw RocksDB multi-get + put of the same keys, one WriteBatch per batch.
    let raw_dir = scratch.join("raw");
    let raw = RocksStore::open(&raw_dir, &RocksOptions::default()).expect("open raw store");
    warm(&raw, args.customers);
    let value = warm_state();
    let (cpu0, wall0) = (cpu_seconds(), Instant::now());
    for chunk in keys.chunks(args.batch) {
        let ks: Vec<(i32, &StateKey)> = chunk.iter().map(|k| (0, k)).collect();
        let got = raw.multi_get(&ks).expect("multi_get");
        let mut commit = Commit::default();
        for ((p, k), v) in ks.iter().zip(got) {
            // Write back what was read: the same bytes a real update would write.
            commit
                .state_puts
                .push((*p, (*k).clone(), v.unwrap_or_else(|| value.clone())));
        }
        raw.commit(&commit).expect("commit");
    }
    let raw_cpu = cpu_seconds() - cpu0;
    let raw_wall = wall0.elapsed().as_secs_f64();
    drop(raw);

    // 2. The engine: decode, skip, multi-get, fold, encode, one commit per batch with the outbox
    //    (outputs and changelog records), each batch's records deleted as delivered.
    let mut settings = Settings::load(None, &[]).expect("default settings");
    settings.interleave_wait = std::time::Duration::ZERO;
    let rocks = RocksStore::open(&scratch.join("engine"), &RocksOptions::default())
        .expect("open engine store");
    warm(&rocks, args.customers);
    let store: Arc<dyn StateStore> = Arc::new(rocks);
    let metrics = Arc::new(Metrics::new("bench", &Names::default()));
    let job = Pipeline::new(Arc::new(settings), metrics);
    let topics = OfflineTopics {
        driving: "clickstream".into(),
        co_partitioned: vec!["profile-commands".into()],
        changelog: "tact-changelog".into(),
    };
    let mut engine = Offline::new(job, store, topics, &[0], 1).expect("engine");
    let (cpu0, wall0) = (cpu_seconds(), Instant::now());
    let mut decisions = 0usize;
    let mut changelog = 0usize;
    let mut remaining = inputs.into_iter();
    loop {
        let batch: Vec<Record> = remaining.by_ref().take(args.batch).collect();
        if batch.is_empty() {
            break;
        }
        let out = engine.feed(batch).expect("process");
        decisions += out.outputs.len();
        changelog += out.changelog;
    }
    let engine_cpu = cpu_seconds() - cpu0;
    let engine_wall = wall0.elapsed().as_secs_f64();
    let rss = peak_rss_mib();
    let _ = std::fs::remove_dir_all(&scratch);

    let n = args.events as f64;
    let engine_rate = n / engine_cpu.max(0.001);
    let raw_rate = n / raw_cpu.max(0.001);
    println!("tact engine benchmark: {} events, {} customers with warm state ({value_bytes} B each), batches of {}", args.events, args.customers, args.batch);
    println!("| measure | events per CPU-second | wall seconds | vs target |");
    println!("|---|---:|---:|---|");
    println!(
        "| raw RocksDB multi-get + put, same keys (limit) | {raw_rate:>10.0} | {raw_wall:.2} | |"
    );
    println!(
        "| tact engine (Avro decode, fold, encode, one WriteBatch) | {engine_rate:>10.0} | {engine_wall:.2} | {:.2}x of 100K target |",
        engine_rate / 100_000.0
    );
    println!(
        "| engine / raw RocksDB | {:.2} | | |",
        engine_rate / raw_rate
    );
    println!("| peak RSS | {rss:.0} MiB | | |");
    println!("| records produced (decisions, suppressions) | {decisions} | | |");
    println!("| changelog records written | {changelog} | | |");
    if let Some(path) = args.json {
        let json = serde_json::json!({
            "events": args.events, "customers": args.customers,
            "engine_events_per_cpu_s": engine_rate, "raw_rocksdb_events_per_cpu_s": raw_rate,
            "engine_over_raw": engine_rate / raw_rate, "peak_rss_mib": rss, "records": decisions,
            "changelog_records": changelog,
        });
        if let Err(e) = std::fs::write(&path, json.to_string()) {
            eprintln!("cannot write {}: {e}", path.display());
        }
    }
}
