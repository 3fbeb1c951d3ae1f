//! Byte formats of the lane: findings as Avro single-object records (the shipped
//! `schemas/insight.avsc`, compiled in); session buffers, window shares and the messages of the
//! internal partials topic as postcard (tact reads them back itself; they hold no person-level
//! field: shares are keyed by page, path or query only).

use crate::core::{Bucket, Finding, Partial, SessionBuf, WindowAgg};
use serde::{Deserialize, Serialize};
use serde_avro_fast::ser::SerializerConfig;
use serde_avro_fast::Schema;
use std::sync::OnceLock;

/// The shipped schema text.
pub const INSIGHT_SCHEMA: &str = include_str!("../../../schemas/insight.avsc");

/// The parsed shipped schema.
pub fn insight_schema() -> &'static Schema {
    static CELL: OnceLock<Schema> = OnceLock::new();
    CELL.get_or_init(|| {
        INSIGHT_SCHEMA
            .parse()
            .expect("shipped schema insight.avsc parses (checked by tests)")
    })
}

#[derive(Serialize)]
struct WireInsight<'a> {
    finding_id: &'a str,
    kind: &'static str,
    window_start: i64,
    window_end: i64,
    subject: &'a str,
    related: Option<&'a str>,
    sessions: i64,
    base_sessions: i64,
    share: f64,
    flagged: bool,
    median_clicks: Option<i32>,
    median_seconds: Option<i64>,
    distribution: &'a [Bucket],
    time_distribution: &'a [Bucket],
    via: &'a [Bucket],
    window_sessions: i64,
    window_sensitive_events: i64,
    min_sessions: i32,
    summary: &'a str,
    faq_answer: Option<&'a str>,
}

fn long(v: u64) -> i64 {
    i64::try_from(v).unwrap_or(i64::MAX)
}

/// Encodes a finding: `0xC3 0x01`, the CRC-64-AVRO fingerprint of the schema, the datum.
pub fn encode_finding(f: &Finding) -> Vec<u8> {
    let wire = WireInsight {
        finding_id: &f.finding_id,
        kind: f.kind.symbol(),
        window_start: f.window_start,
        window_end: f.window_end,
        subject: &f.subject,
        related: f.related.as_deref(),
        sessions: long(f.sessions),
        base_sessions: long(f.base_sessions),
        share: f.share,
        flagged: f.flagged,
        median_clicks: f
            .median_clicks
            .map(|m| i32::try_from(m).unwrap_or(i32::MAX)),
        median_seconds: f.median_seconds,
        distribution: &f.clicks,
        time_distribution: &f.seconds,
        via: &f.via,
        window_sessions: long(f.window_sessions),
        window_sensitive_events: long(f.window_sensitive_events),
        min_sessions: i32::try_from(f.min_sessions).unwrap_or(i32::MAX),
        summary: &f.summary,
        faq_answer: f.faq_answer.as_deref(),
    };
    let schema = insight_schema();
    let mut config = SerializerConfig::new(schema);
    let mut out = Vec::with_capacity(256);
    out.extend_from_slice(&[0xC3, 0x01]);
    out.extend_from_slice(schema.rabin_fingerprint());
    // The wire struct mirrors the shipped schema field for field (tested); a failure here is a
    // programming error, not bad input.
    serde_avro_fast::to_datum(&wire, out, &mut config)
        .expect("insight record matches its shipped schema")
}

/// A finding as read back from the insights topic (report, tests, tooling).
#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct DecodedInsight {
    pub finding_id: String,
    pub kind: String,
    pub window_start: i64,
    pub window_end: i64,
    pub subject: String,
    pub related: Option<String>,
    pub sessions: i64,
    pub base_sessions: i64,
    pub share: f64,
    pub flagged: bool,
    pub median_clicks: Option<i32>,
    pub median_seconds: Option<i64>,
    pub distribution: Vec<Bucket>,
    pub time_distribution: Vec<Bucket>,
    pub via: Vec<Bucket>,
    pub window_sessions: i64,
    pub window_sensitive_events: i64,
    pub min_sessions: i32,
    pub summary: String,
    pub faq_answer: Option<String>,
}

/// Decodes a single-object encoded finding, checking the fingerprint.
pub fn decode_finding(bytes: &[u8]) -> Result<DecodedInsight, String> {
    let schema = insight_schema();
    let datum = match bytes {
        [0xC3, 0x01, rest @ ..] if rest.len() >= 8 => {
            if &rest[..8] != schema.rabin_fingerprint() {
                return Err("fingerprint differs from the shipped insight schema".into());
            }
            &rest[8..]
        }
        _ => return Err("not Avro single-object encoded".into()),
    };
    serde_avro_fast::from_datum_slice(datum, schema).map_err(|e| e.to_string())
}

/// Why stored bytes could not be read back.
#[derive(Debug, thiserror::Error)]
#[error("stored insights state is unreadable: {0}")]
pub struct StateCodecError(String);

pub fn encode_session(s: &SessionBuf) -> Vec<u8> {
    postcard::to_stdvec(s).expect("session buffers serialise (no maps with non-string keys)")
}

pub fn decode_session(bytes: &[u8]) -> Result<SessionBuf, StateCodecError> {
    postcard::from_bytes(bytes).map_err(|e| StateCodecError(e.to_string()))
}

pub fn encode_window(w: &WindowAgg) -> Vec<u8> {
    postcard::to_stdvec(w).expect("window aggregates serialise")
}

pub fn decode_window(bytes: &[u8]) -> Result<WindowAgg, StateCodecError> {
    postcard::from_bytes(bytes).map_err(|e| StateCodecError(e.to_string()))
}

/// A message of the internal partials topic.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum PartialsMessage {
    /// One partition's share of a closed window.
    Share(Box<Partial>),
    /// `source` has closed its shares of every window ending at or before `through`.
    Progress { source: i32, through: i64 },
}

const PARTIALS_MAGIC: [u8; 2] = [b'P', 1];

pub fn encode_partials(m: &PartialsMessage) -> Vec<u8> {
    let mut out = PARTIALS_MAGIC.to_vec();
    out.extend(postcard::to_stdvec(m).expect("partials messages serialise"));
    out
}

pub fn decode_partials(bytes: &[u8]) -> Result<PartialsMessage, StateCodecError> {
    let body = bytes
        .strip_prefix(&PARTIALS_MAGIC[..])
        .ok_or_else(|| StateCodecError("not a partials message of this tact version".into()))?;
    postcard::from_bytes(body).map_err(|e| StateCodecError(e.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::core::FindingKind;

    fn sample() -> Finding {
        Finding {
            finding_id: "ins-1".into(),
            kind: FindingKind::Detour,
            window_start: 1_000,
            window_end: 2_000,
            subject: "/p/x".into(),
            related: Some("/p/y".into()),
            sessions: 25,
            base_sessions: 30,
            share: 25.0 / 30.0,
            flagged: true,
            median_clicks: Some(5),
            median_seconds: None,
            faq_answer: None,
            clicks: vec![Bucket {
                label: "5".into(),
                sessions: 25,
            }],
            seconds: vec![],
            via: vec![],
            window_sessions: 40,
            window_sensitive_events: 3,
            min_sessions: 20,
            summary: "s".into(),
        }
    }

    #[test]
    fn findings_round_trip_through_the_shipped_schema() {
        let f = sample();
        let bytes = encode_finding(&f);
        assert_eq!(&bytes[..2], &[0xC3, 0x01]);
        let d = decode_finding(&bytes).expect("decodes");
        assert_eq!(d.finding_id, "ins-1");
        assert_eq!(d.kind, "DETOUR");
        assert_eq!(d.related.as_deref(), Some("/p/y"));
        assert_eq!(d.sessions, 25);
        assert_eq!(d.median_clicks, Some(5));
        assert_eq!(d.distribution, f.clicks);
    }

    #[test]
    fn the_insight_schema_has_no_person_level_field() {
        let v: serde_json::Value = serde_json::from_str(INSIGHT_SCHEMA).expect("json");
        let names: Vec<&str> = v["fields"]
            .as_array()
            .expect("fields")
            .iter()
            .filter_map(|f| f["name"].as_str())
            .collect();
        assert!(names.len() >= 10);
        for name in names {
            for banned in ["customer", "session_id", "user", "email", "device", "ip_"] {
                assert!(
                    !name.contains(banned),
                    "insight field {name} is person-level"
                );
            }
        }
    }

    #[test]
    fn garbage_is_refused_not_panicked_on() {
        assert!(decode_finding(&[]).is_err());
        assert!(decode_finding(&[0xC3, 0x01, 1, 2]).is_err());
        assert!(decode_partials(&[]).is_err());
        assert!(decode_partials(b"P\x01\xff\xff").is_err());
        let m = PartialsMessage::Progress {
            source: 3,
            through: 1_000,
        };
        assert_eq!(decode_partials(&encode_partials(&m)).expect("decodes"), m);
    }
}
