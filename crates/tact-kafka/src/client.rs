//! librdkafka configuration and the callbacks tact installs.

use rdkafka::client::ClientContext;
use rdkafka::config::ClientConfig;
use rdkafka::consumer::{BaseConsumer, ConsumerContext, Rebalance};
use rdkafka::producer::{DeliveryResult, ProducerContext};
use rdkafka::statistics::Statistics;
use rdkafka::Message;
use std::collections::BTreeMap;
use std::sync::mpsc::Sender;

fn apply_user(config: &mut ClientConfig, user: &BTreeMap<String, String>) {
    for (k, v) in user {
        config.set(k, v);
    }
}

/// Consumer settings: tact's defaults, then the user's passthrough settings, then the keys the
/// delivery guarantee depends on (never overridable).
pub fn consumer_config(
    bootstrap: &str,
    group_id: &str,
    user: &BTreeMap<String, String>,
) -> ClientConfig {
    let mut c = ClientConfig::new();
    c.set("bootstrap.servers", bootstrap)
        .set("group.id", group_id)
        .set("auto.offset.reset", "earliest")
        // Bounds librdkafka's prefetch buffer; unbounded by default in practice.
        .set("queued.max.messages.kbytes", "65536")
        .set("statistics.interval.ms", "5000")
        .set("session.timeout.ms", "30000");
    apply_user(&mut c, user);
    // Offsets are committed by tact, in order, only after output is durable.
    c.set("enable.auto.commit", "false")
        .set("enable.auto.offset.store", "false")
        .set("enable.partition.eof", "false");
    c
}

/// Producer settings: tact's defaults, the user's passthrough, then idempotence and acks=all.
pub fn producer_config(bootstrap: &str, user: &BTreeMap<String, String>) -> ClientConfig {
    let mut c = ClientConfig::new();
    c.set("bootstrap.servers", bootstrap)
        .set("linger.ms", "5")
        .set("queue.buffering.max.messages", "200000")
        // A long outage surfaces as delivery errors; the outbox re-sends, so nothing is lost.
        .set("message.timeout.ms", "120000");
    apply_user(&mut c, user);
    c.set("enable.idempotence", "true").set("acks", "all");
    c
}

/// A delivery report: the outbox sequence number and the broker's answer.
#[derive(Debug)]
pub struct Delivery {
    pub seq: u64,
    pub result: Result<(), String>,
}

/// Forwards delivery reports to the pipeline thread; never blocks librdkafka's thread.
#[derive(Debug)]
pub struct DeliveryContext {
    pub reports: Sender<Delivery>,
}

impl ClientContext for DeliveryContext {}

impl ProducerContext for DeliveryContext {
    type DeliveryOpaque = usize;

    fn delivery(&self, result: &DeliveryResult<'_>, seq: usize) {
        let result = match result {
            Ok(_) => Ok(()),
            Err((e, msg)) => Err(format!("{e} (topic {})", msg.topic())),
        };
        // The receiver is gone only when the pipeline stopped; the outbox still holds the record.
        let _ = self.reports.send(Delivery {
            seq: seq as u64,
            result,
        });
    }
}

/// Callbacks from the consumer into the runtime.
pub struct ConsumerHooks {
    /// Partitions assigned (true) or revoked (false).
    pub on_rebalance: Box<dyn Fn(bool, &[(String, i32)]) + Send + Sync>,
    /// Lag per (topic, partition), from librdkafka's statistics.
    pub on_lag: Box<dyn Fn(&[(String, i32, i64)]) + Send + Sync>,
}

impl std::fmt::Debug for ConsumerHooks {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("ConsumerHooks")
    }
}

#[derive(Debug)]
pub struct TactConsumerContext {
    pub hooks: ConsumerHooks,
}

impl ClientContext for TactConsumerContext {
    fn stats(&self, statistics: Statistics) {
        let lag: Vec<(String, i32, i64)> = statistics
            .topics
            .iter()
            .flat_map(|(topic, t)| {
                t.partitions
                    .iter()
                    .filter(|(p, part)| **p >= 0 && part.consumer_lag >= 0)
                    .map(move |(p, part)| (topic.clone(), *p, part.consumer_lag))
            })
            .collect();
        (self.hooks.on_lag)(&lag);
    }
}

fn partitions(rebalance: &Rebalance<'_>) -> Option<(bool, Vec<(String, i32)>)> {
    let (assigned, tpl) = match rebalance {
        Rebalance::Assign(tpl) => (true, tpl),
        Rebalance::Revoke(tpl) => (false, tpl),
        Rebalance::Error(e) => {
            tracing::warn!(error = %e, "consumer group rebalance failed");
            return None;
        }
    };
    Some((
        assigned,
        tpl.elements()
            .iter()
            .map(|e| (e.topic().to_owned(), e.partition()))
            .collect(),
    ))
}

impl ConsumerContext for TactConsumerContext {
    fn pre_rebalance(&self, _consumer: &BaseConsumer<Self>, rebalance: &Rebalance<'_>) {
        if let Some((false, parts)) = partitions(rebalance) {
            tracing::info!(partitions = ?parts, "partitions revoked");
            (self.hooks.on_rebalance)(false, &parts);
        }
    }

    fn post_rebalance(&self, _consumer: &BaseConsumer<Self>, rebalance: &Rebalance<'_>) {
        if let Some((true, parts)) = partitions(rebalance) {
            tracing::info!(partitions = ?parts, "partitions assigned");
            (self.hooks.on_rebalance)(true, &parts);
        }
    }
}
