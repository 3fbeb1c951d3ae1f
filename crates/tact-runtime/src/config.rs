//! Configuration: embedded defaults < file < `TACT__SECTION__KEY` environment, validated once at
//! start into typed [`Settings`]. Every problem is reported with the key at fault, all at once.

use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;
use tact_codec::{InputFormat, OutputFormat};
use tact_core::{Catalog, KnowledgeBase, Policy, Product, Rules};

pub const DEFAULT_TOML: &str = include_str!("default.toml");
/// Environment variables `TACT__SECTION__KEY` override the file.
const ENV_PREFIX: &str = "TACT__";

/// A librdkafka setting value as written in TOML or the environment.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(untagged)]
enum Scalar {
    Bool(bool),
    Int(i64),
    Float(f64),
    Str(String),
}

impl Scalar {
    fn into_string(self) -> String {
        match self {
            Scalar::Bool(b) => b.to_string(),
            Scalar::Int(i) => i.to_string(),
            Scalar::Float(f) => f.to_string(),
            Scalar::Str(s) => s,
        }
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawKafka {
    bootstrap_servers: String,
    group_id: String,
    instance_id: String,
    #[serde(default)]
    client: BTreeMap<String, Scalar>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawTopics {
    clickstream: String,
    profile_commands: String,
    decisions: String,
    suppressed: String,
    dead_letter: String,
    erasure_receipts: String,
    catalog: String,
    changelog: String,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawInput {
    clickstream_format: InputFormat,
    profile_commands_format: InputFormat,
    catalog_format: InputFormat,
    max_message_bytes: u64,
    interleave_wait_ms: u64,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "snake_case")]
enum RawOutputFormat {
    SingleObject,
    Confluent,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawOutput {
    format: RawOutputFormat,
    decision_schema_id: u32,
    suppressed_schema_id: u32,
    dead_letter_schema_id: u32,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawState {
    dir: PathBuf,
    block_cache_mb: u64,
    compression: tact_store::Compression,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawPipeline {
    batch_max_events: u64,
    batch_max_wait_ms: u64,
    shutdown_deadline_ms: u64,
    revoke_deadline_ms: u64,
    commit_interval_ms: u64,
    idle_timer_wall_clock_ms: u64,
    partition_time_quorum: u64,
    max_unacknowledged_mb: u64,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawHttp {
    listen: String,
    admin_listen: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum LogFormat {
    Text,
    Json,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawLog {
    format: LogFormat,
    level: String,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawRules {
    policy_file: PathBuf,
    catalog_file: PathBuf,
    faq_file: PathBuf,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawConfig {
    rules: RawRules,
    kafka: RawKafka,
    topics: RawTopics,
    input: RawInput,
    output: RawOutput,
    state: RawState,
    pipeline: RawPipeline,
    http: RawHttp,
    log: RawLog,
    policy: Policy,
}

#[derive(Debug, Clone, PartialEq)]
pub struct KafkaSettings {
    pub bootstrap_servers: String,
    pub group_id: String,
    /// Static membership (`group.instance.id`); `None`: dynamic membership.
    pub instance_id: Option<String>,
    /// librdkafka passthrough (TLS, SASL, tuning). Applied before tact's safety keys.
    pub client: BTreeMap<String, String>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Topics {
    pub clickstream: String,
    pub profile_commands: String,
    pub decisions: String,
    pub suppressed: String,
    pub dead_letter: String,
    /// Proof of each erasure (keyed by command id; no customer id inside).
    pub erasure_receipts: String,
    /// New releases, read in full by every instance.
    pub catalog: String,
    /// The compacted changelog of the customers' state, partitioned like the clickstream.
    pub changelog: String,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Settings {
    pub kafka: KafkaSettings,
    pub topics: Topics,
    pub clickstream_format: InputFormat,
    pub profile_commands_format: InputFormat,
    pub catalog_format: InputFormat,
    pub max_message_bytes: usize,
    /// How long records of one input wait for the other input's partition before they are
    /// applied without it (event-time interleaving of the co-partitioned inputs).
    pub interleave_wait: Duration,
    pub output: OutputFormat,
    pub state_dir: PathBuf,
    pub block_cache_bytes: usize,
    pub state_compression: tact_store::Compression,
    pub batch_max_events: usize,
    pub batch_max_wait: Duration,
    pub shutdown_deadline: Duration,
    /// How long a revoked partition may take to get its output acknowledged before it is let go.
    pub revoke_deadline: Duration,
    pub commit_interval: Duration,
    /// `None`: timers follow event time only.
    pub idle_timer_wall_clock: Option<Duration>,
    /// How many distinct customers must have reached an event time before it becomes the
    /// partition's (which fires quiet customers' timers).
    pub partition_time_quorum: usize,
    /// Input pauses while the records not yet acknowledged hold more bytes than this.
    pub max_unacknowledged_bytes: usize,
    pub http_listen: SocketAddr,
    /// The read-only admin endpoint (`/customers/{id}`); `None`: off.
    pub admin_listen: Option<SocketAddr>,
    pub log_format: LogFormat,
    pub log_level: String,
    /// The decision policy and the product catalog.
    pub rules: Rules,
    /// Where the policy came from (`None`: the embedded default, with `[policy]` overrides).
    pub policy_file: Option<PathBuf>,
    pub catalog_file: Option<PathBuf>,
    pub faq_file: Option<PathBuf>,
}

/// Why the configuration cannot be used: every problem found, each naming its key.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid configuration:\n  - {}", problems.join("\n  - "))]
pub struct ConfigError {
    pub problems: Vec<String>,
}

impl Settings {
    /// Embedded defaults, then `file` (if any), then `TACT__…` variables from `env`.
    pub fn load(file: Option<&Path>, env: &[(String, String)]) -> Result<Settings, ConfigError> {
        let raw: RawConfig = tact_config::load(DEFAULT_TOML, file, env, ENV_PREFIX)
            .map_err(|problems| ConfigError { problems })?;
        raw.validate()
    }

    /// [`Settings::load`] with the process environment.
    pub fn load_from_process(file: Option<&Path>) -> Result<Settings, ConfigError> {
        Settings::load(file, &tact_config::process_env(ENV_PREFIX))
    }

    /// The effective settings, secrets masked, for `tact validate`.
    pub fn describe(&self) -> String {
        let client: BTreeMap<&str, &str> = self
            .kafka
            .client
            .iter()
            .map(|(k, v)| (k.as_str(), tact_kafka::shown(k, v)))
            .collect();
        format!(
            "kafka.bootstrap_servers = {}\nkafka.group_id = {}\nkafka.instance_id = {}\nkafka.client = {:?}\ntopics = {:?}\n\
             input: clickstream {:?}, profile_commands {:?}, max {} bytes\noutput = {:?}\n\
             state.dir = {}\npipeline: batch {} events / {:?}, commit every {:?}, shutdown deadline {:?}\n\
             http.listen = {}\npolicy = {} (version {}), catalog = {} ({} products), faq = {} ({} answers)\n",
            self.kafka.bootstrap_servers,
            self.kafka.group_id,
            self.kafka
                .instance_id
                .as_deref()
                .unwrap_or("(none: dynamic membership)"),
            client,
            self.topics,
            self.clickstream_format,
            self.profile_commands_format,
            self.max_message_bytes,
            self.output,
            self.state_dir.display(),
            self.batch_max_events,
            self.batch_max_wait,
            self.commit_interval,
            self.shutdown_deadline,
            self.http_listen,
            self.policy_file.as_ref().map_or("embedded default with [policy] overrides".to_owned(), |p| p.display().to_string()),
            self.rules.policy.version,
            self.catalog_file.as_ref().map_or("none".to_owned(), |p| p.display().to_string()),
            self.rules.catalog.len(),
            self.faq_file.as_ref().map_or("none".to_owned(), |p| p.display().to_string()),
            self.rules.faq.len(),
        )
    }
}

impl RawConfig {
    fn validate(self) -> Result<Settings, ConfigError> {
        let mut p: Vec<String> = Vec::new();
        p.extend(tact_kafka::check_bootstrap(&self.kafka.bootstrap_servers));
        require(
            &mut p,
            !self.kafka.group_id.trim().is_empty(),
            "kafka.group_id: must not be empty",
        );
        let t = &self.topics;
        let names = [
            ("topics.clickstream", &t.clickstream),
            ("topics.profile_commands", &t.profile_commands),
            ("topics.decisions", &t.decisions),
            ("topics.suppressed", &t.suppressed),
            ("topics.dead_letter", &t.dead_letter),
            ("topics.erasure_receipts", &t.erasure_receipts),
            ("topics.catalog", &t.catalog),
            ("topics.changelog", &t.changelog),
        ];
        for (key, name) in names {
            let valid = !name.is_empty()
                && name.len() <= 249
                && name
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-'));
            require(
                &mut p,
                valid,
                &format!("{key}: {name:?} is not a valid Kafka topic name"),
            );
        }
        for (i, (ka, a)) in names.iter().enumerate() {
            for (kb, b) in &names[i + 1..] {
                require(
                    &mut p,
                    a != b,
                    &format!("{ka} and {kb}: both are {a:?}; every topic must be different"),
                );
            }
        }
        require(
            &mut p,
            (1024..=64 << 20).contains(&self.input.max_message_bytes),
            "input.max_message_bytes: must be between 1024 and 67108864",
        );
        require(
            &mut p,
            (1..=100_000).contains(&self.pipeline.batch_max_events),
            "pipeline.batch_max_events: must be between 1 and 100000",
        );
        require(
            &mut p,
            (1..=60_000).contains(&self.pipeline.batch_max_wait_ms),
            "pipeline.batch_max_wait_ms: must be between 1 and 60000",
        );
        require(
            &mut p,
            (100..=600_000).contains(&self.pipeline.shutdown_deadline_ms),
            "pipeline.shutdown_deadline_ms: must be between 100 and 600000",
        );
        require(
            &mut p,
            (100..=600_000).contains(&self.pipeline.revoke_deadline_ms),
            "pipeline.revoke_deadline_ms: must be between 100 and 600000",
        );
        let instance = self.kafka.instance_id.trim().to_owned();
        require(
            &mut p,
            instance.len() <= 249
                && instance
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-')),
            "kafka.instance_id: letters, digits, '.', '_' and '-' only (at most 249), or \"\" for dynamic membership",
        );
        require(
            &mut p,
            (1..=60_000).contains(&self.pipeline.commit_interval_ms),
            "pipeline.commit_interval_ms: must be between 1 and 60000",
        );
        require(
            &mut p,
            (1..=32).contains(&self.pipeline.partition_time_quorum),
            "pipeline.partition_time_quorum: must be between 1 and 32",
        );
        require(
            &mut p,
            (1..=65_536).contains(&self.pipeline.max_unacknowledged_mb),
            "pipeline.max_unacknowledged_mb: must be between 1 and 65536",
        );
        require(
            &mut p,
            (8..=65_536).contains(&self.state.block_cache_mb),
            "state.block_cache_mb: must be between 8 and 65536",
        );
        require(
            &mut p,
            !self.state.dir.as_os_str().is_empty(),
            "state.dir: must not be empty",
        );
        let listen = self.http.listen.parse::<SocketAddr>();
        require(
            &mut p,
            listen.is_ok(),
            &format!(
                "http.listen: {:?} is not an address like 127.0.0.1:9898",
                self.http.listen
            ),
        );
        require(
            &mut p,
            self.input.interleave_wait_ms <= 60_000,
            "input.interleave_wait_ms: must be between 0 and 60000",
        );
        let admin = if self.http.admin_listen.is_empty() {
            None
        } else {
            match self.http.admin_listen.parse::<SocketAddr>() {
                Ok(a) => Some(a),
                Err(_) => {
                    p.push(format!(
                        "http.admin_listen: {:?} is not an address like 127.0.0.1:9899 (or \"\" for off)",
                        self.http.admin_listen
                    ));
                    None
                }
            }
        };
        if let (Some(a), Ok(l)) = (admin, &listen) {
            require(
                &mut p,
                a != *l || a.port() == 0,
                "http.admin_listen: must differ from http.listen",
            );
        }
        let mut policy = self.policy;
        let policy_file =
            (!self.rules.policy_file.as_os_str().is_empty()).then_some(self.rules.policy_file);
        if let Some(path) = &policy_file {
            match load_policy(path) {
                Ok(from_file) => policy = from_file,
                Err(errors) => p.extend(
                    errors
                        .into_iter()
                        .map(|e| format!("rules.policy_file: {e}")),
                ),
            }
        } else if let Err(errors) = policy.validate() {
            p.extend(errors.into_iter().map(|e| e.to_string()));
        }
        let catalog_file =
            (!self.rules.catalog_file.as_os_str().is_empty()).then_some(self.rules.catalog_file);
        let catalog = match &catalog_file {
            None => Catalog::default(),
            Some(path) => load_catalog(path).unwrap_or_else(|e| {
                p.push(format!("rules.catalog_file: {e}"));
                Catalog::default()
            }),
        };
        let faq_file = (!self.rules.faq_file.as_os_str().is_empty()).then_some(self.rules.faq_file);
        let faq = match &faq_file {
            None => KnowledgeBase::default(),
            Some(path) => load_faq(path).unwrap_or_else(|e| {
                p.push(format!("rules.faq_file: {e}"));
                KnowledgeBase::default()
            }),
        };
        require(&mut p,
            tracing_level_ok(&self.log.level),
            "log.level: must be one of error, warn, info, debug, trace (or a RUST_LOG-style filter)",
        );
        p.extend(tact_kafka::check_client(
            self.kafka
                .client
                .iter()
                .map(|(k, v)| (k.as_str(), v.clone().into_string())),
        ));
        if let Some((key, value)) = self
            .kafka
            .client
            .iter()
            .find(|(k, _)| k.replace('_', ".") == "message.max.bytes")
        {
            match value.clone().into_string().trim().parse::<usize>() {
                Ok(n) if n < tact_codec::MIN_DEAD_LETTER_LIMIT => p.push(format!(
                    "kafka.client.{key}: {n} leaves no room for dead letters (they carry the rejected record); at least {}",
                    tact_codec::MIN_DEAD_LETTER_LIMIT
                )),
                _ => {} // librdkafka judged the value above
            }
        }
        if !p.is_empty() {
            return Err(ConfigError { problems: p });
        }
        let output = match self.output.format {
            RawOutputFormat::SingleObject => OutputFormat::SingleObject,
            RawOutputFormat::Confluent => OutputFormat::Confluent {
                decision_id: self.output.decision_schema_id,
                suppressed_id: self.output.suppressed_schema_id,
                dead_letter_id: self.output.dead_letter_schema_id,
            },
        };
        Ok(Settings {
            kafka: KafkaSettings {
                bootstrap_servers: self.kafka.bootstrap_servers,
                group_id: self.kafka.group_id,
                instance_id: (!instance.is_empty()).then_some(instance),
                // Environment variables cannot carry dots: TACT__KAFKA__CLIENT__SASL_PASSWORD means
                // sasl.password. librdkafka keys use dots, never underscores.
                client: self
                    .kafka
                    .client
                    .into_iter()
                    .map(|(k, v)| (k.replace('_', "."), v.into_string()))
                    .collect(),
            },
            topics: Topics {
                clickstream: self.topics.clickstream,
                profile_commands: self.topics.profile_commands,
                decisions: self.topics.decisions,
                suppressed: self.topics.suppressed,
                dead_letter: self.topics.dead_letter,
                erasure_receipts: self.topics.erasure_receipts,
                catalog: self.topics.catalog,
                changelog: self.topics.changelog,
            },
            clickstream_format: self.input.clickstream_format,
            profile_commands_format: self.input.profile_commands_format,
            catalog_format: self.input.catalog_format,
            interleave_wait: Duration::from_millis(self.input.interleave_wait_ms),
            max_message_bytes: usize::try_from(self.input.max_message_bytes).unwrap_or(usize::MAX),
            output,
            state_dir: self.state.dir,
            block_cache_bytes: usize::try_from(self.state.block_cache_mb << 20)
                .unwrap_or(usize::MAX),
            state_compression: self.state.compression,
            batch_max_events: usize::try_from(self.pipeline.batch_max_events).unwrap_or(usize::MAX),
            batch_max_wait: Duration::from_millis(self.pipeline.batch_max_wait_ms),
            shutdown_deadline: Duration::from_millis(self.pipeline.shutdown_deadline_ms),
            revoke_deadline: Duration::from_millis(self.pipeline.revoke_deadline_ms),
            commit_interval: Duration::from_millis(self.pipeline.commit_interval_ms),
            idle_timer_wall_clock: (self.pipeline.idle_timer_wall_clock_ms > 0)
                .then(|| Duration::from_millis(self.pipeline.idle_timer_wall_clock_ms)),
            partition_time_quorum: usize::try_from(self.pipeline.partition_time_quorum)
                .unwrap_or(32),
            max_unacknowledged_bytes: usize::try_from(self.pipeline.max_unacknowledged_mb << 20)
                .unwrap_or(usize::MAX),
            http_listen: listen.map_err(|_| ConfigError { problems: vec![] })?,
            admin_listen: admin,
            log_format: self.log.format,
            log_level: self.log.level,
            rules: Rules {
                policy,
                catalog,
                faq,
            },
            policy_file,
            catalog_file,
            faq_file,
        })
    }
}

/// Reads and validates a policy file; every problem, each naming its key.
pub fn load_policy(path: &Path) -> Result<Policy, Vec<String>> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| vec![format!("cannot read {}: {e}", path.display())])?;
    let policy: Policy =
        toml::from_str(&text).map_err(|e| vec![format!("{}: {e}", path.display())])?;
    policy.validate().map_err(|errors| {
        errors
            .into_iter()
            .map(|e| format!("{}: {e}", path.display()))
            .collect::<Vec<_>>()
    })?;
    Ok(policy)
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct CatalogFile {
    #[serde(default)]
    product: Vec<Product>,
}

/// Reads a catalog file: `[[product]]` tables with id, category, optional name and compatible_with.
pub fn load_catalog(path: &Path) -> Result<Catalog, String> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| format!("cannot read {}: {e}", path.display()))?;
    parse_catalog(&text).map_err(|e| format!("{}: {e}", path.display()))
}

/// Parses catalog TOML text.
pub fn parse_catalog(text: &str) -> Result<Catalog, String> {
    let file: CatalogFile = toml::from_str(text).map_err(|e| e.to_string())?;
    Catalog::new(file.product)
}

/// Reads a knowledge base: `[[entry]]` tables with id, question, answer, optional keywords and
/// the FAQ page that shows the answer (see deploy/faq.example.toml).
pub fn load_faq(path: &Path) -> Result<KnowledgeBase, String> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| format!("cannot read {}: {e}", path.display()))?;
    parse_faq(&text).map_err(|e| format!("{}: {e}", path.display()))
}

/// Parses knowledge-base TOML text; every problem at once, each naming its entry.
pub fn parse_faq(text: &str) -> Result<KnowledgeBase, String> {
    KnowledgeBase::from_toml(text)
}

/// The example knowledge base shipped in deploy/ (used by `tact demo`).
pub const EXAMPLE_FAQ: &str = include_str!("../../../deploy/faq.example.toml");

/// The example catalog shipped in deploy/ (used by `tact demo`).
pub const EXAMPLE_CATALOG: &str = include_str!("../../../deploy/catalog.example.toml");

fn require(problems: &mut Vec<String>, ok: bool, msg: &str) {
    if !ok {
        problems.push(msg.to_owned());
    }
}

fn tracing_level_ok(level: &str) -> bool {
    let lower = level.to_ascii_lowercase();
    ["error", "warn", "info", "debug", "trace", "off"].contains(&lower.as_str())
        || level.contains('=')
}

#[cfg(test)]
mod tests;
