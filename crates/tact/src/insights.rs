//! `tact insights run|report`: the aggregate insights lane.

use crate::serve::{exit_code, install_ctrl_c, start_edges};
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::atomic::AtomicBool;
use std::sync::Arc;
use std::time::Duration;
use tact_insights::InsightsSettings;
use tact_telemetry::{Exporter, Health, InsightsMetrics};

fn kinds() -> Vec<&'static str> {
    tact_insights::FindingKind::ALL
        .iter()
        .map(|k| k.as_str())
        .collect()
}

pub fn cmd_run(config: Option<&Path>) -> ExitCode {
    let settings = match InsightsSettings::load_from_process(config) {
        Ok(s) => s,
        Err(e) => {
            eprintln!("{e}");
            return ExitCode::from(2);
        }
    };
    tact_telemetry::init_logs(&settings.log_level, settings.log_json);
    let mut registry = Exporter::registry();
    let metrics = InsightsMetrics::register(&mut registry, &kinds());
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
    let es = tact_insights::edge_settings(&settings);
    let result = tact_insights::run_insights(settings, es, store, metrics, health, &stop);
    edges.shutdown_timeout(Duration::from_secs(1));
    match result {
        Ok(s) => {
            tracing::info!(
                events = s.events,
                windows = s.windows_closed,
                findings = s.findings_published,
                "insights lane stopped"
            );
            crate::run::stopped_code(s.unacknowledged_at_exit)
        }
        Err(e) => {
            eprintln!("error: {e}");
            exit_code(&e)
        }
    }
}

pub fn cmd_report(
    bootstrap: &str,
    topic: &str,
    html: Option<PathBuf>,
    top: usize,
    idle_ms: u64,
) -> ExitCode {
    tact_telemetry::init_logs("warn", false);
    let stop = Arc::new(AtomicBool::new(false));
    install_ctrl_c(stop);
    let mut opts = tact_insights::ReportOptions::new(bootstrap, topic);
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
            exit_code(&e)
        }
    }
}
