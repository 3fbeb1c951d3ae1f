//! Typed inputs. The codec parses wire bytes into these at the edge; nothing past the edge sees raw
//! strings for things that have a fixed vocabulary.

use crate::time::Timestamp;
use crate::Channel;
use serde::{Deserialize, Serialize};

/// What happened on the site.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum EventKind {
    PageView,
    CategoryView,
    ProductView,
    Search,
    FaqView,
    AddToCart,
    Purchase,
    SuggestionShown,
    SuggestionClicked,
    SuggestionDismissed,
    ChatOpened,
    EmailClick,
    /// The visitor clicked the chat icon: they ask for a person now.
    ChatRequested,
    /// The visitor filled in "call me" (the contact system holds the number; the event names the
    /// product of interest, if any).
    CallbackRequested,
    /// The contact system reports a callback answered: `decision_id` names the `callback` decision.
    CallbackDone,
    /// The producer said "other": a known catch-all, used for nothing but liveness.
    Other,
    /// A type this version of tact does not know (e.g. a newer producer). Counted, never an error.
    Unknown(String),
}

impl EventKind {
    /// Parses the wire symbol (`PAGE_VIEW`, ...). Unknown symbols become [`EventKind::Unknown`].
    pub fn from_symbol(symbol: &str) -> EventKind {
        match symbol {
            "PAGE_VIEW" => EventKind::PageView,
            "CATEGORY_VIEW" => EventKind::CategoryView,
            "PRODUCT_VIEW" => EventKind::ProductView,
            "SEARCH" => EventKind::Search,
            "FAQ_VIEW" => EventKind::FaqView,
            "ADD_TO_CART" => EventKind::AddToCart,
            "PURCHASE" => EventKind::Purchase,
            "SUGGESTION_SHOWN" => EventKind::SuggestionShown,
            "SUGGESTION_CLICKED" => EventKind::SuggestionClicked,
            "SUGGESTION_DISMISSED" => EventKind::SuggestionDismissed,
            "CHAT_OPENED" => EventKind::ChatOpened,
            "EMAIL_CLICK" => EventKind::EmailClick,
            "CHAT_REQUESTED" => EventKind::ChatRequested,
            "CALLBACK_REQUESTED" => EventKind::CallbackRequested,
            "CALLBACK_DONE" => EventKind::CallbackDone,
            "OTHER" => EventKind::Other,
            other => EventKind::Unknown(other.to_owned()),
        }
    }

    pub fn symbol(&self) -> &str {
        match self {
            EventKind::PageView => "PAGE_VIEW",
            EventKind::CategoryView => "CATEGORY_VIEW",
            EventKind::ProductView => "PRODUCT_VIEW",
            EventKind::Search => "SEARCH",
            EventKind::FaqView => "FAQ_VIEW",
            EventKind::AddToCart => "ADD_TO_CART",
            EventKind::Purchase => "PURCHASE",
            EventKind::SuggestionShown => "SUGGESTION_SHOWN",
            EventKind::SuggestionClicked => "SUGGESTION_CLICKED",
            EventKind::SuggestionDismissed => "SUGGESTION_DISMISSED",
            EventKind::ChatOpened => "CHAT_OPENED",
            EventKind::EmailClick => "EMAIL_CLICK",
            EventKind::ChatRequested => "CHAT_REQUESTED",
            EventKind::CallbackRequested => "CALLBACK_REQUESTED",
            EventKind::CallbackDone => "CALLBACK_DONE",
            EventKind::Other => "OTHER",
            EventKind::Unknown(symbol) => symbol,
        }
    }
}

/// One purchased or carted item.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Item {
    pub product_id: String,
    pub category: Option<String>,
    pub quantity: u32,
    pub unit_price_cents: i64,
}

/// A validated click event.
#[derive(Debug, Clone, PartialEq)]
pub struct ClickEvent {
    pub event_id: String,
    pub customer_id: String,
    pub session_id: String,
    pub event_time: Timestamp,
    pub kind: EventKind,
    pub page: Option<String>,
    pub category: Option<String>,
    pub product_id: Option<String>,
    pub search_query: Option<String>,
    pub search_results: Option<u32>,
    /// 0.0..=1.0 (validated at the edge).
    pub scroll_depth: Option<f32>,
    pub dwell_ms: Option<u64>,
    pub items: Vec<Item>,
    pub gift: bool,
    pub decision_id: Option<String>,
    pub suggestion_kind: Option<String>,
    /// Global Privacy Control: the browser asks not to be marketed to.
    pub gpc: bool,
}

impl ClickEvent {
    /// An event with the required fields; every optional field empty.
    pub fn new(
        event_id: &str,
        customer_id: &str,
        session_id: &str,
        event_time: Timestamp,
        kind: EventKind,
    ) -> ClickEvent {
        ClickEvent {
            event_id: event_id.to_owned(),
            customer_id: customer_id.to_owned(),
            session_id: session_id.to_owned(),
            event_time,
            kind,
            page: None,
            category: None,
            product_id: None,
            search_query: None,
            search_results: None,
            scroll_depth: None,
            dwell_ms: None,
            items: Vec::new(),
            gift: false,
            decision_id: None,
            suggestion_kind: None,
            gpc: false,
        }
    }
}

/// Why a customer's data may be used; consent is given per purpose (and optionally per channel).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Purpose {
    Personalization,
    Marketing,
    ProactiveChat,
    Profiling,
    Reminders,
}

impl Purpose {
    pub fn from_symbol(symbol: &str) -> Option<Purpose> {
        Some(match symbol {
            "PERSONALIZATION" => Purpose::Personalization,
            "MARKETING" => Purpose::Marketing,
            "PROACTIVE_CHAT" => Purpose::ProactiveChat,
            "PROFILING" => Purpose::Profiling,
            "REMINDERS" => Purpose::Reminders,
            _ => return None,
        })
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Purpose::Personalization => "personalization",
            Purpose::Marketing => "marketing",
            Purpose::ProactiveChat => "proactive_chat",
            Purpose::Profiling => "profiling",
            Purpose::Reminders => "reminders",
        }
    }
}

/// The customer's stated preferences, replacing earlier ones field by field.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct PreferencesUpdate {
    pub interests: Vec<String>,
    pub survey_answers: Vec<(String, String)>,
    pub excluded_categories: Vec<String>,
    pub private_categories: Vec<String>,
    pub suggestions_enabled: Option<bool>,
    pub disabled_kinds: Vec<String>,
    pub disabled_channels: Vec<Channel>,
    pub time_zone: Option<String>,
}

/// What a profile command asks for.
#[derive(Debug, Clone, PartialEq)]
pub enum CommandBody {
    SetConsent {
        purpose: Purpose,
        /// `None`: every channel.
        channel: Option<Channel>,
        granted: bool,
        source: String,
        expires_at: Option<Timestamp>,
    },
    SetPreferences(PreferencesUpdate),
    SetGiftMode {
        enabled: bool,
        recipient_id: Option<String>,
        until: Option<Timestamp>,
    },
    UpsertRecipient {
        recipient_id: String,
        name: String,
        birthday: Option<String>,
        interests: Vec<String>,
    },
    RemoveRecipient {
        recipient_id: String,
    },
    Follow {
        subject: String,
        follow: bool,
    },
    Erase {
        request_ref: Option<String>,
    },
}

/// Month and day of a birthday written `MM-DD` or `YYYY-MM-DD` (`None` when it is no date; 02-29
/// is a date).
pub fn parse_birthday(s: &str) -> Option<(u32, u32)> {
    let md = match s.len() {
        5 => s,
        10 if s.as_bytes()[4] == b'-' && s[..4].bytes().all(|b| b.is_ascii_digit()) => &s[5..],
        _ => return None,
    };
    let (m, d) = md.split_once('-')?;
    if m.len() != 2 || d.len() != 2 {
        return None;
    }
    let (m, d): (u32, u32) = (m.parse().ok()?, d.parse().ok()?);
    // 2000 is a leap year, so February 29 counts as a date.
    chrono::NaiveDate::from_ymd_opt(2000, m, d).map(|_| (m, d))
}

/// A new release the catalog announces, by a brand or artist customers can follow.
#[derive(Debug, Clone, PartialEq)]
pub struct Release {
    pub release_id: String,
    /// The brand or artist, as customers follow it.
    pub subject: String,
    pub title: String,
    pub product_ids: Vec<String>,
    pub category: Option<String>,
    pub released_at: Timestamp,
}

/// A validated, customer-issued profile command.
#[derive(Debug, Clone, PartialEq)]
pub struct ProfileCommand {
    pub command_id: String,
    pub customer_id: String,
    pub issued_at: Timestamp,
    pub body: CommandBody,
}
