//! Help from a person: the session trail an agent is told about, chat on demand, "call me" with
//! a due time in business hours, the escalation when that time passes, and answers from the
//! knowledge base.
//!
//! Invariants: a context holds only the current session's data, never a `never_remember` or
//! private category (those events never reach the trail), and `session_only` data only for help
//! inside the session (a chat), never for a callback that happens after it. A callback escalates
//! at most once, from its own state, so a replay after a crash cannot escalate it again.

use super::{granted, Rules};
use crate::decision::{
    CallbackNews, Channel, DecisionKind, HelpContext, Outcome, Reason, SearchTried, SuggestedAnswer,
};
use crate::event::{ClickEvent, EventKind, Purpose};
use crate::gates::{self, Candidate, Cause, Evidence};
use crate::policy::{parse_hhmm, parse_weekday, BusinessHours, Policy, Tier};
use crate::state::{CustomerState, OpenCallback, Trail, TrailPage, TrailSearch};
use crate::time::Timestamp;
use chrono::{Datelike, TimeZone};

/// Pages and searches a trail keeps (the latest).
const TRAIL_PAGES: usize = 20;
const TRAIL_SEARCHES: usize = 10;
/// What a context shows at most.
const CONTEXT_PAGES: usize = 10;
const CONTEXT_SEARCHES: usize = 5;
const CONTEXT_ITEMS: usize = 10;
/// A search query is kept to this many bytes.
const MAX_QUERY: usize = 100;
/// Callbacks open at once per customer; a further request drops the oldest.
const MAX_OPEN_CALLBACKS: usize = 8;
/// An escalated callback never reported done is forgotten this long after its due time.
pub(super) const FORGET_ESCALATED_MS: i64 = 7 * 24 * 3_600_000;

fn clip(s: &str, max: usize) -> String {
    let mut end = s.len().min(max);
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    s[..end].to_owned()
}

fn trail_mut<'a>(state: &'a mut CustomerState, session_id: &str) -> &'a mut Trail {
    if state
        .trail
        .as_ref()
        .is_none_or(|t| t.session_id != session_id)
    {
        state.trail = Some(Trail {
            session_id: session_id.to_owned(),
            ..Trail::default()
        });
    }
    state.trail.get_or_insert_with(Trail::default)
}

fn push_bounded<T>(list: &mut Vec<T>, item: T, max: usize) {
    list.push(item);
    if list.len() > max {
        list.drain(..list.len() - max);
    }
}

/// Records what a helper needs from an event the customer's categories allow remembering in
/// the session (the caller leaves out `never_remember` and private ones).
pub(super) fn record_trail(state: &mut CustomerState, ev: &ClickEvent, session_only: bool) {
    match ev.kind {
        EventKind::PageView | EventKind::FaqView => {
            if let Some(page) = ev.page.as_deref().filter(|p| !p.is_empty()) {
                let faq = ev.kind == EventKind::FaqView;
                let t = trail_mut(state, &ev.session_id);
                push_bounded(
                    &mut t.pages,
                    TrailPage {
                        page: clip(page, 200),
                        faq,
                        session_only,
                    },
                    TRAIL_PAGES,
                );
            }
        }
        EventKind::Search => {
            if let Some(query) = ev.search_query.as_deref().filter(|q| !q.trim().is_empty()) {
                let t = trail_mut(state, &ev.session_id);
                push_bounded(
                    &mut t.searches,
                    TrailSearch {
                        query: clip(query.trim(), MAX_QUERY),
                        results: ev.search_results.unwrap_or(0),
                        session_only,
                    },
                    TRAIL_SEARCHES,
                );
            }
        }
        _ => {}
    }
}

/// A dismissal (of any suggestion) spends the session's interruption budget.
pub(super) fn record_dismissal(state: &mut CustomerState, ev: &ClickEvent) {
    if ev.kind == EventKind::SuggestionDismissed {
        let t = trail_mut(state, &ev.session_id);
        t.dismissals = t.dismissals.saturating_add(1);
        t.last_dismissed_at = Some(
            t.last_dismissed_at
                .map_or(ev.event_time, |l| l.max(ev.event_time)),
        );
    }
}

/// Whether a category may appear in a context: never a `never_remember` or private one;
/// `session_only` ones only for help inside the session.
fn shown(state: &CustomerState, policy: &Policy, category: Option<&str>, in_session: bool) -> bool {
    category.is_none_or(|c| {
        !state.preferences.private_categories.iter().any(|p| p == c)
            && match policy.tier(c) {
                Tier::NeverRemember => false,
                Tier::SessionOnly => in_session,
                Tier::Normal => true,
            }
    })
}

/// What the agent is told about this session.
pub(super) fn context(
    state: &CustomerState,
    rules: &Rules,
    in_session: bool,
    detector: Option<(&str, &str)>,
) -> HelpContext {
    let policy = &rules.policy;
    let session = state.session.as_ref();
    let trail = state
        .trail
        .as_ref()
        .filter(|t| session.is_some_and(|s| s.id == t.session_id));
    let mut ctx = HelpContext {
        detector: detector.map(|(d, _)| d.to_owned()),
        evidence: detector.map(|(_, e)| e.to_owned()).into_iter().collect(),
        ..HelpContext::default()
    };
    if let Some(t) = trail {
        let pages: Vec<&TrailPage> = t
            .pages
            .iter()
            .filter(|p| in_session || !p.session_only)
            .collect();
        ctx.pages = pages
            .iter()
            .skip(pages.len().saturating_sub(CONTEXT_PAGES))
            .map(|p| p.page.clone())
            .collect();
        for p in pages.iter().filter(|p| p.faq) {
            if let Some(e) = rules.faq.by_page(&p.page) {
                if !ctx.faq_entries.contains(&e.id) {
                    ctx.faq_entries.push(e.id.clone());
                }
            }
        }
        let searches: Vec<&TrailSearch> = t
            .searches
            .iter()
            .filter(|s| in_session || !s.session_only)
            .collect();
        ctx.searches = searches
            .iter()
            .skip(searches.len().saturating_sub(CONTEXT_SEARCHES))
            .map(|s| SearchTried {
                query: s.query.clone(),
                results: s.results,
            })
            .collect();
    }
    if let Some(s) = session {
        if let Some(p) = s.pingpong.as_ref().filter(|p| {
            p.products.len() >= 2 && shown(state, policy, Some(&p.category), in_session)
        }) {
            ctx.products_compared = p.products.iter().take(CONTEXT_ITEMS).cloned().collect();
        }
        // The cart as this session left it: only when this session added to it.
        if let Some(cart) = state
            .cart
            .as_ref()
            .filter(|c| c.last_added_at >= s.started_at)
        {
            ctx.cart = cart
                .items
                .iter()
                .filter(|i| {
                    let filed = rules
                        .catalog
                        .get(&i.product_id)
                        .map(|p| p.category.as_str());
                    shown(state, policy, i.category.as_deref(), in_session)
                        && shown(state, policy, filed, in_session)
                })
                .rev()
                .take(CONTEXT_ITEMS)
                .map(|i| i.product_id.clone())
                .collect();
        }
    }
    ctx
}

/// Knowledge-base answers for what the visitor tried: their failed searches and the topics of
/// the FAQ pages they read (entries already read are not suggested again).
pub(super) fn suggested_answers(
    state: &CustomerState,
    rules: &Rules,
    in_session: bool,
) -> Vec<SuggestedAnswer> {
    let policy = &rules.policy;
    let max = policy.proactive_help.max_suggested_answers as usize;
    let Some(t) = state
        .trail
        .as_ref()
        .filter(|t| state.session.as_ref().is_some_and(|s| s.id == t.session_id))
    else {
        return Vec::new();
    };
    if rules.faq.is_empty() || max == 0 {
        return Vec::new();
    }
    let mut query: Vec<String> = t
        .searches
        .iter()
        .filter(|s| {
            (in_session || !s.session_only) && s.results <= policy.proactive_help.search_few_results
        })
        .map(|s| s.query.clone())
        .collect();
    let mut read: Vec<String> = Vec::new();
    for p in t
        .pages
        .iter()
        .filter(|p| p.faq && (in_session || !p.session_only))
    {
        if let Some(e) = rules.faq.by_page(&p.page) {
            query.push(e.keywords.join(" "));
            read.push(e.id.clone());
        }
    }
    rules.faq.search(&query.join(" "), max, &read)
}

fn help_candidate(
    kind: DecisionKind,
    channel: Channel,
    subject: &str,
    reasons: Vec<Reason>,
    items: Vec<String>,
    in_session: bool,
) -> Candidate {
    Candidate {
        kind,
        channel,
        subject: subject.to_owned(),
        personalized: false,
        items,
        reasons,
        evidence: Evidence::Explicit,
        categories: Vec::new(),
        in_session,
        context: None,
        answers: Vec::new(),
        due_at: None,
    }
}

/// Fills in the context of an asked-for hand-off: with personalization consent on its channel
/// the session's trail; without it nothing but the request itself, and a reason saying so.
fn with_context(
    mut c: Candidate,
    state: &CustomerState,
    rules: &Rules,
    now: Timestamp,
) -> Candidate {
    if granted(
        state,
        Purpose::Personalization,
        c.channel,
        &rules.policy,
        now,
    ) {
        c.context = Some(context(state, rules, c.in_session, None));
        c.answers = suggested_answers(state, rules, c.in_session);
        c.personalized = true;
    } else {
        c.reasons.push(Reason::new(
            "context_withheld",
            "no consent to personalization: the agent is told nothing about this visit",
        ));
    }
    c
}

/// The visitor clicked the chat icon: a hand-off now, whatever the fatigue or context gates
/// would say about a proactive offer.
pub(super) fn chat_handoff(state: &CustomerState, ev: &ClickEvent, rules: &Rules) -> Candidate {
    let c = help_candidate(
        DecisionKind::ChatHandoff,
        Channel::Chat,
        &ev.event_id,
        vec![Reason::new("chat_requested", "you asked to chat with us")],
        Vec::new(),
        true,
    );
    with_context(c, state, rules, ev.event_time)
}

/// The shop's time zone (validated with the policy; UTC if it were not).
fn shop_zone(policy: &Policy) -> chrono_tz::Tz {
    policy
        .callback
        .business_hours
        .time_zone
        .parse()
        .unwrap_or(chrono_tz::UTC)
}

/// The local "HH:MM" of `t` in `zone`, with the date and zone.
fn local(zone: chrono_tz::Tz, t: Timestamp) -> String {
    zone.timestamp_millis_opt(t.millis()).single().map_or_else(
        || t.millis().to_string(),
        |d| d.format("%Y-%m-%d %H:%M %Z").to_string(),
    )
}

/// When a callback asked for at `requested` is due: `minutes` of business time later, counted
/// only while the contact centre is open. The flag says the request came outside business
/// hours (the count starts at the next opening).
pub fn callback_due(
    requested: Timestamp,
    minutes: u32,
    hours: &BusinessHours,
) -> Option<(Timestamp, bool)> {
    let zone: chrono_tz::Tz = hours.time_zone.parse().ok()?;
    let (open, close) = (parse_hhmm(&hours.open)?, parse_hhmm(&hours.close)?);
    let days: Vec<chrono::Weekday> = hours.days.iter().filter_map(|d| parse_weekday(d)).collect();
    let mut left = i64::from(minutes) * 60_000;
    let mut day = zone
        .timestamp_millis_opt(requested.millis())
        .single()?
        .date_naive();
    let instant = |date: chrono::NaiveDate, minute: u32| -> Option<i64> {
        let t = date.and_hms_opt(minute / 60, minute % 60, 0)?;
        // A time in a daylight-saving gap moves to the first valid instant after it.
        zone.from_local_datetime(&t)
            .earliest()
            .or_else(|| {
                zone.from_local_datetime(&(t + chrono::Duration::hours(1)))
                    .earliest()
            })
            .map(|d| d.timestamp_millis())
    };
    let mut outside = true;
    for _ in 0..400 {
        if days.contains(&day.weekday()) {
            let (o, c) = (instant(day, open)?, instant(day, close)?);
            let start = o.max(requested.millis());
            if requested.millis() >= o && requested.millis() < c {
                outside = false;
            }
            if start < c {
                if start + left <= c {
                    return Some((Timestamp(start + left), outside));
                }
                left -= c - start;
            }
        }
        day = day.succ_opt()?;
    }
    None
}

/// The id of the callback decision a `CALLBACK_REQUESTED` event yields (what the contact system
/// names in `CALLBACK_DONE`; it is also on the decision itself).
pub fn callback_decision_id(customer_id: &str, request_event_id: &str) -> String {
    let (kind, channel) = (DecisionKind::Callback.as_str(), Channel::Routing.as_str());
    crate::id::stable_id(
        "d",
        &[
            customer_id,
            request_event_id,
            kind,
            channel,
            request_event_id,
        ],
    )
}

/// "Call me": a callback to the routing channel, due `answer_within_minutes` of business time
/// later, remembered until the contact system reports it done.
pub(super) fn callback(
    state: &mut CustomerState,
    ev: &ClickEvent,
    rules: &Rules,
    cause: &Cause<'_>,
    out: &mut Outcome,
) {
    let policy = &rules.policy;
    let cb = &policy.callback;
    let now = ev.event_time;
    let zone = shop_zone(policy);
    // A policy that passed validation always yields a due time; the fallback keeps the promise
    // literal rather than dropping the request.
    let (due, outside) = callback_due(now, cb.answer_within_minutes, &cb.business_hours)
        .unwrap_or((now.plus_minutes(cb.answer_within_minutes), false));
    // The product only when its category may be remembered (the contact system is outside the
    // session: no session_only ones either).
    let product = ev.product_id.clone().filter(|p| {
        let filed = rules.catalog.get(p).map(|x| x.category.as_str());
        shown(state, policy, ev.category.as_deref(), false) && shown(state, policy, filed, false)
    });
    let about = product
        .as_deref()
        .map_or(String::new(), |p| format!(" about {p}"));
    let mut reasons = vec![Reason::new(
        "callback_requested",
        format!(
            "you asked us to call you back{about}; we answer within {} minutes of business hours: by {}",
            cb.answer_within_minutes,
            local(zone, due)
        ),
    )];
    if outside {
        let bh = &cb.business_hours;
        reasons.push(Reason::new(
            "outside_business_hours",
            format!(
                "asked outside business hours ({} {}-{} {}): due {} minutes after opening",
                bh.days.join(","),
                bh.open,
                bh.close,
                bh.time_zone,
                cb.answer_within_minutes
            ),
        ));
    }
    let mut c = help_candidate(
        DecisionKind::Callback,
        Channel::Routing,
        &ev.event_id,
        reasons,
        product.iter().cloned().collect(),
        false,
    );
    c.due_at = Some(due);
    let c = with_context(c, state, rules, now);
    let before = out.decisions.len();
    gates::emit(state, c, cause, policy, out);
    if let Some(d) = out.decisions.get(before) {
        debug_assert_eq!(
            d.decision_id,
            callback_decision_id(cause.customer_id, cause.event_id)
        );
        push_bounded(
            &mut state.callbacks,
            OpenCallback {
                decision_id: d.decision_id.clone(),
                cause_event_id: ev.event_id.clone(),
                product_id: product,
                requested_at: now,
                due_at: due,
                escalated: false,
            },
            MAX_OPEN_CALLBACKS,
        );
        out.callbacks.push(CallbackNews::Requested);
    }
}

/// The contact system answered a callback: it is closed, and the latency reported.
pub(super) fn callback_done(state: &mut CustomerState, ev: &ClickEvent, out: &mut Outcome) {
    let id = ev.decision_id.as_deref().unwrap_or("");
    match state.callbacks.iter().position(|c| c.decision_id == id) {
        Some(i) => {
            let cb = state.callbacks.remove(i);
            out.callbacks.push(CallbackNews::Done {
                latency_ms: ev.event_time.since(cb.requested_at).max(0),
                late: cb.escalated || ev.event_time > cb.due_at,
            });
        }
        None => out.callbacks.push(CallbackNews::UnknownDone),
    }
}

/// Callbacks past their due time escalate, once each; escalated ones never reported done are
/// forgotten a week after their due time.
pub(super) fn escalate_overdue(
    state: &mut CustomerState,
    customer_id: &str,
    now: Timestamp,
    rules: &Rules,
    out: &mut Outcome,
) {
    let policy = &rules.policy;
    state
        .callbacks
        .retain(|c| !(c.escalated && now.since(c.due_at) >= FORGET_ESCALATED_MS));
    let zone = shop_zone(policy);
    let overdue: Vec<OpenCallback> = state
        .callbacks
        .iter()
        .filter(|c| !c.escalated && c.due_at <= now)
        .cloned()
        .collect();
    for cb in overdue {
        if let Some(c) = state
            .callbacks
            .iter_mut()
            .find(|c| c.decision_id == cb.decision_id)
        {
            c.escalated = true;
        }
        let mut c = help_candidate(
            DecisionKind::Escalation,
            Channel::Routing,
            &cb.decision_id,
            vec![Reason::new(
                "callback_overdue",
                format!(
                    "a callback asked for at {} was due by {} and is not reported done (callback {})",
                    local(zone, cb.requested_at),
                    local(zone, cb.due_at),
                    cb.decision_id
                ),
            )],
            cb.product_id.iter().cloned().collect(),
            false,
        );
        c.due_at = Some(cb.due_at);
        gates::emit(
            state,
            c,
            &Cause {
                customer_id,
                session_id: None,
                event_id: &cb.cause_event_id,
                now,
            },
            policy,
            out,
        );
        out.callbacks.push(CallbackNews::Breached);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(s: &str) -> Timestamp {
        Timestamp(
            chrono::DateTime::parse_from_rfc3339(s)
                .unwrap()
                .timestamp_millis(),
        )
    }

    fn due(s: &str, minutes: u32, hours: &BusinessHours) -> (Timestamp, bool) {
        callback_due(at(s), minutes, hours).unwrap()
    }

    #[test]
    fn a_callback_is_due_an_hour_of_business_time_later() {
        let h = BusinessHours::default(); // Mon-Fri 09:00-18:00 UTC
                                          // Monday 14:00 -> 15:00.
        assert_eq!(
            due("2026-03-02T14:00:00Z", 60, &h),
            (at("2026-03-02T15:00:00Z"), false)
        );
        // Monday 22:00 -> Tuesday 10:00, outside hours.
        assert_eq!(
            due("2026-03-02T22:00:00Z", 60, &h),
            (at("2026-03-03T10:00:00Z"), true)
        );
        // Monday 17:30: half an hour today, half tomorrow.
        assert_eq!(
            due("2026-03-02T17:30:00Z", 60, &h),
            (at("2026-03-03T09:30:00Z"), false)
        );
        // Friday 20:00 -> Monday 10:00.
        assert_eq!(
            due("2026-03-06T20:00:00Z", 60, &h),
            (at("2026-03-09T10:00:00Z"), true)
        );
        // Early morning: counted from opening.
        assert_eq!(
            due("2026-03-02T07:00:00Z", 60, &h),
            (at("2026-03-02T10:00:00Z"), true)
        );
    }

    #[test]
    fn business_hours_are_the_shops_local_hours() {
        let h = BusinessHours {
            time_zone: "Europe/Berlin".into(),
            ..BusinessHours::default()
        };
        // 22:00 Berlin (21:00 UTC in winter) -> 10:00 Berlin next day (09:00 UTC).
        assert_eq!(
            due("2026-03-02T21:00:00Z", 60, &h),
            (at("2026-03-03T09:00:00Z"), true)
        );
        // Summer time: 10:00 Berlin is 08:00 UTC.
        assert_eq!(
            due("2026-07-06T21:00:00Z", 60, &h),
            (at("2026-07-07T08:00:00Z"), true)
        );
    }
}
