//! Input records decoded once, at the edge of the job: every later step (interleaving, the fold)
//! works on typed values. A record that does not decode becomes a dead letter, with its bytes.

use crate::config::Settings;
use tact_codec::{decode_click, decode_command, ErrorClass};
use tact_core::{ClickEvent, EventKind, ProfileCommand};
use tact_edge::{Input, Record};
use tact_telemetry::{Metrics, TopicClass, TopicLabel};

/// What a record asks for.
#[derive(Debug, Clone)]
pub enum Work {
    Click(ClickEvent),
    Command(ProfileCommand),
    Dead(ErrorClass, String),
}

/// A decoded record with where it came from.
#[derive(Debug, Clone)]
pub struct Arrived {
    pub input: Input,
    pub partition: i32,
    pub offset: i64,
    pub key: Option<Vec<u8>>,
    /// The original value, kept only for a dead letter.
    pub raw: Option<Vec<u8>>,
    pub work: Work,
}

/// The clickstream is the driving input; profile commands are its first co-partitioned topic.
pub const CLICKS: Input = Input::Driving;
pub const COMMANDS: Input = Input::Co(0);

pub fn label(input: Input) -> &'static str {
    match input {
        Input::Driving => "clickstream",
        Input::Co(_) => "profile_commands",
        Input::Global => "catalog",
    }
}

impl Arrived {
    /// The event time that orders the two inputs (an undecodable record goes first, to the
    /// dead-letter topic).
    pub fn time(&self) -> i64 {
        match &self.work {
            Work::Click(e) => e.event_time.millis(),
            Work::Command(c) => c.issued_at.millis(),
            Work::Dead(..) => i64::MIN,
        }
    }

    pub fn customer_id(&self) -> Option<&str> {
        match &self.work {
            Work::Click(e) => Some(&e.customer_id),
            Work::Command(c) => Some(&c.customer_id),
            Work::Dead(..) => None,
        }
    }

    /// Decodes `record` in its input's format; failures are counted.
    pub fn decode(record: Record, settings: &Settings, metrics: &Metrics) -> Arrived {
        let bytes = record.value.as_deref().unwrap_or_default();
        let max = settings.max_message_bytes;
        let decoded = match record.input {
            CLICKS => decode_click(bytes, settings.clickstream_format, max).map(Work::Click),
            _ => decode_command(bytes, settings.profile_commands_format, max).map(Work::Command),
        };
        let topic = label(record.input);
        let (work, raw) = match decoded {
            Ok(w) => (w, None),
            Err(e) => {
                metrics
                    .decode_errors
                    .get_or_create(&TopicClass {
                        topic,
                        error_class: e.class.as_str(),
                    })
                    .inc();
                (Work::Dead(e.class, e.message), record.value)
            }
        };
        if let Work::Click(ev) = &work {
            if matches!(ev.kind, EventKind::Unknown(_)) {
                metrics
                    .unknown_events
                    .get_or_create(&TopicLabel { topic })
                    .inc();
            }
        }
        Arrived {
            input: record.input,
            partition: record.partition,
            offset: record.offset,
            key: record.key,
            raw,
            work,
        }
    }
}
