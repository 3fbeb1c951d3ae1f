//! Output encoding: decisions, suppressed candidates and dead letters as Avro that a downstream
//! service decodes with stock tools and the shipped `.avsc`.

use crate::input::ErrorClass;
use crate::schema;
use serde::{Deserialize, Serialize};
use serde_avro_fast::ser::SerializerConfig;
use serde_avro_fast::Schema;
use tact_core::state::ErasureReport;
use tact_core::{Decision, HelpContext, Reason, SuggestedAnswer, Suppressed};

/// Framing of every record tact produces.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OutputFormat {
    /// Avro single-object encoding: 0xC3 0x01 + CRC-64-AVRO fingerprint + datum. Self-describing
    /// against the shipped schemas; needs no registry.
    SingleObject,
    /// Confluent framing with the schema ids registered for each topic.
    Confluent {
        decision_id: u32,
        suppressed_id: u32,
        dead_letter_id: u32,
    },
}

/// Where in the pipeline a record was given up on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stage {
    Decode,
    Validate,
    Apply,
}

impl Stage {
    fn symbol(self) -> &'static str {
        match self {
            Stage::Decode => "DECODE",
            Stage::Validate => "VALIDATE",
            Stage::Apply => "APPLY",
        }
    }
}

/// Bytes of a dead letter's record (key, fields, framing, Kafka's record overhead) that are not
/// the original value: what a dead-letter topic's record limit must leave room for.
pub const DEAD_LETTER_RESERVE: usize = 8 * 1024;
/// The smallest record limit under which dead letters still carry anything of the original.
pub const MIN_DEAD_LETTER_LIMIT: usize = 2 * DEAD_LETTER_RESERVE;
/// The longest original key a dead letter keeps (and is keyed by); longer keys keep a prefix.
pub const MAX_DEAD_LETTER_KEY: usize = 4 * 1024;
/// The longest error message a dead letter carries.
const MAX_DEAD_LETTER_MESSAGE: usize = 1024;

/// At most `max` bytes of `s`, cut at a character boundary.
fn clip(s: &str, max: usize) -> &str {
    if s.len() <= max {
        return s;
    }
    let mut end = max;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    &s[..end]
}

/// The first `max` bytes of `b`, and whether that is less than all of it.
fn prefix(b: &[u8], max: usize) -> (&[u8], bool) {
    (&b[..b.len().min(max)], b.len() > max)
}

/// Hex SHA-256.
pub fn sha256_hex(bytes: &[u8]) -> String {
    use sha2::Digest;
    sha2::Sha256::digest(bytes)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// An input record tact could not use, with why: the whole original; [`Encoder::dead_letter`]
/// keeps what fits.
#[derive(Debug, Clone, PartialEq)]
pub struct DeadLetter<'a> {
    pub source_topic: &'a str,
    pub source_partition: i32,
    pub source_offset: i64,
    pub original_key: Option<&'a [u8]>,
    pub original_value: Option<&'a [u8]>,
    pub stage: Stage,
    pub error_class: ErrorClass,
    pub message: &'a str,
    pub dead_lettered_at_ms: i64,
}

#[derive(Serialize)]
struct WireDecision<'a> {
    decision_id: &'a str,
    customer_id: &'a str,
    session_id: Option<&'a str>,
    kind: &'static str,
    channel: &'static str,
    personalized: bool,
    items: &'a [String],
    reasons: &'a [Reason],
    cause_event_id: &'a str,
    created_at: i64,
    expires_at: i64,
    policy_version: &'a str,
    context: Option<&'a HelpContext>,
    suggested_answers: &'a [SuggestedAnswer],
    due_at: Option<i64>,
}

#[derive(Serialize)]
struct WireSuppressed<'a> {
    candidate_id: &'a str,
    customer_id: &'a str,
    session_id: Option<&'a str>,
    kind: &'static str,
    channel: &'static str,
    gate: &'static str,
    reason_code: &'a str,
    detail: &'a str,
    cause_event_id: &'a str,
    created_at: i64,
    policy_version: &'a str,
}

#[derive(Serialize)]
struct WireDeadLetter<'a> {
    source_topic: &'a str,
    source_partition: i32,
    source_offset: i64,
    original_key: Option<&'a serde_bytes::Bytes>,
    original_value: Option<&'a serde_bytes::Bytes>,
    stage: &'static str,
    error_class: &'static str,
    message: &'a str,
    dead_lettered_at: i64,
    original_key_bytes: i64,
    original_value_bytes: i64,
    original_value_sha256: Option<String>,
    truncated: bool,
}

#[derive(Serialize)]
struct WireReceipt<'a> {
    receipt_id: String,
    command_id: &'a str,
    request_ref: Option<&'a str>,
    requested_at: i64,
    erased_at: i64,
    removed: WireRemoved,
    purged: bool,
    changelog_topic: Option<&'a str>,
    changelog_partition: Option<i32>,
}

#[derive(Serialize)]
struct WireRemoved {
    interests: i32,
    purchases: i32,
    cart_items: i32,
    consents: i32,
    recipients: i32,
    follows: i32,
    session: bool,
    had_state: bool,
    pending_outputs: i32,
}

/// What an erasure receipt says.
#[derive(Debug, Clone, PartialEq)]
pub struct Receipt<'a> {
    pub command_id: &'a str,
    pub request_ref: Option<&'a str>,
    pub requested_at_ms: i64,
    pub erased_at_ms: i64,
    pub removed: &'a ErasureReport,
    pub purged: bool,
    /// Where the customer's changelog tombstones went (topic, partition).
    pub changelog: Option<(&'a str, i32)>,
}

/// Encodes output records. Holds the serializer configs so their buffers are reused.
pub struct Encoder {
    format: OutputFormat,
    decision: SerializerConfig<'static>,
    suppressed: SerializerConfig<'static>,
    dead_letter: SerializerConfig<'static>,
    receipt: SerializerConfig<'static>,
}

impl std::fmt::Debug for Encoder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Encoder")
            .field("format", &self.format)
            .finish()
    }
}

fn framed<T: Serialize>(
    value: &T,
    config: &mut SerializerConfig<'static>,
    confluent_id: Option<u32>,
) -> Vec<u8> {
    let mut out = Vec::with_capacity(192);
    match confluent_id {
        Some(id) => {
            out.push(0);
            out.extend_from_slice(&id.to_be_bytes());
        }
        None => {
            out.extend_from_slice(&[0xC3, 0x01]);
            out.extend_from_slice(config.schema().rabin_fingerprint());
        }
    }
    // The wire structs mirror the shipped schemas field for field (tested); a failure here is a
    // programming error, not bad input.
    serde_avro_fast::to_datum(value, out, config).expect("output record matches its shipped schema")
}

impl Encoder {
    pub fn new(format: OutputFormat) -> Encoder {
        Encoder {
            format,
            decision: SerializerConfig::new(schema::decision()),
            suppressed: SerializerConfig::new(schema::suppressed()),
            dead_letter: SerializerConfig::new(schema::dead_letter()),
            receipt: SerializerConfig::new(schema::erasure_receipt()),
        }
    }

    fn id(&self, pick: fn(u32, u32, u32) -> u32) -> Option<u32> {
        match self.format {
            OutputFormat::SingleObject => None,
            OutputFormat::Confluent {
                decision_id,
                suppressed_id,
                dead_letter_id,
            } => Some(pick(decision_id, suppressed_id, dead_letter_id)),
        }
    }

    pub fn decision(&mut self, d: &Decision) -> Vec<u8> {
        let wire = WireDecision {
            decision_id: &d.decision_id,
            customer_id: &d.customer_id,
            session_id: d.session_id.as_deref(),
            kind: d.kind.symbol(),
            channel: d.channel.symbol(),
            personalized: d.personalized,
            items: &d.items,
            reasons: &d.reasons,
            cause_event_id: &d.cause_event_id,
            created_at: d.created_at.millis(),
            expires_at: d.expires_at.millis(),
            policy_version: &d.policy_version,
            context: d.context.as_ref(),
            suggested_answers: &d.suggested_answers,
            due_at: d.due_at.map(|t| t.millis()),
        };
        let id = self.id(|d, _, _| d);
        framed(&wire, &mut self.decision, id)
    }

    pub fn suppressed(&mut self, s: &Suppressed) -> Vec<u8> {
        let wire = WireSuppressed {
            candidate_id: &s.candidate_id,
            customer_id: &s.customer_id,
            session_id: s.session_id.as_deref(),
            kind: s.kind.symbol(),
            channel: s.channel.symbol(),
            gate: s.gate.symbol(),
            reason_code: s.reason_code,
            detail: &s.detail,
            cause_event_id: &s.cause_event_id,
            created_at: s.created_at.millis(),
            policy_version: &s.policy_version,
        };
        let id = self.id(|_, s, _| s);
        framed(&wire, &mut self.suppressed, id)
    }

    /// A dead letter keeping at most `max_value` bytes of the original value (and at most
    /// [`MAX_DEAD_LETTER_KEY`] of the key); sizes and the value's digest are always there.
    pub fn dead_letter(&mut self, d: &DeadLetter<'_>, max_value: usize) -> Vec<u8> {
        let key = d.original_key.map(|k| prefix(k, MAX_DEAD_LETTER_KEY));
        let value = d.original_value.map(|v| prefix(v, max_value));
        let size = |b: Option<&[u8]>| b.map_or(0, |b| i64::try_from(b.len()).unwrap_or(i64::MAX));
        let wire = WireDeadLetter {
            source_topic: d.source_topic,
            source_partition: d.source_partition,
            source_offset: d.source_offset,
            original_key: key.map(|(k, _)| serde_bytes::Bytes::new(k)),
            original_value: value.map(|(v, _)| serde_bytes::Bytes::new(v)),
            stage: d.stage.symbol(),
            error_class: d.error_class.symbol(),
            message: clip(d.message, MAX_DEAD_LETTER_MESSAGE),
            dead_lettered_at: d.dead_lettered_at_ms,
            original_key_bytes: size(d.original_key),
            original_value_bytes: size(d.original_value),
            original_value_sha256: d.original_value.map(sha256_hex),
            truncated: key.is_some_and(|(_, cut)| cut) || value.is_some_and(|(_, cut)| cut),
        };
        let id = self.id(|_, _, l| l);
        framed(&wire, &mut self.dead_letter, id)
    }
}

impl Encoder {
    /// An erasure receipt, always in single-object encoding (it is self-describing for auditors).
    pub fn erasure_receipt(&mut self, r: &Receipt<'_>) -> Vec<u8> {
        let n = |v: u32| i32::try_from(v).unwrap_or(i32::MAX);
        let wire = WireReceipt {
            receipt_id: tact_core::id::stable_id("e", &[r.command_id]),
            command_id: r.command_id,
            request_ref: r.request_ref,
            requested_at: r.requested_at_ms,
            erased_at: r.erased_at_ms,
            removed: WireRemoved {
                interests: n(r.removed.interests),
                purchases: n(r.removed.purchases),
                cart_items: n(r.removed.cart_items),
                consents: n(r.removed.consents),
                recipients: n(r.removed.recipients),
                follows: n(r.removed.follows),
                session: r.removed.session,
                had_state: r.removed.had_state,
                pending_outputs: n(r.removed.pending_outputs),
            },
            purged: r.purged,
            changelog_topic: r.changelog.map(|(t, _)| t),
            changelog_partition: r.changelog.map(|(_, p)| p),
        };
        framed(&wire, &mut self.receipt, None)
    }
}

/// A decision as read back from the decisions topic (demo viewer, tests, tooling).
#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct DecodedDecision {
    pub decision_id: String,
    pub customer_id: String,
    pub session_id: Option<String>,
    pub kind: String,
    pub channel: String,
    pub personalized: bool,
    pub items: Vec<String>,
    pub reasons: Vec<Reason>,
    pub cause_event_id: String,
    pub created_at: i64,
    pub expires_at: i64,
    pub policy_version: String,
    pub context: Option<HelpContext>,
    pub suggested_answers: Vec<SuggestedAnswer>,
    pub due_at: Option<i64>,
}

/// A suppressed candidate as read back from the audit topic.
#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct DecodedSuppressed {
    pub candidate_id: String,
    pub customer_id: String,
    pub session_id: Option<String>,
    pub kind: String,
    pub channel: String,
    pub gate: String,
    pub reason_code: String,
    pub detail: String,
    pub cause_event_id: String,
    pub created_at: i64,
    pub policy_version: String,
}

fn read_output<T: serde::de::DeserializeOwned>(bytes: &[u8], schema: &Schema) -> Result<T, String> {
    let datum = match bytes {
        [0xC3, 0x01, rest @ ..] if rest.len() >= 8 => {
            if &rest[..8] != schema.rabin_fingerprint() {
                return Err("fingerprint differs from the shipped schema".into());
            }
            &rest[8..]
        }
        [0, _, _, _, _, datum @ ..] => datum,
        _ => return Err("neither single-object nor Confluent framing".into()),
    };
    serde_avro_fast::from_datum_slice(datum, schema).map_err(|e| e.to_string())
}

pub fn decode_decision(bytes: &[u8]) -> Result<DecodedDecision, String> {
    read_output(bytes, schema::decision())
}

pub fn decode_suppressed(bytes: &[u8]) -> Result<DecodedSuppressed, String> {
    read_output(bytes, schema::suppressed())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, Deserialize)]
    struct Read {
        source_offset: i64,
        #[serde(with = "serde_bytes")]
        original_key: Option<Vec<u8>>,
        #[serde(with = "serde_bytes")]
        original_value: Option<Vec<u8>>,
        message: String,
        original_key_bytes: i64,
        original_value_bytes: i64,
        original_value_sha256: Option<String>,
        truncated: bool,
    }

    fn letter<'a>(key: &'a [u8], value: &'a [u8], message: &'a str) -> DeadLetter<'a> {
        DeadLetter {
            source_topic: "clickstream",
            source_partition: 3,
            source_offset: 41,
            original_key: Some(key),
            original_value: Some(value),
            stage: Stage::Decode,
            error_class: ErrorClass::Malformed,
            message,
            dead_lettered_at_ms: 1,
        }
    }

    #[test]
    fn a_dead_letter_keeps_an_original_that_fits_whole_and_a_larger_one_as_a_prefix_with_size_and_digest(
    ) {
        let mut enc = Encoder::new(OutputFormat::SingleObject);
        let small = b"not avro".to_vec();
        let bytes = enc.dead_letter(&letter(b"c-1", &small, "bad"), 1000);
        let d: Read = read_output(&bytes, schema::dead_letter()).expect("decodes");
        assert_eq!(d.original_value.as_deref(), Some(&small[..]));
        assert_eq!(d.original_key.as_deref(), Some(&b"c-1"[..]));
        assert!(!d.truncated);
        assert_eq!((d.original_key_bytes, d.original_value_bytes), (3, 8));
        assert_eq!(d.original_value_sha256, Some(sha256_hex(&small)));

        // 1.2 MB of value, a 10 KB key and a 5 KB message: the record stays under the room given.
        let big: Vec<u8> = (0..1_200_000u32).map(|i| (i % 251) as u8).collect();
        let key = vec![b'k'; 10_000];
        let message = "é".repeat(2_500);
        let bytes = enc.dead_letter(&letter(&key, &big, &message), 50_000);
        assert!(
            bytes.len() < 50_000 + DEAD_LETTER_RESERVE,
            "{} bytes",
            bytes.len()
        );
        let d: Read = read_output(&bytes, schema::dead_letter()).expect("decodes");
        assert!(d.truncated);
        assert_eq!(d.source_offset, 41);
        assert_eq!(d.original_value.as_deref(), Some(&big[..50_000]));
        assert_eq!(d.original_key.as_deref(), Some(&key[..MAX_DEAD_LETTER_KEY]));
        assert_eq!(
            (d.original_key_bytes, d.original_value_bytes),
            (10_000, 1_200_000)
        );
        assert_eq!(d.original_value_sha256, Some(sha256_hex(&big)));
        assert!(d.message.len() <= 1024 && d.message.chars().all(|c| c == 'é'));

        // The smallest form: nothing of the value, still its size and digest.
        let bytes = enc.dead_letter(&letter(b"c-1", &big, "bad"), 0);
        let d: Read = read_output(&bytes, schema::dead_letter()).expect("decodes");
        assert_eq!(d.original_value.as_deref(), Some(&[][..]));
        assert!(d.truncated && d.original_value_bytes == 1_200_000);
        assert!(bytes.len() < 400, "{} bytes", bytes.len());
    }
}
