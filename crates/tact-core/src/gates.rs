//! The gate chain. Every candidate passes the gates in this order; the first that stops it names
//! itself and its reason, which goes to the audit topic and a metric.
//!
//! 1 consent, 2 sensitivity, 3 customer overrides, 4 context, 5 fatigue, 6 quiet hours, 7 holdout.

use crate::decision::{
    Channel, Decision, DecisionKind, Gate, HelpContext, Outcome, Reason, SuggestedAnswer,
    Suppressed,
};
use crate::event::Purpose;
use crate::id::stable_id;
use crate::policy::{parse_hhmm, ConsentRegime, Policy, Tier, Window};
use crate::state::{ConsentRecord, CustomerState, Emitted};
use crate::time::Timestamp;
use chrono::{TimeZone, Timelike};

/// Consent records created by a Global Privacy Control signal carry this source.
pub const GPC_SOURCE: &str = "global_privacy_control";
/// Proposals remembered per session (for "once per session and subject").
const MAX_PROPOSED: usize = 64;

/// What a candidate rests on; decides what the context gate allows.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Evidence {
    /// The customer told us (preferences, survey).
    Stated,
    /// An explicit high-intent act: items added to a cart, a request to be told.
    Explicit,
    /// Behaviour in the current session (struggle signals).
    InSession,
    /// Browsing alone. Never enough for outbound contact.
    Browsing,
}

/// A decision the core proposes, before the gates.
#[derive(Debug, Clone, PartialEq)]
pub struct Candidate {
    pub kind: DecisionKind,
    pub channel: Channel,
    /// Distinguishes candidates of one kind from one cause (a category, a detector).
    pub subject: String,
    pub personalized: bool,
    pub items: Vec<String>,
    pub reasons: Vec<Reason>,
    pub evidence: Evidence,
    /// Categories the candidate draws on (for the sensitivity gate).
    pub categories: Vec<String>,
    /// Drawn only from the current session.
    pub in_session: bool,
    /// For help: what the agent is told.
    pub context: Option<HelpContext>,
    /// For help: knowledge-base answers, best first.
    pub answers: Vec<SuggestedAnswer>,
    /// For a callback: when it must be answered by; the decision stays valid at least until then.
    pub due_at: Option<Timestamp>,
}

/// Why a gate stopped a candidate.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Stop {
    pub gate: Gate,
    pub reason: &'static str,
    pub detail: String,
}

fn stop(gate: Gate, reason: &'static str, detail: impl Into<String>) -> Result<(), Stop> {
    Err(Stop {
        gate,
        reason,
        detail: detail.into(),
    })
}

/// The consent answer for one purpose on one channel.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ConsentAnswer {
    Granted,
    Denied {
        reason_code: &'static str,
        detail: String,
    },
}

/// Looks up consent for `purpose` on `channel`: a live channel-specific record beats a
/// purpose-wide one; with no live record the regime decides. Marketing always needs an explicit
/// grant, and any objection to marketing (including a Global Privacy Control signal) is absolute.
pub fn consent(
    state: &CustomerState,
    purpose: Purpose,
    channel: Channel,
    regime: ConsentRegime,
    now: Timestamp,
) -> ConsentAnswer {
    let live = |r: &&ConsentRecord| r.purpose == purpose && r.expires_at.is_none_or(|t| t > now);
    let applies = |r: &&ConsentRecord| r.channel.is_none() || r.channel == Some(channel);
    let denied = |r: &ConsentRecord| ConsentAnswer::Denied {
        reason_code: if r.source == GPC_SOURCE {
            "gpc_opt_out"
        } else {
            "consent_denied"
        },
        detail: format!("the customer declined {} ({})", purpose.as_str(), r.source),
    };
    if purpose == Purpose::Marketing {
        if let Some(objection) = state
            .consents
            .iter()
            .filter(live)
            .filter(applies)
            .find(|r| !r.granted)
        {
            return denied(objection);
        }
    }
    let record = state
        .consents
        .iter()
        .filter(live)
        .find(|r| r.channel == Some(channel))
        .or_else(|| {
            state
                .consents
                .iter()
                .filter(live)
                .find(|r| r.channel.is_none())
        });
    match record {
        Some(r) if r.granted => ConsentAnswer::Granted,
        Some(r) => denied(r),
        None if regime == ConsentRegime::OptOut && purpose != Purpose::Marketing => {
            ConsentAnswer::Granted
        }
        None => ConsentAnswer::Denied {
            reason_code: "consent_missing",
            detail: format!("no consent to {} on record", purpose.as_str()),
        },
    }
}

/// The purpose a candidate needs consent for; `None` for a plain (non-personalized) greeting.
pub fn purpose_of(c: &Candidate) -> Option<Purpose> {
    match c.kind {
        DecisionKind::WelcomeBack if !c.personalized => None,
        DecisionKind::WelcomeBack
        | DecisionKind::Recommendation
        | DecisionKind::CompatibleAccessory => Some(Purpose::Personalization),
        DecisionKind::ProactiveHelp => Some(Purpose::ProactiveChat),
        DecisionKind::OutboundNudge | DecisionKind::NewRelease => Some(Purpose::Marketing),
        DecisionKind::GiftReminder => Some(Purpose::Reminders),
        // The visitor asked; what the context may hold is decided when it is built.
        DecisionKind::ChatHandoff | DecisionKind::Callback | DecisionKind::Escalation => None,
    }
}

/// True for customers in the holdout group: a stable draw from the customer id and the salt.
pub fn in_holdout(customer_id: &str, policy: &Policy) -> bool {
    if policy.holdout.share <= 0.0 {
        return false;
    }
    let id = stable_id("h", &[&policy.holdout.salt, customer_id]);
    let bucket = u64::from_str_radix(&id[2..10], 16).unwrap_or(0) % 10_000;
    (bucket as f64) < policy.holdout.share * 10_000.0
}

/// The customer's time zone, else the policy's default.
pub fn customer_zone(state: &CustomerState, policy: &Policy) -> chrono_tz::Tz {
    state
        .preferences
        .time_zone
        .as_deref()
        .and_then(|z| z.parse::<chrono_tz::Tz>().ok())
        .or_else(|| {
            policy
                .quiet_hours
                .default_time_zone
                .parse::<chrono_tz::Tz>()
                .ok()
        })
        .unwrap_or(chrono_tz::UTC)
}

/// True when `now` falls in the quiet hours of the customer's (or the default) time zone.
pub fn in_quiet_hours(state: &CustomerState, policy: &Policy, now: Timestamp) -> bool {
    let q = &policy.quiet_hours;
    let (Some(start), Some(end)) = (parse_hhmm(&q.start), parse_hhmm(&q.end)) else {
        return false;
    };
    let zone = customer_zone(state, policy);
    let Some(local) = zone.timestamp_millis_opt(now.millis()).single() else {
        return false;
    };
    let minute = local.hour() * 60 + local.minute();
    if start <= end {
        (start..end).contains(&minute)
    } else {
        minute >= start || minute < end
    }
}

/// A readable UTC time for reasons and audit details.
fn utc(t: Timestamp) -> String {
    chrono::DateTime::from_timestamp_millis(t.millis()).map_or_else(
        || t.millis().to_string(),
        |d| d.format("%Y-%m-%d %H:%M UTC").to_string(),
    )
}

fn window_ms(w: Window) -> i64 {
    match w {
        Window::Session => i64::MAX,
        Window::Day => 24 * 3_600_000,
        Window::Week => 7 * 24 * 3_600_000,
    }
}

/// After dismissals in this session, proactive interruptions of any kind pause, longer with each
/// dismissal, and stop for the session at `fatigue.interruption_max_dismissals`.
fn interruption_budget(state: &CustomerState, policy: &Policy, now: Timestamp) -> Result<(), Stop> {
    let f = &policy.fatigue;
    let Some(t) = state.trail.as_ref().filter(|t| {
        t.dismissals > 0 && state.session.as_ref().is_some_and(|s| s.id == t.session_id)
    }) else {
        return Ok(());
    };
    if f.interruption_max_dismissals > 0 && t.dismissals >= f.interruption_max_dismissals {
        return stop(
            Gate::Fatigue,
            "interruption_budget",
            format!(
                "dismissed {} suggestion(s) this visit: no more interruptions this session",
                t.dismissals
            ),
        );
    }
    let pause_ms = i64::from(f.interruption_backoff_minutes)
        .saturating_mul(60_000)
        .saturating_mul(1 << t.dismissals.saturating_sub(1).min(20));
    if let Some(last) = t.last_dismissed_at {
        if now.since(last) < pause_ms {
            return stop(
                Gate::Fatigue,
                "interruption_budget",
                format!(
                    "dismissed {} suggestion(s) this visit: no interruptions until {}",
                    t.dismissals,
                    utc(Timestamp(last.millis().saturating_add(pause_ms)))
                ),
            );
        }
    }
    Ok(())
}

/// Runs the chain. `Ok` means emit.
pub fn check(
    state: &CustomerState,
    c: &Candidate,
    customer_id: &str,
    policy: &Policy,
    now: Timestamp,
) -> Result<(), Stop> {
    // 1. Consent.
    if let Some(purpose) = purpose_of(c) {
        if let ConsentAnswer::Denied {
            reason_code,
            detail,
        } = consent(state, purpose, c.channel, policy.consent_regime, now)
        {
            return stop(Gate::Consent, reason_code, detail);
        }
    }
    // 2. Sensitivity.
    for category in &c.categories {
        match policy.tier(category) {
            Tier::NeverRemember => {
                return stop(Gate::Sensitivity, "never_remember_category", "draws on a category tact never remembers per person")
            }
            Tier::SessionOnly if c.channel.is_outbound() || !c.in_session => {
                return stop(
                    Gate::Sensitivity,
                    "session_only_category",
                    "draws on a sensitive category usable only inside the session, never for outbound contact",
                )
            }
            _ => {}
        }
    }
    // Help the visitor asked for is not a suggestion, not an interruption and not marketing: no
    // further gate holds it back.
    if c.kind.is_asked_for() {
        return Ok(());
    }
    // 3. The customer's own switches.
    let prefs = &state.preferences;
    // Reminders and releases are not suggestions: the customer asked for them (a birthday kept,
    // a brand followed); their own consent purpose and switches govern them.
    let is_suggestion = !matches!(
        c.kind,
        DecisionKind::WelcomeBack
            | DecisionKind::ProactiveHelp
            | DecisionKind::GiftReminder
            | DecisionKind::NewRelease
    );
    if is_suggestion && prefs.suggestions_enabled == Some(false) {
        return stop(
            Gate::CustomerOverride,
            "suggestions_off",
            "the customer turned suggestions off",
        );
    }
    if prefs.disabled_kinds.contains(&c.kind) {
        return stop(
            Gate::CustomerOverride,
            "kind_disabled",
            format!("the customer turned off {}", c.kind.as_str()),
        );
    }
    if prefs.disabled_channels.contains(&c.channel) {
        return stop(
            Gate::CustomerOverride,
            "channel_disabled",
            format!("the customer turned off the {} channel", c.channel.as_str()),
        );
    }
    if let Some(cat) = c
        .categories
        .iter()
        .find(|cat| prefs.excluded_categories.contains(cat))
    {
        return stop(
            Gate::CustomerOverride,
            "category_excluded",
            format!("the customer excluded {cat}"),
        );
    }
    if c.categories
        .iter()
        .any(|cat| prefs.private_categories.contains(cat))
    {
        return stop(
            Gate::CustomerOverride,
            "category_private",
            "the customer asked us not to remember this category",
        );
    }
    // 4. Context: browsing is session-scoped; outbound contact needs explicit intent.
    if c.channel.is_outbound() && !matches!(c.evidence, Evidence::Explicit | Evidence::Stated) {
        return stop(
            Gate::Context,
            "browsing_only",
            "browsing alone is never a reason to contact someone",
        );
    }
    if c.kind == DecisionKind::ProactiveHelp {
        let events = state.session.as_ref().map_or(0, |s| s.events);
        if events < policy.proactive_help.min_session_events {
            return stop(
                Gate::Context,
                "too_early",
                format!("only {events} event(s) into the session"),
            );
        }
    }
    // 5. Fatigue: back-off after dismissals of this kind, the session's interruption budget
    // (dismissals of any kind), then caps.
    if let Some(b) = state
        .backoff
        .iter()
        .find(|b| b.kind == c.kind && now < b.until)
    {
        return stop(
            Gate::Fatigue,
            "backoff_after_dismissal",
            format!(
                "dismissed {} time(s); quiet until {}",
                b.dismissals,
                utc(b.until)
            ),
        );
    }
    if c.kind.is_interruption() {
        interruption_budget(state, policy, now)?;
    }
    let session_id = state.session.as_ref().map(|s| s.id.as_str());
    for cap in &policy.fatigue.caps {
        if cap.kind.is_some_and(|k| k != c.kind) || cap.channel.is_some_and(|ch| ch != c.channel) {
            continue;
        }
        let used = state
            .history
            .iter()
            .filter(|e| {
                cap.kind.is_none_or(|k| k == e.kind) && cap.channel.is_none_or(|ch| ch == e.channel)
            })
            .filter(|e| match cap.per {
                Window::Session => session_id.is_some() && e.session_id.as_deref() == session_id,
                w => now.since(e.at) < window_ms(w),
            })
            .count();
        if used >= cap.max as usize {
            return stop(
                Gate::Fatigue,
                "cap_reached",
                format!("{used} already this {:?}", cap.per).to_lowercase(),
            );
        }
    }
    // 6. Quiet hours for outbound channels.
    if policy.quiet_hours.channels.contains(&c.channel) && in_quiet_hours(state, policy, now) {
        return stop(
            Gate::QuietHours,
            "quiet_hours",
            "it is quiet hours where the customer is",
        );
    }
    // 7. Holdout: measured against, never personalized.
    if (c.personalized || c.kind != DecisionKind::WelcomeBack) && in_holdout(customer_id, policy) {
        return stop(
            Gate::Holdout,
            "holdout_group",
            "the customer is in the holdout group that measures whether decisions help",
        );
    }
    Ok(())
}

/// Where candidates come from: whose, in which session, which input caused them, and when.
#[derive(Debug, Clone, Copy)]
pub struct Cause<'a> {
    pub customer_id: &'a str,
    pub session_id: Option<&'a str>,
    /// The event id (or a timer's or release's name) the decision ids derive from.
    pub event_id: &'a str,
    pub now: Timestamp,
}

/// Runs `c` through the chain and records the result in `out`: a decision (and the contact
/// history caps count) or a suppression, with an id derived from the cause, so the same input
/// always yields the same ids.
pub fn emit(
    state: &mut CustomerState,
    c: Candidate,
    cause: &Cause<'_>,
    policy: &Policy,
    out: &mut Outcome,
) {
    let Cause {
        customer_id,
        session_id,
        event_id,
        now,
    } = *cause;
    let verdict = check(state, &c, customer_id, policy, now);
    // "Too early" is not a verdict on the candidate: it may be proposed again later in the session.
    let transient = matches!(&verdict, Err(stop) if stop.reason == "too_early");
    if let Some(session) = state.session.as_mut() {
        let subject = (c.kind, c.subject.clone());
        if c.kind != DecisionKind::WelcomeBack && !transient && !session.proposed.contains(&subject)
        {
            session.proposed.push(subject);
            // Bounded: the oldest proposals of a very long session are forgotten first.
            if session.proposed.len() > MAX_PROPOSED {
                session.proposed.remove(0);
            }
        }
    }
    // The customer is part of the id: a cause can be shared (a release, a timer's name).
    let parts = [
        customer_id,
        event_id,
        c.kind.as_str(),
        c.channel.as_str(),
        c.subject.as_str(),
    ];
    match verdict {
        Ok(()) => {
            state.history.push(Emitted {
                kind: c.kind,
                channel: c.channel,
                at: now,
                session_id: session_id.map(str::to_owned),
            });
            out.decisions.push(Decision {
                decision_id: stable_id("d", &parts),
                customer_id: customer_id.to_owned(),
                session_id: session_id.map(str::to_owned),
                kind: c.kind,
                channel: c.channel,
                personalized: c.personalized,
                items: c.items,
                reasons: c.reasons,
                cause_event_id: event_id.to_owned(),
                created_at: now,
                expires_at: now
                    .plus_minutes(policy.decision_ttl_minutes)
                    .max(c.due_at.unwrap_or(now)),
                policy_version: policy.version.clone(),
                context: c.context,
                suggested_answers: c.answers,
                due_at: c.due_at,
            });
        }
        Err(stop) => out.suppressed.push(Suppressed {
            candidate_id: stable_id("s", &parts),
            customer_id: customer_id.to_owned(),
            session_id: session_id.map(str::to_owned),
            kind: c.kind,
            channel: c.channel,
            gate: stop.gate,
            reason_code: stop.reason,
            detail: stop.detail,
            cause_event_id: event_id.to_owned(),
            created_at: now,
            policy_version: policy.version.clone(),
        }),
    }
}
