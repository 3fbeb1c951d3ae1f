//! The decision pipeline as a service: its settings turned into the edge's, the topics it needs
//! (for `tact topics create`), and a run until stopped.

use crate::config::Settings;
use crate::pipeline::{Pipeline, RunSummary};
use std::sync::atomic::AtomicBool;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tact_edge::{Edge, EdgeError, EdgeSettings, Topic};
use tact_kafka::admin::TopicSpec;
use tact_store::StateStore;
use tact_telemetry::{Health, Metrics};

/// The edge's view of the pipeline's settings.
pub fn edge_settings(s: &Settings) -> EdgeSettings {
    let t = &s.topics;
    EdgeSettings {
        bootstrap_servers: s.kafka.bootstrap_servers.clone(),
        group_id: s.kafka.group_id.clone(),
        instance_id: s.kafka.instance_id.clone(),
        client: s.kafka.client.clone(),
        driving: Topic {
            name: t.clickstream.clone(),
            label: "clickstream",
        },
        co_partitioned: vec![Topic {
            name: t.profile_commands.clone(),
            label: "profile_commands",
        }],
        global: Some(Topic {
            name: t.catalog.clone(),
            label: "catalog",
        }),
        changelog: t.changelog.clone(),
        outputs: vec![
            t.decisions.clone(),
            t.suppressed.clone(),
            t.dead_letter.clone(),
            t.erasure_receipts.clone(),
        ],
        batch_max_events: s.batch_max_events,
        batch_max_wait: s.batch_max_wait,
        commit_interval: s.commit_interval,
        shutdown_deadline: s.shutdown_deadline,
        revoke_deadline: s.revoke_deadline,
        idle_after: s.idle_timer_wall_clock,
        max_in_flight: 100_000,
        max_in_flight_bytes: s.max_unacknowledged_bytes,
        orphan_grace: Duration::from_secs(30),
        require_compaction: true,
        connect_timeout: Duration::from_secs(30),
    }
}

/// Settings every changelog gets: compacted, and compacted soon enough that an erased
/// customer's earlier values leave the broker within a day (`max.compaction.lag.ms`) and their
/// tombstone within another (`delete.retention.ms`), while a restoring instance that reads slowly
/// still sees every tombstone.
pub fn changelog_configs() -> Vec<(String, String)> {
    [
        ("cleanup.policy", "compact"),
        ("min.compaction.lag.ms", "0"),
        ("max.compaction.lag.ms", "86400000"),
        ("delete.retention.ms", "86400000"),
        ("segment.ms", "3600000"),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_owned(), v.to_owned()))
    .collect()
}

/// Every topic the pipeline reads or writes, with `partitions` for the co-partitioned ones.
pub fn topic_specs(s: &Settings, partitions: i32, replication: i32) -> Vec<TopicSpec> {
    let t = &s.topics;
    let spec = |name: &str, co: bool, configs: Vec<(String, String)>, purpose: &str| TopicSpec {
        name: name.to_owned(),
        partitions: if co { partitions } else { partitions.min(3) },
        replication,
        configs,
        purpose: purpose.to_owned(),
        co_partitioned: co,
    };
    vec![
        spec(
            &t.clickstream,
            true,
            vec![],
            "input: click events, keyed by customer id",
        ),
        spec(
            &t.profile_commands,
            true,
            vec![],
            "input: profile commands, keyed by customer id (co-partitioned with the clickstream)",
        ),
        spec(
            &t.catalog,
            false,
            vec![],
            "input: new releases, read in full by every instance",
        ),
        spec(
            &t.changelog,
            true,
            changelog_configs(),
            "state: every customer's latest state, partitioned like the clickstream",
        ),
        spec(
            &t.decisions,
            false,
            vec![],
            "output: decisions, keyed by customer id",
        ),
        spec(
            &t.suppressed,
            false,
            vec![],
            "output: suppressed candidates (audit)",
        ),
        spec(
            &t.dead_letter,
            false,
            vec![],
            "output: input records tact could not use",
        ),
        spec(
            &t.erasure_receipts,
            false,
            vec![],
            "output: erasure receipts, keyed by command id",
        ),
    ]
}

/// Runs the pipeline until `stop` is set, then drains within the shutdown deadline.
pub fn run(
    settings: Settings,
    store: Arc<dyn StateStore>,
    metrics: Arc<Metrics>,
    health: Arc<Health>,
    stop: &AtomicBool,
) -> Result<RunSummary, EdgeError> {
    let started = Instant::now();
    let es = edge_settings(&settings);
    run_with(es, settings, store, metrics, health, stop).map(|mut summary| {
        summary.elapsed = started.elapsed();
        summary
    })
}

/// [`run`] with edge settings of the caller's (the embedded demo broker cannot describe topic
/// configs, so the demo does not require a compacted changelog).
pub fn run_with(
    es: EdgeSettings,
    settings: Settings,
    store: Arc<dyn StateStore>,
    metrics: Arc<Metrics>,
    health: Arc<Health>,
    stop: &AtomicBool,
) -> Result<RunSummary, EdgeError> {
    let edge_metrics = metrics.edge.clone();
    let job = Pipeline::new(Arc::new(settings), metrics);
    let edge = Edge::new(es, job, store, edge_metrics, health, stop)?;
    let stopped = edge.run(stop)?;
    let mut summary = stopped.job.into_summary();
    summary.unacknowledged_at_exit = stopped.unacknowledged;
    Ok(summary)
}
