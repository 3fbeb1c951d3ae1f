//! The `tact` binary: a thin shell. Parses the command line and hands each command to its
//! module; the work happens in the runtime crates. Exit codes: 0 done, 1 nothing found (inspect),
//! 2 invalid configuration or usage, 3 setup problem (cluster unreachable, topic missing or
//! misshapen, state directory locked), 4 fatal runtime error, 5 stopped at the shutdown deadline
//! with output not yet acknowledged (kept in the outbox for the next start).

use clap::Parser;
use std::process::ExitCode;
use std::sync::atomic::AtomicBool;
use std::sync::Arc;

mod cli;
mod demo;
mod insights;
mod inspect;
mod run;
mod serve;
mod tools;
mod topics;

use cli::{Cli, Command, InsightsCommand, PolicyCommand, TopicsCommand};

#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> ExitCode {
    // Only a `--features failpoints` build (the fault matrix's) has crash points to configure.
    if let Some(points) = tact_edge::failpoint::setup() {
        eprintln!("tact: a fault-injection build; FAILPOINTS={points:?}");
    }
    match Cli::parse().command {
        Command::Run { config } => run::cmd_run(config.as_deref()),
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
            demo::DemoOptions {
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
        } => tools::cmd_generate(tools::GenerateOptions {
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
        }),
        Command::Validate { config } => tools::cmd_validate(config.as_deref()),
        Command::Schemas { out } => tools::cmd_schemas(out.as_deref()),
        Command::Topics {
            command:
                TopicsCommand::Create {
                    config,
                    insights_config,
                    partitions,
                    replication,
                    dry_run,
                },
        } => topics::cmd_create(&topics::CreateOptions {
            config: config.as_deref(),
            insights_config: insights_config.as_deref(),
            partitions,
            replication,
            dry_run,
        }),
        Command::Policy {
            command: PolicyCommand::Check { file },
        } => tools::cmd_policy_check(&file),
        Command::Insights {
            command: InsightsCommand::Run { config },
        } => insights::cmd_run(config.as_deref()),
        Command::Insights {
            command:
                InsightsCommand::Report {
                    bootstrap,
                    topic,
                    html,
                    top,
                    idle_ms,
                },
        } => insights::cmd_report(&bootstrap, &topic, html, top, idle_ms),
        Command::Inspect {
            state_dir,
            customer,
            config,
            timeout,
        } => inspect::cmd_inspect(state_dir.as_deref(), &customer, config.as_deref(), timeout),
    }
}

fn cmd_demo(opts: demo::DemoOptions, http: std::net::SocketAddr) -> ExitCode {
    tact_telemetry::init_logs("warn,tact_runtime=info", false);
    let mut settings = match tact_runtime::config::Settings::load(None, &[]) {
        Ok(s) => s,
        Err(e) => {
            eprintln!("{e}");
            return ExitCode::from(2);
        }
    };
    settings.http_listen = http;
    let mut registry = tact_telemetry::Exporter::registry();
    let metrics = Arc::new(tact_telemetry::Metrics::register(
        &mut registry,
        env!("CARGO_PKG_VERSION"),
        &run::names(),
    ));
    let kinds: Vec<&'static str> = tact_insights::FindingKind::ALL
        .iter()
        .map(|k| k.as_str())
        .collect();
    let lane_metrics = tact_telemetry::InsightsMetrics::register(&mut registry, &kinds);
    let exporter = Arc::new(tact_telemetry::Exporter::new(registry));
    let health = Arc::new(tact_telemetry::Health::new(30_000));
    let stop = Arc::new(AtomicBool::new(false));
    let _edges = match serve::start_edges(http, exporter, health.clone(), stop.clone()) {
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
        opts.duration
            .map(|d| format!(" for {}s", d.as_secs()))
            .unwrap_or_default()
    );
    match demo::run_demo(settings, &opts, metrics, lane_metrics, health, stop) {
        Ok(summary) => {
            print_summary(&summary);
            run::finish(0)
        }
        Err(e) => {
            eprintln!("error: {e}");
            serve::exit_code(&e)
        }
    }
}

fn print_summary(s: &tact_runtime::RunSummary) {
    let secs = s.elapsed.as_secs_f64().max(0.001);
    println!("\nsummary after {secs:.1}s");
    println!(
        "  events      {:>8}  ({:.0} events/s)",
        s.events,
        s.events as f64 / secs
    );
    println!("  commands    {:>8}", s.commands);
    println!("  dead letters{:>8}", s.dead_lettered);
    println!("  duplicates  {:>8}", s.duplicates);
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
