//! Both store implementations pass the same suite; RocksDB additionally keeps data across reopen,
//! refuses a second writer and a store of another layout, and purges deleted values from files.

use tact_store::{
    conformance, decode_i64, encode_i64, Commit, LocalKey, MemoryStore, MetaKey, Purge,
    RocksOptions, RocksStore, StateKey, StateStore, Timer,
};

fn files_containing(dir: &std::path::Path, needle: &[u8]) -> Vec<String> {
    std::fs::read_dir(dir)
        .expect("ls")
        .map(|f| f.expect("entry").path())
        .filter(|p| p.is_file())
        .filter(|p| {
            std::fs::read(p)
                .expect("read")
                .windows(needle.len())
                .any(|w| w == needle)
        })
        .map(|p| p.display().to_string())
        .collect()
}

#[test]
fn memory_store_passes_the_conformance_suite() {
    conformance::run_all(&mut MemoryStore::new);
}

#[test]
fn rocksdb_store_passes_the_conformance_suite() {
    let dirs: Vec<tempfile::TempDir> = Vec::new();
    let dirs = std::cell::RefCell::new(dirs);
    conformance::run_all(&mut || {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = RocksStore::open(dir.path(), &RocksOptions::default()).expect("open");
        dirs.borrow_mut().push(dir);
        store
    });
}

#[test]
fn rocksdb_keeps_state_meta_and_outbox_across_reopen() {
    let dir = tempfile::tempdir().expect("tempdir");
    let cust = StateKey::Customer("cust".into());
    {
        let store = RocksStore::open(dir.path(), &RocksOptions::default()).expect("open");
        store
            .commit(&Commit {
                state_puts: vec![(3, cust.clone(), b"state".to_vec())],
                meta_puts: vec![(3, MetaKey::Applied("clicks".into()), encode_i64(99))],
                outbox_puts: vec![(3, 7, b"rec".to_vec())],
                ..Commit::default()
            })
            .expect("commit");
    }
    let store = RocksStore::open(dir.path(), &RocksOptions::default()).expect("reopen");
    let applied = store
        .meta(3, &MetaKey::Applied("clicks".into()))
        .expect("meta")
        .and_then(|v| decode_i64(&v));
    assert_eq!(applied, Some(99));
    assert_eq!(store.outbox(3).expect("outbox"), vec![(7, b"rec".to_vec())]);
    drop(store);
    let ro = RocksStore::open_read_only(dir.path()).expect("read-only");
    assert_eq!(
        ro.multi_get(&[(3, &cust)]).expect("get"),
        vec![Some(b"state".to_vec())]
    );
}

#[test]
fn a_second_writer_on_the_same_directory_is_refused_with_a_clear_error() {
    let dir = tempfile::tempdir().expect("tempdir");
    let _first = RocksStore::open(dir.path(), &RocksOptions::default()).expect("open");
    let err = RocksStore::open(dir.path(), &RocksOptions::default())
        .expect_err("a second writer is refused");
    assert!(
        err.to_string().contains("cannot open state directory"),
        "{err}"
    );
}

#[test]
fn a_state_directory_of_another_layout_is_refused_with_what_to_do() {
    let dir = tempfile::tempdir().expect("tempdir");
    {
        let store = RocksStore::open(dir.path(), &RocksOptions::default()).expect("open");
        store
            .commit(&Commit {
                local_puts: vec![(tact_store::PROCESS, LocalKey::LayoutVersion, encode_i64(2))],
                ..Commit::default()
            })
            .expect("commit");
    }
    let err = RocksStore::open(dir.path(), &RocksOptions::default())
        .expect_err("another layout is refused");
    assert!(err.to_string().contains("layout"), "{err}");
}

#[test]
fn a_purged_customer_leaves_no_key_or_value_in_any_file_of_the_store() {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = RocksStore::open(dir.path(), &RocksOptions::default()).expect("open");
    let id = "customer-7f3e21c9";
    let key = StateKey::Customer(id.into());
    let secret = b"secret-value-0123456789".to_vec();
    let timer = Timer {
        partition: 0,
        due: 1_000,
        key: key.clone(),
    };
    store
        .commit(&Commit {
            state_puts: vec![
                (0, key.clone(), secret.clone()),
                (0, StateKey::Customer("other".into()), b"kept".to_vec()),
            ],
            timer_puts: vec![timer.clone()],
            outbox_puts: vec![(0, 1, [b"decision for ".as_slice(), id.as_bytes()].concat())],
            ..Commit::default()
        })
        .expect("commit");
    store.flush().expect("flush");
    store
        .commit(&Commit {
            state_deletes: vec![(0, key.clone())],
            timer_deletes: vec![timer],
            outbox_deletes: vec![(0, 1)],
            ..Commit::default()
        })
        .expect("commit");
    assert!(
        store.purge(&Purge::Key(0, key)).expect("purge"),
        "a file-backed store rewrites its files"
    );
    // The manifest still names the key as a boundary of deleted files until it rolls, which an
    // open does: after a restart nothing is left.
    drop(store);
    let store = RocksStore::open(dir.path(), &RocksOptions::default()).expect("reopen");
    assert_eq!(
        files_containing(dir.path(), &secret),
        Vec::<String>::new(),
        "the value survived"
    );
    assert!(
        !files_containing(dir.path(), b"kept").is_empty(),
        "the scan reads the files the store keeps"
    );
    assert_eq!(
        files_containing(dir.path(), id.as_bytes()),
        Vec::<String>::new(),
        "the customer key survived"
    );
    let other = StateKey::Customer("other".into());
    assert_eq!(
        store.multi_get(&[(0, &other)]).expect("get"),
        vec![Some(b"kept".to_vec())]
    );
}

#[test]
fn a_dropped_and_purged_partition_leaves_nothing_of_its_customers_in_the_files() {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = RocksStore::open(dir.path(), &RocksOptions::default()).expect("open");
    let moved = b"moved-away-customer-secret".to_vec();
    store
        .commit(&Commit {
            state_puts: vec![
                (4, StateKey::Customer("leaving".into()), moved.clone()),
                (
                    5,
                    StateKey::Customer("staying".into()),
                    b"kept-here".to_vec(),
                ),
            ],
            ..Commit::default()
        })
        .expect("commit");
    store.flush().expect("flush");
    store
        .commit(&Commit {
            drop_partitions: vec![4],
            ..Commit::default()
        })
        .expect("commit");
    store.purge(&Purge::Partition(4)).expect("purge");
    drop(store);
    let store = RocksStore::open(dir.path(), &RocksOptions::default()).expect("reopen");
    assert!(files_containing(dir.path(), &moved).is_empty());
    assert!(files_containing(dir.path(), b"leaving").is_empty());
    assert!(!files_containing(dir.path(), b"kept-here").is_empty());
    assert_eq!(store.partitions().expect("partitions"), vec![5]);
}
