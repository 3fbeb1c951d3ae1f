//! The pure aggregation core: click events in, window aggregates and k-thresholded findings out.
//! No I/O, no clock, no randomness: event time comes from the events, and every function is a
//! function of its arguments and the [`Aggregator`]'s state.
//!
//! Sessions are assembled in a bounded buffer (at most `max_events_per_session` steps per session,
//! at most `max_sessions_in_flight` sessions per input partition) that is dropped when the session
//! ends: after `session_gap_ms` of event-time silence or `max_session_ms` after its start, as the
//! event-time watermark of its partition says. An ended session is folded into its partition's
//! share of the tumbling window of its start, keyed by page, path or query only, and its buffer is
//! deleted. A partition closes its share of a window once its watermark has passed `window end +
//! max_session_ms` (every session that started in it has ended and been folded) and sends it, as a
//! [`Partial`], to the partition that merges that window; the [`Merger`] there combines the shares
//! of every partition, in partition order, once each has said it closed the window, and only then
//! are findings computed; a finding is published only when at least `min_sessions` distinct
//! sessions support it (the k-threshold applies to the merged count).
//!
//! Determinism: sessions live on one partition (the input is keyed by customer), expiry follows
//! that partition's own watermark, late sessions are judged by that watermark too, window shares
//! are sums, and the merge takes the shares in partition order. So what a window contains never
//! depends on how partitions interleave, how input was cut into batches, or how many instances
//! share the partitions; a closed window is never reopened. Replaying the same input therefore
//! yields the same findings with the same ids, on one instance or many.
//!
//! Each session buffer and window share records the input offset it last absorbed, so a
//! partition restored from a changelog that held a batch's state without its applied offset
//! applies the re-read input only where it is missing.

use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, BTreeSet, HashMap};
use tact_core::policy::SensitivityPolicy;
use tact_core::{ClickEvent, EventKind, KnowledgeBase, PartitionClock, Tier};

/// An opaque reference to one session: a salted hash computed at the edge. The core never sees
/// which person or session it stands for, and nothing derived from it leaves the buffer.
pub type SessionRef = [u8; 16];

/// What the lane looks for and how much evidence it needs.
#[derive(Debug, Clone, PartialEq)]
pub struct Rules {
    /// Length of a tumbling event-time window.
    pub window_ms: i64,
    /// A session ends after this much event-time silence.
    pub session_gap_ms: i64,
    /// A session is cut this long after its start (bounds buffer lifetime and window latency).
    pub max_session_ms: i64,
    /// k: a finding is published only when at least this many distinct sessions support it.
    pub min_sessions: u64,
    /// Steps kept per session; later steps are counted, not kept.
    pub max_events_per_session: usize,
    /// Open sessions per input partition; beyond it the least recently active one ends early.
    pub max_sessions_in_flight: usize,
    /// Distinct keys per finding kind and window; new keys beyond it count only in totals.
    pub max_keys_per_window: usize,
    /// Findings published per kind and window (the best supported first).
    pub max_findings_per_kind: usize,
    /// Pages whose findability is measured (e.g. the shipping policy).
    pub target_pages: Vec<String>,
    /// A target page is flagged hard to find when the median clicks to reach it exceed this.
    pub hard_to_find_median_clicks: u32,
    /// X -> Y counts as a detour only when Y comes at least this many steps after X.
    pub detour_min_steps: u32,
    /// ... and when at least this share of X's sessions take it.
    pub detour_min_confidence: f64,
    /// Distinct products per session considered for detours (bounds the pairs per session).
    pub detour_max_products: usize,
    /// A search with at most this many results fails.
    pub search_few_results: u32,
    /// An FAQ view scrolled at least this deep counts as "looking hard".
    pub faq_deep_scroll: f32,
    /// Sensitivity tiers of the tact policy: `never_remember` categories count only in totals.
    pub sensitivity: SensitivityPolicy,
    /// Prepared answers: a failing search no entry matches is a question the FAQ does not answer.
    pub faq: KnowledgeBase,
    /// A partition's event time is the latest this many distinct recent sessions have reached
    /// (one session's clock never closes anyone else's sessions or windows).
    pub partition_time_quorum: usize,
}

impl Default for Rules {
    fn default() -> Self {
        Rules {
            window_ms: 3_600_000,
            session_gap_ms: 30 * 60_000,
            max_session_ms: 4 * 3_600_000,
            min_sessions: 20,
            max_events_per_session: 200,
            max_sessions_in_flight: 100_000,
            partition_time_quorum: 2,
            max_keys_per_window: 20_000,
            max_findings_per_kind: 50,
            target_pages: Vec::new(),
            hard_to_find_median_clicks: 4,
            detour_min_steps: 3,
            detour_min_confidence: 0.3,
            detour_max_products: 32,
            search_few_results: 2,
            faq_deep_scroll: 0.7,
            sensitivity: SensitivityPolicy::default(),
            faq: KnowledgeBase::default(),
        }
    }
}

/// The kinds of finding, as published.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub enum FindingKind {
    HardToFind,
    Detour,
    DeadEnd,
    FailingSearch,
    HelpDemand,
}

impl FindingKind {
    pub const ALL: [FindingKind; 5] = [
        FindingKind::HardToFind,
        FindingKind::Detour,
        FindingKind::DeadEnd,
        FindingKind::FailingSearch,
        FindingKind::HelpDemand,
    ];

    /// The Avro enum symbol.
    pub fn symbol(self) -> &'static str {
        match self {
            FindingKind::HardToFind => "HARD_TO_FIND",
            FindingKind::Detour => "DETOUR",
            FindingKind::DeadEnd => "DEAD_END",
            FindingKind::FailingSearch => "FAILING_SEARCH",
            FindingKind::HelpDemand => "HELP_DEMAND",
        }
    }

    /// The metric label.
    pub fn as_str(self) -> &'static str {
        match self {
            FindingKind::HardToFind => "hard_to_find",
            FindingKind::Detour => "detour",
            FindingKind::DeadEnd => "dead_end",
            FindingKind::FailingSearch => "failing_search",
            FindingKind::HelpDemand => "help_demand",
        }
    }
}

/// One labelled count of sessions (a histogram bucket or a page passed through).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Bucket {
    pub label: String,
    pub sessions: u64,
}

/// A published finding: aggregate, keyed by page, path or query, supported by >= k sessions.
#[derive(Debug, Clone, PartialEq)]
pub struct Finding {
    pub finding_id: String,
    pub kind: FindingKind,
    pub window_start: i64,
    pub window_end: i64,
    /// The page (hard to find, dead end, help demand), product page X (detour) or query.
    pub subject: String,
    /// Y of a detour.
    pub related: Option<String>,
    /// Distinct sessions supporting the finding (>= `min_sessions`).
    pub sessions: u64,
    /// The sessions it is measured against (X's viewers, the page's visitors, the query's searchers).
    pub base_sessions: u64,
    /// `sessions / base_sessions` (confidence of a detour).
    pub share: f64,
    /// Worth acting on (hard to find: median clicks above the threshold; other kinds: always).
    pub flagged: bool,
    pub median_clicks: Option<u32>,
    pub median_seconds: Option<i64>,
    pub clicks: Vec<Bucket>,
    pub seconds: Vec<Bucket>,
    pub via: Vec<Bucket>,
    pub window_sessions: u64,
    pub window_sensitive_events: u64,
    pub min_sessions: u64,
    pub summary: String,
    /// Failing searches: the knowledge-base entry that best matches the query, if any matches.
    pub faq_answer: Option<String>,
}

/// A window that closed: its findings and what the threshold held back.
#[derive(Debug, Clone, PartialEq)]
pub struct ClosedWindow {
    pub start: i64,
    pub end: i64,
    pub findings: Vec<Finding>,
    /// Candidates per kind that would have been findings with k or more sessions.
    pub held_back: BTreeMap<FindingKind, u64>,
    pub sessions: u64,
}

/// Counts of what happened while applying input (for metrics and the run summary).
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Tally {
    pub events: u64,
    pub sensitive_events: u64,
    /// Events of a session that started in a window this partition has already passed.
    pub late_events: u64,
    pub sessions_assembled: u64,
    pub sessions_truncated: u64,
    /// Sessions ended early because the partition had too many in flight.
    pub sessions_evicted: u64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
enum StepKind {
    Page,
    Category,
    Product,
    Faq,
    Search,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
struct Step {
    kind: StepKind,
    /// Page (or `product:ID`, `category:NAME`); for searches the normalised query.
    key: String,
    /// Milliseconds since the session started.
    at: i64,
    results: Option<u32>,
    scroll: Option<f32>,
}

fn no_version() -> i64 {
    -1
}

/// One session in flight. Holds no customer id, no session id and no sensitive-category step.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SessionBuf {
    /// The last input offset of its partition applied to it.
    #[serde(default = "no_version")]
    version: i64,
    start: i64,
    last: i64,
    events: u32,
    sensitive: u32,
    truncated: bool,
    purchased: bool,
    helped: bool,
    last_sensitive: bool,
    steps: Vec<Step>,
}

impl SessionBuf {
    fn new(t: i64) -> SessionBuf {
        SessionBuf {
            version: -1,
            start: t,
            last: t,
            events: 0,
            sensitive: 0,
            truncated: false,
            purchased: false,
            helped: false,
            last_sensitive: false,
            steps: Vec::new(),
        }
    }

    fn deadline(&self, rules: &Rules) -> i64 {
        self.last
            .saturating_add(rules.session_gap_ms)
            .min(self.start.saturating_add(rules.max_session_ms))
    }

    /// Event time the session started (its window follows from it).
    pub fn start(&self) -> i64 {
        self.start
    }
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
struct TargetAgg {
    reached: u64,
    /// clicks before reaching the target -> sessions
    clicks: BTreeMap<u32, u64>,
    /// time-bucket index -> sessions
    seconds: BTreeMap<u8, u64>,
    /// page passed through on the way -> sessions
    via: BTreeMap<String, u64>,
}

/// Everything a window remembers: counts keyed by page, path or query, and totals. One
/// partition's share of a window, or the merge of every partition's.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct WindowAgg {
    /// The last input offset of its partition whose batch wrote this share (-1: none yet).
    #[serde(default = "no_version")]
    version: i64,
    sessions: u64,
    events: u64,
    sensitive_events: u64,
    truncated_sessions: u64,
    /// Keys not kept because the window's key budget was spent.
    overflow: u64,
    targets: BTreeMap<String, TargetAgg>,
    product_sessions: BTreeMap<String, u64>,
    pairs: BTreeMap<(String, String), u64>,
    page_sessions: BTreeMap<String, u64>,
    dead_ends: BTreeMap<String, u64>,
    search_sessions: BTreeMap<String, u64>,
    failing_searches: BTreeMap<String, u64>,
    zero_searches: BTreeMap<String, u64>,
    faq_deep: BTreeMap<String, u64>,
    faq_unresolved: BTreeMap<String, u64>,
}

impl Default for WindowAgg {
    fn default() -> Self {
        WindowAgg {
            version: -1,
            sessions: 0,
            events: 0,
            sensitive_events: 0,
            truncated_sessions: 0,
            overflow: 0,
            targets: BTreeMap::new(),
            product_sessions: BTreeMap::new(),
            pairs: BTreeMap::new(),
            page_sessions: BTreeMap::new(),
            dead_ends: BTreeMap::new(),
            search_sessions: BTreeMap::new(),
            failing_searches: BTreeMap::new(),
            zero_searches: BTreeMap::new(),
            faq_deep: BTreeMap::new(),
            faq_unresolved: BTreeMap::new(),
        }
    }
}

fn add_counts<K: Ord + Clone>(
    into: &mut BTreeMap<K, u64>,
    from: &BTreeMap<K, u64>,
    budget: usize,
    overflow: &mut u64,
) {
    for (k, n) in from {
        if let Some(v) = into.get_mut(k) {
            *v += n;
        } else if into.len() < budget {
            into.insert(k.clone(), *n);
        } else {
            *overflow += n;
        }
    }
}

impl WindowAgg {
    /// Sessions folded into this window so far.
    pub fn sessions(&self) -> u64 {
        self.sessions
    }

    /// Adds another share of the same window. Keys beyond the budget count as overflow, so the
    /// result depends on the order shares are added in: the merger adds them in partition order.
    pub fn add(&mut self, other: &WindowAgg, budget: usize) {
        self.sessions += other.sessions;
        self.events += other.events;
        self.sensitive_events += other.sensitive_events;
        self.truncated_sessions += other.truncated_sessions;
        let mut overflow = other.overflow;
        for (page, t) in &other.targets {
            if !self.targets.contains_key(page) && self.targets.len() >= budget {
                overflow += t.reached;
                continue;
            }
            let mine = self.targets.entry(page.clone()).or_default();
            mine.reached += t.reached;
            add_counts(&mut mine.clicks, &t.clicks, usize::MAX, &mut overflow);
            add_counts(&mut mine.seconds, &t.seconds, usize::MAX, &mut overflow);
            add_counts(&mut mine.via, &t.via, budget, &mut overflow);
        }
        add_counts(
            &mut self.product_sessions,
            &other.product_sessions,
            budget,
            &mut overflow,
        );
        add_counts(&mut self.pairs, &other.pairs, budget, &mut overflow);
        add_counts(
            &mut self.page_sessions,
            &other.page_sessions,
            budget,
            &mut overflow,
        );
        add_counts(&mut self.dead_ends, &other.dead_ends, budget, &mut overflow);
        add_counts(
            &mut self.search_sessions,
            &other.search_sessions,
            budget,
            &mut overflow,
        );
        add_counts(
            &mut self.failing_searches,
            &other.failing_searches,
            budget,
            &mut overflow,
        );
        add_counts(
            &mut self.zero_searches,
            &other.zero_searches,
            budget,
            &mut overflow,
        );
        add_counts(&mut self.faq_deep, &other.faq_deep, budget, &mut overflow);
        add_counts(
            &mut self.faq_unresolved,
            &other.faq_unresolved,
            budget,
            &mut overflow,
        );
        self.overflow += overflow;
    }
}

/// One partition's share of a closed window, on its way to the partition that merges it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Partial {
    pub source: i32,
    pub start: i64,
    pub agg: WindowAgg,
}

/// The partition that merges window `start`: windows take turns over the partitions.
pub fn merge_partition(start: i64, window_ms: i64, partitions: i32) -> i32 {
    start
        .div_euclid(window_ms.max(1))
        .rem_euclid(i64::from(partitions.max(1))) as i32
}

/// What changed since the last [`Aggregator::take_changes`]: the store writes of one commit.
#[derive(Debug, Default, Clone, PartialEq)]
pub struct Changes {
    /// Sessions created or changed (written) and ended (deleted); a key is in at most one set.
    pub sessions_put: BTreeSet<(i32, SessionRef)>,
    pub sessions_deleted: BTreeSet<(i32, SessionRef)>,
    /// Sessions the store has never seen (created since the last commit).
    fresh: BTreeSet<(i32, SessionRef)>,
    /// Window shares (partition, start) written and closed (deleted); disjoint.
    pub windows_put: BTreeSet<(i32, i64)>,
    pub windows_deleted: BTreeSet<(i32, i64)>,
    /// Window shares the store has never seen.
    fresh_windows: BTreeSet<(i32, i64)>,
    pub watermarks: BTreeSet<i32>,
    /// Partitions whose closed-through point moved.
    pub closed_through: BTreeSet<i32>,
}

/// All in-flight state of the lane: session buffers, open windows, watermarks.
#[derive(Debug, Clone)]
pub struct Aggregator {
    rules: Rules,
    sessions: HashMap<(i32, SessionRef), SessionBuf>,
    /// (partition, deadline, session): expiry order per partition.
    deadlines: BTreeSet<(i32, i64, SessionRef)>,
    /// (partition, last event time, session): eviction order when a partition is full.
    activity: BTreeSet<(i32, i64, SessionRef)>,
    in_flight: HashMap<i32, usize>,
    /// Each partition's share of its open windows, by (partition, window start).
    windows: BTreeMap<(i32, i64), WindowAgg>,
    watermarks: BTreeMap<i32, PartitionClock>,
    /// Per partition, windows ending at or before this are closed and never reopened.
    closed_through: BTreeMap<i32, i64>,
    /// The input offset being applied (`None`: wall-clock advance), for the fold's version check.
    current: Option<i64>,
    changes: Changes,
}

/// Lower-cases, trims and collapses whitespace; caps the length (queries are keys, never text
/// blobs).
pub fn normalize_query(q: &str) -> String {
    let mut out = String::new();
    for word in q.split_whitespace() {
        if !out.is_empty() {
            out.push(' ');
        }
        out.push_str(&word.to_lowercase());
        if out.len() >= 100 {
            break;
        }
    }
    let mut end = out.len().min(100);
    while !out.is_char_boundary(end) {
        end -= 1;
    }
    out.truncate(end);
    out
}

/// Upper bounds (seconds) of the time-to-reach buckets; the last bucket is open.
const SECONDS_BUCKETS: [i64; 8] = [10, 30, 60, 120, 300, 600, 1800, 3600];
const CLICK_BUCKETS: u32 = 10;

fn seconds_bucket(ms: i64) -> u8 {
    let s = ms.max(0) / 1000;
    SECONDS_BUCKETS
        .iter()
        .position(|b| s < *b)
        .unwrap_or(SECONDS_BUCKETS.len()) as u8
}

fn seconds_label(bucket: u8) -> String {
    let i = usize::from(bucket);
    match (
        i.checked_sub(1).map(|j| SECONDS_BUCKETS[j]),
        SECONDS_BUCKETS.get(i),
    ) {
        (None, Some(hi)) => format!("<{hi}s"),
        (Some(lo), Some(hi)) => format!("{lo}-{hi}s"),
        (Some(lo), None) => format!(">={lo}s"),
        (None, None) => "?".into(),
    }
}

/// The window an event time belongs to: `[start, start + window_ms)`.
pub fn window_start(t: i64, window_ms: i64) -> i64 {
    t.div_euclid(window_ms) * window_ms
}

fn bump(map: &mut BTreeMap<String, u64>, key: &str, budget: usize, overflow: &mut u64) {
    if let Some(v) = map.get_mut(key) {
        *v += 1;
    } else if map.len() < budget {
        map.insert(key.to_owned(), 1);
    } else {
        *overflow += 1;
    }
}

impl Aggregator {
    pub fn new(rules: Rules) -> Aggregator {
        Aggregator {
            rules,
            sessions: HashMap::new(),
            deadlines: BTreeSet::new(),
            activity: BTreeSet::new(),
            in_flight: HashMap::new(),
            windows: BTreeMap::new(),
            watermarks: BTreeMap::new(),
            closed_through: BTreeMap::new(),
            current: None,
            changes: Changes::default(),
        }
    }

    pub fn rules(&self) -> &Rules {
        &self.rules
    }

    // ---- restoring from the store -------------------------------------------------------

    /// Restores a session buffer read back from the store.
    pub fn restore_session(&mut self, partition: i32, session: SessionRef, buf: SessionBuf) {
        self.index(partition, session, &buf);
        *self.in_flight.entry(partition).or_default() += 1;
        self.sessions.insert((partition, session), buf);
    }

    pub fn restore_window(&mut self, partition: i32, start: i64, agg: WindowAgg) {
        self.windows.insert((partition, start), agg);
    }

    pub fn restore_watermark(&mut self, partition: i32, clock: PartitionClock) {
        self.watermarks.insert(partition, clock);
    }

    pub fn restore_closed_through(&mut self, partition: i32, t: i64) {
        self.closed_through.insert(partition, t);
    }

    /// Forgets everything of `partition` (it moved to another instance).
    pub fn forget(&mut self, partition: i32) {
        self.sessions.retain(|(p, _), _| *p != partition);
        self.deadlines.retain(|(p, _, _)| *p != partition);
        self.activity.retain(|(p, _, _)| *p != partition);
        self.in_flight.remove(&partition);
        self.windows.retain(|(p, _), _| *p != partition);
        self.watermarks.remove(&partition);
        self.closed_through.remove(&partition);
        let c = &mut self.changes;
        c.sessions_put.retain(|(p, _)| *p != partition);
        c.sessions_deleted.retain(|(p, _)| *p != partition);
        c.fresh.retain(|(p, _)| *p != partition);
        c.windows_put.retain(|(p, _)| *p != partition);
        c.windows_deleted.retain(|(p, _)| *p != partition);
        c.fresh_windows.retain(|(p, _)| *p != partition);
        c.watermarks.remove(&partition);
        c.closed_through.remove(&partition);
    }

    // ---- reading state for the store ----------------------------------------------------

    pub fn session(&self, partition: i32, session: &SessionRef) -> Option<&SessionBuf> {
        self.sessions.get(&(partition, *session))
    }

    /// `partition`'s share of the window starting at `start`.
    pub fn window(&self, partition: i32, start: i64) -> Option<&WindowAgg> {
        self.windows.get(&(partition, start))
    }

    /// The partition's event time (`None` before enough sessions agree on one).
    pub fn watermark(&self, partition: i32) -> Option<i64> {
        self.watermarks
            .get(&partition)
            .map(PartitionClock::time)
            .filter(|t| *t > i64::MIN)
    }

    /// The partition's event-time clock, as stored.
    pub fn clock(&self, partition: i32) -> Option<&PartitionClock> {
        self.watermarks.get(&partition)
    }

    pub fn closed_through(&self, partition: i32) -> i64 {
        self.closed_through
            .get(&partition)
            .copied()
            .unwrap_or(i64::MIN)
    }

    pub fn sessions_in_flight(&self) -> usize {
        self.sessions.len()
    }

    pub fn open_windows(&self) -> Vec<(i32, i64)> {
        self.windows.keys().copied().collect()
    }

    /// Stamps the window shares of `partition` written since the last commit with the last
    /// input offset of the batch (what a restore checks folds against).
    pub fn stamp(&mut self, partition: i32, offset: i64) {
        for (p, start) in &self.changes.windows_put {
            if *p == partition {
                if let Some(w) = self.windows.get_mut(&(*p, *start)) {
                    w.version = w.version.max(offset);
                }
            }
        }
    }

    /// The writes accumulated since the last call.
    pub fn take_changes(&mut self) -> Changes {
        std::mem::take(&mut self.changes)
    }

    // ---- applying input -----------------------------------------------------------------

    fn index(&mut self, partition: i32, session: SessionRef, buf: &SessionBuf) {
        self.deadlines
            .insert((partition, buf.deadline(&self.rules), session));
        self.activity.insert((partition, buf.last, session));
    }

    fn unindex(&mut self, partition: i32, session: SessionRef, buf: &SessionBuf) {
        self.deadlines
            .remove(&(partition, buf.deadline(&self.rules), session));
        self.activity.remove(&(partition, buf.last, session));
    }

    /// [`Aggregator::apply`] of the record at `offset`, unless the session has absorbed it
    /// already (a replay after a partial restore), in which case only event time moves on.
    /// Returns whether the event was applied.
    pub fn apply_at(
        &mut self,
        partition: i32,
        session: SessionRef,
        ev: &ClickEvent,
        offset: i64,
        tally: &mut Tally,
    ) -> bool {
        self.current = Some(offset);
        let absorbed = self
            .sessions
            .get(&(partition, session))
            .is_some_and(|b| b.version >= offset);
        if absorbed {
            self.tick(partition, session, ev.event_time.millis(), tally);
        } else {
            self.apply(partition, session, ev, tally);
            if let Some(b) = self.sessions.get_mut(&(partition, session)) {
                b.version = offset;
            }
        }
        self.current = None;
        !absorbed
    }

    /// Applies one click event of input `partition` to the session `session` refers to.
    /// Events must be applied in the partition's offset order.
    pub fn apply(
        &mut self,
        partition: i32,
        session: SessionRef,
        ev: &ClickEvent,
        tally: &mut Tally,
    ) {
        let t = ev.event_time.millis();
        tally.events += 1;
        self.tick(partition, session, t, tally);
        let wm = self.watermark(partition).unwrap_or(i64::MIN);
        let key = (partition, session);
        // A session's own gap follows its own events, whatever the partition's time says.
        if self
            .sessions
            .get(&key)
            .is_some_and(|b| b.deadline(&self.rules) < t)
        {
            self.end_session(partition, session, tally);
        }
        let mut buf = match self.sessions.remove(&key) {
            Some(buf) => {
                self.unindex(partition, session, &buf);
                buf
            }
            None => {
                let ws = window_start(t, self.rules.window_ms);
                let we = ws.saturating_add(self.rules.window_ms);
                // Late: this partition's event time has passed the point where the window may
                // close, or the window is closed already. Judged by the partition's own
                // watermark, so the verdict never depends on other partitions.
                if we.saturating_add(self.rules.max_session_ms) <= wm
                    || we <= self.closed_through(partition)
                {
                    tally.late_events += 1;
                    return;
                }
                if self.in_flight.get(&partition).copied().unwrap_or(0)
                    >= self.rules.max_sessions_in_flight
                {
                    self.evict_one(partition, tally);
                }
                *self.in_flight.entry(partition).or_default() += 1;
                // Pending deletion of an earlier session under the same reference: the store
                // has the key, so this one overwrites rather than creates.
                if !self.changes.sessions_deleted.remove(&key) {
                    self.changes.fresh.insert(key);
                }
                SessionBuf::new(t)
            }
        };
        self.observe(&mut buf, ev, tally);
        self.index(partition, session, &buf);
        self.sessions.insert(key, buf);
        self.changes.sessions_put.insert(key);
    }

    fn observe(&self, buf: &mut SessionBuf, ev: &ClickEvent, tally: &mut Tally) {
        let t = ev.event_time.millis();
        buf.events = buf.events.saturating_add(1);
        buf.last = buf.last.max(t);
        let sensitive = ev
            .category
            .iter()
            .chain(ev.items.iter().filter_map(|i| i.category.as_ref()))
            .any(|c| tier(&self.rules.sensitivity, c) == Tier::NeverRemember);
        match ev.kind {
            EventKind::Purchase => buf.purchased = true,
            EventKind::ChatOpened => buf.helped = true,
            _ => {}
        }
        if sensitive {
            // Counted in totals only: no step, no page, no query.
            buf.sensitive = buf.sensitive.saturating_add(1);
            buf.last_sensitive = true;
            tally.sensitive_events += 1;
            return;
        }
        let step = match ev.kind {
            EventKind::PageView => ev.page.clone().map(|p| (StepKind::Page, p)),
            EventKind::CategoryView => ev
                .page
                .clone()
                .or_else(|| ev.category.as_ref().map(|c| format!("category:{c}")))
                .map(|p| (StepKind::Category, p)),
            EventKind::ProductView => ev
                .page
                .clone()
                .or_else(|| ev.product_id.as_ref().map(|p| format!("product:{p}")))
                .map(|p| (StepKind::Product, p)),
            EventKind::FaqView => ev.page.clone().map(|p| (StepKind::Faq, p)),
            EventKind::Search => ev
                .search_query
                .as_deref()
                .map(normalize_query)
                .filter(|q| !q.is_empty())
                .map(|q| (StepKind::Search, q)),
            _ => None,
        };
        let Some((kind, key)) = step else {
            return;
        };
        buf.last_sensitive = false;
        if buf.steps.len() >= self.rules.max_events_per_session {
            buf.truncated = true;
            return;
        }
        buf.steps.push(Step {
            kind,
            key,
            at: t.saturating_sub(buf.start),
            results: ev.search_results,
            scroll: ev.scroll_depth,
        });
    }

    /// Moves `partition`'s event-time watermark to `t` (never backwards) and ends the sessions
    /// it has passed. Also used with wall-clock time when the input is idle.
    /// An event of `session` at `t`: the partition's time moves where enough sessions agree.
    fn tick(&mut self, partition: i32, session: SessionRef, t: i64, tally: &mut Tally) {
        let quorum = self.rules.partition_time_quorum;
        let mut digest = [0u8; 8];
        digest.copy_from_slice(&session[..8]);
        self.watermarks
            .entry(partition)
            .or_default()
            .observe_digest(digest, t, quorum);
        self.changes.watermarks.insert(partition);
        self.close_passed(partition, tally);
    }

    /// Moves `partition`'s event time to `t` (the wall clock of an idle input, or a test).
    pub fn advance(&mut self, partition: i32, t: i64, tally: &mut Tally) {
        if self.watermarks.entry(partition).or_default().advance_to(t) {
            self.changes.watermarks.insert(partition);
        }
        self.close_passed(partition, tally);
    }

    /// Ends the sessions of `partition` whose deadline its event time has passed.
    fn close_passed(&mut self, partition: i32, tally: &mut Tally) {
        let Some(wm) = self.watermark(partition) else {
            return;
        };
        while let Some(&(p, deadline, session)) = self
            .deadlines
            .range((partition, i64::MIN, [0u8; 16])..)
            .next()
        {
            if p != partition || deadline >= wm {
                break;
            }
            self.end_session(partition, session, tally);
        }
    }

    fn evict_one(&mut self, partition: i32, tally: &mut Tally) {
        let oldest = self
            .activity
            .range((partition, i64::MIN, [0u8; 16])..)
            .next()
            .filter(|(p, _, _)| *p == partition)
            .map(|(_, _, s)| *s);
        if let Some(session) = oldest {
            tally.sessions_evicted += 1;
            self.end_session(partition, session, tally);
        }
    }

    fn end_session(&mut self, partition: i32, session: SessionRef, tally: &mut Tally) {
        let key = (partition, session);
        let Some(buf) = self.sessions.remove(&key) else {
            return;
        };
        self.unindex(partition, session, &buf);
        if let Some(n) = self.in_flight.get_mut(&partition) {
            *n = n.saturating_sub(1);
        }
        self.changes.sessions_put.remove(&key);
        if !self.changes.fresh.remove(&key) {
            self.changes.sessions_deleted.insert(key);
        }
        tally.sessions_assembled += 1;
        if buf.truncated {
            tally.sessions_truncated += 1;
        }
        self.fold(partition, &buf);
    }

    /// Folds an ended session into its partition's share of the window of its start. The
    /// buffer is gone after this.
    fn fold(&mut self, partition: i32, s: &SessionBuf) {
        let ws = window_start(s.start, self.rules.window_ms);
        if ws.saturating_add(self.rules.window_ms) <= self.closed_through(partition) {
            // Cannot happen while the close rule holds (see the module doc); never reopen.
            return;
        }
        let key = (partition, ws);
        if let (Some(w), Some(now)) = (self.windows.get(&key), self.current) {
            if w.version >= now {
                // The stored share already holds this session (a replay after a partial restore).
                return;
            }
        }
        if !self.windows.contains_key(&key) && !self.changes.windows_deleted.remove(&key) {
            self.changes.fresh_windows.insert(key);
        }
        self.changes.windows_put.insert(key);
        let rules = &self.rules;
        let budget = rules.max_keys_per_window;
        let w = self.windows.entry(key).or_default();
        w.sessions += 1;
        w.events += u64::from(s.events);
        w.sensitive_events += u64::from(s.sensitive);
        if s.truncated {
            w.truncated_sessions += 1;
        }
        let mut overflow = 0;

        // Hard to find: clicks and time from session start to each target page.
        for target in &rules.target_pages {
            let Some(idx) = s.steps.iter().position(|st| st.key == *target) else {
                continue;
            };
            let agg = w.targets.entry(target.clone()).or_default();
            agg.reached += 1;
            *agg.clicks.entry(idx as u32).or_default() += 1;
            *agg.seconds
                .entry(seconds_bucket(s.steps[idx].at))
                .or_default() += 1;
            let via: BTreeSet<&str> = s.steps[..idx]
                .iter()
                .filter(|st| st.kind != StepKind::Search)
                .map(|st| st.key.as_str())
                .collect();
            for page in via {
                bump(&mut agg.via, page, budget, &mut overflow);
            }
        }

        // Detours: product X viewed, product Y first reached >= detour_min_steps later.
        let mut first: Vec<(&str, usize)> = Vec::new();
        for (i, st) in s.steps.iter().enumerate() {
            if st.kind == StepKind::Product
                && first.len() < rules.detour_max_products
                && !first.iter().any(|(k, _)| *k == st.key)
            {
                first.push((st.key.as_str(), i));
            }
        }
        for (x, _) in &first {
            bump(&mut w.product_sessions, x, budget, &mut overflow);
        }
        for (x, i) in &first {
            for (y, j) in &first {
                if j > i && (j - i) as u32 >= rules.detour_min_steps {
                    let pair = ((*x).to_owned(), (*y).to_owned());
                    if let Some(v) = w.pairs.get_mut(&pair) {
                        *v += 1;
                    } else if w.pairs.len() < budget {
                        w.pairs.insert(pair, 1);
                    } else {
                        overflow += 1;
                    }
                }
            }
        }

        // Dead ends: the last page of sessions without purchase or help.
        let pages: BTreeSet<&str> = s
            .steps
            .iter()
            .filter(|st| st.kind != StepKind::Search)
            .map(|st| st.key.as_str())
            .collect();
        for page in &pages {
            bump(&mut w.page_sessions, page, budget, &mut overflow);
        }
        if !s.purchased && !s.helped && !s.last_sensitive {
            if let Some(last) = s.steps.iter().rev().find(|st| st.kind != StepKind::Search) {
                bump(&mut w.dead_ends, &last.key, budget, &mut overflow);
            }
        }

        // Failing searches, per distinct query.
        let mut queries: BTreeMap<&str, (bool, bool)> = BTreeMap::new();
        for st in s.steps.iter().filter(|st| st.kind == StepKind::Search) {
            let e = queries.entry(st.key.as_str()).or_default();
            let results = st.results.unwrap_or(u32::MAX);
            e.0 |= results <= rules.search_few_results;
            e.1 |= results == 0;
        }
        for (q, (failing, zero)) in queries {
            bump(&mut w.search_sessions, q, budget, &mut overflow);
            if failing {
                bump(&mut w.failing_searches, q, budget, &mut overflow);
            }
            if zero {
                bump(&mut w.zero_searches, q, budget, &mut overflow);
            }
        }

        // Help demand: a deep-scrolled FAQ page not followed by a step back into the shop.
        let mut faq: BTreeMap<&str, bool> = BTreeMap::new();
        for (i, st) in s.steps.iter().enumerate() {
            if st.kind != StepKind::Faq || st.scroll.unwrap_or(0.0) < rules.faq_deep_scroll {
                continue;
            }
            let resolved = s.steps[i + 1..].iter().any(|n| {
                matches!(
                    n.kind,
                    StepKind::Page | StepKind::Category | StepKind::Product
                )
            }) || s.purchased;
            let e = faq.entry(st.key.as_str()).or_insert(true);
            *e &= !resolved;
        }
        for (page, unresolved) in faq {
            bump(&mut w.faq_deep, page, budget, &mut overflow);
            if unresolved {
                bump(&mut w.faq_unresolved, page, budget, &mut overflow);
            }
        }
        w.overflow += overflow;
    }

    /// Closes, in order, `partition`'s share of every window its watermark has passed by
    /// `max_session_ms` and forgets it here; returns the shares to send to their merging
    /// partitions, and the new closed-through point when it moved (every merger needs it).
    pub fn close_ready(&mut self, partition: i32) -> (Vec<Partial>, Option<i64>) {
        let Some(wm) = self.watermark(partition) else {
            return (Vec::new(), None);
        };
        let w = self.rules.window_ms;
        // Windows ending at or before this have had every session that started in them end.
        let through = window_start(wm.saturating_sub(self.rules.max_session_ms), w);
        let mut out = Vec::new();
        let starts: Vec<i64> = self
            .windows
            .range((partition, i64::MIN)..=(partition, i64::MAX))
            .map(|((_, s), _)| *s)
            .filter(|s| s.saturating_add(w) <= through)
            .collect();
        for start in starts {
            let key = (partition, start);
            let Some(agg) = self.windows.remove(&key) else {
                continue;
            };
            self.changes.windows_put.remove(&key);
            if !self.changes.fresh_windows.remove(&key) {
                self.changes.windows_deleted.insert(key);
            }
            out.push(Partial {
                source: partition,
                start,
                agg,
            });
        }
        let moved = through > self.closed_through(partition);
        if moved {
            self.closed_through.insert(partition, through);
            self.changes.closed_through.insert(partition);
        }
        (out, moved.then_some(through))
    }
}

/// Merges the window shares every partition sends, per merging partition. A window closes once
/// every source partition has said it closed its share (its closed-through point passed the
/// window's end); the shares are then added in source order and the findings computed.
#[derive(Debug, Clone)]
pub struct Merger {
    rules: Rules,
    /// (merging partition, window start) -> source partition -> its share.
    shares: BTreeMap<(i32, i64), BTreeMap<i32, WindowAgg>>,
    /// (merging partition, source) -> the source's closed-through point.
    progress: BTreeMap<(i32, i32), i64>,
    changes: MergeChanges,
}

/// The store writes of the merger since the last [`Merger::take_changes`].
#[derive(Debug, Default, Clone, PartialEq)]
pub struct MergeChanges {
    /// Shares (merging partition, window, source) written and deleted; disjoint.
    pub shares_put: BTreeSet<(i32, i64, i32)>,
    pub shares_deleted: BTreeSet<(i32, i64, i32)>,
    /// (merging partition, source) progress moved.
    pub progress: BTreeSet<(i32, i32)>,
}

impl Merger {
    pub fn new(rules: Rules) -> Merger {
        Merger {
            rules,
            shares: BTreeMap::new(),
            progress: BTreeMap::new(),
            changes: MergeChanges::default(),
        }
    }

    pub fn restore_share(&mut self, partition: i32, start: i64, source: i32, agg: WindowAgg) {
        self.shares
            .entry((partition, start))
            .or_default()
            .insert(source, agg);
    }

    /// How far every one of `sources` has closed its windows for `partition`.
    fn closed_through(&self, partition: i32, sources: i32) -> i64 {
        (0..sources.max(1))
            .map(|src| self.progress(partition, src))
            .min()
            .unwrap_or(i64::MIN)
    }

    /// Forgets (and deletes) the shares of windows every source has closed through: a merge
    /// closes those at once, so any left were closed already. Returns how many.
    pub fn drop_closed(&mut self, partition: i32, sources: i32) -> usize {
        let through = self.closed_through(partition, sources);
        let w = self.rules.window_ms;
        let closed: Vec<i64> = self
            .shares
            .range((partition, i64::MIN)..=(partition, i64::MAX))
            .map(|((_, s), _)| *s)
            .filter(|s| s.saturating_add(w) <= through)
            .collect();
        let mut n = 0;
        for start in closed {
            for source in self
                .shares
                .remove(&(partition, start))
                .unwrap_or_default()
                .into_keys()
            {
                let key = (partition, start, source);
                self.changes.shares_put.remove(&key);
                self.changes.shares_deleted.insert(key);
                n += 1;
            }
        }
        n
    }

    pub fn restore_progress(&mut self, partition: i32, source: i32, through: i64) {
        self.progress.insert((partition, source), through);
    }

    pub fn forget(&mut self, partition: i32) {
        self.shares.retain(|(p, _), _| *p != partition);
        self.progress.retain(|(p, _), _| *p != partition);
        let c = &mut self.changes;
        c.shares_put.retain(|(p, _, _)| *p != partition);
        c.shares_deleted.retain(|(p, _, _)| *p != partition);
        c.progress.retain(|(p, _)| *p != partition);
    }

    pub fn share(&self, partition: i32, start: i64, source: i32) -> Option<&WindowAgg> {
        self.shares.get(&(partition, start))?.get(&source)
    }

    pub fn progress(&self, partition: i32, source: i32) -> i64 {
        self.progress
            .get(&(partition, source))
            .copied()
            .unwrap_or(i64::MIN)
    }

    pub fn take_changes(&mut self) -> MergeChanges {
        std::mem::take(&mut self.changes)
    }

    /// A share of window `start` from `source`, received on `partition`. A share the merger has
    /// already (a re-send) or one of a window `source` has already closed through is ignored.
    pub fn receive(&mut self, partition: i32, share: Partial) {
        let end = share.start.saturating_add(self.rules.window_ms);
        if end <= self.progress(partition, share.source) {
            return;
        }
        let shares = self.shares.entry((partition, share.start)).or_default();
        if shares.contains_key(&share.source) {
            return;
        }
        shares.insert(share.source, share.agg);
        let key = (partition, share.start, share.source);
        self.changes.shares_deleted.remove(&key);
        self.changes.shares_put.insert(key);
    }

    /// `source` closed its windows through `through`.
    pub fn progressed(&mut self, partition: i32, source: i32, through: i64) {
        if through > self.progress(partition, source) {
            self.progress.insert((partition, source), through);
            self.changes.progress.insert((partition, source));
        }
    }

    /// Closes, in order, every window of `partition` that all `sources` partitions have closed
    /// their share of: adds the shares in source order, computes the findings, forgets them.
    pub fn close_ready(&mut self, partition: i32, sources: i32) -> Vec<ClosedWindow> {
        let through = self.closed_through(partition, sources);
        let w = self.rules.window_ms;
        let ready: Vec<i64> = self
            .shares
            .range((partition, i64::MIN)..=(partition, i64::MAX))
            .map(|((_, s), _)| *s)
            .filter(|s| s.saturating_add(w) <= through)
            .collect();
        let mut out = Vec::new();
        for start in ready {
            let Some(shares) = self.shares.remove(&(partition, start)) else {
                continue;
            };
            let mut merged = WindowAgg::default();
            for (source, share) in &shares {
                merged.add(share, self.rules.max_keys_per_window);
                let key = (partition, start, *source);
                if !self.changes.shares_put.remove(&key) {
                    self.changes.shares_deleted.insert(key);
                }
            }
            out.push(findings(
                &self.rules,
                start,
                start.saturating_add(w),
                &merged,
            ));
        }
        out
    }
}

fn tier(s: &SensitivityPolicy, category: &str) -> Tier {
    s.categories
        .get(category)
        .copied()
        .unwrap_or(s.default_tier)
}

/// A stable id for (window, kind, subject, related): a re-sent finding is recognisable.
pub fn finding_id(
    window_start: i64,
    kind: FindingKind,
    subject: &str,
    related: Option<&str>,
) -> String {
    tact_core::id::stable_id(
        "ins",
        &[
            &window_start.to_string(),
            kind.symbol(),
            subject,
            related.unwrap_or(""),
        ],
    )
}

fn median_of(hist: &BTreeMap<u32, u64>) -> Option<u32> {
    let total: u64 = hist.values().sum();
    if total == 0 {
        return None;
    }
    // The lower median: the value at rank ceil(n/2).
    let rank = total.div_ceil(2);
    let mut seen = 0;
    for (v, n) in hist {
        seen += n;
        if seen >= rank {
            return Some(*v);
        }
    }
    None
}

fn ratio(a: u64, b: u64) -> f64 {
    if b == 0 {
        0.0
    } else {
        a as f64 / b as f64
    }
}

/// Computes the findings of a closed window. Only candidates supported by at least
/// `min_sessions` distinct sessions become findings; the rest are counted as held back.
pub fn findings(rules: &Rules, start: i64, end: i64, w: &WindowAgg) -> ClosedWindow {
    let k = rules.min_sessions.max(1);
    let mut held_back: BTreeMap<FindingKind, u64> = BTreeMap::new();
    let mut by_kind: BTreeMap<FindingKind, Vec<Finding>> = BTreeMap::new();
    let base = |kind: FindingKind, subject: &str, related: Option<&str>| Finding {
        finding_id: finding_id(start, kind, subject, related),
        kind,
        window_start: start,
        window_end: end,
        subject: subject.to_owned(),
        related: related.map(str::to_owned),
        sessions: 0,
        base_sessions: 0,
        share: 0.0,
        flagged: true,
        median_clicks: None,
        median_seconds: None,
        faq_answer: None,
        clicks: Vec::new(),
        seconds: Vec::new(),
        via: Vec::new(),
        window_sessions: w.sessions,
        window_sensitive_events: w.sensitive_events,
        min_sessions: k,
        summary: String::new(),
    };
    let mut consider = |f: Finding, held: &mut BTreeMap<FindingKind, u64>| {
        if f.sessions >= k {
            by_kind.entry(f.kind).or_default().push(f);
        } else {
            *held.entry(f.kind).or_default() += 1;
        }
    };

    for (page, t) in &w.targets {
        if t.reached == 0 {
            continue;
        }
        let mut f = base(FindingKind::HardToFind, page, None);
        f.sessions = t.reached;
        f.base_sessions = w.sessions;
        f.share = ratio(t.reached, w.sessions);
        f.median_clicks = median_of(&t.clicks);
        f.flagged = f
            .median_clicks
            .is_some_and(|m| m > rules.hard_to_find_median_clicks);
        let mut clicks: BTreeMap<u32, u64> = BTreeMap::new();
        for (c, n) in &t.clicks {
            *clicks.entry((*c).min(CLICK_BUCKETS)).or_default() += n;
        }
        f.clicks = clicks
            .into_iter()
            .map(|(c, n)| Bucket {
                label: if c >= CLICK_BUCKETS {
                    format!("{CLICK_BUCKETS}+")
                } else {
                    c.to_string()
                },
                sessions: n,
            })
            .collect();
        let secs: BTreeMap<u32, u64> = t.seconds.iter().map(|(b, n)| (u32::from(*b), *n)).collect();
        f.median_seconds = median_of(&secs).map(|b| {
            SECONDS_BUCKETS
                .get(b as usize)
                .copied()
                .unwrap_or(SECONDS_BUCKETS[SECONDS_BUCKETS.len() - 1])
        });
        f.seconds = t
            .seconds
            .iter()
            .map(|(b, n)| Bucket {
                label: seconds_label(*b),
                sessions: *n,
            })
            .collect();
        // Pages passed through are keys too: only those k or more sessions passed.
        let mut via: Vec<(&String, &u64)> = t.via.iter().filter(|(_, n)| **n >= k).collect();
        via.sort_by(|a, b| b.1.cmp(a.1).then(a.0.cmp(b.0)));
        f.via = via
            .into_iter()
            .take(10)
            .map(|(p, n)| Bucket {
                label: p.clone(),
                sessions: *n,
            })
            .collect();
        f.summary = format!(
            "{} sessions reached {page}; median {} clicks from session start{}",
            t.reached,
            f.median_clicks.unwrap_or(0),
            if f.flagged { " (hard to find)" } else { "" }
        );
        consider(f, &mut held_back);
    }

    for ((x, y), n) in &w.pairs {
        let viewers = w.product_sessions.get(x).copied().unwrap_or(0);
        let confidence = ratio(*n, viewers);
        if confidence < rules.detour_min_confidence {
            continue;
        }
        let mut f = base(FindingKind::Detour, x, Some(y));
        f.sessions = *n;
        f.base_sessions = viewers;
        f.share = confidence;
        f.summary = format!(
            "{n} of {viewers} sessions viewing {x} reached {y} {}+ steps later ({:.0}%): link it directly",
            rules.detour_min_steps,
            confidence * 100.0
        );
        consider(f, &mut held_back);
    }

    for (page, n) in &w.dead_ends {
        let visitors = w.page_sessions.get(page).copied().unwrap_or(*n);
        let mut f = base(FindingKind::DeadEnd, page, None);
        f.sessions = *n;
        f.base_sessions = visitors;
        f.share = ratio(*n, visitors);
        f.summary = format!(
            "{n} sessions ended at {page} without purchase or help ({:.0}% of its visitors)",
            f.share * 100.0
        );
        consider(f, &mut held_back);
    }

    for (q, n) in &w.failing_searches {
        let searched = w.search_sessions.get(q).copied().unwrap_or(*n);
        let zero = w.zero_searches.get(q).copied().unwrap_or(0);
        let mut f = base(FindingKind::FailingSearch, q, None);
        f.sessions = *n;
        f.base_sessions = searched;
        f.share = ratio(*n, searched);
        f.clicks = vec![
            Bucket {
                label: "zero results".into(),
                sessions: zero,
            },
            Bucket {
                label: format!("1-{} results", rules.search_few_results),
                sessions: n - zero.min(*n),
            },
        ];
        f.summary = format!(
            "{n} sessions searched {q:?} and got at most {} results ({zero} got none)",
            rules.search_few_results
        );
        if !rules.faq.is_empty() {
            f.faq_answer = rules.faq.search(q, 1, &[]).pop().map(|a| a.faq_id);
            match &f.faq_answer {
                Some(id) => f
                    .summary
                    .push_str(&format!("; the FAQ answer {id:?} may fit: link it")),
                None => f
                    .summary
                    .push_str("; no FAQ answer matches: a question to answer"),
            }
        }
        consider(f, &mut held_back);
    }

    for (page, n) in &w.faq_unresolved {
        let deep = w.faq_deep.get(page).copied().unwrap_or(*n);
        let mut f = base(FindingKind::HelpDemand, page, None);
        f.sessions = *n;
        f.base_sessions = deep;
        f.share = ratio(*n, deep);
        f.summary = format!(
            "{n} sessions scrolled deep into {page} and did not go back to shopping ({:.0}% of deep readers)",
            f.share * 100.0
        );
        consider(f, &mut held_back);
    }

    let mut out = Vec::new();
    for (_, mut list) in by_kind {
        list.sort_by(|a, b| {
            b.sessions
                .cmp(&a.sessions)
                .then_with(|| a.subject.cmp(&b.subject))
                .then_with(|| a.related.cmp(&b.related))
        });
        list.truncate(rules.max_findings_per_kind);
        out.extend(list);
    }
    ClosedWindow {
        start,
        end,
        findings: out,
        held_back,
        sessions: w.sessions,
    }
}

#[cfg(test)]
mod tests;
