//! Properties of help hand-offs over random sessions: a context never holds a `never_remember`
//! category or anything from another session, and help the visitor asked for (a chat, a call) is
//! never held back by the context or fatigue gates, whatever came before (dismissals, caps,
//! quiet hours, holdout, consent).

use proptest::prelude::*;
use tact_core::{
    apply_command, apply_event, apply_timer, Catalog, ClickEvent, CommandBody, CustomerState,
    DecisionKind, EventKind, FaqEntry, KnowledgeBase, Policy, Product, ProfileCommand, Purpose,
    Rules, Tier, Timestamp,
};

const START: i64 = 1_772_445_600_000; // 2026-03-02 10:00 UTC, a Monday
const MIN: i64 = 60_000;

#[derive(Debug, Clone)]
enum Op {
    /// (kind index, category index, product number, dwell, results, scroll)
    Event(usize, usize, u8, u64, u32, bool),
    Consent(usize, bool),
    Tick(i64),
}

const KINDS: [EventKind; 10] = [
    EventKind::PageView,
    EventKind::ProductView,
    EventKind::Search,
    EventKind::FaqView,
    EventKind::AddToCart,
    EventKind::SuggestionDismissed,
    EventKind::CategoryView,
    EventKind::ChatRequested,
    EventKind::CallbackRequested,
    EventKind::CallbackDone,
];
/// `health` is never_remember, `lingerie` session_only, the rest normal.
const CATEGORIES: [&str; 4] = ["shoes", "health", "lingerie", "books"];
const PURPOSES: [Purpose; 3] = [
    Purpose::Personalization,
    Purpose::ProactiveChat,
    Purpose::Marketing,
];

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        8 => (0..KINDS.len(), 0..CATEGORIES.len(), 0u8..4, 0u64..60_000, 0u32..4, any::<bool>())
            .prop_map(|(k, c, p, d, r, s)| Op::Event(k, c, p, d, r, s)),
        1 => (0..PURPOSES.len(), any::<bool>()).prop_map(|(p, g)| Op::Consent(p, g)),
        1 => (1i64..90).prop_map(Op::Tick),
    ]
}

fn policy() -> impl Strategy<Value = Policy> {
    (0u32..3, 0u32..30, 0.0f64..0.5, any::<bool>(), 0u32..2).prop_map(
        |(max, backoff, holdout, quiet, chat_cap)| {
            let mut p = Policy::default();
            // A cap on the chat channel (a proactive offer counts against it; a hand-off must not stop).
            p.fatigue.caps.push(tact_core::policy::Cap {
                kind: None,
                channel: Some(tact_core::Channel::Chat),
                max: chat_cap,
                per: tact_core::policy::Window::Session,
            });
            p.sensitivity
                .categories
                .insert("health".into(), Tier::NeverRemember);
            p.sensitivity
                .categories
                .insert("lingerie".into(), Tier::SessionOnly);
            p.fatigue.interruption_max_dismissals = max;
            p.fatigue.interruption_backoff_minutes = backoff;
            p.holdout.share = holdout;
            if quiet {
                // Quiet around the clock: nothing outbound, and nothing asked-for held back.
                p.quiet_hours.start = "00:00".into();
                p.quiet_hours.end = "23:59".into();
            }
            p
        },
    )
}

fn rules(policy: Policy) -> Rules {
    let product = |c: &str, n: u8| Product {
        id: format!("{c}-{n}"),
        category: c.to_owned(),
        name: None,
        compatible_with: Vec::new(),
    };
    let products: Vec<Product> = CATEGORIES
        .iter()
        .flat_map(|c| (0..4).map(move |n| product(c, n)))
        .collect();
    let faq = KnowledgeBase::new(
        CATEGORIES
            .iter()
            .map(|c| FaqEntry {
                id: format!("faq-{c}"),
                question: format!("questions about {c}"),
                answer: format!("answers about {c}"),
                keywords: vec![c.to_string()],
                page: Some(format!("/help/{c}")),
            })
            .collect(),
    );
    Rules {
        policy,
        catalog: Catalog::new(products).expect("catalog"),
        faq,
    }
}

/// Runs `ops` in two visits (`first`, then `second` after a long gap) and checks every output of
/// the second visit.
fn check(
    policy: Policy,
    customer: &str,
    first: Vec<Op>,
    second: Vec<Op>,
) -> Result<(), TestCaseError> {
    let rules = rules(policy);
    let mut state = CustomerState::default();
    let mut now = START;
    let mut n = 0;
    let mut last_callback: Option<String> = None;
    for (visit, ops) in [("a", first), ("b", second)] {
        if visit == "b" {
            now += 3 * 60 * MIN;
        }
        for op in ops {
            now += MIN;
            n += 1;
            match op {
                Op::Consent(p, granted) => {
                    apply_command(
                        &mut state,
                        &ProfileCommand {
                            command_id: format!("c{n}"),
                            customer_id: customer.into(),
                            issued_at: Timestamp(now),
                            body: CommandBody::SetConsent {
                                purpose: PURPOSES[p],
                                channel: None,
                                granted,
                                source: "banner".into(),
                                expires_at: None,
                            },
                        },
                        &rules,
                    );
                }
                Op::Tick(m) => {
                    now += m * MIN;
                    let out = apply_timer(&mut state, customer, Timestamp(now), &rules);
                    for d in &out.decisions {
                        prop_assert!(d.context.is_none() || d.kind != DecisionKind::Escalation);
                    }
                }
                Op::Event(k, c, p, dwell, results, deep) => {
                    let category = CATEGORIES[c];
                    let kind = KINDS[k].clone();
                    let mut ev = ClickEvent::new(
                        &format!("e{n}"),
                        customer,
                        &format!("visit-{visit}"),
                        Timestamp(now),
                        kind.clone(),
                    );
                    // Every visit-specific value carries the visit's marker.
                    ev.page = Some(match kind {
                        EventKind::FaqView => format!("/help/{category}"),
                        _ => format!("/{visit}/{category}/{n}"),
                    });
                    ev.category = Some(category.to_owned());
                    ev.product_id = Some(format!("{category}-{p}"));
                    ev.search_query = Some(format!("{visit}q {category}"));
                    ev.search_results = Some(results);
                    ev.dwell_ms = Some(dwell);
                    ev.scroll_depth = Some(if deep { 0.9 } else { 0.1 });
                    ev.suggestion_kind =
                        Some(["recommendation", "chat_handoff", "callback"][p as usize % 3].into());
                    if kind == EventKind::CallbackDone {
                        ev.decision_id = last_callback.clone();
                    }
                    let out = apply_event(&mut state, &ev, &rules);
                    let asked = match kind {
                        EventKind::ChatRequested => Some(DecisionKind::ChatHandoff),
                        EventKind::CallbackRequested => Some(DecisionKind::Callback),
                        _ => None,
                    };
                    if let Some(asked) = asked {
                        let got: Vec<_> =
                            out.decisions.iter().filter(|d| d.kind == asked).collect();
                        prop_assert_eq!(got.len(), 1, "{:?} yielded {:?}", kind, out);
                        if asked == DecisionKind::Callback {
                            last_callback = Some(got[0].decision_id.clone());
                        }
                    }
                    for s in &out.suppressed {
                        prop_assert!(
                            !s.kind.is_asked_for(),
                            "asked-for {} suppressed by {:?}/{}",
                            s.kind.as_str(),
                            s.gate,
                            s.reason_code
                        );
                    }
                    for d in &out.decisions {
                        let Some(ctx) = &d.context else { continue };
                        let text = format!("{ctx:?} {:?}", d.suggested_answers);
                        prop_assert!(
                            !text.contains("health"),
                            "a never_remember category in a context: {text}"
                        );
                        if visit == "b" {
                            prop_assert!(
                                !text.contains("/a/") && !text.contains("aq "),
                                "data from another session in a context: {text}"
                            );
                        }
                        if !d.kind.is_asked_for() || d.kind == DecisionKind::ChatHandoff {
                            continue;
                        }
                        // A callback is answered after the visit: no session_only data.
                        prop_assert!(
                            !text.contains("lingerie"),
                            "a session_only category in a callback's context: {text}"
                        );
                    }
                }
            }
        }
    }
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 256, ..ProptestConfig::default() })]

    #[test]
    fn contexts_hold_only_this_sessions_rememberable_data_and_asked_for_help_always_comes(
        policy in policy(),
        customer in 0u32..40,
        first in proptest::collection::vec(op(), 0..25),
        second in proptest::collection::vec(op(), 1..25),
    ) {
        check(policy, &format!("cust-{customer}"), first, second)?;
    }
}
