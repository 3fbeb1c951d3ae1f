//! Purges (making deleted values physically gone from the files) on a thread of their own:
//! compacting a partition's files can take long, and the poll loop must keep answering the group
//! meanwhile.
//!
//! Invariant: `LocalKey::PurgePending` is set in the same store commit that makes a purge
//! necessary (a dropped partition, an erasure, a full restore) and cleared only once no purge is
//! queued and none failed, so a crash or a stop before a purge ran makes the next start purge
//! everything.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{channel, Sender};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use tact_store::{with_retry, Commit, LocalKey, Purge, StateStore, PROCESS};

const ATTEMPTS: usize = 12;

struct Shared {
    /// Purges queued and not yet done; the lock also orders the commits that set and clear
    /// the pending flag.
    queued: Mutex<usize>,
    failed: AtomicBool,
    stopping: AtomicBool,
}

pub(crate) struct Purger {
    tx: Option<Sender<Purge>>,
    shared: Arc<Shared>,
    thread: Option<JoinHandle<()>>,
}

fn lock(m: &Mutex<usize>) -> std::sync::MutexGuard<'_, usize> {
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

impl Purger {
    pub(crate) fn start(store: Arc<dyn StateStore>) -> Purger {
        let shared = Arc::new(Shared {
            queued: Mutex::new(0),
            failed: AtomicBool::new(false),
            stopping: AtomicBool::new(false),
        });
        let (tx, rx) = channel::<Purge>();
        let worker = shared.clone();
        let thread = std::thread::Builder::new()
            .name("tact-purge".into())
            .spawn(move || {
                for what in rx {
                    let stop = || worker.stopping.load(Ordering::Relaxed);
                    if let Err(e) = with_retry(ATTEMPTS, &stop, || store.purge(&what)) {
                        tracing::warn!(error = %e, "cannot purge deleted values now; the next start purges everything");
                        worker.failed.store(true, Ordering::Relaxed);
                    }
                    let mut queued = lock(&worker.queued);
                    *queued = queued.saturating_sub(1);
                    if *queued == 0 && !worker.failed.load(Ordering::Relaxed) {
                        let clear = Commit {
                            local_deletes: vec![(PROCESS, LocalKey::PurgePending)],
                            ..Commit::default()
                        };
                        if let Err(e) = with_retry(ATTEMPTS, &stop, || store.commit(&clear)) {
                            tracing::warn!(error = %e, "cannot clear the pending purge; the next start purges again");
                        }
                    }
                }
            })
            .ok();
        Purger {
            tx: thread.is_some().then_some(tx),
            shared,
            thread,
        }
    }

    /// The pending flag to put in the commit that makes a purge necessary.
    pub(crate) fn flag() -> (i32, LocalKey, Vec<u8>) {
        (PROCESS, LocalKey::PurgePending, vec![1])
    }

    /// Runs `write` (a commit that carries [`Purger::flag`]) and queues `what` after it. Without
    /// a worker thread the purges stay pending for the next start.
    pub(crate) fn schedule<E>(
        &self,
        write: impl FnOnce() -> Result<(), E>,
        what: Vec<Purge>,
    ) -> Result<(), E> {
        let mut queued = lock(&self.shared.queued);
        write()?;
        let Some(tx) = &self.tx else {
            return Ok(());
        };
        for w in what {
            if tx.send(w).is_ok() {
                *queued += 1;
            }
        }
        Ok(())
    }

    /// Purges not yet done.
    #[cfg(test)]
    pub(crate) fn queued(&self) -> usize {
        *lock(&self.shared.queued)
    }
}

impl Drop for Purger {
    /// Finishes the queued purges (an erased customer is gone from the files when the process
    /// stops), retrying a busy store no longer. A process that exits first leaves the flag set.
    fn drop(&mut self) {
        self.shared.stopping.store(true, Ordering::Relaxed);
        self.tx = None;
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tact_store::MemoryStore;

    fn pending(store: &dyn StateStore) -> bool {
        store
            .local(PROCESS, LocalKey::PurgePending)
            .expect("read")
            .is_some()
    }

    #[test]
    fn the_pending_flag_is_cleared_once_every_queued_purge_ran() {
        let store: Arc<dyn StateStore> = Arc::new(MemoryStore::new());
        let purger = Purger::start(store.clone());
        let set = Commit {
            local_puts: vec![Purger::flag()],
            ..Commit::default()
        };
        purger
            .schedule(
                || store.commit(&set),
                vec![Purge::Partition(0), Purge::Partition(1)],
            )
            .expect("schedule");
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
        while purger.queued() > 0 || pending(&*store) {
            assert!(std::time::Instant::now() < deadline, "the purges never ran");
            std::thread::sleep(std::time::Duration::from_millis(5));
        }
    }

    #[test]
    fn a_stop_finishes_the_queued_purges_first() {
        let store: Arc<dyn StateStore> = Arc::new(MemoryStore::new());
        let purger = Purger::start(store.clone());
        let set = Commit {
            local_puts: vec![Purger::flag()],
            ..Commit::default()
        };
        let what = (0..50).map(Purge::Partition).collect();
        purger
            .schedule(|| store.commit(&set), what)
            .expect("schedule");
        drop(purger);
        assert!(!pending(&*store), "a queued purge was skipped");
    }
}
