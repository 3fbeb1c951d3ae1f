//! One behavioural suite every [`StateStore`] must pass. Run from each implementation's tests so
//! RocksDB and the in-memory reference can never drift apart.

use crate::{
    decode_i64, encode_i64, Commit, IndexKey, IndexPrefix, LocalKey, MetaKey, StateKey, StateKind,
    StateStore, Timer, PROCESS,
};

/// Runs every check on stores made by `fresh` (each call must return an empty store).
pub fn run_all<S: StateStore>(fresh: &mut dyn FnMut() -> S) {
    multi_get_returns_values_in_key_order_and_partitions_never_meet(&fresh());
    a_commit_applies_state_meta_and_outbox_together(&fresh());
    deletes_remove_state_and_outbox_entries(&fresh());
    outbox_is_returned_per_partition_in_sequence_order(&fresh());
    deleting_runs_of_outbox_entries_keeps_the_others(&fresh());
    meta_is_per_partition_and_local_values_are_kept_apart(&fresh());
    timers_come_back_per_partition_in_due_order(&fresh());
    index_scans_return_one_prefix_of_one_partition_after_a_cursor(&fresh());
    state_scans_return_one_kind_of_one_partition_after_a_cursor(&fresh());
    dropping_a_partition_removes_all_of_it_and_nothing_else(&fresh());
}

fn customer(id: &str) -> StateKey {
    StateKey::Customer(id.to_owned())
}

fn commit(s: &dyn StateStore, c: Commit) {
    s.commit(&c).expect("commit");
}

pub fn multi_get_returns_values_in_key_order_and_partitions_never_meet(s: &dyn StateStore) {
    commit(
        s,
        Commit {
            state_puts: vec![
                (0, customer("a"), b"1".to_vec()),
                (0, customer("c"), b"3".to_vec()),
                (1, customer("a"), b"other".to_vec()),
            ],
            ..Commit::default()
        },
    );
    let (a, b, c) = (customer("a"), customer("b"), customer("c"));
    let got = s
        .multi_get(&[(0, &c), (0, &b), (0, &a), (1, &a), (2, &a)])
        .expect("get");
    assert_eq!(
        got,
        vec![
            Some(b"3".to_vec()),
            None,
            Some(b"1".to_vec()),
            Some(b"other".to_vec()),
            None
        ]
    );
}

pub fn a_commit_applies_state_meta_and_outbox_together(s: &dyn StateStore) {
    commit(
        s,
        Commit {
            state_puts: vec![(2, customer("cust-1"), b"state".to_vec())],
            meta_puts: vec![(2, MetaKey::Applied("clicks".into()), encode_i64(41))],
            outbox_puts: vec![(2, 0, b"decision".to_vec())],
            ..Commit::default()
        },
    );
    let k = customer("cust-1");
    assert_eq!(
        s.multi_get(&[(2, &k)]).expect("get"),
        vec![Some(b"state".to_vec())]
    );
    let applied = s
        .meta(2, &MetaKey::Applied("clicks".into()))
        .expect("meta")
        .and_then(|v| decode_i64(&v));
    assert_eq!(applied, Some(41));
    assert_eq!(
        s.outbox(2).expect("outbox"),
        vec![(0, b"decision".to_vec())]
    );
    assert_eq!(s.partitions().expect("partitions"), vec![2]);
}

pub fn deletes_remove_state_and_outbox_entries(s: &dyn StateStore) {
    commit(
        s,
        Commit {
            state_puts: vec![(0, customer("x"), b"1".to_vec())],
            outbox_puts: vec![(0, 5, b"r".to_vec()), (0, 6, b"s".to_vec())],
            ..Commit::default()
        },
    );
    commit(
        s,
        Commit {
            state_deletes: vec![(0, customer("x"))],
            outbox_deletes: vec![(0, 5)],
            ..Commit::default()
        },
    );
    let x = customer("x");
    assert_eq!(s.multi_get(&[(0, &x)]).expect("get"), vec![None]);
    assert_eq!(s.outbox(0).expect("outbox"), vec![(6, b"s".to_vec())]);
}

pub fn outbox_is_returned_per_partition_in_sequence_order(s: &dyn StateStore) {
    commit(
        s,
        Commit {
            outbox_puts: vec![
                (1, 300, b"c".to_vec()),
                (1, 2, b"a".to_vec()),
                (0, 7, b"other".to_vec()),
                (1, 256, b"b".to_vec()),
            ],
            ..Commit::default()
        },
    );
    let seqs: Vec<u64> = s
        .outbox(1)
        .expect("outbox")
        .into_iter()
        .map(|(q, _)| q)
        .collect();
    assert_eq!(
        seqs,
        vec![2, 256, 300],
        "big-endian keys keep numeric order"
    );
    assert_eq!(s.outbox(0).expect("outbox"), vec![(7, b"other".to_vec())]);
    assert!(s.outbox(5).expect("outbox").is_empty());
}

pub fn deleting_runs_of_outbox_entries_keeps_the_others(s: &dyn StateStore) {
    commit(
        s,
        Commit {
            outbox_puts: (0..10).map(|q| (3, q, vec![q as u8])).collect(),
            ..Commit::default()
        },
    );
    commit(
        s,
        Commit {
            outbox_deletes: vec![(3, 7), (3, 2), (3, 3), (3, 4), (3, 9), (3, 0)],
            ..Commit::default()
        },
    );
    let left: Vec<u64> = s
        .outbox(3)
        .expect("outbox")
        .into_iter()
        .map(|(q, _)| q)
        .collect();
    assert_eq!(left, vec![1, 5, 6, 8]);
}

pub fn meta_is_per_partition_and_local_values_are_kept_apart(s: &dyn StateStore) {
    commit(
        s,
        Commit {
            meta_puts: vec![
                (0, MetaKey::Watermark, encode_i64(10)),
                (1, MetaKey::Watermark, encode_i64(20)),
                (1, MetaKey::Releases(0), b"cursor".to_vec()),
            ],
            local_puts: vec![
                (1, LocalKey::Checkpoint, encode_i64(99)),
                (PROCESS, LocalKey::StoreId, vec![7; 16]),
            ],
            ..Commit::default()
        },
    );
    let wm = |p| {
        s.meta(p, &MetaKey::Watermark)
            .expect("meta")
            .and_then(|v| decode_i64(&v))
    };
    assert_eq!((wm(0), wm(1), wm(2)), (Some(10), Some(20), None));
    let metas: Vec<MetaKey> = s
        .metas(1)
        .expect("metas")
        .into_iter()
        .map(|(k, _)| k)
        .collect();
    assert_eq!(metas, vec![MetaKey::Releases(0), MetaKey::Watermark]);
    assert_eq!(
        s.local(1, LocalKey::Checkpoint)
            .expect("local")
            .and_then(|v| decode_i64(&v)),
        Some(99)
    );
    assert_eq!(s.local(0, LocalKey::Checkpoint).expect("local"), None);
    assert_eq!(
        s.local(PROCESS, LocalKey::StoreId).expect("local"),
        Some(vec![7; 16])
    );
    assert_eq!(
        s.partitions().expect("partitions"),
        vec![0, 1],
        "the process scope is not a partition"
    );
    commit(
        s,
        Commit {
            local_deletes: vec![(1, LocalKey::Checkpoint)],
            ..Commit::default()
        },
    );
    assert_eq!(s.local(1, LocalKey::Checkpoint).expect("local"), None);
}

pub fn timers_come_back_per_partition_in_due_order(s: &dyn StateStore) {
    let t = |p: i32, due: i64, k: &str| Timer {
        partition: p,
        due,
        key: customer(k),
    };
    commit(
        s,
        Commit {
            timer_puts: vec![
                t(0, 300, "c"),
                t(0, -5, "neg"),
                t(0, 100, "a"),
                t(0, 100, "b"),
                t(1, 50, "other"),
                t(0, i64::MAX, "last"),
            ],
            ..Commit::default()
        },
    );
    let keys = |v: Vec<Timer>| -> Vec<String> {
        v.into_iter()
            .map(|t| t.key.customer_id().unwrap_or_default().to_owned())
            .collect()
    };
    assert_eq!(
        keys(s.timers_in(0, i64::MIN, 100, 10).expect("timers")),
        ["neg", "a", "b"]
    );
    assert_eq!(
        keys(s.timers_in(0, 100, 300, 2).expect("timers")),
        ["a", "b"]
    );
    assert_eq!(
        keys(s.timers_in(0, 101, i64::MAX, 10).expect("timers")),
        ["c", "last"]
    );
    assert!(s.timers_in(0, 301, 200, 10).expect("timers").is_empty());
    assert_eq!(
        keys(s.timers_in(1, i64::MIN, i64::MAX, 10).expect("timers")),
        ["other"]
    );
    commit(
        s,
        Commit {
            timer_deletes: vec![t(0, 100, "a")],
            ..Commit::default()
        },
    );
    assert_eq!(keys(s.timers_in(0, 100, 100, 10).expect("timers")), ["b"]);
}

pub fn index_scans_return_one_prefix_of_one_partition_after_a_cursor(s: &dyn StateStore) {
    let f = |subject: &str, customer: &str| IndexKey::Follow {
        subject: subject.into(),
        customer: customer.into(),
    };
    commit(
        s,
        Commit {
            index_puts: vec![
                (0, f("band", "c3"), vec![]),
                (0, f("band", "c1"), vec![]),
                (0, f("bandx", "c1"), vec![]),
                (0, f("ban", "dc9"), vec![]),
                (0, f("band", "c2"), vec![]),
                (1, f("band", "c0"), vec![]),
            ],
            ..Commit::default()
        },
    );
    let followers = |p, after: Option<&IndexKey>, limit| -> Vec<String> {
        s.index_scan(p, &IndexPrefix::Followers("band".into()), after, limit)
            .expect("scan")
            .into_iter()
            .map(|(k, _)| match k {
                IndexKey::Follow { customer, .. } => customer,
            })
            .collect()
    };
    assert_eq!(followers(0, None, 10), ["c1", "c2", "c3"]);
    assert_eq!(followers(0, Some(&f("band", "c1")), 1), ["c2"]);
    assert!(followers(0, Some(&f("band", "c3")), 10).is_empty());
    assert_eq!(followers(1, None, 10), ["c0"]);
    commit(
        s,
        Commit {
            index_deletes: vec![(0, f("band", "c2"))],
            ..Commit::default()
        },
    );
    assert_eq!(followers(0, None, 10), ["c1", "c3"]);
}

pub fn state_scans_return_one_kind_of_one_partition_after_a_cursor(s: &dyn StateStore) {
    commit(
        s,
        Commit {
            state_puts: vec![
                (0, StateKey::Session([2; 16]), b"s2".to_vec()),
                (0, StateKey::Session([1; 16]), b"s1".to_vec()),
                (0, StateKey::Window(-10), b"w".to_vec()),
                (0, customer("zz"), b"c".to_vec()),
                (1, StateKey::Session([0; 16]), b"p1".to_vec()),
            ],
            ..Commit::default()
        },
    );
    let got = s.scan_state(0, StateKind::Session, None, 10).expect("scan");
    assert_eq!(
        got,
        vec![
            (StateKey::Session([1; 16]), b"s1".to_vec()),
            (StateKey::Session([2; 16]), b"s2".to_vec())
        ]
    );
    let after = s
        .scan_state(0, StateKind::Session, Some(&StateKey::Session([1; 16])), 10)
        .expect("scan");
    assert_eq!(after.len(), 1);
    assert_eq!(
        s.scan_state(0, StateKind::Window, None, 10).expect("scan"),
        vec![(StateKey::Window(-10), b"w".to_vec())]
    );
    assert_eq!(
        s.scan_state(0, StateKind::Session, None, 1)
            .expect("scan")
            .len(),
        1
    );
}

pub fn dropping_a_partition_removes_all_of_it_and_nothing_else(s: &dyn StateStore) {
    let everything = |p: i32| Commit {
        state_puts: vec![(p, customer("c"), b"v".to_vec())],
        meta_puts: vec![(p, MetaKey::Watermark, encode_i64(1))],
        local_puts: vec![(p, LocalKey::Checkpoint, encode_i64(1))],
        outbox_puts: vec![(p, u64::try_from(p).unwrap_or(0), b"r".to_vec())],
        timer_puts: vec![Timer {
            partition: p,
            due: 5,
            key: customer("c"),
        }],
        index_puts: vec![(
            p,
            IndexKey::Follow {
                subject: "s".into(),
                customer: "c".into(),
            },
            vec![],
        )],
        ..Commit::default()
    };
    commit(s, everything(0));
    commit(s, everything(1));
    commit(s, everything(2));
    // Dropping comes first in a commit: a partition can be replaced in one write.
    let mut replace = Commit {
        drop_partitions: vec![1],
        ..Commit::default()
    };
    replace.extend(Commit {
        state_puts: vec![(1, customer("new"), b"n".to_vec())],
        ..Commit::default()
    });
    commit(s, replace);
    let c = customer("c");
    let n = customer("new");
    assert_eq!(
        s.multi_get(&[(0, &c), (1, &c), (1, &n), (2, &c)])
            .expect("get"),
        vec![
            Some(b"v".to_vec()),
            None,
            Some(b"n".to_vec()),
            Some(b"v".to_vec())
        ]
    );
    assert!(s.metas(1).expect("metas").is_empty());
    assert_eq!(s.local(1, LocalKey::Checkpoint).expect("local"), None);
    assert!(s.outbox(1).expect("outbox").is_empty());
    assert!(s
        .timers_in(1, i64::MIN, i64::MAX, 10)
        .expect("timers")
        .is_empty());
    assert!(s
        .index_scan(1, &IndexPrefix::Followers("s".into()), None, 10)
        .expect("scan")
        .is_empty());
    assert_eq!(s.outbox(2).expect("outbox").len(), 1);
    assert_eq!(
        s.timers_in(2, i64::MIN, i64::MAX, 10)
            .expect("timers")
            .len(),
        1
    );
    assert_eq!(s.partitions().expect("partitions"), vec![0, 1, 2]);
    commit(
        s,
        Commit {
            drop_partitions: vec![1],
            ..Commit::default()
        },
    );
    assert_eq!(s.partitions().expect("partitions"), vec![0, 2]);
}
