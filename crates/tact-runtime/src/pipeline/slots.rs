//! The customers one job call works on: loaded together, changed in memory, written back in the
//! call's one commit with the index entries their state implies (their next timer, whom they
//! follow).

use super::envelope::{self, Versions};
use std::collections::HashMap;
use tact_core::{next_due, CustomerState, Policy, Timestamp};
use tact_edge::JobError;
use tact_store::{Commit, IndexKey, Partition, Purge, StateKey, StateStore, Timer};

/// Index times are rounded up to this: a customer active every minute moves their index entry
/// once per bucket, not once per event (each move leaves a deleted entry for scans to skip).
/// Timers still fire at their exact due time; the index only says when to look.
pub const TIMER_BUCKET_MS: i64 = 5 * 60_000;

pub fn index_due(due: Timestamp) -> i64 {
    due.millis()
        .saturating_add(TIMER_BUCKET_MS - 1)
        .div_euclid(TIMER_BUCKET_MS)
        .saturating_mul(TIMER_BUCKET_MS)
}

#[derive(Debug)]
pub struct Slot {
    pub versions: Versions,
    pub state: CustomerState,
    pub changed: bool,
    /// Erased, or a category made private: deleted values must leave the files after commit.
    pub purge: bool,
    /// The stored state's timer index time, so a changed state moves its index entry.
    pub due_before: Option<i64>,
    /// The stored state's follows, so a change moves its follow-index entries.
    pub follows_before: Vec<String>,
}

/// Customers by (partition, id).
pub type Slots = HashMap<(Partition, String), Slot>;

/// Reads the stored state of `ids` (absent: a customer never seen).
pub fn load(
    store: &dyn StateStore,
    ids: &[(Partition, &str)],
    policy: &Policy,
) -> Result<Slots, JobError> {
    let keys: Vec<StateKey> = ids
        .iter()
        .map(|(_, id)| StateKey::Customer((*id).to_owned()))
        .collect();
    let refs: Vec<(Partition, &StateKey)> = ids.iter().map(|(p, _)| *p).zip(&keys).collect();
    let raw = store.multi_get(&refs)?;
    let mut slots = HashMap::with_capacity(ids.len());
    for ((p, id), value) in ids.iter().zip(raw) {
        let (versions, state) = match value {
            None => (Versions::new(), CustomerState::default()),
            Some(bytes) => envelope::decode(&bytes).map_err(|e| {
                JobError(format!(
                    "stored state is unreadable ({e}); inspect the state directory before restarting"
                ))
            })?,
        };
        let due_before = next_due(&state, policy).map(index_due);
        let follows_before = state.follows.clone();
        slots.insert(
            (*p, (*id).to_owned()),
            Slot {
                versions,
                state,
                changed: false,
                purge: false,
                due_before,
                follows_before,
            },
        );
    }
    Ok(slots)
}

/// Writes every changed slot into `commit`: its state (or its deletion when nothing is left),
/// its moved timer and follow-index entries. Returns the earliest new timer per partition (a
/// timer earlier than what the index was scanned up to must be scanned for again) and the purges
/// to run after the commit.
pub fn write(
    slots: Slots,
    policy: &Policy,
    commit: &mut Commit,
) -> (Vec<(Partition, i64)>, Vec<Purge>) {
    let mut earliest: HashMap<Partition, i64> = HashMap::new();
    let mut purges = Vec::new();
    for ((p, id), slot) in slots {
        if !slot.changed {
            continue;
        }
        // The follow index moves with the state (an erased state follows nothing).
        for s in &slot.follows_before {
            if !slot.state.follows.contains(s) {
                commit.index_deletes.push((
                    p,
                    IndexKey::Follow {
                        subject: s.clone(),
                        customer: id.clone(),
                    },
                ));
            }
        }
        for s in &slot.state.follows {
            if !slot.follows_before.contains(s) {
                commit.index_puts.push((
                    p,
                    IndexKey::Follow {
                        subject: s.clone(),
                        customer: id.clone(),
                    },
                    Vec::new(),
                ));
            }
        }
        let key = StateKey::Customer(id);
        let due_after = if slot.state.is_empty() {
            None
        } else {
            next_due(&slot.state, policy).map(index_due)
        };
        if slot.due_before != due_after {
            if let Some(due) = slot.due_before {
                commit.timer_deletes.push(Timer {
                    partition: p,
                    due,
                    key: key.clone(),
                });
            }
            if let Some(due) = due_after {
                let e = earliest.entry(p).or_insert(due);
                *e = (*e).min(due);
                commit.timer_puts.push(Timer {
                    partition: p,
                    due,
                    key: key.clone(),
                });
            }
        }
        if slot.purge {
            purges.push(Purge::Key(p, key.clone()));
        }
        if slot.state.is_empty() {
            commit.state_deletes.push((p, key));
        } else {
            commit
                .state_puts
                .push((p, key, envelope::encode(&slot.versions, &slot.state)));
        }
    }
    (earliest.into_iter().collect(), purges)
}

/// The derived entries of a restored customer: their timer and whom they follow.
pub fn derive(
    p: Partition,
    key: &StateKey,
    value: &[u8],
    policy: &Policy,
    commit: &mut Commit,
) -> Result<(), JobError> {
    let StateKey::Customer(id) = key else {
        return Ok(());
    };
    let (_, state) = envelope::decode(value).map_err(|e| {
        JobError(format!(
            "a restored state of partition {p} is unreadable: {e}"
        ))
    })?;
    if let Some(due) = next_due(&state, policy).map(index_due) {
        commit.timer_puts.push(Timer {
            partition: p,
            due,
            key: key.clone(),
        });
    }
    for s in &state.follows {
        commit.index_puts.push((
            p,
            IndexKey::Follow {
                subject: s.clone(),
                customer: id.clone(),
            },
            Vec::new(),
        ));
    }
    Ok(())
}
