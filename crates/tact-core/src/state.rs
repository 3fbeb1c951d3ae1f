//! Per-customer state: everything tact remembers about one customer, bounded in size.
//!
//! Long-term memory (interests, purchases) is kept only with personalization consent and only for
//! categories of the `normal` tier; in-session evidence lives in [`Session`] and is dropped when
//! the session ends. Nothing from a `never_remember` category is ever stored.

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
    /// Own purchases (never gifts), for compatible accessories; only with consent.
    pub purchases: Vec<Purchase>,
    /// Items in the cart and when the last was added (explicit intent, for an abandoned-cart nudge).
    pub cart: Option<Cart>,
    /// Decisions emitted recently, for frequency caps (pruned beyond the longest window).
    pub history: Vec<Emitted>,
    /// Per-kind back-off after dismissals.
    pub backoff: Vec<Backoff>,
    pub preferences: Preferences,
    pub gift_mode: Option<GiftMode>,
    pub recipients: Vec<Recipient>,
    pub follows: Vec<String>,
    /// Click events applied recently, oldest first: a producer that retries sends an event id
    /// again, and it must count once. Bounded by `policy.duplicate_window_minutes` and
    /// `policy.max_remembered_events`. The last field, so that states written before it
    /// existed still read (see tact-codec).
    #[serde(default)]
    pub recent_events: Vec<SeenEvent>,
    /// What this session did that a helper needs: pages, searches, dismissals. Dropped with
    /// the session. Added in state version 4, as are the fields after it.
    #[serde(default)]
    pub trail: Option<Trail>,
    /// Callbacks asked for and not yet reported done (bounded).
    #[serde(default)]
    pub callbacks: Vec<OpenCallback>,
    /// Recent product views that fed interests, so a gift bought afterwards can take them back
    /// (bounded). Views from earlier sessions are kept only with personalization consent.
    #[serde(default)]
    pub product_views: Vec<ProductView>,
    /// Products bought as gifts: never offered to the buyer as their own interest (bounded; only
    /// with personalization consent).
    #[serde(default)]
    pub gifted: Vec<String>,
}

/// The current session's trail, for the agent's context and the interruption budget.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct Trail {
    pub session_id: String,
    /// Oldest first, bounded.
    pub pages: Vec<TrailPage>,
    /// Oldest first, bounded.
    pub searches: Vec<TrailSearch>,
    /// Suggestions dismissed this session (any kind).
    pub dismissals: u32,
    pub last_dismissed_at: Option<Timestamp>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TrailPage {
    pub page: String,
    pub faq: bool,
    /// Touched a `session_only` category: shown only to help inside the session.
    pub session_only: bool,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TrailSearch {
    pub query: String,
    pub results: u32,
    pub session_only: bool,
}

/// A "call me" not yet answered.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct OpenCallback {
    /// The `callback` decision's id, which `CALLBACK_DONE` names.
    pub decision_id: String,
    pub cause_event_id: String,
    pub product_id: Option<String>,
    pub requested_at: Timestamp,
    pub due_at: Timestamp,
    /// An escalation went out (exactly once).
    pub escalated: bool,
}

/// One product view that fed the buyer's interests.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ProductView {
    pub product_id: String,
    pub category: String,
    pub event_id: String,
    pub session_id: String,
    pub at: Timestamp,
    /// Fed long-term interests (personalization consent): may outlive the session.
    pub learned: bool,
}

/// One applied click event: a digest of its id and its event time.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct SeenEvent {
    pub digest: [u8; 8],
    pub at: Timestamp,
}

/// The current session: in-session evidence, dropped when the session ends.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct Session {
    pub id: String,
    pub started_at: Timestamp,
    pub last_event_at: Timestamp,
    pub events: u32,
    pub welcomed: bool,
    /// (kind, subject) pairs already proposed this session, emitted or suppressed.
    pub proposed: Vec<(DecisionKind, String)>,
    /// Category views this session (`normal` and `session_only` tiers).
    pub category_views: Vec<CategoryInterest>,
    /// Struggle signals.
    pub faq_deep_reads: u32,
    pub search_failures: u32,
    pub last_failed_search_at: Option<Timestamp>,
    pub pingpong: Option<PingPong>,
    pub checkout_returns: u32,
    pub purchased: bool,
}

/// Alternating long looks at products of one category without adding either to the cart.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PingPong {
    pub category: String,
    pub last_product: String,
    pub products: Vec<String>,
    /// Looks going back to a product already viewed (A -> B -> A).
    pub returns: u32,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CategoryInterest {
    pub category: String,
    pub views: u32,
    pub last_viewed_at: Timestamp,
    /// Most recent first.
    pub recent_products: Vec<String>,
    /// The events this was inferred from, most recent first (bounded): the "why" that
    /// `tact inspect` shows.
    pub evidence: Vec<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Purchase {
    pub product_id: String,
    pub category: Option<String>,
    pub at: Timestamp,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Cart {
    /// Most recent last.
    pub items: Vec<CartItem>,
    pub last_added_at: Timestamp,
    /// The event that added the last item (the cause of a nudge).
    pub last_added_event: String,
    pub nudged: bool,
    /// A nudge that fell in quiet hours is retried after this.
    pub defer_until: Option<Timestamp>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CartItem {
    pub product_id: String,
    /// From the event or the catalog; lets a category made private take its items along.
    pub category: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Emitted {
    pub kind: DecisionKind,
    pub channel: Channel,
    pub at: Timestamp,
    pub session_id: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Backoff {
    pub kind: DecisionKind,
    pub dismissals: u32,
    pub until: Timestamp,
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

/// Someone the customer shops for: stated by the customer, plus what was bought and looked at
/// for them (never part of the customer's own interests).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Recipient {
    pub recipient_id: String,
    pub name: String,
    /// `MM-DD` or `YYYY-MM-DD` (validated at the edge).
    pub birthday: Option<String>,
    /// Stated categories.
    pub interests: Vec<String>,
    /// When the customer added the recipient or changed the birthday: the first birthday
    /// reminded of is the next one after this.
    pub added_at: Timestamp,
    /// Gifts bought for them, most recent last (bounded); never suggested to them again.
    pub gifts: Vec<Gift>,
    /// Categories looked at while shopping for them.
    pub viewed: Vec<CategoryInterest>,
    /// The year whose birthday reminder has been handled (sent, suppressed or too late).
    pub reminded_year: Option<i32>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Gift {
    pub product_id: String,
    pub category: Option<String>,
    pub at: Timestamp,
    /// The purchase event.
    pub event_id: String,
}

/// What an erasure removed, counted before the state is dropped (for the erasure receipt).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ErasureReport {
    pub interests: u32,
    pub purchases: u32,
    pub cart_items: u32,
    pub consents: u32,
    pub recipients: u32,
    pub follows: u32,
    pub session: bool,
    pub had_state: bool,
    /// Filled in by the edge: records about the customer dropped from the outbox unsent.
    pub pending_outputs: u32,
}

impl CustomerState {
    /// Counts what an erasure of this state removes.
    pub fn erasure_report(&self) -> ErasureReport {
        let n = |len: usize| u32::try_from(len).unwrap_or(u32::MAX);
        ErasureReport {
            interests: n(self.interests.len()),
            purchases: n(self.purchases.len()),
            cart_items: n(self.cart.as_ref().map_or(0, |c| c.items.len())),
            consents: n(self.consents.len()),
            recipients: n(self.recipients.len()),
            follows: n(self.follows.len()),
            session: self.session.is_some(),
            had_state: !self.is_empty(),
            pending_outputs: 0,
        }
    }

    /// True when nothing at all is remembered (an erased or never-seen customer).
    pub fn is_empty(&self) -> bool {
        *self == CustomerState::default()
    }

    /// Every category name held anywhere in the state (for privacy checks and `inspect`).
    pub fn categories(&self) -> Vec<&str> {
        let mut out: Vec<&str> = Vec::new();
        out.extend(self.interests.iter().map(|c| c.category.as_str()));
        out.extend(self.purchases.iter().filter_map(|p| p.category.as_deref()));
        if let Some(cart) = &self.cart {
            out.extend(cart.items.iter().filter_map(|i| i.category.as_deref()));
        }
        for r in &self.recipients {
            out.extend(r.gifts.iter().filter_map(|g| g.category.as_deref()));
            out.extend(r.viewed.iter().map(|c| c.category.as_str()));
        }
        if let Some(s) = &self.session {
            out.extend(s.category_views.iter().map(|c| c.category.as_str()));
            out.extend(s.proposed.iter().map(|(_, subject)| subject.as_str()));
            if let Some(p) = &s.pingpong {
                out.push(&p.category);
            }
        }
        out.extend(self.product_views.iter().map(|v| v.category.as_str()));
        out
    }
}
