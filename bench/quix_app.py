#!/usr/bin/env python3
"""Quix Streams baseline for tact's first decision set (the benchmark peer).

Consumes Avro ClickEvents in Confluent framing (0x00 + 4-byte schema id + datum) from the
clickstream topic, keeps per-customer state in Quix's RocksDB state store (at-least-once),
and produces WELCOME_BACK and RECOMMENDATION decisions in Avro single-object encoding
(0xC3 0x01 + 8-byte little-endian CRC-64-AVRO fingerprint + datum) keyed by customer_id.

Policy (same as tact's defaults, everyone treated as personalisable, i.e. tact's
consent_regime = "opt_out" with no profile commands):
  * WELCOME_BACK (ON_SITE, plain: personalized=false, no items): the customer was seen before
    and the gap since their last event is >= --session-gap-minutes; at most once per session.
  * RECOMMENDATION (ON_SITE): a CATEGORY_VIEW/PRODUCT_VIEW brings the customer's view count of
    that category (across sessions) to >= --min-category-views; at most once per session per
    category; items = product ids viewed in that category, most recent first.

It stops by itself after consuming --events messages, commits, and prints one JSON line:
{"events": N, "decisions": D, "cpu_seconds": ..., ...} on stdout.
"""
from __future__ import annotations

import argparse
import copy
import hashlib
import json
import os
import resource
import sys
import time
from io import BytesIO
from pathlib import Path

from fastavro import parse_schema, schemaless_reader, schemaless_writer
from fastavro.schema import fingerprint, to_parsing_canonical_form
from quixstreams import Application
from quixstreams.models.serializers import Deserializer, SerializationContext
from quixstreams.models.serializers.exceptions import SerializationError

HERE = Path(__file__).resolve().parent
SCHEMAS = HERE.parent / "schemas"

VIEW_TYPES = frozenset(("CATEGORY_VIEW", "PRODUCT_VIEW"))
MAX_RECENT_ITEMS = 10
MAX_DECISION_ITEMS = 5


def _strip_logical_types(node):
    """Timestamps stay epoch millis (ints) instead of datetime objects; wire format unchanged."""
    if isinstance(node, dict):
        return {k: _strip_logical_types(v) for k, v in node.items() if k != "logicalType"}
    if isinstance(node, list):
        return [_strip_logical_types(v) for v in node]
    return node


def load_schema(name: str):
    raw = json.loads((SCHEMAS / name).read_text())
    canonical = to_parsing_canonical_form(parse_schema(copy.deepcopy(raw)))
    fp = bytes.fromhex(fingerprint(canonical, "CRC-64-AVRO"))  # already little-endian
    return parse_schema(_strip_logical_types(raw)), fp


class ConfluentAvroDeserializer(Deserializer):
    """0x00 + 4-byte big-endian schema id (any accepted) + Avro datum."""

    def __init__(self, schema):
        super().__init__()
        self._schema = schema

    def __call__(self, value: bytes, ctx: SerializationContext):
        if value is None or len(value) < 6 or value[0] != 0:
            raise SerializationError("not a Confluent-framed Avro record")
        buf = BytesIO(value)
        buf.seek(5)
        try:
            return schemaless_reader(buf, self._schema, None)
        except Exception as exc:  # noqa: BLE001 - any decode failure is a bad record
            raise SerializationError(str(exc)) from exc


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--events", type=int, required=True, help="stop after consuming this many messages")
    ap.add_argument("--mark-after", type=int, default=0,
                    help="after this many events, note CPU/wall time (and write --mark-file): the driver uses it "
                         "to measure only the events after a state prefill")
    ap.add_argument("--mark-file", default=None, help="JSON file written when --mark-after is reached")
    ap.add_argument("--bootstrap", default="127.0.0.1:9092")
    ap.add_argument("--group", default="quix-bench")
    ap.add_argument("--input-topic", default="clickstream")
    ap.add_argument("--output-topic", default="decisions")
    ap.add_argument("--state-dir", default="./quix-state")
    ap.add_argument("--use-changelog-topics", choices=("true", "false"), default="true",
                    help="Quix's changelog topics for state recovery (default true, as in production)")
    ap.add_argument("--processing-guarantee", choices=("at-least-once", "exactly-once"), default="at-least-once")
    ap.add_argument("--commit-interval", type=float, default=5.0, help="seconds (Quix default 5.0)")
    ap.add_argument("--session-gap-minutes", type=int, default=30)
    ap.add_argument("--min-category-views", type=int, default=3)
    ap.add_argument("--decision-ttl-minutes", type=int, default=30)
    ap.add_argument("--policy-version", default="default-1")
    ap.add_argument("--session-timeout-ms", type=int, default=None,
                    help="consumer session.timeout.ms (tansu delays a group join by about this much)")
    ap.add_argument("--loglevel", default="WARNING")
    args = ap.parse_args()

    wall_start = time.monotonic()

    click_schema, _ = load_schema("click_event.avsc")
    decision_schema, decision_fp = load_schema("decision.avsc")
    so_header = b"\xc3\x01" + decision_fp

    gap_ms = args.session_gap_minutes * 60_000
    ttl_ms = args.decision_ttl_minutes * 60_000
    min_views = args.min_category_views
    policy_version = args.policy_version

    counters = {"events": 0, "decisions": 0, "welcome_back": 0, "recommendation": 0}
    marks: dict[str, float] = {}

    def encode_decision(record: dict) -> bytes:
        buf = BytesIO()
        buf.write(so_header)
        schemaless_writer(buf, decision_schema, record)
        return buf.getvalue()

    def decision_id(cause_event_id: str, kind: str, extra: str = "") -> str:
        return hashlib.blake2b(f"{policy_version}|{kind}|{cause_event_id}|{extra}".encode(),
                               digest_size=16).hexdigest()

    def process(ev: dict, state) -> list[bytes]:
        """One event: read-modify-write the customer's state, return 0..n encoded decisions."""
        et = ev["event_time"]
        sid = ev["session_id"]
        cid = ev["customer_id"]
        out: list[bytes] = []
        st = state.get("c")
        if st is None:
            st = {"last": None, "sid": None, "wb": None, "views": {}, "recent": {}, "recd": []}
        elif st["last"] is not None and et - st["last"] >= gap_ms and st["wb"] != sid:
            st["wb"] = sid
            out.append(encode_decision({
                "decision_id": decision_id(ev["event_id"], "WELCOME_BACK"),
                "customer_id": cid, "session_id": sid,
                "kind": "WELCOME_BACK", "channel": "ON_SITE", "personalized": False,
                "items": [],
                "reasons": [{"code": "returning_visitor",
                             "detail": f"You were last here {(et - st['last']) // 60_000} minutes ago."}],
                "cause_event_id": ev["event_id"], "created_at": et, "expires_at": et + ttl_ms,
                "policy_version": policy_version,
            }))
            counters["welcome_back"] += 1
        if st["sid"] != sid:
            st["sid"] = sid
            st["recd"] = []
        cat = ev["category"]
        if ev["type"] in VIEW_TYPES and cat:
            n = st["views"].get(cat, 0) + 1
            st["views"][cat] = n
            pid = ev["product_id"]
            recent = st["recent"].get(cat, [])
            if ev["type"] == "PRODUCT_VIEW" and pid:
                recent = [pid] + [p for p in recent if p != pid][: MAX_RECENT_ITEMS - 1]
                st["recent"][cat] = recent
            if n >= min_views and cat not in st["recd"]:
                st["recd"].append(cat)
                out.append(encode_decision({
                    "decision_id": decision_id(ev["event_id"], "RECOMMENDATION", cat),
                    "customer_id": cid, "session_id": sid,
                    "kind": "RECOMMENDATION", "channel": "ON_SITE", "personalized": True,
                    "items": recent[:MAX_DECISION_ITEMS],
                    "reasons": [{"code": "category_interest",
                                 "detail": f"Because you viewed {n} times in {cat}."}],
                    "cause_event_id": ev["event_id"], "created_at": et, "expires_at": et + ttl_ms,
                    "policy_version": policy_version,
                }))
                counters["recommendation"] += 1
        st["last"] = et
        state.set("c", st)
        counters["decisions"] += len(out)
        return out

    target = args.events
    mark_after = args.mark_after

    def on_processed(topic: str, partition: int, offset: int) -> None:
        counters["events"] += 1
        n = counters["events"]
        if n == 1:
            marks["cpu_first"] = time.process_time()
            marks["wall_first"] = time.monotonic()
        if n == mark_after:
            marks["cpu_mark"] = time.process_time()
            marks["wall_mark"] = time.monotonic()
            marks["decisions_mark"] = counters["decisions"]
            if args.mark_file:
                tmp = args.mark_file + ".tmp"
                with open(tmp, "w") as f:
                    json.dump({"events": n, "cpu_seconds": marks["cpu_mark"]}, f)
                os.replace(tmp, args.mark_file)
        if n >= target:
            app.stop()

    use_changelogs = args.use_changelog_topics == "true"
    app = Application(
        broker_address=args.bootstrap,
        consumer_group=args.group,
        auto_offset_reset="earliest",
        processing_guarantee=args.processing_guarantee,
        commit_interval=args.commit_interval,
        state_dir=args.state_dir,
        use_changelog_topics=use_changelogs,
        on_message_processed=on_processed,
        consumer_extra_config=({"session.timeout.ms": args.session_timeout_ms}
                               if args.session_timeout_ms else None),
        loglevel=args.loglevel,
    )
    in_topic = app.topic(args.input_topic, value_deserializer=ConfluentAvroDeserializer(click_schema),
                         key_deserializer="bytes")
    out_topic = app.topic(args.output_topic, value_serializer="bytes", key_serializer="bytes")
    sdf = app.dataframe(in_topic)
    sdf = sdf.apply(process, stateful=True, expand=True)
    sdf.to_topic(out_topic)

    if target > 0:
        app.run()

    cpu_end = time.process_time()
    wall_end = time.monotonic()
    ru = resource.getrusage(resource.RUSAGE_SELF)
    vm_hwm_kb = None
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                vm_hwm_kb = int(line.split()[1])
    except OSError:
        pass
    result = {
        "impl": "quixstreams",
        "quixstreams_version": __import__("quixstreams").__version__,
        "events": counters["events"],
        "decisions": counters["decisions"],
        "welcome_back": counters["welcome_back"],
        "recommendation": counters["recommendation"],
        "cpu_seconds": round(ru.ru_utime + ru.ru_stime, 3),
        "cpu_seconds_user": round(ru.ru_utime, 3),
        "cpu_seconds_sys": round(ru.ru_stime, 3),
        # from the first consumed event to the end (excludes interpreter/import/rebalance start-up)
        "cpu_seconds_processing": round(cpu_end - marks.get("cpu_first", cpu_end), 3),
        # interpreter + imports + Kafka/RocksDB set-up + first rebalance
        "cpu_seconds_startup": round(marks.get("cpu_first", cpu_end), 3),
        "wall_seconds": round(wall_end - wall_start, 3),
        "wall_seconds_processing": round(wall_end - marks.get("wall_first", wall_end), 3),
        "peak_rss_kb": vm_hwm_kb if vm_hwm_kb is not None else ru.ru_maxrss,
        "use_changelog_topics": use_changelogs,
        **({"mark_after": mark_after,
            "cpu_seconds_after_mark": round(cpu_end - marks["cpu_mark"], 3),
            "wall_seconds_after_mark": round(wall_end - marks["wall_mark"], 3),
            "decisions_after_mark": counters["decisions"] - marks["decisions_mark"]}
           if "cpu_mark" in marks else {}),
        "processing_guarantee": args.processing_guarantee,
    }
    sys.stdout.write(json.dumps(result) + "\n")
    sys.stdout.flush()
    return 0 if counters["events"] >= target else 1


if __name__ == "__main__":
    sys.exit(main())
