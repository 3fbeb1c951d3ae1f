//! `apply_event`, `apply_command`, `apply_timer`: fold one input into a customer's state, propose
//! candidates, and pass each through the gate chain ([`crate::gates`]).
//!
//! Candidates are proposed at most once per session and subject (a suppressed one included), so
//! the audit trail records decisions, not repetitions.

use crate::catalog::Catalog;
use crate::decision::{Channel, Decision, DecisionKind, Reason, Suppressed};
use crate::event::{ClickEvent, CommandBody, EventKind, ProfileCommand, Purpose};
use crate::gates::{self, consent, Candidate, ConsentAnswer, Evidence};
use crate::id::{digest64, stable_id};
use crate::policy::{Policy, Tier};
use crate::state::{
    Backoff, Cart, CartItem, CategoryInterest, ConsentRecord, CustomerState, Emitted, Gift,
    GiftMode, PingPong, Purchase, Recipient, SeenEvent, Session,
};
use crate::time::Timestamp;

/// Consent records created by a Global Privacy Control signal carry this source.
pub const GPC_SOURCE: &str = "global_privacy_control";
const DAY_MS: i64 = 24 * 3_600_000;
/// Emitted decisions older than the longest cap window are forgotten.
const HISTORY_MS: i64 = 7 * DAY_MS;
/// Proposals remembered per session (for "once per session and subject").
const MAX_PROPOSED: usize = 64;
/// Events kept as the evidence of one inferred interest.
const MAX_EVIDENCE: usize = 5;

/// Everything the core decides with besides the state and the input.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Rules {
    pub policy: Policy,
    pub catalog: Catalog,
}

/// What one input produced.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Outcome {
    pub decisions: Vec<Decision>,
    pub suppressed: Vec<Suppressed>,
    /// The event repeated one applied recently (same event id): it changed nothing.
    pub duplicate: bool,
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
        candidates.extend(detect_struggle(state, ev, policy));
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
    for c in candidates {
        gate(
            state,
            c,
            &ev.customer_id,
            Some(&ev.session_id),
            &ev.event_id,
            now,
            policy,
            &mut out,
        );
    }
    out
}

/// Learned memory lives only as long as personalization consent does: when consent lapses (an
/// expiry, a withdrawal), what was inferred under it goes.
fn forget_without_consent(state: &mut CustomerState, policy: &Policy, now: Timestamp) {
    // An expired consent is no consent: drop the record (the regime decides from here on).
    state
        .consents
        .retain(|r| r.expires_at.is_none_or(|t| t > now));
    timers::expire_learned(state, policy, now);
    let learned_gifts = state
        .recipients
        .iter()
        .any(|r| !r.gifts.is_empty() || !r.viewed.is_empty());
    if (!state.interests.is_empty() || !state.purchases.is_empty() || learned_gifts)
        && !granted(
            state,
            Purpose::Personalization,
            Channel::OnSite,
            policy,
            now,
        )
    {
        forget_learned(state);
    }
}

/// Drops what was inferred from behaviour (not what the customer stated).
fn forget_learned(state: &mut CustomerState) {
    state.interests.clear();
    state.purchases.clear();
    for r in &mut state.recipients {
        r.gifts.clear();
        r.viewed.clear();
    }
}

/// True when the customer should never be offered `product`: already bought, or filed (in the
/// catalog) under a category they excluded or made private.
fn unwanted(state: &CustomerState, rules: &Rules, product: &str) -> bool {
    let prefs = &state.preferences;
    state.purchases.iter().any(|p| p.product_id == product)
        || rules.catalog.get(product).is_some_and(|p| {
            prefs.excluded_categories.contains(&p.category)
                || prefs.private_categories.contains(&p.category)
        })
}

/// The customer's reactions to earlier suggestions: back off after dismissals, reset on a click,
/// relax after engagement.
fn feedback(state: &mut CustomerState, ev: &ClickEvent, policy: &Policy) {
    let kind = ev
        .suggestion_kind
        .as_deref()
        .and_then(DecisionKind::from_name);
    match (&ev.kind, kind) {
        (EventKind::SuggestionDismissed, Some(kind)) => {
            let f = &policy.fatigue;
            let idx = match state.backoff.iter().position(|b| b.kind == kind) {
                Some(i) => i,
                None => {
                    state.backoff.push(Backoff {
                        kind,
                        dismissals: 0,
                        until: ev.event_time,
                    });
                    state.backoff.len() - 1
                }
            };
            let b = &mut state.backoff[idx];
            b.dismissals = b.dismissals.saturating_add(1);
            let hours = f64::from(f.backoff_base_hours)
                * f.backoff_factor.powi(b.dismissals.saturating_sub(1) as i32);
            let capped = hours.min(f64::from(f.backoff_max_days) * 24.0);
            b.until = Timestamp(ev.event_time.millis() + (capped * 3_600_000.0) as i64);
        }
        (EventKind::SuggestionClicked, Some(kind)) => state.backoff.retain(|b| b.kind != kind),
        (EventKind::AddToCart | EventKind::Purchase | EventKind::ChatOpened, _) => {
            // Engagement: each counts as one dismissal forgiven (the window stays as it was).
            for b in &mut state.backoff {
                b.dismissals = b.dismissals.saturating_sub(1);
            }
            state
                .backoff
                .retain(|b| b.dismissals > 0 || ev.event_time < b.until);
        }
        _ => {}
    }
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

#[allow(clippy::too_many_arguments)]
fn bump(
    list: &mut Vec<CategoryInterest>,
    category: &str,
    product: Option<&str>,
    event_id: &str,
    now: Timestamp,
    policy: &Policy,
    decay: bool,
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
                evidence: Vec::new(),
            });
            list.len() - 1
        }
    };
    let entry = &mut list[idx];
    if decay {
        // Time decay: interest halves every half-life without a view.
        let half_life = f64::from(policy.recommendation.interest_half_life_days) * DAY_MS as f64;
        let age = now.since(entry.last_viewed_at).max(0) as f64;
        if age > 0.0 {
            entry.views = (f64::from(entry.views) * 0.5f64.powf(age / half_life)).round() as u32;
        }
    }
    entry.views = entry.views.saturating_add(1);
    entry.last_viewed_at = entry.last_viewed_at.max(now);
    if let Some(product) = product {
        entry.recent_products.retain(|p| p != product);
        entry.recent_products.insert(0, product.to_owned());
        entry
            .recent_products
            .truncate(policy.max_recent_products as usize);
    }
    if !entry.evidence.iter().any(|e| e == event_id) {
        entry.evidence.insert(0, event_id.to_owned());
        entry.evidence.truncate(MAX_EVIDENCE);
    }
}

#[allow(clippy::too_many_arguments)]
fn record_evidence(
    state: &mut CustomerState,
    ev: &ClickEvent,
    rules: &Rules,
    categories: &[String],
    personalized: bool,
    gift: bool,
    recipient: Option<&str>,
    session_only: bool,
) {
    let policy = &rules.policy;
    let now = ev.event_time;
    let product = ev
        .product_id
        .as_deref()
        .or_else(|| ev.items.first().map(|i| i.product_id.as_str()));
    let feeds = matches!(
        ev.kind,
        EventKind::CategoryView
            | EventKind::ProductView
            | EventKind::AddToCart
            | EventKind::Purchase
    );
    // Shopping for someone else says nothing about the buyer's own taste: it is kept (with
    // consent) against the recipient being shopped for, if one is named.
    if feeds && gift && personalized && !session_only {
        if let (Some(category), Some(r)) = (
            categories.first(),
            recipient.and_then(|id| state.recipients.iter_mut().find(|r| r.recipient_id == id)),
        ) {
            bump(
                &mut r.viewed,
                category,
                product,
                &ev.event_id,
                now,
                policy,
                false,
            );
            if ev.kind == EventKind::Purchase {
                for item in &ev.items {
                    let category = item
                        .category
                        .clone()
                        .or_else(|| ev.category.clone())
                        .or_else(|| {
                            rules
                                .catalog
                                .get(&item.product_id)
                                .map(|p| p.category.clone())
                        });
                    r.gifts.retain(|g| g.product_id != item.product_id);
                    r.gifts.push(Gift {
                        product_id: item.product_id.clone(),
                        category,
                        at: now,
                        event_id: ev.event_id.clone(),
                    });
                }
                let max = policy.max_purchases as usize;
                if r.gifts.len() > max {
                    let excess = r.gifts.len() - max;
                    r.gifts.drain(..excess);
                }
            }
        }
    }
    if feeds && !gift {
        if let Some(category) = categories.first() {
            if let Some(session) = state.session.as_mut() {
                bump(
                    &mut session.category_views,
                    category,
                    product,
                    &ev.event_id,
                    now,
                    policy,
                    false,
                );
            }
            if personalized && !session_only {
                bump(
                    &mut state.interests,
                    category,
                    product,
                    &ev.event_id,
                    now,
                    policy,
                    true,
                );
            }
        }
    }
    match ev.kind {
        EventKind::AddToCart
            if !session_only && (ev.product_id.is_some() || !ev.items.is_empty()) =>
        {
            let cap = policy.max_purchases as usize;
            let cart = state.cart.get_or_insert_with(|| Cart {
                items: Vec::new(),
                last_added_at: now,
                last_added_event: ev.event_id.clone(),
                nudged: false,
                defer_until: None,
            });
            let added = ev
                .items
                .iter()
                .map(|i| (i.product_id.as_str(), i.category.as_deref()))
                .chain(ev.product_id.as_deref().map(|p| (p, None)));
            for (id, category) in added {
                let category = category
                    .or(ev.category.as_deref())
                    .or_else(|| rules.catalog.get(id).map(|p| p.category.as_str()))
                    .map(str::to_owned);
                cart.items.retain(|x| x.product_id != id);
                cart.items.push(CartItem {
                    product_id: id.to_owned(),
                    category,
                });
            }
            // Bounded: the most recent additions are the ones worth a reminder.
            if cart.items.len() > cap {
                let excess = cart.items.len() - cap;
                cart.items.drain(..excess);
            }
            cart.last_added_at = now;
            cart.last_added_event = ev.event_id.clone();
            cart.nudged = false;
            cart.defer_until = None;
        }
        EventKind::Purchase => {
            state.cart = None;
            if let Some(session) = state.session.as_mut() {
                session.purchased = true;
            }
            if personalized && !gift && !session_only {
                for item in &ev.items {
                    let category = item.category.clone().or_else(|| {
                        rules
                            .catalog
                            .get(&item.product_id)
                            .map(|p| p.category.clone())
                    });
                    state.purchases.retain(|p| p.product_id != item.product_id);
                    state.purchases.push(Purchase {
                        product_id: item.product_id.clone(),
                        category,
                        at: now,
                    });
                }
                let max = policy.max_purchases as usize;
                if state.purchases.len() > max {
                    let excess = state.purchases.len() - max;
                    state.purchases.drain(..excess);
                }
            }
        }
        _ => {}
    }
}

/// Struggle detectors: in-session behaviour that says "this visitor is stuck".
fn detect_struggle(state: &mut CustomerState, ev: &ClickEvent, policy: &Policy) -> Vec<Candidate> {
    let h = &policy.proactive_help;
    let Some(s) = state.session.as_mut() else {
        return Vec::new();
    };
    let mut found: Vec<(&'static str, String)> = Vec::new();
    let dwell = ev.dwell_ms.unwrap_or(0);
    match ev.kind {
        EventKind::FaqView => {
            let deep = ev.scroll_depth.is_some_and(|d| d >= h.faq_min_scroll)
                || dwell >= h.faq_min_dwell_ms;
            if deep {
                s.faq_deep_reads += 1;
            }
            if s.faq_deep_reads >= h.faq_min_pages {
                found.push((
                    "faq_struggle",
                    format!(
                        "you read {} help pages in depth without finding an answer",
                        s.faq_deep_reads
                    ),
                ));
            }
        }
        EventKind::Search => {
            let results = ev.search_results.unwrap_or(0);
            if results <= h.search_few_results {
                let quick = s
                    .last_failed_search_at
                    .is_some_and(|t| ev.event_time.since(t) <= h.search_reformulation_ms);
                s.search_failures += if quick { 2 } else { 1 };
                s.last_failed_search_at = Some(ev.event_time);
                if s.search_failures >= h.search_min_failures {
                    found.push((
                        "failing_search",
                        "your searches found little or nothing".to_owned(),
                    ));
                }
            } else {
                s.search_failures = 0;
                s.last_failed_search_at = None;
            }
        }
        EventKind::ProductView => {
            if let (Some(cat), Some(product)) = (ev.category.as_deref(), ev.product_id.as_deref()) {
                let long = dwell >= h.pingpong_min_dwell_ms;
                match s.pingpong.as_mut() {
                    Some(p) if p.category == cat => {
                        if p.last_product != product && long {
                            p.switches += 1;
                            if !p.products.iter().any(|x| x == product) {
                                p.products.push(product.to_owned());
                            }
                        }
                        p.last_product = product.to_owned();
                        if p.switches >= h.pingpong_min_switches && p.products.len() >= 2 {
                            found.push((
                                "product_pingpong",
                                format!(
                                    "you compared {} products back and forth",
                                    p.products.len()
                                ),
                            ));
                        }
                    }
                    _ => {
                        s.pingpong = Some(PingPong {
                            category: cat.to_owned(),
                            last_product: product.to_owned(),
                            products: vec![product.to_owned()],
                            switches: 0,
                        })
                    }
                }
            }
            // Looking at a product resolves an FAQ hunt.
            s.faq_deep_reads = 0;
        }
        EventKind::PageView => {
            let page = ev.page.as_deref().unwrap_or("");
            if page.starts_with("/cart") || page.starts_with("/checkout") {
                s.checkout_returns += 1;
                if s.checkout_returns >= h.checkout_min_returns {
                    found.push((
                        "checkout_loop",
                        format!("you came back to checkout {} times", s.checkout_returns),
                    ));
                }
            }
        }
        EventKind::AddToCart => {
            s.pingpong = None;
            s.faq_deep_reads = 0;
        }
        EventKind::Purchase | EventKind::ChatOpened => {
            s.checkout_returns = 0;
            s.faq_deep_reads = 0;
            s.search_failures = 0;
            s.pingpong = None;
        }
        _ => {}
    }
    // One proposal per detector per session, suppressed or not: the audit records decisions,
    // not every further page of the same struggle.
    found.retain(|(detector, _)| {
        !s.proposed
            .iter()
            .any(|(k, x)| *k == DecisionKind::ProactiveHelp && x == detector)
    });
    found
        .into_iter()
        .map(|(detector, detail)| Candidate {
            kind: DecisionKind::ProactiveHelp,
            channel: h.channel,
            subject: detector.to_owned(),
            personalized: true,
            items: Vec::new(),
            reasons: vec![Reason::new(detector, detail)],
            evidence: Evidence::InSession,
            categories: Vec::new(),
            in_session: true,
        })
        .collect()
}

fn proposed(state: &CustomerState, kind: DecisionKind, subject: &str) -> bool {
    state
        .session
        .as_ref()
        .is_some_and(|s| s.proposed.iter().any(|(k, x)| *k == kind && x == subject))
}

fn welcome_back(state: &mut CustomerState, rules: &Rules, now: Timestamp) -> Option<Candidate> {
    let policy = &rules.policy;
    let session = state.session.as_mut()?;
    if session.welcomed {
        return None;
    }
    session.welcomed = true;
    let mut reasons = vec![Reason::new(
        "returning_visitor",
        format!(
            "you are back after more than {} minutes",
            policy.session_gap_minutes
        ),
    )];
    let personal = granted(
        state,
        Purpose::Personalization,
        Channel::OnSite,
        policy,
        now,
    ) && state.preferences.suggestions_enabled != Some(false)
        // While recommendations are backed off after dismissals, a greeting listing the
        // customer's products would be the dismissed suggestion in another form: keep it plain.
        && !state
            .backoff
            .iter()
            .any(|b| b.kind == DecisionKind::Recommendation && now < b.until);
    let mut items = Vec::new();
    let mut categories = Vec::new();
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
                .filter(|p| !unwanted(state, rules, p))
                .take(policy.recommendation.max_items as usize)
                .cloned()
                .collect();
            if !items.is_empty() {
                categories.push(top.category.clone());
                reasons.push(Reason::new(
                    "recent_interest",
                    format!("you looked at {} {} time(s)", top.category, top.views),
                ));
            }
        }
    }
    // Without consent (or anything learned) the greeting carries nothing about the customer.
    Some(Candidate {
        kind: DecisionKind::WelcomeBack,
        channel: Channel::OnSite,
        subject: String::new(),
        personalized: !items.is_empty(),
        items,
        reasons,
        evidence: Evidence::Browsing,
        categories,
        in_session: false,
    })
}

fn recommendation(
    state: &CustomerState,
    ev: &ClickEvent,
    rules: &Rules,
    category: &str,
    personalized: bool,
    session_only: bool,
) -> Option<Candidate> {
    let policy = &rules.policy;
    let kind = DecisionKind::Recommendation;
    if proposed(state, kind, category) {
        return None;
    }
    let purchased = |id: &String| unwanted(state, rules, id);
    let stated = state
        .preferences
        .stated_interests
        .iter()
        .any(|c| c == category);
    let session = state.session.as_ref()?;
    // With consent the evidence spans sessions; without it only this session counts.
    let evidence = if personalized && !session_only {
        state.interests.iter().find(|c| c.category == category)
    } else {
        session
            .category_views
            .iter()
            .find(|c| c.category == category)
    };
    let viewed: Vec<String> = evidence
        .map(|e| {
            e.recent_products
                .iter()
                .filter(|p| !purchased(p))
                .cloned()
                .collect()
        })
        .unwrap_or_default();
    let max = policy.recommendation.max_items as usize;
    // Stated beats inferred: a stated interest needs no threshold.
    let (items, reasons, basis) = if stated {
        let mut items: Vec<String> = rules
            .catalog
            .in_category(category)
            .map(|p| p.id.clone())
            .filter(|p| !purchased(p))
            .take(max)
            .collect();
        if items.is_empty() {
            items = viewed.into_iter().take(max).collect();
        }
        (
            items,
            vec![Reason::new(
                "stated_interest",
                format!("you told us you like {category}"),
            )],
            Evidence::Stated,
        )
    } else {
        let e = evidence?;
        if e.views < policy.recommendation.min_category_views {
            return None;
        }
        let reason = Reason::new(
            "category_interest",
            format!("you looked at {category} {} time(s)", e.views),
        );
        (
            viewed.into_iter().take(max).collect(),
            vec![reason],
            Evidence::Browsing,
        )
    };
    if items.is_empty() {
        return None;
    }
    let _ = ev;
    Some(Candidate {
        kind,
        channel: Channel::OnSite,
        subject: category.to_owned(),
        personalized: true,
        items,
        reasons,
        evidence: basis,
        categories: vec![category.to_owned()],
        in_session: !personalized || session_only,
    })
}

fn compatible_accessory(
    state: &CustomerState,
    rules: &Rules,
    category: &str,
    now: Timestamp,
) -> Option<Candidate> {
    let policy = &rules.policy;
    let kind = DecisionKind::CompatibleAccessory;
    if rules.catalog.is_empty() || proposed(state, kind, category) {
        return None;
    }
    let max_age = i64::from(policy.compatible_accessory.max_purchase_age_days) * DAY_MS;
    let owned: Vec<&Purchase> = state
        .purchases
        .iter()
        .rev()
        .filter(|p| now.since(p.at) <= max_age)
        .collect();
    for purchase in owned {
        let items: Vec<String> = rules
            .catalog
            .compatible_in(category, &purchase.product_id)
            .map(|p| p.id.clone())
            .filter(|id| !state.purchases.iter().any(|p| &p.product_id == id))
            .take(policy.compatible_accessory.max_items as usize)
            .collect();
        if items.is_empty() {
            continue;
        }
        let name = rules
            .catalog
            .get(&purchase.product_id)
            .and_then(|p| p.name.clone())
            .unwrap_or_else(|| purchase.product_id.clone());
        let days = now.since(purchase.at) / DAY_MS;
        let mut categories = vec![category.to_owned()];
        categories.extend(purchase.category.clone());
        return Some(Candidate {
            kind,
            channel: Channel::OnSite,
            subject: category.to_owned(),
            personalized: true,
            items,
            reasons: vec![Reason::new(
                "fits_your_purchase",
                format!("these fit the {name} you bought {days} days ago"),
            )],
            evidence: Evidence::Explicit,
            categories,
            in_session: false,
        });
    }
    None
}

/// "Email them about what they looked at": proposed so the audit shows it is refused (context
/// gate), never sent. Browsing alone never justifies outbound contact.
fn browse_followup(
    state: &CustomerState,
    ev: &ClickEvent,
    categories: &[String],
) -> Option<Candidate> {
    let session = state.session.as_ref()?;
    let product = ev.product_id.as_deref()?;
    let category = categories.first()?;
    let looked = session
        .category_views
        .iter()
        .find(|c| &c.category == category)?;
    if looked.views < 3
        || state.cart.is_some()
        || proposed(state, DecisionKind::OutboundNudge, category)
    {
        return None;
    }
    Some(Candidate {
        kind: DecisionKind::OutboundNudge,
        channel: Channel::Email,
        subject: category.clone(),
        personalized: true,
        items: vec![product.to_owned()],
        reasons: vec![Reason::new(
            "browsed_product",
            format!("looked at {category} several times"),
        )],
        evidence: Evidence::Browsing,
        categories: categories.to_vec(),
        in_session: false,
    })
}

/// Runs `c` through the gates and records the result.
#[allow(clippy::too_many_arguments)]
fn gate(
    state: &mut CustomerState,
    c: Candidate,
    customer_id: &str,
    session_id: Option<&str>,
    cause: &str,
    now: Timestamp,
    policy: &Policy,
    out: &mut Outcome,
) {
    let verdict = gates::check(state, &c, customer_id, policy, now);
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
        cause,
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
                cause_event_id: cause.to_owned(),
                created_at: now,
                expires_at: now.plus_minutes(policy.decision_ttl_minutes),
                policy_version: policy.version.clone(),
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
            cause_event_id: cause.to_owned(),
            created_at: now,
            policy_version: policy.version.clone(),
        }),
    }
}

/// Drops the session and everything that lived only in it.
fn end_session(state: &mut CustomerState) {
    if let Some(ended) = state.session.take() {
        if let Some(gift) = &state.gift_mode {
            if gift.until.is_none() && gift.session_id.as_deref() == Some(ended.id.as_str()) {
                state.gift_mode = None;
            }
        }
    }
}

#[allow(clippy::too_many_arguments)]
fn record_consent(
    state: &mut CustomerState,
    purpose: Purpose,
    channel: Option<Channel>,
    granted: bool,
    source: &str,
    at: Timestamp,
    expires_at: Option<Timestamp>,
) {
    state
        .consents
        .retain(|r| !(r.purpose == purpose && r.channel == channel));
    state.consents.push(ConsentRecord {
        purpose,
        channel,
        granted,
        source: source.to_owned(),
        at,
        expires_at,
    });
}

/// Folds one profile command into `state`. The last command applied wins.
pub fn apply_command(
    state: &mut CustomerState,
    cmd: &ProfileCommand,
    rules: &Rules,
) -> CommandEffect {
    let policy = &rules.policy;
    forget_without_consent(state, policy, cmd.issued_at);
    match &cmd.body {
        CommandBody::SetConsent {
            purpose,
            channel,
            granted,
            source,
            expires_at,
        } => {
            record_consent(
                state,
                *purpose,
                *channel,
                *granted,
                source,
                cmd.issued_at,
                *expires_at,
            );
            // Withdrawing personalization consent also forgets what was inferred under it.
            if !self::granted(
                state,
                Purpose::Personalization,
                Channel::OnSite,
                policy,
                cmd.issued_at,
            ) {
                forget_learned(state);
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
            let is_private = |c: &str| private.iter().any(|p| p == c);
            // A product the catalog files under a private category goes wherever it was seen.
            let filed_private = |id: &String| {
                rules
                    .catalog
                    .get(id)
                    .is_some_and(|p| is_private(&p.category))
            };
            state.interests.retain(|c| !is_private(&c.category));
            for c in &mut state.interests {
                c.recent_products.retain(|p| !filed_private(p));
            }
            for r in &mut state.recipients {
                r.viewed.retain(|c| !is_private(&c.category));
                for c in &mut r.viewed {
                    c.recent_products.retain(|p| !filed_private(p));
                }
                r.gifts.retain(|g| {
                    !g.category.as_deref().is_some_and(is_private) && !filed_private(&g.product_id)
                });
            }
            state.purchases.retain(|p| {
                !p.category.as_deref().is_some_and(is_private) && !filed_private(&p.product_id)
            });
            if let Some(cart) = state.cart.as_mut() {
                cart.items.retain(|i| {
                    let filed = rules
                        .catalog
                        .get(&i.product_id)
                        .map(|p| p.category.as_str());
                    !i.category.as_deref().is_some_and(is_private) && !filed.is_some_and(is_private)
                });
                if cart.items.is_empty() {
                    state.cart = None;
                }
            }
            if let Some(session) = state.session.as_mut() {
                session.category_views.retain(|c| !is_private(&c.category));
                for c in &mut session.category_views {
                    c.recent_products.retain(|p| !filed_private(p));
                }
                session.proposed.retain(|(_, s)| !is_private(s));
                if session.pingpong.as_ref().is_some_and(|p| {
                    is_private(&p.category)
                        || filed_private(&p.last_product)
                        || p.products.iter().any(filed_private)
                }) {
                    session.pingpong = None;
                }
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
            // An update keeps what was bought for them; a new birthday starts reminders afresh.
            match state
                .recipients
                .iter_mut()
                .find(|r| &r.recipient_id == recipient_id)
            {
                Some(r) => {
                    if &r.birthday != birthday {
                        r.birthday = birthday.clone();
                        r.added_at = cmd.issued_at;
                        r.reminded_year = None;
                    }
                    r.name = name.clone();
                    r.interests = interests.clone();
                }
                None => state.recipients.push(Recipient {
                    recipient_id: recipient_id.clone(),
                    name: name.clone(),
                    birthday: birthday.clone(),
                    interests: interests.clone(),
                    added_at: cmd.issued_at,
                    gifts: Vec::new(),
                    viewed: Vec::new(),
                    reminded_year: None,
                }),
            }
        }
        CommandBody::RemoveRecipient { recipient_id } => {
            state.recipients.retain(|r| &r.recipient_id != recipient_id)
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

mod release;
mod timers;

pub use release::apply_release;
pub use timers::{apply_timer, next_due, pending_timers, PendingTimer, TimerKind};

#[cfg(test)]
mod tests;
