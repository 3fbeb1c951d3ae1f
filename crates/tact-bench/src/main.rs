//! `tact-bench engine`: the engine alone (in-process input, real RocksDB and Avro) against the raw
//! RocksDB read-modify-write rate for the same keys and state size, in one run, per CPU-second of
//! this process (RocksDB's background threads included), plus peak resident memory.

use clap::Parser;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Instant;
use tact_codec::{encode_click, encode_command, encode_state, InputFormat};
use tact_core::state::{CategoryInterest, ConsentRecord};
use tact_core::{CustomerState, Purpose, Timestamp};
use tact_runtime::config::Settings;
use tact_runtime::engine::{Engine, Input, Source};
use tact_runtime::generator::{Generated, Generator, GeneratorConfig};
use tact_store::{Commit, RocksOptions, RocksStore, StateStore};
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

/// A typical returning customer's stored state (consent, two interests).
fn warm_state() -> Vec<u8> {
    let interest = |c: &str| CategoryInterest {
        category: c.into(),
        views: 4,
        last_viewed_at: Timestamp(1_763_000_000_000),
        recent_products: (1..=4).map(|i| format!("{c}-{i}")).collect(),
        evidence: vec![format!("ev-{c}")],
    };
    encode_state(&CustomerState {
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
    })
}

fn warm(store: &RocksStore, customers: u64) {
    let value = warm_state();
    let mut commit = Commit::default();
    for n in 0..customers {
        commit
            .state_puts
            .push((customer_key(n).into_bytes(), value.clone()));
        if commit.state_puts.len() == 20_000 {
            store.commit(&commit).expect("warm-up write");
            commit = Commit::default();
        }
    }
    store.commit(&commit).expect("warm-up write");
    store.flush().expect("flush");
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
    let mut inputs: Vec<Input> = Vec::with_capacity(args.events);
    let mut keys: Vec<String> = Vec::with_capacity(args.events);
    for (offset, g) in gen.take(args.events).enumerate() {
        let (source, topic, value) = match &g {
            Generated::Click(e) => (
                Source::Clickstream,
                "clickstream",
                encode_click(e, InputFormat::AvroConfluent, 1),
            ),
            Generated::Command(c) => (
                Source::ProfileCommands,
                "profile-commands",
                encode_command(c, InputFormat::Json, 2),
            ),
        };
        keys.push(g.customer_id().to_owned());
        inputs.push(Input {
            source,
            topic: topic.into(),
            partition: 0,
            offset: offset as i64,
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
        let ks: Vec<&[u8]> = chunk.iter().map(|k| k.as_bytes()).collect();
        let got = raw.multi_get(&ks).expect("multi_get");
        let mut commit = Commit::default();
        for (k, v) in ks.iter().zip(got) {
            // Write back what was read: the same bytes a real update would write.
            commit
                .state_puts
                .push((k.to_vec(), v.unwrap_or_else(|| value.clone())));
        }
        raw.commit(&commit).expect("commit");
    }
    let raw_cpu = cpu_seconds() - cpu0;
    let raw_wall = wall0.elapsed().as_secs_f64();
    drop(raw);

    // 2. The engine: decode, skip, multi-get, fold, encode, one commit per batch with the outbox.
    let settings = Settings::load(None, &[]).expect("default settings");
    let store = RocksStore::open(&scratch.join("engine"), &RocksOptions::default())
        .expect("open engine store");
    warm(&store, args.customers);
    let metrics = Arc::new(Metrics::new("bench", &Names::default()));
    let mut engine = Engine::new(settings, store, metrics).expect("engine");
    let (cpu0, wall0) = (cpu_seconds(), Instant::now());
    let mut acknowledged: Vec<u64> = Vec::new();
    let mut decisions = 0usize;
    let mut remaining = inputs.into_iter();
    loop {
        let batch: Vec<Input> = remaining.by_ref().take(args.batch).collect();
        if batch.is_empty() {
            break;
        }
        // The previous batch's output counts as acknowledged, as after a broker round trip.
        let out = engine
            .process(batch, std::mem::take(&mut acknowledged))
            .expect("process");
        decisions += out.records.len();
        acknowledged = out.records.iter().map(|(s, _)| *s).collect();
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
    if let Some(path) = args.json {
        let json = serde_json::json!({
            "events": args.events, "customers": args.customers,
            "engine_events_per_cpu_s": engine_rate, "raw_rocksdb_events_per_cpu_s": raw_rate,
            "engine_over_raw": engine_rate / raw_rate, "peak_rss_mib": rss, "records": decisions,
        });
        if let Err(e) = std::fs::write(&path, json.to_string()) {
            eprintln!("cannot write {}: {e}", path.display());
        }
    }
}
