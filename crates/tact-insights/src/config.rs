//! Settings of the insights lane: embedded defaults < file < `TACT_INSIGHTS__SECTION__KEY`
//! environment, validated once into [`InsightsSettings`]. Every problem is reported with its key,
//! all at once.

use crate::core::Rules;
use serde::Deserialize;
use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;
use tact_codec::InputFormat;
use tact_core::policy::SensitivityPolicy;
use tact_core::{KnowledgeBase, Policy};

/// The embedded defaults (documented key by key).
pub const DEFAULT_TOML: &str = include_str!("default.toml");

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawKafka {
    bootstrap_servers: String,
    group_id: String,
    instance_id: String,
    #[serde(default)]
    client: BTreeMap<String, toml::Value>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawTopics {
    clickstream: String,
    insights: String,
    partials: String,
    changelog: String,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawInput {
    clickstream_format: InputFormat,
    max_message_bytes: u64,
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
    commit_interval_ms: u64,
    shutdown_deadline_ms: u64,
    revoke_deadline_ms: u64,
    idle_advance_ms: u64,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawHttp {
    listen: String,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawLog {
    format: String,
    level: String,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawRules {
    policy_file: PathBuf,
    faq_file: PathBuf,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawInsights {
    window_minutes: u64,
    session_gap_minutes: u64,
    max_session_minutes: u64,
    min_sessions: u64,
    max_events_per_session: u64,
    max_sessions_in_flight: u64,
    partition_time_quorum: u64,
    max_keys_per_window: u64,
    max_findings_per_kind: u64,
    target_pages: Vec<String>,
    hard_to_find_median_clicks: u32,
    detour_min_steps: u32,
    detour_min_confidence: f64,
    search_few_results: u32,
    faq_deep_scroll: f32,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawConfig {
    kafka: RawKafka,
    topics: RawTopics,
    input: RawInput,
    state: RawState,
    pipeline: RawPipeline,
    http: RawHttp,
    log: RawLog,
    rules: RawRules,
    insights: RawInsights,
    sensitivity: SensitivityPolicy,
}

/// Validated settings of the insights lane.
#[derive(Debug, Clone, PartialEq)]
pub struct InsightsSettings {
    pub bootstrap_servers: String,
    /// The lane's own consumer group.
    pub group_id: String,
    /// Static membership (`group.instance.id`); `None`: dynamic membership.
    pub instance_id: Option<String>,
    /// librdkafka passthrough, applied before tact's safety keys.
    pub client: BTreeMap<String, String>,
    pub clickstream_topic: String,
    pub insights_topic: String,
    /// Internal: window shares on their way to the partition that merges them.
    pub partials_topic: String,
    /// The lane's compacted changelog, partitioned like the clickstream.
    pub changelog_topic: String,
    pub clickstream_format: InputFormat,
    pub max_message_bytes: usize,
    pub state_dir: PathBuf,
    pub block_cache_bytes: usize,
    pub state_compression: tact_store::Compression,
    pub batch_max_events: usize,
    pub batch_max_wait: Duration,
    pub commit_interval: Duration,
    pub shutdown_deadline: Duration,
    pub revoke_deadline: Duration,
    /// `None`: only event time ends sessions and closes windows.
    pub idle_advance: Option<Duration>,
    pub http_listen: SocketAddr,
    pub log_json: bool,
    pub log_level: String,
    pub rules: Rules,
    pub policy_file: Option<PathBuf>,
    pub faq_file: Option<PathBuf>,
}

/// Why the configuration cannot be used: every problem found, each naming its key.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid insights configuration:\n  - {}", problems.join("\n  - "))]
pub struct ConfigError {
    pub problems: Vec<String>,
}

const ENV_PREFIX: &str = "TACT_INSIGHTS__";

impl InsightsSettings {
    /// Embedded defaults, then `file` (if any), then `TACT_INSIGHTS__SECTION__KEY` pairs of `env`.
    pub fn load(
        file: Option<&Path>,
        env: &[(String, String)],
    ) -> Result<InsightsSettings, ConfigError> {
        let raw: RawConfig = tact_config::load(DEFAULT_TOML, file, env, ENV_PREFIX)
            .map_err(|problems| ConfigError { problems })?;
        raw.validate()
    }

    /// [`InsightsSettings::load`] with the process environment.
    pub fn load_from_process(file: Option<&Path>) -> Result<InsightsSettings, ConfigError> {
        InsightsSettings::load(file, &tact_config::process_env(ENV_PREFIX))
    }
}

fn require(p: &mut Vec<String>, ok: bool, msg: &str) {
    if !ok {
        p.push(msg.to_owned());
    }
}

fn valid_topic(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 249
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-'))
}

/// Reads the sensitivity tiers of a tact policy file.
fn policy_sensitivity(path: &Path) -> Result<SensitivityPolicy, String> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| format!("cannot read {}: {e}", path.display()))?;
    let policy: Policy = toml::from_str(&text).map_err(|e| format!("{}: {e}", path.display()))?;
    policy.validate().map_err(|errors| {
        errors
            .iter()
            .map(|e| format!("{}: {e}", path.display()))
            .collect::<Vec<_>>()
            .join("; ")
    })?;
    Ok(policy.sensitivity)
}

impl RawConfig {
    fn validate(self) -> Result<InsightsSettings, ConfigError> {
        let mut p = Vec::new();
        p.extend(tact_kafka::check_bootstrap(&self.kafka.bootstrap_servers));
        require(
            &mut p,
            !self.kafka.group_id.trim().is_empty(),
            "kafka.group_id: must not be empty",
        );
        let names = [
            ("topics.clickstream", &self.topics.clickstream),
            ("topics.insights", &self.topics.insights),
            ("topics.partials", &self.topics.partials),
            ("topics.changelog", &self.topics.changelog),
        ];
        for (key, name) in names {
            require(
                &mut p,
                valid_topic(name),
                &format!("{key}: {name:?} is not a valid Kafka topic name"),
            );
        }
        for (i, (ka, a)) in names.iter().enumerate() {
            for (kb, b) in &names[i + 1..] {
                require(
                    &mut p,
                    a != b,
                    &format!("{kb}: must differ from {ka} (both are {a:?})"),
                );
            }
        }
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
            (1024..=64 << 20).contains(&self.input.max_message_bytes),
            "input.max_message_bytes: must be between 1024 and 67108864",
        );
        require(
            &mut p,
            !self.state.dir.as_os_str().is_empty(),
            "state.dir: must not be empty",
        );
        require(
            &mut p,
            (8..=65_536).contains(&self.state.block_cache_mb),
            "state.block_cache_mb: must be between 8 and 65536",
        );
        let pl = &self.pipeline;
        require(
            &mut p,
            (1..=100_000).contains(&pl.batch_max_events),
            "pipeline.batch_max_events: must be between 1 and 100000",
        );
        require(
            &mut p,
            (1..=60_000).contains(&pl.batch_max_wait_ms),
            "pipeline.batch_max_wait_ms: must be between 1 and 60000",
        );
        require(
            &mut p,
            (1..=60_000).contains(&pl.commit_interval_ms),
            "pipeline.commit_interval_ms: must be between 1 and 60000",
        );
        require(
            &mut p,
            (100..=600_000).contains(&pl.shutdown_deadline_ms),
            "pipeline.shutdown_deadline_ms: must be between 100 and 600000",
        );
        require(
            &mut p,
            (100..=600_000).contains(&pl.revoke_deadline_ms),
            "pipeline.revoke_deadline_ms: must be between 100 and 600000",
        );
        let listen = self.http.listen.parse::<SocketAddr>();
        require(
            &mut p,
            listen.is_ok(),
            &format!(
                "http.listen: {:?} is not an address like 127.0.0.1:9899",
                self.http.listen
            ),
        );
        require(
            &mut p,
            matches!(self.log.format.as_str(), "text" | "json"),
            "log.format: must be text or json",
        );
        let i = &self.insights;
        require(
            &mut p,
            (1..=7 * 24 * 60).contains(&i.window_minutes),
            "insights.window_minutes: must be between 1 and 10080 (a week)",
        );
        require(
            &mut p,
            (1..=24 * 60).contains(&i.session_gap_minutes),
            "insights.session_gap_minutes: must be between 1 and 1440",
        );
        require(
            &mut p,
            i.max_session_minutes >= i.session_gap_minutes && i.max_session_minutes <= 7 * 24 * 60,
            "insights.max_session_minutes: must be at least session_gap_minutes and at most 10080",
        );
        require(
            &mut p,
            (2..=1_000_000).contains(&i.min_sessions),
            "insights.min_sessions: must be between 2 and 1000000 (k = 1 would publish single visits)",
        );
        require(
            &mut p,
            (1..=10_000).contains(&i.max_events_per_session),
            "insights.max_events_per_session: must be between 1 and 10000",
        );
        require(
            &mut p,
            (1..=10_000_000).contains(&i.max_sessions_in_flight),
            "insights.max_sessions_in_flight: must be between 1 and 10000000",
        );
        require(
            &mut p,
            (1..=32).contains(&i.partition_time_quorum),
            "insights.partition_time_quorum: must be between 1 and 32",
        );
        require(
            &mut p,
            (1..=1_000_000).contains(&i.max_keys_per_window),
            "insights.max_keys_per_window: must be between 1 and 1000000",
        );
        require(
            &mut p,
            (1..=10_000).contains(&i.max_findings_per_kind),
            "insights.max_findings_per_kind: must be between 1 and 10000",
        );
        require(
            &mut p,
            i.target_pages.iter().all(|t| !t.trim().is_empty()),
            "insights.target_pages: entries must not be empty",
        );
        require(
            &mut p,
            (0.0..=1.0).contains(&i.detour_min_confidence),
            "insights.detour_min_confidence: must be between 0 and 1",
        );
        require(
            &mut p,
            (0.0..=1.0).contains(&i.faq_deep_scroll),
            "insights.faq_deep_scroll: must be between 0 and 1",
        );
        require(
            &mut p,
            i.detour_min_steps >= 1,
            "insights.detour_min_steps: must be at least 1",
        );
        // librdkafka settings as written (keys) and as librdkafka reads them (values).
        let client: Vec<(String, String)> = self
            .kafka
            .client
            .iter()
            .map(|(k, v)| {
                let v = match v {
                    toml::Value::String(s) => s.clone(),
                    other => other.to_string(),
                };
                (k.clone(), v)
            })
            .collect();
        p.extend(tact_kafka::check_client(
            client.iter().map(|(k, v)| (k.as_str(), v.clone())),
        ));
        let policy_file =
            (!self.rules.policy_file.as_os_str().is_empty()).then_some(self.rules.policy_file);
        let sensitivity = match &policy_file {
            None => self.sensitivity,
            Some(path) => policy_sensitivity(path).unwrap_or_else(|e| {
                p.push(format!("rules.policy_file: {e}"));
                SensitivityPolicy::default()
            }),
        };
        let faq_file = (!self.rules.faq_file.as_os_str().is_empty()).then_some(self.rules.faq_file);
        let faq = match &faq_file {
            None => KnowledgeBase::default(),
            Some(path) => std::fs::read_to_string(path)
                .map_err(|e| format!("cannot read {}: {e}", path.display()))
                .and_then(|text| {
                    KnowledgeBase::from_toml(&text).map_err(|e| format!("{}: {e}", path.display()))
                })
                .unwrap_or_else(|e| {
                    p.push(format!("rules.faq_file: {e}"));
                    KnowledgeBase::default()
                }),
        };
        let Ok(http_listen) = listen else {
            return Err(ConfigError { problems: p });
        };
        if !p.is_empty() {
            return Err(ConfigError { problems: p });
        }
        let minutes = |m: u64| i64::try_from(m * 60_000).unwrap_or(i64::MAX);
        let size = |v: u64| usize::try_from(v).unwrap_or(usize::MAX);
        let rules = Rules {
            window_ms: minutes(i.window_minutes),
            session_gap_ms: minutes(i.session_gap_minutes),
            max_session_ms: minutes(i.max_session_minutes),
            min_sessions: i.min_sessions,
            max_events_per_session: size(i.max_events_per_session),
            max_sessions_in_flight: size(i.max_sessions_in_flight),
            partition_time_quorum: size(i.partition_time_quorum),
            max_keys_per_window: size(i.max_keys_per_window),
            max_findings_per_kind: size(i.max_findings_per_kind),
            target_pages: i.target_pages.clone(),
            hard_to_find_median_clicks: i.hard_to_find_median_clicks,
            detour_min_steps: i.detour_min_steps,
            detour_min_confidence: i.detour_min_confidence,
            detour_max_products: 32,
            search_few_results: i.search_few_results,
            faq_deep_scroll: i.faq_deep_scroll,
            sensitivity,
            faq,
        };
        Ok(InsightsSettings {
            bootstrap_servers: self.kafka.bootstrap_servers,
            group_id: self.kafka.group_id,
            instance_id: (!instance.is_empty()).then_some(instance),
            client: client
                .into_iter()
                .map(|(k, v)| (k.replace('_', "."), v))
                .collect(),
            clickstream_topic: self.topics.clickstream,
            insights_topic: self.topics.insights,
            partials_topic: self.topics.partials,
            changelog_topic: self.topics.changelog,
            clickstream_format: self.input.clickstream_format,
            max_message_bytes: size(self.input.max_message_bytes),
            state_dir: self.state.dir,
            block_cache_bytes: size(self.state.block_cache_mb << 20),
            state_compression: self.state.compression,
            batch_max_events: size(pl.batch_max_events),
            batch_max_wait: Duration::from_millis(pl.batch_max_wait_ms),
            commit_interval: Duration::from_millis(pl.commit_interval_ms),
            shutdown_deadline: Duration::from_millis(pl.shutdown_deadline_ms),
            revoke_deadline: Duration::from_millis(pl.revoke_deadline_ms),
            idle_advance: (pl.idle_advance_ms > 0)
                .then(|| Duration::from_millis(pl.idle_advance_ms)),
            http_listen,
            log_json: self.log.format == "json",
            log_level: self.log.level,
            rules,
            policy_file,
            faq_file,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tact_core::Tier;

    #[test]
    fn embedded_defaults_are_valid_and_keep_the_tact_never_remember_tiers() {
        let s = InsightsSettings::load(None, &[]).expect("defaults load");
        assert_eq!(s.rules.min_sessions, 20);
        assert_eq!(s.rules.session_gap_ms, 30 * 60_000);
        assert_eq!(
            s.rules.sensitivity.categories.get("health"),
            Some(&Tier::NeverRemember)
        );
        assert_eq!(s.group_id, "tact-insights");
    }

    #[test]
    fn environment_overrides_the_file_and_every_problem_is_named() {
        let env = vec![
            (
                "TACT_INSIGHTS__INSIGHTS__MIN_SESSIONS".to_owned(),
                "5".to_owned(),
            ),
            (
                "TACT_INSIGHTS__TOPICS__INSIGHTS".to_owned(),
                "ins-x".to_owned(),
            ),
        ];
        let s = InsightsSettings::load(None, &env).expect("loads");
        assert_eq!(s.rules.min_sessions, 5);
        assert_eq!(s.insights_topic, "ins-x");

        let bad = vec![
            (
                "TACT_INSIGHTS__INSIGHTS__MIN_SESSIONS".to_owned(),
                "1".to_owned(),
            ),
            (
                "TACT_INSIGHTS__TOPICS__INSIGHTS".to_owned(),
                "bad topic".to_owned(),
            ),
        ];
        let err = InsightsSettings::load(None, &bad).expect_err("k=1 and a bad topic");
        assert_eq!(err.problems.len(), 2, "{err}");
        assert!(err.to_string().contains("insights.min_sessions"));
        assert!(err.to_string().contains("topics.insights"));
    }

    #[test]
    fn the_knowledge_base_file_is_loaded_and_a_bad_one_is_named() {
        let shipped = concat!(env!("CARGO_MANIFEST_DIR"), "/../../deploy/faq.example.toml");
        let env = |path: &str| vec![("TACT_INSIGHTS__RULES__FAQ_FILE".to_owned(), path.to_owned())];
        let s = InsightsSettings::load(None, &env(shipped)).expect("loads");
        assert!(s.rules.faq.len() >= 5, "{:?}", s.rules.faq);
        assert!(s.faq_file.is_some());
        let err = InsightsSettings::load(None, &env("/nonexistent/faq.toml")).expect_err("missing");
        assert!(
            err.to_string()
                .contains("rules.faq_file: cannot read /nonexistent/faq.toml"),
            "{err}"
        );
    }
}
