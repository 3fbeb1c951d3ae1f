//! The pure aggregation core: click events in, window aggregates and k-thresholded findings out.
//! No I/O, no clock, no randomness: event time comes from the events, and every function is a
//! function of its arguments and the [`Aggregator`]'s state.
//!
//! Sessions are assembled in a bounded buffer (at most `max_events_per_session` steps per session,
//! at most `max_sessions_in_flight` sessions per input partition) that is dropped when the session
//! ends: after `session_gap_ms` of event-time silence or `max_session_ms` after its start, as the
//! event-time watermark of its partition says. An ended session is folded into the tumbling window
//! of its start, keyed by page, path or query only, and its buffer is deleted. A window closes when
//! every partition's watermark has passed `window end + max_session_ms` (so every session that
//! started in it has ended and been folded), and only then are findings computed; a finding is
//! published only when at least `min_sessions` distinct sessions support it.
//!
//! Determinism: sessions live on one partition (the input is keyed by customer), expiry follows
//! that partition's own watermark, late sessions are judged by that watermark too, and window
//! aggregates are sums. So what a window contains never depends on how partitions interleave or
//! how input was cut into batches; only *when* it closes does, and a closed window is never
//! reopened. Replaying the same input therefore yields the same findings with the same ids.

use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, BTreeSet, HashMap};
use tact_core::policy::SensitivityPolicy;
use tact_core::{ClickEvent, EventKind, Tier};

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

/// One session in flight. Holds no customer id, no session id and no sensitive-category step.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SessionBuf {
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

/// Everything a window remembers: counts keyed by page, path or query, and totals.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct WindowAgg {
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

impl WindowAgg {
    /// Sessions folded into this window so far.
    pub fn sessions(&self) -> u64 {
        self.sessions
    }
}

/// What changed since the last [`Aggregator::take_changes`]: the store writes of one commit.
#[derive(Debug, Default, Clone, PartialEq)]
pub struct Changes {
    /// Sessions created or changed (written) and ended (deleted); a key is in at most one set.
    pub sessions_put: BTreeSet<(i32, SessionRef)>,
    pub sessions_deleted: BTreeSet<(i32, SessionRef)>,
    /// Index entries (partition, session start, session) to add and to remove; disjoint.
    pub session_index_put: BTreeSet<(i32, i64, SessionRef)>,
    pub session_index_deleted: BTreeSet<(i32, i64, SessionRef)>,
    /// Sessions the store has never seen (created since the last commit).
    fresh: BTreeSet<(i32, SessionRef)>,
    /// Windows written and closed (deleted); disjoint. `windows_created` need an index entry.
    pub windows_put: BTreeSet<i64>,
    pub windows_deleted: BTreeSet<i64>,
    pub windows_created: BTreeSet<i64>,
    pub watermarks: BTreeSet<i32>,
    pub closed_through_moved: bool,
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
    windows: BTreeMap<i64, WindowAgg>,
    watermarks: BTreeMap<i32, i64>,
    /// Windows ending at or before this are closed and never reopened.
    closed_through: i64,
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
            closed_through: i64::MIN,
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

    pub fn restore_window(&mut self, start: i64, agg: WindowAgg) {
        self.windows.insert(start, agg);
    }

    pub fn restore_watermark(&mut self, partition: i32, wm: i64) {
        self.watermarks.insert(partition, wm);
    }

    pub fn restore_closed_through(&mut self, t: i64) {
        self.closed_through = t;
    }

    // ---- reading state for the store ----------------------------------------------------

    pub fn session(&self, partition: i32, session: &SessionRef) -> Option<&SessionBuf> {
        self.sessions.get(&(partition, *session))
    }

    pub fn window(&self, start: i64) -> Option<&WindowAgg> {
        self.windows.get(&start)
    }

    pub fn watermark(&self, partition: i32) -> Option<i64> {
        self.watermarks.get(&partition).copied()
    }

    pub fn closed_through(&self) -> i64 {
        self.closed_through
    }

    pub fn sessions_in_flight(&self) -> usize {
        self.sessions.len()
    }

    pub fn open_windows(&self) -> Vec<i64> {
        self.windows.keys().copied().collect()
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
        self.advance(partition, t, tally);
        let wm = self.watermarks.get(&partition).copied().unwrap_or(t);
        let key = (partition, session);
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
                if we.saturating_add(self.rules.max_session_ms) <= wm || we <= self.closed_through {
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
                self.changes
                    .session_index_put
                    .insert((partition, t, session));
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
    pub fn advance(&mut self, partition: i32, t: i64, tally: &mut Tally) {
        let wm = self
            .watermarks
            .get(&partition)
            .copied()
            .map_or(t, |w| w.max(t));
        if self.watermarks.get(&partition) != Some(&wm) {
            self.watermarks.insert(partition, wm);
            self.changes.watermarks.insert(partition);
        }
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
        let entry = (partition, buf.start, session);
        if !self.changes.session_index_put.remove(&entry) {
            self.changes.session_index_deleted.insert(entry);
        }
        tally.sessions_assembled += 1;
        if buf.truncated {
            tally.sessions_truncated += 1;
        }
        self.fold(&buf);
    }

    /// Folds an ended session into the window of its start. The buffer is gone after this.
    fn fold(&mut self, s: &SessionBuf) {
        let rules = &self.rules;
        let ws = window_start(s.start, rules.window_ms);
        if ws.saturating_add(rules.window_ms) <= self.closed_through {
            // Cannot happen while the close rule holds (see the module doc); never reopen.
            return;
        }
        if !self.windows.contains_key(&ws) {
            self.changes.windows_created.insert(ws);
        }
        self.changes.windows_deleted.remove(&ws);
        self.changes.windows_put.insert(ws);
        let budget = rules.max_keys_per_window;
        let w = self.windows.entry(ws).or_default();
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

    /// The lowest watermark over the partitions seen so far (`None` before any event).
    pub fn global_watermark(&self) -> Option<i64> {
        self.watermarks.values().copied().min()
    }

    /// Closes, in order, every open window that every partition's watermark has passed by
    /// `max_session_ms`, computes its findings (k-thresholded) and forgets its aggregate.
    pub fn close_ready(&mut self) -> Vec<ClosedWindow> {
        let Some(wm) = self.global_watermark() else {
            return Vec::new();
        };
        let mut out = Vec::new();
        while let Some((&start, _)) = self.windows.first_key_value() {
            let end = start.saturating_add(self.rules.window_ms);
            if end.saturating_add(self.rules.max_session_ms) > wm {
                break;
            }
            let Some(agg) = self.windows.remove(&start) else {
                break;
            };
            if !self.changes.windows_created.remove(&start) {
                self.changes.windows_deleted.insert(start);
            }
            self.changes.windows_put.remove(&start);
            self.closed_through = self.closed_through.max(end);
            self.changes.closed_through_moved = true;
            out.push(findings(&self.rules, start, end, &agg));
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
