//! One behavioural suite every [`StateStore`] must pass. Run from each implementation's tests so
//! RocksDB and the in-memory reference can never drift apart.

use crate::{Commit, StateStore, Timer};

/// Runs every check on stores made by `fresh` (each call must return an empty store).
pub fn run_all<S: StateStore>(fresh: &mut dyn FnMut() -> S) {
    multi_get_returns_values_in_key_order(&fresh());
    a_commit_applies_state_offsets_and_outbox_together(&fresh());
    deletes_remove_state_and_outbox_entries(&fresh());
    outbox_is_returned_in_sequence_order(&fresh());
    deleting_runs_of_outbox_entries_keeps_the_others(&fresh());
    offsets_are_per_topic_and_partition(&fresh());
    timers_come_back_per_partition_in_due_order(&fresh());
    index_scans_return_one_prefix_in_key_order_after_a_cursor(&fresh());
}

pub fn index_scans_return_one_prefix_in_key_order_after_a_cursor(s: &dyn StateStore) {
    let e = |k: &str| (k.as_bytes().to_vec(), b"v".to_vec());
    s.commit(&Commit {
        index_puts: vec![e("fa/3"), e("fa/1"), e("fb/1"), e("fa/2"), e("f"), e("fa0")],
        ..Commit::default()
    })
    .expect("commit");
    let keys = |v: Vec<(Vec<u8>, Vec<u8>)>| -> Vec<String> {
        v.into_iter()
            .map(|(k, _)| String::from_utf8(k).expect("utf8"))
            .collect()
    };
    assert_eq!(
        keys(s.index_scan(b"fa/", None, 10).expect("scan")),
        ["fa/1", "fa/2", "fa/3"]
    );
    assert_eq!(
        keys(s.index_scan(b"fa/", Some(b"fa/1"), 1).expect("scan")),
        ["fa/2"]
    );
    assert!(s
        .index_scan(b"fa/", Some(b"fa/3"), 10)
        .expect("scan")
        .is_empty());
    s.commit(&Commit {
        index_deletes: vec![b"fa/2".to_vec()],
        ..Commit::default()
    })
    .expect("commit");
    assert_eq!(
        keys(s.index_scan(b"fa/", None, 10).expect("scan")),
        ["fa/1", "fa/3"]
    );
    assert!(s.index_scan(b"zz", None, 10).expect("scan").is_empty());
}

fn put(k: &str, v: &str) -> (Vec<u8>, Vec<u8>) {
    (k.as_bytes().to_vec(), v.as_bytes().to_vec())
}

pub fn multi_get_returns_values_in_key_order(s: &dyn StateStore) {
    s.commit(&Commit {
        state_puts: vec![put("a", "1"), put("c", "3")],
        ..Commit::default()
    })
    .expect("commit");
    let got = s.multi_get(&[b"c", b"b", b"a"]).expect("multi_get");
    assert_eq!(got, vec![Some(b"3".to_vec()), None, Some(b"1".to_vec())]);
}

pub fn a_commit_applies_state_offsets_and_outbox_together(s: &dyn StateStore) {
    assert_eq!(s.applied_offset("clicks", 0).expect("offset"), None);
    assert_eq!(s.next_outbox_seq().expect("seq"), 0);
    s.commit(&Commit {
        state_puts: vec![put("cust", "v1")],
        offsets: vec![("clicks".into(), 0, 41)],
        outbox_puts: vec![(0, b"d0".to_vec()), (1, b"d1".to_vec())],
        ..Commit::default()
    })
    .expect("commit");
    assert_eq!(s.applied_offset("clicks", 0).expect("offset"), Some(41));
    assert_eq!(
        s.multi_get(&[b"cust"]).expect("get"),
        vec![Some(b"v1".to_vec())]
    );
    assert_eq!(s.pending_outbox().expect("outbox").len(), 2);
    assert_eq!(s.next_outbox_seq().expect("seq"), 2);
    s.sync().expect("sync");
}

pub fn deletes_remove_state_and_outbox_entries(s: &dyn StateStore) {
    s.commit(&Commit {
        state_puts: vec![put("x", "1"), put("y", "2")],
        outbox_puts: vec![(5, b"r5".to_vec()), (6, b"r6".to_vec())],
        ..Commit::default()
    })
    .expect("commit");
    s.commit(&Commit {
        state_deletes: vec![b"x".to_vec()],
        outbox_deletes: vec![5],
        ..Commit::default()
    })
    .expect("commit");
    assert_eq!(
        s.multi_get(&[b"x", b"y"]).expect("get"),
        vec![None, Some(b"2".to_vec())]
    );
    assert_eq!(
        s.pending_outbox().expect("outbox"),
        vec![(6, b"r6".to_vec())]
    );
    s.purge(Some(b"x")).expect("purge");
    assert_eq!(s.multi_get(&[b"x"]).expect("get"), vec![None]);
}

pub fn outbox_is_returned_in_sequence_order(s: &dyn StateStore) {
    // 256 and 1 would sort the other way as little-endian bytes.
    s.commit(&Commit {
        outbox_puts: vec![
            (256, b"late".to_vec()),
            (1, b"early".to_vec()),
            (2, b"mid".to_vec()),
        ],
        ..Commit::default()
    })
    .expect("commit");
    let seqs: Vec<u64> = s
        .pending_outbox()
        .expect("outbox")
        .into_iter()
        .map(|(k, _)| k)
        .collect();
    assert_eq!(seqs, vec![1, 2, 256]);
    assert_eq!(s.next_outbox_seq().expect("seq"), 257);
}

pub fn offsets_are_per_topic_and_partition(s: &dyn StateStore) {
    s.commit(&Commit {
        offsets: vec![("a".into(), 0, 1), ("a".into(), 1, 2), ("ab".into(), 0, 3)],
        ..Commit::default()
    })
    .expect("commit");
    s.commit(&Commit {
        offsets: vec![("a".into(), 0, 10)],
        ..Commit::default()
    })
    .expect("commit");
    assert_eq!(s.applied_offset("a", 0).expect("o"), Some(10));
    assert_eq!(s.applied_offset("a", 1).expect("o"), Some(2));
    assert_eq!(s.applied_offset("ab", 0).expect("o"), Some(3));
    assert_eq!(s.applied_offset("b", 0).expect("o"), None);
}

pub fn timers_come_back_per_partition_in_due_order(s: &dyn StateStore) {
    let t = |partition: i32, due: i64, key: &str| Timer {
        partition,
        due,
        key: key.as_bytes().to_vec(),
    };
    s.commit(&Commit {
        // -5 before 3 before 1000: signed order, not the byte order of two's complement.
        timer_puts: vec![
            t(0, 1000, "c"),
            t(0, -5, "a"),
            t(0, 3, "b"),
            t(0, 3, "a"),
            t(1, 2, "z"),
            t(-1, 1, "y"),
        ],
        meta_puts: vec![("watermark".into(), 77)],
        ..Commit::default()
    })
    .expect("commit");
    let all = s.timers_in(0, i64::MIN, i64::MAX, 10).expect("timers");
    assert_eq!(
        all,
        vec![t(0, -5, "a"), t(0, 3, "a"), t(0, 3, "b"), t(0, 1000, "c")]
    );
    assert_eq!(
        s.timers_in(0, 4, i64::MAX, 10).expect("timers"),
        vec![t(0, 1000, "c")]
    );
    assert_eq!(
        s.timers_in(0, i64::MIN, i64::MAX, 1).expect("timers").len(),
        1
    );
    assert_eq!(
        s.timers_in(1, i64::MIN, i64::MAX, 10).expect("timers"),
        vec![t(1, 2, "z")]
    );
    assert_eq!(
        s.timers_in(-1, i64::MIN, i64::MAX, 10).expect("timers"),
        vec![t(-1, 1, "y")]
    );
    s.commit(&Commit {
        timer_deletes: vec![t(0, 3, "a")],
        ..Commit::default()
    })
    .expect("commit");
    assert_eq!(
        s.timers_in(0, i64::MIN, i64::MAX, 10)
            .expect("timers")
            .len(),
        3
    );
    assert_eq!(
        s.timers_in(0, -5, 3, 10).expect("timers"),
        vec![t(0, -5, "a"), t(0, 3, "b")],
        "both ends inclusive"
    );
    assert_eq!(s.timers_in(0, 4, 999, 10).expect("timers"), vec![]);
    assert_eq!(
        s.timers_in(0, 4, 2, 10).expect("timers"),
        vec![],
        "an empty range"
    );
    assert_eq!(s.meta("watermark").expect("meta"), Some(77));
    assert_eq!(s.meta("other").expect("meta"), None);
}

pub fn deleting_runs_of_outbox_entries_keeps_the_others(s: &dyn StateStore) {
    s.commit(&Commit {
        outbox_puts: (0..20).map(|i| (i, vec![i as u8])).collect(),
        ..Commit::default()
    })
    .expect("commit");
    // Two runs, a single, out of order and with a duplicate.
    s.commit(&Commit {
        outbox_deletes: vec![5, 3, 4, 4, 9, 15, 16, 17],
        ..Commit::default()
    })
    .expect("commit");
    let left: Vec<u64> = s
        .pending_outbox()
        .expect("outbox")
        .into_iter()
        .map(|(k, _)| k)
        .collect();
    assert_eq!(left, vec![0, 1, 2, 6, 7, 8, 10, 11, 12, 13, 14, 18, 19]);
    assert_eq!(s.next_outbox_seq().expect("seq"), 20);
}
