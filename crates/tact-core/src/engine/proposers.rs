//! Proposers: from the state and the current event, the candidates worth gating (welcome back,
//! recommendations, compatible accessories, struggle help, the refused browse follow-up).
//!
//! Invariant: a proposer only proposes; whether anything reaches the customer is the gate
//! chain's call, and each (kind, subject) is proposed at most once per session.

use super::help;
use super::memory::unwanted;
use super::{granted, Rules, DAY_MS};
use crate::decision::{Channel, DecisionKind, Reason};
use crate::event::{ClickEvent, EventKind, Purpose};
use crate::gates::{Candidate, Evidence};
use crate::state::{CustomerState, PingPong, Purchase};

/// Products a ping-pong tracker remembers (the agent's "compared" list).
const MAX_COMPARED: usize = 10;
use crate::time::Timestamp;

/// Struggle detectors: in-session behaviour that says "this visitor is stuck".
///
/// The exact rules (pinned by `tests/golden/struggle_detectors_*.toml`, documented in
/// `deploy/policy.toml`):
/// - `faq_struggle`: `faq_min_pages` FAQ views this session each read in depth (scroll at least
///   `faq_min_scroll` or dwell at least `faq_min_dwell_ms`), with no product view, cart addition,
///   purchase or chat in between.
/// - `failing_search`: searches with at most `search_few_results` results add 1 each, 2 when
///   within `search_reformulation_ms` of the previous failed one; a search that finds more
///   resets; fires at `search_min_failures`.
/// - `product_pingpong`: within one category, going back to a product already viewed this
///   session (A -> B -> A), each look lasting `pingpong_min_dwell_ms`; fires at
///   `pingpong_min_returns` returns. Many different products, each once, never fire.
/// - `checkout_loop`: `checkout_min_returns` views of a `/cart` or `/checkout` page without a
///   purchase.
pub(super) fn detect_struggle(
    state: &mut CustomerState,
    ev: &ClickEvent,
    rules: &Rules,
) -> Vec<Candidate> {
    let policy = &rules.policy;
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
                            if p.products.iter().any(|x| x == product) {
                                // Back to one already looked at: comparing, undecided.
                                p.returns += 1;
                            } else if p.products.len() < MAX_COMPARED {
                                p.products.push(product.to_owned());
                            }
                        }
                        p.last_product = product.to_owned();
                        if p.returns >= h.pingpong_min_returns {
                            found.push((
                                "product_pingpong",
                                format!(
                                    "you went back and forth between {} products",
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
                            returns: 0,
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
        EventKind::Purchase | EventKind::ChatOpened | EventKind::ChatRequested => {
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
    let state = &*state;
    found
        .into_iter()
        .map(|(detector, detail)| Candidate {
            kind: DecisionKind::ProactiveHelp,
            channel: h.channel,
            subject: detector.to_owned(),
            personalized: true,
            items: Vec::new(),
            context: Some(help::context(state, rules, true, Some((detector, &detail)))),
            answers: help::suggested_answers(state, rules, true),
            reasons: vec![Reason::new(detector, detail)],
            evidence: Evidence::InSession,
            categories: Vec::new(),
            in_session: true,
            due_at: None,
        })
        .collect()
}

pub(super) fn proposed(state: &CustomerState, kind: DecisionKind, subject: &str) -> bool {
    state
        .session
        .as_ref()
        .is_some_and(|s| s.proposed.iter().any(|(k, x)| *k == kind && x == subject))
}

pub(super) fn welcome_back(
    state: &mut CustomerState,
    rules: &Rules,
    now: Timestamp,
) -> Option<Candidate> {
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
        context: None,
        answers: Vec::new(),
        due_at: None,
    })
}

pub(super) fn recommendation(
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
        context: None,
        answers: Vec::new(),
        due_at: None,
    })
}

pub(super) fn compatible_accessory(
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
            context: None,
            answers: Vec::new(),
            due_at: None,
        });
    }
    None
}

/// "Email them about what they looked at": proposed so the audit shows it is refused (context
/// gate), never sent. Browsing alone never justifies outbound contact.
pub(super) fn browse_followup(
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
        context: None,
        answers: Vec::new(),
        due_at: None,
    })
}
