//! Both store implementations pass the same suite; RocksDB additionally keeps data across reopen.

use tact_store::{conformance, Commit, MemoryStore, RocksOptions, RocksStore, StateStore};

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
fn erased_values_leave_the_files_after_range_compaction() {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = RocksStore::open(dir.path(), &RocksOptions::default()).expect("open");
    let secret = b"secret-value-0123456789".to_vec();
    store
        .commit(&Commit {
            state_puts: vec![(b"who".to_vec(), secret.clone())],
            ..Commit::default()
        })
        .expect("commit");
    store.flush().expect("flush");
    store
        .commit(&Commit {
            state_deletes: vec![b"who".to_vec()],
            ..Commit::default()
        })
        .expect("commit");
    store
        .compact_state_range(b"who", b"who\0")
        .expect("compact");
    store.flush().expect("flush");
    let contains = |needle: &[u8]| {
        std::fs::read_dir(dir.path()).expect("ls").any(|f| {
            let path = f.expect("entry").path();
            path.extension().is_some_and(|e| e == "sst")
                && std::fs::read(&path)
                    .expect("read")
                    .windows(needle.len())
                    .any(|w| w == needle)
        })
    };
    assert!(
        !contains(&secret),
        "the deleted value is still in an SST file"
    );
}
