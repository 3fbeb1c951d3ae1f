//! Golden scenarios: one TOML file per story in `tests/golden/`, run through the pure core against
//! the shipped retailer policy (`deploy/policy.toml`, plus the scenario's overrides).
//!
//! A scenario file holds one or more runs; each run starts from an empty `CustomerState` and feeds
//! it steps (events, profile commands, timer ticks). Every step lists the decisions and suppressed
//! candidates it must produce, and nothing else: a step that lists nothing must produce nothing.
//! A failure names the file, the run and the step, and prints what is missing, what is unexpected
//! and the step's whole actual output in the same inline-TOML form the files use, ready to paste.
//!
//! The file format (every key is checked; a typo is an error, not a silently ignored field):
//!
//! ```toml
//! description = "what the story is"
//! start = "2026-03-02T10:00:00Z"   # optional; step times are offsets from this
//! customer = "cust-1"              # optional; a run may override it
//! never_in_state = ["health"]      # optional; checked against serde_json of the state after every step
//! never_in_outputs = ["health"]    # optional; checked against items, reasons and details of every output
//! [policy]                         # optional overrides, merged key by key onto deploy/policy.toml
//! [[catalog]]                      # optional products: id, category, name, compatible_with
//! [[runs]]
//! name = "main"
//! [[runs.steps]]
//! day = 0                          # optional; minutes = day * 1440 + at
//! at = 5
//! event = "PRODUCT_VIEW"           # or command = "set_consent" | "set_preferences" | "set_gift_mode" | "erase"
//!                                  # or timer = "at" | "next_due" (next_due: tick when `next_due` says;
//!                                  #    with day/at given, next_due must equal that time)
//! session = "s1"  category = "shoes"  product = "p1"  ...   # event fields, see `Step`
//! decisions = [{ kind = "RECOMMENDATION", channel = "ON_SITE", personalized = true, items = ["p1"], reasons = ["category_interest"] }]
//! suppressed = [{ kind = "OUTBOUND_NUDGE", channel = "EMAIL", gate = "CONTEXT", reason = "browsing_only" }]
//! ignore_kinds = ["WELCOME_BACK"]  # optional; outputs of these kinds are not compared at this step
//! expect_next_due = 36             # optional; after the step, minutes after start, or "none"
//! state_contains = ['"interests":[]']  # optional; substrings of serde_json of the state after the step
//! state_excludes = ["trail-runner"]
//! repeat = 9                       # optional; run this step (e.g. a next_due tick) n times
//! note = "why"                     # optional; printed with a failure (runs take a note too)
//! ```
//!
//! A decision expectation may add `detail_contains = ["90 days"]` (substrings of its reasons'
//! human-readable details), `due_minutes = 300` (its `due_at`, minutes after start), and for help
//! hand-offs `context_pages`, `context_searches`, `context_faq`, `compared`, `cart` (the context's
//! lists, exactly), `no_context = true` and `answers = ["faq-id", ...]` (suggested answers, best
//! first). A top-level `[[faq]]` (id, question, answer, keywords, page) is the knowledge base; an
//! event's `decision_id = "@CALLBACK"` names the run's latest decision of that kind. Besides what a step lists, every output of every step is checked for:
//! consent for its purpose (`gates::purpose_of` / `gates::consent`), customer, policy version,
//! time, expiry, cause event, and decision ids unique within a run.
//!
//! `GOLDEN=name` runs only the scenario files whose name contains `name`.

use serde::Deserialize;
use std::collections::BTreeSet;
use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use tact_core::event::PreferencesUpdate;
use tact_core::gates::{self, Candidate, ConsentAnswer, Evidence};
use tact_core::{
    apply_command, apply_event, apply_timer, next_due, Catalog, Channel, ClickEvent, CommandBody,
    CustomerState, Decision, DecisionKind, EventKind, FaqEntry, Gate, Item, KnowledgeBase, Outcome,
    Policy, Product, ProfileCommand, Purpose, Rules, Suppressed, Timestamp,
};

/// The story files that must exist: deleting one is a failure, not a smaller suite.
const REQUIRED: &[&str] = &[
    "faq_struggler_is_offered_chat",
    "undecided_browser_with_a_widgetizer_sees_compatible_widgets",
    "visitor_who_only_browsed_gets_no_email_the_next_day",
    "opted_out_returning_customer_gets_a_plain_welcome_back_and_nothing_else",
    "three_dismissals_back_off_recommendations",
    "never_remember_category_leaves_no_trace",
    "gpc_stops_marketing",
    "quiet_hours_hold_back_outbound_until_morning",
    "holdout_customers_get_nothing_personalized_but_are_recorded",
    "lost_faq_reader_gets_help_with_context_and_suggested_answers",
    "chat_on_demand_is_handed_off_even_after_dismissals",
    "callback_is_due_within_an_hour_of_business_time_and_escalates_once",
    "struggle_detectors_pingpong_needs_a_return",
    "gift_takes_its_browsing_with_it",
];

const DEFAULT_START: &str = "2026-03-02T10:00:00Z";
const MINUTE_MS: i64 = 60_000;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Scenario {
    description: String,
    #[serde(default)]
    start: Option<String>,
    #[serde(default)]
    customer: Option<String>,
    #[serde(default)]
    policy: Option<toml::Table>,
    #[serde(default)]
    catalog: Vec<Product>,
    #[serde(default)]
    faq: Vec<FaqSpec>,
    #[serde(default)]
    never_in_state: Vec<String>,
    #[serde(default)]
    never_in_outputs: Vec<String>,
    runs: Vec<Run>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Run {
    name: String,
    #[serde(default)]
    note: Option<String>,
    #[serde(default)]
    customer: Option<String>,
    #[serde(default)]
    policy: Option<toml::Table>,
    steps: Vec<Step>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct Step {
    #[serde(default)]
    note: Option<String>,
    #[serde(default)]
    day: Option<i64>,
    #[serde(default)]
    at: Option<i64>,
    /// Repeat this step (e.g. a `next_due` tick) this many times with the same expectations.
    #[serde(default)]
    repeat: Option<u32>,

    // One of these three.
    #[serde(default)]
    event: Option<String>,
    #[serde(default)]
    command: Option<String>,
    #[serde(default)]
    timer: Option<String>,

    // Event fields.
    #[serde(default)]
    id: Option<String>,
    #[serde(default)]
    session: Option<String>,
    #[serde(default)]
    page: Option<String>,
    #[serde(default)]
    category: Option<String>,
    #[serde(default)]
    product: Option<String>,
    #[serde(default)]
    query: Option<String>,
    #[serde(default)]
    results: Option<u32>,
    #[serde(default)]
    scroll: Option<f32>,
    #[serde(default)]
    dwell_ms: Option<u64>,
    #[serde(default)]
    items: Vec<ItemSpec>,
    #[serde(default)]
    gift: bool,
    #[serde(default)]
    decision_id: Option<String>,
    #[serde(default)]
    suggestion_kind: Option<String>,
    #[serde(default)]
    gpc: bool,

    // Command fields.
    #[serde(default)]
    purpose: Option<String>,
    #[serde(default)]
    channel: Option<String>,
    #[serde(default)]
    granted: Option<bool>,
    #[serde(default)]
    source: Option<String>,
    #[serde(default)]
    expires_after_minutes: Option<u32>,
    #[serde(default)]
    interests: Vec<String>,
    #[serde(default)]
    excluded_categories: Vec<String>,
    #[serde(default)]
    private_categories: Vec<String>,
    #[serde(default)]
    suggestions_enabled: Option<bool>,
    #[serde(default)]
    disabled_kinds: Vec<String>,
    #[serde(default)]
    disabled_channels: Vec<String>,
    #[serde(default)]
    time_zone: Option<String>,
    #[serde(default)]
    enabled: Option<bool>,

    // Expectations.
    #[serde(default)]
    decisions: Vec<ExpectedDecision>,
    #[serde(default)]
    suppressed: Vec<ExpectedSuppressed>,
    #[serde(default)]
    ignore_kinds: Vec<String>,
    /// After the step: `next_due` equals this many minutes after the start (day/at style), or
    /// `"none"`.
    #[serde(default)]
    expect_next_due: Option<toml::Value>,
    #[serde(default)]
    state_contains: Vec<String>,
    #[serde(default)]
    state_excludes: Vec<String>,
}

/// One knowledge-base entry.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
struct FaqSpec {
    id: String,
    question: String,
    answer: String,
    #[serde(default)]
    keywords: Vec<String>,
    #[serde(default)]
    page: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct ItemSpec {
    product: String,
    #[serde(default)]
    category: Option<String>,
    #[serde(default = "one")]
    quantity: u32,
    #[serde(default)]
    price_cents: i64,
}

fn one() -> u32 {
    1
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct ExpectedDecision {
    kind: String,
    channel: String,
    personalized: bool,
    #[serde(default)]
    items: Vec<String>,
    reasons: Vec<String>,
    /// Substrings the reasons' human-readable details must contain (not part of the diff key).
    #[serde(default)]
    detail_contains: Vec<String>,
    /// The decision's `due_at`, in minutes after the start (day * 1440 + at).
    #[serde(default)]
    due_minutes: Option<i64>,
    /// The hand-off context's pages, searches (queries), FAQ entries, compared products and
    /// cart, each compared exactly; `no_context = true`: the decision carries none.
    #[serde(default)]
    context_pages: Option<Vec<String>>,
    #[serde(default)]
    context_searches: Option<Vec<String>>,
    #[serde(default)]
    context_faq: Option<Vec<String>>,
    #[serde(default)]
    compared: Option<Vec<String>>,
    #[serde(default)]
    cart: Option<Vec<String>>,
    #[serde(default)]
    no_context: bool,
    /// Suggested answers' knowledge-base ids, best first.
    #[serde(default)]
    answers: Option<Vec<String>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct ExpectedSuppressed {
    kind: String,
    channel: String,
    gate: String,
    reason: String,
}

// ---------------------------------------------------------------------------------------------
// Rendering: expected and actual outputs in one canonical inline-TOML form, compared as multisets.

fn quote_list(xs: &[String]) -> String {
    let inner: Vec<String> = xs.iter().map(|x| format!("{x:?}")).collect();
    format!("[{}]", inner.join(", "))
}

fn render_decision(
    kind: DecisionKind,
    channel: Channel,
    personalized: bool,
    items: &[String],
    reasons: &[String],
) -> String {
    format!(
        "{{ kind = {:?}, channel = {:?}, personalized = {personalized}, items = {}, reasons = {} }}",
        kind.symbol(),
        channel.symbol(),
        quote_list(items),
        quote_list(reasons)
    )
}

fn render_suppressed(kind: DecisionKind, channel: Channel, gate: Gate, reason: &str) -> String {
    format!(
        "{{ kind = {:?}, channel = {:?}, gate = {:?}, reason = {reason:?} }}",
        kind.symbol(),
        channel.symbol(),
        gate.symbol()
    )
}

fn actual_decision(d: &Decision) -> String {
    let reasons: Vec<String> = d.reasons.iter().map(|r| r.code.clone()).collect();
    render_decision(d.kind, d.channel, d.personalized, &d.items, &reasons)
}

fn actual_suppressed(s: &Suppressed) -> String {
    render_suppressed(s.kind, s.channel, s.gate, s.reason_code)
}

fn kind(name: &str) -> Result<DecisionKind, String> {
    DecisionKind::from_name(name).ok_or_else(|| format!("unknown decision kind {name:?}"))
}

fn channel(name: &str) -> Result<Channel, String> {
    Channel::from_symbol(name).ok_or_else(|| format!("unknown channel {name:?}"))
}

fn gate(name: &str) -> Result<Gate, String> {
    Gate::ALL
        .into_iter()
        .find(|g| g.symbol() == name || g.as_str() == name)
        .ok_or_else(|| format!("unknown gate {name:?}"))
}

fn purpose(name: &str) -> Result<Purpose, String> {
    Purpose::from_symbol(&name.to_uppercase()).ok_or_else(|| format!("unknown purpose {name:?}"))
}

// ---------------------------------------------------------------------------------------------
// Loading.

fn golden_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/golden")
}

fn shipped_policy_table() -> toml::Table {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../deploy/policy.toml");
    let text = std::fs::read_to_string(&path)
        .unwrap_or_else(|e| panic!("reading {}: {e}", path.display()));
    toml::from_str(&text).unwrap_or_else(|e| panic!("{} is not TOML: {e}", path.display()))
}

/// Deep merge: tables merge key by key, anything else (arrays included) replaces.
fn merge(base: &mut toml::Table, over: &toml::Table) {
    for (k, v) in over {
        match (base.get_mut(k), v) {
            (Some(toml::Value::Table(b)), toml::Value::Table(o)) => merge(b, o),
            _ => {
                base.insert(k.clone(), v.clone());
            }
        }
    }
}

fn build_policy(overrides: &[&toml::Table]) -> Result<Policy, String> {
    let mut table = shipped_policy_table();
    for o in overrides {
        merge(&mut table, o);
    }
    let policy: Policy = toml::Value::Table(table)
        .try_into()
        .map_err(|e| format!("policy does not parse: {e}"))?;
    policy.validate().map_err(|errs| {
        let msgs: Vec<String> = errs.iter().map(ToString::to_string).collect();
        format!("policy is invalid: {}", msgs.join("; "))
    })?;
    Ok(policy)
}

fn parse_start(s: &str) -> Result<Timestamp, String> {
    let t = chrono::DateTime::parse_from_rfc3339(s).map_err(|e| format!("start {s:?}: {e}"))?;
    Ok(Timestamp(t.timestamp_millis()))
}

// ---------------------------------------------------------------------------------------------
// Running.

struct Ctx<'a> {
    file: &'a str,
    scenario: &'a Scenario,
    run: &'a Run,
    rules: Rules,
    customer: String,
    start: Timestamp,
    state: CustomerState,
    decision_ids: BTreeSet<String>,
    /// The latest decision id of each kind (symbol), for `decision_id = "@CALLBACK"`.
    last_ids: std::collections::BTreeMap<String, String>,
    failures: Vec<String>,
}

impl Ctx<'_> {
    fn time_of(&self, step: &Step) -> Option<Timestamp> {
        if step.day.is_none() && step.at.is_none() {
            return None;
        }
        let minutes = step.day.unwrap_or(0) * 1440 + step.at.unwrap_or(0);
        Some(Timestamp(self.start.millis() + minutes * MINUTE_MS))
    }

    fn offset(&self, t: Timestamp) -> String {
        let minutes = t.since(self.start) as f64 / MINUTE_MS as f64;
        let days = (minutes / 1440.0).floor();
        format!("day {} +{}m", days, minutes - days * 1440.0)
    }

    fn event(
        &self,
        step: &Step,
        symbol: &str,
        index: usize,
        now: Timestamp,
    ) -> Result<ClickEvent, String> {
        let kind = EventKind::from_symbol(symbol);
        if let EventKind::Unknown(s) = &kind {
            if !s.starts_with("X_") {
                return Err(format!("unknown event type {s:?} (prefix it with X_ to test an unknown type on purpose)"));
            }
        }
        Ok(ClickEvent {
            event_id: step.id.clone().unwrap_or_else(|| format!("e{index}")),
            customer_id: self.customer.clone(),
            session_id: step.session.clone().unwrap_or_else(|| "s1".to_owned()),
            event_time: now,
            kind,
            page: step.page.clone(),
            category: step.category.clone(),
            product_id: step.product.clone(),
            search_query: step.query.clone(),
            search_results: step.results,
            scroll_depth: step.scroll,
            dwell_ms: step.dwell_ms,
            items: step
                .items
                .iter()
                .map(|i| Item {
                    product_id: i.product.clone(),
                    category: i.category.clone(),
                    quantity: i.quantity,
                    unit_price_cents: i.price_cents,
                })
                .collect(),
            gift: step.gift,
            decision_id: match step.decision_id.as_deref() {
                Some(r) if r.starts_with('@') => Some(
                    self.last_ids
                        .get(&r[1..])
                        .cloned()
                        .ok_or_else(|| format!("no {} decision yet for {r:?}", &r[1..]))?,
                ),
                other => other.map(str::to_owned),
            },
            suggestion_kind: step.suggestion_kind.clone(),
            gpc: step.gpc,
        })
    }

    fn command(
        &self,
        step: &Step,
        name: &str,
        index: usize,
        now: Timestamp,
    ) -> Result<ProfileCommand, String> {
        let body = match name {
            "set_consent" => CommandBody::SetConsent {
                purpose: purpose(
                    step.purpose
                        .as_deref()
                        .ok_or("set_consent needs `purpose`")?,
                )?,
                channel: step.channel.as_deref().map(channel).transpose()?,
                granted: step.granted.ok_or("set_consent needs `granted`")?,
                source: step
                    .source
                    .clone()
                    .unwrap_or_else(|| "preference_center".to_owned()),
                expires_at: step.expires_after_minutes.map(|m| now.plus_minutes(m)),
            },
            "set_preferences" => CommandBody::SetPreferences(PreferencesUpdate {
                interests: step.interests.clone(),
                survey_answers: Vec::new(),
                excluded_categories: step.excluded_categories.clone(),
                private_categories: step.private_categories.clone(),
                suggestions_enabled: step.suggestions_enabled,
                disabled_kinds: step.disabled_kinds.clone(),
                disabled_channels: step
                    .disabled_channels
                    .iter()
                    .map(|c| channel(c))
                    .collect::<Result<_, _>>()?,
                time_zone: step.time_zone.clone(),
            }),
            "set_gift_mode" => CommandBody::SetGiftMode {
                enabled: step.enabled.ok_or("set_gift_mode needs `enabled`")?,
                recipient_id: None,
                until: step.expires_after_minutes.map(|m| now.plus_minutes(m)),
            },
            "erase" => CommandBody::Erase { request_ref: None },
            other => return Err(format!("unknown command {other:?}")),
        };
        Ok(ProfileCommand {
            command_id: format!("c{index}"),
            customer_id: self.customer.clone(),
            issued_at: now,
            body,
        })
    }

    fn fail(&mut self, index: usize, what: &str, now: Timestamp, step: &Step, msg: String) {
        let note = step
            .note
            .as_deref()
            .map(|n| format!(" ({n})"))
            .unwrap_or_default();
        self.failures.push(format!(
            "{}, run {:?}, step {index}: {what} at {}{note}:\n{msg}",
            self.file,
            self.run.name,
            self.offset(now)
        ));
    }

    fn run_step(
        &mut self,
        index: usize,
        step: &Step,
        last_time: &mut Timestamp,
    ) -> Result<(), String> {
        let modes = [
            step.event.is_some(),
            step.command.is_some(),
            step.timer.is_some(),
        ];
        if modes.iter().filter(|m| **m).count() != 1 {
            return Err(format!(
                "step {index}: needs exactly one of event, command, timer"
            ));
        }
        let explicit = self.time_of(step);
        let (now, what, outcome, cause) = if let Some(symbol) = &step.event {
            let now = explicit.unwrap_or(*last_time);
            let ev = self.event(step, symbol, index, now)?;
            let out = apply_event(&mut self.state, &ev, &self.rules);
            (now, format!("{symbol} {}", ev.event_id), out, Some(ev))
        } else if let Some(name) = &step.command {
            let now = explicit.unwrap_or(*last_time);
            let cmd = self.command(step, name, index, now)?;
            apply_command(&mut self.state, &cmd, &self.rules);
            (now, format!("command {name}"), Outcome::default(), None)
        } else {
            let mode = step.timer.as_deref().unwrap_or_default();
            let now = match mode {
                "at" => {
                    explicit.ok_or_else(|| format!("step {index}: timer = \"at\" needs day/at"))?
                }
                "next_due" => {
                    let Some(due) = next_due(&self.state, &self.rules.policy) else {
                        // A failure of this step, not of the file: the runs go on.
                        let at = explicit.unwrap_or(*last_time);
                        let msg =
                            "  timer = \"next_due\" but next_due says nothing is due\n".to_owned();
                        self.fail(index, "timer next_due", at, step, msg);
                        return Ok(());
                    };
                    if let Some(expected) = explicit {
                        if due != expected {
                            let msg = format!(
                                "  next_due is {} but the step expects {}",
                                self.offset(due),
                                self.offset(expected)
                            );
                            self.fail(index, "timer next_due", due, step, msg);
                        }
                    }
                    due
                }
                other => {
                    return Err(format!(
                        "step {index}: timer must be \"at\" or \"next_due\", not {other:?}"
                    ))
                }
            };
            let out = apply_timer(&mut self.state, &self.customer, now, &self.rules);
            (now, format!("timer ({mode})"), out, None)
        };
        *last_time = (*last_time).max(now);
        self.check(index, step, now, &what, &outcome, cause.as_ref())
    }

    fn check(
        &mut self,
        index: usize,
        step: &Step,
        now: Timestamp,
        what: &str,
        out: &Outcome,
        cause: Option<&ClickEvent>,
    ) -> Result<(), String> {
        for d in &out.decisions {
            self.last_ids
                .insert(d.kind.symbol().to_owned(), d.decision_id.clone());
        }
        let ignored: Vec<DecisionKind> = step
            .ignore_kinds
            .iter()
            .map(|k| kind(k))
            .collect::<Result<_, _>>()?;
        let mut expected: Vec<String> = Vec::new();
        for d in &step.decisions {
            expected.push(format!(
                "decision   {}",
                render_decision(
                    kind(&d.kind)?,
                    channel(&d.channel)?,
                    d.personalized,
                    &d.items,
                    &d.reasons
                )
            ));
        }
        for s in &step.suppressed {
            expected.push(format!(
                "suppressed {}",
                render_suppressed(
                    kind(&s.kind)?,
                    channel(&s.channel)?,
                    gate(&s.gate)?,
                    &s.reason
                )
            ));
        }
        let mut all_actual: Vec<String> = Vec::new();
        let mut actual: Vec<String> = Vec::new();
        for d in &out.decisions {
            let r = format!("decision   {}", actual_decision(d));
            if !ignored.contains(&d.kind) {
                actual.push(r.clone());
            }
            all_actual.push(r);
        }
        for s in &out.suppressed {
            let r = format!("suppressed {}", actual_suppressed(s));
            if !ignored.contains(&s.kind) {
                actual.push(r.clone());
            }
            all_actual.push(r);
        }
        let mut msg = String::new();
        // Multiset difference both ways.
        let mut unmatched = actual.clone();
        let mut missing = Vec::new();
        for e in &expected {
            match unmatched.iter().position(|a| a == e) {
                Some(i) => {
                    unmatched.remove(i);
                }
                None => missing.push(e.clone()),
            }
        }
        for m in &missing {
            let _ = writeln!(msg, "  missing:    {m}");
        }
        for u in &unmatched {
            let _ = writeln!(msg, "  unexpected: {u}");
        }
        for d in &step.decisions {
            let k = kind(&d.kind)?;
            for needle in &d.detail_contains {
                let found = out
                    .decisions
                    .iter()
                    .filter(|x| x.kind == k)
                    .any(|x| x.reasons.iter().any(|r| r.detail.contains(needle.as_str())));
                if !found {
                    let details: Vec<&str> = out
                        .decisions
                        .iter()
                        .filter(|x| x.kind == k)
                        .flat_map(|x| x.reasons.iter().map(|r| r.detail.as_str()))
                        .collect();
                    let _ = writeln!(
                        msg,
                        "  no {} decision has a reason detail containing {needle:?}; details: {details:?}",
                        k.symbol()
                    );
                }
            }
        }
        for d in &step.decisions {
            let k = kind(&d.kind)?;
            let Some(x) = out.decisions.iter().find(|x| x.kind == k) else {
                continue;
            };
            if let Some(m) = d.due_minutes {
                let want = Timestamp(self.start.millis() + m * MINUTE_MS);
                if x.due_at != Some(want) {
                    let show =
                        |t: Option<Timestamp>| t.map_or("none".to_owned(), |t| self.offset(t));
                    let _ = writeln!(
                        msg,
                        "  {} is due {} but {} was expected",
                        k.symbol(),
                        show(x.due_at),
                        show(Some(want))
                    );
                }
            }
            if d.no_context && x.context.is_some() {
                let _ = writeln!(msg, "  {} carries a context: {:?}", k.symbol(), x.context);
            }
            let ctx = x.context.clone().unwrap_or_default();
            let searches: Vec<String> = ctx.searches.iter().map(|s| s.query.clone()).collect();
            let answers: Vec<String> = x
                .suggested_answers
                .iter()
                .map(|a| a.faq_id.clone())
                .collect();
            for (name, want, got) in [
                ("context pages", &d.context_pages, &ctx.pages),
                ("context searches", &d.context_searches, &searches),
                ("context FAQ entries", &d.context_faq, &ctx.faq_entries),
                ("compared products", &d.compared, &ctx.products_compared),
                ("context cart", &d.cart, &ctx.cart),
                ("suggested answers", &d.answers, &answers),
            ] {
                if let Some(want) = want {
                    if want != got {
                        let _ = writeln!(
                            msg,
                            "  {} {name} are {got:?} but {want:?} were expected",
                            k.symbol()
                        );
                    }
                }
            }
        }
        msg.push_str(&self.invariants(now, out, cause));
        let state_json = serde_json::to_string(&self.state)
            .map_err(|e| format!("state does not serialize: {e}"))?;
        for needle in &step.state_contains {
            if !state_json.contains(needle.as_str()) {
                let _ = writeln!(msg, "  the state does not contain {needle:?}");
            }
        }
        for needle in step
            .state_excludes
            .iter()
            .chain(&self.scenario.never_in_state)
        {
            if state_json.contains(needle.as_str()) {
                let _ = writeln!(msg, "  the state contains {needle:?}: {state_json}");
            }
        }
        for needle in &self.scenario.never_in_outputs {
            for d in &out.decisions {
                let text = format!(
                    "{:?} {:?} {:?} {:?}",
                    d.items, d.reasons, d.context, d.suggested_answers
                );
                if text.contains(needle.as_str()) {
                    let _ = writeln!(
                        msg,
                        "  decision {} mentions {needle:?}: {text}",
                        d.kind.symbol()
                    );
                }
            }
            for s in &out.suppressed {
                if s.detail.contains(needle.as_str()) {
                    let _ = writeln!(
                        msg,
                        "  suppressed {} mentions {needle:?}: {}",
                        s.kind.symbol(),
                        s.detail
                    );
                }
            }
        }
        if let Some(expected) = &step.expect_next_due {
            let actual = next_due(&self.state, &self.rules.policy);
            let want = match expected {
                toml::Value::String(s) if s == "none" => None,
                toml::Value::Integer(m) => Some(Timestamp(self.start.millis() + m * MINUTE_MS)),
                other => return Err(format!("step {index}: expect_next_due must be \"none\" or minutes after start, not {other}")),
            };
            if actual != want {
                let show = |t: Option<Timestamp>| t.map_or("none".to_owned(), |t| self.offset(t));
                let _ = writeln!(
                    msg,
                    "  next_due is {} but {} was expected",
                    show(actual),
                    show(want)
                );
            }
        }
        if !msg.is_empty() {
            let _ = writeln!(msg, "  actual output of this step (all kinds):");
            if all_actual.is_empty() {
                let _ = writeln!(msg, "    (nothing)");
            }
            for a in &all_actual {
                let _ = writeln!(msg, "    {a}");
            }
            self.fail(index, what, now, step, msg);
        }
        Ok(())
    }

    /// Holds for every output of every scenario, whatever the step expects.
    fn invariants(&mut self, now: Timestamp, out: &Outcome, cause: Option<&ClickEvent>) -> String {
        let mut msg = String::new();
        let policy = &self.rules.policy;
        for d in &out.decisions {
            let label = actual_decision(d);
            if d.customer_id != self.customer
                || d.policy_version != policy.version
                || d.created_at != now
            {
                let _ = writeln!(
                    msg,
                    "  decision {label} has customer/version/time {:?}/{:?}/{:?}",
                    d.customer_id, d.policy_version, d.created_at
                );
            }
            let ttl = now.plus_minutes(policy.decision_ttl_minutes);
            // A callback stays valid until it is due.
            if d.expires_at != ttl.max(d.due_at.unwrap_or(ttl)) {
                let _ = writeln!(msg, "  decision {label} expires at {:?}", d.expires_at);
            }
            if let Some(ev) = cause {
                if d.cause_event_id != ev.event_id
                    || d.session_id.as_deref() != Some(ev.session_id.as_str())
                {
                    let _ = writeln!(
                        msg,
                        "  decision {label} has cause {:?} / session {:?}",
                        d.cause_event_id, d.session_id
                    );
                }
            }
            if !self.decision_ids.insert(d.decision_id.clone()) {
                let _ = writeln!(msg, "  decision id {} was emitted twice", d.decision_id);
            }
            // Consent, as the gate reads it, for the purpose `purpose_of` names.
            let candidate = Candidate {
                kind: d.kind,
                channel: d.channel,
                subject: String::new(),
                personalized: d.personalized,
                items: d.items.clone(),
                reasons: d.reasons.clone(),
                evidence: Evidence::Browsing,
                categories: Vec::new(),
                in_session: true,
                context: None,
                answers: Vec::new(),
                due_at: None,
            };
            if let Some(p) = gates::purpose_of(&candidate) {
                if let ConsentAnswer::Denied { reason_code, .. } =
                    gates::consent(&self.state, p, d.channel, policy.consent_regime, now)
                {
                    let _ = writeln!(
                        msg,
                        "  decision {label} was emitted without {} consent ({reason_code})",
                        p.as_str()
                    );
                }
            }
        }
        for s in &out.suppressed {
            if s.customer_id != self.customer
                || s.policy_version != policy.version
                || s.created_at != now
            {
                let _ = writeln!(
                    msg,
                    "  suppressed {} has customer/version/time {:?}/{:?}/{:?}",
                    actual_suppressed(s),
                    s.customer_id,
                    s.policy_version,
                    s.created_at
                );
            }
        }
        msg
    }
}

fn knowledge_base(scenario: &Scenario) -> KnowledgeBase {
    KnowledgeBase::new(
        scenario
            .faq
            .iter()
            .map(|e| FaqEntry {
                id: e.id.clone(),
                question: e.question.clone(),
                answer: e.answer.clone(),
                keywords: e.keywords.clone(),
                page: e.page.clone(),
            })
            .collect(),
    )
}

fn run_file(path: &Path) -> Result<Vec<String>, String> {
    let file = path
        .file_name()
        .map(|f| format!("golden/{}", f.to_string_lossy()))
        .unwrap_or_default();
    let text = std::fs::read_to_string(path).map_err(|e| format!("{file}: {e}"))?;
    let scenario: Scenario = toml::from_str(&text).map_err(|e| format!("{file}: {e}"))?;
    if scenario.description.trim().is_empty() || scenario.runs.is_empty() {
        return Err(format!("{file}: needs a description and at least one run"));
    }
    let start = parse_start(scenario.start.as_deref().unwrap_or(DEFAULT_START))
        .map_err(|e| format!("{file}: {e}"))?;
    let catalog =
        Catalog::new(scenario.catalog.clone()).map_err(|e| format!("{file}: catalog: {e}"))?;
    let faq = knowledge_base(&scenario);
    let mut failures = Vec::new();
    for run in &scenario.runs {
        let overrides: Vec<&toml::Table> =
            scenario.policy.iter().chain(run.policy.iter()).collect();
        let policy =
            build_policy(&overrides).map_err(|e| format!("{file}, run {:?}: {e}", run.name))?;
        let customer = run
            .customer
            .clone()
            .or_else(|| scenario.customer.clone())
            .unwrap_or_else(|| "cust-1".to_owned());
        let _ = &run.note;
        let mut ctx = Ctx {
            file: &file,
            scenario: &scenario,
            run,
            rules: Rules {
                policy,
                catalog: catalog.clone(),
                faq: faq.clone(),
            },
            customer,
            start,
            state: CustomerState::default(),
            decision_ids: BTreeSet::new(),
            last_ids: Default::default(),
            failures: Vec::new(),
        };
        let mut last_time = start;
        let mut index = 0;
        for step in &run.steps {
            for _ in 0..step.repeat.unwrap_or(1) {
                index += 1;
                ctx.run_step(index, step, &mut last_time)
                    .map_err(|e| format!("{file}, run {:?}: {e}", run.name))?;
            }
        }
        failures.extend(ctx.failures);
    }
    Ok(failures)
}

#[test]
fn golden_scenarios() {
    let dir = golden_dir();
    let filter = std::env::var("GOLDEN").ok();
    let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|x| x == "toml"))
        .collect();
    files.sort();
    let names: Vec<String> = files
        .iter()
        .filter_map(|p| p.file_stem().map(|s| s.to_string_lossy().into_owned()))
        .collect();
    let absent: Vec<&&str> = REQUIRED
        .iter()
        .filter(|r| !names.iter().any(|n| n == **r))
        .collect();
    assert!(
        filter.is_some() || absent.is_empty(),
        "golden scenarios missing from {}: {absent:?}",
        dir.display()
    );

    let mut report = Vec::new();
    let mut ran = 0;
    for (path, name) in files.iter().zip(&names) {
        if filter.as_deref().is_some_and(|f| !name.contains(f)) {
            continue;
        }
        ran += 1;
        match run_file(path) {
            Ok(failures) => report.extend(failures),
            Err(e) => report.push(format!("scenario error: {e}")),
        }
    }
    assert!(ran > 0, "GOLDEN={filter:?} matches no scenario");
    if !report.is_empty() {
        panic!(
            "{} golden mismatch(es):\n\n{}",
            report.len(),
            report.join("\n")
        );
    }
}

/// Every scenario twice from scratch: the same decisions with the same ids (replay is safe).
#[test]
fn golden_scenarios_replay_identically() {
    for path in std::fs::read_dir(golden_dir())
        .expect("golden dir")
        .filter_map(|e| e.ok().map(|e| e.path()))
    {
        if path.extension().is_none_or(|x| x != "toml") {
            continue;
        }
        let outputs = |p: &Path| -> Vec<String> {
            let text = std::fs::read_to_string(p).expect("read");
            let scenario: Scenario = toml::from_str(&text).expect("parse");
            let start =
                parse_start(scenario.start.as_deref().unwrap_or(DEFAULT_START)).expect("start");
            let catalog = Catalog::new(scenario.catalog.clone()).expect("catalog");
            let faq = knowledge_base(&scenario);
            let mut all = Vec::new();
            for run in &scenario.runs {
                let overrides: Vec<&toml::Table> =
                    scenario.policy.iter().chain(run.policy.iter()).collect();
                let policy = build_policy(&overrides).expect("policy");
                let customer = run
                    .customer
                    .clone()
                    .or_else(|| scenario.customer.clone())
                    .unwrap_or_else(|| "cust-1".to_owned());
                let mut ctx = Ctx {
                    file: "",
                    scenario: &scenario,
                    run,
                    rules: Rules {
                        policy,
                        catalog: catalog.clone(),
                        faq: faq.clone(),
                    },
                    customer,
                    start,
                    state: CustomerState::default(),
                    decision_ids: BTreeSet::new(),
                    last_ids: Default::default(),
                    failures: Vec::new(),
                };
                let mut last = start;
                let mut index = 0;
                for step in &run.steps {
                    for _ in 0..step.repeat.unwrap_or(1) {
                        index += 1;
                        ctx.run_step(index, step, &mut last).expect("step");
                    }
                }
                all.extend(ctx.decision_ids);
                all.push(serde_json::to_string(&ctx.state).expect("json"));
            }
            all
        };
        assert_eq!(
            outputs(&path),
            outputs(&path),
            "{} does not replay identically",
            path.display()
        );
    }
}
