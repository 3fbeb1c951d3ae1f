"""Erase, provably: a customer's erase command removes their state, emits a receipt that names the
request (not the person), and leaves no byte of the customer in tact's files; a later event starts
a fresh profile.

Runs against tansu and the tact binary as separate processes; the receipt is decoded with fastavro
against the shipped schemas/erasure_receipt.avsc.
"""

from __future__ import annotations

import hashlib
import io
import json
import uuid

import fastavro
import pytest

from harness import (REPO_ROOT, click, decode_single_object, files_containing, now_ms, read_topic, schema, set_consent,
                     tact_inspect, topic_set)

pytestmark = pytest.mark.timeout(240)

MIN = 60_000
ERASED = "erase-me-7f3e21c9"
KEPT = "keep-me-0b5d44aa"


def test_erase_removes_every_trace_emits_a_receipt_and_a_later_event_starts_afresh(tact, broker, producer):
    topics = topic_set("erase")
    broker.create_topics(topics.values(), partitions=1)
    # Plain files: the proof searches them for the customer's bytes (LZ4 could hide them).
    p = tact(topics, overrides={"state": {"compression": "none"}}).start()
    t0 = now_ms() - 3 * 60 * MIN
    commands = [set_consent(c, t0) for c in (ERASED, KEPT)]
    producer.send_commands(topics["profile_commands"], commands)
    producer.flush()
    p.wait_metric("tact_events_consumed_total", len(commands), topic="profile_commands")
    clicks = []
    for c in (ERASED, KEPT):
        for i in range(4):
            clicks.append(click(c, f"{c}-s1", t0 + i * MIN, "PRODUCT_VIEW", category="shoes",
                                product_id=f"shoe-{c}-{i}"))
    producer.send_clicks(topics["clickstream"], clicks)
    producer.flush()
    p.wait_idle({"clickstream": len(clicks), "profile_commands": len(commands)})

    # A producer that builds command ids from the customer id: the id must not keep the person
    # in the receipt, nor in tact's files after the purge.
    erase_id = f"erase-{ERASED}-{uuid.uuid4().hex[:8]}"
    command_ref = "sha256:" + hashlib.sha256(erase_id.encode()).hexdigest()
    erase = {"command_id": erase_id, "customer_id": ERASED, "issued_at": t0 + 10 * MIN,
             "command": ("Erase", {"request_ref": "dsr-42"})}
    producer.send_commands(topics["profile_commands"], [erase])
    producer.flush()
    p.wait_idle({"clickstream": len(clicks), "profile_commands": len(commands) + 1})

    receipts = read_topic(broker.bootstrap, topics["erasure_receipts"], min_count=1, timeout=30)
    assert len(receipts) == 1, f"one receipt per erase command, got {len(receipts)}"
    rec = receipts[0]
    assert rec.key == command_ref.encode(), "the receipt is keyed by the digest of the command id"
    assert ERASED.encode() not in rec.value and ERASED.encode() not in rec.key, \
        "the receipt names the request, not the person"
    receipt = decode_single_object("ErasureReceipt", rec.value)
    assert receipt["command_id"] == command_ref and receipt["request_ref"] == "dsr-42"
    assert receipt["requested_at"] == t0 + 10 * MIN
    assert receipt["erased_at"] >= receipt["requested_at"]
    removed = receipt["removed"]
    assert removed["had_state"] and removed["interests"] >= 1 and removed["consents"] == 1, removed
    assert receipt["purged"] is True
    assert receipt["changelog_topic"] == topics["changelog"] and receipt["changelog_partition"] == 0, receipt
    # A consumer still on the receipt schema before the changelog fields reads it too.
    old_schema = fastavro.parse_schema(json.loads((REPO_ROOT / "schemas/history/erasure_receipt.v1.avsc").read_text()))
    old = fastavro.schemaless_reader(io.BytesIO(rec.value[10:]), schema("ErasureReceipt").parsed, old_schema)
    assert old["command_id"] == command_ref and "changelog_topic" not in old, old
    m = p.metrics()
    assert m.value("tact_erasures_total") == 1
    assert m.value("tact_erasure_lag_seconds_count") == 1, [l for l in m.text.splitlines() if "erasure" in l]
    assert p.stop() == 0

    # Nothing is left to inspect, and no file holds the customer id or a value written for them.
    # (RocksDB's manifest can name a key of deleted files until it rolls; an open rolls it.)
    p.start()
    assert p.stop() == 0
    assert tact_inspect(p.state_dir, ERASED) is None
    kept = tact_inspect(p.state_dir, KEPT)
    assert kept and kept["state"]["interests"], "the other customer is untouched"
    assert files_containing(p.state_dir, ERASED.encode()) == [], "not even inside the erase command's id"
    assert files_containing(p.state_dir, f"shoe-{ERASED}".encode()) == []
    assert files_containing(p.state_dir, KEPT.encode()), "the scan does see what the store keeps"

    # A later event starts a fresh profile: nothing of the old one comes back.
    p.start()
    later = click(ERASED, f"{ERASED}-s2", t0 + 20 * MIN, "PAGE_VIEW")
    producer.send_clicks(topics["clickstream"], [later])
    producer.flush()
    p.wait_idle({"clickstream": 1})  # counters start over with the process
    assert p.stop() == 0
    fresh = tact_inspect(p.state_dir, ERASED)
    assert fresh is not None
    state = fresh["state"]
    assert state["visits"] == 1 and state["interests"] == [] and state["consents"] == [], state
