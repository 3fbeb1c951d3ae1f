//! Durable timers, fired in each input partition's offset order: a customer's due timer fires
//! before their next event, and after every event the partition's event-time watermark fires the
//! timers it has passed. Where a timer fires therefore never depends on how input was cut into
//! batches, so a crash, a replay or a move to another instance reproduce the same decisions.
//!
//! Timers are a function of the state (`next_due`), so firing is idempotent: a state that already
//! fired a timer is not due for it any more.

use super::emitter::Emitter;
use super::slots::{self, Slot, Slots};
use std::cmp::Reverse;
use std::collections::{BinaryHeap, HashMap, HashSet};
use tact_core::{apply_timer, next_due, CustomerState, Rules, Timestamp};
use tact_edge::JobError;
use tact_store::{Partition, StateStore, Timer};

/// Timers read from the index at once.
const TIMER_PAGE: usize = 1000;

/// Per-call bookkeeping for timers.
#[derive(Debug, Default)]
pub struct TimerScan {
    /// How far the store index was scanned in this call, per partition.
    checked: HashMap<Partition, i64>,
    /// Next-due times of customers changed in this call, per partition (a min-heap; entries
    /// superseded by a later change are skipped when popped).
    batch_due: HashMap<Partition, BinaryHeap<Reverse<(i64, String)>>>,
    /// Index entries whose customer's state no longer wants them.
    pub stale: Vec<Timer>,
    /// Partitions whose event-time clock changed (written with the call).
    pub moved: HashSet<Partition>,
}

impl TimerScan {
    /// Remembers when a customer changed in this call is next due.
    pub fn note(&mut self, p: Partition, id: &str, state: &CustomerState, rules: &Rules) {
        if let Some(d) = next_due(state, &rules.policy) {
            self.batch_due
                .entry(p)
                .or_default()
                .push(Reverse((d.millis(), id.to_owned())));
        }
    }
}

/// Timers one customer's event or command may fire before it is applied.
const MAX_FIRINGS_PER_EVENT: usize = 10_000;

/// Runs every timer of this customer due at or before `now`, each at its own due time.
pub fn fire_due(
    p: Partition,
    slot: &mut Slot,
    customer_id: &str,
    now: Timestamp,
    rules: &Rules,
    emitter: &mut Emitter,
) {
    // Every timer due by `now` fires before what happens at `now` (found by the fault matrix:
    // a cart nudge deferred hour by hour through days of absence, beside a session end and a
    // gift mode's end, was more than the 8 firings this stopped at, so the rest fired after
    // the customer's next event). Each firing moves the next due time forward (checked below);
    // the cap only guards against one that crawls.
    for _ in 0..MAX_FIRINGS_PER_EVENT {
        let Some(due) = next_due(&slot.state, &rules.policy).filter(|d| *d <= now) else {
            return;
        };
        let outcome = apply_timer(&mut slot.state, customer_id, due, rules);
        slot.changed = true;
        emitter.outcome(p, outcome);
        if next_due(&slot.state, &rules.policy) == Some(due) {
            return;
        }
    }
}

/// What firing a partition's timers works with.
#[allow(missing_debug_implementations)]
pub struct Firing<'a> {
    pub store: &'a dyn StateStore,
    pub rules: &'a Rules,
    pub emitter: &'a mut Emitter,
    pub slots: &'a mut Slots,
    pub scan: &'a mut TimerScan,
    /// Per partition, every index entry due before this has been handled (in memory only: after
    /// a restart the first scan starts from the beginning).
    pub floors: &'a mut HashMap<Partition, i64>,
}

impl Firing<'_> {
    /// Fires the timers of `p` that event time `wm` has passed: customers changed in this call
    /// from their live state, the rest from the store index.
    pub fn partition(&mut self, p: Partition, wm: i64) -> Result<(), JobError> {
        let rules = self.rules;
        if let Some(heap) = self.scan.batch_due.get_mut(&p) {
            let mut again = Vec::new();
            while heap.peek().is_some_and(|Reverse((d, _))| *d <= wm) {
                let Some(Reverse((due, id))) = heap.pop() else {
                    break;
                };
                let Some(slot) = self.slots.get_mut(&(p, id.clone())) else {
                    continue;
                };
                if next_due(&slot.state, &rules.policy).map(Timestamp::millis) != Some(due) {
                    continue; // superseded by a later change of this customer
                }
                fire_due(p, slot, &id, Timestamp(wm), rules, self.emitter);
                if let Some(next) = next_due(&slot.state, &rules.policy) {
                    again.push(Reverse((next.millis(), id)));
                }
            }
            heap.extend(again.into_iter().filter(|Reverse((d, _))| *d > wm));
        }
        // The index, from where earlier scans left off up to `wm`: bounded on both sides, so a
        // scan never walks the deleted entries that rescheduled timers leave behind.
        let floor = self.floors.get(&p).copied().unwrap_or(i64::MIN);
        let from = floor.max(
            self.scan
                .checked
                .get(&p)
                .map_or(i64::MIN, |c| c.saturating_add(1)),
        );
        if from > wm {
            return Ok(());
        }
        let mut cursor = from;
        let mut complete = true;
        loop {
            let due = self.store.timers_in(p, cursor, wm, TIMER_PAGE)?;
            let mut ids: Vec<&str> = due
                .iter()
                .filter_map(|t| t.key.customer_id())
                .filter(|id| !self.slots.contains_key(&(p, (*id).to_owned())))
                .collect();
            ids.sort_unstable();
            ids.dedup();
            let wanted: Vec<(Partition, &str)> = ids.iter().map(|id| (p, *id)).collect();
            let loaded = slots::load(self.store, &wanted, &rules.policy)?;
            self.slots.extend(loaded);
            for t in &due {
                let Some(id) = t.key.customer_id() else {
                    continue;
                };
                let Some(slot) = self.slots.get_mut(&(p, id.to_owned())) else {
                    continue;
                };
                if slot.changed {
                    // Live state in this call governs (handled above); the commit moves its entry.
                    continue;
                }
                if slot.due_before != Some(t.due) {
                    self.scan.stale.push(t.clone());
                    continue;
                }
                fire_due(p, slot, id, Timestamp(wm), rules, self.emitter);
                self.scan.note(p, id, &slot.state, rules);
            }
            let Some(last) = due.last().map(|t| t.due) else {
                break;
            };
            if due.len() < TIMER_PAGE {
                break;
            }
            // A full page: continue strictly after its last due time so the scan always advances.
            // Entries left at that very instant wait for the next call (the floor stays there).
            complete = false;
            cursor = last.saturating_add(1);
            self.floors.insert(p, last);
            if cursor > wm {
                break;
            }
        }
        self.scan.checked.insert(p, wm);
        if complete {
            self.floors.insert(p, wm.saturating_add(1).max(floor));
        }
        Ok(())
    }
}
