//! `apply_event` / `apply_command`: fold one input into a customer's state and say what to emit.
//!
//! Each candidate passes the gates in order; the first gate that stops it records the suppression
//! with its reason. Candidates are proposed at most once per session and subject (a suppressed one
//! included) so the audit trail records decisions, not repetitions.

use crate::decision::{Channel, Decision, DecisionKind, Gate, Reason, Suppressed};
use crate::event::{ClickEvent, CommandBody, EventKind, ProfileCommand, Purpose};
use crate::id::stable_id;
use crate::policy::{ConsentRegime, Policy};
use crate::state::{CategoryInterest, ConsentRecord, CustomerState, GiftMode, Recipient, Session};
use crate::time::Timestamp;

/// What one input produced.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Outcome {
    pub decisions: Vec<Decision>,
    pub suppressed: Vec<Suppressed>,
}

/// What a command did to the customer's state.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CommandEffect {
    /// The state was updated in place.
    Updated,
    /// Every trace of the customer must go: the caller deletes the stored state.
    Erase,
}

/// The answer of the consent gate for one purpose on one channel.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ConsentAnswer {
    Granted,
    Denied {
        reason_code: &'static str,
        detail: String,
    },
}

/// Looks up consent for `purpose` on `channel`: a live channel-specific record beats a purpose-wide
/// one; with no live record the regime decides (marketing always needs an explicit grant).
pub fn consent(
    state: &CustomerState,
    purpose: Purpose,
    channel: Channel,
    regime: ConsentRegime,
    now: Timestamp,
) -> ConsentAnswer {
    let live = |r: &&ConsentRecord| r.purpose == purpose && r.expires_at.is_none_or(|t| t > now);
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
        Some(r) => ConsentAnswer::Denied {
            reason_code: "consent_denied",
            detail: format!("the customer declined {} ({})", purpose.as_str(), r.source),
        },
        None if regime == ConsentRegime::OptOut && purpose != Purpose::Marketing => {
            ConsentAnswer::Granted
        }
        None => ConsentAnswer::Denied {
            reason_code: "consent_missing",
            detail: format!("no consent to {} on record", purpose.as_str()),
        },
    }
}

fn personalization_granted(state: &CustomerState, policy: &Policy, now: Timestamp) -> bool {
    consent(
        state,
        Purpose::Personalization,
        Channel::OnSite,
        policy.consent_regime,
        now,
    ) == ConsentAnswer::Granted
}

/// Folds one click event into `state`.
pub fn apply_event(state: &mut CustomerState, ev: &ClickEvent, policy: &Policy) -> Outcome {
    let mut out = Outcome::default();
    let now = ev.event_time;
    let gap = policy.session_gap_ms();
    let returning = state.last_event_at.is_some_and(|t| now.since(t) >= gap);
    let new_session = match &state.session {
        None => true,
        Some(s) => s.id != ev.session_id || now.since(s.last_event_at) >= gap,
    };
    if new_session {
        state.visits = state.visits.saturating_add(1);
        state.session = Some(Session {
            id: ev.session_id.clone(),
            started_at: now,
            last_event_at: now,
            events: 0,
            welcomed: false,
            recommended: Vec::new(),
            category_views: Vec::new(),
        });
        if let Some(gift) = &state.gift_mode {
            // Session-scoped gift mode ends with the session it was switched on in.
            if gift.until.is_none() && gift.session_id.as_deref() != Some(ev.session_id.as_str()) {
                state.gift_mode = None;
            }
        }
    }
    state.first_seen.get_or_insert(now);
    state.last_event_at = Some(state.last_event_at.map_or(now, |t| t.max(now)));
    let personalized = personalization_granted(state, policy, now);
    if let Some(session) = state.session.as_mut() {
        session.events = session.events.saturating_add(1);
        session.last_event_at = session.last_event_at.max(now);
    }

    if returning && new_session {
        welcome_back(state, ev, policy, personalized, &mut out);
    }
    if matches!(ev.kind, EventKind::Unknown(_) | EventKind::Other) {
        return out;
    }

    if let Some(category) = interest_category(state, ev, now) {
        record_interest(state, ev, &category, personalized, policy);
        if matches!(ev.kind, EventKind::CategoryView | EventKind::ProductView) {
            recommendation(state, ev, &category, policy, personalized, &mut out);
        }
    }
    out
}

/// The category this event is evidence of interest in, if it may be remembered at all.
fn interest_category(state: &CustomerState, ev: &ClickEvent, now: Timestamp) -> Option<String> {
    let feeds = matches!(
        ev.kind,
        EventKind::CategoryView
            | EventKind::ProductView
            | EventKind::AddToCart
            | EventKind::Purchase
    );
    if !feeds {
        return None;
    }
    // Shopping for someone else says nothing about the buyer's own taste.
    let gift = ev.gift || gift_mode_active(state, &ev.session_id, now);
    if gift {
        return None;
    }
    let category = ev
        .category
        .clone()
        .or_else(|| ev.items.iter().find_map(|i| i.category.clone()))?;
    // "Don't remember this": a private category leaves no per-person trace.
    if state.preferences.private_categories.contains(&category) {
        return None;
    }
    Some(category)
}

fn gift_mode_active(state: &CustomerState, session_id: &str, now: Timestamp) -> bool {
    match &state.gift_mode {
        Some(GiftMode {
            until: Some(until), ..
        }) => now < *until,
        Some(GiftMode {
            session_id: Some(s),
            ..
        }) => s == session_id,
        _ => false,
    }
}

fn bump(
    list: &mut Vec<CategoryInterest>,
    category: &str,
    product: Option<&str>,
    now: Timestamp,
    policy: &Policy,
) {
    let idx = match list.iter().position(|c| c.category == category) {
        Some(i) => i,
        None => {
            if list.len() >= policy.max_tracked_categories as usize {
                // Forget the category seen least recently: state stays bounded.
                if let Some(oldest) = (0..list.len()).min_by_key(|&i| list[i].last_viewed_at) {
                    list.swap_remove(oldest);
                }
            }
            list.push(CategoryInterest {
                category: category.to_owned(),
                views: 0,
                last_viewed_at: now,
                recent_products: Vec::new(),
            });
            list.len() - 1
        }
    };
    let entry = &mut list[idx];
    entry.views = entry.views.saturating_add(1);
    entry.last_viewed_at = entry.last_viewed_at.max(now);
    if let Some(product) = product {
        entry.recent_products.retain(|p| p != product);
        entry.recent_products.insert(0, product.to_owned());
        entry
            .recent_products
            .truncate(policy.max_recent_products as usize);
    }
}

fn record_interest(
    state: &mut CustomerState,
    ev: &ClickEvent,
    category: &str,
    personalized: bool,
    policy: &Policy,
) {
    let product = ev
        .product_id
        .as_deref()
        .or_else(|| ev.items.first().map(|i| i.product_id.as_str()));
    if let Some(session) = state.session.as_mut() {
        bump(
            &mut session.category_views,
            category,
            product,
            ev.event_time,
            policy,
        );
    }
    if personalized {
        bump(
            &mut state.interests,
            category,
            product,
            ev.event_time,
            policy,
        );
    }
}

fn welcome_back(
    state: &mut CustomerState,
    ev: &ClickEvent,
    policy: &Policy,
    personalized: bool,
    out: &mut Outcome,
) {
    let Some(session) = state.session.as_mut() else {
        return;
    };
    if session.welcomed {
        return;
    }
    session.welcomed = true;
    let kind = DecisionKind::WelcomeBack;
    if let Some((code, detail)) = override_block(state, kind, Channel::OnSite, None) {
        out.suppressed.push(suppressed(
            ev,
            policy,
            kind,
            Channel::OnSite,
            "",
            Gate::CustomerOverride,
            code,
            detail,
        ));
        return;
    }
    let mut reasons = vec![Reason::new(
        "returning_visitor",
        format!(
            "you are back after more than {} minutes",
            policy.session_gap_minutes
        ),
    )];
    let mut items = Vec::new();
    // Without personalization consent the greeting carries nothing learned about the customer.
    let personal = personalized && state.preferences.suggestions_enabled != Some(false);
    if personal {
        if let Some(top) = state
            .interests
            .iter()
            .filter(|c| !state.preferences.excluded_categories.contains(&c.category))
            .max_by_key(|c| (c.views, c.last_viewed_at))
        {
            items = top
                .recent_products
                .iter()
                .take(policy.recommendation_max_items as usize)
                .cloned()
                .collect();
            reasons.push(Reason::new(
                "recent_interest",
                format!("you looked at {} {} time(s)", top.category, top.views),
            ));
        }
    }
    out.decisions.push(decision(
        ev,
        policy,
        kind,
        Channel::OnSite,
        "",
        personal && !items.is_empty(),
        items,
        reasons,
    ));
}

fn recommendation(
    state: &mut CustomerState,
    ev: &ClickEvent,
    category: &str,
    policy: &Policy,
    personalized: bool,
    out: &mut Outcome,
) {
    let kind = DecisionKind::Recommendation;
    let channel = Channel::OnSite;
    let Some(session) = state.session.as_ref() else {
        return;
    };
    if session.recommended.iter().any(|c| c == category) {
        return;
    }
    // With consent the evidence spans sessions; without it only this session counts.
    let evidence = if personalized {
        state.interests.iter().find(|c| c.category == category)
    } else {
        session
            .category_views
            .iter()
            .find(|c| c.category == category)
    };
    let Some(evidence) = evidence else { return };
    if evidence.views < policy.recommendation_min_category_views
        || evidence.recent_products.is_empty()
    {
        return;
    }
    let items: Vec<String> = evidence
        .recent_products
        .iter()
        .take(policy.recommendation_max_items as usize)
        .cloned()
        .collect();
    let views = evidence.views;
    if let Some(session) = state.session.as_mut() {
        session.recommended.push(category.to_owned());
    }

    if !personalized {
        let (reason_code, detail) = match consent(
            state,
            Purpose::Personalization,
            channel,
            policy.consent_regime,
            ev.event_time,
        ) {
            ConsentAnswer::Denied {
                reason_code,
                detail,
            } => (reason_code, detail),
            ConsentAnswer::Granted => ("consent_missing", String::new()),
        };
        out.suppressed.push(suppressed(
            ev,
            policy,
            kind,
            channel,
            category,
            Gate::Consent,
            reason_code,
            detail,
        ));
        return;
    }
    if let Some((code, detail)) = override_block(state, kind, channel, Some(category)) {
        out.suppressed.push(suppressed(
            ev,
            policy,
            kind,
            channel,
            category,
            Gate::CustomerOverride,
            code,
            detail,
        ));
        return;
    }
    let reasons = vec![Reason::new(
        "category_interest",
        format!("you looked at {category} {views} time(s)"),
    )];
    out.decisions.push(decision(
        ev, policy, kind, channel, category, true, items, reasons,
    ));
}

/// The customer's own switches: the customer-override gate.
fn override_block(
    state: &CustomerState,
    kind: DecisionKind,
    channel: Channel,
    category: Option<&str>,
) -> Option<(&'static str, String)> {
    let prefs = &state.preferences;
    if kind != DecisionKind::WelcomeBack && prefs.suggestions_enabled == Some(false) {
        return Some((
            "suggestions_off",
            "the customer turned suggestions off".into(),
        ));
    }
    if prefs.disabled_kinds.contains(&kind) {
        return Some((
            "kind_disabled",
            format!("the customer turned off {}", kind.as_str()),
        ));
    }
    if prefs.disabled_channels.contains(&channel) {
        return Some((
            "channel_disabled",
            format!("the customer turned off the {} channel", channel.as_str()),
        ));
    }
    if let Some(category) = category {
        if prefs.excluded_categories.iter().any(|c| c == category) {
            return Some((
                "category_excluded",
                format!("the customer excluded {category}"),
            ));
        }
    }
    None
}

#[allow(clippy::too_many_arguments)]
fn decision(
    ev: &ClickEvent,
    policy: &Policy,
    kind: DecisionKind,
    channel: Channel,
    subject: &str,
    personalized: bool,
    items: Vec<String>,
    reasons: Vec<Reason>,
) -> Decision {
    Decision {
        decision_id: stable_id(
            "d",
            &[&ev.event_id, kind.as_str(), channel.as_str(), subject],
        ),
        customer_id: ev.customer_id.clone(),
        session_id: Some(ev.session_id.clone()),
        kind,
        channel,
        personalized,
        items,
        reasons,
        cause_event_id: ev.event_id.clone(),
        created_at: ev.event_time,
        expires_at: ev.event_time.plus_minutes(policy.decision_ttl_minutes),
        policy_version: policy.version.clone(),
    }
}

#[allow(clippy::too_many_arguments)]
fn suppressed(
    ev: &ClickEvent,
    policy: &Policy,
    kind: DecisionKind,
    channel: Channel,
    subject: &str,
    gate: Gate,
    reason_code: &'static str,
    detail: String,
) -> Suppressed {
    Suppressed {
        candidate_id: stable_id(
            "s",
            &[&ev.event_id, kind.as_str(), channel.as_str(), subject],
        ),
        customer_id: ev.customer_id.clone(),
        session_id: Some(ev.session_id.clone()),
        kind,
        channel,
        gate,
        reason_code,
        detail,
        cause_event_id: ev.event_id.clone(),
        created_at: ev.event_time,
        policy_version: policy.version.clone(),
    }
}

/// Folds one profile command into `state`. The last command applied wins.
pub fn apply_command(
    state: &mut CustomerState,
    cmd: &ProfileCommand,
    policy: &Policy,
) -> CommandEffect {
    match &cmd.body {
        CommandBody::SetConsent {
            purpose,
            channel,
            granted,
            source,
            expires_at,
        } => {
            state
                .consents
                .retain(|r| !(r.purpose == *purpose && r.channel == *channel));
            state.consents.push(ConsentRecord {
                purpose: *purpose,
                channel: *channel,
                granted: *granted,
                source: source.clone(),
                at: cmd.issued_at,
                expires_at: *expires_at,
            });
            // Withdrawing personalization consent also forgets what was inferred under it.
            if !personalization_granted(state, policy, cmd.issued_at) {
                state.interests.clear();
            }
        }
        CommandBody::SetPreferences(update) => {
            let prefs = &mut state.preferences;
            prefs.stated_interests = update.interests.clone();
            prefs.survey_answers = update.survey_answers.clone();
            prefs.excluded_categories = update.excluded_categories.clone();
            prefs.private_categories = update.private_categories.clone();
            if update.suggestions_enabled.is_some() {
                prefs.suggestions_enabled = update.suggestions_enabled;
            }
            prefs.disabled_kinds = update
                .disabled_kinds
                .iter()
                .filter_map(|k| DecisionKind::from_name(k))
                .collect();
            prefs.disabled_channels = update.disabled_channels.clone();
            if update.time_zone.is_some() {
                prefs.time_zone = update.time_zone.clone();
            }
            // Existing traces of a now-private category are deleted, not just hidden.
            let private = prefs.private_categories.clone();
            state.interests.retain(|c| !private.contains(&c.category));
            if let Some(session) = state.session.as_mut() {
                session
                    .category_views
                    .retain(|c| !private.contains(&c.category));
            }
        }
        CommandBody::SetGiftMode {
            enabled,
            recipient_id,
            until,
        } => {
            state.gift_mode = enabled.then(|| GiftMode {
                recipient_id: recipient_id.clone(),
                until: *until,
                session_id: state.session.as_ref().map(|s| s.id.clone()),
            });
        }
        CommandBody::UpsertRecipient {
            recipient_id,
            name,
            birthday,
            interests,
        } => {
            state.recipients.retain(|r| &r.recipient_id != recipient_id);
            state.recipients.push(Recipient {
                recipient_id: recipient_id.clone(),
                name: name.clone(),
                birthday: birthday.clone(),
                interests: interests.clone(),
            });
        }
        CommandBody::RemoveRecipient { recipient_id } => {
            state.recipients.retain(|r| &r.recipient_id != recipient_id);
        }
        CommandBody::Follow { subject, follow } => {
            state.follows.retain(|s| s != subject);
            if *follow {
                state.follows.push(subject.clone());
            }
        }
        CommandBody::Erase { .. } => {
            *state = CustomerState::default();
            return CommandEffect::Erase;
        }
    }
    CommandEffect::Updated
}

#[cfg(test)]
mod tests;
