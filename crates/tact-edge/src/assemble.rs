//! The one place a job's [`Emit`] becomes a store commit: its writes, the applied offsets in the
//! partitions' metadata, and every outgoing record in the outbox (outputs, then the changelog
//! records of the state and metadata it wrote), numbered in the order they are to be sent.

use crate::changelog;
use crate::job::{Emit, Input};
use crate::outbox::{OutRecord, OutboxEntry};
use std::collections::BTreeMap;
use tact_kafka::Kind;
use tact_store::{encode_i64, Commit, LocalKey, MetaKey, Partition, Purge, PROCESS};

/// One partition's share of an assembled emit, for the relay.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Stages {
    /// (topic, last applied offset) committed once the batch is through.
    pub offsets: Vec<(String, i64)>,
    pub outputs: Vec<u64>,
    pub data: Vec<u64>,
    pub meta: Vec<u64>,
}

/// An emit ready to be written.
#[derive(Debug, Default)]
pub struct Assembled {
    pub commit: Commit,
    /// The sequence number after the last one used.
    pub next_seq: u64,
    /// Every outbox entry written, by sequence number.
    pub entries: Vec<(u64, Partition, OutboxEntry)>,
    pub stages: BTreeMap<Partition, Stages>,
    /// Outbox records of earlier emits to drop unsent.
    pub withdrawn: Vec<u64>,
    /// Purges to run after the commit.
    pub purge: Vec<Purge>,
    /// (partition, input, offset) applied.
    pub applied: Vec<(Partition, Input, i64)>,
}

/// Turns `emit` into one commit. `topic_of` names an input's topic; `changelog` is the topic the
/// state changes go to; sequence numbers start at `next_seq`.
pub fn assemble(
    emit: Emit,
    next_seq: u64,
    changelog_topic: &str,
    topic_of: &dyn Fn(Input) -> Option<String>,
) -> Assembled {
    let Emit {
        mut commit,
        outputs,
        applied,
        withdraw,
        purge,
    } = emit;
    let mut stages: BTreeMap<Partition, Stages> = BTreeMap::new();
    let mut entries = Vec::new();
    let mut next = next_seq;
    let mut add = |p: Partition, kind: Kind, record: OutRecord| {
        let seq = next;
        next += 1;
        entries.push((seq, p, OutboxEntry { kind, record }));
        seq
    };
    for (p, record) in outputs {
        let seq = add(p, Kind::Output, record);
        stages.entry(p).or_default().outputs.push(seq);
    }
    for (p, input, offset) in &applied {
        if *input == Input::Global {
            continue; // the job keeps its own progress of the global input
        }
        let Some(topic) = topic_of(*input) else {
            continue;
        };
        commit
            .meta_puts
            .push((*p, MetaKey::Applied(topic.clone()), encode_i64(*offset)));
        stages.entry(*p).or_default().offsets.push((topic, *offset));
    }
    let record = |p: Partition, key: Vec<u8>, value: Option<Vec<u8>>| OutRecord {
        topic: changelog_topic.to_owned(),
        partition: Some(p),
        key,
        value,
        fallback: None,
    };
    // State puts, then deletes (a deletion never lands before the writes it supersedes), then
    // the metadata, in the relay's later stage.
    for (p, k, v) in &commit.state_puts {
        let seq = add(
            *p,
            Kind::ChangelogData,
            record(*p, changelog::state_key(k), Some(v.clone())),
        );
        stages.entry(*p).or_default().data.push(seq);
    }
    for (p, k) in &commit.state_deletes {
        let seq = add(
            *p,
            Kind::ChangelogData,
            record(*p, changelog::state_key(k), None),
        );
        stages.entry(*p).or_default().data.push(seq);
    }
    for (p, k, v) in &commit.meta_puts {
        let seq = add(
            *p,
            Kind::ChangelogMeta,
            record(*p, changelog::meta_key(k), Some(v.clone())),
        );
        stages.entry(*p).or_default().meta.push(seq);
    }
    for (seq, p, entry) in &entries {
        commit.outbox_puts.push((*p, *seq, entry.encode()));
    }
    commit.outbox_deletes.extend(withdraw.iter().copied());
    commit.local_puts.push((
        PROCESS,
        LocalKey::OutboxNext,
        encode_i64(i64::try_from(next).unwrap_or(i64::MAX)),
    ));
    if !purge.is_empty() {
        // Set with the commit, cleared after the purge: a crash in between re-runs it.
        commit.local_puts.push(crate::purger::Purger::flag());
    }
    Assembled {
        commit,
        next_seq: next,
        entries,
        stages,
        withdrawn: withdraw.into_iter().map(|(_, s)| s).collect(),
        purge,
        applied,
    }
}
