//! The command line: what each command and flag means.

use clap::{Parser, Subcommand};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;
use tact_codec::InputFormat;

#[derive(Parser, Debug)]
#[command(
    name = "tact",
    version,
    about = "Tactful personalization decisions from a clickstream"
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Subcommand, Debug)]
pub enum Command {
    /// Run the decision pipeline against a Kafka cluster until SIGTERM/SIGINT. Any number of
    /// instances with the same kafka.group_id share the partitions; state follows them.
    Run {
        /// The configuration file (see deploy/tact.example.toml); TACT__SECTION__KEY overrides it.
        #[arg(long, short)]
        config: Option<PathBuf>,
    },
    /// Run everything in one process: embedded broker, generated clickstream, live decisions.
    Demo {
        /// Stop after this long (e.g. 30s, 2m); runs until Ctrl-C when omitted.
        #[arg(long, value_parser = parse_duration)]
        duration: Option<Duration>,
        /// Distinct customers the generator simulates.
        #[arg(long, default_value_t = 200)]
        customers: u64,
        /// Events per second.
        #[arg(long, default_value_t = 300)]
        rate: u64,
        /// Partitions of every topic of the embedded broker.
        #[arg(long, default_value_t = 3)]
        partitions: i32,
        /// Seed of the generator (the same seed gives the same clickstream).
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
        /// host:port of a broker.
        #[arg(long, default_value = "127.0.0.1:9092")]
        bootstrap: String,
        /// The clickstream topic.
        #[arg(long, default_value = "clickstream")]
        topic: String,
        /// The profile-commands topic (consent and preferences of the simulated customers).
        #[arg(long, default_value = "profile-commands")]
        commands_topic: String,
        /// Wire format of the click events.
        #[arg(long, value_enum, default_value = "avro-confluent")]
        format: Format,
        /// Wire format of the profile commands.
        #[arg(long, value_enum, default_value = "json")]
        commands_format: Format,
        /// Events per second (0: as fast as possible).
        #[arg(long, default_value_t = 1000)]
        rate: u64,
        /// Distinct customers.
        #[arg(long, default_value_t = 10_000)]
        customers: u64,
        /// Stop after this long (e.g. 90s, 5m); 60s when neither this nor --events is given.
        #[arg(long, value_parser = parse_duration)]
        duration: Option<Duration>,
        /// Stop after this many records (events and commands).
        #[arg(long)]
        events: Option<u64>,
        /// Seed of the generator.
        #[arg(long, default_value_t = 7)]
        seed: u64,
        /// Share of customers who grant personalization consent.
        #[arg(long, default_value_t = 0.6)]
        consent_granted: f64,
    },
    /// Check a configuration file (and TACT__ environment) and print the effective settings.
    Validate {
        /// The configuration file to check.
        #[arg(long, short)]
        config: Option<PathBuf>,
    },
    /// Print the Avro schemas, or write them to a directory.
    Schemas {
        /// Write one .avsc file per schema here instead of printing them.
        #[arg(long)]
        out: Option<PathBuf>,
    },
    /// Topics: create every topic tact needs, with the partitions and settings it relies on.
    Topics {
        #[command(subcommand)]
        command: TopicsCommand,
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
    /// With --state-dir it reads one instance's state directory; otherwise it reads the
    /// changelog topic, which holds every customer whichever instance owns them.
    Inspect {
        /// Read this state directory (one instance's partitions) instead of the changelog.
        #[arg(long)]
        state_dir: Option<PathBuf>,
        /// The customer id.
        #[arg(long)]
        customer: String,
        /// The configuration: the brokers and changelog topic to read, and the policy whose
        /// timers are shown (default: the embedded one).
        #[arg(long, short)]
        config: Option<PathBuf>,
        /// Give up reading the changelog after this long (e.g. 60s, 5m).
        #[arg(long, value_parser = parse_duration, default_value = "120s")]
        timeout: Duration,
    },
}

#[derive(Subcommand, Debug)]
pub enum TopicsCommand {
    /// Create the topics of the pipeline (and of the insights lane with --insights-config);
    /// existing topics are checked, not changed. Idempotent.
    Create {
        /// The pipeline's configuration (topic names, brokers, client settings).
        #[arg(long, short)]
        config: Option<PathBuf>,
        /// Also the insights lane's topics, from its configuration.
        #[arg(long)]
        insights_config: Option<PathBuf>,
        /// Partitions of the clickstream and every topic partitioned like it. Existing input
        /// topics win: a changelog is created with the clickstream's count.
        #[arg(long, default_value_t = 6)]
        partitions: i32,
        /// Replication factor of new topics.
        #[arg(long, default_value_t = 3)]
        replication: i32,
        /// Print what would be created, create nothing.
        #[arg(long)]
        dry_run: bool,
    },
}

#[derive(Subcommand, Debug)]
pub enum InsightsCommand {
    /// Run the lane (its own consumer group) until SIGTERM/SIGINT. Any number of instances
    /// with the same group publish the same findings as one.
    Run {
        /// The lane's configuration file; TACT_INSIGHTS__SECTION__KEY overrides it.
        #[arg(long, short)]
        config: Option<PathBuf>,
    },
    /// Read the insights topic and print the top findings; optionally write an HTML page.
    Report {
        /// host:port of a broker.
        #[arg(long, default_value = "127.0.0.1:9092")]
        bootstrap: String,
        /// The insights topic.
        #[arg(long, default_value = "insights")]
        topic: String,
        /// Write a self-contained HTML page with charts here.
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
pub enum PolicyCommand {
    /// Check a policy file: every problem with its key; exit 2 if any.
    Check {
        /// The policy file.
        file: PathBuf,
    },
}

#[derive(Debug, Clone, Copy, clap::ValueEnum)]
pub enum Format {
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

pub fn parse_duration(s: &str) -> Result<Duration, String> {
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
