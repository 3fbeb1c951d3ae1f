//! Every metric tact exports, in one place. Names follow `tact_<name>_<unit>[_total]`; the
//! insights lane's are `tact_insights_<name>…`. [`EdgeMetrics`] are the stateful Kafka edge's
//! (the same set for every job that runs on it), [`Metrics`] the decision pipeline's and
//! [`InsightsMetrics`] the insights lane's.

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::metrics::info::Info;
use prometheus_client::registry::{Registry, Unit};
use std::sync::atomic::AtomicU64;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct TopicLabel {
    pub topic: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct TopicClass {
    pub topic: &'static str,
    pub error_class: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct KindChannel {
    pub kind: &'static str,
    pub channel: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct GateReason {
    pub gate: &'static str,
    pub reason: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct TopicPartition {
    pub topic: &'static str,
    pub partition: i32,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct EventLabel {
    pub event: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ActionLabel {
    pub action: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct KindLabel {
    pub kind: &'static str,
}

/// The process's registry and its text exposition.
#[derive(Debug)]
pub struct Exporter {
    registry: Registry,
}

impl Exporter {
    /// A registry whose metric names start with `tact_`.
    pub fn registry() -> Registry {
        Registry::with_prefix("tact")
    }

    pub fn new(registry: Registry) -> Exporter {
        Exporter { registry }
    }

    /// Prometheus text exposition.
    pub fn render(&self) -> String {
        let mut out = String::new();
        // Writing into a String cannot fail.
        let _ = prometheus_client::encoding::text::encode(&mut out, &self.registry);
        out
    }
}

/// What every job on the stateful edge reports: input, output, the store, the group and
/// restores. Registered at the top for the pipeline and under `insights_` for the lane.
#[derive(Debug, Clone)]
pub struct EdgeMetrics {
    pub events_consumed: Family<TopicLabel, Counter>,
    pub events_skipped: Family<TopicLabel, Counter>,
    pub batch_duration: Histogram,
    pub outbox_pending: Gauge,
    pub outbox_pending_bytes: Gauge,
    pub consumer_lag: Family<TopicPartition, Gauge>,
    pub store_size: Gauge<u64, AtomicU64>,
    pub delivery_errors: Counter,
    pub oversized_outputs: Family<ActionLabel, Counter>,
    pub commits: Counter,
    pub changelog_records: Counter,
    pub partitions_assigned: Gauge,
    pub partitions_restoring: Gauge,
    pub rebalances: Family<EventLabel, Counter>,
    pub restore_records: Counter,
    pub restore_bytes: Counter,
    pub restore_stale_records: Counter,
    pub restore_remaining: Gauge,
    pub restore_duration: Histogram,
}

impl EdgeMetrics {
    fn new() -> EdgeMetrics {
        EdgeMetrics {
            // 100 µs .. ~6.5 s
            batch_duration: Histogram::new([
                0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5,
                1.0, 2.5, 6.5,
            ]),
            // 10 ms .. 1 h: how long one partition took to restore.
            restore_duration: Histogram::new([
                0.01, 0.05, 0.1, 0.5, 1.0, 5.0, 10.0, 30.0, 60.0, 300.0, 900.0, 3600.0,
            ]),
            events_consumed: Family::default(),
            events_skipped: Family::default(),
            outbox_pending: Gauge::default(),
            outbox_pending_bytes: Gauge::default(),
            consumer_lag: Family::default(),
            store_size: Gauge::default(),
            delivery_errors: Counter::default(),
            oversized_outputs: Family::default(),
            commits: Counter::default(),
            changelog_records: Counter::default(),
            partitions_assigned: Gauge::default(),
            partitions_restoring: Gauge::default(),
            rebalances: Family::default(),
            restore_records: Counter::default(),
            restore_bytes: Counter::default(),
            restore_stale_records: Counter::default(),
            restore_remaining: Gauge::default(),
        }
    }

    /// Registers the edge's metrics in `r`; `inputs` are the input labels to pre-create.
    pub fn register(r: &mut Registry, inputs: &[&'static str]) -> EdgeMetrics {
        let m = EdgeMetrics::new();
        r.register(
            "events_consumed",
            "Input records consumed",
            m.events_consumed.clone(),
        );
        r.register(
            "events_skipped",
            "Input records skipped because they were already applied (replay after a crash or a move)",
            m.events_skipped.clone(),
        );
        r.register_with_unit(
            "batch_duration",
            "Time to decode, decide and durably write one batch",
            Unit::Seconds,
            m.batch_duration.clone(),
        );
        r.register(
            "outbox_pending",
            "Records written but not yet acknowledged by the broker",
            m.outbox_pending.clone(),
        );
        r.register_with_unit(
            "outbox_pending",
            "Bytes (keys and values) of the records written but not yet acknowledged, held in memory; input pauses beyond pipeline.max_unacknowledged_mb",
            Unit::Bytes,
            m.outbox_pending_bytes.clone(),
        );
        r.register_with_unit(
            "consumer_lag",
            "Records behind the end of each owned input partition",
            Unit::Other("messages".into()),
            m.consumer_lag.clone(),
        );
        r.register_with_unit(
            "store_size",
            "Approximate size of the state store",
            Unit::Bytes,
            m.store_size.clone(),
        );
        r.register(
            "delivery_errors",
            "Produce attempts the broker did not acknowledge (retried)",
            m.delivery_errors.clone(),
        );
        r.register(
            "oversized_outputs",
            "Outgoing records the producer or the broker refused as too large: sent in their smaller form (action=replaced) or, having none, dropped (action=dropped)",
            m.oversized_outputs.clone(),
        );
        r.register("commits", "Input offset commits", m.commits.clone());
        r.register(
            "changelog_records",
            "State changes written to the changelog topic",
            m.changelog_records.clone(),
        );
        r.register(
            "partitions_assigned",
            "Input partitions this instance owns (restoring or active)",
            m.partitions_assigned.clone(),
        );
        r.register(
            "partitions_restoring",
            "Owned partitions whose state is being restored from the changelog",
            m.partitions_restoring.clone(),
        );
        r.register(
            "rebalances",
            "Partition assignments, revocations and losses seen from the consumer group",
            m.rebalances.clone(),
        );
        r.register(
            "restore_records",
            "Changelog records read while restoring partitions",
            m.restore_records.clone(),
        );
        r.register_with_unit(
            "restore",
            "Changelog bytes read while restoring partitions",
            Unit::Bytes,
            m.restore_bytes.clone(),
        );
        r.register(
            "restore_stale_records",
            "Changelog records skipped while restoring: written by an instance after it had lost the partition",
            m.restore_stale_records.clone(),
        );
        r.register(
            "restore_remaining_records",
            "Changelog records still to read before the restoring partitions are ready",
            m.restore_remaining.clone(),
        );
        r.register_with_unit(
            "restore_duration",
            "Time from a partition's assignment to its state being ready",
            Unit::Seconds,
            m.restore_duration.clone(),
        );
        for topic in inputs {
            let _ = m.events_consumed.get_or_create(&TopicLabel { topic });
            let _ = m.events_skipped.get_or_create(&TopicLabel { topic });
        }
        for event in ["assigned", "revoked", "lost"] {
            let _ = m.rebalances.get_or_create(&EventLabel { event });
        }
        m
    }

    pub fn consumed(&self, topic: &'static str) {
        self.events_consumed
            .get_or_create(&TopicLabel { topic })
            .inc();
    }
}

/// The closed sets label values come from; used to pre-create series at zero so dashboards and
/// alerts see them before the first event.
#[derive(Debug, Clone, Default)]
pub struct Names {
    pub topics: Vec<&'static str>,
    pub error_classes: Vec<&'static str>,
    pub kinds: Vec<&'static str>,
    pub channels: Vec<&'static str>,
}

/// The decision pipeline's metrics (and its edge's).
#[derive(Debug, Clone)]
pub struct Metrics {
    pub edge: EdgeMetrics,
    pub unknown_events: Family<TopicLabel, Counter>,
    pub decode_errors: Family<TopicClass, Counter>,
    pub dead_lettered: Family<TopicClass, Counter>,
    pub duplicate_events: Counter,
    pub decisions: Family<KindChannel, Counter>,
    pub suppressions: Family<GateReason, Counter>,
    pub interleave_held: Gauge,
    pub erasures: Counter,
    pub erasure_lag: Histogram,
    pub callbacks_requested: Counter,
    pub callbacks_done: Family<OutcomeLabel, Counter>,
    pub callback_answer: Histogram,
    pub callback_breaches: Counter,
}

/// How a callback ended: `on_time`, `late` (after its due time), or `unknown` (a report naming no
/// open callback).
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct OutcomeLabel {
    pub outcome: &'static str,
}

impl Metrics {
    /// The pipeline's metrics in a registry of their own (tests, benchmarks).
    pub fn new(version: &'static str, names: &Names) -> Metrics {
        Metrics::register(&mut Exporter::registry(), version, names)
    }

    /// Registers the pipeline's metrics (and the build info) in `registry`.
    pub fn register(registry: &mut Registry, version: &'static str, names: &Names) -> Metrics {
        let m = Metrics {
            edge: EdgeMetrics::register(registry, &names.topics),
            unknown_events: Family::default(),
            decode_errors: Family::default(),
            dead_lettered: Family::default(),
            duplicate_events: Counter::default(),
            decisions: Family::default(),
            suppressions: Family::default(),
            interleave_held: Gauge::default(),
            erasures: Counter::default(),
            // 10 ms .. ~3 days: from the customer's request to its erasure.
            erasure_lag: Histogram::new([
                0.01, 0.1, 1.0, 10.0, 60.0, 600.0, 3600.0, 21600.0, 86400.0, 259200.0,
            ]),
            callbacks_requested: Counter::default(),
            callbacks_done: Family::default(),
            // 1 min .. 3 days, with the promised hour in the middle.
            callback_answer: Histogram::new([
                60.0, 300.0, 900.0, 1800.0, 2700.0, 3600.0, 5400.0, 7200.0, 14400.0, 86400.0,
                259200.0,
            ]),
            callback_breaches: Counter::default(),
        };
        registry.register(
            "unknown_events",
            "Input records of a type this version does not know (counted, not an error)",
            m.unknown_events.clone(),
        );
        registry.register(
            "decode_errors",
            "Input records that could not be decoded or validated",
            m.decode_errors.clone(),
        );
        registry.register(
            "duplicate_events",
            "Click events whose event_id the customer sent within policy.duplicate_window_minutes (a producer's retry): counted once, changing nothing the second time",
            m.duplicate_events.clone(),
        );
        registry.register(
            "dead_lettered",
            "Records sent to the dead-letter topic",
            m.dead_lettered.clone(),
        );
        registry.register("decisions", "Decisions emitted", m.decisions.clone());
        registry.register(
            "suppressions",
            "Candidate decisions stopped by a gate",
            m.suppressions.clone(),
        );
        registry.register(
            "interleave_held",
            "Input records waiting for the other co-partitioned input (event-time interleaving)",
            m.interleave_held.clone(),
        );
        registry.register(
            "erasures",
            "Customers erased on request",
            m.erasures.clone(),
        );
        registry.register_with_unit(
            "erasure_lag",
            "Time from an erase request to its erasure",
            Unit::Seconds,
            m.erasure_lag.clone(),
        );
        registry.register(
            "callbacks_requested",
            "Call-me requests routed as callback decisions",
            m.callbacks_requested.clone(),
        );
        registry.register(
            "callbacks_done",
            "Callbacks the contact system reported done (CALLBACK_DONE), by outcome: on_time, late, or unknown (naming no open callback)",
            m.callbacks_done.clone(),
        );
        registry.register_with_unit(
            "callback_answer",
            "Time from a callback request to the contact system's report that it was done",
            Unit::Seconds,
            m.callback_answer.clone(),
        );
        registry.register(
            "callback_breaches",
            "Callbacks whose due time passed before they were reported done (one escalation each)",
            m.callback_breaches.clone(),
        );
        for outcome in ["on_time", "late", "unknown"] {
            let _ = m.callbacks_done.get_or_create(&OutcomeLabel { outcome });
        }
        registry.register(
            "build",
            "Build information",
            Info::new(vec![("version", version)]),
        );
        for topic in &names.topics {
            let _ = m.unknown_events.get_or_create(&TopicLabel { topic });
            for error_class in &names.error_classes {
                let _ = m
                    .decode_errors
                    .get_or_create(&TopicClass { topic, error_class });
                let _ = m
                    .dead_lettered
                    .get_or_create(&TopicClass { topic, error_class });
            }
        }
        for kind in &names.kinds {
            for channel in &names.channels {
                let _ = m.decisions.get_or_create(&KindChannel { kind, channel });
            }
        }
        m
    }

    pub fn consumed(&self, topic: &'static str) {
        self.edge.consumed(topic);
    }
}

/// The insights lane's metrics (and its edge's), all under `tact_insights_`. Label values are
/// `&'static str` finding kinds only: no page, query or person can become a label.
#[derive(Debug, Clone)]
pub struct InsightsMetrics {
    pub edge: EdgeMetrics,
    pub decode_errors: Counter,
    pub late_events: Counter,
    pub sensitive_events: Counter,
    pub sessions_assembled: Counter,
    pub sessions_truncated: Counter,
    pub sessions_evicted: Counter,
    pub sessions_in_flight: Gauge,
    pub partials_sent: Counter,
    pub windows_closed: Counter,
    pub findings_published: Family<KindLabel, Counter>,
    pub findings_held_back: Family<KindLabel, Counter>,
}

impl InsightsMetrics {
    /// Registers the lane's metrics under `insights_` in `registry`; `kinds` are the finding
    /// kinds to pre-create at zero.
    pub fn register(registry: &mut Registry, kinds: &[&'static str]) -> InsightsMetrics {
        let r = registry.sub_registry_with_prefix("insights");
        let m = InsightsMetrics {
            edge: EdgeMetrics::register(r, &["clickstream", "partials"]),
            decode_errors: Counter::default(),
            late_events: Counter::default(),
            sensitive_events: Counter::default(),
            sessions_assembled: Counter::default(),
            sessions_truncated: Counter::default(),
            sessions_evicted: Counter::default(),
            sessions_in_flight: Gauge::default(),
            partials_sent: Counter::default(),
            windows_closed: Counter::default(),
            findings_published: Family::default(),
            findings_held_back: Family::default(),
        };
        r.register(
            "decode_errors",
            "Records that could not be decoded (the decision pipeline dead-letters them)",
            m.decode_errors.clone(),
        );
        r.register(
            "late_events",
            "Events of a session starting in a window its partition had already passed",
            m.late_events.clone(),
        );
        r.register(
            "sensitive_events",
            "Events in never_remember categories (counted in totals only)",
            m.sensitive_events.clone(),
        );
        r.register(
            "sessions_assembled",
            "Sessions ended and folded into a window aggregate",
            m.sessions_assembled.clone(),
        );
        r.register(
            "sessions_truncated",
            "Sessions that hit the per-session event cap",
            m.sessions_truncated.clone(),
        );
        r.register(
            "sessions_evicted",
            "Sessions ended early because a partition had too many in flight",
            m.sessions_evicted.clone(),
        );
        r.register(
            "sessions_in_flight",
            "Session buffers currently open",
            m.sessions_in_flight.clone(),
        );
        r.register(
            "partials_sent",
            "Partial window aggregates sent to the partition that merges the window",
            m.partials_sent.clone(),
        );
        r.register(
            "windows_closed",
            "Event-time windows merged over every partition and evaluated",
            m.windows_closed.clone(),
        );
        r.register(
            "findings_published",
            "Findings published (supported by at least k sessions)",
            m.findings_published.clone(),
        );
        r.register(
            "findings_held_back",
            "Candidate findings held back because fewer than k sessions support them",
            m.findings_held_back.clone(),
        );
        for kind in kinds {
            let label = KindLabel { kind };
            let _ = m.findings_published.get_or_create(&label);
            let _ = m.findings_held_back.get_or_create(&label);
        }
        m
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn series_exist_at_zero_before_the_first_event_and_count_after() {
        let mut registry = Exporter::registry();
        let m = Metrics::register(
            &mut registry,
            "0.1.0",
            &Names {
                topics: vec!["clickstream"],
                error_classes: vec!["truncated"],
                kinds: vec!["welcome_back"],
                channels: vec!["on_site"],
            },
        );
        let lane = InsightsMetrics::register(&mut registry, &["dead_end"]);
        let exporter = Exporter::new(registry);
        let text = exporter.render();
        assert!(
            text.contains("tact_events_consumed_total{topic=\"clickstream\"} 0"),
            "{text}"
        );
        assert!(text.contains(
            "tact_decode_errors_total{topic=\"clickstream\",error_class=\"truncated\"} 0"
        ));
        assert!(text.contains("tact_decisions_total{kind=\"welcome_back\",channel=\"on_site\"} 0"));
        assert!(text.contains("tact_insights_findings_published_total{kind=\"dead_end\"} 0"));
        assert!(text.contains("tact_rebalances_total{event=\"assigned\"} 0"));
        assert!(text.contains("tact_insights_partitions_restoring 0"));
        m.consumed("clickstream");
        lane.edge.consumed("clickstream");
        m.suppressions
            .get_or_create(&GateReason {
                gate: "consent",
                reason: "consent_missing",
            })
            .inc();
        let text = exporter.render();
        assert!(text.contains("tact_events_consumed_total{topic=\"clickstream\"} 1"));
        assert!(text.contains("tact_insights_events_consumed_total{topic=\"clickstream\"} 1"));
        assert!(
            text.contains("tact_suppressions_total{gate=\"consent\",reason=\"consent_missing\"} 1")
        );
        assert!(text.contains("tact_build_info{version=\"0.1.0\"} 1"));
    }
}
