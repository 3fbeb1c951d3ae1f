//! In-order completion of batches: which input offsets may be committed now.

use std::collections::{BTreeMap, HashMap, VecDeque};

#[derive(Debug)]
struct Pending {
    id: u64,
    outstanding: usize,
    /// (topic, partition) -> next offset to read (last applied + 1), as Kafka commits it.
    offsets: Vec<(String, i32, i64)>,
}

/// Tracks batches in the order they were written. A batch completes when every record produced
/// from it is acknowledged; offsets are released only for a completed prefix of batches, so a
/// slow early batch holds back later ones (an out-of-order commit could skip undelivered output).
#[derive(Debug, Default)]
pub struct OffsetTracker {
    next_id: u64,
    batches: VecDeque<Pending>,
    owner: HashMap<u64, u64>,
}

impl OffsetTracker {
    pub fn new() -> OffsetTracker {
        OffsetTracker::default()
    }

    /// Registers a batch whose output records carry `seqs` and whose input ended at `offsets`
    /// (topic, partition, last applied offset).
    pub fn open_batch(&mut self, offsets: Vec<(String, i32, i64)>, seqs: &[u64]) {
        let id = self.next_id;
        self.next_id += 1;
        for seq in seqs {
            self.owner.insert(*seq, id);
        }
        self.batches.push_back(Pending {
            id,
            outstanding: seqs.len(),
            offsets: offsets.into_iter().map(|(t, p, o)| (t, p, o + 1)).collect(),
        });
    }

    /// Marks the record `seq` acknowledged. Unknown sequence numbers (e.g. a duplicate report)
    /// are ignored.
    pub fn delivered(&mut self, seq: u64) {
        let Some(id) = self.owner.remove(&seq) else {
            return;
        };
        if let Some(batch) = self.batches.iter_mut().find(|b| b.id == id) {
            batch.outstanding = batch.outstanding.saturating_sub(1);
        }
    }

    /// Offsets (next to read) that may be committed now: the highest per partition over the
    /// completed prefix. Removes those batches.
    pub fn take_committable(&mut self) -> Vec<(String, i32, i64)> {
        let mut merged: BTreeMap<(String, i32), i64> = BTreeMap::new();
        while self.batches.front().is_some_and(|b| b.outstanding == 0) {
            if let Some(batch) = self.batches.pop_front() {
                for (t, p, o) in batch.offsets {
                    let slot = merged.entry((t, p)).or_insert(o);
                    *slot = (*slot).max(o);
                }
            }
        }
        merged.into_iter().map(|((t, p), o)| (t, p, o)).collect()
    }

    /// Records produced but not yet acknowledged.
    pub fn outstanding(&self) -> usize {
        self.owner.len()
    }

    /// Batches not yet committable.
    pub fn pending_batches(&self) -> usize {
        self.batches.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn off(p: i32, o: i64) -> Vec<(String, i32, i64)> {
        vec![("clicks".into(), p, o)]
    }

    #[test]
    fn a_batch_without_output_is_committable_at_once_as_the_next_offset() {
        let mut t = OffsetTracker::new();
        t.open_batch(off(0, 9), &[]);
        assert_eq!(t.take_committable(), vec![("clicks".into(), 0, 10)]);
        assert!(t.take_committable().is_empty());
    }

    #[test]
    fn a_later_batch_waits_for_an_earlier_undelivered_one() {
        let mut t = OffsetTracker::new();
        t.open_batch(off(0, 10), &[1, 2]);
        t.open_batch(off(0, 20), &[3]);
        t.delivered(3);
        assert!(
            t.take_committable().is_empty(),
            "batch 1 still has output in flight"
        );
        t.delivered(1);
        assert!(t.take_committable().is_empty());
        t.delivered(2);
        assert_eq!(t.take_committable(), vec![("clicks".into(), 0, 21)]);
        assert_eq!(t.outstanding(), 0);
        assert_eq!(t.pending_batches(), 0);
    }

    #[test]
    fn offsets_are_merged_per_partition_and_duplicate_reports_ignored() {
        let mut t = OffsetTracker::new();
        t.open_batch(vec![("a".into(), 0, 5), ("a".into(), 1, 7)], &[1]);
        t.open_batch(vec![("a".into(), 0, 8)], &[]);
        t.delivered(1);
        t.delivered(1);
        t.delivered(99);
        assert_eq!(
            t.take_committable(),
            vec![("a".into(), 0, 9), ("a".into(), 1, 8)]
        );
    }
}
