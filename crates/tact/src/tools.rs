//! The small commands: validate, schemas, policy check, generate.

use crate::cli::Format;
use crate::serve::install_ctrl_c;
use std::path::Path;
use std::process::ExitCode;
use std::sync::atomic::AtomicBool;
use std::sync::Arc;
use std::time::Duration;
use tact_runtime::config::Settings;
use tact_runtime::feed::{feed, FeedOptions};
use tact_runtime::generator::{Generator, GeneratorConfig};

pub fn cmd_validate(config: Option<&Path>) -> ExitCode {
    match Settings::load_from_process(config) {
        Ok(s) => {
            print!("{}", s.describe());
            println!("configuration is valid");
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("{e}");
            ExitCode::from(2)
        }
    }
}

/// What `tact generate` produces.
#[derive(Debug)]
pub struct GenerateOptions {
    pub bootstrap: String,
    pub topic: String,
    pub commands_topic: String,
    pub format: Format,
    pub commands_format: Format,
    pub rate: u64,
    pub customers: u64,
    pub duration: Option<Duration>,
    pub events: Option<u64>,
    pub seed: u64,
    pub consent_granted: f64,
}

pub fn cmd_generate(o: GenerateOptions) -> ExitCode {
    tact_telemetry::init_logs("warn", false);
    let opts = FeedOptions {
        bootstrap: o.bootstrap,
        clickstream_topic: o.topic,
        commands_topic: o.commands_topic,
        click_format: o.format.into(),
        command_format: o.commands_format.into(),
        rate: (o.rate > 0).then_some(o.rate),
        max_events: o.events,
        max_duration: o.duration.or(if o.events.is_none() {
            Some(Duration::from_secs(60))
        } else {
            None
        }),
    };
    let granted = o.consent_granted.clamp(0.0, 1.0);
    let gen = Generator::new(GeneratorConfig {
        customers: o.customers,
        seed: o.seed,
        consent_granted: granted,
        consent_denied: (1.0 - granted).min(0.15),
        ..GeneratorConfig::default()
    });
    let bar = indicatif::ProgressBar::new(o.events.unwrap_or(0));
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

pub fn cmd_policy_check(file: &Path) -> ExitCode {
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

pub fn cmd_schemas(out: Option<&Path>) -> ExitCode {
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
                schema_files().len(),
                dir.display()
            );
            ExitCode::SUCCESS
        }
    }
}
