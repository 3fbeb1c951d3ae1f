//! Durable timers, as a pure function of the state: what is due when ([`pending_timers`],
//! [`next_due`]) and what happens when event time reaches it ([`apply_timer`]).
//!
//! Nothing here is stored beside the state: the edge indexes `next_due` and calls `apply_timer`
//! once event (or idle wall-clock) time passes it, so a timer can never disagree with the state
//! it belongs to, and a restart recomputes exactly the same schedule.

use super::memory::{end_session, forget_without_consent, unwanted};
use super::{help, Outcome, Rules, DAY_MS};
use crate::decision::{DecisionKind, Reason};
use crate::event::parse_birthday;
use crate::gates::{self, Cause};
use crate::gates::{customer_zone, Candidate, Evidence};
use crate::policy::{parse_hhmm, Policy, Tier};
use crate::state::{Cart, CartItem, CustomerState, Recipient};
use crate::time::Timestamp;
use chrono::{Datelike, NaiveDate, TimeZone};
use serde::Serialize;

/// Why a customer has a timer.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum TimerKind {
    /// The session lapses: session-only data goes even if no further event comes.
    SessionEnd,
    /// A cart left alone comes due for a reminder (or leaves quiet hours).
    AbandonedCart,
    /// A consent given with an expiry lapses, taking what was learned under it.
    ConsentExpiry,
    /// A recipient's birthday is `reminders.days_before` away.
    BirthdayReminder,
    /// An inferred interest reaches `inferred_retention_days` without renewal.
    InterestRetention,
    /// A callback reaches its due time unanswered (escalation), or an escalated one is forgotten.
    CallbackDue,
}

/// One pending timer, for `tact inspect`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct PendingTimer {
    pub kind: TimerKind,
    pub due: Timestamp,
    /// What it concerns (a recipient, a consent purpose, a category), never another customer.
    pub about: String,
}

/// A recipient's next birthday reminder: (the birthday's year, when to remind, the local start
/// of the day after the birthday).
fn birthday_reminder(
    r: &Recipient,
    state: &CustomerState,
    policy: &Policy,
) -> Option<(i32, Timestamp, Timestamp)> {
    let (month, day) = parse_birthday(r.birthday.as_deref()?)?;
    let zone = customer_zone(state, policy);
    let added = zone
        .timestamp_millis_opt(r.added_at.millis())
        .single()?
        .date_naive();
    let minutes = parse_hhmm(&policy.reminders.send_at).unwrap_or(10 * 60);
    let first = r.reminded_year.map_or(added.year(), |y| y + 1);
    for year in first..first + 2 {
        // February 29 falls on the 28th in other years.
        let date = NaiveDate::from_ymd_opt(year, month, day)
            .or_else(|| NaiveDate::from_ymd_opt(year, month, day - 1))?;
        if r.reminded_year.is_none() && date < added {
            continue; // this year's birthday had passed when the recipient was added
        }
        let remind = date - chrono::Duration::days(i64::from(policy.reminders.days_before));
        let local = remind.and_hms_opt(minutes / 60, minutes % 60, 0)?;
        // A send time inside a daylight-saving gap moves to the first valid instant after it.
        let at = zone.from_local_datetime(&local).earliest().or_else(|| {
            zone.from_local_datetime(&(local + chrono::Duration::hours(1)))
                .earliest()
        })?;
        let after = zone
            .from_local_datetime(&date.succ_opt()?.and_hms_opt(0, 0, 0)?)
            .earliest()?;
        let due = Timestamp(at.timestamp_millis().max(r.added_at.millis()));
        return Some((year, due, Timestamp(after.timestamp_millis())));
    }
    None
}

/// When a cart not yet reminded of comes due (or leaves quiet hours).
fn cart_due(c: &Cart, policy: &Policy) -> Timestamp {
    let due = c
        .last_added_at
        .plus_minutes(policy.outbound.abandoned_cart_after_minutes);
    c.defer_until.map_or(due, |d| d.max(due))
}

fn retention_ms(policy: &Policy) -> i64 {
    i64::from(policy.inferred_retention_days) * DAY_MS
}

/// Calls `f` with every timer the state holds.
fn visit(state: &CustomerState, policy: &Policy, mut f: impl FnMut(TimerKind, Timestamp, &str)) {
    if let Some(s) = &state.session {
        f(
            TimerKind::SessionEnd,
            Timestamp(s.last_event_at.millis() + policy.session_gap_ms()),
            &s.id,
        );
    }
    if let Some(c) = state.cart.as_ref().filter(|c| !c.nudged) {
        f(TimerKind::AbandonedCart, cart_due(c, policy), "cart");
    }
    for r in &state.consents {
        if let Some(at) = r.expires_at {
            f(TimerKind::ConsentExpiry, at, r.purpose.as_str());
        }
    }
    for r in &state.recipients {
        if let Some((_, due, _)) = birthday_reminder(r, state, policy) {
            f(TimerKind::BirthdayReminder, due, &r.recipient_id);
        }
    }
    for c in &state.callbacks {
        let due = if c.escalated {
            Timestamp(c.due_at.millis().saturating_add(help::FORGET_ESCALATED_MS))
        } else {
            c.due_at
        };
        f(TimerKind::CallbackDue, due, &c.decision_id);
    }
    let keep = retention_ms(policy);
    let learned = state
        .interests
        .iter()
        .map(|c| (c.last_viewed_at, c.category.as_str()))
        .chain(
            state
                .purchases
                .iter()
                .map(|p| (p.at, p.category.as_deref().unwrap_or("purchase"))),
        )
        .chain(state.recipients.iter().flat_map(|r| {
            r.viewed
                .iter()
                .map(|c| (c.last_viewed_at, c.category.as_str()))
        }))
        .min_by_key(|(at, _)| *at);
    if let Some((at, about)) = learned {
        f(
            TimerKind::InterestRetention,
            Timestamp(at.millis().saturating_add(keep)),
            about,
        );
    }
}

/// Every timer the customer has, soonest first.
pub fn pending_timers(state: &CustomerState, policy: &Policy) -> Vec<PendingTimer> {
    let mut out = Vec::new();
    visit(state, policy, |kind, due, about| {
        out.push(PendingTimer {
            kind,
            due,
            about: about.to_owned(),
        })
    });
    out.sort_by_key(|t| t.due);
    out
}

/// When this customer next needs [`apply_timer`].
pub fn next_due(state: &CustomerState, policy: &Policy) -> Option<Timestamp> {
    let mut min: Option<Timestamp> = None;
    visit(state, policy, |_, due, _| {
        min = Some(min.map_or(due, |m| m.min(due)));
    });
    min
}

/// Forgets inferred data not renewed within the retention period.
pub(super) fn expire_learned(state: &mut CustomerState, policy: &Policy, now: Timestamp) {
    let keep = retention_ms(policy);
    let fresh = |at: Timestamp| now.since(at) < keep;
    state.interests.retain(|c| fresh(c.last_viewed_at));
    state.purchases.retain(|p| fresh(p.at));
    for r in &mut state.recipients {
        r.viewed.retain(|c| fresh(c.last_viewed_at));
    }
}

/// Event time has reached `now` for this customer with no new event: expire consents (and what
/// was learned under them) and stale inferences, end a lapsed session (dropping its session-only
/// data), nudge about an abandoned cart, remind of birthdays and escalate overdue callbacks.
pub fn apply_timer(
    state: &mut CustomerState,
    customer_id: &str,
    now: Timestamp,
    rules: &Rules,
) -> Outcome {
    let policy = &rules.policy;
    let mut out = Outcome::default();
    forget_without_consent(state, policy, now);
    if state
        .session
        .as_ref()
        .is_some_and(|s| now.since(s.last_event_at) >= policy.session_gap_ms())
    {
        end_session(state);
    }
    abandoned_cart(state, customer_id, now, rules, &mut out);
    birthday_reminders(state, customer_id, now, rules, &mut out);
    help::escalate_overdue(state, customer_id, now, rules, &mut out);
    out
}

fn abandoned_cart(
    state: &mut CustomerState,
    customer_id: &str,
    now: Timestamp,
    rules: &Rules,
    out: &mut Outcome,
) {
    let policy = &rules.policy;
    let due = state
        .cart
        .as_ref()
        .filter(|c| !c.nudged)
        .map(|c| (cart_due(c, policy), c.clone()));
    let Some((due, cart)) = due.filter(|(due, _)| now >= *due) else {
        return;
    };
    // Only what the customer may still be reminded of: nothing excluded, private or bought.
    let prefs = &state.preferences;
    let remind: Vec<&CartItem> = cart
        .items
        .iter()
        .rev()
        .filter(|i| !unwanted(state, rules, &i.product_id))
        .filter(|i| {
            !i.category.as_ref().is_some_and(|c| {
                prefs.excluded_categories.contains(c) || prefs.private_categories.contains(c)
            })
        })
        .collect();
    if remind.is_empty() {
        if let Some(c) = state.cart.as_mut() {
            c.nudged = true;
        }
        return;
    }
    let candidate = Candidate {
        kind: DecisionKind::OutboundNudge,
        channel: policy.outbound.channel,
        subject: format!("abandoned_cart@{}", due.millis()),
        personalized: true,
        items: remind.iter().map(|i| i.product_id.clone()).collect(),
        reasons: vec![Reason::new(
            "abandoned_cart",
            format!("you left {} item(s) in your cart", remind.len()),
        )],
        evidence: Evidence::Explicit,
        categories: remind
            .iter()
            .flat_map(|i| {
                let filed = rules.catalog.get(&i.product_id).map(|p| p.category.clone());
                i.category.clone().into_iter().chain(filed)
            })
            .collect(),
        in_session: false,
        context: None,
        answers: Vec::new(),
        due_at: None,
    };
    let suppressed_before = out.suppressed.len();
    gates::emit(
        state,
        candidate,
        &Cause {
            customer_id,
            session_id: None,
            event_id: &cart.last_added_event,
            now,
        },
        policy,
        out,
    );
    let quiet = out.suppressed.len() > suppressed_before
        && out
            .suppressed
            .last()
            .is_some_and(|s| s.reason_code == "quiet_hours");
    if let Some(c) = state.cart.as_mut() {
        if quiet {
            // Try again when the quiet hours are over (checked hourly).
            c.defer_until = Some(Timestamp(now.millis() + 3_600_000));
        } else {
            c.nudged = true;
        }
    }
}

/// Gift ideas for a recipient: catalog products in the categories they like (stated first, then
/// what was looked at for them), never one already given to them, nothing sensitive, nothing
/// the customer made private.
fn gift_ideas(state: &CustomerState, r: &Recipient, rules: &Rules) -> (Vec<String>, Vec<String>) {
    let policy = &rules.policy;
    let prefs = &state.preferences;
    let mut categories: Vec<String> = Vec::new();
    for c in r
        .interests
        .iter()
        .chain(r.viewed.iter().map(|c| &c.category))
    {
        if policy.tier(c) == Tier::Normal
            && !prefs.private_categories.contains(c)
            && !categories.contains(c)
        {
            categories.push(c.clone());
        }
    }
    let max = policy.reminders.max_items as usize;
    let mut items: Vec<String> = Vec::new();
    for c in &categories {
        for p in rules.catalog.in_category(c) {
            if items.len() >= max {
                break;
            }
            if !r.gifts.iter().any(|g| g.product_id == p.id) && !items.contains(&p.id) {
                items.push(p.id.clone());
            }
        }
    }
    let used: Vec<String> = categories
        .into_iter()
        .filter(|c| {
            items
                .iter()
                .any(|i| rules.catalog.get(i).is_some_and(|p| &p.category == c))
        })
        .collect();
    (items, used)
}

fn birthday_reminders(
    state: &mut CustomerState,
    customer_id: &str,
    now: Timestamp,
    rules: &Rules,
    out: &mut Outcome,
) {
    let policy = &rules.policy;
    let due: Vec<(usize, i32, Timestamp)> = state
        .recipients
        .iter()
        .enumerate()
        .filter_map(|(i, r)| {
            let (year, due, after) = birthday_reminder(r, state, policy)?;
            (due <= now).then_some((i, year, after))
        })
        .collect();
    for (i, year, after) in due {
        let r = state.recipients[i].clone();
        state.recipients[i].reminded_year = Some(year);
        if now >= after {
            // Event time jumped past the birthday itself (a long idle stream): too late to help.
            continue;
        }
        let (items, categories) = gift_ideas(state, &r, rules);
        let date = r
            .birthday
            .as_deref()
            .and_then(parse_birthday)
            .and_then(|(m, d)| NaiveDate::from_ymd_opt(2000, m, d))
            .map_or_else(String::new, |d| d.format("%B %-d").to_string());
        let mut reasons = vec![Reason::new(
            "birthday_reminder",
            format!("{}'s birthday is on {date}", r.name),
        )];
        if !items.is_empty() {
            reasons.push(Reason::new(
                "recipient_interests",
                format!(
                    "ideas from what {} likes: {}",
                    r.name,
                    categories.join(", ")
                ),
            ));
        }
        let candidate = Candidate {
            kind: DecisionKind::GiftReminder,
            channel: policy.reminders.channel,
            subject: format!("birthday/{}/{year}", r.recipient_id),
            personalized: true,
            items,
            reasons,
            evidence: Evidence::Stated,
            categories,
            in_session: false,
            context: None,
            answers: Vec::new(),
            due_at: None,
        };
        let cause = format!("birthday:{}:{year}", r.recipient_id);
        gates::emit(
            state,
            candidate,
            &Cause {
                customer_id,
                session_id: None,
                event_id: &cause,
                now,
            },
            policy,
            out,
        );
    }
}
