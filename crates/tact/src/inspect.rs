//! `tact inspect`: what is held about one customer and why.

use std::path::Path;
use std::process::ExitCode;
use std::time::Duration;
use tact_runtime::config::Settings;
use tact_store::RocksStore;

pub fn cmd_inspect(
    state_dir: Option<&Path>,
    customer: &str,
    config: Option<&Path>,
    timeout: Duration,
) -> ExitCode {
    let settings = match Settings::load_from_process(config) {
        Ok(s) => s,
        Err(e) => {
            eprintln!("{e}");
            return ExitCode::from(2);
        }
    };
    tact_telemetry::init_logs("warn", false);
    let policy = &settings.rules.policy;
    let found = match state_dir {
        Some(dir) => {
            // Read-only: works beside a running instance (which holds the write lock).
            let store = match RocksStore::open_read_only(dir) {
                Ok(s) => s,
                Err(e) => {
                    eprintln!("error: {e}");
                    return ExitCode::from(3);
                }
            };
            tact_runtime::inspect::lookup(&store, customer, policy)
        }
        None => tact_runtime::inspect::lookup_changelog(
            &settings.kafka.bootstrap_servers,
            &settings.kafka.client,
            &settings.topics.changelog,
            customer,
            policy,
            timeout,
        ),
    };
    match found {
        Ok(Some(json)) => {
            println!(
                "{}",
                serde_json::to_string_pretty(&json).unwrap_or_default()
            );
            ExitCode::SUCCESS
        }
        Ok(None) => {
            // Nothing held is an answer (exit 1): the explained empty view says so.
            println!("{}", tact_runtime::inspect::explain(customer, None, policy));
            eprintln!("no state is held for this customer");
            ExitCode::from(1)
        }
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::from(3)
        }
    }
}
