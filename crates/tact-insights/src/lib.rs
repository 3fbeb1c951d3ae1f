//! tact-insights: the insights lane. A second consumer of the clickstream, in its own consumer
//! group, that turns navigation into aggregate findings for making the site better for everyone
//! (hard-to-find pages, detours, dead ends, failing searches, FAQ pages that fail people) and
//! nothing person-level.
//!
//! Owns: the pure aggregation core ([`core`]: bounded session buffers, tumbling event-time
//! windows, the k-threshold), the `insights` Avro record ([`codec`], `schemas/insight.avsc`), the
//! crash-safe Kafka/RocksDB edge ([`lane`]), the lane's settings ([`config`]) and metrics
//! ([`metrics`]), and the report ([`report`]).
//!
//! Invariants:
//! * Privacy by construction: aggregates and findings are keyed by page, path or query, never by
//!   person; the output schema has no customer or session field; a session buffer holds neither
//!   id (only a salted reference) and is deleted when the session ends; `never_remember`
//!   categories count only in totals; a finding (search queries included) is published only when
//!   at least k distinct sessions support it.
//! * Crash safety: session buffers, window aggregates, watermarks, applied offsets and outgoing
//!   findings are written in one store commit, and input offsets are committed only after the
//!   findings produced from them are acknowledged; replay skips applied offsets, so a restart
//!   never double counts a window. Finding ids are a function of (window, kind, key), so a re-sent
//!   finding is recognisable.

pub mod codec;
pub mod config;
pub mod core;
pub mod lane;
pub mod metrics;
pub mod report;

pub use crate::config::{ConfigError, InsightsSettings};
pub use crate::core::{Aggregator, ClosedWindow, Finding, FindingKind, Rules};
pub use crate::lane::{run_insights, run_with, InsightsError, InsightsSummary};
pub use crate::report::{read_insights, render_html, render_table, report, ReportOptions};
