//! `tact insights report`: reads the insights topic from the beginning until it is idle, keeps the
//! latest copy of every finding id (a re-send after a crash is the same finding), and renders a
//! terminal table and a self-contained HTML page with inline SVG charts (no external assets).

use crate::codec::{decode_finding, DecodedInsight};
use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Write as _;
use std::path::PathBuf;
use std::time::{Duration, Instant};
use tact_edge::EdgeError;
use tact_kafka::rdkafka::config::RDKafkaLogLevel;
use tact_kafka::rdkafka::consumer::{BaseConsumer, Consumer};
use tact_kafka::rdkafka::{ClientConfig, Message, Offset, TopicPartitionList};

/// What to read and where to write.
#[derive(Debug, Clone)]
pub struct ReportOptions {
    pub bootstrap_servers: String,
    pub topic: String,
    /// librdkafka passthrough (TLS, SASL).
    pub client: BTreeMap<String, String>,
    /// Stop once nothing arrived for this long.
    pub idle: Duration,
    /// Stop after this long in any case.
    pub timeout: Duration,
    /// Also write the HTML page here.
    pub html_out: Option<PathBuf>,
    /// Findings shown per kind.
    pub top: usize,
}

impl ReportOptions {
    pub fn new(bootstrap_servers: &str, topic: &str) -> ReportOptions {
        ReportOptions {
            bootstrap_servers: bootstrap_servers.to_owned(),
            topic: topic.to_owned(),
            client: BTreeMap::new(),
            idle: Duration::from_secs(3),
            timeout: Duration::from_secs(60),
            html_out: None,
            top: 10,
        }
    }
}

/// Reads every finding on `topic` (from the beginning, with no consumer group commits) until
/// idle. Undecodable records are skipped with a warning. Re-sent duplicates collapse by id.
pub fn read_insights(opts: &ReportOptions) -> Result<Vec<DecodedInsight>, EdgeError> {
    let mut config = ClientConfig::new();
    config
        .set("bootstrap.servers", &opts.bootstrap_servers)
        .set("group.id", "tact-insights-report")
        .set("enable.auto.commit", "false")
        .set("enable.partition.eof", "false")
        .set("auto.offset.reset", "earliest")
        .set_log_level(RDKafkaLogLevel::Warning);
    for (k, v) in &opts.client {
        config.set(k, v);
    }
    let consumer: BaseConsumer = config
        .create()
        .map_err(|e| EdgeError::Setup(format!("cannot create a Kafka consumer: {e}")))?;
    let md = consumer
        .fetch_metadata(Some(&opts.topic), Duration::from_secs(10))
        .map_err(|e| {
            EdgeError::Setup(format!(
                "cannot read metadata of {} from {}: {e}",
                opts.topic, opts.bootstrap_servers
            ))
        })?;
    let parts: Vec<i32> = md
        .topics()
        .iter()
        .filter(|t| t.name() == opts.topic)
        .flat_map(|t| t.partitions().iter().map(|p| p.id()))
        .collect();
    if parts.is_empty() {
        return Err(EdgeError::Setup(format!(
            "topic {} does not exist on {}",
            opts.topic, opts.bootstrap_servers
        )));
    }
    let mut tpl = TopicPartitionList::new();
    for p in &parts {
        tpl.add_partition_offset(&opts.topic, *p, Offset::Beginning)
            .map_err(|e| EdgeError::Setup(e.to_string()))?;
    }
    consumer
        .assign(&tpl)
        .map_err(|e| EdgeError::Setup(format!("cannot assign {}: {e}", opts.topic)))?;
    let started = Instant::now();
    let mut last = Instant::now();
    let mut by_id: BTreeMap<String, DecodedInsight> = BTreeMap::new();
    while started.elapsed() < opts.timeout && last.elapsed() < opts.idle {
        match consumer.poll(Duration::from_millis(200)) {
            None => {}
            Some(Err(e)) => tracing::warn!(error = %e, "consumer error while reading insights"),
            Some(Ok(m)) => {
                last = Instant::now();
                match m.payload().map(decode_finding) {
                    Some(Ok(f)) => {
                        by_id.insert(f.finding_id.clone(), f);
                    }
                    Some(Err(e)) => tracing::warn!(
                        partition = m.partition(), offset = m.offset(), error = %e,
                        "skipping a record that is not an insight"
                    ),
                    None => {}
                }
            }
        }
    }
    let mut out: Vec<DecodedInsight> = by_id.into_values().collect();
    sort(&mut out);
    Ok(out)
}

/// Newest window first, then kind, then the best supported.
fn sort(findings: &mut [DecodedInsight]) {
    findings.sort_by(|a, b| {
        b.window_start
            .cmp(&a.window_start)
            .then_with(|| a.kind.cmp(&b.kind))
            .then_with(|| b.sessions.cmp(&a.sessions))
            .then_with(|| a.subject.cmp(&b.subject))
    });
}

/// Reads the topic, writes the HTML page if asked, and returns the terminal table.
pub fn report(opts: &ReportOptions) -> Result<String, EdgeError> {
    let findings = read_insights(opts)?;
    if let Some(path) = &opts.html_out {
        std::fs::write(path, render_html(&findings, opts.top))
            .map_err(|e| EdgeError::Setup(format!("cannot write {}: {e}", path.display())))?;
    }
    Ok(render_table(&findings, opts.top))
}

/// `YYYY-MM-DD HH:MM` (UTC) from epoch milliseconds, without a time-zone library.
pub fn utc(ms: i64) -> String {
    let secs = ms.div_euclid(1000);
    let days = secs.div_euclid(86_400);
    let rem = secs.rem_euclid(86_400);
    // Civil from days (Howard Hinnant's algorithm).
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let y = yoe + era * 400;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = if m <= 2 { y + 1 } else { y };
    format!(
        "{y:04}-{m:02}-{d:02} {:02}:{:02}",
        rem / 3600,
        rem % 3600 / 60
    )
}

fn subject_of(f: &DecodedInsight) -> String {
    match &f.related {
        Some(y) => format!("{} -> {y}", f.subject),
        None => f.subject.clone(),
    }
}

fn detail_of(f: &DecodedInsight) -> String {
    match f.kind.as_str() {
        "HARD_TO_FIND" => format!(
            "median {} clicks{}{}",
            f.median_clicks.unwrap_or(0),
            if f.flagged { " [flagged]" } else { "" },
            if f.via.is_empty() {
                String::new()
            } else {
                format!(
                    "; via {}",
                    f.via
                        .iter()
                        .take(3)
                        .map(|b| b.label.as_str())
                        .collect::<Vec<_>>()
                        .join(", ")
                )
            }
        ),
        "DETOUR" => format!("confidence {:.0}% of {}", f.share * 100.0, f.base_sessions),
        _ => format!("{:.0}% of {}", f.share * 100.0, f.base_sessions),
    }
}

fn clip(s: &str, n: usize) -> String {
    if s.chars().count() <= n {
        s.to_owned()
    } else {
        let mut out: String = s.chars().take(n.saturating_sub(1)).collect();
        out.push('…');
        out
    }
}

/// A plain-text table: per window, the top findings of each kind.
pub fn render_table(findings: &[DecodedInsight], top: usize) -> String {
    let mut out = String::new();
    if findings.is_empty() {
        out.push_str("no findings published yet (windows close after the window end plus the maximum session length; a finding needs k sessions)\n");
        return out;
    }
    let _ = writeln!(
        out,
        "{:<16}  {:<14}  {:<44}  {:>8}  DETAIL",
        "WINDOW (UTC)", "KIND", "PAGE / PATH / QUERY", "SESSIONS"
    );
    let mut shown: BTreeMap<(i64, &str), usize> = BTreeMap::new();
    for f in findings {
        let n = shown.entry((f.window_start, f.kind.as_str())).or_default();
        *n += 1;
        if *n > top {
            continue;
        }
        let _ = writeln!(
            out,
            "{:<16}  {:<14}  {:<44}  {:>8}  {}",
            utc(f.window_start),
            f.kind,
            clip(&subject_of(f), 44),
            f.sessions,
            detail_of(f)
        );
    }
    let windows: BTreeSet<i64> = findings.iter().map(|f| f.window_start).collect();
    let _ = writeln!(
        out,
        "{} findings in {} window(s); every finding is supported by at least k sessions (k = {}).",
        findings.len(),
        windows.len(),
        findings.first().map_or(0, |f| f.min_sessions)
    );
    out
}

fn esc(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
        .replace('\'', "&#39;")
}

/// A horizontal bar chart as inline SVG.
fn bars(title: &str, rows: &[(String, i64)]) -> String {
    let max = rows.iter().map(|(_, v)| *v).max().unwrap_or(1).max(1);
    let row_h = 22;
    let label_w = 320;
    let bar_w = 360;
    let h = row_h * rows.len() as i64 + 30;
    let mut svg = format!(
        "<svg width=\"{}\" height=\"{h}\" role=\"img\" aria-label=\"{}\">\
         <text x=\"0\" y=\"16\" font-weight=\"bold\">{}</text>",
        label_w + bar_w + 60,
        esc(title),
        esc(title)
    );
    for (i, (label, v)) in rows.iter().enumerate() {
        let y = 26 + row_h * i as i64;
        let w = (*v * bar_w / max).max(1);
        let _ = write!(
            svg,
            "<text x=\"{}\" y=\"{}\" text-anchor=\"end\" font-size=\"12\">{}</text>\
             <rect x=\"{}\" y=\"{y}\" width=\"{w}\" height=\"{}\" fill=\"#4a7fb5\"/>\
             <text x=\"{}\" y=\"{}\" font-size=\"12\">{v}</text>",
            label_w - 6,
            y + 14,
            esc(&clip(label, 48)),
            label_w,
            row_h - 6,
            label_w + w + 4,
            y + 14
        );
    }
    svg.push_str("</svg>");
    svg
}

/// A self-contained HTML page: a chart per kind (top findings by sessions), the click
/// distribution of every hard-to-find page, and the full table.
pub fn render_html(findings: &[DecodedInsight], top: usize) -> String {
    let mut html = String::from(
        "<!doctype html><html><head><meta charset=\"utf-8\"><title>tact insights</title>\
         <style>body{font-family:system-ui,sans-serif;margin:2em;color:#222}\
         table{border-collapse:collapse}td,th{border-bottom:1px solid #ddd;padding:4px 8px;text-align:left}\
         td.n{text-align:right}svg{display:block;margin:1em 0}</style></head><body>\
         <h1>tact insights</h1><p>Aggregate navigation findings. Every finding is keyed by page, path \
         or query and supported by at least k distinct sessions; nothing here is about a person.</p>",
    );
    if findings.is_empty() {
        html.push_str("<p>No findings published yet.</p></body></html>");
        return html;
    }
    let latest = findings.iter().map(|f| f.window_start).max().unwrap_or(0);
    let current: Vec<&DecodedInsight> = findings
        .iter()
        .filter(|f| f.window_start == latest)
        .collect();
    if let Some(f) = current.first() {
        let _ = write!(
            html,
            "<h2>Window {} – {} UTC</h2><p>{} sessions; {} events in never_remember categories \
             (counted, never keyed); k = {}.</p>",
            esc(&utc(f.window_start)),
            esc(&utc(f.window_end)),
            f.window_sessions,
            f.window_sensitive_events,
            f.min_sessions
        );
    }
    let titles = [
        ("HARD_TO_FIND", "Hard to find: sessions reaching the page"),
        ("DETOUR", "Detours: X -> Y after several steps (sessions)"),
        (
            "DEAD_END",
            "Dead ends: sessions ending here without purchase or help",
        ),
        (
            "FAILING_SEARCH",
            "Failing searches: sessions with zero or few results",
        ),
        (
            "HELP_DEMAND",
            "Help demand: deep FAQ reads without a way back",
        ),
    ];
    for (kind, title) in titles {
        let rows: Vec<(String, i64)> = current
            .iter()
            .filter(|f| f.kind == kind)
            .take(top)
            .map(|f| (subject_of(f), f.sessions))
            .collect();
        if !rows.is_empty() {
            html.push_str(&bars(title, &rows));
        }
    }
    for f in current.iter().filter(|f| f.kind == "HARD_TO_FIND") {
        let rows: Vec<(String, i64)> = f
            .distribution
            .iter()
            .map(|b| {
                (
                    format!("{} clicks", b.label),
                    i64::try_from(b.sessions).unwrap_or(i64::MAX),
                )
            })
            .collect();
        html.push_str(&bars(&format!("Clicks to reach {}", f.subject), &rows));
    }
    html.push_str(
        "<h2>All findings</h2><table><tr><th>window (UTC)</th><th>kind</th><th>page / path / query</th>\
         <th>sessions</th><th>share</th><th>summary</th></tr>",
    );
    for f in findings {
        let _ = write!(
            html,
            "<tr><td>{}</td><td>{}</td><td>{}</td><td class=\"n\">{}</td><td class=\"n\">{:.0}%</td><td>{}</td></tr>",
            esc(&utc(f.window_start)),
            esc(&f.kind),
            esc(&subject_of(f)),
            f.sessions,
            f.share * 100.0,
            esc(&f.summary)
        );
    }
    html.push_str("</table></body></html>\n");
    html
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::core::Bucket;

    fn finding(kind: &str, subject: &str, sessions: i64) -> DecodedInsight {
        DecodedInsight {
            finding_id: format!("ins-{kind}-{subject}"),
            kind: kind.into(),
            window_start: 1_717_200_000_000,
            window_end: 1_717_203_600_000,
            subject: subject.into(),
            related: None,
            sessions,
            base_sessions: sessions * 2,
            share: 0.5,
            flagged: true,
            median_clicks: Some(6),
            median_seconds: None,
            faq_answer: None,
            distribution: vec![Bucket {
                label: "6".into(),
                sessions: sessions as u64,
            }],
            time_distribution: vec![],
            via: vec![],
            window_sessions: 100,
            window_sensitive_events: 4,
            min_sessions: 20,
            summary: "<b>x</b>".into(),
        }
    }

    #[test]
    fn html_is_self_contained_and_escapes_keys() {
        let html = render_html(
            &[
                finding("HARD_TO_FIND", "/help/shipping", 30),
                finding("FAILING_SEARCH", "<script>alert(1)</script>", 25),
            ],
            10,
        );
        assert!(html.contains("<svg"));
        assert!(!html.contains("<script>"), "a query must not inject markup");
        assert!(!html.contains("src=\"http") && !html.contains("href=\"http"));
        assert!(html.contains("Clicks to reach /help/shipping"));
    }

    #[test]
    fn table_lists_findings_and_dates_are_utc() {
        assert_eq!(utc(0), "1970-01-01 00:00");
        assert_eq!(utc(1_717_243_200_000), "2024-06-01 12:00");
        let t = render_table(&[finding("DEAD_END", "/checkout/shipping", 42)], 10);
        assert!(t.contains("/checkout/shipping") && t.contains("42"), "{t}");
        assert!(render_table(&[], 10).contains("no findings"));
    }
}
