//! `apply_event`, `apply_command`, `apply_timer`: fold one input into a customer's state, propose
//! candidates, and pass each through the gate chain ([`crate::gates`]).
//!
//! Candidates are proposed at most once per session and subject (a suppressed one included), so
//! the audit trail records decisions, not repetitions.
//!
//! This file orchestrates; [`memory`] keeps what is learned and forgotten, [`proposers`] turn
//! state into candidates, [`commands`] applies what the customer says, [`timers`] what event
//! time brings, and the gate chain ([`crate::gates`]) decides and records each candidate.

use crate::catalog::Catalog;
use crate::decision::Channel;
use crate::event::{ClickEvent, EventKind, Purpose};
use crate::faq::KnowledgeBase;
use crate::gates::{self, consent, Candidate, Cause, ConsentAnswer};
use crate::id::digest64;
use crate::policy::{Policy, Tier};
use crate::state::{CustomerState, SeenEvent, Session};
use crate::time::Timestamp;
use memory::{
    end_session, feedback, forget_without_consent, gift_mode_active, record_consent,
    record_evidence,
};
use proposers::{
    browse_followup, compatible_accessory, detect_struggle, recommendation, welcome_back,
};

const DAY_MS: i64 = 24 * 3_600_000;
/// Emitted decisions older than the longest cap window are forgotten.
const HISTORY_MS: i64 = 7 * DAY_MS;
/// Events kept as the evidence of one inferred interest.
const MAX_EVIDENCE: usize = 5;

/// Everything the core decides with besides the state and the input.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Rules {
    pub policy: Policy,
    pub catalog: Catalog,
    /// Prepared answers help decisions suggest.
    pub faq: KnowledgeBase,
}

/// What a command did to the customer's state.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CommandEffect {
    Updated,
    /// Every trace of the customer must go: the caller deletes the stored state.
    Erase,
}

fn granted(
    state: &CustomerState,
    purpose: Purpose,
    channel: Channel,
    policy: &Policy,
    now: Timestamp,
) -> bool {
    consent(state, purpose, channel, policy.consent_regime, now) == ConsentAnswer::Granted
}

/// The most sensitive tier among the categories an event touches (the catalog fills in a missing
/// category from the product id).
fn event_categories(ev: &ClickEvent, catalog: &Catalog) -> Vec<String> {
    let mut cats: Vec<String> = Vec::new();
    let mut add = |c: Option<&str>| {
        if let Some(c) = c.filter(|c| !c.is_empty()) {
            if !cats.iter().any(|x| x == c) {
                cats.push(c.to_owned());
            }
        }
    };
    add(ev.category.as_deref());
    add(ev
        .product_id
        .as_deref()
        .and_then(|p| catalog.get(p))
        .map(|p| p.category.as_str()));
    for item in &ev.items {
        add(item
            .category
            .as_deref()
            .or_else(|| catalog.get(&item.product_id).map(|p| p.category.as_str())));
    }
    cats
}

/// Event ids remembered whatever their age (the latest ones), besides those within the window.
const ALWAYS_REMEMBERED: usize = 8;

/// Whether `ev` repeats an event id applied recently; if not, remembers it (bounded).
fn seen_before(state: &mut CustomerState, ev: &ClickEvent, policy: &Policy) -> bool {
    if policy.duplicate_window_minutes == 0 {
        return false;
    }
    let digest = digest64(&ev.event_id);
    let window = i64::from(policy.duplicate_window_minutes) * 60_000;
    // A retry carries the event's own time; the same id far from it is another event.
    if state
        .recent_events
        .iter()
        .any(|e| e.digest == digest && ev.event_time.since(e.at).abs() < window)
    {
        return true;
    }
    // Forget what is older than the window before this event, or before the customer's latest
    // event if that is earlier: one event stamped far ahead cannot make them forget the rest.
    // The last few are kept whatever their age: a retry that arrives after the customer's next
    // event (a backfill, a producer that re-sends late) is still recognised when that next
    // event came hours later, as the first of a new visit does.
    let reference = state
        .last_event_at
        .map_or(ev.event_time, |t| t.min(ev.event_time));
    let keep_from = state.recent_events.len().saturating_sub(ALWAYS_REMEMBERED);
    let mut index = 0;
    state.recent_events.retain(|e| {
        index += 1;
        index > keep_from || reference.since(e.at) < window
    });
    state.recent_events.push(SeenEvent {
        digest,
        at: ev.event_time,
    });
    let max = policy.max_remembered_events.max(1) as usize;
    if state.recent_events.len() > max {
        let excess = state.recent_events.len() - max;
        state.recent_events.drain(..excess);
    }
    false
}

/// Folds one click event into `state`. An event id the customer sent within
/// `policy.duplicate_window_minutes` (a producer's retry) changes nothing the second time.
pub fn apply_event(state: &mut CustomerState, ev: &ClickEvent, rules: &Rules) -> Outcome {
    let policy = &rules.policy;
    let mut out = Outcome::default();
    if seen_before(state, ev, policy) {
        out.duplicate = true;
        return out;
    }
    let now = ev.event_time;
    if ev.kind == EventKind::CallbackDone {
        // The contact system's report, not the visitor's activity: no session, no proposals.
        help::callback_done(state, ev, &mut out);
        return out;
    }
    if ev.gpc {
        // The browser objects to being marketed to: an opt-out of marketing, on every channel.
        record_consent(
            state,
            Purpose::Marketing,
            None,
            false,
            GPC_SOURCE,
            now,
            None,
        );
    }

    let gap = policy.session_gap_ms();
    let returning = state.last_event_at.is_some_and(|t| now.since(t) >= gap);
    let new_session = match &state.session {
        None => true,
        Some(s) => s.id != ev.session_id || now.since(s.last_event_at) >= gap,
    };
    if new_session {
        end_session(state);
        state.visits = state.visits.saturating_add(1);
        state.session = Some(Session {
            id: ev.session_id.clone(),
            started_at: now,
            last_event_at: now,
            ..Session::default()
        });
    }
    forget_without_consent(state, policy, now);
    state.first_seen.get_or_insert(now);
    state.last_event_at = Some(state.last_event_at.map_or(now, |t| t.max(now)));
    state.history.retain(|e| now.since(e.at) < HISTORY_MS);
    if let Some(session) = state.session.as_mut() {
        session.events = session.events.saturating_add(1);
        session.last_event_at = session.last_event_at.max(now);
    }

    let mut candidates: Vec<Candidate> = Vec::new();
    if returning && new_session {
        candidates.extend(welcome_back(state, rules, now));
    }
    feedback(state, ev, policy);
    help::record_dismissal(state, ev);

    if ev.kind == EventKind::Purchase {
        // Any purchase ends the cart (also one of only never-remember or private items): the
        // reminder would be about something already bought.
        state.cart = None;
    }
    let categories = event_categories(ev, &rules.catalog);
    let tiers: Vec<Tier> = categories.iter().map(|c| policy.tier(c)).collect();
    let never = tiers.contains(&Tier::NeverRemember);
    let private = categories
        .iter()
        .any(|c| state.preferences.private_categories.contains(c));
    let known = !matches!(ev.kind, EventKind::Unknown(_) | EventKind::Other);
    let mut asked = None;
    // A never-remember or private event is used for nothing per person (aggregate metrics only).
    if known && !never && !private {
        let personalized = granted(
            state,
            Purpose::Personalization,
            Channel::OnSite,
            policy,
            now,
        );
        let gift_mode = gift_mode_active(state, &ev.session_id, now);
        let gift = ev.gift || gift_mode;
        let recipient = state
            .gift_mode
            .as_ref()
            .filter(|_| gift_mode)
            .and_then(|g| g.recipient_id.clone());
        let session_only = tiers.contains(&Tier::SessionOnly);
        record_evidence(
            state,
            ev,
            rules,
            &categories,
            personalized,
            gift,
            recipient.as_deref(),
            session_only,
        );
        help::record_trail(state, ev, session_only);
        if ev.kind == EventKind::ChatRequested {
            // Before the detectors: the hand-off carries the struggle the chat resolves.
            asked = Some(help::chat_handoff(state, ev, rules));
        }
        candidates.extend(detect_struggle(state, ev, rules));
        if matches!(ev.kind, EventKind::CategoryView | EventKind::ProductView) {
            if let Some(category) = categories.first() {
                candidates.extend(recommendation(
                    state,
                    ev,
                    rules,
                    category,
                    personalized,
                    session_only,
                ));
                candidates.extend(compatible_accessory(state, rules, category, now));
            }
            candidates.extend(browse_followup(state, ev, &categories));
        }
    }
    if ev.kind == EventKind::ChatRequested && asked.is_none() {
        // Asked about something sensitive: the chat still comes, with nothing of it in the context.
        asked = Some(help::chat_handoff(state, ev, rules));
    }
    candidates.extend(asked);
    let cause = Cause {
        customer_id: &ev.customer_id,
        session_id: Some(&ev.session_id),
        event_id: &ev.event_id,
        now,
    };
    for c in candidates {
        gates::emit(state, c, &cause, policy, &mut out);
    }
    if ev.kind == EventKind::CallbackRequested {
        help::callback(state, ev, rules, &cause, &mut out);
    }
    out
}

mod commands;
mod help;
mod memory;
mod proposers;
mod release;
mod timers;

pub use crate::decision::Outcome;
pub use crate::gates::GPC_SOURCE;
pub use commands::apply_command;
pub use help::{callback_decision_id, callback_due};
pub use release::apply_release;
pub use timers::{apply_timer, next_due, pending_timers, PendingTimer, TimerKind};

#[cfg(test)]
mod tests;
