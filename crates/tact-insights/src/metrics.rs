//! The lane's metrics, `tact_insights_<name>[_total]`, and a minimal `/metrics` `/healthz`
//! `/readyz` endpoint. Label values are `&'static str` from [`FindingKind`] only: no page, query or
//! person can become a label.

use crate::core::{FindingKind, Tally};
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;
use std::io::{BufRead, BufReader, Write};
use std::net::{SocketAddr, TcpListener};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct KindLabel {
    pub kind: &'static str,
}

#[derive(Debug, Default)]
pub struct InsightsMetrics {
    pub events_consumed: Counter,
    pub events_skipped: Counter,
    pub decode_errors: Counter,
    pub late_events: Counter,
    pub sensitive_events: Counter,
    pub sessions_assembled: Counter,
    pub sessions_truncated: Counter,
    pub sessions_evicted: Counter,
    pub sessions_in_flight: Gauge,
    pub windows_closed: Counter,
    pub findings_published: Family<KindLabel, Counter>,
    pub findings_held_back: Family<KindLabel, Counter>,
    pub outbox_pending: Gauge,
    pub delivery_errors: Counter,
    pub commits: Counter,
}

impl InsightsMetrics {
    /// Creates the metrics and registers them under `insights_` in `registry` (whose own prefix,
    /// e.g. `tact`, comes first). Every finding kind starts at zero.
    pub fn register(registry: &mut Registry) -> InsightsMetrics {
        let m = InsightsMetrics::default();
        let r = registry.sub_registry_with_prefix("insights");
        r.register(
            "events_consumed",
            "Clickstream records consumed by the insights lane",
            m.events_consumed.clone(),
        );
        r.register(
            "events_skipped",
            "Records skipped because they were already applied (replay after a crash)",
            m.events_skipped.clone(),
        );
        r.register(
            "decode_errors",
            "Records that could not be decoded (the decision lane dead-letters them)",
            m.decode_errors.clone(),
        );
        r.register(
            "late_events",
            "Events of a session starting in a window its partition had already passed",
            m.late_events.clone(),
        );
        r.register(
            "sensitive_events",
            "Events in never_remember categories (counted in totals only)",
            m.sensitive_events.clone(),
        );
        r.register(
            "sessions_assembled",
            "Sessions ended and folded into a window aggregate",
            m.sessions_assembled.clone(),
        );
        r.register(
            "sessions_truncated",
            "Sessions that hit the per-session event cap",
            m.sessions_truncated.clone(),
        );
        r.register(
            "sessions_evicted",
            "Sessions ended early because a partition had too many in flight",
            m.sessions_evicted.clone(),
        );
        r.register(
            "sessions_in_flight",
            "Session buffers currently open",
            m.sessions_in_flight.clone(),
        );
        r.register(
            "windows_closed",
            "Event-time windows closed and evaluated",
            m.windows_closed.clone(),
        );
        r.register(
            "findings_published",
            "Findings published (supported by at least k sessions)",
            m.findings_published.clone(),
        );
        r.register(
            "findings_held_back",
            "Candidate findings held back because fewer than k sessions support them",
            m.findings_held_back.clone(),
        );
        r.register(
            "outbox_pending",
            "Findings written but not yet acknowledged by the broker",
            m.outbox_pending.clone(),
        );
        r.register(
            "delivery_errors",
            "Produce attempts the broker did not acknowledge (retried)",
            m.delivery_errors.clone(),
        );
        r.register("commits", "Input offset commits", m.commits.clone());
        for kind in FindingKind::ALL {
            let label = KindLabel {
                kind: kind.as_str(),
            };
            let _ = m.findings_published.get_or_create(&label);
            let _ = m.findings_held_back.get_or_create(&label);
        }
        m
    }

    pub fn record(&self, t: &Tally) {
        self.late_events.inc_by(t.late_events);
        self.sensitive_events.inc_by(t.sensitive_events);
        self.sessions_assembled.inc_by(t.sessions_assembled);
        self.sessions_truncated.inc_by(t.sessions_truncated);
        self.sessions_evicted.inc_by(t.sessions_evicted);
    }
}

/// What the probes report.
#[derive(Debug, Default)]
pub struct Health {
    pub ready: AtomicBool,
    pub draining: AtomicBool,
}

/// Serves `/metrics`, `/healthz` and `/readyz` on `addr` from a background thread until `stop`.
/// Returns the bound address. Plain HTTP/1.0 responses; enough for Prometheus and probes.
pub fn serve(
    addr: SocketAddr,
    registry: Arc<Registry>,
    health: Arc<Health>,
    stop: Arc<AtomicBool>,
) -> std::io::Result<SocketAddr> {
    let listener = TcpListener::bind(addr)?;
    let bound = listener.local_addr()?;
    listener.set_nonblocking(true)?;
    std::thread::Builder::new()
        .name("insights-http".into())
        .spawn(move || {
            while !stop.load(Ordering::Relaxed) {
                match listener.accept() {
                    Ok((stream, _)) => {
                        let _ = stream.set_nonblocking(false);
                        let _ = stream.set_read_timeout(Some(Duration::from_secs(2)));
                        answer(stream, &registry, &health);
                    }
                    Err(_) => std::thread::sleep(Duration::from_millis(20)),
                }
            }
        })?;
    Ok(bound)
}

fn answer(stream: std::net::TcpStream, registry: &Registry, health: &Health) {
    let mut reader = BufReader::new(&stream);
    let mut line = String::new();
    if reader.read_line(&mut line).is_err() {
        return;
    }
    // Drain the headers.
    let mut header = String::new();
    while reader.read_line(&mut header).is_ok_and(|n| n > 2) {
        header.clear();
    }
    let path = line.split_whitespace().nth(1).unwrap_or("/");
    let (status, body, ctype) = match path {
        "/metrics" => {
            let mut out = String::new();
            let _ = prometheus_client::encoding::text::encode(&mut out, registry);
            (
                "200 OK",
                out,
                "application/openmetrics-text; version=1.0.0; charset=utf-8",
            )
        }
        "/healthz" => ("200 OK", "ok\n".to_owned(), "text/plain"),
        "/readyz" => {
            if health.ready.load(Ordering::Relaxed) && !health.draining.load(Ordering::Relaxed) {
                ("200 OK", "ready\n".to_owned(), "text/plain")
            } else {
                (
                    "503 Service Unavailable",
                    "not ready\n".to_owned(),
                    "text/plain",
                )
            }
        }
        _ => ("404 Not Found", "not found\n".to_owned(), "text/plain"),
    };
    let mut w = &stream;
    let _ = write!(
        w,
        "HTTP/1.0 {status}\r\nContent-Type: {ctype}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
}
