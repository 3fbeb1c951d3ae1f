//! The decision pipeline as a job on the stateful edge: click events and profile commands of a
//! partition in, interleaved in event time, folded through the pure core; decisions, audit
//! records, dead letters and erasure receipts out, with each customer's next state.
//!
//! Modules: [`work`] decodes once; [`interleave`] orders the two inputs; [`slots`] loads and
//! writes customers (with the [`envelope`] of input they absorbed); [`timers`] fires durable
//! timers in offset order; [`release`] announces new releases; [`emitter`] encodes and counts
//! outgoing records; [`erasure`] forgets a customer, provably.

pub mod emitter;
pub mod envelope;
mod erasure;
pub mod interleave;
pub mod release;
pub mod slots;
pub mod timers;
pub mod work;

use crate::config::Settings;
pub use emitter::RunSummary;
use emitter::{Emitter, Origin};
use interleave::Interleaver;
use release::{Progress, RELEASE_PAGE};
use slots::Slots;
use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::Arc;
use std::time::Instant;
use tact_codec::decode_release;
use tact_core::PartitionClock;
use tact_core::{
    apply_command, apply_event, apply_release, CommandBody, Outcome, Release, Timestamp,
};
use tact_edge::{Cx, Emit, Input, Job, JobError, Record, RecordLimits};
use tact_store::{Commit, IndexKey, IndexPrefix, MetaKey, Partition, StateEntries, StateStore};
use tact_telemetry::Metrics;
use timers::{Firing, TimerScan};
use work::{Arrived, Work, CLICKS};

/// The decision pipeline job.
pub struct Pipeline {
    settings: Arc<Settings>,
    emitter: Emitter,
    interleaver: Interleaver,
    /// Event time per open partition (where enough customers agree), in its metadata.
    clocks: HashMap<Partition, PartitionClock>,
    /// Per partition, every timer index entry due before this has been handled.
    floors: HashMap<Partition, i64>,
    /// The release being announced (catalog partition, offset, release), decoded once.
    release: Option<(i32, i64, Release)>,
}

impl std::fmt::Debug for Pipeline {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Pipeline")
            .field("held", &self.interleaver.held())
            .finish_non_exhaustive()
    }
}

impl Pipeline {
    pub fn new(settings: Arc<Settings>, metrics: Arc<Metrics>) -> Pipeline {
        Pipeline {
            emitter: Emitter::new(settings.output, settings.topics.clone(), metrics),
            interleaver: Interleaver::new(settings.interleave_wait),
            settings,
            clocks: HashMap::new(),
            floors: HashMap::new(),
            release: None,
        }
    }

    pub fn summary(&self) -> &RunSummary {
        &self.emitter.summary
    }

    pub fn into_summary(self) -> RunSummary {
        self.emitter.summary
    }

    fn clock(&self, p: Partition) -> PartitionClock {
        self.clocks.get(&p).cloned().unwrap_or_default()
    }

    fn watermark(&self, p: Partition) -> i64 {
        self.clocks.get(&p).map_or(i64::MIN, PartitionClock::time)
    }

    /// Folds `ready` (in order) into one emit.
    fn fold(
        &mut self,
        store: &dyn StateStore,
        cx: &Cx<'_>,
        ready: Vec<Arrived>,
    ) -> Result<Emit, JobError> {
        let rules = &self.settings.rules;
        let mut ids: Vec<(Partition, &str)> = Vec::new();
        let mut seen = HashSet::new();
        for a in &ready {
            if let Some(id) = a.customer_id() {
                if seen.insert((a.partition, id)) {
                    ids.push((a.partition, id));
                }
            }
        }
        let mut slots = slots::load(store, &ids, &rules.policy)?;
        let mut scan = TimerScan::default();
        let mut emit = Emit::default();
        let mut applied: BTreeMap<(Partition, Input), i64> = BTreeMap::new();
        for a in &ready {
            applied.insert((a.partition, a.input), a.offset);
            let p = a.partition;
            match &a.work {
                Work::Click(ev) => {
                    let key = (p, ev.customer_id.clone());
                    if let Some(slot) = slots.get_mut(&key) {
                        // Already absorbed (a partial restore replays what a changelog batch
                        // held without its offsets): event time still moves on.
                        if a.offset > slot.versions.click {
                            timers::fire_due(
                                p,
                                slot,
                                &ev.customer_id,
                                ev.event_time,
                                rules,
                                &mut self.emitter,
                            );
                            let outcome = apply_event(&mut slot.state, ev, rules);
                            slot.versions.click = a.offset;
                            slot.changed = true;
                            self.emitter.summary.events += 1;
                            if outcome.duplicate {
                                self.emitter.metrics().duplicate_events.inc();
                                self.emitter.summary.duplicates += 1;
                            } else {
                                scan.note(p, &ev.customer_id, &slot.state, rules);
                                self.emitter.outcome(p, outcome);
                            }
                        }
                    }
                    // The partition's event time moved: fire what it has passed, in offset order.
                    let quorum = self.settings.partition_time_quorum;
                    let clock = self.clocks.entry(p).or_default();
                    clock.observe(&ev.customer_id, ev.event_time.millis(), quorum);
                    let wm = clock.time();
                    scan.moved.insert(p);
                    Firing {
                        store,
                        rules,
                        emitter: &mut self.emitter,
                        slots: &mut slots,
                        scan: &mut scan,
                        floors: &mut self.floors,
                    }
                    .partition(p, wm)?;
                }
                Work::Command(cmd) => {
                    let key = (p, cmd.customer_id.clone());
                    let Some(slot) = slots.get_mut(&key) else {
                        continue;
                    };
                    if a.offset <= slot.versions.command {
                        continue;
                    }
                    self.emitter.summary.commands += 1;
                    timers::fire_due(
                        p,
                        slot,
                        &cmd.customer_id,
                        cmd.issued_at,
                        rules,
                        &mut self.emitter,
                    );
                    let report = matches!(cmd.body, CommandBody::Erase { .. })
                        .then(|| slot.state.erasure_report());
                    // A category newly made private: its traces are deleted now and purged from
                    // the files after the commit, like an erasure of just that part.
                    if let CommandBody::SetPreferences(update) = &cmd.body {
                        let held = &slot.state.preferences.private_categories;
                        if update.private_categories.iter().any(|c| !held.contains(c)) {
                            slot.purge = true;
                        }
                    }
                    let effect = apply_command(&mut slot.state, cmd, rules);
                    slot.versions.command = a.offset;
                    slot.changed = true;
                    if effect == tact_core::CommandEffect::Erase {
                        slot.purge = true;
                        erasure::erased(
                            erasure::Erased {
                                partition: p,
                                command: cmd,
                                report: report.unwrap_or_default(),
                                changelog: &self.settings.topics.changelog,
                            },
                            cx,
                            &mut self.emitter,
                            &mut emit.withdraw,
                        )?;
                    }
                    scan.note(p, &cmd.customer_id, &slot.state, rules);
                }
                Work::Dead(class, message) => {
                    let topic = match a.input {
                        CLICKS => &self.settings.topics.clickstream,
                        _ => &self.settings.topics.profile_commands,
                    };
                    let origin = Origin {
                        topic,
                        label: work::label(a.input),
                        partition: p,
                        offset: a.offset,
                        key: a.key.as_deref(),
                        value: a.raw.as_deref(),
                    };
                    self.emitter.dead_letter(p, origin, *class, message);
                }
            }
        }
        self.finish(&mut emit, slots, scan);
        emit.applied = applied.into_iter().map(|((p, i), o)| (p, i, o)).collect();
        Ok(emit)
    }

    /// Writes the call's slots, stale timer entries and moved watermarks into `emit`.
    fn finish(&mut self, emit: &mut Emit, slots: Slots, scan: TimerScan) {
        emit.commit.timer_deletes.extend(scan.stale);
        let (earliest, purges) = slots::write(slots, &self.settings.rules.policy, &mut emit.commit);
        for (p, due) in earliest {
            // A timer earlier than what the index was scanned up to (late events): scans must
            // start from it again.
            let floor = self.floors.entry(p).or_insert(i64::MIN);
            *floor = (*floor).min(due);
        }
        emit.purge.extend(purges);
        for p in scan.moved {
            emit.commit
                .meta_puts
                .push((p, MetaKey::Watermark, self.clock(p).encode()));
        }
        emit.outputs.extend(self.emitter.take());
    }

    /// Announces the release at (`c`, `offset`) to the next page of followers of the open
    /// partitions that have not had it. Returns whether every open partition is done with it.
    fn announce(
        &mut self,
        cx: &Cx<'_>,
        c: i32,
        offset: i64,
        record: &Record,
    ) -> Result<(Emit, bool), JobError> {
        let mut emit = Emit::default();
        let store = cx.store;
        let release = match self.release.take() {
            Some((rc, ro, r)) if rc == c && ro == offset => r,
            _ => match decode_release(
                record.value.as_deref().unwrap_or_default(),
                self.settings.catalog_format,
                self.settings.max_message_bytes,
            ) {
                Ok(r) => r,
                Err(e) => {
                    // Dead-lettered once, by the owner of the partition the catalog partition
                    // maps to; every open partition records it as applied.
                    let owner = c.rem_euclid(cx.partition_count.max(1));
                    for p in cx.partitions {
                        let done =
                            release::progress(store, *p, c)?.is_some_and(|g| g.next() > offset);
                        if done {
                            continue;
                        }
                        if *p == owner {
                            let origin = Origin {
                                topic: &self.settings.topics.catalog,
                                label: work::label(Input::Global),
                                partition: c,
                                offset,
                                key: record.key.as_deref(),
                                value: record.value.as_deref(),
                            };
                            self.emitter.dead_letter(*p, origin, e.class, &e.message);
                        }
                        emit.commit.meta_puts.push((
                            *p,
                            MetaKey::Releases(c),
                            Progress::Done(offset).encode(),
                        ));
                    }
                    emit.outputs = self.emitter.take();
                    return Ok((emit, true));
                }
            },
        };
        let rules = &self.settings.rules;
        let mut budget = RELEASE_PAGE;
        let mut all_done = true;
        let mut all_slots: Slots = HashMap::new();
        for p in cx.partitions {
            let progress = release::progress(store, *p, c)?;
            let after = match &progress {
                Some(g) if g.next() > offset => continue,
                Some(Progress::At(o, last)) if *o == offset => Some(IndexKey::Follow {
                    subject: release.subject.clone(),
                    customer: last.clone(),
                }),
                _ => None,
            };
            if budget == 0 {
                all_done = false;
                break;
            }
            let requested = budget;
            let page = store.index_scan(
                *p,
                &IndexPrefix::Followers(release.subject.clone()),
                after.as_ref(),
                requested,
            )?;
            let ids: Vec<String> = page
                .iter()
                .map(|(k, _)| match k {
                    IndexKey::Follow { customer, .. } => customer.clone(),
                })
                .collect();
            let wanted: Vec<(Partition, &str)> = ids.iter().map(|id| (*p, id.as_str())).collect();
            let mut slots = slots::load(store, &wanted, &rules.policy)?;
            for id in &ids {
                let Some(slot) = slots.get_mut(&(*p, id.clone())) else {
                    continue;
                };
                if slot.versions.catalog(c) >= offset {
                    continue; // announced already (a replay after a partial restore)
                }
                let outcome = apply_release(&mut slot.state, id, &release, rules);
                if outcome != Outcome::default() || slot.state.follows.contains(&release.subject) {
                    slot.versions.set_catalog(c, offset);
                    slot.changed = true;
                }
                self.emitter.outcome(*p, outcome);
            }
            budget = budget.saturating_sub(page.len());
            // A short page is the end of this partition's followers; a full one may have more.
            let progress = match ids.last() {
                Some(last) if page.len() >= requested => {
                    all_done = false;
                    Progress::At(offset, last.clone())
                }
                _ => Progress::Done(offset),
            };
            emit.commit
                .meta_puts
                .push((*p, MetaKey::Releases(c), progress.encode()));
            all_slots.extend(slots);
        }
        self.finish(&mut emit, all_slots, TimerScan::default());
        if all_done {
            tracing::info!(release = %release.release_id, subject = %release.subject, "release announced to the followers of this instance's partitions");
        } else {
            self.release = Some((c, offset, release));
        }
        Ok((emit, all_done))
    }
}

impl Job for Pipeline {
    fn limits(&mut self, limits: &RecordLimits) -> Result<(), JobError> {
        self.emitter
            .fit_dead_letters(limits.of(&self.emitter.topics().dead_letter))
    }

    fn open(&mut self, cx: &Cx<'_>, p: Partition) -> Result<(), JobError> {
        let clock = match cx.store.meta(p, &MetaKey::Watermark)? {
            None => PartitionClock::default(),
            Some(v) => PartitionClock::decode(&v).ok_or_else(|| {
                JobError(format!(
                    "partition {p}: the stored event-time clock is corrupt"
                ))
            })?,
        };
        self.clocks.insert(p, clock);
        self.floors.remove(&p);
        Ok(())
    }

    fn close(&mut self, p: Partition) {
        self.clocks.remove(&p);
        self.floors.remove(&p);
        self.interleaver.forget(p);
    }

    fn process(&mut self, cx: &Cx<'_>, records: Vec<Record>) -> Result<Emit, JobError> {
        let now = Instant::now();
        let metrics = self.emitter.metrics().clone();
        let arrived: Vec<Arrived> = records
            .into_iter()
            .map(|r| Arrived::decode(r, &self.settings, &metrics))
            .collect();
        self.interleaver.push(arrived, now);
        let ready =
            self.interleaver
                .release(now, &self.clocks, self.settings.partition_time_quorum);
        metrics
            .interleave_held
            .set(i64::try_from(self.interleaver.held()).unwrap_or(i64::MAX));
        if ready.is_empty() {
            return Ok(Emit::default());
        }
        self.fold(cx.store, cx, ready)
    }

    fn held(&self) -> usize {
        self.interleaver.held()
    }

    fn process_global(&mut self, cx: &Cx<'_>, record: &Record) -> Result<(Emit, bool), JobError> {
        self.announce(cx, record.partition, record.offset, record)
    }

    fn global_position(
        &self,
        store: &dyn StateStore,
        p: Partition,
        global: i32,
    ) -> Result<Option<i64>, JobError> {
        Ok(release::progress(store, p, global)?.map(|g| g.next()))
    }

    /// The input is idle: wall-clock time moves timers (sessions end, carts come due).
    fn idle(&mut self, cx: &Cx<'_>, now_ms: i64) -> Result<Emit, JobError> {
        let mut emit = Emit::default();
        if self.interleaver.held() > 0 {
            return Ok(emit);
        }
        let rules = &self.settings.rules;
        let mut slots = HashMap::new();
        let mut scan = TimerScan::default();
        for p in cx.partitions {
            let wm = self.watermark(*p).max(now_ms);
            Firing {
                store: cx.store,
                rules,
                emitter: &mut self.emitter,
                slots: &mut slots,
                scan: &mut scan,
                floors: &mut self.floors,
            }
            .partition(*p, wm)?;
        }
        if slots.values().all(|s: &slots::Slot| !s.changed) && scan.stale.is_empty() {
            return Ok(emit);
        }
        // Wall-clock time is not written as the watermark: event time stays the events'.
        scan.moved.clear();
        self.finish(&mut emit, slots, scan);
        Ok(emit)
    }

    fn derive(&self, p: Partition, restored: &StateEntries) -> Result<Commit, JobError> {
        let mut commit = Commit::default();
        for (key, value) in restored {
            slots::derive(p, key, value, &self.settings.rules.policy, &mut commit)?;
        }
        Ok(commit)
    }
}

/// The timestamp of "now" for an erasure receipt.
pub(crate) fn wall_clock() -> Timestamp {
    Timestamp(
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX)),
    )
}

#[cfg(test)]
mod tests;
