//! librdkafka configuration and the delivery callback tact installs.

use rdkafka::client::ClientContext;
use rdkafka::config::ClientConfig;
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::producer::{DeliveryResult, ProducerContext};
use rdkafka::Message;
use std::collections::BTreeMap;
use std::sync::mpsc::Sender;

/// Keys tact sets for its delivery guarantee; a user setting any of them is refused by the
/// configuration check (they would silently weaken what tact promises).
pub const MANAGED_KEYS: [&str; 6] = [
    "enable.auto.commit",
    "enable.auto.offset.store",
    "enable.idempotence",
    "acks",
    "group.instance.id",
    "partition.assignment.strategy",
];

fn apply_user(config: &mut ClientConfig, user: &BTreeMap<String, String>) {
    for (k, v) in user {
        config.set(k, v);
    }
}

/// How a consumer takes part in its group.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Membership {
    /// A group member: subscribes, gets partitions assigned (cooperative-sticky), commits.
    /// `instance_id` makes the membership static: a restart within the session timeout gets
    /// the same partitions back without a rebalance.
    Member {
        group_id: String,
        instance_id: Option<String>,
    },
    /// Reads partitions it assigns itself (co-partitioned inputs, the changelog, the catalog);
    /// never joins a group and never commits.
    Reader,
}

/// Consumer settings: tact's defaults, then the user's passthrough settings, then the keys the
/// delivery guarantee depends on (never overridable).
pub fn consumer_config(
    bootstrap: &str,
    membership: &Membership,
    user: &BTreeMap<String, String>,
) -> ClientConfig {
    let mut c = ClientConfig::new();
    c.set("bootstrap.servers", bootstrap)
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
    match membership {
        Membership::Member {
            group_id,
            instance_id,
        } => {
            c.set("group.id", group_id)
                // Incremental rebalances: a partition moving away does not stop the others.
                .set("partition.assignment.strategy", "cooperative-sticky");
            if let Some(id) = instance_id {
                c.set("group.instance.id", id);
            }
        }
        Membership::Reader => {
            // librdkafka wants a group id even for assign-only consumers; this one never joins.
            c.set("group.id", "tact-reader");
            c.remove("group.instance.id");
            c.remove("partition.assignment.strategy");
        }
    }
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
    // Consumer-only keys in the shared passthrough would make the producer warn at every start.
    for key in [
        "session.timeout.ms",
        "heartbeat.interval.ms",
        "max.poll.interval.ms",
        "auto.offset.reset",
        "fetch.wait.max.ms",
        "fetch.min.bytes",
        "queued.max.messages.kbytes",
        "queued.min.messages",
        "group.id",
        "group.instance.id",
        "isolation.level",
        "partition.assignment.strategy",
    ] {
        c.remove(key);
    }
    c.set("enable.idempotence", "true").set("acks", "all");
    c
}

/// A delivery report: the outbox sequence number and the broker's answer (the partition and
/// offset the record landed at).
#[derive(Debug)]
pub struct Delivery {
    pub seq: u64,
    pub result: Result<(i32, i64), DeliveryError>,
}

/// Why the broker (or the producer) refused a record.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeliveryError {
    pub message: String,
    /// The record can never be sent as it is: it exceeds the producer's `message.max.bytes` or
    /// the topic's `max.message.bytes`. Sending it again would fail again.
    pub too_large: bool,
}

impl std::fmt::Display for DeliveryError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.message)
    }
}

/// librdkafka's default `message.max.bytes`.
pub const DEFAULT_MESSAGE_MAX_BYTES: usize = 1_000_000;

/// The largest record the producer sends with these passthrough settings (`message.max.bytes`).
pub fn max_message_bytes(client: &BTreeMap<String, String>) -> Result<usize, String> {
    match client.get("message.max.bytes") {
        None => Ok(DEFAULT_MESSAGE_MAX_BYTES),
        Some(v) => v
            .trim()
            .parse()
            .map_err(|_| format!("message.max.bytes = {v:?} is not a number of bytes")),
    }
}

/// Whether `e` says the record is larger than the producer or the broker accepts.
pub fn refused_as_too_large(e: &KafkaError) -> bool {
    matches!(
        e.rdkafka_error_code(),
        Some(RDKafkaErrorCode::MessageSizeTooLarge | RDKafkaErrorCode::MessageBatchTooLarge)
    )
}

/// Forwards delivery reports to the processing thread; never blocks librdkafka's thread.
#[derive(Debug)]
pub struct DeliveryContext {
    pub reports: Sender<Delivery>,
}

impl ClientContext for DeliveryContext {}

impl ProducerContext for DeliveryContext {
    type DeliveryOpaque = usize;

    fn delivery(&self, result: &DeliveryResult<'_>, seq: usize) {
        let result = match result {
            Ok(m) => Ok((m.partition(), m.offset())),
            Err((e, msg)) => Err(DeliveryError {
                message: format!("{e} (topic {})", msg.topic()),
                too_large: refused_as_too_large(e),
            }),
        };
        // The receiver is gone only when the process stopped; the outbox still holds the record.
        let _ = self.reports.send(Delivery {
            seq: seq as u64,
            result,
        });
    }
}
