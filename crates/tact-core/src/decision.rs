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
}

impl DecisionKind {
    pub const ALL: [DecisionKind; 7] = [
        DecisionKind::WelcomeBack,
        DecisionKind::Recommendation,
        DecisionKind::ProactiveHelp,
        DecisionKind::CompatibleAccessory,
        DecisionKind::OutboundNudge,
        DecisionKind::NewRelease,
        DecisionKind::GiftReminder,
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
        }
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
}

impl Channel {
    pub const ALL: [Channel; 4] = [
        Channel::OnSite,
        Channel::Chat,
        Channel::Email,
        Channel::Push,
    ];

    pub fn symbol(self) -> &'static str {
        match self {
            Channel::OnSite => "ON_SITE",
            Channel::Chat => "CHAT",
            Channel::Email => "EMAIL",
            Channel::Push => "PUSH",
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Channel::OnSite => "on_site",
            Channel::Chat => "chat",
            Channel::Email => "email",
            Channel::Push => "push",
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
}
