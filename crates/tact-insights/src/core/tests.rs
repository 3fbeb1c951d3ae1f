use super::*;
use tact_core::{Item, Timestamp};

const MIN: i64 = 60_000;
const HOUR: i64 = 60 * MIN;
/// 2024-06-01 00:00 UTC: a window boundary for hour and day windows.
const T0: i64 = 1_717_200_000_000;

fn rules(k: u64) -> Rules {
    let mut sensitivity = SensitivityPolicy::default();
    sensitivity
        .categories
        .insert("health".into(), Tier::NeverRemember);
    Rules {
        window_ms: HOUR,
        session_gap_ms: 30 * MIN,
        max_session_ms: 2 * HOUR,
        min_sessions: k,
        target_pages: vec!["/help/shipping".into()],
        sensitivity,
        ..Rules::default()
    }
}

fn ev(customer: &str, session: &str, t: i64, kind: EventKind, page: &str) -> ClickEvent {
    ClickEvent {
        event_id: format!("{customer}-{t}"),
        customer_id: customer.into(),
        session_id: session.into(),
        event_time: Timestamp(t),
        kind,
        page: Some(page.into()),
        category: None,
        product_id: None,
        search_query: None,
        search_results: None,
        scroll_depth: None,
        dwell_ms: None,
        items: Vec::new(),
        gift: false,
        decision_id: None,
        suggestion_kind: None,
        gpc: false,
    }
}

fn sref(n: usize) -> SessionRef {
    let mut r = [0u8; 16];
    r[..8].copy_from_slice(&(n as u64).to_be_bytes());
    r
}

/// Applies `pages` as one session (a click a minute from `start`) on `partition`.
fn session(
    a: &mut Aggregator,
    partition: i32,
    n: usize,
    start: i64,
    pages: &[(EventKind, &str)],
    tally: &mut Tally,
) {
    for (i, (kind, page)) in pages.iter().enumerate() {
        let e = ev(
            &format!("cust-{n}"),
            &format!("sess-{n}"),
            start + i as i64 * MIN,
            kind.clone(),
            page,
        );
        a.apply(partition, sref(n), &e, tally);
    }
}

fn long_way() -> Vec<(EventKind, &'static str)> {
    vec![
        (EventKind::PageView, "/"),
        (EventKind::CategoryView, "/c/shoes"),
        (EventKind::ProductView, "/p/shoe-1"),
        (EventKind::PageView, "/about"),
        (EventKind::PageView, "/help"),
        (EventKind::FaqView, "/help/shipping"),
    ]
}

/// Closes every partition's shares it can, sends them to their merging partition (as the
/// partials topic would) and returns what the merger publishes, over `count` partitions.
fn close(a: &mut Aggregator, m: &mut Merger, count: i32) -> Vec<ClosedWindow> {
    let w = a.rules().window_ms;
    for p in 0..count {
        let (shares, moved) = a.close_ready(p);
        for share in shares {
            m.receive(merge_partition(share.start, w, count), share);
        }
        if let Some(through) = moved {
            for r in 0..count {
                m.progressed(r, p, through);
            }
        }
    }
    let mut out = Vec::new();
    for r in 0..count {
        out.extend(m.close_ready(r, count));
    }
    out.sort_by_key(|c| c.start);
    out
}

/// Moves every partition far past `t` so everything before it closes, and merges.
fn flush(a: &mut Aggregator, partitions: &[i32], t: i64) -> Vec<ClosedWindow> {
    let mut tally = Tally::default();
    for p in partitions {
        a.advance(*p, t, &mut tally);
    }
    let mut m = Merger::new(a.rules().clone());
    close(a, &mut m, partitions.len() as i32)
}

#[test]
fn a_session_ends_after_the_gap_and_counts_in_the_window_of_its_start() {
    let mut a = Aggregator::new(rules(2));
    let mut t = Tally::default();
    // Starts at 00:50, runs past the hour boundary.
    session(&mut a, 0, 1, T0 + 50 * MIN, &long_way(), &mut t);
    session(&mut a, 0, 2, T0 + 50 * MIN, &long_way(), &mut t);
    assert_eq!(t.sessions_assembled, 0, "the gap has not passed yet");
    a.advance(0, T0 + 55 * MIN + 30 * MIN + 1, &mut t);
    assert_eq!(t.sessions_assembled, 2);
    assert_eq!(
        a.sessions_in_flight(),
        0,
        "buffers are dropped at session end"
    );
    assert_eq!(a.window(0, T0).map(WindowAgg::sessions), Some(2));
    assert!(a.window(0, T0 + HOUR).is_none());
}

#[test]
fn a_gap_inside_one_session_id_starts_a_new_session() {
    let mut a = Aggregator::new(rules(2));
    let mut t = Tally::default();
    a.apply(
        0,
        sref(1),
        &ev("c", "s", T0, EventKind::PageView, "/"),
        &mut t,
    );
    a.apply(
        0,
        sref(1),
        &ev("c", "s", T0 + 31 * MIN, EventKind::PageView, "/"),
        &mut t,
    );
    assert_eq!(t.sessions_assembled, 1);
    assert_eq!(a.sessions_in_flight(), 1);
}

#[test]
fn a_window_closes_only_when_every_partition_has_passed_it() {
    let mut a = Aggregator::new(rules(1 + 1));
    let mut m = Merger::new(rules(2));
    let mut t = Tally::default();
    session(&mut a, 0, 1, T0, &long_way(), &mut t);
    session(&mut a, 1, 2, T0, &long_way(), &mut t);
    a.advance(0, T0 + 10 * HOUR, &mut t);
    assert!(
        close(&mut a, &mut m, 2).is_empty(),
        "partition 1 is still at 00:05"
    );
    a.advance(1, T0 + HOUR + 2 * HOUR - 1, &mut t);
    assert!(
        close(&mut a, &mut m, 2).is_empty(),
        "end + max_session not yet passed"
    );
    a.advance(1, T0 + HOUR + 2 * HOUR, &mut t);
    let closed = close(&mut a, &mut m, 2);
    assert_eq!(closed.len(), 1);
    assert_eq!((closed[0].start, closed[0].end), (T0, T0 + HOUR));
    assert_eq!(closed[0].sessions, 2, "both partitions' shares are merged");
    assert!(
        close(&mut a, &mut m, 2).is_empty(),
        "a closed window is never closed twice"
    );
}

#[test]
fn a_finding_needs_k_distinct_sessions() {
    for (n, published) in [(4usize, false), (5, true)] {
        let mut a = Aggregator::new(rules(5));
        let mut t = Tally::default();
        for s in 0..n {
            session(&mut a, 0, s, T0 + s as i64 * MIN, &long_way(), &mut t);
        }
        // The same session repeating the page adds no support.
        let closed = flush(&mut a, &[0], T0 + 10 * HOUR);
        let hard: Vec<&Finding> = closed[0]
            .findings
            .iter()
            .filter(|f| f.kind == FindingKind::HardToFind)
            .collect();
        assert_eq!(hard.len(), usize::from(published), "{n} sessions");
        if published {
            assert_eq!(hard[0].sessions, 5);
            assert!(closed[0].findings.iter().all(|f| f.sessions >= 5));
        } else {
            assert!(closed[0].findings.is_empty(), "{:?}", closed[0].findings);
            assert!(closed[0].held_back.get(&FindingKind::HardToFind) == Some(&1));
        }
    }
}

#[test]
fn one_session_repeating_a_search_is_one_supporter() {
    let mut a = Aggregator::new(rules(3));
    let mut t = Tally::default();
    for i in 0..10 {
        let mut e = ev("c", "s", T0 + i * MIN, EventKind::Search, "/search");
        e.search_query = Some("Red  Shoes".into());
        e.search_results = Some(0);
        a.apply(0, sref(1), &e, &mut t);
    }
    let closed = flush(&mut a, &[0], T0 + 10 * HOUR);
    assert!(
        closed[0].findings.is_empty(),
        "one person searching ten times is not k=3"
    );
    assert_eq!(
        closed[0].held_back.get(&FindingKind::FailingSearch),
        Some(&1)
    );
}

#[test]
fn hard_to_find_reports_the_median_clicks_and_the_pages_passed_through() {
    let mut a = Aggregator::new(rules(3));
    let mut t = Tally::default();
    for s in 0..4 {
        session(&mut a, 0, s, T0, &long_way(), &mut t);
    }
    // One visitor finds it at once.
    session(
        &mut a,
        0,
        9,
        T0,
        &[(EventKind::FaqView, "/help/shipping")],
        &mut t,
    );
    let closed = flush(&mut a, &[0], T0 + 10 * HOUR);
    let f = closed[0]
        .findings
        .iter()
        .find(|f| f.kind == FindingKind::HardToFind)
        .expect("published");
    assert_eq!(f.subject, "/help/shipping");
    assert_eq!(f.sessions, 5);
    assert_eq!(f.median_clicks, Some(5));
    assert!(f.flagged, "median 5 > threshold 4");
    assert_eq!(
        f.clicks,
        vec![
            Bucket {
                label: "0".into(),
                sessions: 1
            },
            Bucket {
                label: "5".into(),
                sessions: 4
            }
        ]
    );
    let via: Vec<&str> = f.via.iter().map(|b| b.label.as_str()).collect();
    assert!(
        via.contains(&"/c/shoes") && via.contains(&"/help"),
        "{via:?}"
    );
    assert_eq!(
        f.median_seconds,
        Some(600),
        "5 minutes in: the 300-600s bucket"
    );
}

#[test]
fn detours_carry_support_and_confidence() {
    let mut a = Aggregator::new(rules(3));
    let mut t = Tally::default();
    let drift = [
        (EventKind::ProductView, "/p/x"),
        (EventKind::PageView, "/a"),
        (EventKind::PageView, "/b"),
        (EventKind::ProductView, "/p/y"),
    ];
    for s in 0..4 {
        session(&mut a, 0, s, T0, &drift, &mut t);
    }
    // X viewer who goes to Y directly (one step): not a detour, but an X viewer.
    session(
        &mut a,
        0,
        8,
        T0,
        &[
            (EventKind::ProductView, "/p/x"),
            (EventKind::ProductView, "/p/y"),
        ],
        &mut t,
    );
    let closed = flush(&mut a, &[0], T0 + 10 * HOUR);
    let d: Vec<&Finding> = closed[0]
        .findings
        .iter()
        .filter(|f| f.kind == FindingKind::Detour)
        .collect();
    assert_eq!(d.len(), 1, "{d:?}");
    assert_eq!(
        (d[0].subject.as_str(), d[0].related.as_deref()),
        ("/p/x", Some("/p/y"))
    );
    assert_eq!((d[0].sessions, d[0].base_sessions), (4, 5));
    assert!((d[0].share - 0.8).abs() < 1e-9);
}

#[test]
fn dead_ends_failing_searches_and_help_demand_are_found() {
    let mut a = Aggregator::new(rules(3));
    let mut t = Tally::default();
    for s in 0..3 {
        let c = format!("c{s}");
        let mut search = ev(&c, "s", T0, EventKind::Search, "/search");
        search.search_query = Some("gift card".into());
        search.search_results = Some(0);
        let mut faq = ev(&c, "s", T0 + MIN, EventKind::FaqView, "/help/returns");
        faq.scroll_depth = Some(0.9);
        let last = ev(
            &c,
            "s",
            T0 + 2 * MIN,
            EventKind::PageView,
            "/checkout/shipping",
        );
        for e in [search, faq, last] {
            a.apply(0, sref(s), &e, &mut t);
        }
    }
    let closed = flush(&mut a, &[0], T0 + 10 * HOUR);
    let kinds: BTreeMap<FindingKind, &Finding> =
        closed[0].findings.iter().map(|f| (f.kind, f)).collect();
    assert_eq!(kinds[&FindingKind::DeadEnd].subject, "/checkout/shipping");
    assert_eq!(kinds[&FindingKind::FailingSearch].subject, "gift card");
    assert_eq!(kinds[&FindingKind::FailingSearch].sessions, 3);
    // The FAQ was followed by a page view: resolved, so no help-demand finding.
    assert!(!kinds.contains_key(&FindingKind::HelpDemand));
}

#[test]
fn a_deep_faq_read_that_ends_the_session_is_help_demand() {
    let mut a = Aggregator::new(rules(3));
    let mut t = Tally::default();
    for s in 0..3 {
        let mut faq = ev(
            &format!("c{s}"),
            "s",
            T0,
            EventKind::FaqView,
            "/help/returns",
        );
        faq.scroll_depth = Some(0.95);
        a.apply(0, sref(s), &faq, &mut t);
    }
    let closed = flush(&mut a, &[0], T0 + 10 * HOUR);
    let f = closed[0]
        .findings
        .iter()
        .find(|f| f.kind == FindingKind::HelpDemand)
        .expect("help demand");
    assert_eq!(
        (f.subject.as_str(), f.sessions, f.base_sessions),
        ("/help/returns", 3, 3)
    );
}

#[test]
fn never_remember_categories_count_only_in_totals() {
    let mut a = Aggregator::new(rules(2));
    let mut t = Tally::default();
    for s in 0..5 {
        let c = format!("c{s}");
        let mut sensitive = ev(&c, "s", T0, EventKind::ProductView, "/p/pregnancy-test");
        sensitive.category = Some("health".into());
        sensitive.product_id = Some("pregnancy-test".into());
        let mut cart = ev(&c, "s", T0 + MIN, EventKind::AddToCart, "/cart");
        cart.items = vec![Item {
            product_id: "pregnancy-test".into(),
            category: Some("health".into()),
            quantity: 1,
            unit_price_cents: 999,
        }];
        let mut search = ev(&c, "s", T0 + 2 * MIN, EventKind::Search, "/search");
        search.search_query = Some("ovulation".into());
        search.category = Some("health".into());
        search.search_results = Some(0);
        for e in [sensitive, cart, search] {
            a.apply(0, sref(s), &e, &mut t);
        }
    }
    assert_eq!(t.sensitive_events, 15);
    let closed = flush(&mut a, &[0], T0 + 10 * HOUR);
    assert!(
        closed[0].findings.is_empty(),
        "sensitive steps are never keys: {:?}",
        closed[0].findings
    );
    assert!(
        closed[0].held_back.is_empty(),
        "not even as held-back candidates"
    );
    assert_eq!(
        a.closed_through(0),
        T0 + 8 * HOUR,
        "everything ending by watermark - max_session is closed"
    );

    // The totals still count them, and a published finding carries the total.
    let mut a = Aggregator::new(rules(2));
    for s in 0..2 {
        let mut sensitive = ev(&format!("d{s}"), "s", T0, EventKind::ProductView, "/p/pill");
        sensitive.category = Some("health".into());
        a.apply(0, sref(s), &sensitive, &mut t);
        session(&mut a, 0, 100 + s, T0, &long_way(), &mut t);
    }
    let closed = flush(&mut a, &[0], T0 + 10 * HOUR);
    let f = &closed[0].findings[0];
    assert_eq!(f.window_sensitive_events, 2);
    assert!(closed[0]
        .findings
        .iter()
        .all(|f| !f.subject.contains("pill") && f.via.iter().all(|b| !b.label.contains("pill"))));
}

#[test]
fn nothing_stored_or_published_contains_a_customer_or_session_id() {
    let mut a = Aggregator::new(rules(2));
    let mut t = Tally::default();
    for s in 0..6 {
        session(&mut a, s as i32 % 2, s, T0, &long_way(), &mut t);
    }
    // Buffers in flight: no ids inside.
    for s in 0..6 {
        let buf = a.session(s as i32 % 2, &sref(s)).expect("in flight");
        let bytes = crate::codec::encode_session(buf);
        let text = String::from_utf8_lossy(&bytes);
        assert!(!text.contains("cust-") && !text.contains("sess-"), "{text}");
    }
    let closed = flush(&mut a, &[0, 1], T0 + 10 * HOUR);
    assert!(!closed[0].findings.is_empty());
    for f in &closed[0].findings {
        let bytes = crate::codec::encode_finding(f);
        let text = String::from_utf8_lossy(&bytes);
        assert!(!text.contains("cust-") && !text.contains("sess-"), "{text}");
    }
}

#[test]
fn findings_do_not_depend_on_how_partitions_interleave() {
    let build = |order: &[(i32, usize)]| {
        let mut a = Aggregator::new(rules(2));
        let mut m = Merger::new(rules(2));
        let mut t = Tally::default();
        for &(p, s) in order {
            session(&mut a, p, s, T0 + s as i64 * 3 * MIN, &long_way(), &mut t);
            // Window-closing checks in between must not change the outcome.
            assert!(close(&mut a, &mut m, 2).is_empty());
        }
        flush(&mut a, &[0, 1], T0 + 10 * HOUR)
    };
    let one = build(&[(0, 0), (0, 1), (0, 2), (1, 3), (1, 4), (1, 5)]);
    let two = build(&[(1, 3), (0, 0), (1, 4), (0, 1), (1, 5), (0, 2)]);
    assert_eq!(one, two);
    assert!(!one[0].findings.is_empty());
    // Ids are a function of window, kind and key.
    let f = &one[0].findings[0];
    assert_eq!(
        f.finding_id,
        finding_id(T0, f.kind, &f.subject, f.related.as_deref())
    );
}

#[test]
fn a_session_starting_in_a_window_the_partition_has_passed_is_late() {
    let mut a = Aggregator::new(rules(2));
    let mut t = Tally::default();
    // Two sessions agree the partition is 5 hours on.
    for s in [1, 3] {
        a.apply(
            0,
            sref(s),
            &ev("c", "s", T0 + 5 * HOUR, EventKind::PageView, "/"),
            &mut t,
        );
    }
    a.apply(
        0,
        sref(2),
        &ev("d", "s", T0, EventKind::PageView, "/"),
        &mut t,
    );
    assert_eq!(t.late_events, 1);
    assert_eq!(a.sessions_in_flight(), 2);
}

#[test]
fn session_buffers_are_bounded_in_events_and_in_number() {
    let mut r = rules(2);
    r.max_events_per_session = 3;
    r.max_sessions_in_flight = 2;
    let mut a = Aggregator::new(r);
    let mut t = Tally::default();
    session(&mut a, 0, 1, T0, &long_way(), &mut t);
    assert_eq!(a.session(0, &sref(1)).map(|b| b.steps.len()), Some(3));
    session(&mut a, 0, 2, T0 + MIN, &long_way()[..1], &mut t);
    session(&mut a, 0, 3, T0 + 2 * MIN, &long_way()[..1], &mut t);
    assert_eq!(a.sessions_in_flight(), 2);
    assert_eq!(t.sessions_evicted, 1);
    assert!(
        a.session(0, &sref(2)).is_none(),
        "the least recently active one went first"
    );
    a.advance(0, T0 + 10 * HOUR, &mut t);
    assert_eq!(t.sessions_truncated, 1);
}

#[test]
fn changes_describe_exactly_what_the_store_must_write() {
    let mut a = Aggregator::new(rules(2));
    let mut t = Tally::default();
    a.apply(
        0,
        sref(1),
        &ev("c", "s", T0, EventKind::PageView, "/"),
        &mut t,
    );
    let c = a.take_changes();
    assert!(c.sessions_put.contains(&(0, sref(1))));
    // Ended and restarted under the same reference within one batch: overwrite, not delete.
    a.apply(
        0,
        sref(1),
        &ev("c", "s", T0 + HOUR, EventKind::PageView, "/"),
        &mut t,
    );
    let c = a.take_changes();
    assert!(c.sessions_put.contains(&(0, sref(1))));
    assert!(c.sessions_deleted.is_empty());
    assert!(c.windows_put.contains(&(0, T0)));
    // Born and ended in one batch: the store never hears of it.
    a.apply(
        0,
        sref(2),
        &ev("d", "s", T0 + HOUR, EventKind::PageView, "/"),
        &mut t,
    );
    a.advance(0, T0 + 3 * HOUR, &mut t);
    let c = a.take_changes();
    assert!(!c.sessions_put.contains(&(0, sref(2))) && !c.sessions_deleted.contains(&(0, sref(2))));
    assert!(c.sessions_deleted.contains(&(0, sref(1))));
    assert!(c.windows_put.contains(&(0, T0 + HOUR)));
    // Only the share the watermark passed by max_session closes; a closed share is deleted.
    let (shares, moved) = a.close_ready(0);
    assert_eq!(shares.iter().map(|s| s.start).collect::<Vec<_>>(), [T0]);
    assert_eq!(moved, Some(T0 + HOUR));
    let c = a.take_changes();
    assert!(c.windows_deleted.contains(&(0, T0)), "{c:?}");
    assert!(c.closed_through.contains(&0));
    assert!(c.windows_put.is_empty() && !c.windows_deleted.contains(&(0, T0 + HOUR)));
}

#[test]
fn a_replayed_event_the_session_absorbed_only_moves_event_time() {
    let mut a = Aggregator::new(rules(2));
    let mut t = Tally::default();
    let e = ev("c", "s", T0, EventKind::PageView, "/");
    assert!(a.apply_at(0, sref(1), &e, 10, &mut t));
    assert!(
        !a.apply_at(0, sref(1), &e, 10, &mut t),
        "offset 10 is in the buffer"
    );
    assert_eq!(a.session(0, &sref(1)).map(|b| b.steps.len()), Some(1));
    let later = ev("c", "s", T0 + MIN, EventKind::PageView, "/a");
    assert!(a.apply_at(0, sref(1), &later, 11, &mut t));
    assert_eq!(a.session(0, &sref(1)).map(|b| b.steps.len()), Some(2));
}

#[test]
fn a_merger_ignores_a_share_it_has_and_shares_of_windows_already_closed() {
    let mut m = Merger::new(rules(2));
    let share = |source: i32| Partial {
        source,
        start: T0,
        agg: WindowAgg::default(),
    };
    m.receive(0, share(0));
    m.receive(0, share(0));
    let c = m.take_changes();
    assert_eq!(c.shares_put.len(), 1);
    m.progressed(0, 1, T0 + HOUR);
    m.receive(0, share(1));
    assert!(
        m.share(0, T0, 1).is_none(),
        "source 1 closed through the window already"
    );
}

#[test]
fn shares_of_a_window_merged_before_a_move_are_never_merged_again_from_what_is_left() {
    // The partition moved after the merge's progress reached the changelog but before every
    // deletion of the window's shares did: one share is left over.
    let mut m = Merger::new(rules(2));
    m.restore_progress(0, 0, T0 + HOUR);
    m.restore_progress(0, 1, T0 + HOUR);
    m.restore_share(0, T0, 1, WindowAgg::default());
    m.restore_share(0, T0 + HOUR, 0, WindowAgg::default());
    assert_eq!(m.drop_closed(0, 2), 1);
    assert!(
        m.close_ready(0, 2).is_empty(),
        "a merged window closed again"
    );
    assert!(m.take_changes().shares_deleted.contains(&(0, T0, 1)));
    assert!(
        m.share(0, T0 + HOUR, 0).is_some(),
        "an open window's share is kept"
    );
}

#[test]
fn queries_are_normalised_and_bounded() {
    assert_eq!(normalize_query("  Red   SHOES "), "red shoes");
    assert!(normalize_query(&"ä".repeat(300)).len() <= 100);
}

#[test]
fn one_session_stamped_far_ahead_ends_no_other_session_and_makes_no_one_late() {
    let mut a = Aggregator::new(rules(2));
    let mut t = Tally::default();
    for s in [1, 2] {
        a.apply(
            0,
            sref(s),
            &ev("c", "s", T0, EventKind::PageView, "/"),
            &mut t,
        );
    }
    // A device whose clock runs a century ahead, sending again and again.
    for i in 0..3 {
        a.apply(
            0,
            sref(9),
            &ev(
                "f",
                "s",
                T0 + 100 * 365 * 24 * HOUR + i,
                EventKind::PageView,
                "/",
            ),
            &mut t,
        );
    }
    assert_eq!(
        t.sessions_assembled, 0,
        "no session was ended by the forger's time"
    );
    assert_eq!(a.sessions_in_flight(), 3);
    a.apply(
        0,
        sref(3),
        &ev("d", "s", T0 + MIN, EventKind::PageView, "/"),
        &mut t,
    );
    assert_eq!(t.late_events, 0, "a normal event is not late");
}

#[test]
fn failing_searches_say_whether_the_knowledge_base_answers_them() {
    let faq = tact_core::KnowledgeBase::from_toml(
        "[[entry]]\nid = \"vouchers\"\nquestion = \"How do gift cards work?\"\nanswer = \"...\"\nkeywords = [\"gift card\", \"voucher\"]\n",
    )
    .unwrap();
    let mut a = Aggregator::new(Rules { faq, ..rules(2) });
    let mut t = Tally::default();
    for s in 0..2 {
        let c = format!("c{s}");
        for (i, q) in ["gift card", "zebra xylophone"].iter().enumerate() {
            let mut search = ev(&c, "s", T0 + i as i64 * MIN, EventKind::Search, "/search");
            search.search_query = Some((*q).into());
            search.search_results = Some(0);
            a.apply(0, sref(s), &search, &mut t);
        }
    }
    let closed = flush(&mut a, &[0], T0 + 10 * HOUR);
    let answer = |q: &str| {
        let f = closed[0]
            .findings
            .iter()
            .find(|f| f.kind == FindingKind::FailingSearch && f.subject == q)
            .unwrap_or_else(|| panic!("no finding for {q}: {:?}", closed[0].findings));
        (f.faq_answer.clone(), f.summary.clone())
    };
    let (id, summary) = answer("gift card");
    assert_eq!(id.as_deref(), Some("vouchers"), "{summary}");
    let (id, summary) = answer("zebra xylophone");
    assert_eq!(id, None);
    assert!(summary.contains("no FAQ answer matches"), "{summary}");
}
