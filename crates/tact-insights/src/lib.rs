//! tact-insights: the insights lane. A second job on the stateful edge, in its own consumer
//! group, that turns navigation into aggregate findings for making the site better for everyone
//! (hard-to-find pages, detours, dead ends, failing searches, FAQ pages that fail people) and
//! nothing person-level.
//!
//! Owns: the pure aggregation core ([`core`]: bounded session buffers, per-partition window
//! shares, their merge, the k-threshold), the `insights` Avro record and the internal formats
//! ([`codec`], `schemas/insight.avsc`), the job on the edge ([`lane`]), the lane's settings
//! ([`config`]), and the report ([`report`]). Its metrics live in tact-telemetry's catalog.
//!
//! Invariants:
//! * Privacy by construction: aggregates and findings are keyed by page, path or query, never by
//!   person; the output schema has no customer or session field; a session buffer holds neither
//!   id (only a salted reference) and is deleted when the session ends; `never_remember`
//!   categories count only in totals; a finding (search queries included) is published only when
//!   at least k distinct sessions support it, counted over every partition.
//! * One instance or many publish the same findings: each partition's share of a window is
//!   merged, in partition order, by the partition the window maps to, once every partition has
//!   closed its share.
//! * Crash and move safety: the edge commits state, applied offsets and outgoing records
//!   together and restores a moved partition from its changelog; shares and sessions record the
//!   input they absorbed, so nothing is counted twice. Finding ids are a function of (window,
//!   kind, key), so a re-sent finding is recognisable.

pub mod codec;
pub mod config;
pub mod core;
pub mod lane;
pub mod report;

pub use crate::config::{ConfigError, InsightsSettings};
pub use crate::core::{Aggregator, ClosedWindow, Finding, FindingKind, Merger, Rules};
pub use crate::lane::{edge_settings, run_insights, topic_specs, InsightsSummary, Lane};
pub use crate::report::{read_insights, render_html, render_table, report, ReportOptions};
