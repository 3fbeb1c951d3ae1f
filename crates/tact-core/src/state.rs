//! Per-customer state: everything tact remembers about one customer, bounded in size.
//!
//! Long-term memory (interests) is kept only with consent; in-session evidence lives in
//! [`Session`] and is dropped when the session ends.

use crate::decision::{Channel, DecisionKind};
use crate::event::Purpose;
use crate::time::Timestamp;
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct CustomerState {
    pub first_seen: Option<Timestamp>,
    /// Latest event time seen (never moves backwards on late events).
    pub last_event_at: Option<Timestamp>,
    /// Sessions seen, including the current one.
    pub visits: u32,
    pub session: Option<Session>,
    pub consents: Vec<ConsentRecord>,
    /// Inferred, long-term interests; only kept while personalization is consented to.
    pub interests: Vec<CategoryInterest>,
    pub preferences: Preferences,
    pub gift_mode: Option<GiftMode>,
    pub recipients: Vec<Recipient>,
    pub follows: Vec<String>,
}

/// The current session: in-session evidence, dropped when the session ends.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Session {
    pub id: String,
    pub started_at: Timestamp,
    pub last_event_at: Timestamp,
    pub events: u32,
    pub welcomed: bool,
    /// Categories already recommended (or a recommendation suppressed) this session.
    pub recommended: Vec<String>,
    pub category_views: Vec<CategoryInterest>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CategoryInterest {
    pub category: String,
    pub views: u32,
    pub last_viewed_at: Timestamp,
    /// Most recent first.
    pub recent_products: Vec<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ConsentRecord {
    pub purpose: Purpose,
    /// `None`: applies to every channel; a channel-specific record beats it.
    pub channel: Option<Channel>,
    pub granted: bool,
    pub source: String,
    pub at: Timestamp,
    pub expires_at: Option<Timestamp>,
}

#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct Preferences {
    pub stated_interests: Vec<String>,
    pub survey_answers: Vec<(String, String)>,
    pub excluded_categories: Vec<String>,
    pub private_categories: Vec<String>,
    /// `None` until the customer says; suggestions are on by default.
    pub suggestions_enabled: Option<bool>,
    pub disabled_kinds: Vec<DecisionKind>,
    pub disabled_channels: Vec<Channel>,
    pub time_zone: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct GiftMode {
    pub recipient_id: Option<String>,
    /// `None`: for the session in which it was switched on.
    pub until: Option<Timestamp>,
    pub session_id: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Recipient {
    pub recipient_id: String,
    pub name: String,
    pub birthday: Option<String>,
    pub interests: Vec<String>,
}

impl CustomerState {
    /// True when nothing at all is remembered (an erased or never-seen customer).
    pub fn is_empty(&self) -> bool {
        *self == CustomerState::default()
    }
}
