//! The order in which a batch's records reach the broker, and when its input may be committed.
//!
//! Per input partition, batches go through three stages, each only after the one before is
//! acknowledged by the broker:
//!
//! 1. **outputs** (decisions, audit records, dead letters, receipts);
//! 2. **changelog data** (the state the batch wrote), sent only once every earlier batch of the
//!    partition has sent its own, so the changelog holds writes in the order they were made;
//! 3. **changelog meta** (the applied offsets), sent only once every earlier batch's data is
//!    acknowledged, so the changelog never claims input whose state it lacks;
//!
//! and a batch's input offsets become committable once its meta is acknowledged and every
//! earlier batch's are. So a restore from the changelog never skips input whose outputs are
//! missing, and Kafka's committed offset never passes what the changelog holds.
//!
//! A changelog record that fails is sent again together with every changelog record of its
//! partition sent after it, in order: a retried record must never land after a later write of
//! the same key. A failed output is simply sent again (downstream recognises duplicates by id).
//!
//! Pure bookkeeping: this module sends nothing; it says which sequence numbers to send.

use std::collections::{BTreeMap, BTreeSet, HashMap, VecDeque};

/// What a record is, for the stage it belongs to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Kind {
    Output,
    ChangelogData,
    ChangelogMeta,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Stage {
    Outputs,
    Data,
    Meta,
    Done,
}

#[derive(Debug)]
struct Batch {
    /// (topic, next offset to read) to commit once done.
    offsets: Vec<(String, i64)>,
    outputs: Vec<u64>,
    data: Vec<u64>,
    meta: Vec<u64>,
    stage: Stage,
    /// Records of the current stage not yet acknowledged, with the number of sends whose
    /// report is still to come (a re-sent record is acknowledged only by its last send).
    waiting: BTreeMap<u64, u32>,
    /// Highest changelog offset acknowledged for this batch.
    changelog_end: Option<i64>,
}

#[derive(Debug, Default)]
struct Lane {
    batches: VecDeque<Batch>,
    /// Changelog records sent and not part of a done batch, by sequence number.
    changelog_sent: BTreeSet<u64>,
}

#[derive(Debug, Clone, Copy)]
struct Owner {
    partition: i32,
    kind: Kind,
}

/// Per-partition staged bookkeeping of every batch whose records are not all acknowledged.
#[derive(Debug, Default)]
pub struct Relay {
    lanes: BTreeMap<i32, Lane>,
    owner: HashMap<u64, Owner>,
    committable: BTreeMap<(String, i32), i64>,
    deletable: Vec<(i32, u64)>,
    checkpoints: BTreeMap<i32, i64>,
}

impl Relay {
    pub fn new() -> Relay {
        Relay::default()
    }

    /// Registers a batch of `partition` whose input ended at `offsets` (topic, last applied
    /// offset) and which wrote these records. Returns what to send now.
    pub fn open(
        &mut self,
        partition: i32,
        offsets: Vec<(String, i64)>,
        outputs: Vec<u64>,
        data: Vec<u64>,
        meta: Vec<u64>,
    ) -> Vec<u64> {
        for (seqs, kind) in [
            (&outputs, Kind::Output),
            (&data, Kind::ChangelogData),
            (&meta, Kind::ChangelogMeta),
        ] {
            for seq in seqs {
                self.owner.insert(*seq, Owner { partition, kind });
            }
        }
        let lane = self.lanes.entry(partition).or_default();
        lane.batches.push_back(Batch {
            offsets: offsets.into_iter().map(|(t, o)| (t, o + 1)).collect(),
            waiting: BTreeMap::new(),
            outputs,
            data,
            meta,
            stage: Stage::Outputs,
            changelog_end: None,
        });
        let mut send = Vec::new();
        // Outputs never wait for earlier batches (downstream needs them first and soonest).
        if let Some(b) = lane.batches.back_mut() {
            b.waiting = b.outputs.iter().map(|s| (*s, 1)).collect();
            send.extend(b.outputs.iter().copied());
        }
        self.advance(partition, &mut send);
        send
    }

    /// The broker acknowledged `seq` (at `offset` of its topic partition).
    pub fn acked(&mut self, seq: u64, offset: i64) -> Vec<u64> {
        let Some(owner) = self.owner.get(&seq).copied() else {
            return Vec::new(); // unknown: a duplicate report, or dropped by an erasure
        };
        let Some(lane) = self.lanes.get_mut(&owner.partition) else {
            return Vec::new();
        };
        for b in lane.batches.iter_mut() {
            if let Some(n) = b.waiting.get_mut(&seq) {
                *n = n.saturating_sub(1);
                if *n == 0 {
                    b.waiting.remove(&seq);
                }
                if owner.kind != Kind::Output {
                    b.changelog_end = Some(b.changelog_end.map_or(offset, |e| e.max(offset)));
                }
                break;
            }
        }
        let mut send = Vec::new();
        self.advance(owner.partition, &mut send);
        send
    }

    /// The broker refused `seq`: what to send again, in order.
    pub fn failed(&mut self, seq: u64) -> Vec<u64> {
        let Some(owner) = self.owner.get(&seq).copied() else {
            return Vec::new();
        };
        let Some(lane) = self.lanes.get_mut(&owner.partition) else {
            return Vec::new();
        };
        // This send's report came (as a failure); the re-send below is awaited instead.
        for b in lane.batches.iter_mut() {
            if let Some(n) = b.waiting.get_mut(&seq) {
                *n = n.saturating_sub(1);
            }
        }
        if owner.kind == Kind::Output {
            for b in lane.batches.iter_mut() {
                if let Some(n) = b.waiting.get_mut(&seq) {
                    *n += 1;
                }
            }
            return vec![seq];
        }
        // Everything of this partition's changelog sent after the failed record goes again, so
        // the last write of each key stays last in the log.
        let again: Vec<u64> = lane.changelog_sent.range(seq..).copied().collect();
        for b in lane.batches.iter_mut() {
            for s in &again {
                let in_stage = match b.stage {
                    Stage::Data => b.data.contains(s),
                    Stage::Meta => b.meta.contains(s),
                    _ => false,
                };
                if in_stage {
                    *b.waiting.entry(*s).or_insert(0) += 1;
                }
            }
        }
        again
    }

    /// Forgets records an erasure withdrew: they count as done and are never sent again.
    pub fn withdraw(&mut self, seqs: &[u64]) -> Vec<u64> {
        let mut parts = BTreeSet::new();
        for seq in seqs {
            let Some(owner) = self.owner.remove(seq) else {
                continue;
            };
            parts.insert(owner.partition);
            if let Some(lane) = self.lanes.get_mut(&owner.partition) {
                lane.changelog_sent.remove(seq);
                for b in lane.batches.iter_mut() {
                    b.waiting.remove(seq);
                    b.outputs.retain(|s| s != seq);
                    b.data.retain(|s| s != seq);
                    b.meta.retain(|s| s != seq);
                }
            }
        }
        let mut send = Vec::new();
        for p in parts {
            self.advance(p, &mut send);
        }
        send
    }

    fn advance(&mut self, partition: i32, send: &mut Vec<u64>) {
        let Some(lane) = self.lanes.get_mut(&partition) else {
            return;
        };
        let mut prev = Stage::Done;
        for b in lane.batches.iter_mut() {
            loop {
                if !b.waiting.is_empty() {
                    break;
                }
                let next = match b.stage {
                    // Changelog data in the order batches wrote it.
                    Stage::Outputs if prev >= Stage::Data => Stage::Data,
                    // Meta only once every earlier batch's data is acknowledged.
                    Stage::Data if prev >= Stage::Meta => Stage::Meta,
                    Stage::Meta if prev == Stage::Done => Stage::Done,
                    _ => break,
                };
                b.stage = next;
                let seqs = match next {
                    Stage::Data => &b.data,
                    Stage::Meta => &b.meta,
                    _ => break,
                };
                b.waiting = seqs.iter().map(|s| (*s, 1)).collect();
                lane.changelog_sent.extend(seqs.iter().copied());
                send.extend(seqs.iter().copied());
            }
            prev = b.stage;
        }
        while lane.batches.front().is_some_and(|b| b.stage == Stage::Done) {
            let Some(b) = lane.batches.pop_front() else {
                break;
            };
            for (topic, next) in b.offsets {
                let slot = self.committable.entry((topic, partition)).or_insert(next);
                *slot = (*slot).max(next);
            }
            if let Some(end) = b.changelog_end {
                let ck = self.checkpoints.entry(partition).or_insert(end + 1);
                *ck = (*ck).max(end + 1);
            }
            for seq in b.outputs.iter().chain(&b.data).chain(&b.meta) {
                self.owner.remove(seq);
                lane.changelog_sent.remove(seq);
                self.deletable.push((partition, *seq));
            }
        }
    }

    /// Offsets (next to read) that may be committed now, per (topic, partition).
    pub fn take_committable(&mut self) -> Vec<(String, i32, i64)> {
        std::mem::take(&mut self.committable)
            .into_iter()
            .map(|((t, p), o)| (t, p, o))
            .collect()
    }

    /// Outbox entries of done batches: delete them with the next store commit.
    pub fn take_deletable(&mut self) -> Vec<(i32, u64)> {
        std::mem::take(&mut self.deletable)
    }

    /// Per partition, the changelog offset after the last record of a done batch: everything of
    /// the partition's changelog before it is what this instance wrote and holds.
    pub fn take_checkpoints(&mut self) -> Vec<(i32, i64)> {
        std::mem::take(&mut self.checkpoints).into_iter().collect()
    }

    /// Forgets everything of `partition` (revoked). Returns the sequence numbers it held.
    pub fn drop_partition(&mut self, partition: i32) -> Vec<u64> {
        let mut gone = Vec::new();
        if let Some(lane) = self.lanes.remove(&partition) {
            for b in lane.batches {
                gone.extend(b.outputs.iter().chain(&b.data).chain(&b.meta).copied());
            }
        }
        for seq in &gone {
            self.owner.remove(seq);
        }
        self.committable.retain(|(_, p), _| *p != partition);
        self.deletable.retain(|(p, _)| *p != partition);
        self.checkpoints.remove(&partition);
        gone
    }

    /// Whether `partition` has batches not yet done.
    pub fn busy(&self, partition: i32) -> bool {
        self.lanes
            .get(&partition)
            .is_some_and(|l| !l.batches.is_empty())
    }

    /// Records registered and not part of a done batch.
    pub fn outstanding(&self) -> usize {
        self.owner.len()
    }

    /// The kind of a registered record.
    pub fn kind(&self, seq: u64) -> Option<Kind> {
        self.owner.get(&seq).map(|o| o.kind)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn off(o: i64) -> Vec<(String, i64)> {
        vec![("clicks".into(), o)]
    }

    #[test]
    fn a_batch_goes_outputs_then_changelog_data_then_meta_then_commits() {
        let mut r = Relay::new();
        assert_eq!(
            r.open(0, off(9), vec![1, 2], vec![3, 4], vec![5]),
            vec![1, 2]
        );
        assert_eq!(r.acked(1, 100), Vec::<u64>::new());
        assert_eq!(
            r.acked(2, 101),
            vec![3, 4],
            "data once every output is acknowledged"
        );
        assert!(r.take_committable().is_empty());
        assert_eq!(r.acked(4, 11), Vec::<u64>::new());
        assert_eq!(r.acked(3, 10), vec![5]);
        assert!(r.take_committable().is_empty(), "meta not acknowledged yet");
        assert_eq!(r.acked(5, 12), Vec::<u64>::new());
        assert_eq!(r.take_committable(), vec![("clicks".into(), 0, 10)]);
        assert_eq!(r.take_checkpoints(), vec![(0, 13)]);
        let mut del = r.take_deletable();
        del.sort_unstable();
        assert_eq!(del, vec![(0, 1), (0, 2), (0, 3), (0, 4), (0, 5)]);
        assert_eq!(r.outstanding(), 0);
        assert!(!r.busy(0));
    }

    #[test]
    fn a_later_batch_never_sends_changelog_before_an_earlier_one_nor_commits_first() {
        let mut r = Relay::new();
        r.open(0, off(10), vec![1], vec![2], vec![3]);
        assert_eq!(r.open(0, off(20), vec![4], vec![5], vec![6]), vec![4]);
        assert_eq!(
            r.acked(4, 0),
            Vec::<u64>::new(),
            "batch 1 has sent no data yet"
        );
        assert_eq!(r.acked(1, 0), vec![2, 5], "both batches' data, in order");
        assert_eq!(
            r.acked(5, 1),
            Vec::<u64>::new(),
            "batch 1's data is still out"
        );
        assert_eq!(r.acked(2, 0), vec![3, 6]);
        assert_eq!(r.acked(6, 3), Vec::<u64>::new());
        assert!(
            r.take_committable().is_empty(),
            "batch 1's meta holds back batch 2"
        );
        assert_eq!(r.acked(3, 2), Vec::<u64>::new());
        assert_eq!(r.take_committable(), vec![("clicks".into(), 0, 21)]);
        assert_eq!(r.take_checkpoints(), vec![(0, 4)]);
    }

    #[test]
    fn partitions_never_wait_for_each_other() {
        let mut r = Relay::new();
        r.open(0, off(5), vec![1], vec![2], vec![]);
        assert_eq!(r.open(1, off(7), vec![], vec![3], vec![]), vec![3]);
        r.acked(3, 0);
        assert_eq!(r.take_committable(), vec![("clicks".into(), 1, 8)]);
        assert!(r.busy(0) && !r.busy(1));
    }

    #[test]
    fn a_failed_changelog_record_goes_again_with_everything_sent_after_it() {
        let mut r = Relay::new();
        r.open(0, off(1), vec![], vec![1, 2], vec![3]);
        r.open(0, off(2), vec![], vec![4], vec![5]);
        // 1, 2 and 4 are out; 2 fails: 2 and 4 go again, in order, and must be acknowledged again.
        assert_eq!(r.acked(1, 0), Vec::<u64>::new());
        assert_eq!(r.failed(2), vec![2, 4]);
        assert_eq!(
            r.acked(4, 1),
            Vec::<u64>::new(),
            "the first send of 4 reports"
        );
        assert_eq!(r.acked(2, 2), vec![3]);
        assert_eq!(
            r.acked(4, 3),
            vec![5],
            "meta only after the re-sent 4 landed"
        );
        assert_eq!(r.acked(3, 4), Vec::<u64>::new());
        assert_eq!(r.acked(5, 5), Vec::<u64>::new());
        assert_eq!(r.take_committable(), vec![("clicks".into(), 0, 3)]);
        assert_eq!(r.failed(99), Vec::<u64>::new());
    }

    #[test]
    fn a_failed_output_goes_again_alone() {
        let mut r = Relay::new();
        r.open(0, off(1), vec![1, 2], vec![3], vec![]);
        assert_eq!(r.failed(2), vec![2]);
        r.acked(1, 0);
        assert_eq!(
            r.acked(2, 0),
            vec![3],
            "the re-sent output's report releases the data"
        );
    }

    #[test]
    fn withdrawn_records_count_as_done_and_a_dropped_partition_is_forgotten() {
        let mut r = Relay::new();
        r.open(0, off(1), vec![1, 2], vec![3], vec![]);
        assert_eq!(r.withdraw(&[2]), Vec::<u64>::new());
        assert_eq!(r.acked(1, 0), vec![3]);
        r.open(1, off(4), vec![7], vec![], vec![]);
        let mut gone = r.drop_partition(1);
        gone.sort_unstable();
        assert_eq!(gone, vec![7]);
        assert_eq!(r.acked(7, 0), Vec::<u64>::new());
        assert!(!r.busy(1));
        r.acked(3, 0);
        assert_eq!(r.take_committable(), vec![("clicks".into(), 0, 2)]);
    }

    #[test]
    fn a_batch_with_nothing_to_send_is_committable_at_once_after_earlier_ones() {
        let mut r = Relay::new();
        assert!(r.open(0, off(3), vec![], vec![], vec![]).is_empty());
        assert_eq!(r.take_committable(), vec![("clicks".into(), 0, 4)]);
        r.open(0, off(5), vec![1], vec![], vec![]);
        r.open(0, off(6), vec![], vec![], vec![]);
        assert!(r.take_committable().is_empty());
        r.acked(1, 0);
        assert_eq!(r.take_committable(), vec![("clicks".into(), 0, 7)]);
    }
}
