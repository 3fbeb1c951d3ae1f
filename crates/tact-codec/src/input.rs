//! Input decoding: wire bytes -> validated [`ClickEvent`] / [`ProfileCommand`], or a classified
//! [`DecodeError`].

use crate::schema;
use serde::{Deserialize, Serialize};
use serde_avro_fast::de::read::SliceRead;
use serde_avro_fast::de::DeserializerState;
use serde_avro_fast::Schema;
use std::collections::BTreeMap;
use std::io::BufRead;
use tact_core::event::PreferencesUpdate;
use tact_core::{
    Channel, ClickEvent, CommandBody, EventKind, Item, ProfileCommand, Purpose, Release, Timestamp,
};

/// How the records of one input topic are encoded.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum InputFormat {
    /// 0x00, a 4-byte big-endian schema id, then the Avro datum.
    AvroConfluent,
    /// 0xC3 0x01, the 8-byte CRC-64-AVRO fingerprint of the shipped schema, then the datum.
    AvroSingleObject,
    /// The bare Avro datum.
    AvroDatum,
    /// One JSON object with the schema's field names.
    Json,
}

/// Why a record could not be used. Also the `error_class` label and the dead-letter field.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum ErrorClass {
    Empty,
    Truncated,
    Oversized,
    Malformed,
    WrongSchema,
    InvalidField,
}

impl ErrorClass {
    pub const ALL: [ErrorClass; 6] = [
        ErrorClass::Empty,
        ErrorClass::Truncated,
        ErrorClass::Oversized,
        ErrorClass::Malformed,
        ErrorClass::WrongSchema,
        ErrorClass::InvalidField,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            ErrorClass::Empty => "empty",
            ErrorClass::Truncated => "truncated",
            ErrorClass::Oversized => "oversized",
            ErrorClass::Malformed => "malformed",
            ErrorClass::WrongSchema => "wrong_schema",
            ErrorClass::InvalidField => "invalid_field",
        }
    }

    pub fn symbol(self) -> &'static str {
        match self {
            ErrorClass::Empty => "EMPTY",
            ErrorClass::Truncated => "TRUNCATED",
            ErrorClass::Oversized => "OVERSIZED",
            ErrorClass::Malformed => "MALFORMED",
            ErrorClass::WrongSchema => "WRONG_SCHEMA",
            ErrorClass::InvalidField => "INVALID_FIELD",
        }
    }
}

/// A record that cannot be used: poison. Dead-letter it and move on.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{}: {message}", class.as_str())]
pub struct DecodeError {
    pub class: ErrorClass,
    pub message: String,
}

impl DecodeError {
    fn new(class: ErrorClass, message: impl Into<String>) -> DecodeError {
        DecodeError {
            class,
            message: message.into(),
        }
    }

    fn invalid(field: &str, problem: &str) -> DecodeError {
        DecodeError::new(ErrorClass::InvalidField, format!("{field}: {problem}"))
    }
}

/// Strips the framing of `format`; returns the datum.
fn unframe<'a>(
    bytes: &'a [u8],
    format: InputFormat,
    schema: &Schema,
    max: usize,
) -> Result<&'a [u8], DecodeError> {
    if bytes.is_empty() {
        return Err(DecodeError::new(
            ErrorClass::Empty,
            "the record has no value",
        ));
    }
    if bytes.len() > max {
        return Err(DecodeError::new(
            ErrorClass::Oversized,
            format!(
                "{} bytes exceed input.max_message_bytes = {max}",
                bytes.len()
            ),
        ));
    }
    match format {
        InputFormat::AvroConfluent => match bytes {
            [0, _, _, _, _, datum @ ..] => Ok(datum),
            [0, ..] => Err(DecodeError::new(
                ErrorClass::Truncated,
                "shorter than the 5-byte Confluent header",
            )),
            [magic, ..] => Err(DecodeError::new(
                ErrorClass::WrongSchema,
                format!("expected Confluent magic byte 0x00, found 0x{magic:02x}"),
            )),
            [] => unreachable!("checked above"),
        },
        InputFormat::AvroSingleObject => match bytes {
            [0xC3, 0x01, rest @ ..] if rest.len() >= 8 => {
                if !crate::schema::readable_fingerprint(schema, &rest[..8]) {
                    return Err(DecodeError::new(
                        ErrorClass::WrongSchema,
                        "schema fingerprint differs from the shipped schema",
                    ));
                }
                Ok(&rest[8..])
            }
            [0xC3, 0x01, ..] => Err(DecodeError::new(
                ErrorClass::Truncated,
                "shorter than the 10-byte single-object header",
            )),
            _ => Err(DecodeError::new(
                ErrorClass::WrongSchema,
                "expected single-object magic bytes 0xC3 0x01",
            )),
        },
        InputFormat::AvroDatum | InputFormat::Json => Ok(bytes),
    }
}

fn avro<'a, T: Deserialize<'a>>(datum: &'a [u8], schema: &Schema) -> Result<T, DecodeError> {
    let mut state = DeserializerState::from_slice(datum, schema);
    let value = T::deserialize(state.deserializer()).map_err(|e| {
        let text = e.to_string();
        let class = if text.contains("end of slice") || text.contains("EOF") {
            ErrorClass::Truncated
        } else {
            ErrorClass::Malformed
        };
        DecodeError::new(class, format!("Avro: {text}"))
    })?;
    let mut rest: SliceRead<'_> = state.into_reader();
    let trailing = rest.fill_buf().map(<[u8]>::len).unwrap_or(0);
    if trailing > 0 {
        return Err(DecodeError::new(
            ErrorClass::Malformed,
            format!("{trailing} bytes left after the Avro datum"),
        ));
    }
    Ok(value)
}

fn json<'a, T: Deserialize<'a>>(bytes: &'a [u8]) -> Result<T, DecodeError> {
    serde_json::from_slice(bytes).map_err(|e| {
        let class = if e.is_eof() {
            ErrorClass::Truncated
        } else {
            ErrorClass::Malformed
        };
        DecodeError::new(class, format!("JSON: {e}"))
    })
}

fn decode<'a, T: Deserialize<'a>>(
    bytes: &'a [u8],
    format: InputFormat,
    schema: &Schema,
    max: usize,
) -> Result<T, DecodeError> {
    let datum = unframe(bytes, format, schema, max)?;
    match format {
        InputFormat::Json => json(datum),
        _ => avro(datum, schema),
    }
}

#[derive(Debug, Serialize, Deserialize)]
struct WireItem {
    product_id: String,
    #[serde(default)]
    category: Option<String>,
    #[serde(default = "one")]
    quantity: i32,
    #[serde(default)]
    unit_price_cents: i64,
}

fn one() -> i32 {
    1
}

#[derive(Debug, Serialize, Deserialize)]
struct WireClick {
    event_id: String,
    customer_id: String,
    session_id: String,
    event_time: i64,
    #[serde(rename = "type")]
    kind: String,
    #[serde(default)]
    page: Option<String>,
    #[serde(default)]
    category: Option<String>,
    #[serde(default)]
    product_id: Option<String>,
    #[serde(default)]
    search_query: Option<String>,
    #[serde(default)]
    search_results: Option<i32>,
    #[serde(default)]
    scroll_depth: Option<f32>,
    #[serde(default)]
    dwell_ms: Option<i64>,
    #[serde(default)]
    items: Vec<WireItem>,
    #[serde(default)]
    gift: bool,
    #[serde(default)]
    decision_id: Option<String>,
    #[serde(default)]
    suggestion_kind: Option<String>,
    #[serde(default)]
    gpc: bool,
}

/// Longest id (customer, session, event) accepted, in bytes.
const MAX_ID_BYTES: usize = 256;
/// Event times outside [2000-01-01, 2200-01-01) are producer bugs, not events.
const TIME_RANGE: std::ops::Range<i64> = 946_684_800_000..7_258_118_400_000;

fn id(field: &str, value: String) -> Result<String, DecodeError> {
    if value.trim().is_empty() {
        return Err(DecodeError::invalid(field, "must not be empty"));
    }
    if value.len() > MAX_ID_BYTES {
        return Err(DecodeError::invalid(field, "longer than 256 bytes"));
    }
    Ok(value)
}

fn time(field: &str, millis: i64) -> Result<Timestamp, DecodeError> {
    if TIME_RANGE.contains(&millis) {
        Ok(Timestamp(millis))
    } else {
        Err(DecodeError::invalid(
            field,
            &format!("{millis} is not epoch milliseconds between 2000 and 2200"),
        ))
    }
}

/// Decodes and validates one click event.
pub fn decode_click(
    bytes: &[u8],
    format: InputFormat,
    max_bytes: usize,
) -> Result<ClickEvent, DecodeError> {
    let w: WireClick = decode(bytes, format, schema::click_event(), max_bytes)?;
    if let Some(depth) = w.scroll_depth {
        if !(0.0..=1.0).contains(&depth) {
            return Err(DecodeError::invalid(
                "scroll_depth",
                "must be between 0.0 and 1.0",
            ));
        }
    }
    let search_results = w
        .search_results
        .map(|n| {
            u32::try_from(n)
                .map_err(|_| DecodeError::invalid("search_results", "must not be negative"))
        })
        .transpose()?;
    let dwell_ms = w
        .dwell_ms
        .map(|n| {
            u64::try_from(n).map_err(|_| DecodeError::invalid("dwell_ms", "must not be negative"))
        })
        .transpose()?;
    let items = w
        .items
        .into_iter()
        .map(|i| {
            Ok(Item {
                product_id: id("items.product_id", i.product_id)?,
                category: i.category,
                quantity: u32::try_from(i.quantity)
                    .map_err(|_| DecodeError::invalid("items.quantity", "must not be negative"))?,
                unit_price_cents: i.unit_price_cents,
            })
        })
        .collect::<Result<Vec<_>, DecodeError>>()?;
    Ok(ClickEvent {
        event_id: id("event_id", w.event_id)?,
        customer_id: id("customer_id", w.customer_id)?,
        session_id: id("session_id", w.session_id)?,
        event_time: time("event_time", w.event_time)?,
        kind: EventKind::from_symbol(&w.kind),
        page: w.page,
        category: w.category.filter(|c| !c.is_empty()),
        product_id: w.product_id.filter(|p| !p.is_empty()),
        search_query: w.search_query,
        search_results,
        scroll_depth: w.scroll_depth,
        dwell_ms,
        items,
        gift: w.gift,
        decision_id: w.decision_id,
        suggestion_kind: w.suggestion_kind,
        gpc: w.gpc,
    })
}

/// Encodes a click event (used by the generator and tests; producers normally bring their own).
pub fn encode_click(ev: &ClickEvent, format: InputFormat, schema_id: u32) -> Vec<u8> {
    let wire = WireClick {
        event_id: ev.event_id.clone(),
        customer_id: ev.customer_id.clone(),
        session_id: ev.session_id.clone(),
        event_time: ev.event_time.millis(),
        // Avro enums cannot carry a symbol the schema lacks; OTHER is the schema's catch-all.
        kind: match (&ev.kind, format) {
            (
                EventKind::Unknown(_),
                InputFormat::AvroConfluent | InputFormat::AvroSingleObject | InputFormat::AvroDatum,
            ) => "OTHER".to_owned(),
            (kind, _) => kind.symbol().to_owned(),
        },
        page: ev.page.clone(),
        category: ev.category.clone(),
        product_id: ev.product_id.clone(),
        search_query: ev.search_query.clone(),
        search_results: ev
            .search_results
            .map(|n| i32::try_from(n).unwrap_or(i32::MAX)),
        scroll_depth: ev.scroll_depth,
        dwell_ms: ev.dwell_ms.map(|n| i64::try_from(n).unwrap_or(i64::MAX)),
        items: ev
            .items
            .iter()
            .map(|i| WireItem {
                product_id: i.product_id.clone(),
                category: i.category.clone(),
                quantity: i32::try_from(i.quantity).unwrap_or(i32::MAX),
                unit_price_cents: i.unit_price_cents,
            })
            .collect(),
        gift: ev.gift,
        decision_id: ev.decision_id.clone(),
        suggestion_kind: ev.suggestion_kind.clone(),
        gpc: ev.gpc,
    };
    encode_input(&wire, format, schema::click_event(), schema_id)
}

fn encode_input<T: Serialize>(
    value: &T,
    format: InputFormat,
    schema: &Schema,
    schema_id: u32,
) -> Vec<u8> {
    let mut out = Vec::with_capacity(256);
    match format {
        InputFormat::Json => return serde_json::to_vec(value).unwrap_or_default(),
        InputFormat::AvroConfluent => {
            out.push(0);
            out.extend_from_slice(&schema_id.to_be_bytes());
        }
        InputFormat::AvroSingleObject => {
            out.extend_from_slice(&[0xC3, 0x01]);
            out.extend_from_slice(schema.rabin_fingerprint());
        }
        InputFormat::AvroDatum => {}
    }
    let mut config = serde_avro_fast::ser::SerializerConfig::new(schema);
    serde_avro_fast::to_datum(value, out, &mut config)
        .expect("wire types match the shipped schema (tested)")
}

#[derive(Debug, Serialize, Deserialize)]
struct WireCommand {
    command_id: String,
    customer_id: String,
    issued_at: i64,
    command: WireBody,
}

#[derive(Debug, Serialize, Deserialize)]
enum WireBody {
    #[serde(alias = "tact.v1.SetConsent")]
    SetConsent {
        purpose: String,
        #[serde(default)]
        channel: Option<String>,
        granted: bool,
        source: String,
        #[serde(default)]
        expires_at: Option<i64>,
    },
    #[serde(alias = "tact.v1.SetPreferences")]
    SetPreferences {
        #[serde(default)]
        interests: Vec<String>,
        #[serde(default)]
        survey_answers: BTreeMap<String, String>,
        #[serde(default)]
        excluded_categories: Vec<String>,
        #[serde(default)]
        private_categories: Vec<String>,
        #[serde(default)]
        suggestions_enabled: Option<bool>,
        #[serde(default)]
        disabled_kinds: Vec<String>,
        #[serde(default)]
        disabled_channels: Vec<String>,
        #[serde(default)]
        time_zone: Option<String>,
    },
    #[serde(alias = "tact.v1.SetGiftMode")]
    SetGiftMode {
        enabled: bool,
        #[serde(default)]
        recipient_id: Option<String>,
        #[serde(default)]
        until: Option<i64>,
    },
    #[serde(alias = "tact.v1.UpsertRecipient")]
    UpsertRecipient {
        recipient_id: String,
        name: String,
        #[serde(default)]
        birthday: Option<String>,
        #[serde(default)]
        interests: Vec<String>,
    },
    #[serde(alias = "tact.v1.RemoveRecipient")]
    RemoveRecipient { recipient_id: String },
    #[serde(alias = "tact.v1.Follow")]
    Follow { subject: String, follow: bool },
    #[serde(alias = "tact.v1.Erase")]
    Erase {
        #[serde(default)]
        request_ref: Option<String>,
    },
}

fn channel(field: &str, symbol: &str) -> Result<Channel, DecodeError> {
    Channel::from_symbol(symbol)
        .ok_or_else(|| DecodeError::invalid(field, &format!("unknown channel {symbol:?}")))
}

/// Decodes and validates one profile command. A command type this version does not know is
/// poison (dead-lettered, so it can be replayed after an upgrade), never silently dropped.
pub fn decode_command(
    bytes: &[u8],
    format: InputFormat,
    max_bytes: usize,
) -> Result<ProfileCommand, DecodeError> {
    let w: WireCommand = decode(bytes, format, schema::profile_command(), max_bytes)?;
    let body = match w.command {
        WireBody::SetConsent {
            purpose,
            channel: ch,
            granted,
            source,
            expires_at,
        } => CommandBody::SetConsent {
            purpose: Purpose::from_symbol(&purpose).ok_or_else(|| {
                DecodeError::invalid("command.purpose", &format!("unknown purpose {purpose:?}"))
            })?,
            channel: ch.map(|c| channel("command.channel", &c)).transpose()?,
            granted,
            source,
            expires_at: expires_at
                .map(|t| time("command.expires_at", t))
                .transpose()?,
        },
        WireBody::SetPreferences {
            interests,
            survey_answers,
            excluded_categories,
            private_categories,
            suggestions_enabled,
            disabled_kinds,
            disabled_channels,
            time_zone,
        } => {
            for kind in &disabled_kinds {
                if tact_core::DecisionKind::from_name(kind).is_none() {
                    return Err(DecodeError::invalid(
                        "command.disabled_kinds",
                        &format!("unknown decision kind {kind:?}"),
                    ));
                }
            }
            if let Some(zone) = time_zone
                .as_deref()
                .filter(|z| !tact_core::policy::valid_time_zone(z))
            {
                return Err(DecodeError::invalid(
                    "command.time_zone",
                    &format!("{zone:?} is not an IANA time zone such as Europe/Berlin"),
                ));
            }
            CommandBody::SetPreferences(PreferencesUpdate {
                interests,
                survey_answers: survey_answers.into_iter().collect(),
                excluded_categories,
                private_categories,
                suggestions_enabled,
                disabled_kinds,
                disabled_channels: disabled_channels
                    .iter()
                    .map(|c| channel("command.disabled_channels", c))
                    .collect::<Result<_, _>>()?,
                time_zone,
            })
        }
        WireBody::SetGiftMode {
            enabled,
            recipient_id,
            until,
        } => CommandBody::SetGiftMode {
            enabled,
            recipient_id,
            until: until.map(|t| time("command.until", t)).transpose()?,
        },
        WireBody::UpsertRecipient {
            recipient_id,
            name,
            birthday,
            interests,
        } => {
            if let Some(b) = birthday
                .as_deref()
                .filter(|b| tact_core::event::parse_birthday(b).is_none())
            {
                return Err(DecodeError::invalid(
                    "command.birthday",
                    &format!("{b:?} is not a date: use MM-DD or YYYY-MM-DD"),
                ));
            }
            CommandBody::UpsertRecipient {
                recipient_id: id("command.recipient_id", recipient_id)?,
                name,
                birthday,
                interests,
            }
        }
        WireBody::RemoveRecipient { recipient_id } => CommandBody::RemoveRecipient { recipient_id },
        WireBody::Follow { subject, follow } => CommandBody::Follow {
            subject: id("command.subject", subject)?,
            follow,
        },
        WireBody::Erase { request_ref } => CommandBody::Erase { request_ref },
    };
    Ok(ProfileCommand {
        command_id: id("command_id", w.command_id)?,
        customer_id: id("customer_id", w.customer_id)?,
        issued_at: time("issued_at", w.issued_at)?,
        body,
    })
}

#[derive(Debug, Serialize, Deserialize)]
struct WireRelease {
    release_id: String,
    subject: String,
    title: String,
    #[serde(default)]
    product_ids: Vec<String>,
    #[serde(default)]
    category: Option<String>,
    released_at: i64,
}

/// Decodes and validates one catalog release announcement.
pub fn decode_release(
    bytes: &[u8],
    format: InputFormat,
    max_bytes: usize,
) -> Result<Release, DecodeError> {
    let w: WireRelease = decode(bytes, format, schema::catalog_release(), max_bytes)?;
    Ok(Release {
        release_id: id("release_id", w.release_id)?,
        subject: id("subject", w.subject)?,
        title: w.title,
        product_ids: w
            .product_ids
            .into_iter()
            .map(|p| id("product_ids", p))
            .collect::<Result<_, _>>()?,
        category: w.category.filter(|c| !c.is_empty()),
        released_at: time("released_at", w.released_at)?,
    })
}

/// Encodes a release announcement (demo, tests).
pub fn encode_release(r: &Release, format: InputFormat, schema_id: u32) -> Vec<u8> {
    let wire = WireRelease {
        release_id: r.release_id.clone(),
        subject: r.subject.clone(),
        title: r.title.clone(),
        product_ids: r.product_ids.clone(),
        category: r.category.clone(),
        released_at: r.released_at.millis(),
    };
    encode_input(&wire, format, schema::catalog_release(), schema_id)
}

/// Encodes a profile command (generator, tests).
pub fn encode_command(cmd: &ProfileCommand, format: InputFormat, schema_id: u32) -> Vec<u8> {
    let command = match &cmd.body {
        CommandBody::SetConsent {
            purpose,
            channel,
            granted,
            source,
            expires_at,
        } => WireBody::SetConsent {
            purpose: purpose.as_str().to_ascii_uppercase(),
            channel: channel.map(|c| c.symbol().to_owned()),
            granted: *granted,
            source: source.clone(),
            expires_at: expires_at.map(Timestamp::millis),
        },
        CommandBody::SetPreferences(p) => WireBody::SetPreferences {
            interests: p.interests.clone(),
            survey_answers: p.survey_answers.iter().cloned().collect(),
            excluded_categories: p.excluded_categories.clone(),
            private_categories: p.private_categories.clone(),
            suggestions_enabled: p.suggestions_enabled,
            disabled_kinds: p.disabled_kinds.clone(),
            disabled_channels: p
                .disabled_channels
                .iter()
                .map(|c| c.symbol().to_owned())
                .collect(),
            time_zone: p.time_zone.clone(),
        },
        CommandBody::SetGiftMode {
            enabled,
            recipient_id,
            until,
        } => WireBody::SetGiftMode {
            enabled: *enabled,
            recipient_id: recipient_id.clone(),
            until: until.map(Timestamp::millis),
        },
        CommandBody::UpsertRecipient {
            recipient_id,
            name,
            birthday,
            interests,
        } => WireBody::UpsertRecipient {
            recipient_id: recipient_id.clone(),
            name: name.clone(),
            birthday: birthday.clone(),
            interests: interests.clone(),
        },
        CommandBody::RemoveRecipient { recipient_id } => WireBody::RemoveRecipient {
            recipient_id: recipient_id.clone(),
        },
        CommandBody::Follow { subject, follow } => WireBody::Follow {
            subject: subject.clone(),
            follow: *follow,
        },
        CommandBody::Erase { request_ref } => WireBody::Erase {
            request_ref: request_ref.clone(),
        },
    };
    let wire = WireCommand {
        command_id: cmd.command_id.clone(),
        customer_id: cmd.customer_id.clone(),
        issued_at: cmd.issued_at.millis(),
        command,
    };
    encode_input(&wire, format, schema::profile_command(), schema_id)
}

#[cfg(test)]
mod tests;
