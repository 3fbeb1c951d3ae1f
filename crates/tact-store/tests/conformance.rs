//! Both store implementations pass the same suite; RocksDB additionally keeps data across reopen.

use tact_store::{conformance, Commit, MemoryStore, RocksOptions, RocksStore, StateStore, Timer};

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
fn rocksdb_keeps_state_offsets_and_outbox_across_reopen() {
    let dir = tempfile::tempdir().expect("tempdir");
    {
        let store = RocksStore::open(dir.path(), &RocksOptions::default()).expect("open");
        store
            .commit(&Commit {
                state_puts: vec![(b"cust".to_vec(), b"state".to_vec())],
                offsets: vec![("clicks".into(), 3, 99)],
                outbox_puts: vec![(7, b"rec".to_vec())],
                ..Commit::default()
            })
            .expect("commit");
    }
    let store = RocksStore::open(dir.path(), &RocksOptions::default()).expect("reopen");
    assert_eq!(store.applied_offset("clicks", 3).expect("o"), Some(99));
    assert_eq!(
        store.pending_outbox().expect("outbox"),
        vec![(7, b"rec".to_vec())]
    );
    assert_eq!(store.next_outbox_seq().expect("seq"), 8);
    drop(store);
    let ro = RocksStore::open_read_only(dir.path()).expect("read-only");
    assert_eq!(
        ro.multi_get(&[b"cust"]).expect("get"),
        vec![Some(b"state".to_vec())]
    );
}

#[test]
fn a_second_writer_on_the_same_directory_is_refused_with_a_clear_error() {
    let dir = tempfile::tempdir().expect("tempdir");
    let _first = RocksStore::open(dir.path(), &RocksOptions::default()).expect("open");
    let err = RocksStore::open(dir.path(), &RocksOptions::default()).unwrap_err();
    assert!(
        err.to_string().contains("cannot open state directory"),
        "{err}"
    );
}

#[test]
fn a_purged_customer_leaves_no_key_or_value_in_any_file_of_the_store() {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = RocksStore::open(dir.path(), &RocksOptions::default()).expect("open");
    let key = b"customer-7f3e21c9".to_vec();
    let secret = b"secret-value-0123456789".to_vec();
    let timer = Timer {
        partition: 0,
        due: 1_000,
        key: key.clone(),
    };
    store
        .commit(&Commit {
            state_puts: vec![
                (key.clone(), secret.clone()),
                (b"other".to_vec(), b"kept".to_vec()),
            ],
            timer_puts: vec![timer.clone()],
            outbox_puts: vec![(1, [b"decision for ".as_slice(), &key].concat())],
            ..Commit::default()
        })
        .expect("commit");
    store.flush().expect("flush");
    store
        .commit(&Commit {
            state_deletes: vec![key.clone()],
            timer_deletes: vec![timer],
            outbox_deletes: vec![1],
            ..Commit::default()
        })
        .expect("commit");
    assert!(
        store.purge(Some(&key)).expect("purge"),
        "a file-backed store rewrites its files"
    );
    // The manifest still names the key as a boundary of deleted files until it rolls, which an
    // open does: after a restart nothing is left.
    drop(store);
    let store = RocksStore::open(dir.path(), &RocksOptions::default()).expect("reopen");
    let files_containing = |needle: &[u8]| -> Vec<String> {
        std::fs::read_dir(dir.path())
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
    };
    assert_eq!(
        files_containing(&secret),
        Vec::<String>::new(),
        "the value survived"
    );
    assert!(
        !files_containing(b"kept").is_empty(),
        "the scan reads the files the store keeps"
    );
    assert_eq!(
        files_containing(&key),
        Vec::<String>::new(),
        "the customer key survived"
    );
    assert_eq!(
        store.multi_get(&[b"other"]).expect("get"),
        vec![Some(b"kept".to_vec())]
    );
}
