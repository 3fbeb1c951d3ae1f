use super::*;
use std::time::Duration;
use tact_codec::{decode_decision, encode_click, encode_command, InputFormat};
use tact_core::{ClickEvent, CommandBody, ProfileCommand, Purpose, Timestamp};
use tact_edge::{Offline, OfflineTopics, OutRecord, OutboxEntry};
use tact_kafka::Kind;
use tact_store::{decode_i64, encode_i64, MemoryStore, StateKey};
use tact_telemetry::Names;
use work::COMMANDS;

const T0: i64 = 1_763_800_000_000;

/// The job driven offline: every emit is committed as the edge commits it (outputs and
/// changelog records in the outbox, applied offsets in the partition's metadata), and records at
/// or below the applied offset are skipped. The outbox is kept, as if nothing were acknowledged.
struct Run {
    off: Offline<Pipeline>,
    store: Arc<MemoryStore>,
}

#[derive(Debug, Default)]
struct Out {
    records: Vec<(u64, OutRecord)>,
    withdrawn: Vec<u64>,
}

fn settings() -> Arc<Settings> {
    let mut s = Settings::load(None, &[]).expect("defaults");
    // Records of one input alone go at once (the interleaving has its own tests).
    s.interleave_wait = Duration::ZERO;
    Arc::new(s)
}

impl Run {
    fn new() -> Run {
        Run::on(Arc::new(MemoryStore::new()))
    }

    /// A fresh job on `store`: the restart case (nothing in memory, everything in the store).
    fn on(store: Arc<MemoryStore>) -> Run {
        let job = Pipeline::new(
            settings(),
            Arc::new(Metrics::new("test", &Names::default())),
        );
        let topics = OfflineTopics {
            driving: "clickstream".into(),
            co_partitioned: vec!["profile-commands".into()],
            changelog: "tact-changelog".into(),
        };
        let mut off = Offline::new(job, store.clone(), topics, &[0, 1, 2], 3).expect("offline");
        off.keep_outbox = true;
        Run { off, store }
    }

    fn out(p: tact_edge::Produced) -> Out {
        Out {
            records: p.outputs,
            withdrawn: p.withdrawn,
        }
    }

    fn applied(&self, p: Partition, input: Input) -> i64 {
        let topic = match input {
            CLICKS => "clickstream",
            _ => "profile-commands",
        };
        self.store
            .meta(p, &MetaKey::Applied(topic.into()))
            .expect("meta")
            .and_then(|v| decode_i64(&v))
            .unwrap_or(-1)
    }

    fn feed(&mut self, records: Vec<Record>) -> Out {
        Run::out(self.off.feed(records).expect("process"))
    }

    fn global(&mut self, record: &Record) -> (Out, bool) {
        // One page per call: the test looks at the pages.
        let partitions = [0, 1, 2];
        let cx = Cx {
            store: &*self.store,
            partitions: &partitions,
            partition_count: 3,
        };
        let (emit, done) = self.off.job.process_global(&cx, record).expect("global");
        (Run::out(self.off.commit(emit).expect("commit")), done)
    }

    fn idle(&mut self, now: i64) -> Out {
        Run::out(self.off.idle(now).expect("idle"))
    }

    fn state(&self, p: Partition, id: &str) -> Option<tact_core::CustomerState> {
        let k = StateKey::Customer(id.into());
        self.store.multi_get(&[(p, &k)]).expect("get")[0]
            .as_ref()
            .map(|v| envelope::decode(v).expect("envelope").1)
    }
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

fn consent(customer: &str, purpose: Purpose) -> Vec<u8> {
    command(
        "k",
        customer,
        0,
        CommandBody::SetConsent {
            purpose,
            channel: None,
            granted: true,
            source: "test".into(),
            expires_at: None,
        },
    )
}

fn rec(input: Input, partition: i32, offset: i64, customer: &str, value: Vec<u8>) -> Record {
    Record {
        input,
        partition,
        offset,
        key: Some(customer.as_bytes().to_vec()),
        value: Some(value),
    }
}

fn batch() -> Vec<Record> {
    let mut b = vec![rec(
        COMMANDS,
        0,
        0,
        "c1",
        consent("c1", Purpose::Personalization),
    )];
    for i in 0..3 {
        b.push(rec(
            CLICKS,
            0,
            i,
            "c1",
            click(&format!("e{i}"), "c1", i, "shoes", &format!("p{i}")),
        ));
    }
    b
}

fn decisions_of(out: &Out, kind: &str) -> Vec<tact_codec::DecodedDecision> {
    out.records
        .iter()
        .filter(|(_, r)| r.topic == "decisions")
        .filter_map(|(_, r)| decode_decision(r.value.as_deref().unwrap_or_default()).ok())
        .filter(|d| d.kind == kind)
        .collect()
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

#[test]
fn a_batch_writes_state_offsets_and_decisions_in_one_emit() {
    let mut run = Run::new();
    let out = run.feed(batch());
    let recs = decisions_of(&out, "RECOMMENDATION");
    assert_eq!(recs.len(), 1);
    assert_eq!(recs[0].items, ["p2", "p1", "p0"]);
    assert_eq!(run.applied(0, CLICKS), 2);
    assert_eq!(run.applied(0, COMMANDS), 0);
    let outbox: Vec<OutboxEntry> = run
        .store
        .outbox(0)
        .expect("outbox")
        .iter()
        .map(|(_, v)| OutboxEntry::decode(v).expect("entry"))
        .collect();
    assert_eq!(
        outbox.iter().filter(|e| e.kind == Kind::Output).count(),
        out.records.len(),
        "every record is durable before it is produced"
    );
    assert!(
        outbox
            .iter()
            .any(|e| e.kind == Kind::ChangelogData && e.record.topic == "tact-changelog"),
        "the customer's new state is on its way to the changelog"
    );
    assert!(run.state(0, "c1").is_some_and(|s| s.visits == 1));
}

#[test]
fn replaying_an_applied_batch_on_a_restarted_job_changes_nothing_and_emits_nothing() {
    let mut run = Run::new();
    run.feed(batch());
    let before = run.state(0, "c1");
    let mut restarted = Run::on(run.store.clone());
    let out = restarted.feed(batch());
    assert!(out.records.is_empty());
    assert_eq!(restarted.off.skipped, 4);
    assert_eq!(restarted.state(0, "c1"), before);
}

/// A restore can bring back a batch's states without its applied offsets (a crash between the
/// two reaching the changelog). The input after the restored offsets is then read again: every
/// customer who already absorbed it must stay as they are.
#[test]
fn a_state_restored_without_its_batchs_offsets_never_absorbs_the_same_input_twice() {
    let mut run = Run::new();
    let first = run.feed(batch());
    let before = run.state(0, "c1").expect("state");
    // The changelog held the state but lost the applied offsets: they are back at "nothing".
    run.store
        .commit(&Commit {
            meta_puts: vec![
                (0, MetaKey::Applied("clickstream".into()), encode_i64(-1)),
                (
                    0,
                    MetaKey::Applied("profile-commands".into()),
                    encode_i64(-1),
                ),
            ],
            ..Commit::default()
        })
        .expect("commit");
    let mut restored = Run::on(run.store.clone());
    let again = restored.feed(batch());
    assert_eq!(restored.off.skipped, 0, "the edge did re-read the input");
    assert!(
        decisions_of(&again, "RECOMMENDATION").is_empty(),
        "nothing is decided twice: {:?}",
        again.records
    );
    assert_eq!(restored.state(0, "c1"), Some(before), "views counted once");
    assert!(!first.records.is_empty());
}

#[test]
fn bad_records_become_dead_letters_in_the_same_commit_and_the_offset_advances() {
    let mut run = Run::new();
    let mut b = batch();
    b.push(rec(CLICKS, 0, 3, "c1", vec![0, 0, 0, 0, 1, 0xff]));
    b.push(rec(CLICKS, 0, 4, "c1", vec![]));
    let out = run.feed(b);
    let dead = out
        .records
        .iter()
        .filter(|(_, r)| r.topic == "tact-dead-letter")
        .count();
    assert_eq!(dead, 2);
    assert_eq!(run.off.job.summary().dead_lettered, 2);
    assert_eq!(run.applied(0, CLICKS), 4);
}

#[test]
fn erase_deletes_the_stored_state_and_its_receipt_says_where_the_tombstone_went() {
    let mut run = Run::new();
    run.feed(batch());
    let erase = command("x", "c1", 10, CommandBody::Erase { request_ref: None });
    let out = run.feed(vec![rec(COMMANDS, 0, 1, "c1", erase)]);
    assert_eq!(run.state(0, "c1"), None);
    let receipt = out
        .records
        .iter()
        .find(|(_, r)| r.topic == "tact-erasure-receipts")
        .expect("a receipt");
    let bytes = receipt.1.value.as_deref().unwrap_or_default();
    assert!(
        bytes
            .windows(b"tact-changelog".len())
            .any(|w| w == b"tact-changelog"),
        "the receipt names the changelog that got the tombstone"
    );
}

#[test]
fn an_erase_command_id_or_reference_built_from_the_customer_id_keeps_no_trace_of_them_in_the_receipt(
) {
    let mut run = Run::new();
    run.feed(batch());
    let erase = command(
        "erase-C1-17",
        "c1",
        10,
        CommandBody::Erase {
            request_ref: Some("ticket for c1".into()),
        },
    );
    let out = run.feed(vec![rec(COMMANDS, 0, 1, "c1", erase)]);
    let (_, receipt) = out
        .records
        .iter()
        .find(|(_, r)| r.topic == "tact-erasure-receipts")
        .expect("a receipt");
    let value = receipt.value.as_deref().unwrap_or_default();
    for bytes in [&receipt.key[..], value] {
        let text = String::from_utf8_lossy(bytes).to_lowercase();
        // (Not "c1" alone: hex digests may contain it.)
        assert!(
            !text.contains("erase-c1") && !text.contains("ticket for"),
            "the receipt keeps an id that names the customer: {text:?}"
        );
    }
    let command_ref = super::erasure::digest("erase-C1-17");
    assert_eq!(
        receipt.key,
        command_ref.as_bytes(),
        "keyed by the digest of the command id"
    );
    let reference = super::erasure::digest("ticket for c1");
    assert!(value
        .windows(reference.len())
        .any(|w| w == reference.as_bytes()));
}

#[test]
fn an_abandoned_cart_is_nudged_once_when_other_customers_event_time_passes_its_due_time() {
    let mut run = Run::new();
    // Customer c1 adds to cart at 09:00 local (UTC) and goes quiet.
    run.feed(vec![
        rec(COMMANDS, 0, 0, "c1", consent("c1", Purpose::Marketing)),
        rec(CLICKS, 0, 0, "c1", cart("e-cart", "c1", 9 * 60)),
    ]);
    // Two other customers' events 3 hours later move event time past the 2-hour abandonment
    // mark (one alone would not: see the clock).
    let out = run.feed(vec![
        rec(
            CLICKS,
            0,
            1,
            "c2",
            click("e-other", "c2", 12 * 60, "books", "b1"),
        ),
        rec(
            CLICKS,
            0,
            2,
            "c3",
            click("e-third", "c3", 12 * 60, "books", "b1"),
        ),
    ]);
    let nudges = decisions_of(&out, "OUTBOUND_NUDGE");
    assert_eq!(nudges.len(), 1, "{nudges:?}");
    assert_eq!(nudges[0].customer_id, "c1");
    assert_eq!(nudges[0].channel, "EMAIL");
    assert_eq!(nudges[0].cause_event_id, "e-cart");
    assert_eq!(nudges[0].items, ["boot-1"]);
    // The nudge is not repeated by later event time.
    let out = run.feed(vec![rec(
        CLICKS,
        0,
        2,
        "c2",
        click("e-other2", "c2", 20 * 60, "books", "b2"),
    )]);
    assert!(decisions_of(&out, "OUTBOUND_NUDGE").is_empty());
}

#[test]
fn a_nudge_deferred_through_the_quiet_hours_fires_before_the_customers_next_visit() {
    // Found by the fault matrix: a cart left at 19:30 comes due at 21:30, in the quiet hours
    // (21:00-08:00), and is tried again hourly until 08:30. With the session's end that is
    // thirteen timers; the customer's own next event fired only the first eight, so the nudge
    // went out after their next visit, or never before it, as other customers' time decided.
    let mut run = Run::new();
    run.feed(vec![
        rec(COMMANDS, 0, 0, "c1", consent("c1", Purpose::Marketing)),
        // T0 is 08:26:40 UTC: minute 664 is 19:30:40.
        rec(CLICKS, 0, 0, "c1", cart("e-cart", "c1", 664)),
    ]);
    let out = run.feed(vec![rec(
        CLICKS,
        0,
        1,
        "c1",
        click("e-next-day", "c1", 24 * 60 + 214, "books", "b1"),
    )]);
    let nudges = decisions_of(&out, "OUTBOUND_NUDGE");
    assert_eq!(
        nudges.len(),
        1,
        "the deferred nudge before the next visit: {nudges:?}"
    );
    assert_eq!(nudges[0].cause_event_id, "e-cart");
}

#[test]
fn an_idle_timer_check_with_nothing_due_writes_nothing() {
    let mut run = Run::new();
    let partitions = [0, 1, 2];
    let cx = Cx {
        store: &*run.store,
        partitions: &partitions,
        partition_count: 3,
    };
    assert!(run.off.job.idle(&cx, T0).expect("idle").is_empty());
}

#[test]
fn idle_wall_clock_time_ends_sessions_and_nudges_abandoned_carts() {
    let mut run = Run::new();
    run.feed(vec![
        rec(COMMANDS, 0, 0, "c1", consent("c1", Purpose::Marketing)),
        rec(CLICKS, 0, 0, "c1", cart("e-cart", "c1", 9 * 60)),
    ]);
    let fired = run.idle(T0 + 12 * 3_600_000);
    let kinds: Vec<String> = decisions_of(&fired, "OUTBOUND_NUDGE")
        .into_iter()
        .map(|d| d.kind)
        .collect();
    assert_eq!(kinds, ["OUTBOUND_NUDGE"]);
    let state = run.state(0, "c1").expect("state");
    assert!(
        state.session.is_none(),
        "the lapsed session ended and its in-session data is gone"
    );
    assert!(
        run.idle(T0 + 13 * 3_600_000).records.is_empty(),
        "fires once"
    );
}

#[test]
fn more_timers_due_at_one_instant_than_a_page_all_fire_without_stalling() {
    let mut run = Run::new();
    let carts: Vec<Record> = (0..1001)
        .map(|i| {
            let c = format!("c{i}");
            rec(CLICKS, 0, i, &c, cart(&format!("e{i}"), &c, 9 * 60))
        })
        .collect();
    run.feed(carts);
    let mut nudged = std::collections::HashSet::new();
    for (offset, minute) in [(1001, 12 * 60), (1003, 12 * 60 + 1)] {
        // Two customers move event time (one alone does not).
        let out = run.feed(
            ["clock-a", "clock-b"]
                .iter()
                .enumerate()
                .map(|(i, who)| {
                    let o = offset + i as i64;
                    rec(
                        CLICKS,
                        0,
                        o,
                        who,
                        click(&format!("t{o}"), who, minute, "books", "b"),
                    )
                })
                .collect(),
        );
        for (_, r) in &out.records {
            if let Ok(s) = tact_codec::decode_suppressed(r.value.as_deref().unwrap_or_default()) {
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

fn release_record(offset: i64, subject: &str) -> Record {
    let r = tact_core::Release {
        release_id: format!("r{offset}"),
        subject: subject.into(),
        title: "New".into(),
        product_ids: vec!["lego-9".into()],
        category: Some("toys".into()),
        released_at: Timestamp(T0 + 3_600_000),
    };
    Record {
        input: Input::Global,
        partition: 0,
        offset,
        key: Some(r.release_id.clone().into_bytes()),
        value: Some(tact_codec::encode_release(&r, InputFormat::Json, 0)),
    }
}

fn follow(c: &str, on: bool) -> Vec<u8> {
    command(
        "f",
        c,
        0,
        CommandBody::Follow {
            subject: "brickworks".into(),
            follow: on,
        },
    )
}

/// Followers on three partitions, one without marketing consent, one who unfollowed, and more
/// than one page of them: each consenting follower gets the release once, nobody else does, and
/// a re-read of the same catalog record adds nothing.
#[test]
fn a_release_reaches_each_consenting_follower_once_across_partitions() {
    let mut run = Run::new();
    let mut offsets = [0i64; 3];
    let mut batch = Vec::new();
    let mut push = |p: i32, c: &str, value: Vec<u8>| {
        batch.push(rec(COMMANDS, p, offsets[p as usize], c, value));
        offsets[p as usize] += 1;
    };
    let mut expected = Vec::new();
    for i in 0..1203 {
        let c = format!("c{i:04}");
        let p = i % 3;
        push(p, &c, follow(&c, true));
        if i % 10 != 7 {
            push(p, &c, consent(&c, Purpose::Marketing));
            expected.push(c.clone());
        }
    }
    push(0, "c0000", follow("c0000", false));
    expected.retain(|c| c != "c0000");
    // Someone who follows another subject only.
    push(
        2,
        "zed",
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
    push(2, "zed", consent("zed", Purpose::Marketing));
    run.feed(batch);

    let r = release_record(0, "brickworks");
    let mut reached = Vec::new();
    let mut pages = 0;
    loop {
        let (out, done) = run.global(&r);
        reached.extend(
            decisions_of(&out, "NEW_RELEASE")
                .into_iter()
                .map(|d| d.customer_id),
        );
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
    let (again, done) = run.global(&r);
    assert!(
        done && again.records.is_empty(),
        "an applied release is skipped"
    );
}

/// A crash between two pages of one release: the restarted job resumes after the last page
/// committed, so nobody gets it twice and nobody is missed.
#[test]
fn a_release_interrupted_between_pages_resumes_where_it_stopped() {
    let mut run = Run::new();
    let mut batch = Vec::new();
    for i in 0..700 {
        let c = format!("c{i:04}");
        batch.push(rec(COMMANDS, 0, 2 * i, &c, follow(&c, true)));
        batch.push(rec(
            COMMANDS,
            0,
            2 * i + 1,
            &c,
            consent(&c, Purpose::Marketing),
        ));
    }
    run.feed(batch);
    let r = release_record(0, "brickworks");
    let (first, done) = run.global(&r);
    assert!(!done);
    // A crash: nothing in memory survives, the store does.
    let mut run = Run::on(run.store.clone());
    let mut rest = Vec::new();
    for page in 0.. {
        assert!(page < 5, "the resumed release never finishes");
        let (out, done) = run.global(&r);
        rest.extend(decisions_of(&out, "NEW_RELEASE"));
        if done {
            break;
        }
    }
    let mut all: Vec<String> = decisions_of(&first, "NEW_RELEASE")
        .into_iter()
        .chain(rest)
        .map(|d| d.customer_id)
        .collect();
    let n = all.len();
    all.sort();
    all.dedup();
    assert_eq!((n, all.len()), (700, 700));
    assert_eq!(
        run.off
            .job
            .global_position(&*run.store, 0, 0)
            .expect("position"),
        Some(1),
        "the partition needs the catalog from after the release"
    );
}

/// Decisions about a customer still waiting in the outbox when they are erased are never sent.
#[test]
fn erase_withdraws_the_customers_unsent_records() {
    let mut run = Run::new();
    let first = run.feed(batch());
    let pending: Vec<u64> = first.records.iter().map(|(s, _)| *s).collect();
    assert!(!pending.is_empty(), "the batch decided something about c1");
    let erase = command("x", "c1", 10, CommandBody::Erase { request_ref: None });
    let out = run.feed(vec![
        rec(CLICKS, 0, 3, "c1", click("e3", "c1", 9, "shoes", "p3")),
        rec(COMMANDS, 0, 1, "c1", erase),
    ]);
    assert!(
        pending.iter().all(|s| out.withdrawn.contains(s)),
        "every earlier record about c1 is withdrawn"
    );
    assert_eq!(out.records.len(), 1, "only the receipt goes out");
    assert_eq!(out.records[0].1.topic, "tact-erasure-receipts");
    // Nothing about c1 is left to send: no decision, and no earlier state for the changelog
    // (the tombstone supersedes it).
    let left: Vec<OutboxEntry> = run
        .store
        .outbox(0)
        .expect("outbox")
        .iter()
        .map(|(_, v)| OutboxEntry::decode(v).expect("entry"))
        .collect();
    assert!(left
        .iter()
        .all(|e| e.kind != Kind::Output || e.record.topic == "tact-erasure-receipts"));
    let state_puts = left
        .iter()
        .filter(|e| e.kind == Kind::ChangelogData && e.record.value.is_some())
        .count();
    assert_eq!(state_puts, 0, "c1's earlier states were withdrawn");
    assert!(
        left.iter()
            .any(|e| e.kind == Kind::ChangelogData && e.record.value.is_none()),
        "the tombstone goes to the changelog"
    );
}

/// What a restore rebuilds from a customer's state: the timer index and whom they follow.
#[test]
fn a_restored_customer_gets_their_timer_and_follow_index_back() {
    let mut run = Run::new();
    run.feed(vec![
        rec(COMMANDS, 1, 0, "c9", follow("c9", true)),
        rec(CLICKS, 1, 0, "c9", cart("e1", "c9", 9 * 60)),
    ]);
    let k = StateKey::Customer("c9".into());
    let value = run.store.multi_get(&[(1, &k)]).expect("get")[0]
        .clone()
        .expect("state");
    let derived = run.off.job.derive(1, &vec![(k, value)]).expect("derive");
    assert_eq!(derived.timer_puts.len(), 1);
    assert_eq!(derived.timer_puts[0].partition, 1);
    assert_eq!(
        derived.index_puts,
        vec![(
            1,
            IndexKey::Follow {
                subject: "brickworks".into(),
                customer: "c9".into()
            },
            vec![]
        )]
    );
}

#[test]
fn an_event_retried_at_later_offsets_counts_once_and_recommends_nothing_more() {
    let mut run = Run::new();
    // One product view of shoes, sent three times by a retrying producer (three offsets), then a
    // restart: the customer has one view, not three, and no recommendation (it takes three).
    let view = click("e-retried", "c1", 0, "shoes", "p0");
    let mut records = vec![rec(
        COMMANDS,
        0,
        0,
        "c1",
        consent("c1", Purpose::Personalization),
    )];
    records.extend((0..3).map(|i| rec(CLICKS, 0, i, "c1", view.clone())));
    let out = run.feed(records);
    assert!(decisions_of(&out, "RECOMMENDATION").is_empty());
    let state = run.state(0, "c1").expect("state");
    assert_eq!(state.session.as_ref().map(|s| s.events), Some(1));
    assert_eq!(run.off.job.summary().duplicates, 2);
    assert_eq!(
        run.applied(0, CLICKS),
        2,
        "the duplicates' offsets are applied too"
    );
    // The ids are part of the state: a fourth copy after a restart is still recognised.
    let mut restarted = Run::on(run.store.clone());
    restarted.feed(vec![rec(CLICKS, 0, 3, "c1", view)]);
    assert_eq!(restarted.off.job.summary().duplicates, 1);
    assert_eq!(restarted.state(0, "c1"), Some(state), "nothing changed");
}

#[test]
fn one_customer_stamped_far_ahead_fires_no_one_elses_timers() {
    let mut run = Run::new();
    run.feed(vec![
        rec(COMMANDS, 0, 0, "c1", consent("c1", Purpose::Marketing)),
        rec(CLICKS, 0, 0, "c1", cart("e-cart", "c1", 9 * 60)),
        rec(
            CLICKS,
            0,
            1,
            "c2",
            click("e-c2", "c2", 9 * 60 + 5, "books", "b1"),
        ),
    ]);
    let before = run.state(0, "c2").expect("c2");
    assert!(before.session.is_some());
    // A device whose clock runs a century ahead (and stays there).
    let year_2126 = 100 * 365 * 24 * 60;
    let mut out = run.feed(vec![rec(
        CLICKS,
        0,
        2,
        "forger",
        click("e-f1", "forger", year_2126, "books", "b2"),
    )]);
    out.records.extend(
        run.feed(vec![rec(
            CLICKS,
            0,
            3,
            "forger",
            click("e-f2", "forger", year_2126 + 1, "books", "b3"),
        )])
        .records,
    );
    assert!(
        decisions_of(&out, "OUTBOUND_NUDGE").is_empty(),
        "c1's cart nudge fired early"
    );
    assert_eq!(run.state(0, "c2"), Some(before), "c2's session ended early");
    // Others moving on in the normal way still fire it, when its time has come.
    let out = run.feed(vec![
        rec(
            CLICKS,
            0,
            4,
            "c2",
            click("e-c2b", "c2", 12 * 60, "books", "b1"),
        ),
        rec(
            CLICKS,
            0,
            5,
            "c3",
            click("e-c3", "c3", 12 * 60, "books", "b1"),
        ),
    ]);
    assert_eq!(decisions_of(&out, "OUTBOUND_NUDGE").len(), 1);
}
