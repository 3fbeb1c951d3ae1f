//! `tact demo`: an embedded broker (librdkafka's mock cluster) inside the process, the generator
//! producing into it, the real pipeline consuming over TCP, and a live view of what it decides.

use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;
use tact_codec::{decode_decision, decode_suppressed, InputFormat};
use tact_edge::EdgeError;
use tact_kafka::rdkafka::config::ClientConfig;
use tact_kafka::rdkafka::consumer::{BaseConsumer, Consumer};
use tact_kafka::rdkafka::mocking::MockCluster;
use tact_kafka::rdkafka::Message;
use tact_runtime::config::Settings;
use tact_runtime::feed::{feed, FeedOptions};
use tact_runtime::generator::{Generator, GeneratorConfig};
use tact_runtime::RunSummary;
use tact_store::{RocksOptions, RocksStore, StateStore};
use tact_telemetry::{Health, InsightsMetrics, Metrics};

/// The demo's k: a finding needs this many distinct sessions (production default: 20).
const DEMO_K: u64 = 5;

#[derive(Debug, Clone)]
pub struct DemoOptions {
    pub duration: Option<Duration>,
    pub customers: u64,
    pub rate: u64,
    pub partitions: i32,
    pub seed: u64,
    /// Where state lives; a temporary directory when `None`.
    pub state_dir: Option<PathBuf>,
    /// Print every decision and suppressed candidate.
    pub live: bool,
}

/// Runs the demo until `stop` is set (Ctrl-C) or the duration passes.
pub fn run_demo(
    mut settings: Settings,
    opts: &DemoOptions,
    metrics: Arc<Metrics>,
    insights_metrics: InsightsMetrics,
    health: Arc<Health>,
    stop: Arc<AtomicBool>,
) -> Result<RunSummary, EdgeError> {
    let cluster = MockCluster::new(1)
        .map_err(|e| EdgeError::Setup(format!("cannot start the embedded broker: {e}")))?;
    let t = settings.topics.clone();
    let mut lane = tact_insights::InsightsSettings::load(None, &[])
        .map_err(|e| EdgeError::Setup(format!("insights defaults: {e}")))?;
    for topic in [
        &t.clickstream,
        &t.profile_commands,
        &t.decisions,
        &t.suppressed,
        &t.dead_letter,
        &t.erasure_receipts,
        &t.catalog,
        &t.changelog,
        &lane.insights_topic,
        &lane.partials_topic,
        &lane.changelog_topic,
    ] {
        cluster
            .create_topic(topic, opts.partitions, 1)
            .map_err(|e| EdgeError::Setup(format!("cannot create topic {topic}: {e}")))?;
    }
    settings.kafka.bootstrap_servers = cluster.bootstrap_servers();
    if settings.rules.catalog.is_empty() {
        settings.rules.catalog =
            tact_runtime::config::parse_catalog(tact_runtime::config::EXAMPLE_CATALOG)
                .map_err(|e| EdgeError::Setup(format!("the example catalog is invalid: {e}")))?;
    }
    if settings.rules.faq.is_empty() {
        settings.rules.faq = tact_runtime::config::parse_faq(tact_runtime::config::EXAMPLE_FAQ)
            .map_err(|e| EdgeError::Setup(format!("the example knowledge base is invalid: {e}")))?;
    }
    // The lane tells which failing searches the knowledge base answers.
    lane.rules.faq = settings.rules.faq.clone();
    let temp;
    settings.state_dir = match &opts.state_dir {
        Some(dir) => dir.clone(),
        None => {
            temp = std::env::temp_dir().join(format!("tact-demo-{}", std::process::id()));
            temp.clone()
        }
    };
    let open = |dir: &std::path::Path| -> Result<Arc<dyn StateStore>, EdgeError> {
        RocksStore::open(
            dir,
            &RocksOptions {
                block_cache_bytes: 64 << 20,
                write_buffer_bytes: 16 << 20,
                compression: tact_store::Compression::Lz4,
            },
        )
        .map(|s| Arc::new(s) as Arc<dyn StateStore>)
        .map_err(|e| EdgeError::Setup(e.to_string()))
    };
    let store = open(&settings.state_dir.join("pipeline"))?;
    let lane_store = open(&settings.state_dir.join("insights"))?;

    let feeding = {
        let stop = stop.clone();
        let fo = FeedOptions {
            bootstrap: settings.kafka.bootstrap_servers.clone(),
            clickstream_topic: t.clickstream.clone(),
            commands_topic: t.profile_commands.clone(),
            click_format: settings.clickstream_format,
            command_format: settings.profile_commands_format,
            rate: Some(opts.rate),
            max_events: None,
            max_duration: opts.duration,
        };
        let gen = Generator::new(GeneratorConfig {
            customers: opts.customers,
            seed: opts.seed,
            ..GeneratorConfig::default()
        });
        std::thread::spawn(move || {
            // However the generator ends (done, error or panic), the pipeline drains and stops.
            struct StopOnExit(Arc<AtomicBool>);
            impl Drop for StopOnExit {
                fn drop(&mut self) {
                    self.0.store(true, Ordering::Relaxed);
                }
            }
            let _guard = StopOnExit(stop.clone());
            if let Err(e) = feed(gen, &fo, &stop, |_| {}) {
                tracing::error!(error = %e, "demo generator stopped");
            }
        })
    };
    // The insights lane, in its own consumer group, beside the decision pipeline.
    let insights_stop = Arc::new(AtomicBool::new(false));
    let insights_topic = lane.insights_topic.clone();
    let insights = {
        lane.bootstrap_servers = settings.kafka.bootstrap_servers.clone();
        lane.clickstream_topic = t.clickstream.clone();
        lane.clickstream_format = settings.clickstream_format;
        // A few hundred demo customers: a lower k and shorter windows than production.
        lane.rules.min_sessions = DEMO_K;
        lane.rules.window_ms = 30 * 60_000;
        lane.idle_advance = None;
        let mut es = tact_insights::edge_settings(&lane);
        // The embedded broker cannot describe topic configs.
        es.require_compaction = false;
        let stop = insights_stop.clone();
        let lane_health = Arc::new(Health::new(30_000));
        std::thread::spawn(move || {
            tact_insights::run_insights(lane, es, lane_store, insights_metrics, lane_health, &stop)
        })
    };
    let viewer_stop = Arc::new(AtomicBool::new(false));
    let viewer = opts.live.then(|| {
        let (bootstrap, stop) = (
            settings.kafka.bootstrap_servers.clone(),
            viewer_stop.clone(),
        );
        let topics = (t.decisions.clone(), t.suppressed.clone());
        std::thread::spawn(move || view(&bootstrap, &topics.0, &topics.1, &stop))
    });
    if settings.clickstream_format == InputFormat::Json {
        tracing::info!("demo clickstream is JSON");
    }
    let mut es = tact_runtime::service::edge_settings(&settings);
    es.require_compaction = false;
    let started = std::time::Instant::now();
    let summary =
        tact_runtime::service::run_with(es, settings.clone(), store, metrics, health, &stop).map(
            |mut s| {
                s.elapsed = started.elapsed();
                s
            },
        );
    let _ = feeding.join();
    // Let the viewer print what was produced during the drain.
    std::thread::sleep(Duration::from_millis(700));
    viewer_stop.store(true, Ordering::Relaxed);
    if let Some(v) = viewer {
        let _ = v.join();
    }
    insights_stop.store(true, Ordering::Relaxed);
    match insights.join() {
        Ok(Ok(_)) => {
            let mut report = tact_insights::ReportOptions::new(
                &settings.kafka.bootstrap_servers,
                &insights_topic,
            );
            report.idle = Duration::from_millis(800);
            report.top = 5;
            match tact_insights::read_insights(&report) {
                Ok(findings) if !findings.is_empty() => {
                    println!("\nsite insights (aggregate only, each supported by at least {DEMO_K} sessions):");
                    print!("{}", tact_insights::render_table(&findings, report.top));
                }
                Ok(_) => println!("\nsite insights: no window closed with {DEMO_K}+ supporting sessions yet (run longer)"),
                Err(e) => tracing::warn!(error = %e, "cannot read the insights"),
            }
        }
        Ok(Err(e)) => tracing::warn!(error = %e, "the insights lane stopped"),
        Err(_) => tracing::warn!("the insights lane panicked"),
    }
    if opts.state_dir.is_none() {
        let _ = std::fs::remove_dir_all(&settings.state_dir);
    }
    summary
}

/// Prints decisions and suppressed candidates as they appear on their topics.
fn view(bootstrap: &str, decisions: &str, suppressed: &str, stop: &AtomicBool) {
    let consumer: BaseConsumer = match ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
        .set("group.id", "tact-demo-viewer")
        .set("auto.offset.reset", "earliest")
        .create()
    {
        Ok(c) => c,
        Err(e) => {
            tracing::error!(error = %e, "demo viewer cannot start");
            return;
        }
    };
    if let Err(e) = consumer.subscribe(&[decisions, suppressed]) {
        tracing::error!(error = %e, "demo viewer cannot subscribe");
        return;
    }
    while !stop.load(Ordering::Relaxed) {
        let Some(Ok(m)) = consumer.poll(Duration::from_millis(100)) else {
            continue;
        };
        let Some(bytes) = m.payload() else { continue };
        if m.topic() == decisions {
            if let Ok(d) = decode_decision(bytes) {
                let what = if d.items.is_empty() {
                    if d.personalized {
                        String::new()
                    } else {
                        "plain, nothing personal".into()
                    }
                } else {
                    format!("items {}", d.items.join(", "))
                };
                let why = d
                    .reasons
                    .iter()
                    .map(|r| r.detail.as_str())
                    .collect::<Vec<_>>()
                    .join("; ");
                println!(
                    "  DECISION {:<21} {:<8} {:<13} {:<34} why: {}",
                    d.kind.to_lowercase(),
                    d.channel.to_lowercase(),
                    d.customer_id,
                    what,
                    why
                );
                // Hand-offs: what the agent is told, and the answers the widget can show first.
                if let Some(c) = &d.context {
                    let searches: Vec<String> = c
                        .searches
                        .iter()
                        .map(|s| format!("{:?} ({} results)", s.query, s.results))
                        .collect();
                    println!(
                        "           for the agent: pages [{}] searches [{}] compared [{}] cart [{}]",
                        c.pages.join(", "),
                        searches.join(", "),
                        c.products_compared.join(", "),
                        c.cart.join(", ")
                    );
                }
                if let Some(due) = d.due_at.and_then(chrono::DateTime::from_timestamp_millis) {
                    println!("           due by {}", due.format("%Y-%m-%d %H:%M UTC"));
                }
                if !d.suggested_answers.is_empty() {
                    let answers: Vec<&str> = d
                        .suggested_answers
                        .iter()
                        .map(|a| a.question.as_str())
                        .collect();
                    println!("           suggested answers: {}", answers.join(" | "));
                }
            }
        } else if let Ok(s) = decode_suppressed(bytes) {
            println!(
                "  silent   {:<21} {:<8} {:<13} gate {:<17} reason {:<16} {}",
                s.kind.to_lowercase(),
                s.channel.to_lowercase(),
                s.customer_id,
                s.gate.to_lowercase(),
                s.reason_code,
                s.detail
            );
        }
    }
}
