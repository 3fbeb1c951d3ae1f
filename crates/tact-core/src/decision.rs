//! Outputs: decisions that passed every gate, and candidates a gate stopped.

use crate::time::Timestamp;
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum DecisionKind {
    WelcomeBack,
    Recommendation,
    ProactiveHelp,
    CompatibleAccessory,
    OutboundNudge,
    NewRelease,
    GiftReminder,
    /// The visitor asked for a chat: hand them to an agent now, with the session's context.
    ChatHandoff,
    /// The visitor asked to be called back: route it with a due time.
    Callback,
    /// A callback's due time passed before the contact system reported it done.
    Escalation,
}

impl DecisionKind {
    pub const ALL: [DecisionKind; 10] = [
        DecisionKind::WelcomeBack,
        DecisionKind::Recommendation,
        DecisionKind::ProactiveHelp,
        DecisionKind::CompatibleAccessory,
        DecisionKind::OutboundNudge,
        DecisionKind::NewRelease,
        DecisionKind::GiftReminder,
        DecisionKind::ChatHandoff,
        DecisionKind::Callback,
        DecisionKind::Escalation,
    ];

    /// The Avro enum symbol.
    pub fn symbol(self) -> &'static str {
        match self {
            DecisionKind::WelcomeBack => "WELCOME_BACK",
            DecisionKind::Recommendation => "RECOMMENDATION",
            DecisionKind::ProactiveHelp => "PROACTIVE_HELP",
            DecisionKind::CompatibleAccessory => "COMPATIBLE_ACCESSORY",
            DecisionKind::OutboundNudge => "OUTBOUND_NUDGE",
            DecisionKind::NewRelease => "NEW_RELEASE",
            DecisionKind::GiftReminder => "GIFT_REMINDER",
            DecisionKind::ChatHandoff => "CHAT_HANDOFF",
            DecisionKind::Callback => "CALLBACK",
            DecisionKind::Escalation => "ESCALATION",
        }
    }

    /// The snake_case name used in policy files, metrics and logs.
    pub fn as_str(self) -> &'static str {
        match self {
            DecisionKind::WelcomeBack => "welcome_back",
            DecisionKind::Recommendation => "recommendation",
            DecisionKind::ProactiveHelp => "proactive_help",
            DecisionKind::CompatibleAccessory => "compatible_accessory",
            DecisionKind::OutboundNudge => "outbound_nudge",
            DecisionKind::NewRelease => "new_release",
            DecisionKind::GiftReminder => "gift_reminder",
            DecisionKind::ChatHandoff => "chat_handoff",
            DecisionKind::Callback => "callback",
            DecisionKind::Escalation => "escalation",
        }
    }

    /// Help the visitor asked for (a chat, a call) and what follows from it: never held back by
    /// the context, fatigue, quiet-hours or holdout gates, nor by the customer's suggestion
    /// switches (it is not a suggestion).
    pub fn is_asked_for(self) -> bool {
        matches!(
            self,
            DecisionKind::ChatHandoff | DecisionKind::Callback | DecisionKind::Escalation
        )
    }

    /// Proactive interruptions of a visit: what the per-session interruption budget holds back
    /// after dismissals.
    pub fn is_interruption(self) -> bool {
        matches!(
            self,
            DecisionKind::Recommendation
                | DecisionKind::CompatibleAccessory
                | DecisionKind::ProactiveHelp
        )
    }

    pub fn from_name(name: &str) -> Option<DecisionKind> {
        DecisionKind::ALL
            .into_iter()
            .find(|k| k.as_str() == name || k.symbol() == name)
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Channel {
    OnSite,
    Chat,
    Email,
    Push,
    /// The contact centre's routing queue (callbacks, escalations): reaches staff, not the
    /// customer directly.
    Routing,
}

impl Channel {
    pub const ALL: [Channel; 5] = [
        Channel::OnSite,
        Channel::Chat,
        Channel::Email,
        Channel::Push,
        Channel::Routing,
    ];

    pub fn symbol(self) -> &'static str {
        match self {
            Channel::OnSite => "ON_SITE",
            Channel::Chat => "CHAT",
            Channel::Email => "EMAIL",
            Channel::Push => "PUSH",
            Channel::Routing => "ROUTING",
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Channel::OnSite => "on_site",
            Channel::Chat => "chat",
            Channel::Email => "email",
            Channel::Push => "push",
            Channel::Routing => "routing",
        }
    }

    pub fn from_symbol(symbol: &str) -> Option<Channel> {
        Channel::ALL
            .into_iter()
            .find(|c| c.symbol() == symbol || c.as_str() == symbol)
    }

    /// Outbound channels reach the customer when they are not on the site.
    pub fn is_outbound(self) -> bool {
        matches!(self, Channel::Email | Channel::Push)
    }
}

/// The gates every candidate passes, in order.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Gate {
    Consent,
    Sensitivity,
    CustomerOverride,
    Context,
    Fatigue,
    QuietHours,
    Holdout,
}

impl Gate {
    pub const ALL: [Gate; 7] = [
        Gate::Consent,
        Gate::Sensitivity,
        Gate::CustomerOverride,
        Gate::Context,
        Gate::Fatigue,
        Gate::QuietHours,
        Gate::Holdout,
    ];

    pub fn symbol(self) -> &'static str {
        match self {
            Gate::Consent => "CONSENT",
            Gate::Sensitivity => "SENSITIVITY",
            Gate::CustomerOverride => "CUSTOMER_OVERRIDE",
            Gate::Context => "CONTEXT",
            Gate::Fatigue => "FATIGUE",
            Gate::QuietHours => "QUIET_HOURS",
            Gate::Holdout => "HOLDOUT",
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Gate::Consent => "consent",
            Gate::Sensitivity => "sensitivity",
            Gate::CustomerOverride => "customer_override",
            Gate::Context => "context",
            Gate::Fatigue => "fatigue",
            Gate::QuietHours => "quiet_hours",
            Gate::Holdout => "holdout",
        }
    }
}

/// One piece of evidence or one rule behind a decision, worded for the customer.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Reason {
    /// Stable, machine-readable (e.g. `returning_visitor`).
    pub code: String,
    /// Human-readable, suitable for "why am I seeing this".
    pub detail: String,
}

impl Reason {
    pub fn new(code: &str, detail: impl Into<String>) -> Reason {
        Reason {
            code: code.to_owned(),
            detail: detail.into(),
        }
    }
}

/// A search the visitor tried this session, with what it found.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SearchTried {
    pub query: String,
    pub results: u32,
}

/// What an agent (or the contact system) is told about the session behind a hand-off. Only this
/// session's data, never a `never_remember` category, `session_only` ones only for help inside
/// the session, and bounded in size.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct HelpContext {
    /// The struggle detector that fired (`faq_struggle`, ...); `None` when the visitor asked.
    pub detector: Option<String>,
    /// The detector's evidence, worded for the agent.
    pub evidence: Vec<String>,
    /// Pages viewed this session, oldest first (help and FAQ pages included).
    pub pages: Vec<String>,
    /// Knowledge-base entries whose FAQ page the visitor read.
    pub faq_entries: Vec<String>,
    pub searches: Vec<SearchTried>,
    /// Products looked at back and forth.
    pub products_compared: Vec<String>,
    pub cart: Vec<String>,
}

/// A prepared answer from the knowledge base that likely fits the visitor's question.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SuggestedAnswer {
    pub faq_id: String,
    pub question: String,
    pub answer: String,
    pub page: Option<String>,
    /// Relevance (BM25) against the session's failed searches and FAQ pages read; higher fits
    /// better; comparable only within one decision.
    pub score: f32,
}

/// A decision that passed every gate.
#[derive(Debug, Clone, PartialEq)]
pub struct Decision {
    pub decision_id: String,
    pub customer_id: String,
    pub session_id: Option<String>,
    pub kind: DecisionKind,
    pub channel: Channel,
    /// False when the decision carries nothing learned about the customer.
    pub personalized: bool,
    pub items: Vec<String>,
    pub reasons: Vec<Reason>,
    pub cause_event_id: String,
    pub created_at: Timestamp,
    pub expires_at: Timestamp,
    pub policy_version: String,
    /// For help hand-offs: what the agent needs to know about the session.
    pub context: Option<HelpContext>,
    /// For help: knowledge-base answers that likely fit, best first.
    pub suggested_answers: Vec<SuggestedAnswer>,
    /// For a callback: when it must be answered by (business hours counted).
    pub due_at: Option<Timestamp>,
}

/// A candidate a gate stopped, for the audit trail.
#[derive(Debug, Clone, PartialEq)]
pub struct Suppressed {
    pub candidate_id: String,
    pub customer_id: String,
    pub session_id: Option<String>,
    pub kind: DecisionKind,
    pub channel: Channel,
    pub gate: Gate,
    /// Stable, machine-readable; also the `reason` metric label, so it comes from a fixed set.
    pub reason_code: &'static str,
    pub detail: String,
    pub cause_event_id: String,
    pub created_at: Timestamp,
    pub policy_version: String,
}

/// What one input produced.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Outcome {
    pub decisions: Vec<Decision>,
    pub suppressed: Vec<Suppressed>,
    /// The event repeated one applied recently (same event id): it changed nothing.
    pub duplicate: bool,
    /// What happened to callbacks (for the latency and breach metrics).
    pub callbacks: Vec<CallbackNews>,
}

/// A change in a callback's life, reported for metrics.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CallbackNews {
    Requested,
    /// The contact system reported it done `latency_ms` after the request; `late` when after
    /// its due time.
    Done {
        latency_ms: i64,
        late: bool,
    },
    /// Its due time passed first: an escalation went out.
    Breached,
    /// A `CALLBACK_DONE` named no open callback (already done, erased, or another id).
    UnknownDone,
}
