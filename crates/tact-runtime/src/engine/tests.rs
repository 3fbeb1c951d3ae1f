use super::*;
use tact_codec::{decode_decision, encode_click, encode_command, InputFormat};
use tact_core::{ClickEvent, CommandBody, ProfileCommand, Purpose, Timestamp};
use tact_store::MemoryStore;
use tact_telemetry::Names;

const T0: i64 = 1_763_800_000_000;

fn engine() -> Engine<MemoryStore> {
    let settings = Settings::load(None, &[]).expect("defaults");
    Engine::new(
        settings,
        MemoryStore::new(),
        Arc::new(Metrics::new("test", &Names::default())),
    )
    .expect("engine")
}

fn click(id: &str, customer: &str, minute: i64, category: &str, product: &str) -> Vec<u8> {
    let mut ev = ClickEvent::new(
        id,
        customer,
        &format!("s-{}", minute / 60),
        Timestamp(T0 + minute * 60_000),
        tact_core::EventKind::ProductView,
    );
    ev.category = Some(category.into());
    ev.product_id = Some(product.into());
    encode_click(&ev, InputFormat::AvroConfluent, 1)
}

fn consent(customer: &str) -> Vec<u8> {
    encode_command(
        &ProfileCommand {
            command_id: "k".into(),
            customer_id: customer.into(),
            issued_at: Timestamp(T0),
            body: CommandBody::SetConsent {
                purpose: Purpose::Personalization,
                channel: None,
                granted: true,
                source: "test".into(),
                expires_at: None,
            },
        },
        InputFormat::Json,
        0,
    )
}

fn input(source: Source, offset: i64, value: Vec<u8>) -> Input {
    let topic = match source {
        Source::Clickstream => "clickstream",
        Source::ProfileCommands => "profile-commands",
        Source::Catalog => "catalog",
    };
    Input {
        source,
        topic: topic.into(),
        partition: 0,
        offset,
        key: Some(b"c1".to_vec()),
        value: Some(value),
    }
}

fn batch() -> Vec<Input> {
    let mut b = vec![input(Source::ProfileCommands, 0, consent("c1"))];
    for i in 0..3 {
        b.push(input(
            Source::Clickstream,
            i,
            click(&format!("e{i}"), "c1", i, "shoes", &format!("p{i}")),
        ));
    }
    b
}

#[test]
fn a_batch_writes_state_offsets_and_decisions_in_one_commit() {
    let mut e = engine();
    let out = e.process(batch(), vec![]).expect("process");
    let decisions: Vec<_> = out
        .records
        .iter()
        .filter(|(_, r)| r.topic == "decisions")
        .collect();
    assert_eq!(decisions.len(), 1);
    let decision = decode_decision(&decisions[0].1.payload).expect("decision");
    assert_eq!(decision.kind, "RECOMMENDATION");
    assert_eq!(decision.items, ["p2", "p1", "p0"]);
    let store = e.store();
    assert_eq!(store.applied_offset("clickstream", 0).expect("o"), Some(2));
    assert_eq!(
        store.applied_offset("profile-commands", 0).expect("o"),
        Some(0)
    );
    assert_eq!(
        store.pending_outbox().expect("outbox").len(),
        out.records.len(),
        "every record is durable before it is produced"
    );
}

#[test]
fn replaying_an_applied_batch_changes_nothing_and_emits_nothing() {
    let mut e = engine();
    e.process(batch(), vec![]).expect("first");
    let state_before = e.store().multi_get(&[b"c1"]).expect("get");
    // A fresh engine on the same store: the restart case, with an empty offset cache.
    let settings = Settings::load(None, &[]).expect("defaults");
    let mut restarted = Engine::new(
        settings,
        MemoryStore::new(),
        Arc::new(Metrics::new("t", &Names::default())),
    )
    .expect("e");
    std::mem::swap(&mut restarted.store, &mut e.store);
    let out = restarted.process(batch(), vec![]).expect("replay");
    assert!(out.records.is_empty());
    assert_eq!(restarted.summary.skipped, 4);
    assert_eq!(
        restarted.store().multi_get(&[b"c1"]).expect("get"),
        state_before
    );
}

#[test]
fn bad_records_become_dead_letters_in_the_same_commit_and_the_offset_advances() {
    let mut e = engine();
    let mut b = batch();
    b.push(input(Source::Clickstream, 3, vec![0, 0, 0, 0, 1, 0xff]));
    b.push(input(Source::Clickstream, 4, vec![]));
    let out = e.process(b, vec![]).expect("process");
    let dead: Vec<_> = out
        .records
        .iter()
        .filter(|(_, r)| r.topic == "tact-dead-letter")
        .collect();
    assert_eq!(dead.len(), 2);
    assert_eq!(e.summary.dead_lettered, 2);
    assert_eq!(
        e.store().applied_offset("clickstream", 0).expect("o"),
        Some(4)
    );
}

#[test]
fn erase_deletes_the_stored_state() {
    let mut e = engine();
    e.process(batch(), vec![]).expect("process");
    let erase = encode_command(
        &ProfileCommand {
            command_id: "x".into(),
            customer_id: "c1".into(),
            issued_at: Timestamp(T0 + 1),
            body: CommandBody::Erase { request_ref: None },
        },
        InputFormat::Json,
        0,
    );
    e.process(vec![input(Source::ProfileCommands, 1, erase)], vec![])
        .expect("erase");
    assert_eq!(e.store().multi_get(&[b"c1"]).expect("get"), vec![None]);
}

fn cart(id: &str, customer: &str, minute: i64) -> Vec<u8> {
    let mut ev = ClickEvent::new(
        id,
        customer,
        "s-cart",
        Timestamp(T0 + minute * 60_000),
        tact_core::EventKind::AddToCart,
    );
    ev.category = Some("shoes".into());
    ev.product_id = Some("boot-1".into());
    encode_click(&ev, InputFormat::AvroConfluent, 1)
}

fn marketing(customer: &str) -> Vec<u8> {
    encode_command(
        &ProfileCommand {
            command_id: "m".into(),
            customer_id: customer.into(),
            issued_at: Timestamp(T0),
            body: CommandBody::SetConsent {
                purpose: Purpose::Marketing,
                channel: None,
                granted: true,
                source: "test".into(),
                expires_at: None,
            },
        },
        InputFormat::Json,
        0,
    )
}

#[test]
fn an_abandoned_cart_is_nudged_once_when_other_customers_event_time_passes_its_due_time() {
    let mut e = engine();
    // Customer c1 adds to cart at 09:00 local (UTC) and goes quiet.
    e.process(
        vec![
            input(Source::ProfileCommands, 0, marketing("c1")),
            input(Source::Clickstream, 0, cart("e-cart", "c1", 9 * 60)),
        ],
        vec![],
    )
    .expect("cart");
    // Another customer's event 3 hours later moves event time past the 2-hour abandonment mark.
    let mut later = input(
        Source::Clickstream,
        1,
        click("e-other", "c2", 12 * 60, "books", "b1"),
    );
    later.key = Some(b"c2".to_vec());
    let out = e.process(vec![later], vec![]).expect("later");
    let nudges: Vec<_> = out
        .records
        .iter()
        .filter(|(_, r)| r.topic == "decisions")
        .map(|(_, r)| decode_decision(&r.payload).expect("decision"))
        .filter(|d| d.kind == "OUTBOUND_NUDGE")
        .collect();
    assert_eq!(nudges.len(), 1, "{nudges:?}");
    assert_eq!(nudges[0].customer_id, "c1");
    assert_eq!(nudges[0].channel, "EMAIL");
    assert_eq!(nudges[0].cause_event_id, "e-cart");
    assert_eq!(nudges[0].items, ["boot-1"]);
    // The nudge is not repeated by later event time.
    let mut even_later = input(
        Source::Clickstream,
        2,
        click("e-other2", "c2", 20 * 60, "books", "b2"),
    );
    even_later.key = Some(b"c2".to_vec());
    let out = e.process(vec![even_later], vec![]).expect("even later");
    assert!(out
        .records
        .iter()
        .all(|(_, r)| decode_decision(&r.payload).map_or(true, |d| d.kind != "OUTBOUND_NUDGE")));
}

#[test]
fn an_idle_timer_check_with_nothing_due_keeps_the_acknowledged_outbox_entries_to_delete() {
    let mut e = engine();
    let mut acknowledged = vec![3, 4];
    assert!(e
        .fire_timers(T0, &[0], &mut acknowledged)
        .expect("fire")
        .is_none());
    assert_eq!(
        acknowledged,
        [3, 4],
        "nothing committed, so nothing may be forgotten"
    );
}

#[test]
fn idle_wall_clock_time_ends_sessions_and_nudges_abandoned_carts() {
    let mut e = engine();
    e.process(
        vec![
            input(Source::ProfileCommands, 0, marketing("c1")),
            input(Source::Clickstream, 0, cart("e-cart", "c1", 9 * 60)),
        ],
        vec![],
    )
    .expect("cart");
    let mut acknowledged = vec![];
    let fired = e
        .fire_timers(T0 + 12 * 3_600_000, &[0], &mut acknowledged)
        .expect("fire")
        .expect("a timer was due");
    let kinds: Vec<String> = fired
        .records
        .iter()
        .filter(|(_, r)| r.topic == "decisions")
        .map(|(_, r)| decode_decision(&r.payload).expect("decision").kind)
        .collect();
    assert_eq!(kinds, ["OUTBOUND_NUDGE"]);
    let state = e.store().multi_get(&[b"c1"]).expect("get")[0]
        .clone()
        .expect("state");
    let state = tact_codec::decode_state(&state).expect("decode");
    assert!(
        state.session.is_none(),
        "the lapsed session ended and its in-session data is gone"
    );
    assert!(
        e.fire_timers(T0 + 13 * 3_600_000, &[0], &mut acknowledged)
            .expect("fire")
            .is_none(),
        "fires once"
    );
}

#[test]
fn more_timers_due_at_one_instant_than_a_page_all_fire_without_stalling() {
    let mut e = engine();
    let carts: Vec<Input> = (0..1001)
        .map(|i| {
            let mut inp = input(
                Source::Clickstream,
                i,
                cart(&format!("e{i}"), &format!("c{i}"), 9 * 60),
            );
            inp.key = Some(format!("c{i}").into_bytes());
            inp
        })
        .collect();
    e.process(carts, vec![]).expect("carts");
    let mut nudged = std::collections::HashSet::new();
    for (offset, minute) in [(1001, 12 * 60), (1002, 12 * 60 + 1)] {
        let mut tick = input(
            Source::Clickstream,
            offset,
            click(&format!("t{offset}"), "clock", minute, "books", "b"),
        );
        tick.key = Some(b"clock".to_vec());
        let out = e.process(vec![tick], vec![]).expect("tick");
        for (_, r) in &out.records {
            if let Ok(s) = tact_codec::decode_suppressed(&r.payload) {
                if s.kind == "OUTBOUND_NUDGE" {
                    assert!(
                        nudged.insert(s.customer_id.clone()),
                        "nudged twice: {}",
                        s.customer_id
                    );
                }
            }
        }
    }
    assert_eq!(
        nudged.len(),
        1001,
        "every abandoned cart was considered exactly once"
    );
}

fn command(id: &str, customer: &str, minute: i64, body: CommandBody) -> Vec<u8> {
    encode_command(
        &ProfileCommand {
            command_id: id.into(),
            customer_id: customer.into(),
            issued_at: Timestamp(T0 + minute * 60_000),
            body,
        },
        InputFormat::Json,
        0,
    )
}

fn on(partition: i32, source: Source, offset: i64, value: Vec<u8>) -> Input {
    Input {
        partition,
        ..input(source, offset, value)
    }
}

fn release_input(offset: i64, subject: &str) -> Input {
    let r = tact_core::Release {
        release_id: format!("r{offset}"),
        subject: subject.into(),
        title: "New".into(),
        product_ids: vec!["lego-9".into()],
        category: Some("toys".into()),
        released_at: Timestamp(T0 + 3_600_000),
    };
    input(
        Source::Catalog,
        offset,
        tact_codec::encode_release(&r, InputFormat::Json, 0),
    )
}

fn decisions_of(records: &[(u64, OutboxRecord)], kind: &str) -> Vec<String> {
    records
        .iter()
        .filter(|(_, r)| r.topic == "decisions")
        .filter_map(|(_, r)| decode_decision(&r.payload).ok())
        .filter(|d| d.kind == kind)
        .map(|d| d.customer_id)
        .collect()
}

/// Followers on three partitions, one without marketing consent, one who unfollowed, and more
/// than one page of them: each consenting follower gets the release once, nobody else does, and
/// a re-read of the same catalog record adds nothing.
#[test]
fn a_release_reaches_each_consenting_follower_once_across_partitions() {
    let mut e = engine();
    let follow = |c: &str, on_: bool| {
        command(
            "f",
            c,
            0,
            CommandBody::Follow {
                subject: "brickworks".into(),
                follow: on_,
            },
        )
    };
    let marketing = |c: &str| {
        command(
            "m",
            c,
            0,
            CommandBody::SetConsent {
                purpose: Purpose::Marketing,
                channel: None,
                granted: true,
                source: "test".into(),
                expires_at: None,
            },
        )
    };
    let mut offsets = [0i64; 3];
    let mut batch = Vec::new();
    let mut push = |p: i32, value: Vec<u8>| {
        batch.push(on(p, Source::ProfileCommands, offsets[p as usize], value));
        offsets[p as usize] += 1;
    };
    let mut expected = Vec::new();
    for i in 0..1203 {
        let c = format!("c{i:04}");
        let p = i % 3;
        push(p, follow(&c, true));
        if i % 10 != 7 {
            push(p, marketing(&c));
            expected.push(c.clone());
        }
    }
    push(1, follow("c0000", false));
    expected.retain(|c| c != "c0000");
    // Someone who follows another subject only.
    push(
        2,
        command(
            "g",
            "zed",
            0,
            CommandBody::Follow {
                subject: "other".into(),
                follow: true,
            },
        ),
    );
    push(2, marketing("zed"));
    e.process(batch, vec![]).expect("commands");

    let r = release_input(0, "brickworks");
    let mut reached = Vec::new();
    let mut pages = 0;
    loop {
        let (processed, done) = e.process_release(&r, vec![]).expect("release");
        reached.extend(decisions_of(&processed.records, "NEW_RELEASE"));
        pages += 1;
        if done {
            break;
        }
        assert!(pages < 10, "the release never finishes");
    }
    assert!(pages >= 3, "{pages} page(s) for 1200 followers");
    reached.sort();
    expected.sort();
    assert_eq!(reached, expected);
    let (again, done) = e.process_release(&r, vec![]).expect("re-read");
    assert!(
        done && again.records.is_empty(),
        "an applied release is skipped"
    );
}

/// A crash between two pages of one release: the restarted engine resumes after the last page
/// committed, so nobody gets it twice and nobody is missed.
#[test]
fn a_release_interrupted_between_pages_resumes_where_it_stopped() {
    let store = Arc::new(MemoryStore::new());
    let settings = Settings::load(None, &[]).expect("defaults");
    let metrics = Arc::new(Metrics::new("test", &Names::default()));
    let mut e = Engine::new(settings.clone(), store.clone(), metrics.clone()).expect("engine");
    let mut batch = Vec::new();
    for i in 0..700 {
        let c = format!("c{i:04}");
        batch.push(input(
            Source::ProfileCommands,
            2 * i,
            command(
                "f",
                &c,
                0,
                CommandBody::Follow {
                    subject: "brickworks".into(),
                    follow: true,
                },
            ),
        ));
        batch.push(input(
            Source::ProfileCommands,
            2 * i + 1,
            command(
                "m",
                &c,
                0,
                CommandBody::SetConsent {
                    purpose: Purpose::Marketing,
                    channel: None,
                    granted: true,
                    source: "test".into(),
                    expires_at: None,
                },
            ),
        ));
    }
    e.process(batch, vec![]).expect("commands");
    let r = release_input(0, "brickworks");
    let (first, done) = e.process_release(&r, vec![]).expect("page 1");
    assert!(!done);
    drop(e); // crash: the in-memory caches are gone, the store stays
    let mut e = Engine::new(settings, store, metrics).expect("restart");
    let mut rest = Vec::new();
    for page in 0.. {
        assert!(page < 5, "the resumed release never finishes");
        let (p, done) = e.process_release(&r, vec![]).expect("page");
        rest.extend(decisions_of(&p.records, "NEW_RELEASE"));
        if done {
            break;
        }
    }
    let mut all = decisions_of(&first.records, "NEW_RELEASE");
    all.extend(rest);
    let n = all.len();
    all.sort();
    all.dedup();
    assert_eq!((n, all.len()), (700, 700));
}

/// Decisions about a customer still waiting in the outbox when they are erased are never sent.
#[test]
fn erase_drops_the_customers_unsent_records() {
    let mut e = engine();
    let first = e.process(batch(), vec![]).expect("batch");
    let pending: Vec<u64> = first.records.iter().map(|(s, _)| *s).collect();
    assert!(!pending.is_empty(), "the batch decided something about c1");
    let erase = command("x", "c1", 10, CommandBody::Erase { request_ref: None });
    let mut b = vec![input(
        Source::Clickstream,
        3,
        click("e3", "c1", 9, "shoes", "p3"),
    )];
    b.push(input(Source::ProfileCommands, 1, erase));
    let processed = e.process(b, vec![]).expect("erase");
    let mut dropped = processed.dropped.clone();
    dropped.sort_unstable();
    assert_eq!(dropped, pending, "every earlier record about c1 is dropped");
    assert_eq!(processed.records.len(), 1, "only the receipt goes out");
    assert_eq!(processed.records[0].1.topic, "tact-erasure-receipts");
    assert!(e
        .store()
        .pending_outbox()
        .expect("outbox")
        .iter()
        .all(|(s, _)| !pending.contains(s)));
}
