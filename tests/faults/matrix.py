#!/usr/bin/env python3
"""The fault matrix: the same shop's input through tact once straight and once per fault, each
faulty run compared with the straight one.

    python3 tests/faults/matrix.py --tact-bin <a build with --features failpoints> [--quick]
        [--only NAME,NAME] [--seed N] [--json FILE] [--keep]

Every scenario runs tact as its own process(es) against a real broker (tansu: in memory, or on
S3 for the broker restart), with real RocksDB state on disk, and reports per row:

  decisions  what the straight run decided (decisions + suppressed candidates)
  lost       ids the straight run has and this run does not
  extra      ids this run has and the straight run does not
  changed    ids this run sent with other content (or another key) than the straight run
  resent     identical copies sent again after a crash (allowed: the same id, downstream can tell)
  state      customers whose stored state (`tact inspect`) differs from the straight run's
  dead       dead letters: got / expected (each one at the exact topic, partition and offset)

A row passes when lost, extra, changed and state are 0, the dead letters are exactly the ones
expected, and the scenario's own check holds (a drain within its deadline, a crash point really
reached, ...). The exit code is 0 only if every row passes. `make faults` runs it in full;
`make test` runs `--quick` (fewer crashes, a smaller shop). tests/faults/README.md explains the
scenarios.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import random
import re
import resource
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent / "e2e"))

from harness import (  # noqa: E402
    Delivered,
    InputProducer,
    TactProcess,
    Tansu,
    _kill_tree,
    _spawn,
    avro_datum,
    click,
    committed_offsets,
    confluent_frame,
    decode_records,
    encode_click,
    free_port,
    now_ms,
    read_topic,
    set_consent,
    tact_inspect,
    tail,
    topic_set,
    unique,
    wait_until,
)
from workload import generate, profile_commands  # noqa: E402

MIN = 60_000
PARTITIONS = 3
INPUTS = ("clickstream", "profile_commands", "catalog")
OUTPUTS = ("decisions", "suppressed", "dead_letter", "erasure_receipts", "changelog")
YEAR_2150 = 5_680_281_600_000
WORKDIR = Path(tempfile.gettempdir())  # the run's work directory, once main has made it
# The crash points of a `--features failpoints` build (crates/tact-edge/src/failpoint.rs), each
# with how many passes to let by before crashing: (quick, full) ranges. Batch-level points pass a
# few dozen times over the input, a delivery once per record sent.
CRASH_POINTS = {
    "edge::after_store_commit": (2, 12),
    "edge::after_send": (2, 12),
    "edge::after_delivery": (20, 400),
    "edge::after_outbox_delete": (1, 4),
    "edge::before_offset_commit": (1, 4),
    "edge::after_offset_commit": (1, 4),
}


# --------------------------------------------------------------------------------------------
# what a run produced, and how it differs from the straight run
# --------------------------------------------------------------------------------------------


@dataclass
class Outcome:
    decisions: list[tuple[bytes | None, dict]]  # (key, datum) of decisions and suppressed candidates
    dead_letters: list[dict]
    states: dict[str, dict | None]


@dataclass
class Row:
    name: str
    decisions: int = 0
    lost: int = 0
    extra: int = 0
    changed: int = 0
    resent: int = 0
    state: int = 0
    dead_got: int = 0
    dead_want: int = 0
    dead_ok: bool = True
    checks: list[str] = field(default_factory=list)  # failed scenario checks
    notes: list[str] = field(default_factory=list)
    skipped: str = ""
    known: str = ""  # a known issue this row shows: reported, not failing the run
    seconds: float = 0.0
    examples: list[str] = field(default_factory=list)

    @property
    def clean(self) -> bool:
        return self.lost == self.extra == self.changed == self.state == 0 and self.dead_ok and not self.checks

    @property
    def passed(self) -> bool:
        return bool(self.skipped) or self.clean or bool(self.known)


def ident(d: dict) -> str:
    return d.get("decision_id") or d["candidate_id"]


def compare(row: Row, ref: Outcome, got: Outcome, exclude: set[str]) -> None:
    """Fills the difference columns of ``row``; customers in ``exclude`` are left out (the
    scenario changed their own input on purpose)."""
    ref_by_id = {ident(d): (k, d) for k, d in ref.decisions if d["customer_id"] not in exclude}
    mine = [(k, d) for k, d in got.decisions if d["customer_id"] not in exclude]
    seen: dict[str, int] = {}
    for k, d in mine:
        i = ident(d)
        seen[i] = seen.get(i, 0) + 1
        if i in ref_by_id and ref_by_id[i] != (k, d):
            row.changed += 1
            row.examples.append(f"changed {i}: straight {ref_by_id[i][1]} / here {d}")
    row.decisions = len(ref_by_id)
    lost = set(ref_by_id) - set(seen)
    extra = set(seen) - set(ref_by_id)
    row.lost, row.extra = len(lost), len(extra)
    row.resent = sum(n - 1 for n in seen.values())
    row.examples += [f"lost {ref_by_id[i][1]}" for i in sorted(lost)[:2]]
    row.examples += [f"extra {d}" for _, d in mine if ident(d) in extra][:2]
    for cid, state in ref.states.items():
        if cid in exclude:
            continue
        if got.states.get(cid) != state:
            row.state += 1
            if row.state <= 2:
                row.examples.append(f"state of {cid}: {state_difference(state, got.states.get(cid))}")


def state_difference(straight: dict | None, here: dict | None) -> str:
    """The fields of a customer's state that differ, both ways round (a whole state is too long
    to read in a CI log)."""
    if straight is None or here is None:
        return f"straight {straight} / here {here}"
    keys = sorted(set(straight) | set(here))
    return "; ".join(f"{k}: straight {straight.get(k)} / here {here.get(k)}"
                     for k in keys if straight.get(k) != here.get(k))


# --------------------------------------------------------------------------------------------
# brokers
# --------------------------------------------------------------------------------------------


class S3Tansu(Tansu):
    """tansu storing its log in S3 (a local moto server), so a broker restart keeps the data;
    restarts come back on the same port, as a real broker's address would."""

    def __init__(self, workdir: Path):
        super().__init__(workdir)
        self.moto: subprocess.Popen | None = None
        self.s3_port = 0

    def start(self, timeout: float = 30) -> "S3Tansu":
        import boto3  # from moto's requirements

        self.s3_port = free_port()
        self.moto = _spawn([sys.executable, "-m", "moto.server", "-p", str(self.s3_port)],
                           self.workdir / "moto.log")
        endpoint = f"http://127.0.0.1:{self.s3_port}"
        s3 = boto3.client("s3", endpoint_url=endpoint, aws_access_key_id="faults", aws_secret_access_key="faults",
                          region_name="eu-west-2")

        def bucket() -> bool:
            s3.create_bucket(Bucket="tansu", CreateBucketConfiguration={"LocationConstraint": "eu-west-2"})
            return True

        wait_until(lambda: _quietly(bucket), 30, 0.2, lambda: f"moto does not start:\n{tail(self.workdir / 'moto.log')}")
        self.port = free_port()
        self._spawn_broker()
        self._wait_ready(timeout)
        return self

    def _spawn_broker(self) -> None:
        from harness import tansu_binary

        url = f"tcp://127.0.0.1:{self.port}"
        env = {**os.environ, "RUST_LOG": os.environ.get("TANSU_LOG", "warn"),
               "AWS_ACCESS_KEY_ID": "faults", "AWS_SECRET_ACCESS_KEY": "faults", "AWS_DEFAULT_REGION": "eu-west-2",
               "AWS_ENDPOINT": f"http://127.0.0.1:{self.s3_port}", "AWS_ALLOW_HTTP": "true"}
        self.proc = _spawn([tansu_binary(), "broker", "--listener-url", url, "--advertised-listener-url", url,
                            "--storage-engine", "s3://tansu/"], self.log_path, env=env)

    def restart(self, down_for: float) -> None:
        """kill -9 the broker, wait, start it again on the same port."""
        _kill_tree(self.proc, signal.SIGKILL)
        self.proc.wait(10)
        time.sleep(down_for)
        self._spawn_broker()
        self._wait_ready(60)

    def stop(self) -> None:
        super().stop()
        if self.moto is not None and self.moto.poll() is None:
            _kill_tree(self.moto, signal.SIGKILL)
            self.moto.wait(10)


def _quietly(f: Callable[[], bool]) -> bool:
    try:
        return f()
    except Exception:  # noqa: BLE001
        return False


# --------------------------------------------------------------------------------------------
# input
# --------------------------------------------------------------------------------------------


@dataclass
class Input:
    """One set of input topics on one broker, and what is in them."""

    broker: Tansu
    topics: dict[str, str]
    ends: dict[str, dict[int, int]]
    dead_want: set[tuple[str, int, int]] = field(default_factory=set)  # (topic, partition, offset)
    duplicates: int = 0


@dataclass
class Shop:
    customers: list[str]
    commands: list[dict]
    events: list[dict]


def produce(broker: Tansu, prefix: str, shop: Shop, clicks: list[tuple[str, bytes | None, str | None]],
            extra_commands: list[tuple[str, bytes]] = ()) -> Input:
    """Writes the commands (valid ones, then ``extra_commands``: (key, raw value)) and the
    ``clicks`` ((key, value, poison class or None)) to fresh input topics."""
    names = topic_set(prefix)
    topics = {k: names[k] for k in INPUTS}
    broker.create_topics(topics.values(), partitions=PARTITIONS)
    producer = InputProducer(broker.bootstrap)
    producer.send_commands(topics["profile_commands"], shop.commands, fmt="json")
    for key, value in extra_commands:
        producer.send(topics["profile_commands"], key, value)
    for key, value, _ in clicks:
        producer.send(topics["clickstream"], key, value)
    delivered = producer.flush(120)
    inp = Input(broker, topics, {t: producer.end_offsets(topics[t]) for t in ("clickstream", "profile_commands")})
    # where everything landed, for a look at a failed row (the work directory keeps it); 600
    # bytes hold a click's event time and a command's body (80 cut the event time off)
    with open(WORKDIR / f"{prefix}-input.txt", "a") as f:
        for d in delivered:
            f.write(f"{d.topic} {d.partition} {d.offset} {d.key!r} {d.value[:600]!r}\n")
    # where each poison record landed (the producer keeps order per partition; match key and value)
    pool: dict[tuple[str, bytes | None, bytes | None], list[Delivered]] = {}
    for d in delivered:
        pool.setdefault((d.topic, d.key, d.value), []).append(d)
    poison = [(topics["clickstream"], k, v) for k, v, cls in clicks if cls] + \
             [(topics["profile_commands"], k, v) for k, v in extra_commands]
    for topic, k, v in poison:
        d = pool[(topic, k.encode() if isinstance(k, str) else k, v)].pop(0)
        inp.dead_want.add((d.topic, d.partition, d.offset))
    return inp


def clean_clicks(shop: Shop) -> list[tuple[str, bytes, None]]:
    return [(e["customer_id"], encode_click(e), None) for e in shop.events]


def poisoned_clicks(shop: Shop, rng: random.Random) -> list[tuple[str, bytes | None, str | None]]:
    """The clean clicks with one record of each poison class at random places, keyed by a real
    customer (so it sits in a partition among their events)."""
    sample = shop.events[len(shop.events) // 2]
    good = encode_click(sample)
    datum = avro_datum("ClickEvent", sample)
    poison = [
        ("EMPTY", b""),
        ("TRUNCATED", good[: 5 + (len(good) - 5) // 2]),
        ("MALFORMED", good + b"\x01\x02\x03"),  # a whole event and bytes after it
        ("MALFORMED", confluent_frame(b"\x08\xff\xfe\xfd\xfc" + datum[1 + len(sample["event_id"]):])),  # not UTF-8
        ("WRONG_SCHEMA", encode_click(sample, "avro_single_object")),  # the other framing
        ("WRONG_SCHEMA", b"hello, not avro"),
        ("INVALID_FIELD", encode_click({**sample, "event_id": "", "customer_id": sample["customer_id"]})),
        ("INVALID_FIELD", encode_click({**sample, "event_id": sample["event_id"] + "-1970", "event_time": 17})),
    ]
    out = clean_clicks(shop)
    for cls, value in poison:
        at = rng.randrange(len(out) + 1)
        out.insert(at, (rng.choice(shop.customers), value, cls))
    return out


def oversized_clicks(shop: Shop, rng: random.Random) -> list[tuple[str, bytes | None, str | None]]:
    """Records that fit no dead letter whole: one over the input limit (1 MiB), one under it but
    over the producer's default message.max.bytes (1,000,000)."""
    out = clean_clicks(shop)
    big = [("OVERSIZED", b"\x00\x00\x00\x00\x01" + bytes(range(256)) * 4_400),
           ("TRUNCATED", b"\x00\x00\x00\x00\x01" + bytes([0xFF]) * 1_010_000)]
    for cls, value in big:
        out.insert(rng.randrange(len(out) + 1), (rng.choice(shop.customers), value, cls))
    return out


def duplicated_clicks(shop: Shop, rng: random.Random) -> tuple[list[tuple[str, bytes, None]], int]:
    """A retrying producer: about one event in eight sent again (up to three times), a few
    records later, at offsets of their own."""
    out: list[tuple[str, bytes, None]] = []
    later: list[tuple[int, tuple[str, bytes, None]]] = []
    copies = 0
    for i, (k, v, _) in enumerate(clean_clicks(shop)):
        out.append((k, v, None))
        while later and later[0][0] <= i:
            out.append(later.pop(0)[1])
        if rng.random() < 0.125:
            for _ in range(rng.randint(1, 3)):
                later.append((i + rng.randint(0, 6), (k, v, None)))
                copies += 1
            later.sort(key=lambda x: x[0])
    out += [x for _, x in later]
    return out, copies


def reordered_clicks(shop: Shop, rng: random.Random) -> list[tuple[str, bytes, None]]:
    """Late arrivals: one event in six arrives up to two seconds (of event time) after events
    of other customers that happened later. Each customer's own events stay in order (they are at
    least three seconds apart), so each customer's outcome must not change."""
    events = shop.events
    delays = [rng.randint(1, 2_000) if rng.random() < 1 / 6 else 0 for _ in events]

    def arrival(delays: list[int]) -> list[tuple[int, int, dict]]:
        return sorted(((e["event_time"] + d, n, e) for n, (e, d) in enumerate(zip(events, delays))),
                      key=lambda x: (x[0], x[1]))

    keyed = arrival(delays)
    if all(i == n for i, (_, n, _) in enumerate(keyed)):
        # A sparse shop (the quick matrix's few customers) can have no two customers' events
        # within the delays drawn: make the closest such pair arrive the other way round.
        gap, n = min((b["event_time"] - a["event_time"], n) for n, (a, b) in enumerate(zip(events, events[1:]))
                     if a["customer_id"] != b["customer_id"])
        delays[n] = gap + 1
        keyed = arrival(delays)
    assert any(i != n for i, (_, n, _) in enumerate(keyed)), "nothing arrives late"
    last: dict[str, int] = {}
    for _, n, e in keyed:  # each customer's own order kept
        assert last.get(e["customer_id"], -1) < n, f"{e['customer_id']}'s own events would be reordered"
        last[e["customer_id"]] = n
    return [(e["customer_id"], encode_click(e), None) for _, _, e in keyed]


def forged_clicks(shop: Shop, t0: int, forger: str, kind: str) -> tuple[list[tuple[str, bytes, None]], list[dict]]:
    """One customer whose timestamps lie, among everyone else's clicks as they arrive: stamped
    2150 (three events a third of the way in), or from a device that runs a day ahead (forty
    events over the whole stream, each stamped 24 h after it happened). They consented."""
    cmds = [set_consent(forger, t0 - 60 * MIN, command_id=f"{forger}-consent")]
    times = [e["event_time"] for e in shop.events]  # sorted: the order they arrive in
    arrivals = [(e["event_time"], e) for e in shop.events]
    if kind == "day":
        for i in range(40):
            happened = times[len(times) * i // 40] + 1
            arrivals.append((happened, click(forger, f"{forger}-s{i // 10}", happened + 24 * 60 * MIN, "PRODUCT_VIEW",
                                             category="toys", product_id="toy-1", event_id=f"{forger}-{i}")))
    arrivals.sort(key=lambda x: (x[0], x[1]["event_id"]))
    events = [e for _, e in arrivals]
    if kind == "2150":
        mid = len(events) // 3
        events[mid:mid] = [click(forger, f"{forger}-s1", YEAR_2150 + i * MIN, "PAGE_VIEW", page="/",
                                 event_id=f"{forger}-{i}") for i in range(3)]
    return [(e["customer_id"], encode_click(e), None) for e in events], cmds


# --------------------------------------------------------------------------------------------
# runs
# --------------------------------------------------------------------------------------------


class Matrix:
    def __init__(self, args: argparse.Namespace, workdir: Path):
        self.args = args
        self.quick = args.quick
        self.workdir = workdir
        self.tact_bin = Path(args.tact_bin)
        self.rng = random.Random(args.seed)
        self.broker = Tansu(workdir / "tansu").start()
        self.extra_brokers: list[Tansu] = []
        tag = unique("fm")
        self.shop = Shop(*generate(tag, self.rng, now_ms(), 8 if self.quick else 20))
        # Commands in the order they were issued, as the service that writes them would send
        # them (grouped by customer, a late command would queue behind another customer's).
        self.shop.commands = sorted(self.shop.commands + profile_commands(self.shop.customers, self.shop.events,
                                                                          self.rng), key=lambda c: c["issued_at"])
        self.tag = tag
        self.t0 = min(e["event_time"] for e in self.shop.events)
        self.clean = produce(self.broker, "fm-clean", self.shop, clean_clicks(self.shop))
        self.reference: Outcome | None = None
        self.runs = 0

    def close(self) -> None:
        for b in [self.broker, *self.extra_brokers]:
            with contextlib.suppress(Exception):
                b.stop()

    # ---- one tact process (or several in one group) over one input
    def process(self, name: str, inp: Input, *, overrides: dict | None = None, group: str | None = None,
                state_dir: Path | None = None, outputs: dict[str, str] | None = None) -> TactProcess:
        self.runs += 1
        name = re.sub(r"[^a-z0-9]+", "-", name.lower()).strip("-")
        if outputs is None:
            out = topic_set(f"fm-{self.runs}")
            outputs = {k: out[k] for k in OUTPUTS}
            inp.broker.create_topics(outputs.values(), partitions=PARTITIONS)
        cfg = {
            # Event time only (no wall-clock timers while the input is idle), small batches so
            # crashes land between many commits, and a long interleave wait (the default is
            # 50 ms): after a restart, a lane whose first fetch is slow holds the other back
            # rather than letting clicks overtake the commands before them.
            "pipeline": {"batch_max_events": 100, "batch_max_wait_ms": 50, "idle_timer_wall_clock_ms": 0},
            "input": {"interleave_wait_ms": 3_000},
        }
        for k, v in (overrides or {}).items():
            cfg.setdefault(k, {}).update(v)
        return TactProcess(self.workdir / name, inp.broker.bootstrap, {**inp.topics, **outputs},
                           group_id=group or unique(f"fm-{name}"), overrides=cfg, name=name,
                           tact_bin=self.tact_bin, state_dir=state_dir)

    def done(self, procs: list[TactProcess], inp: Input) -> bool:
        """Every input record committed by the group, nothing held back or unacknowledged."""
        group = procs[0].group_id
        for logical, ends in inp.ends.items():
            got = committed_offsets(inp.broker.bootstrap, group, inp.topics[logical], range(PARTITIONS))
            if any(got.get(p, -1) < n for p, n in ends.items()):
                return False
        for p in procs:
            if p.alive():
                m = p.metrics()
                if not m.has("tact_outbox_pending") or m.value("tact_outbox_pending") > 0 \
                        or m.value("tact_interleave_held") > 0:
                    return False
        return True

    def finish(self, procs: list[TactProcess], inp: Input, row: Row, timeout: float = 240,
               hold: Callable[[], bool] = lambda: True) -> None:
        """Let the run complete: (re)start what is down, wait for everything (and ``hold``),
        SIGTERM each."""
        for p in procs:
            p.env.pop("FAILPOINTS", None)
            if not p.alive():
                p.start(wait_ready=False)
        wait_until(lambda: self.done(procs, inp) and hold(), timeout, 0.3,
                   lambda: "; ".join(p.diagnostics() for p in procs))
        for p in procs:
            code = p.stop()
            if code != 0:
                row.checks.append(f"{p.name} exited {code} on SIGTERM after finishing")

    def outcome(self, procs: list[TactProcess], inp: Input, outputs: dict[str, str]) -> Outcome:
        bootstrap = inp.broker.bootstrap
        recs = []
        for topic, schema in (("decisions", "Decision"), ("suppressed", "SuppressedCandidate")):
            recs += [(r.key, d) for r, d in decode_records(schema, read_topic(bootstrap, outputs[topic], timeout=60))]
        dead = [d for _, d in decode_records("DeadLetter", read_topic(bootstrap, outputs["dead_letter"], timeout=30))]
        customers = list(self.shop.customers)

        def state(cid: str) -> dict | None:
            held = [s for s in (tact_inspect(p.state_dir, cid, tact_bin=self.tact_bin) for p in procs) if s is not None]
            if len(held) > 1:  # a revoked partition's data must leave the instance that lost it
                return {"held by several instances": held}
            return held[0] if held else None

        with ThreadPoolExecutor(4) as pool:
            states = dict(zip(customers, pool.map(state, customers)))
        return Outcome(recs, dead, states)

    def settle(self, row: Row, procs: list[TactProcess], inp: Input, exclude: set[str] = frozenset(),
               reference: Outcome | None = None) -> None:
        outputs = {k: procs[0].topics[k] for k in OUTPUTS}
        got = self.outcome(procs, inp, outputs)
        if self.reference is None:  # this is the straight run
            self.reference = got
            row.decisions, row.dead_got, row.dead_ok = len(got.decisions), len(got.dead_letters), not got.dead_letters
            if len(got.decisions) < 20:
                row.checks.append(f"the straight run decided too little to compare with ({len(got.decisions)})")
            return
        compare(row, reference or self.reference, got, exclude)
        where = {(d["source_topic"], d["source_partition"], d["source_offset"]) for d in got.dead_letters}
        row.dead_got, row.dead_want = len(got.dead_letters), len(inp.dead_want)
        row.dead_ok = where == inp.dead_want and len(got.dead_letters) == len(where)
        if not row.dead_ok:
            row.examples.append(f"dead letters at {sorted(where)}, expected {sorted(inp.dead_want)}")

    def wait_consuming(self, p: TactProcess, timeout: float = 60) -> bool:
        """Until this incarnation has applied some clicks; False if it has nothing left to do."""
        try:
            wait_until(lambda: p.alive() and p.metrics().value("tact_events_consumed_total", topic="clickstream") > 0,
                       timeout, 0.02, "")
            return True
        except TimeoutError:
            return False
        except Exception:  # noqa: BLE001 - died or not serving yet
            return False

    def committed_clicks(self, p: TactProcess, inp: Input) -> int:
        got = committed_offsets(inp.broker.bootstrap, p.group_id, inp.topics["clickstream"], range(PARTITIONS))
        return sum(max(v, 0) for v in got.values())

    def total_clicks(self, inp: Input) -> int:
        return sum(inp.ends["clickstream"].values())


# --------------------------------------------------------------------------------------------
# scenarios: each builds its run(s), injects its fault, finishes, and fills a row
# --------------------------------------------------------------------------------------------


def straight(m: Matrix, row: Row) -> None:
    """The reference: no fault (the first run), then the same again (must be identical)."""
    p = m.process(row.name, m.clean)
    p.start()
    m.finish([p], m.clean, row)
    m.settle(row, [p], m.clean)


def kill9_random(m: Matrix, row: Row) -> None:
    p = m.process(row.name, m.clean)
    want = 3 if m.quick else 8
    kills = mid = 0
    p.start()
    while kills < want:
        if not p.alive():
            p.start(wait_ready=False)
        if not m.wait_consuming(p):
            break
        time.sleep(m.rng.choice([m.rng.uniform(0, 0.2), m.rng.uniform(0, 1.0)]))
        if not p.alive():
            continue
        p.kill()
        kills += 1
        mid += m.committed_clicks(p, m.clean) < m.total_clicks(m.clean)
    row.notes.append(f"{kills} kills, {mid} before all input was committed")
    if mid == 0:
        row.checks.append("no kill landed before the input was done")
    m.finish([p], m.clean, row)
    m.settle(row, [p], m.clean)


def crash_point(point: str) -> Callable[[Matrix, Row], None]:
    def scenario(m: Matrix, row: Row) -> None:
        lo_hi = CRASH_POINTS[point]
        p = m.process(row.name, m.clean)
        crashes = []
        for _ in range(1 if m.quick else 3):
            lo, hi = lo_hi
            n = m.rng.randint(lo, 2 * lo if m.quick else hi)
            p.env["FAILPOINTS"] = f"{point}={n}*off->return"
            p.start(wait_ready=False)
            try:
                wait_until(lambda: not p.alive() or _quietly(lambda: m.done([p], m.clean)), 120, 0.1, "")
            except TimeoutError:
                pass
            if p.alive():
                break  # everything done before the point was passed n times
            crashes.append((n, p.proc.returncode))
            p.exit_codes.append(p.proc.returncode)
        reached = [c for c in crashes if c[1] == -signal.SIGABRT]
        row.notes.append(f"crashed at passes {[n for n, _ in reached]}")
        if not reached:
            row.checks.append(f"{point} was never reached")
        if any(c[1] != -signal.SIGABRT for c in crashes):
            row.checks.append(f"exited otherwise than at the crash point: {crashes}")
        if p.alive():
            p.env.pop("FAILPOINTS", None)
        m.finish([p], m.clean, row)
        m.settle(row, [p], m.clean)

    scenario.__doc__ = f"kill at the crash point {point}"
    return scenario


def lost_disk_and_crashed_restore(m: Matrix, row: Row) -> None:
    """kill -9 mid-stream, the state directory is lost (a new disk), the restore from the
    changelog is itself killed after its first chunk, then it restores again and finishes."""
    p = m.process(row.name, m.clean)
    p.start()
    m.wait_consuming(p)
    time.sleep(m.rng.uniform(0.1, 0.5))
    p.kill()
    shutil.rmtree(p.state_dir)
    p.env["FAILPOINTS"] = "edge::after_restore_chunk=return"
    p.start(wait_ready=False)
    try:
        wait_until(lambda: not p.alive(), 60, 0.1, "")
        code = p.proc.returncode
        p.exit_codes.append(code)
        if code != -signal.SIGABRT:
            row.checks.append(f"the restore did not stop at its crash point (exit {code})")
    except TimeoutError:
        row.checks.append("the restore never reached its crash point")
    row.notes.append("state dir wiped, restore killed")
    m.finish([p], m.clean, row)
    m.settle(row, [p], m.clean)


def rebalance_and_kill(m: Matrix, row: Row) -> None:
    """Two instances in one group: the second joins mid-stream (partitions move with their state
    through the changelog), the first is killed, then comes back."""
    group = unique("fm-group")
    a = m.process(row.name + "-1", m.clean, group=group)
    out = {k: a.topics[k] for k in OUTPUTS}
    b = m.process(row.name + "-2", m.clean, group=group, outputs=out)
    a.start()
    m.wait_consuming(a)
    b.start(wait_ready=False)
    time.sleep(m.rng.uniform(1.0, 3.0))
    a.kill()
    time.sleep(m.rng.uniform(1.0, 3.0))
    m.finish([a, b], m.clean, row, hold=lambda: orphans_settled(a))
    row.notes.append("joined, killed, rejoined")
    m.settle(row, [a, b], m.clean)


def orphans_settled(p: TactProcess) -> bool:
    """Whether the data a restarted instance held of partitions the group gave elsewhere has
    left its store: 30 s after its first assignment (`orphan_grace`,
    crates/tact-runtime/src/service.rs), which may come seconds after its start, so a wall-clock
    wait from the restart raced it. Read from its log since its last start."""
    log = p.log_path.read_text(errors="replace").rsplit("===== ", 1)[-1]
    held = re.search(r"the store holds data of these partitions.*partitions=\[([0-9, ]*)\]", log)
    if held is None:
        return True
    orphans = {int(x) for x in held.group(1).split(",") if x.strip()}
    for assigned in re.findall(r"partitions assigned;.*partitions=\[([0-9, ]*)\]", log):
        orphans -= {int(x) for x in assigned.split(",") if x.strip()}
    return not orphans or "dropping the data of partitions the group gave to other instances" in log


def broker_freeze(m: Matrix, row: Row) -> None:
    p = m.process(row.name, m.clean)
    p.start()
    m.wait_consuming(p)
    frozen = 4 if m.quick else 15
    os.kill(m.broker.proc.pid, signal.SIGSTOP)
    try:
        time.sleep(frozen)
    finally:
        os.kill(m.broker.proc.pid, signal.SIGCONT)
    row.notes.append(f"broker frozen {frozen} s")
    m.finish([p], m.clean, row)
    m.settle(row, [p], m.clean)


def broker_restart(m: Matrix, row: Row) -> None:
    """kill -9 of the broker (its log on S3 survives), mid-stream, twice."""
    broker = S3Tansu(m.workdir / "tansu-s3")
    m.extra_brokers.append(broker)
    broker.start()
    inp = produce(broker, "fm-s3", m.shop, clean_clicks(m.shop))
    p = m.process(row.name, inp)
    p.start()
    restarts = 0
    for _ in range(1 if m.quick else 2):
        if not m.wait_consuming(p):
            break
        time.sleep(m.rng.uniform(0.2, 1.0))
        broker.restart(down_for=m.rng.uniform(1.0, 4.0))
        restarts += 1
    row.notes.append(f"broker restarted {restarts}x")
    m.finish([p], inp, row)
    m.settle(row, [p], inp)


def disk_full(m: Matrix, row: Row) -> None:
    """The state directory's file system fills up mid-stream; space comes back; tact goes on
    (after a restart if it stopped)."""
    mnt = m.workdir / "disk-full-tmpfs"
    mnt.mkdir()
    res = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=96m", "tmpfs", str(mnt)], capture_output=True, text=True)
    if res.returncode != 0:
        row.skipped = f"cannot mount a tmpfs ({res.stderr.strip() or 'not root'})"
        return
    try:
        p = m.process(row.name, m.clean, state_dir=mnt / "state")
        p.start()
        m.wait_consuming(p)
        filler = mnt / "filler"
        with open(filler, "wb", buffering=0) as f:
            for chunk in (1 << 20, 4096, 1):  # down to the last byte
                with contextlib.suppress(OSError):
                    while True:
                        f.write(b"\0" * chunk)
        time.sleep(4)
        stopped = None if p.alive() else p.proc.returncode
        filler.unlink()
        row.notes.append("disk full 4 s: " + ("kept going" if stopped is None else f"stopped with exit {stopped}"))
        if stopped is not None:
            p.exit_codes.append(stopped)
        m.finish([p], m.clean, row)
        m.settle(row, [p], m.clean)
    finally:
        subprocess.run(["umount", "-l", str(mnt)], capture_output=True)


def sigterm_frozen_broker(m: Matrix, row: Row) -> None:
    deadline_ms = 3000
    p = m.process(row.name, m.clean, overrides={"pipeline": {"shutdown_deadline_ms": deadline_ms}})
    p.start()
    m.wait_consuming(p)
    time.sleep(m.rng.uniform(0, 0.3))
    os.kill(m.broker.proc.pid, signal.SIGSTOP)
    try:
        started = time.monotonic()
        p.proc.send_signal(signal.SIGTERM)
        try:
            p.proc.wait(deadline_ms / 1000 + 15)
        except subprocess.TimeoutExpired:
            p.kill()
        took = time.monotonic() - started
        code = p.proc.returncode
        p.exit_codes.append(code)
    finally:
        os.kill(m.broker.proc.pid, signal.SIGCONT)
    row.notes.append(f"stopped in {took:.1f} s with exit {code}")
    if took > deadline_ms / 1000 + 5 or code not in (0, 5):
        row.checks.append(f"SIGTERM with a frozen broker: exit {code} after {took:.1f} s (deadline {deadline_ms} ms)")
    m.finish([p], m.clean, row)
    m.settle(row, [p], m.clean)


def with_input(build: Callable[[Matrix], tuple[Input, set[str], str, Input | None]],
               check: Callable[[Matrix, TactProcess, Input, Row], None] | None = None):
    """A run over input of the scenario's own, compared with the straight run (or with a
    straight run over the reference input the scenario built)."""
    def scenario(m: Matrix, row: Row) -> None:
        inp, exclude, note, ref_inp = build(m)
        reference = None
        if ref_inp is not None:
            ref = m.process(row.name + "-reference", ref_inp)
            ref.start()
            m.finish([ref], ref_inp, row)
            reference = m.outcome([ref], ref_inp, {k: ref.topics[k] for k in OUTPUTS})
        p = m.process(row.name, inp)
        p.start()
        wait_until(lambda: m.done([p], inp), 240, 0.3, lambda: p.diagnostics())
        if check:
            check(m, p, inp, row)
        m.finish([p], inp, row)
        row.notes.append(note)
        m.settle(row, [p], inp, exclude, reference)

    return scenario


def build_poison(m: Matrix):
    clicks = poisoned_clicks(m.shop, m.rng)
    cmds = [(m.rng.choice(m.shop.customers), b'}{ "this is": not json ]'),
            (m.rng.choice(m.shop.customers), b"\x00\x01\x02\xff binary, not json")]
    inp = produce(m.broker, "fm-poison", m.shop, clicks, cmds)
    return inp, set(), f"{len(inp.dead_want)} poison records of 5 classes", None


def build_oversized(m: Matrix):
    inp = produce(m.broker, "fm-big", m.shop, oversized_clicks(m.shop, m.rng))
    return inp, set(), "1.05 MiB and 1.01 MB records", None


def build_duplicates(m: Matrix):
    clicks, copies = duplicated_clicks(m.shop, m.rng)
    inp = produce(m.broker, "fm-dup", m.shop, clicks)
    inp.duplicates = copies
    return inp, set(), f"{copies} copies", None


def check_duplicates(m: Matrix, p: TactProcess, inp: Input, row: Row) -> None:
    n = p.metrics().value("tact_duplicate_events_total")
    if n != inp.duplicates:
        row.checks.append(f"tact_duplicate_events_total = {n}, {inp.duplicates} copies sent")


def build_reordered(m: Matrix):
    return produce(m.broker, "fm-late", m.shop, reordered_clicks(m.shop, m.rng)), set(), "late by up to 2 s", None


def build_forged(kind: str):
    def build(m: Matrix):
        """The forger counts among the customers a partition's time is agreed by, so the time
        at which others' quiet timers fire may shift (to another honest customer's time, never
        the forger's), but not what they do: both runs end with every honest customer back
        three days later, which lets every pending timer fire; the outcomes must be equal."""
        forger = f"{m.tag}-forger-{kind}"
        clicks, cmds = forged_clicks(m.shop, m.t0, forger, kind)
        last = max(e["event_time"] for e in m.shop.events)
        back = [click(c, f"{c}-back", last + 3 * 24 * 60 * MIN + i, "PAGE_VIEW", page="/", event_id=f"{c}-back")
                for i, c in enumerate(m.shop.customers)]
        back_clicks = [(e["customer_id"], encode_click(e), None) for e in back]
        shop = Shop(m.shop.customers, sorted(cmds + m.shop.commands, key=lambda c: c["issued_at"]), m.shop.events)
        forged = produce(m.broker, f"fm-forged-{kind}", shop, clicks + back_clicks)
        reference = produce(m.broker, f"fm-forged-{kind}-ref", m.shop, clean_clicks(m.shop) + back_clicks)
        return forged, {forger}, {"2150": "three events stamped 2150", "day": "a device a day ahead"}[kind], reference

    return build


# Seen once in a CI run (of about ten): a cart nudge deferred through the quiet hours went out in
# the straight run and not in the one with duplicated input; tests/faults/README.md.
DUPLICATE_NUDGE = "known issue: a deferred cart nudge once differed with duplicated input"

SCENARIOS: list[tuple[str, Callable[[Matrix, Row], None], bool, str]] = [
    # (name, scenario, in --quick, known issue)
    ("straight", straight, True, ""),
    ("straight again", straight, True, ""),
    ("kill -9 at random", kill9_random, True, ""),
    *[(f"crash {pt.split('::')[1]}", crash_point(pt), True, "") for pt in CRASH_POINTS],
    ("disk lost + restore crashed", lost_disk_and_crashed_restore, True, ""),
    ("second instance + kill -9", rebalance_and_kill, True, ""),
    ("broker frozen", broker_freeze, True, ""),
    ("broker restarted", broker_restart, True, ""),
    ("disk full", disk_full, True, ""),
    ("SIGTERM + broker frozen", sigterm_frozen_broker, True, ""),
    ("poison of every class", with_input(build_poison), True, ""),
    ("oversized records", with_input(build_oversized), True, ""),
    ("duplicated input", with_input(build_duplicates, check_duplicates), True, DUPLICATE_NUDGE),
    ("reordered input", with_input(build_reordered), True, ""),
    ("forged: stamped 2150", with_input(build_forged("2150")), True, ""),
    ("forged: a day ahead", with_input(build_forged("day")), True, ""),
]


# --------------------------------------------------------------------------------------------
# the table
# --------------------------------------------------------------------------------------------


def table(rows: list[Row]) -> str:
    head = ["scenario", "decisions", "lost", "extra", "changed", "resent", "state", "dead", "result", "notes"]
    lines = []
    for r in rows:
        if r.skipped:
            lines.append([r.name, "", "", "", "", "", "", "", "skipped", r.skipped])
            continue
        result = "ok" if r.clean else "known" if r.known else "FAIL"
        lines.append([r.name, str(r.decisions), str(r.lost), str(r.extra), str(r.changed), str(r.resent),
                      str(r.state), f"{r.dead_got}/{r.dead_want}", result,
                      "; ".join(r.notes + r.checks + ([r.known] if r.known else [])) + f" ({r.seconds:.0f} s)"])
    widths = [max(len(x[i]) for x in [head, *lines]) for i in range(len(head) - 1)]
    fmt = lambda cells: "  ".join(c.ljust(w) for c, w in zip(cells, widths)) + "  " + cells[-1]  # noqa: E731
    return "\n".join([fmt(head), fmt(["-" * w for w in widths] + ["-----"]), *[fmt(x) for x in lines]])


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--tact-bin", required=True, help="a tact built with --features failpoints")
    ap.add_argument("--quick", action="store_true", help="the reduced form CI runs")
    ap.add_argument("--only", default="", help="comma-separated scenario names (the straight run always runs)")
    ap.add_argument("--seed", type=int, default=int(os.environ.get("TACT_FAULTS_SEED", "20261202")))
    ap.add_argument("--json", help="also write the rows here")
    ap.add_argument("--keep", action="store_true", help="keep the work directory (logs, state) for a look")
    args = ap.parse_args(argv)
    # The crash points abort(): no core files.
    resource.setrlimit(resource.RLIMIT_CORE, (0, 0))
    probe = subprocess.run([args.tact_bin, "--version"], capture_output=True, text=True,
                           env={**os.environ, "FAILPOINTS": ""})
    if "fault-injection build" not in probe.stderr:
        print(f"{args.tact_bin} has no crash points: build it with `cargo build -p tact --features failpoints`"
              " (make faults does)", file=sys.stderr)
        return 2
    only = {s.strip() for s in args.only.split(",") if s.strip()}
    unknown = only - {n for n, _, _, _ in SCENARIOS}
    if unknown:
        print(f"unknown scenarios {sorted(unknown)}; known: {[n for n, _, _, _ in SCENARIOS]}", file=sys.stderr)
        return 2
    global WORKDIR
    workdir = WORKDIR = Path(tempfile.mkdtemp(prefix="tact-faults-"))
    print(f"fault matrix, seed {args.seed}, {'quick' if args.quick else 'full'}; work dir {workdir}", flush=True)
    m = Matrix(args, workdir)
    print(f"input: {len(m.shop.customers)} customers, {len(m.shop.events)} clicks, {len(m.shop.commands)} commands,"
          f" {PARTITIONS} partitions", flush=True)
    rows: list[Row] = []
    try:
        for name, scenario, in_quick, known in SCENARIOS:
            if name != "straight" and ((only and name not in only) or (args.quick and not in_quick)):
                continue
            row = Row(name)
            started = time.monotonic()
            try:
                scenario(m, row)
            except Exception as exc:  # noqa: BLE001 - a scenario that breaks is a failed row
                row.checks.append(f"{type(exc).__name__}: {str(exc)[:1500]}")
            row.seconds = time.monotonic() - started
            if known and not row.clean:
                row.known = known
            rows.append(row)
            if m.reference is None:
                row.checks.append("no straight run to compare with: stopping")
            print(f"{'ok  ' if row.clean else 'KNOWN' if row.known else 'FAIL'} {name} ({row.seconds:.0f} s)"
                  + ("" if row.clean else "\n    " + "\n    ".join(x[:2000] for x in (row.checks + row.examples)[:6])), flush=True)
            if m.reference is None:
                break
    finally:
        m.close()
    print()
    print(table(rows))
    if args.json:
        Path(args.json).write_text(json.dumps([r.__dict__ | {"passed": r.passed} for r in rows], indent=2))
    failed = [r.name for r in rows if not r.passed]
    if failed:
        print(f"\n{len(failed)} scenario(s) failed: {failed}; logs and state in {workdir}")
        return 1
    if not args.keep:
        shutil.rmtree(workdir, ignore_errors=True)
    known = [r.name for r in rows if r.known]
    print(f"\nevery scenario: nothing lost, nothing extra, nothing changed, every state equal "
          f"({sum(r.seconds for r in rows):.0f} s)" + (f"; but for the known issue of {known}" if known else ""))
    return 0


if __name__ == "__main__":
    sys.exit(main())
