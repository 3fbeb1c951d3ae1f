"""Bad input goes to the dead-letter topic, unchanged, and does not stop the pipeline.

clickstream (avro_confluent, max_message_bytes = 2048), all keyed like the valid events around
them so they sit in the same partition, in between the events that lead to decisions:

  gina:  PAGE_VIEW, MALFORMED (Confluent-framed datum whose event_id is not UTF-8), WRONG_SCHEMA (a valid
         event in single-object framing: no 0x00 magic), CATEGORY_VIEW garden, TRUNCATED Avro (a product view cut short),
         PRODUCT_VIEW g-1, EMPTY value, OVERSIZED (a valid product view of 3 KB), PRODUCT_VIEW g-2
         -> exactly one RECOMMENDATION [g-2, g-1] caused by PRODUCT_VIEW g-2 (had any bad record been
            taken as a view, it would have come earlier or named another product)
  henry: PAGE_VIEW, (an hour later, new session) PAGE_VIEW -> WELCOME_BACK
profile-commands (json): gina's consent, then two pieces of JSON garbage (text and binary).
"""

from __future__ import annotations

import hashlib
import io
import json
import time

import fastavro

import pytest

from harness import (
    REPO_ROOT,
    avro_datum,
    click,
    confluent_frame,
    decode_records,
    encode_click,
    metrics_excerpt,
    now_ms,
    read_topic,
    set_consent,
    topic_set,
    unique,
    wait_until,
)

pytestmark = pytest.mark.timeout(180)

MIN = 60_000
MAX_BYTES = 2048


def test_bad_records_are_dead_lettered_unchanged_and_valid_ones_still_decide(tact, broker, producer):
    tag = unique("dlq")
    gina, henry = f"{tag}-gina", f"{tag}-henry"
    t0 = (now_ms() - 2 * 60 * MIN) // 1000 * 1000
    topics = topic_set("dlq")
    broker.create_topics(topics.values(), partitions=3)
    p = tact(topics, overrides={"input": {"max_message_bytes": MAX_BYTES}})
    p.start()

    # ---- profile commands: consent first, then garbage on the JSON topic
    consent = set_consent(gina, t0 - MIN, command_id=f"{tag}-consent")
    bad_cmds = [
        ("MALFORMED", gina, b'}{ "this is": not json ]'),
        ("MALFORMED", gina, b"\x00\x01\x02\xff binary, not json"),
    ]
    producer.send_commands(topics["profile_commands"], [consent], fmt="json")
    for _, key, value in bad_cmds:
        producer.send(topics["profile_commands"], key, value)
    producer.flush()
    p.wait_metric("tact_dead_lettered_total", len(bad_cmds), timeout=60, topic="profile_commands")

    # ---- clickstream
    def ev(who, session, t, type, **kw):
        return click(who, f"{who}-{session}", t, type, event_id=f"{tag}-{len(script)}", **kw)

    script: list[tuple[str | None, str, bytes]] = []  # (expected error class or None, key, value)
    valid: dict[str, dict] = {}

    def good(label, e):
        valid[label] = e
        script.append((None, e["customer_id"], encode_click(e, "avro_confluent")))

    good("gina_1", ev(gina, "s1", t0, "PAGE_VIEW", page="/"))
    # Confluent framing and a complete datum, but the event_id string is not UTF-8
    bad_utf8 = ev(gina, "s1", t0 + 5_000, "PRODUCT_VIEW", category="garden", product_id="g-utf8")
    datum = avro_datum("ClickEvent", bad_utf8)
    assert datum[0] == 2 * len(bad_utf8["event_id"])  # zig-zag length of the first field
    script.append(("MALFORMED", gina, confluent_frame(b"\x08\xff\xfe\xfd\xfc" + datum[1 + len(bad_utf8["event_id"]):])))
    # a valid event in the wrong framing (single-object encoding on an avro_confluent topic)
    script.append(("WRONG_SCHEMA", gina, encode_click(
        ev(gina, "s1", t0 + 7_000, "PRODUCT_VIEW", category="garden", product_id="g-framing"), "avro_single_object")))
    good("gina_view1", ev(gina, "s1", t0 + 10_000, "CATEGORY_VIEW", category="garden", page="/c/garden"))
    whole = encode_click(ev(gina, "s1", t0 + 15_000, "PRODUCT_VIEW", category="garden", product_id="g-trunc"))
    script.append(("TRUNCATED", gina, whole[: 5 + (len(whole) - 5) // 2]))
    good("gina_view2", ev(gina, "s1", t0 + 20_000, "PRODUCT_VIEW", category="garden", product_id="g-1"))
    script.append(("EMPTY", gina, b""))
    big = encode_click(ev(gina, "s1", t0 + 25_000, "PRODUCT_VIEW", category="garden", product_id="g-big",
                          search_query="x" * 3000))
    assert len(big) > MAX_BYTES
    script.append(("OVERSIZED", gina, big))
    good("gina_view3", ev(gina, "s1", t0 + 30_000, "PRODUCT_VIEW", category="garden", product_id="g-2"))
    good("henry_1", ev(henry, "s1", t0, "PAGE_VIEW", page="/"))
    good("henry_2", ev(henry, "s2", t0 + 60 * MIN, "PAGE_VIEW", page="/"))

    before = len(producer.delivered)
    for _, key, value in script:
        producer.send(topics["clickstream"], key, value)
    delivered = producer.flush()[before:]
    # where each record landed (the producer preserves order; match by value and key)
    placed = []
    pool = list(delivered)
    for cls, key, value in script:
        d = next(d for d in pool if d.key == key.encode() and d.value == value)
        pool.remove(d)
        placed.append((cls, d))
    cmd_delivered = [d for d in producer.delivered if d.topic == topics["profile_commands"]]
    expected_bad = [(cls, d) for cls, d in placed if cls] + [
        (cls, next(d for d in cmd_delivered if d.value == value)) for cls, _, value in bad_cmds]

    # ---- wait for the outcome
    dead = read_topic(broker.bootstrap, topics["dead_letter"], min_count=len(expected_bad), timeout=60)
    wait_until(lambda: p.metrics().value("tact_outbox_pending") == 0 and
               p.metrics().value("tact_dead_lettered_total") >= len(expected_bad), 60, 0.2,
               lambda: f"dead letters / outbox not settled:\n{metrics_excerpt(p.metrics())}")
    decisions = read_topic(broker.bootstrap, topics["decisions"], min_count=2, timeout=60)
    time.sleep(1.0)  # anything extra would arrive now
    dead = read_topic(broker.bootstrap, topics["dead_letter"], timeout=30)
    decisions = decode_records("Decision", read_topic(broker.bootstrap, topics["decisions"], timeout=30))
    m = p.metrics()

    # ---- every bad record is on the dead-letter topic, exactly once, unchanged
    letters = decode_records("DeadLetter", dead)
    got = {(d["source_topic"], d["source_partition"], d["source_offset"]): (rec, d) for rec, d in letters}
    assert len(got) == len(letters), f"a record was dead-lettered twice: {[d for _, d in letters]}"
    want = {(d.topic, d.partition, d.offset): (cls, d) for cls, d in expected_bad}
    assert set(got) == set(want), (
        f"dead-lettered (topic, partition, offset) differ from what was injected:\n"
        f"missing {sorted(set(want) - set(got))}\nunexpected {[got[k][1] for k in set(got) - set(want)]}")
    for key, (cls, sent) in want.items():
        rec, letter = got[key]
        assert letter["error_class"] == cls, f"{key}: error_class {letter['error_class']}, expected {cls}: {letter}"
        assert letter["stage"] == "DECODE", letter
        assert letter["original_value"] == sent.value, f"{cls}: original bytes not kept unchanged"
        assert not letter["truncated"], letter
        assert letter["original_value_bytes"] == len(sent.value)
        assert letter["original_value_sha256"] == hashlib.sha256(sent.value).hexdigest()
        assert letter["original_key"] == sent.key
        assert rec.key == sent.key, "the dead-letter record is keyed by the original key"
        assert letter["message"].strip(), f"{cls}: dead letter without a message"
        assert abs(letter["dead_lettered_at"] - now_ms()) < 10 * MIN, "dead_lettered_at is a wall-clock time"

    # ---- the valid events still made their decisions (and bad ones were not taken for views)
    mine = sorted(((d["customer_id"], d["kind"]) for _, d in decisions))
    assert mine == sorted([(gina, "RECOMMENDATION"), (henry, "WELCOME_BACK")]), \
        f"decisions: {[d for _, d in decisions]}"
    rec = next(d for _, d in decisions if d["kind"] == "RECOMMENDATION")
    assert rec["cause_event_id"] == valid["gina_view3"]["event_id"]
    assert rec["items"] == ["g-2", "g-1"]
    wb = next(d for _, d in decisions if d["kind"] == "WELCOME_BACK")
    assert wb["cause_event_id"] == valid["henry_2"]["event_id"]

    # ---- metrics agree, per error class (labels: logical topic, lower-case class)
    for topic_label, topic_name in (("clickstream", topics["clickstream"]), ("profile_commands", topics["profile_commands"])):
        for cls in ("EMPTY", "TRUNCATED", "OVERSIZED", "MALFORMED", "WRONG_SCHEMA", "INVALID_FIELD"):
            n = sum(1 for c, d in expected_bad if c == cls and d.topic == topic_name)
            for metric in ("tact_dead_lettered_total", "tact_decode_errors_total"):
                assert m.value(metric, topic=topic_label, error_class=cls.lower()) == n, (
                    f"{metric}{{topic={topic_label},error_class={cls.lower()}}} != {n}:\n{metrics_excerpt(m)}")
    assert m.value("tact_dead_lettered_total") == len(expected_bad)

    # ---- and the pipeline is still healthy
    assert p.alive()
    assert p.http_get("/readyz")[0] == 200
    assert p.http_get("/healthz")[0] == 200
    assert p.stop() == 0


def test_a_record_too_large_to_carry_whole_is_dead_lettered_as_a_prefix_and_its_partition_goes_on(tact, broker, producer):
    """A dead letter must always fit the dead-letter topic. Before, a 1 MB record stopped tact
    for good: its dead letter (the whole original inside) exceeded the producer's
    message.max.bytes, producing it failed fatally, and every restart met the same record."""
    tag = unique("dlbig")
    ivy = f"{tag}-ivy"
    t0 = (now_ms() - 2 * 60 * MIN) // 1000 * 1000
    topics = topic_set("dlbig")
    broker.create_topics(topics.values(), partitions=1)
    p = tact(topics)  # default input.max_message_bytes = 1 MiB, default message.max.bytes
    p.start()

    first = click(ivy, f"{ivy}-s1", t0, "PAGE_VIEW", page="/", event_id=f"{tag}-1")
    later = click(ivy, f"{ivy}-s2", t0 + 60 * MIN, "PAGE_VIEW", page="/", event_id=f"{tag}-2")
    # Under the input limit but over what a dead letter can carry whole: a Confluent frame
    # around bytes that are no click event (an endless varint: TRUNCATED); and one over the input limit (OVERSIZED).
    malformed = b"\x00\x00\x00\x00\x01" + bytes([0xFF]) * 1_010_000
    oversized = b"\x00\x00\x00\x00\x01" + bytes(range(256)) * 4_400
    assert 1_000_000 < len(malformed) <= 1_048_576 < len(oversized)
    before = len(producer.delivered)
    producer.send(topics["clickstream"], ivy, encode_click(first))
    producer.send(topics["clickstream"], ivy, malformed)
    producer.send(topics["clickstream"], ivy, oversized)
    producer.send(topics["clickstream"], ivy, encode_click(later))
    sent = producer.flush()[before:]
    assert not producer.errors, producer.errors
    big = {d.offset: d for d in sent if d.value in (malformed, oversized)}
    assert len(big) == 2

    # The event after both still decides: the partition was not stopped.
    decisions = decode_records("Decision", read_topic(broker.bootstrap, topics["decisions"], min_count=1, timeout=60))
    assert [(d["kind"], d["cause_event_id"]) for _, d in decisions] == [("WELCOME_BACK", later["event_id"])]
    dead = read_topic(broker.bootstrap, topics["dead_letter"], min_count=2, timeout=60)
    letters = decode_records("DeadLetter", dead)
    assert sorted(d["source_offset"] for _, d in letters) == sorted(big), [d["source_offset"] for _, d in letters]
    for rec, letter in letters:
        original = big[letter["source_offset"]].value
        assert len(rec.value) < 1_000_000, f"a dead letter of {len(rec.value)} bytes"
        assert letter["truncated"], "the dead letter says it carries only a prefix"
        kept = letter["original_value"]
        assert 0 < len(kept) < len(original) and original.startswith(kept)
        assert letter["original_value_bytes"] == len(original)
        assert letter["original_value_sha256"] == hashlib.sha256(original).hexdigest()
        assert letter["original_key"] == ivy.encode() and letter["original_key_bytes"] == len(ivy)
        assert letter["error_class"] == ("OVERSIZED" if original == oversized else "TRUNCATED"), letter
        # A consumer that still has the earlier schema decodes it too (new fields skipped).
        old = fastavro.parse_schema(json.loads((REPO_ROOT / "schemas/history/dead_letter.v1.avsc").read_text()))
        new = fastavro.parse_schema(json.loads((REPO_ROOT / "schemas/dead_letter.avsc").read_text()))
        as_old = fastavro.schemaless_reader(io.BytesIO(rec.value[10:]), new, old)
        assert as_old["source_offset"] == letter["source_offset"] and "truncated" not in as_old
    m = p.metrics()
    assert m.value("tact_dead_lettered_total") == 2
    assert p.alive() and p.http_get("/readyz")[0] == 200
    assert p.stop() == 0
