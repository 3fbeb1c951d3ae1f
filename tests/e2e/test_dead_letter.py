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

import time

import pytest

from harness import (
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
