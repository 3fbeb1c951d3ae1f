//! tact-telemetry: the one metrics catalog, the HTTP endpoints that expose it, and log setup.
//!
//! Invariant: every label value is a `&'static str` taken from a closed set (an enum's name), so a
//! customer id or any other unbounded value can never become a label.

mod catalog;
mod http;

pub use catalog::{
    ActionLabel, EdgeMetrics, EventLabel, Exporter, GateReason, InsightsMetrics, KindChannel,
    KindLabel, Metrics, Names, OutcomeLabel, TopicClass, TopicLabel, TopicPartition,
};
pub use http::{serve, serve_admin, CustomerLookup, Health};

/// Sets up logs: human-readable by default, JSON lines with `json = true`. `RUST_LOG` overrides
/// `default_filter`.
pub fn init_logs(default_filter: &str, json: bool) {
    use tracing_subscriber::EnvFilter;
    let filter =
        EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(default_filter));
    // Colours only for a terminal: a journal or a log file gets plain text.
    let ansi = std::io::IsTerminal::is_terminal(&std::io::stderr());
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(ansi)
        .with_writer(std::io::stderr);
    // A second init (tests, demo) keeps the first subscriber.
    let _ = if json {
        builder.json().try_init()
    } else {
        builder.compact().try_init()
    };
}
