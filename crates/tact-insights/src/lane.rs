//! The insights lane as a job on the stateful edge. Two inputs per partition number p: the
//! clickstream's partition p (sessions assembled into p's share of each window) and the internal
//! partials topic's partition p (the shares of the windows p merges, from every partition).
//!
//! State per partition, all replicated through the changelog: the salt of p's session
//! references (`StateKey::Salt`, so the partition's next owner computes the same references),
//! session buffers (`Session`, a salted reference, never an id), p's window shares (`Window`), the
//! shares p merges (`Merge`) and each source's progress (`Progress`), and in its metadata the
//! watermark and how far p has closed its shares. Salt and progress are state, not metadata,
//! because they must reach the changelog before what depends on them (puts land before deletes,
//! metadata last).

use crate::codec::{
    decode_partials, decode_session, decode_window, encode_finding, encode_partials,
    encode_session, encode_window, PartialsMessage,
};
use crate::config::InsightsSettings;
use crate::core::{merge_partition, Aggregator, ClosedWindow, Merger, SessionRef, Tally};
use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::atomic::AtomicBool;
use std::sync::Arc;
use std::time::Duration;
use tact_codec::decode_click;
use tact_core::PartitionClock;
use tact_edge::{
    Cx, Edge, EdgeError, EdgeSettings, Emit, Input, Job, JobError, OutRecord, Record, Topic,
};
use tact_kafka::admin::TopicSpec;
use tact_store::{
    decode_i64, encode_i64, Commit, MetaKey, Partition, StateEntries, StateKey, StateKind,
    StateStore,
};
use tact_telemetry::{Health, InsightsMetrics, KindLabel};

const PARTIALS: Input = Input::Co(0);
/// Stored entries read per page when a partition opens.
const OPEN_PAGE: usize = 5_000;

/// Counts for the end-of-run log line.
#[derive(Debug, Default, Clone)]
pub struct InsightsSummary {
    pub events: u64,
    pub sessions_assembled: u64,
    pub partials_sent: u64,
    pub windows_closed: u64,
    pub findings_published: u64,
    pub findings_held_back: u64,
    pub unacknowledged_at_exit: usize,
}

/// The salted session reference: 128 bits of two FNV-1a passes over salt, customer and session.
/// The salt is random per partition (kept in its metadata), so a reference cannot be recomputed
/// from a guessed id without it; it never leaves the lane's state and dies with the buffer.
pub fn session_ref(salt: i64, customer_id: &str, session_id: &str) -> SessionRef {
    const PRIME: u64 = 0x0000_0100_0000_01b3;
    let mut a: u64 = 0xcbf2_9ce4_8422_2325;
    let mut b: u64 = 0x6c62_272e_07bb_0142;
    let mut feed = |bytes: &[u8]| {
        for &byte in bytes {
            a = (a ^ u64::from(byte)).wrapping_mul(PRIME);
            b = (b ^ u64::from(byte.rotate_left(3))).wrapping_mul(PRIME);
        }
    };
    feed(&salt.to_le_bytes());
    feed(&[0xff]);
    feed(customer_id.as_bytes());
    feed(&[0xff]);
    feed(session_id.as_bytes());
    let mut out = [0u8; 16];
    out[..8].copy_from_slice(&a.to_be_bytes());
    out[8..].copy_from_slice(&b.to_be_bytes());
    out
}

fn corrupt(p: Partition, what: &str, e: impl std::fmt::Display) -> JobError {
    JobError(format!(
        "stored insights {what} of partition {p} is unreadable: {e}"
    ))
}

/// The insights job.
pub struct Lane {
    settings: Arc<InsightsSettings>,
    agg: Aggregator,
    merger: Merger,
    salts: HashMap<Partition, i64>,
    /// Salts created when a partition opened, written with the next commit.
    new_salts: Vec<(Partition, i64)>,
    /// When the idle advance last ran (it runs once per idle period, not every turn).
    last_idle_ms: Option<i64>,
    metrics: InsightsMetrics,
    pub summary: InsightsSummary,
}

impl std::fmt::Debug for Lane {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Lane")
            .field("sessions", &self.agg.sessions_in_flight())
            .finish_non_exhaustive()
    }
}

impl Lane {
    pub fn new(settings: Arc<InsightsSettings>, metrics: InsightsMetrics) -> Lane {
        Lane {
            agg: Aggregator::new(settings.rules.clone()),
            merger: Merger::new(settings.rules.clone()),
            settings,
            salts: HashMap::new(),
            new_salts: Vec::new(),
            last_idle_ms: None,
            metrics,
            summary: InsightsSummary::default(),
        }
    }

    pub fn aggregator(&self) -> &Aggregator {
        &self.agg
    }

    /// Sends the shares `p` closed (and its progress) to the partitions that merge them.
    fn close_shares(
        &mut self,
        p: Partition,
        partitions: i32,
        out: &mut Vec<(Partition, OutRecord)>,
    ) {
        let (shares, moved) = self.agg.close_ready(p);
        let topic = &self.settings.partials_topic;
        for share in shares {
            let to = merge_partition(share.start, self.settings.rules.window_ms, partitions);
            let key = [p.to_be_bytes().as_slice(), &share.start.to_be_bytes()].concat();
            out.push((
                p,
                OutRecord {
                    topic: topic.clone(),
                    partition: Some(to),
                    key,
                    value: Some(encode_partials(&PartialsMessage::Share(Box::new(share)))),
                    fallback: None,
                },
            ));
            self.metrics.partials_sent.inc();
            self.summary.partials_sent += 1;
        }
        if let Some(through) = moved {
            // Every merger needs to know: a window closes once every partition has passed it.
            let value = encode_partials(&PartialsMessage::Progress { source: p, through });
            for to in 0..partitions {
                out.push((
                    p,
                    OutRecord {
                        topic: topic.clone(),
                        partition: Some(to),
                        key: [b"progress".as_slice(), &p.to_be_bytes()].concat(),
                        value: Some(value.clone()),
                        fallback: None,
                    },
                ));
            }
        }
    }

    /// Publishes the windows partition `r` can merge now.
    fn close_merged(
        &mut self,
        r: Partition,
        partitions: i32,
        out: &mut Vec<(Partition, OutRecord)>,
    ) {
        let closed: Vec<ClosedWindow> = self.merger.close_ready(r, partitions);
        for window in closed {
            self.metrics.windows_closed.inc();
            self.summary.windows_closed += 1;
            for f in &window.findings {
                self.metrics
                    .findings_published
                    .get_or_create(&KindLabel {
                        kind: f.kind.as_str(),
                    })
                    .inc();
                out.push((
                    r,
                    OutRecord::keyed(
                        &self.settings.insights_topic,
                        f.finding_id.clone().into_bytes(),
                        encode_finding(f),
                    ),
                ));
            }
            let held: u64 = window.held_back.values().sum();
            for (kind, n) in &window.held_back {
                self.metrics
                    .findings_held_back
                    .get_or_create(&KindLabel {
                        kind: kind.as_str(),
                    })
                    .inc_by(*n);
            }
            self.summary.findings_published += window.findings.len() as u64;
            self.summary.findings_held_back += held;
            tracing::info!(
                window_start = window.start,
                window_end = window.end,
                sessions = window.sessions,
                findings = window.findings.len(),
                held_back = held,
                "window closed"
            );
        }
    }

    /// The store writes of everything that changed since the last call.
    fn write(&mut self, commit: &mut Commit) {
        let c = self.agg.take_changes();
        for (p, r) in &c.sessions_put {
            if let Some(buf) = self.agg.session(*p, r) {
                commit
                    .state_puts
                    .push((*p, StateKey::Session(*r), encode_session(buf)));
            }
        }
        for (p, r) in &c.sessions_deleted {
            commit.state_deletes.push((*p, StateKey::Session(*r)));
        }
        for (p, start) in &c.windows_put {
            if let Some(w) = self.agg.window(*p, *start) {
                commit
                    .state_puts
                    .push((*p, StateKey::Window(*start), encode_window(w)));
            }
        }
        for (p, start) in &c.windows_deleted {
            commit.state_deletes.push((*p, StateKey::Window(*start)));
        }
        for p in &c.watermarks {
            if let Some(clock) = self.agg.clock(*p) {
                commit
                    .meta_puts
                    .push((*p, MetaKey::Watermark, clock.encode()));
            }
        }
        for p in &c.closed_through {
            commit.meta_puts.push((
                *p,
                MetaKey::ClosedThrough,
                encode_i64(self.agg.closed_through(*p)),
            ));
        }
        let m = self.merger.take_changes();
        for (r, window, source) in &m.shares_put {
            if let Some(share) = self.merger.share(*r, *window, *source) {
                commit.state_puts.push((
                    *r,
                    StateKey::Merge {
                        window: *window,
                        source: *source,
                    },
                    encode_window(share),
                ));
            }
        }
        for (r, window, source) in &m.shares_deleted {
            commit.state_deletes.push((
                *r,
                StateKey::Merge {
                    window: *window,
                    source: *source,
                },
            ));
        }
        // Puts reach the changelog before deletes: a restore that has any share deletion of
        // this commit also has the progress that closed those shares.
        for (r, source) in &m.progress {
            commit.state_puts.push((
                *r,
                StateKey::Progress(*source),
                encode_i64(self.merger.progress(*r, *source)),
            ));
        }
        // A new salt goes first, before the sessions that use it.
        for (p, salt) in self.new_salts.drain(..) {
            commit
                .state_puts
                .insert(0, (p, StateKey::Salt, encode_i64(salt)));
        }
        self.metrics
            .sessions_in_flight
            .set(i64::try_from(self.agg.sessions_in_flight()).unwrap_or(i64::MAX));
    }

    fn count(&mut self, tally: &Tally) {
        self.metrics.late_events.inc_by(tally.late_events);
        self.metrics.sensitive_events.inc_by(tally.sensitive_events);
        self.metrics
            .sessions_assembled
            .inc_by(tally.sessions_assembled);
        self.metrics
            .sessions_truncated
            .inc_by(tally.sessions_truncated);
        self.metrics.sessions_evicted.inc_by(tally.sessions_evicted);
        self.summary.sessions_assembled += tally.sessions_assembled;
    }
}

fn scan(store: &dyn StateStore, p: Partition, kind: StateKind) -> Result<StateEntries, JobError> {
    let mut all = Vec::new();
    let mut after = None;
    loop {
        let page = store.scan_state(p, kind, after.as_ref(), OPEN_PAGE)?;
        let full = page.len() == OPEN_PAGE;
        after = page.last().map(|(k, _)| k.clone());
        all.extend(page);
        if !full {
            return Ok(all);
        }
    }
}

impl Job for Lane {
    fn open(&mut self, cx: &Cx<'_>, p: Partition) -> Result<(), JobError> {
        let store = cx.store;
        let stored_salt = store.multi_get(&[(p, &StateKey::Salt)])?.pop().flatten();
        let salt = match stored_salt.and_then(|v| decode_i64(&v)) {
            Some(s) => s,
            None => {
                use rand::{Rng, SeedableRng};
                let s: i64 = rand::rngs::SmallRng::from_os_rng().random();
                self.new_salts.push((p, s));
                s
            }
        };
        self.salts.insert(p, salt);
        for (key, value) in store.metas(p)? {
            match key {
                MetaKey::Watermark => {
                    let clock = PartitionClock::decode(&value).ok_or_else(|| {
                        JobError(format!(
                            "partition {p}: the stored event-time clock is corrupt"
                        ))
                    })?;
                    self.agg.restore_watermark(p, clock);
                }
                MetaKey::ClosedThrough => {
                    if let Some(v) = decode_i64(&value) {
                        self.agg.restore_closed_through(p, v);
                    }
                }
                _ => {}
            }
        }
        for (key, value) in scan(store, p, StateKind::Progress)? {
            if let (StateKey::Progress(source), Some(v)) = (key, decode_i64(&value)) {
                self.merger.restore_progress(p, source, v);
            }
        }
        for (key, value) in scan(store, p, StateKind::Session)? {
            if let StateKey::Session(r) = key {
                let buf = decode_session(&value).map_err(|e| corrupt(p, "session", e))?;
                self.agg.restore_session(p, r, buf);
            }
        }
        for (key, value) in scan(store, p, StateKind::Window)? {
            if let StateKey::Window(start) = key {
                let w = decode_window(&value).map_err(|e| corrupt(p, "window", e))?;
                self.agg.restore_window(p, start, w);
            }
        }
        for (key, value) in scan(store, p, StateKind::Merge)? {
            if let StateKey::Merge { window, source } = key {
                let w = decode_window(&value).map_err(|e| corrupt(p, "merge share", e))?;
                self.merger.restore_share(p, window, source, w);
            }
        }
        // Shares of windows the merge closed whose deletion had not reached the changelog when
        // the partition moved: gone, never merged again from what is left of them.
        let stale = self.merger.drop_closed(p, cx.partition_count);
        if stale > 0 {
            tracing::info!(
                partition = p,
                shares = stale,
                "dropped shares of windows already merged"
            );
        }
        tracing::info!(
            partition = p,
            sessions = self.agg.sessions_in_flight(),
            "insights partition open"
        );
        Ok(())
    }

    fn close(&mut self, p: Partition) {
        self.agg.forget(p);
        self.merger.forget(p);
        self.salts.remove(&p);
        self.new_salts.retain(|(q, _)| *q != p);
    }

    fn process(&mut self, cx: &Cx<'_>, records: Vec<Record>) -> Result<Emit, JobError> {
        self.last_idle_ms = None;
        let mut tally = Tally::default();
        let mut applied: BTreeMap<(Partition, Input), i64> = BTreeMap::new();
        let mut sessions_at: BTreeSet<Partition> = BTreeSet::new();
        let mut merges_at: BTreeSet<Partition> = BTreeSet::new();
        let s = self.settings.clone();
        for r in records {
            applied.insert((r.partition, r.input), r.offset);
            let bytes = r.value.as_deref().unwrap_or_default();
            if r.input == PARTIALS {
                merges_at.insert(r.partition);
                match decode_partials(bytes) {
                    Ok(PartialsMessage::Share(share)) => self.merger.receive(r.partition, *share),
                    Ok(PartialsMessage::Progress { source, through }) => {
                        self.merger.progressed(r.partition, source, through);
                    }
                    Err(e) => {
                        self.metrics.decode_errors.inc();
                        tracing::warn!(partition = r.partition, offset = r.offset, error = %e, "an unreadable partials record; skipped");
                    }
                }
                continue;
            }
            sessions_at.insert(r.partition);
            match decode_click(bytes, s.clickstream_format, s.max_message_bytes) {
                Ok(ev) => {
                    let salt = self.salts.get(&r.partition).copied().unwrap_or_default();
                    let session = session_ref(salt, &ev.customer_id, &ev.session_id);
                    if self
                        .agg
                        .apply_at(r.partition, session, &ev, r.offset, &mut tally)
                    {
                        self.summary.events += 1;
                    }
                }
                Err(e) => {
                    // The decision pipeline dead-letters the same record; here it is only counted.
                    self.metrics.decode_errors.inc();
                    tracing::debug!(partition = r.partition, offset = r.offset, error = %e, "undecodable record skipped");
                }
            }
        }
        let mut out = Vec::new();
        for p in &sessions_at {
            if let Some(last) = applied.get(&(*p, Input::Driving)) {
                self.agg.stamp(*p, *last);
            }
            self.close_shares(*p, cx.partition_count, &mut out);
        }
        for r in &merges_at {
            self.close_merged(*r, cx.partition_count, &mut out);
        }
        let mut emit = Emit::default();
        self.write(&mut emit.commit);
        self.count(&tally);
        emit.outputs = out;
        emit.applied = applied.into_iter().map(|((p, i), o)| (p, i, o)).collect();
        Ok(emit)
    }

    /// The input is idle: every partition's watermark moves to wall-clock time, ending sessions
    /// and closing windows a quiet site would otherwise keep open (once per idle period).
    fn idle(&mut self, cx: &Cx<'_>, now_ms: i64) -> Result<Emit, JobError> {
        let mut emit = Emit::default();
        let Some(period) = self.settings.idle_advance else {
            return Ok(emit);
        };
        let period = i64::try_from(period.as_millis()).unwrap_or(i64::MAX);
        if self.last_idle_ms.is_some_and(|t| now_ms - t < period) {
            return Ok(emit);
        }
        self.last_idle_ms = Some(now_ms);
        let mut tally = Tally::default();
        let mut out = Vec::new();
        for p in cx.partitions {
            self.agg.advance(*p, now_ms, &mut tally);
            self.close_shares(*p, cx.partition_count, &mut out);
        }
        self.write(&mut emit.commit);
        self.count(&tally);
        emit.outputs = out;
        Ok(emit)
    }

    fn derive(&self, _p: Partition, _restored: &StateEntries) -> Result<Commit, JobError> {
        // Nothing derived: a partition's sessions and shares are read back when it opens.
        Ok(Commit::default())
    }
}

/// The edge's view of the lane's settings.
pub fn edge_settings(s: &InsightsSettings) -> EdgeSettings {
    EdgeSettings {
        bootstrap_servers: s.bootstrap_servers.clone(),
        group_id: s.group_id.clone(),
        instance_id: s.instance_id.clone(),
        client: s.client.clone(),
        driving: Topic {
            name: s.clickstream_topic.clone(),
            label: "clickstream",
        },
        co_partitioned: vec![Topic {
            name: s.partials_topic.clone(),
            label: "partials",
        }],
        global: None,
        changelog: s.changelog_topic.clone(),
        outputs: vec![s.insights_topic.clone()],
        batch_max_events: s.batch_max_events,
        batch_max_wait: s.batch_max_wait,
        commit_interval: s.commit_interval,
        shutdown_deadline: s.shutdown_deadline,
        revoke_deadline: s.revoke_deadline,
        idle_after: s.idle_advance,
        max_in_flight: 50_000,
        max_in_flight_bytes: 64 << 20,
        orphan_grace: Duration::from_secs(30),
        require_compaction: true,
        connect_timeout: Duration::from_secs(30),
    }
}

/// The topics the lane needs besides the clickstream (for `tact topics create`).
pub fn topic_specs(
    s: &InsightsSettings,
    partitions: i32,
    replication: i32,
    changelog: Vec<(String, String)>,
) -> Vec<TopicSpec> {
    let spec = |name: &str, co: bool, configs: Vec<(String, String)>, purpose: &str| TopicSpec {
        name: name.to_owned(),
        partitions: if co { partitions } else { 1 },
        replication,
        configs,
        purpose: purpose.to_owned(),
        co_partitioned: co,
    };
    vec![
        spec(
            &s.partials_topic,
            true,
            vec![],
            "internal: window shares on their way to the partition that merges them",
        ),
        spec(
            &s.changelog_topic,
            true,
            changelog,
            "state: the lane's sessions and window shares, partitioned like the clickstream",
        ),
        spec(
            &s.insights_topic,
            false,
            vec![],
            "output: aggregate findings (k-thresholded)",
        ),
    ]
}

/// Runs the lane on the edge until `stop` is set, then drains within the shutdown deadline.
pub fn run_insights(
    settings: InsightsSettings,
    es: EdgeSettings,
    store: Arc<dyn StateStore>,
    metrics: InsightsMetrics,
    health: Arc<Health>,
    stop: &AtomicBool,
) -> Result<InsightsSummary, EdgeError> {
    let edge_metrics = metrics.edge.clone();
    let job = Lane::new(Arc::new(settings), metrics);
    let edge = Edge::new(es, job, store, edge_metrics, health, stop)?;
    let stopped = edge.run(stop)?;
    let mut summary = stopped.job.summary;
    summary.unacknowledged_at_exit = stopped.unacknowledged;
    Ok(summary)
}

#[cfg(test)]
mod tests;
