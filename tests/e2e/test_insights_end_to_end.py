"""The insights lane through the real broker: aggregate findings, the k threshold, no person-level
output, and crash safety.

The lane runs as its own process (``tact insights run --config FILE``;
``tact insights run`` once wired) in its own consumer group, reading the clickstream and writing
``tact.v1.Insight`` records (schemas/insight.avsc, single-object encoding).

Generated input, all in one day window, every session a distinct visitor:
  * 30 sessions reach /help/shipping: 16 after 5 clicks, 10 after 6, 4 land on it directly;
  * 25 sessions view product X and reach product Y three steps later; 5 more view X and buy;
  * 12 sessions (fewer than k = 20) take a rare detour and search a query that finds nothing;
  * 22 sessions only view a product in a never_remember category (health);
  * then one event per partition two days later moves every watermark past the window.

Expected findings, exactly: HARD_TO_FIND /help/shipping (30 sessions, median 5 clicks, flagged),
DETOUR /p/x -> /p/y (25 of 30), DEAD_END /help/shipping (30) and DEAD_END /p/y (25). Nothing from the
12-session group or the sensitive product is ever published.

Env knobs: TACT_BIN (default $CARGO_TARGET_DIR/debug/tact), TACT_E2E_SEED.
"""

from __future__ import annotations

import os
import random
import signal
import subprocess
import threading
import time
from collections import Counter
from pathlib import Path

import pytest
from confluent_kafka import Producer

from harness import (
    DEFAULT_TACT_BIN,
    InputProducer,
    Metrics,
    _kill_tree,
    _spawn,
    click,
    committed_offsets,
    decode_single_object,
    dump_toml,
    encode_click,
    free_port,
    read_topic,
    tail,
    unique,
    wait_until,
)
import harness

pytestmark = pytest.mark.timeout(300)

MIN = 60_000
DAY = 24 * 60 * MIN
K = 20
PARTITIONS = 3
SEED = int(os.environ.get("TACT_E2E_SEED", "20240611"))
INSIGHTS_BIN = Path(os.environ.get("TACT_BIN") or DEFAULT_TACT_BIN)

harness.SCHEMA_FILES.setdefault("Insight", "insight.avsc")


@pytest.fixture(scope="session")
def insights_bin() -> Path:
    if not (INSIGHTS_BIN.is_file() and os.access(INSIGHTS_BIN, os.X_OK)):
        pytest.skip(f"tact binary not found at {INSIGHTS_BIN}: cargo build -p tact or set TACT_BIN")
    return INSIGHTS_BIN


class InsightsProcess:
    """``tact insights run`` with its own config, state dir, HTTP port, consumer group and log."""

    def __init__(self, binary: Path, workdir: Path, bootstrap: str, clickstream: str, insights: str,
                 name: str, group_id: str):
        self.binary, self.workdir, self.name = binary, Path(workdir), name
        self.bootstrap, self.clickstream, self.insights, self.group_id = bootstrap, clickstream, insights, group_id
        # One lane group's own topics: its shares between partitions and its changelog.
        self.partials, self.changelog = f"{insights}-partials", f"{insights}-changelog"
        self.state_dir = self.workdir / f"{name}-state"
        self.config_path = self.workdir / f"{name}.toml"
        self.log_path = self.workdir / f"{name}.log"
        self.proc: subprocess.Popen | None = None
        self.http_port = 0
        self.starts = 0

    def config(self) -> dict:
        return {
            "kafka": {"bootstrap_servers": self.bootstrap, "group_id": self.group_id,
                      "client": {"session.timeout.ms": "2000", "heartbeat.interval.ms": "300"}},
            "topics": {"clickstream": self.clickstream, "insights": self.insights,
                       "partials": self.partials, "changelog": self.changelog},
            "input": {"clickstream_format": "avro_confluent"},
            "state": {"dir": str(self.state_dir)},
            "pipeline": {"batch_max_events": 100, "batch_max_wait_ms": 50, "commit_interval_ms": 100,
                         "idle_advance_ms": 0},
            "http": {"listen": f"127.0.0.1:{self.http_port}"},
            "insights": {"window_minutes": 24 * 60, "session_gap_minutes": 30, "max_session_minutes": 120,
                         "min_sessions": K, "target_pages": ["/help/shipping"],
                         "hard_to_find_median_clicks": 4, "detour_min_steps": 3},
        }

    def start(self) -> "InsightsProcess":
        assert not self.alive()
        self.http_port = free_port()
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.config_path.write_text(dump_toml(self.config()))
        env = {**os.environ, "RUST_LOG": "info,tact_insights=debug", "RUST_BACKTRACE": "1"}
        self.proc = _spawn([str(self.binary), "insights", "run", "--config", str(self.config_path)], self.log_path,
                           env=env, cwd=self.workdir)
        self.starts += 1
        wait_until(self._ready, 60, 0.1, lambda: f"{self.name} never became ready:\n{tail(self.log_path)}")
        return self

    def _ready(self) -> bool:
        if self.proc.poll() is not None:
            raise AssertionError(f"{self.name} exited with {self.proc.returncode}:\n{tail(self.log_path)}")
        import urllib.request
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{self.http_port}/readyz", timeout=1) as r:
                return r.status == 200
        except Exception:
            return False

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def metrics(self) -> Metrics:
        import urllib.request
        with urllib.request.urlopen(f"http://127.0.0.1:{self.http_port}/metrics", timeout=5) as r:
            return Metrics.parse(r.read().decode())

    def kill(self) -> None:
        if self.alive():
            self.proc.send_signal(signal.SIGKILL)
            self.proc.wait(10)

    def stop(self) -> int:
        if self.alive():
            self.proc.send_signal(signal.SIGTERM)
            self.proc.wait(30)
        return self.proc.returncode if self.proc else 0

    def close(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            _kill_tree(self.proc)

    def diagnostics(self) -> str:
        return f"{self.name} (starts={self.starts}) log {self.log_path}:\n{tail(self.log_path, 60)}"


@pytest.fixture
def lanes(insights_bin, broker, tmp_path):
    made: list[InsightsProcess] = []

    def make(clickstream: str, insights: str, name: str, group_id: str | None = None) -> InsightsProcess:
        p = InsightsProcess(insights_bin, tmp_path, broker.bootstrap, clickstream, insights, name,
                            group_id or unique(f"insights-{name}"))
        made.append(p)
        return p

    class Lanes:
        def __call__(self, *a):
            return make(*a)

        def diagnostics(self) -> str:
            return "\n\n".join(p.diagnostics() for p in made) or "<no lane started>"

    yield Lanes()
    for p in made:
        p.close()


def day_start(ms: int) -> int:
    return ms - ms % DAY


def generate(tag: str, rng: random.Random) -> tuple[list[dict], int]:
    """Click events of every session (sorted by time) and the window start they fall in."""
    window = day_start(int(time.time() * 1000)) - 3 * DAY
    t0 = window + 6 * 60 * MIN
    sessions: list[list[tuple[str, dict]]] = []

    def pv(page, type_="PAGE_VIEW", **kw):
        return (type_, {"page": page, **kw})

    long5 = [pv("/"), pv("/c/shoes", "CATEGORY_VIEW", category="shoes"),
             pv("/p/shoe-1", "PRODUCT_VIEW", category="shoes", product_id="shoe-1"), pv("/about"), pv("/help"),
             pv("/help/shipping", "FAQ_VIEW")]
    long6 = long5[:4] + [pv("/faq")] + long5[4:]
    sessions += [long5] * 16 + [long6] * 10 + [[pv("/help/shipping", "FAQ_VIEW")]] * 4
    x = pv("/p/x", "PRODUCT_VIEW", category="audio", product_id="x")
    y = pv("/p/y", "PRODUCT_VIEW", category="audio", product_id="y")
    sessions += [[x, pv("/c/audio", "CATEGORY_VIEW", category="audio"),
                  pv("/c/kitchen", "CATEGORY_VIEW", category="kitchen"), y]] * 25
    buy = ("PURCHASE", {"page": "/checkout/done",
                        "items": [{"product_id": "x", "category": "audio", "quantity": 1, "unit_price_cents": 4999}]})
    sessions += [[x, pv("/c/audio", "CATEGORY_VIEW", category="audio"), buy]] * 5
    rare = [pv("/p/rare-a", "PRODUCT_VIEW", category="toys", product_id="rare-a"), pv("/c/toys", "CATEGORY_VIEW", category="toys"),
            pv("/deals"), ("SEARCH", {"page": "/search", "search_query": "Rare Query", "search_results": 0}),
            pv("/p/rare-b", "PRODUCT_VIEW", category="toys", product_id="rare-b")]
    sessions += [rare] * 12
    sessions += [[pv("/p/pregnancy-test", "PRODUCT_VIEW", category="health", product_id="pregnancy-test")]] * 22
    rng.shuffle(sessions)

    events = []
    for i, steps in enumerate(sessions):
        cid, sid = f"{tag}-cust-{i:03d}", f"{tag}-sess-{i:03d}"
        start = t0 + i * 2 * MIN + rng.randint(0, 59_000)
        for j, (type_, fields) in enumerate(steps):
            events.append(click(cid, sid, start + j * 40_000 + rng.randint(0, 15_000), type_,
                                event_id=f"{cid}-e{j}", **fields))
    events.sort(key=lambda e: (e["event_time"], e["event_id"]))
    return events, window


EXPECTED = {
    ("HARD_TO_FIND", "/help/shipping", None): 30,
    ("DETOUR", "/p/x", "/p/y"): 25,
    ("DEAD_END", "/help/shipping", None): 30,
    ("DEAD_END", "/p/y", None): 25,
}


def send_flush(bootstrap: str, topic: str, tag: str, window: int) -> None:
    """Two sessions per partition two days after the window: every partition's event time passes
    it (it moves where two distinct sessions agree, never on one session's word)."""
    p = Producer({"bootstrap.servers": bootstrap, "enable.idempotence": True, "acks": "all", "log_level": 3})
    for part in range(PARTITIONS):
        for n in (1, 2):
            ev = click(f"{tag}-flush-{part}-{n}", f"{tag}-flush-{part}-{n}", window + 2 * DAY + 6 * 60 * MIN,
                       "OTHER", event_id=f"{tag}-flush-{part}-{n}")
            p.produce(topic, key=ev["customer_id"].encode(), value=encode_click(ev), partition=part)
    assert p.flush(30) == 0


def read_insights(bootstrap: str, topic: str, min_count: int, timeout: float = 90):
    records = read_topic(bootstrap, topic, min_count=min_count, timeout=timeout, idle=3.0)
    return [(r, decode_single_object("Insight", r.value)) for r in records]


def assert_expected(findings, window: int, who: str) -> None:
    got = {(f["kind"], f["subject"], f["related"]): f for _, f in findings}
    assert set(got) == set(EXPECTED), f"{who}: findings {sorted(got)} != expected {sorted(EXPECTED)}"
    for key, sessions in EXPECTED.items():
        f = got[key]
        assert f["sessions"] == sessions, f"{who}: {key} supported by {f['sessions']}, want {sessions}"
        assert f["window_start"] == window and f["window_end"] == window + DAY
        assert f["min_sessions"] == K and f["sessions"] >= K
    hard = got[("HARD_TO_FIND", "/help/shipping", None)]
    assert hard["median_clicks"] == 5 and hard["flagged"] is True, hard
    assert {b["label"]: b["sessions"] for b in hard["distribution"]} == {"0": 4, "5": 16, "6": 10}, hard
    assert {"/", "/c/shoes", "/p/shoe-1", "/about", "/help"} <= {b["label"] for b in hard["via"]}, hard
    assert "/faq" not in {b["label"] for b in hard["via"]}, "a page only 10 sessions passed is a key below k"
    detour = got[("DETOUR", "/p/x", "/p/y")]
    assert detour["base_sessions"] == 30 and abs(detour["share"] - 25 / 30) < 1e-9, detour
    assert hard["window_sessions"] == 30 + 30 + 12 + 22
    assert hard["window_sensitive_events"] == 22


def assert_nothing_person_level(findings, events) -> None:
    ids = {e["customer_id"] for e in events} | {e["session_id"] for e in events} | {e["event_id"] for e in events}
    for r, f in findings:
        assert "customer_id" not in f and "session_id" not in f, f
        blob = (r.key or b"") + (r.value or b"")
        for i in ids:
            assert i.encode() not in blob, f"output record carries {i!r}: {f}"
        text = repr(f).lower()
        assert "rare" not in text, f"a finding below k was published: {f}"
        assert "pregnancy" not in text and "health" not in text, f"a never_remember key was published: {f}"


def test_generated_sessions_produce_exactly_the_expected_findings_and_nothing_below_k(lanes, broker, tmp_path):
    tag = unique("ins")
    events, window = generate(tag, random.Random(SEED))
    clicks, insights = f"{tag}-clickstream", f"{tag}-insights"
    broker.create_topics([clicks, insights, f"{insights}-partials", f"{insights}-changelog"], partitions=PARTITIONS)
    lane = lanes(clicks, insights, "lane").start()

    producer = InputProducer(broker.bootstrap)
    producer.send_clicks(clicks, events)
    producer.flush()
    send_flush(broker.bootstrap, clicks, tag, window)

    wait_until(lambda: lane.metrics().value("tact_insights_findings_published_total") >= len(EXPECTED), 90, 0.3,
               lambda: f"findings not published:\n{lane.metrics().text[-3000:]}\n{lane.diagnostics()}")
    findings = read_insights(broker.bootstrap, insights, len(EXPECTED))
    assert len(findings) == len(EXPECTED), [f for _, f in findings]
    assert_expected(findings, window, "straight run")
    assert_nothing_person_level(findings, events)
    assert len({f["finding_id"] for _, f in findings}) == len(findings)

    m = lane.metrics()
    assert m.value("tact_insights_sessions_assembled_total") == 30 + 30 + 12 + 22
    assert m.value("tact_insights_windows_closed_total") == 1
    assert m.value("tact_insights_findings_published_total", kind="hard_to_find") == 1
    assert m.value("tact_insights_findings_published_total", kind="detour") == 1
    assert m.value("tact_insights_findings_published_total", kind="dead_end") == 2
    assert m.value("tact_insights_findings_held_back_total", kind="failing_search") == 1
    assert m.value("tact_insights_findings_held_back_total", kind="detour") >= 1
    assert m.value("tact_insights_sensitive_events_total") == 22
    assert lane.stop() == 0

    # the report reads the topic back: a table in the terminal, an HTML page with inline SVG
    html = tmp_path / "insights.html"
    res = subprocess.run([str(lane.binary), "insights", "report", "--bootstrap", broker.bootstrap, "--topic", insights,
                          "--html", str(html), "--idle-ms", "2000"], capture_output=True, text=True, timeout=90)
    assert res.returncode == 0, res.stderr
    assert "/help/shipping" in res.stdout and "/p/x -> /p/y" in res.stdout, res.stdout
    page = html.read_text()
    assert "<svg" in page and "Clicks to reach /help/shipping" in page
    for ref in ("src=", "href=", "url(", "@import", "http://", "https://"):
        assert ref not in page, f"the page must be self-contained (found {ref!r})"
    print(res.stdout)


def test_sigkill_mid_stream_never_double_counts_a_window(lanes, broker):
    rng = random.Random(SEED + 1)
    tag = unique("inscrash")
    events, window = generate(tag, rng)
    clicks = f"{tag}-clickstream"
    out_a, out_b = f"{tag}-insights-A", f"{tag}-insights-B"
    broker.create_topics([clicks] + [f"{o}{x}" for o in (out_a, out_b) for x in ("", "-partials", "-changelog")],
                         partitions=PARTITIONS)
    a = lanes(clicks, out_a, "A").start()
    b = lanes(clicks, out_b, "B").start()

    producer = InputProducer(broker.bootstrap)
    done = threading.Event()

    def produce():
        budget, start = 12.0, time.monotonic()
        for i, ev in enumerate(events):
            producer.send(clicks, ev["customer_id"], encode_click(ev))
            lag = start + budget * (i + 1) / len(events) - time.monotonic()
            if lag > 0:
                time.sleep(lag)
        producer.flush(60)
        done.set()

    t = threading.Thread(target=produce, daemon=True)
    t.start()
    kills, skipped = 0, 0
    while not done.is_set() or kills < 3:
        if not b.alive():
            b.start()
        wait_until(lambda: b.metrics().value("tact_insights_events_consumed_total") > 0, 30, 0.05,
                   lambda: f"B consumes nothing:\n{b.diagnostics()}")
        time.sleep(rng.uniform(0.2, 1.5))
        skipped += b.metrics().value("tact_insights_events_skipped_total")
        b.kill()
        kills += 1
        if kills >= 8:
            break
    t.join(60)
    assert done.is_set()
    # one more crash around the moment the window closes (before, during or after its findings
    # are written to the outbox and produced)
    b.start()
    send_flush(broker.bootstrap, clicks, tag, window)
    time.sleep(rng.uniform(0.0, 0.6))
    b.kill()
    kills += 1
    b.start()

    # (the window may have closed in an earlier incarnation of B: wait for the output, not a metric)
    fa = read_insights(broker.bootstrap, out_a, len(EXPECTED))
    fb = read_insights(broker.bootstrap, out_b, len(EXPECTED))
    for lane in (a, b):
        wait_until(lambda lane=lane: lane.metrics().value("tact_insights_outbox_pending") == 0, 60, 0.3,
                   lambda lane=lane: f"{lane.name} keeps findings unacknowledged:\n{lane.diagnostics()}")
    assert_expected(fa, window, "A (straight)")
    assert_expected(fb, window, f"B (killed {kills}x)")
    assert_nothing_person_level(fb, events)
    by_a = {f["finding_id"]: f for _, f in fa}
    for _, f in fb:
        assert f == by_a[f["finding_id"]], f"B re-sent {f['finding_id']} with different content:\n{f}\nvs\n{by_a[f['finding_id']]}"
    dups = sum(n - 1 for n in Counter(f["finding_id"] for _, f in fb).values())
    print(f"B killed {kills}x, {b.starts} starts; replayed (skipped) input seen before kills: {skipped}; "
          f"re-sent duplicates: {dups}")
    ends = producer.end_offsets(clicks)
    wait_until(lambda: all(committed_offsets(broker.bootstrap, b.group_id, clicks, range(PARTITIONS)).get(p, -1)
                           >= ends.get(p, 0) for p in range(PARTITIONS)), 60, 0.3,
               lambda: f"B did not commit its input: {committed_offsets(broker.bootstrap, b.group_id, clicks, range(PARTITIONS))} vs {ends}")
    assert a.stop() == 0 and b.stop() == 0


def test_one_lane_or_three_publish_the_same_findings_even_when_one_of_the_three_is_killed(lanes, broker):
    """Findings are k-thresholded over every partition's sessions: each partition's share of a
    window goes to the partition that merges it, so three lanes sharing the partitions (one of
    them killed mid-stream, its partitions restored by the others) publish what one lane does."""
    tag = unique("insmulti")
    events, window = generate(tag, random.Random(SEED + 2))
    clicks = f"{tag}-clickstream"
    out_a, out_b = f"{tag}-insights-A", f"{tag}-insights-B"
    broker.create_topics([clicks] + [f"{o}{x}" for o in (out_a, out_b) for x in ("", "-partials", "-changelog")],
                         partitions=PARTITIONS)
    a = lanes(clicks, out_a, "A").start()
    group = unique("insights-B")
    bs = [lanes(clicks, out_b, f"B{i}", group).start() for i in (1, 2, 3)]
    wait_until(lambda: all(b.metrics().value("tact_insights_partitions_assigned") == 1
                           and b.metrics().value("tact_insights_partitions_restoring") == 0 for b in bs), 90, 0.3,
               lambda: "partitions: " + ", ".join(
                   f"{b.name}={b.metrics().value('tact_insights_partitions_assigned')}" for b in bs))
    producer = InputProducer(broker.bootstrap)
    done = threading.Event()

    def produce():
        start = time.monotonic()
        for i, ev in enumerate(events):
            producer.send(clicks, ev["customer_id"], encode_click(ev))
            lag = start + 15.0 * (i + 1) / len(events) - time.monotonic()
            if lag > 0:
                time.sleep(lag)
        producer.flush(60)
        done.set()

    t = threading.Thread(target=produce, daemon=True)
    t.start()
    consumed = lambda: sum(b.metrics().value("tact_insights_events_consumed_total", topic="clickstream")  # noqa: E731
                           for b in bs if b.alive())
    wait_until(lambda: consumed() >= len(events) / 3, 60, 0.2, lambda: f"the group consumed {consumed()}")
    bs[1].kill()  # never restarted: B1 and B3 restore its partition from the changelog
    t.join(60)
    assert done.is_set()
    send_flush(broker.bootstrap, clicks, tag, window)
    fa = read_insights(broker.bootstrap, out_a, len(EXPECTED))
    wait_until(lambda: len({f["finding_id"] for _, f in read_insights(broker.bootstrap, out_b, 0, timeout=5)})
               >= len(EXPECTED), 120, 1, lambda: f"the group published too little:\n{bs[0].diagnostics()}")
    fb = read_insights(broker.bootstrap, out_b, len(EXPECTED))
    assert_expected(fa, window, "one lane")
    assert_expected(fb, window, "three lanes, one killed")
    assert_nothing_person_level(fb, events)
    by_a = {f["finding_id"]: f for _, f in fa}
    assert {f["finding_id"] for _, f in fb} == set(by_a)
    for _, f in fb:
        assert f == by_a[f["finding_id"]], f"the group's {f['finding_id']} differs:\n{f}\nvs\n{by_a[f['finding_id']]}"
    survivors = [b for b in bs if b.alive()]
    assert sum(b.metrics().value("tact_insights_partitions_assigned") for b in survivors) == PARTITIONS
    assert sum(b.metrics().value("tact_insights_restore_records_total") for b in survivors) > 0
    for p in [a, *survivors]:
        assert p.stop() == 0
