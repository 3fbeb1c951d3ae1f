//! Every metric tact exports, in one place. Names follow `tact_<name>_<unit>[_total]`.

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::metrics::info::Info;
use prometheus_client::registry::Registry;
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

/// The closed sets label values come from; used to pre-create series at zero so dashboards and
/// alerts see them before the first event.
#[derive(Debug, Clone, Default)]
pub struct Names {
    pub topics: Vec<&'static str>,
    pub error_classes: Vec<&'static str>,
    pub kinds: Vec<&'static str>,
    pub channels: Vec<&'static str>,
}

#[derive(Debug)]
pub struct Metrics {
    pub registry: Registry,
    pub events_consumed: Family<TopicLabel, Counter>,
    pub events_skipped: Family<TopicLabel, Counter>,
    pub unknown_events: Family<TopicLabel, Counter>,
    pub decode_errors: Family<TopicClass, Counter>,
    pub dead_lettered: Family<TopicClass, Counter>,
    pub decisions: Family<KindChannel, Counter>,
    pub suppressions: Family<GateReason, Counter>,
    pub batch_duration: Histogram,
    pub outbox_pending: Gauge,
    pub interleave_held: Gauge,
    pub consumer_lag: Family<TopicPartition, Gauge>,
    pub store_size: Gauge<u64, AtomicU64>,
    pub delivery_errors: Counter,
    pub commits: Counter,
    pub erasures: Counter,
    pub erasure_lag: Histogram,
}

impl Metrics {
    pub fn new(version: &'static str, names: &Names) -> Metrics {
        let mut registry = Registry::with_prefix("tact");
        let m = Metrics {
            events_consumed: Family::default(),
            events_skipped: Family::default(),
            unknown_events: Family::default(),
            decode_errors: Family::default(),
            dead_lettered: Family::default(),
            decisions: Family::default(),
            suppressions: Family::default(),
            // 100 µs .. ~6.5 s
            batch_duration: Histogram::new([
                0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5,
                1.0, 2.5, 6.5,
            ]),
            outbox_pending: Gauge::default(),
            interleave_held: Gauge::default(),
            consumer_lag: Family::default(),
            store_size: Gauge::default(),
            delivery_errors: Counter::default(),
            commits: Counter::default(),
            erasures: Counter::default(),
            // 10 ms .. ~3 days: from the customer's request to its erasure.
            erasure_lag: Histogram::new([
                0.01, 0.1, 1.0, 10.0, 60.0, 600.0, 3600.0, 21600.0, 86400.0, 259200.0,
            ]),
            registry: Registry::default(),
        };
        registry.register(
            "events_consumed",
            "Input records consumed",
            m.events_consumed.clone(),
        );
        registry.register(
            "events_skipped",
            "Input records skipped because they were already applied (replay after a crash)",
            m.events_skipped.clone(),
        );
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
        registry.register_with_unit(
            "batch_duration",
            "Time to decode, decide and durably write one batch",
            prometheus_client::registry::Unit::Seconds,
            m.batch_duration.clone(),
        );
        registry.register(
            "outbox_pending",
            "Records written but not yet acknowledged by the broker",
            m.outbox_pending.clone(),
        );
        registry.register(
            "interleave_held",
            "Input records waiting for the other co-partitioned input (event-time interleaving)",
            m.interleave_held.clone(),
        );
        registry.register_with_unit(
            "consumer_lag",
            "Records behind the end of each assigned partition",
            prometheus_client::registry::Unit::Other("messages".into()),
            m.consumer_lag.clone(),
        );
        registry.register_with_unit(
            "store_size",
            "Approximate size of the state store",
            prometheus_client::registry::Unit::Bytes,
            m.store_size.clone(),
        );
        registry.register(
            "delivery_errors",
            "Produce attempts the broker did not acknowledge (retried)",
            m.delivery_errors.clone(),
        );
        registry.register("commits", "Input offset commits", m.commits.clone());
        registry.register(
            "erasures",
            "Customers erased on request",
            m.erasures.clone(),
        );
        registry.register_with_unit(
            "erasure_lag",
            "Time from an erase request to its erasure",
            prometheus_client::registry::Unit::Seconds,
            m.erasure_lag.clone(),
        );
        registry.register(
            "build",
            "Build information",
            Info::new(vec![("version", version)]),
        );
        for topic in &names.topics {
            let _ = m.events_consumed.get_or_create(&TopicLabel { topic });
            let _ = m.events_skipped.get_or_create(&TopicLabel { topic });
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
        Metrics { registry, ..m }
    }

    /// Prometheus text exposition.
    pub fn render(&self) -> String {
        let mut out = String::new();
        // Writing into a String cannot fail.
        let _ = prometheus_client::encoding::text::encode(&mut out, &self.registry);
        out
    }

    pub fn consumed(&self, topic: &'static str) {
        self.events_consumed
            .get_or_create(&TopicLabel { topic })
            .inc();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn series_exist_at_zero_before_the_first_event_and_count_after() {
        let m = Metrics::new(
            "0.1.0",
            &Names {
                topics: vec!["clickstream"],
                error_classes: vec!["truncated"],
                kinds: vec!["welcome_back"],
                channels: vec!["on_site"],
            },
        );
        let text = m.render();
        assert!(
            text.contains("tact_events_consumed_total{topic=\"clickstream\"} 0"),
            "{text}"
        );
        assert!(text.contains(
            "tact_decode_errors_total{topic=\"clickstream\",error_class=\"truncated\"} 0"
        ));
        assert!(text.contains("tact_decisions_total{kind=\"welcome_back\",channel=\"on_site\"} 0"));
        m.consumed("clickstream");
        m.suppressions
            .get_or_create(&GateReason {
                gate: "consent",
                reason: "consent_missing",
            })
            .inc();
        let text = m.render();
        assert!(text.contains("tact_events_consumed_total{topic=\"clickstream\"} 1"));
        assert!(
            text.contains("tact_suppressions_total{gate=\"consent\",reason=\"consent_missing\"} 1")
        );
        assert!(text.contains("tact_build_info{version=\"0.1.0\"} 1"));
    }
}
