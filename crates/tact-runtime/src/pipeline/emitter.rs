//! Turns what the core decided into outgoing records: encodes them, counts them (metrics and the
//! run summary) and files them under the input partition they belong to.

use crate::config::Topics;
use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;
use tact_codec::{
    DeadLetter, Encoder, ErrorClass, OutputFormat, Receipt, Stage, DEAD_LETTER_RESERVE,
    MAX_DEAD_LETTER_KEY, MIN_DEAD_LETTER_LIMIT,
};
use tact_core::{CallbackNews, Outcome};
use tact_edge::{JobError, OutRecord};
use tact_store::Partition;
use tact_telemetry::{GateReason, KindChannel, Metrics, OutcomeLabel, TopicClass};

/// Counts for the end-of-run summary.
#[derive(Debug, Default, Clone)]
pub struct RunSummary {
    pub events: u64,
    pub commands: u64,
    pub skipped: u64,
    /// Click events that repeated an event id applied recently.
    pub duplicates: u64,
    pub dead_lettered: u64,
    pub decisions: BTreeMap<&'static str, u64>,
    pub suppressions: BTreeMap<(&'static str, &'static str), u64>,
    pub elapsed: Duration,
    pub unacknowledged_at_exit: usize,
}

/// Where a dead letter came from.
#[derive(Debug, Clone, Copy)]
pub struct Origin<'a> {
    pub topic: &'a str,
    pub label: &'static str,
    pub partition: i32,
    pub offset: i64,
    pub key: Option<&'a [u8]>,
    pub value: Option<&'a [u8]>,
}

pub struct Emitter {
    encoder: Encoder,
    topics: Topics,
    metrics: Arc<Metrics>,
    /// The records of the job call under way, each under its input partition.
    out: Vec<(Partition, OutRecord)>,
    /// How many bytes of an original value a dead letter keeps whole (more: a prefix).
    dead_letter_value_max: usize,
    pub summary: RunSummary,
}

impl std::fmt::Debug for Emitter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Emitter").finish_non_exhaustive()
    }
}

fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
}

impl Emitter {
    pub fn new(format: OutputFormat, topics: Topics, metrics: Arc<Metrics>) -> Emitter {
        Emitter {
            encoder: Encoder::new(format),
            topics,
            metrics,
            out: Vec::new(),
            dead_letter_value_max: tact_kafka::DEFAULT_MESSAGE_MAX_BYTES - DEAD_LETTER_RESERVE,
            summary: RunSummary::default(),
        }
    }

    /// Sizes dead letters for a topic that takes records up to `limit` bytes (the producer's
    /// `message.max.bytes`, or the topic's `max.message.bytes` if lower), so that a dead letter
    /// always fits: an original larger than the room left keeps a prefix, its size and digest.
    pub fn fit_dead_letters(&mut self, limit: usize) -> Result<(), JobError> {
        if limit < MIN_DEAD_LETTER_LIMIT {
            return Err(JobError(format!(
                "the dead-letter topic {} takes records up to {limit} bytes (message.max.bytes in kafka.client, or the topic's max.message.bytes); a dead letter needs at least {MIN_DEAD_LETTER_LIMIT}",
                self.topics.dead_letter
            )));
        }
        self.dead_letter_value_max = limit - DEAD_LETTER_RESERVE;
        tracing::info!(
            topic = %self.topics.dead_letter,
            record_limit = limit,
            keeps_whole = self.dead_letter_value_max,
            "dead letters fit the record limit: originals up to keeps_whole bytes go whole, larger ones as a prefix with their size and SHA-256"
        );
        Ok(())
    }

    /// The records of the call under way; the emitter starts the next call empty.
    pub fn take(&mut self) -> Vec<(Partition, OutRecord)> {
        std::mem::take(&mut self.out)
    }

    /// Drops the records of this call about `key` on partition `p`, except those to
    /// `keep_topic`; returns how many went.
    pub fn withdraw(&mut self, p: Partition, key: &[u8], keep_topic: &str) -> usize {
        let before = self.out.len();
        self.out
            .retain(|(q, r)| *q != p || r.key != key || r.topic == keep_topic);
        before - self.out.len()
    }

    pub fn metrics(&self) -> &Metrics {
        &self.metrics
    }

    pub fn topics(&self) -> &Topics {
        &self.topics
    }

    /// Every decision and suppressed candidate of `outcome`, under partition `p`.
    pub fn outcome(&mut self, p: Partition, outcome: Outcome) {
        for news in &outcome.callbacks {
            let m = &self.metrics;
            match *news {
                CallbackNews::Requested => {
                    m.callbacks_requested.inc();
                }
                CallbackNews::Done { latency_ms, late } => {
                    let outcome = if late { "late" } else { "on_time" };
                    m.callbacks_done
                        .get_or_create(&OutcomeLabel { outcome })
                        .inc();
                    m.callback_answer.observe(latency_ms as f64 / 1000.0);
                }
                CallbackNews::Breached => {
                    m.callback_breaches.inc();
                }
                CallbackNews::UnknownDone => {
                    m.callbacks_done
                        .get_or_create(&OutcomeLabel { outcome: "unknown" })
                        .inc();
                }
            }
        }
        for d in outcome.decisions {
            self.metrics
                .decisions
                .get_or_create(&KindChannel {
                    kind: d.kind.as_str(),
                    channel: d.channel.as_str(),
                })
                .inc();
            *self.summary.decisions.entry(d.kind.as_str()).or_default() += 1;
            let value = self.encoder.decision(&d);
            self.out.push((
                p,
                OutRecord::keyed(&self.topics.decisions, d.customer_id.into_bytes(), value),
            ));
        }
        for s in outcome.suppressed {
            self.metrics
                .suppressions
                .get_or_create(&GateReason {
                    gate: s.gate.as_str(),
                    reason: s.reason_code,
                })
                .inc();
            *self
                .summary
                .suppressions
                .entry((s.gate.as_str(), s.reason_code))
                .or_default() += 1;
            let value = self.encoder.suppressed(&s);
            self.out.push((
                p,
                OutRecord::keyed(&self.topics.suppressed, s.customer_id.into_bytes(), value),
            ));
        }
    }

    /// An input record tact could not use, with why; the offset still advances.
    pub fn dead_letter(
        &mut self,
        p: Partition,
        origin: Origin<'_>,
        class: ErrorClass,
        message: &str,
    ) {
        let record = DeadLetter {
            source_topic: origin.topic,
            source_partition: origin.partition,
            source_offset: origin.offset,
            original_key: origin.key,
            original_value: origin.value,
            stage: if class == ErrorClass::InvalidField {
                Stage::Validate
            } else {
                Stage::Decode
            },
            error_class: class,
            message,
            dead_lettered_at_ms: now_ms(),
        };
        tracing::warn!(
            topic = %origin.topic, partition = origin.partition, offset = origin.offset,
            class = class.as_str(), %message, "dead-lettering an input record"
        );
        self.metrics
            .dead_lettered
            .get_or_create(&TopicClass {
                topic: origin.label,
                error_class: class.as_str(),
            })
            .inc();
        self.summary.dead_lettered += 1;
        let value = self
            .encoder
            .dead_letter(&record, self.dead_letter_value_max);
        let key = origin.key.unwrap_or_default();
        let key = key[..key.len().min(MAX_DEAD_LETTER_KEY)].to_vec();
        let mut out = OutRecord::keyed(&self.topics.dead_letter, key, value);
        if origin.value.is_some_and(|v| !v.is_empty()) {
            // If the broker takes less than it said, the dead letter goes without the original.
            out = out.or_smaller(self.encoder.dead_letter(&record, 0));
        }
        self.out.push((p, out));
    }

    /// The proof of an erasure, keyed by the command id (it names the request, not the person).
    pub fn receipt(&mut self, p: Partition, receipt: &Receipt<'_>) {
        let value = self.encoder.erasure_receipt(receipt);
        self.out.push((
            p,
            OutRecord::keyed(
                &self.topics.erasure_receipts,
                receipt.command_id.as_bytes().to_vec(),
                value,
            ),
        ));
    }
}
