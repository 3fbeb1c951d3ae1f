//! `tact run`: the decision pipeline against a cluster.

use crate::serve::{exit_code, start_admin, start_edges};
use serde_json::json;
use std::path::Path;
use std::process::ExitCode;
use std::sync::atomic::AtomicBool;
use std::sync::Arc;
use std::time::Duration;
use tact_runtime::config::{LogFormat, Settings};
use tact_telemetry::{CustomerLookup, Exporter, Health, Metrics, Names};

/// The label values metrics are pre-created with.
pub fn names() -> Names {
    Names {
        topics: vec!["clickstream", "profile_commands", "catalog"],
        error_classes: tact_codec::ErrorClass::ALL
            .iter()
            .map(|c| c.as_str())
            .collect(),
        kinds: tact_core::DecisionKind::ALL
            .iter()
            .map(|k| k.as_str())
            .collect(),
        channels: tact_core::Channel::ALL.iter().map(|c| c.as_str()).collect(),
    }
}

pub fn cmd_run(config: Option<&Path>) -> ExitCode {
    let settings = match Settings::load_from_process(config) {
        Ok(s) => s,
        Err(e) => {
            eprintln!("{e}");
            return ExitCode::from(2);
        }
    };
    tact_telemetry::init_logs(&settings.log_level, settings.log_format == LogFormat::Json);
    let mut registry = Exporter::registry();
    let metrics = Arc::new(Metrics::register(
        &mut registry,
        env!("CARGO_PKG_VERSION"),
        &names(),
    ));
    let exporter = Arc::new(Exporter::new(registry));
    let health = Arc::new(Health::new(30_000));
    let stop = Arc::new(AtomicBool::new(false));
    let edges = match start_edges(settings.http_listen, exporter, health.clone(), stop.clone()) {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: {e}");
            return ExitCode::from(3);
        }
    };
    let store = match crate::serve::open_store(
        &settings.state_dir,
        settings.block_cache_bytes,
        settings.state_compression,
    ) {
        Ok(s) => s,
        Err(code) => return code,
    };
    if let Some(addr) = settings.admin_listen {
        let view = store.clone();
        let policy = settings.rules.policy.clone();
        let owned = health.clone();
        let changelog = settings.topics.changelog.clone();
        let lookup: CustomerLookup = Arc::new(move |id: &str| match tact_runtime::inspect::lookup(
            &*view, id, &policy,
        )? {
            Some(v) => Ok(Ok(serde_json::to_string_pretty(&v).unwrap_or_default())),
            None => {
                let here = owned
                    .partitions
                    .lock()
                    .map(|p| p.clone())
                    .unwrap_or_default();
                Ok(Err(json!({
                        "error": "no state is held for this customer by this instance",
                        "partitions_here": here,
                        "elsewhere": format!("another instance of the group may own their partition; `tact inspect --config FILE --customer ID` reads the changelog {changelog}, which holds every customer"),
                    })
                    .to_string()))
            }
        });
        if let Err(e) = start_admin(&edges, addr, lookup, stop.clone()) {
            eprintln!("error: {e}");
            return ExitCode::from(3);
        }
    }
    let result = tact_runtime::service::run(settings, store, metrics, health, &stop);
    // The HTTP endpoints may hold kept-alive connections: they get a second, not forever.
    edges.shutdown_timeout(Duration::from_secs(1));
    match result {
        Ok(summary) => {
            tracing::info!(
                events = summary.events,
                decisions = summary.decisions.values().sum::<u64>(),
                unacknowledged = summary.unacknowledged_at_exit,
                "stopped"
            );
            stopped_code(summary.unacknowledged_at_exit)
        }
        Err(e) => {
            tracing::error!(error = %e, "stopping");
            eprintln!("error: {e}");
            exit_code(&e)
        }
    }
}

/// 0, or 5 when the shutdown deadline passed with output not yet acknowledged by the broker (it
/// stays in the outbox and is sent at the next start; nothing is lost).
pub fn stopped_code(unacknowledged: usize) -> ExitCode {
    if unacknowledged > 0 {
        eprintln!(
            "stopped at the shutdown deadline with {unacknowledged} record(s) not acknowledged by the broker; they stay in the outbox and are sent at the next start"
        );
    }
    finish(if unacknowledged == 0 { 0 } else { 5 })
}

/// The process's exit with `code`. When broker connections are still closing on a thread of
/// their own (`tact_edge::connections_closing`), the process ends here without running library
/// destructors: RocksDB's and librdkafka's would race that thread and abort. Everything that
/// matters is durable by then (state and outbox are in RocksDB's log).
#[allow(unsafe_code)] // the one place: libc::_exit, for the reason above
pub fn finish(code: u8) -> ExitCode {
    if tact_edge::connections_closing() {
        use std::io::Write;
        let _ = std::io::stdout().flush();
        let _ = std::io::stderr().flush();
        // SAFETY: _exit ends the process at once; nothing after it runs, and no Rust state is
        // left half-written (the edge returned, the store's writes are in its log).
        unsafe { libc::_exit(i32::from(code)) }
    }
    ExitCode::from(code)
}
