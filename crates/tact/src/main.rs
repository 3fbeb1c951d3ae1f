//! The `tact` binary: a thin shell. Parses the command line, loads and validates settings, and
//! hands over to the runtime. Exit codes: 0 done, 2 invalid configuration or usage, 3 setup
//! problem (cluster unreachable, topic missing, state directory locked), 4 fatal runtime error.

use clap::{Parser, Subcommand};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;
use tact_codec::{ErrorClass, InputFormat};
use tact_core::{Channel, DecisionKind};
use tact_runtime::config::{LogFormat, Settings};
use tact_runtime::demo::{run_demo, DemoOptions};
use tact_runtime::feed::{feed, FeedOptions};
use tact_runtime::generator::{Generator, GeneratorConfig};
use tact_runtime::pipeline::{Pipeline, PipelineError, RunSummary};
use tact_store::{RocksOptions, RocksStore};
use tact_telemetry::{Health, Metrics, Names};

#[derive(Parser, Debug)]
#[command(
    name = "tact",
    version,
    about = "Tactful personalization decisions from a clickstream"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Run the pipeline against a Kafka cluster until SIGTERM/SIGINT.
    Run {
        #[arg(long, short)]
        config: Option<PathBuf>,
    },
    /// Run everything in one process: embedded broker, generated clickstream, live decisions.
    Demo {
        /// Stop after this long (e.g. 30s, 2m); runs until Ctrl-C when omitted.
        #[arg(long, value_parser = parse_duration)]
        duration: Option<Duration>,
        #[arg(long, default_value_t = 200)]
        customers: u64,
        /// Events per second.
        #[arg(long, default_value_t = 300)]
        rate: u64,
        #[arg(long, default_value_t = 3)]
        partitions: i32,
        #[arg(long, default_value_t = 7)]
        seed: u64,
        /// Serve /metrics here while the demo runs.
        #[arg(long, default_value = "127.0.0.1:9898")]
        http: SocketAddr,
        /// Keep state here instead of a temporary directory.
        #[arg(long)]
        state_dir: Option<PathBuf>,
        /// Only the summary, not every decision.
        #[arg(long)]
        quiet: bool,
    },
    /// Produce a synthetic clickstream to a real broker.
    Generate {
        #[arg(long, default_value = "127.0.0.1:9092")]
        bootstrap: String,
        #[arg(long, default_value = "clickstream")]
        topic: String,
        #[arg(long, default_value = "profile-commands")]
        commands_topic: String,
        #[arg(long, value_enum, default_value = "avro-confluent")]
        format: Format,
        #[arg(long, value_enum, default_value = "json")]
        commands_format: Format,
        /// Events per second (0: as fast as possible).
        #[arg(long, default_value_t = 1000)]
        rate: u64,
        #[arg(long, default_value_t = 10_000)]
        customers: u64,
        #[arg(long, value_parser = parse_duration)]
        duration: Option<Duration>,
        /// Stop after this many records (events and commands).
        #[arg(long)]
        events: Option<u64>,
        #[arg(long, default_value_t = 7)]
        seed: u64,
        /// Share of customers who grant personalization consent.
        #[arg(long, default_value_t = 0.6)]
        consent_granted: f64,
    },
    /// Check a configuration file (and TACT__ environment) and print the effective settings.
    Validate {
        #[arg(long, short)]
        config: Option<PathBuf>,
    },
    /// Print the Avro schemas, or write them to a directory.
    Schemas {
        #[arg(long)]
        out: Option<PathBuf>,
    },
    /// The insights lane: aggregate navigation findings that improve the site, never per person.
    Insights {
        #[command(subcommand)]
        command: InsightsCommand,
    },
    /// Work with decision policy files.
    Policy {
        #[command(subcommand)]
        command: PolicyCommand,
    },
    /// What tact holds about one customer and why (JSON: provenance of every item, consent,
    /// session-only data, pending timers), read-only. The answer to a subject access request.
    Inspect {
        /// The state directory (default: state.dir of the configuration).
        #[arg(long)]
        state_dir: Option<PathBuf>,
        #[arg(long)]
        customer: String,
        /// The configuration whose policy schedules timers (default: the embedded one).
        #[arg(long, short)]
        config: Option<PathBuf>,
    },
}

#[derive(Subcommand, Debug)]
enum InsightsCommand {
    /// Run the lane (its own consumer group) until SIGTERM/SIGINT.
    Run {
        #[arg(long, short)]
        config: Option<PathBuf>,
    },
    /// Read the insights topic and print the top findings; optionally write an HTML page.
    Report {
        #[arg(long, default_value = "127.0.0.1:9092")]
        bootstrap: String,
        #[arg(long, default_value = "insights")]
        topic: String,
        #[arg(long)]
        html: Option<PathBuf>,
        /// Findings shown per kind.
        #[arg(long, default_value_t = 10)]
        top: usize,
        /// Stop reading once nothing arrived for this many milliseconds.
        #[arg(long, default_value_t = 3000)]
        idle_ms: u64,
    },
}

#[derive(Subcommand, Debug)]
enum PolicyCommand {
    /// Check a policy file: every problem with its key; exit 2 if any.
    Check { file: PathBuf },
}

#[derive(Debug, Clone, Copy, clap::ValueEnum)]
enum Format {
    AvroConfluent,
    AvroSingleObject,
    AvroDatum,
    Json,
}

impl From<Format> for InputFormat {
    fn from(f: Format) -> InputFormat {
        match f {
            Format::AvroConfluent => InputFormat::AvroConfluent,
            Format::AvroSingleObject => InputFormat::AvroSingleObject,
            Format::AvroDatum => InputFormat::AvroDatum,
            Format::Json => InputFormat::Json,
        }
    }
}

fn parse_duration(s: &str) -> Result<Duration, String> {
    let (num, unit) = s.trim().split_at(
        s.trim()
            .find(|c: char| !c.is_ascii_digit())
            .unwrap_or(s.trim().len()),
    );
    let n: u64 = num
        .parse()
        .map_err(|_| format!("{s:?} is not a duration like 30s, 5m or 1h"))?;
    Ok(match unit {
        "" | "s" => Duration::from_secs(n),
        "ms" => Duration::from_millis(n),
        "m" => Duration::from_secs(n * 60),
        "h" => Duration::from_secs(n * 3600),
        _ => return Err(format!("{s:?}: unknown unit {unit:?} (use ms, s, m or h)")),
    })
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match cli.command {
        Command::Run { config } => cmd_run(config.as_deref()),
        Command::Demo {
            duration,
            customers,
            rate,
            partitions,
            seed,
            http,
            state_dir,
            quiet,
        } => cmd_demo(
            DemoOptions {
                duration,
                customers,
                rate,
                partitions,
                seed,
                state_dir,
                live: !quiet,
            },
            http,
        ),
        Command::Generate {
            bootstrap,
            topic,
            commands_topic,
            format,
            commands_format,
            rate,
            customers,
            duration,
            events,
            seed,
            consent_granted,
        } => {
            tact_telemetry::init_logs("warn", false);
            let opts = FeedOptions {
                bootstrap,
                clickstream_topic: topic,
                commands_topic,
                click_format: format.into(),
                command_format: commands_format.into(),
                rate: (rate > 0).then_some(rate),
                max_events: events,
                max_duration: duration.or(if events.is_none() {
                    Some(Duration::from_secs(60))
                } else {
                    None
                }),
            };
            let gen = Generator::new(GeneratorConfig {
                customers,
                seed,
                consent_granted: consent_granted.clamp(0.0, 1.0),
                consent_denied: (1.0 - consent_granted.clamp(0.0, 1.0)).min(0.15),
                ..GeneratorConfig::default()
            });
            let bar = indicatif::ProgressBar::new(events.unwrap_or(0));
            bar.set_style(
                indicatif::ProgressStyle::with_template(
                    "{spinner} {pos} records  {per_sec}  {elapsed_precise} {wide_bar}",
                )
                .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar()),
            );
            let stop = Arc::new(AtomicBool::new(false));
            install_ctrl_c(stop.clone());
            match feed(gen, &opts, &stop, |n| bar.set_position(n)) {
                Ok(n) => {
                    bar.finish();
                    println!(
                        "sent {n} records to {} / {}",
                        opts.clickstream_topic, opts.commands_topic
                    );
                    ExitCode::SUCCESS
                }
                Err(e) => {
                    bar.abandon();
                    eprintln!("error: {e}");
                    ExitCode::from(3)
                }
            }
        }
        Command::Validate { config } => match Settings::load_from_process(config.as_deref()) {
            Ok(s) => {
                print!("{}", s.describe());
                println!("configuration is valid");
                ExitCode::SUCCESS
            }
            Err(e) => {
                eprintln!("{e}");
                ExitCode::from(2)
            }
        },
        Command::Schemas { out } => cmd_schemas(out.as_deref()),
        Command::Policy {
            command: PolicyCommand::Check { file },
        } => cmd_policy_check(&file),
        Command::Insights {
            command: InsightsCommand::Run { config },
        } => cmd_insights_run(config.as_deref()),
        Command::Insights {
            command:
                InsightsCommand::Report {
                    bootstrap,
                    topic,
                    html,
                    top,
                    idle_ms,
                },
        } => {
            tact_telemetry::init_logs("warn", false);
            let mut opts = tact_insights::ReportOptions::new(&bootstrap, &topic);
            opts.html_out = html;
            opts.top = top;
            opts.idle = Duration::from_millis(idle_ms);
            match tact_insights::report(&opts) {
                Ok(table) => {
                    print!("{table}");
                    ExitCode::SUCCESS
                }
                Err(e) => {
                    eprintln!("error: {e}");
                    insights_exit(&e)
                }
            }
        }
        Command::Inspect {
            state_dir,
            customer,
            config,
        } => cmd_inspect(state_dir.as_deref(), &customer, config.as_deref()),
    }
}

fn names() -> Names {
    Names {
        topics: vec!["clickstream", "profile_commands", "catalog"],
        error_classes: ErrorClass::ALL.iter().map(|c| c.as_str()).collect(),
        kinds: DecisionKind::ALL.iter().map(|k| k.as_str()).collect(),
        channels: Channel::ALL.iter().map(|c| c.as_str()).collect(),
    }
}

/// SIGINT/SIGTERM set `stop`; a second signal exits at once.
fn install_ctrl_c(stop: Arc<AtomicBool>) {
    std::thread::spawn(move || {
        let Ok(rt) = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
        else {
            return;
        };
        rt.block_on(wait_for_signals(stop));
    });
}

async fn wait_for_signals(stop: Arc<AtomicBool>) {
    use tokio::signal::unix::{signal, SignalKind};
    let (Ok(mut term), Ok(mut int)) = (
        signal(SignalKind::terminate()),
        signal(SignalKind::interrupt()),
    ) else {
        return;
    };
    for _ in 0..2 {
        tokio::select! {
            _ = term.recv() => {}
            _ = int.recv() => {}
        }
        if stop.swap(true, Ordering::SeqCst) {
            eprintln!("second signal: exiting without draining (the outbox re-sends on restart)");
            std::process::exit(130);
        }
        tracing::info!("stop requested; draining");
    }
}

/// Starts the HTTP endpoints and signal handling on a small runtime of their own.
fn start_edges(
    listen: SocketAddr,
    metrics: Arc<Metrics>,
    health: Arc<Health>,
    stop: Arc<AtomicBool>,
) -> Result<tokio::runtime::Runtime, String> {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .thread_name("tact-edge")
        .build()
        .map_err(|e| format!("cannot start the HTTP runtime: {e}"))?;
    let stop_http = stop.clone();
    let (addr, _) = rt
        .block_on(tact_telemetry::serve(listen, metrics, health, async move {
            while !stop_http.load(Ordering::Relaxed) {
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
        }))
        .map_err(|e| format!("cannot listen on {listen}: {e}"))?;
    tracing::info!(%addr, "serving /metrics /healthz /readyz");
    rt.spawn(wait_for_signals(stop));
    Ok(rt)
}

fn exit_for(e: &PipelineError) -> ExitCode {
    match e {
        PipelineError::Setup(_) => ExitCode::from(3),
        PipelineError::Fatal(_) => ExitCode::from(4),
    }
}

fn cmd_run(config: Option<&Path>) -> ExitCode {
    let settings = match Settings::load_from_process(config) {
        Ok(s) => s,
        Err(e) => {
            eprintln!("{e}");
            return ExitCode::from(2);
        }
    };
    tact_telemetry::init_logs(&settings.log_level, settings.log_format == LogFormat::Json);
    let metrics = Arc::new(Metrics::new(env!("CARGO_PKG_VERSION"), &names()));
    let health = Arc::new(Health::new(30_000));
    let stop = Arc::new(AtomicBool::new(false));
    let _edges = match start_edges(
        settings.http_listen,
        metrics.clone(),
        health.clone(),
        stop.clone(),
    ) {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: {e}");
            return ExitCode::from(3);
        }
    };
    let store = match RocksStore::open(
        &settings.state_dir,
        &RocksOptions {
            block_cache_bytes: settings.block_cache_bytes,
            ..RocksOptions::default()
        },
    ) {
        Ok(s) => Arc::new(s),
        Err(e) => {
            eprintln!("error: {e}");
            return ExitCode::from(3);
        }
    };
    if let Some(addr) = settings.admin_listen {
        let view = store.clone();
        let policy = settings.rules.policy.clone();
        let lookup: tact_telemetry::CustomerLookup = Arc::new(move |id: &str| {
            tact_runtime::inspect::lookup(&*view, id, &policy)
                .map(|v| v.map(|v| serde_json::to_string_pretty(&v).unwrap_or_default()))
        });
        let stop_admin = stop.clone();
        match _edges.block_on(tact_telemetry::serve_admin(addr, lookup, async move {
            while !stop_admin.load(Ordering::Relaxed) {
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
        })) {
            Ok((bound, _)) => {
                if !bound.ip().is_loopback() {
                    tracing::warn!(%bound, "the admin endpoint serves personal data beyond this host; put an authenticating proxy in front of it");
                }
                tracing::info!(%bound, "serving read-only /customers/{{id}}");
            }
            Err(e) => {
                eprintln!("error: cannot listen on {addr} (http.admin_listen): {e}");
                return ExitCode::from(3);
            }
        }
    }
    let result = Pipeline::new(settings, store, metrics, health).and_then(|p| p.run(&stop));
    match result {
        Ok(summary) => {
            tracing::info!(
                events = summary.events,
                decisions = summary.decisions.values().sum::<u64>(),
                "stopped"
            );
            ExitCode::SUCCESS
        }
        Err(e) => {
            tracing::error!(error = %e, "stopping");
            eprintln!("error: {e}");
            exit_for(&e)
        }
    }
}

fn cmd_demo(opts: DemoOptions, http: SocketAddr) -> ExitCode {
    tact_telemetry::init_logs("warn,tact_runtime=info", false);
    let mut settings = match Settings::load(None, &[]) {
        Ok(s) => s,
        Err(e) => {
            eprintln!("{e}");
            return ExitCode::from(2);
        }
    };
    settings.http_listen = http;
    let metrics = Arc::new(Metrics::new(env!("CARGO_PKG_VERSION"), &names()));
    let health = Arc::new(Health::new(30_000));
    let stop = Arc::new(AtomicBool::new(false));
    let _edges = match start_edges(http, metrics.clone(), health.clone(), stop.clone()) {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: {e} (pick another port with --http)");
            return ExitCode::from(3);
        }
    };
    println!(
        "tact demo: embedded broker, {} customers at {} events/s{}; metrics on http://{http}/metrics; Ctrl-C stops",
        opts.customers,
        opts.rate,
        opts.duration.map(|d| format!(" for {}s", d.as_secs())).unwrap_or_default()
    );
    match run_demo(settings, &opts, metrics, health, stop) {
        Ok(summary) => {
            print_summary(&summary);
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("error: {e}");
            exit_for(&e)
        }
    }
}

fn print_summary(s: &RunSummary) {
    let secs = s.elapsed.as_secs_f64().max(0.001);
    println!("\nsummary after {secs:.1}s");
    println!(
        "  events      {:>8}  ({:.0} events/s)",
        s.events,
        s.events as f64 / secs
    );
    println!("  commands    {:>8}", s.commands);
    println!("  dead letters{:>8}", s.dead_lettered);
    println!("  decisions   {:>8}", s.decisions.values().sum::<u64>());
    for (kind, n) in &s.decisions {
        println!("    {kind:<28}{n:>6}");
    }
    println!("  suppressed  {:>8}", s.suppressions.values().sum::<u64>());
    for ((gate, reason), n) in &s.suppressions {
        println!("    {:<28}{n:>6}", format!("{gate}/{reason}"));
    }
    if s.unacknowledged_at_exit > 0 {
        println!(
            "  {} records stay in the outbox for the next run",
            s.unacknowledged_at_exit
        );
    }
}

fn insights_exit(e: &tact_insights::InsightsError) -> ExitCode {
    match e {
        tact_insights::InsightsError::Setup(_) => ExitCode::from(3),
        tact_insights::InsightsError::Fatal(_) => ExitCode::from(4),
    }
}

fn cmd_insights_run(config: Option<&Path>) -> ExitCode {
    let settings = match tact_insights::InsightsSettings::load_from_process(config) {
        Ok(s) => s,
        Err(e) => {
            eprintln!("{e}");
            return ExitCode::from(2);
        }
    };
    tact_telemetry::init_logs(&settings.log_level, settings.log_json);
    let stop = Arc::new(AtomicBool::new(false));
    install_ctrl_c(stop.clone());
    match tact_insights::run_insights(settings, &stop) {
        Ok(_) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e}");
            insights_exit(&e)
        }
    }
}

fn cmd_policy_check(file: &Path) -> ExitCode {
    match tact_runtime::config::load_policy(file) {
        Ok(p) => {
            let tiers = |t: tact_core::Tier| {
                p.sensitivity
                    .categories
                    .values()
                    .filter(|x| **x == t)
                    .count()
            };
            println!("{}: policy {:?} is valid", file.display(), p.version);
            println!("  consent regime        {:?}", p.consent_regime);
            println!(
                "  sensitivity           {} never_remember, {} session_only categories (default {:?})",
                tiers(tact_core::Tier::NeverRemember),
                tiers(tact_core::Tier::SessionOnly),
                p.sensitivity.default_tier
            );
            println!("  session gap           {} min", p.session_gap_minutes);
            println!("  fatigue caps          {}", p.fatigue.caps.len());
            println!(
                "  back-off              {} h x{} per dismissal, max {} days",
                p.fatigue.backoff_base_hours, p.fatigue.backoff_factor, p.fatigue.backoff_max_days
            );
            println!(
                "  quiet hours           {}-{} on {:?} ({} when unknown)",
                p.quiet_hours.start,
                p.quiet_hours.end,
                p.quiet_hours.channels,
                p.quiet_hours.default_time_zone
            );
            println!("  holdout               {:.1}%", p.holdout.share * 100.0);
            ExitCode::SUCCESS
        }
        Err(problems) => {
            eprintln!("invalid policy:");
            for p in problems {
                eprintln!("  - {p}");
            }
            ExitCode::from(2)
        }
    }
}

/// Every shipped schema: the decision lane's and the insights lane's.
fn schema_files() -> Vec<(&'static str, &'static str)> {
    let mut files = tact_codec::schema::FILES.to_vec();
    files.push(("insight.avsc", tact_insights::codec::INSIGHT_SCHEMA));
    files
}

fn cmd_schemas(out: Option<&Path>) -> ExitCode {
    match out {
        None => {
            for (name, text) in schema_files() {
                println!("// {name}\n{text}");
            }
            ExitCode::SUCCESS
        }
        Some(dir) => {
            if let Err(e) = std::fs::create_dir_all(dir) {
                eprintln!("error: cannot create {}: {e}", dir.display());
                return ExitCode::from(2);
            }
            for (name, text) in schema_files() {
                if let Err(e) = std::fs::write(dir.join(name), text) {
                    eprintln!("error: cannot write {}: {e}", dir.join(name).display());
                    return ExitCode::from(2);
                }
            }
            println!(
                "wrote {} schemas to {}",
                tact_codec::schema::FILES.len(),
                dir.display()
            );
            ExitCode::SUCCESS
        }
    }
}

fn cmd_inspect(state_dir: Option<&Path>, customer: &str, config: Option<&Path>) -> ExitCode {
    let settings = match Settings::load_from_process(config) {
        Ok(s) => s,
        Err(e) => {
            eprintln!("{e}");
            return ExitCode::from(2);
        }
    };
    let dir = state_dir.unwrap_or(&settings.state_dir);
    // Read-only: works beside a running pipeline (which holds the write lock).
    let store = match RocksStore::open_read_only(dir) {
        Ok(s) => s,
        Err(e) => {
            eprintln!("error: {e}");
            return ExitCode::from(3);
        }
    };
    match tact_runtime::inspect::lookup(&store, customer, &settings.rules.policy) {
        Ok(Some(json)) => {
            println!(
                "{}",
                serde_json::to_string_pretty(&json).unwrap_or_default()
            );
            ExitCode::SUCCESS
        }
        Ok(None) => {
            println!(
                "{}",
                tact_runtime::inspect::explain(customer, None, &settings.rules.policy)
            );
            eprintln!("no state stored for this customer");
            ExitCode::from(3)
        }
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::from(4)
        }
    }
}
