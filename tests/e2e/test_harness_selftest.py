"""Self-tests of the harness itself (no tact binary needed): if these fail, the e2e results
below them mean nothing."""

from __future__ import annotations

import json
import tomllib

import pytest

from harness import (
    SINGLE_OBJECT_MAGIC,
    DecodeError,
    Metrics,
    avro_datum,
    base_config,
    click,
    confluent_frame,
    decode_output,
    decode_single_object,
    dump_toml,
    encode_click,
    encode_command,
    rabin_fingerprint64,
    read_datum,
    read_topic,
    schema,
    set_consent,
    single_object_frame,
    topic_set,
    unique,
)

pytestmark = pytest.mark.timeout(90)

ALL_SCHEMAS = ["ClickEvent", "ProfileCommand", "Decision", "SuppressedCandidate", "DeadLetter"]


@pytest.mark.parametrize("name", ALL_SCHEMAS)
def test_fastavro_fingerprint_matches_the_avro_spec_rabin_fingerprint(name):
    s = schema(name)
    assert s.canonical.startswith('{"name":"tact.v1.'), s.canonical[:60]
    assert "logicalType" not in s.canonical and '"doc"' not in s.canonical
    assert s.fingerprint == rabin_fingerprint64(s.canonical.encode())
    assert len(s.fingerprint) == 8


def test_rabin_fingerprint_matches_published_vectors():
    # Avro spec / Java SchemaNormalization: fingerprint64("int") = 0x7275d51a3f395c8f, written LE.
    assert rabin_fingerprint64(b'"int"') == bytes.fromhex("8f5c393f1ad57572")


def _decision():
    return {"decision_id": "d-1", "customer_id": "c-1", "session_id": "s-1", "kind": "RECOMMENDATION",
            "channel": "ON_SITE", "personalized": True, "items": ["p2", "p1"],
            "reasons": [{"code": "viewed_category", "detail": "You looked at shoes"}],
            "cause_event_id": "e-3", "created_at": 1_700_000_000_123, "expires_at": 1_700_001_800_123,
            "policy_version": "default-1", "context": None, "suggested_answers": [], "due_at": None}


def test_single_object_roundtrip_and_rejections():
    rec = _decision()
    wire = single_object_frame("Decision", avro_datum("Decision", rec))
    assert wire[:2] == SINGLE_OBJECT_MAGIC
    assert decode_single_object("Decision", wire) == rec
    with pytest.raises(DecodeError, match="fingerprint"):
        decode_single_object("Decision", wire[:2] + bytes(8) + wire[10:])
    with pytest.raises(DecodeError, match="magic"):
        decode_single_object("Decision", b"\x00\x00" + wire[2:])
    with pytest.raises(DecodeError, match="trailing"):
        decode_single_object("Decision", wire + b"\x00")
    with pytest.raises(DecodeError):
        decode_single_object("Decision", wire[:-3])
    # a record of another schema fails the fingerprint check
    other = single_object_frame("SuppressedCandidate", b"")
    with pytest.raises(DecodeError, match="fingerprint"):
        decode_single_object("Decision", other + wire[10:])
    assert decode_output("Decision", confluent_frame(avro_datum("Decision", rec), 7), "confluent", 7) == rec


def test_input_encodings_follow_the_contract():
    ev = click("c-1", "s-1", 1_700_000_000_000, "PRODUCT_VIEW", category="shoes", product_id="p-1",
               event_id="e-1")
    datum = avro_datum("ClickEvent", ev)
    assert encode_click(ev, "avro_datum") == datum
    assert encode_click(ev, "avro_confluent") == b"\x00\x00\x00\x00\x01" + datum
    assert encode_click(ev, "avro_single_object") == b"\xc3\x01" + schema("ClickEvent").fingerprint + datum
    assert read_datum("ClickEvent", datum) == ev
    j = json.loads(encode_click(ev, "json"))
    assert j["type"] == "PRODUCT_VIEW" and j["category"] == "shoes" and j["page"] is None
    assert j["event_time"] == 1_700_000_000_000

    cmd = set_consent("c-1", 1_700_000_000_000, command_id="k-1")
    jc = json.loads(encode_command(cmd, "json"))
    assert jc["command"] == {"SetConsent": {"purpose": "PERSONALIZATION", "channel": None, "granted": True,
                                            "source": "consent_banner", "expires_at": None}}
    back = read_datum("ProfileCommand", encode_command(cmd, "avro_datum"))
    assert back["command"] == ("tact.v1.SetConsent", cmd["command"][1])


def test_metrics_parser():
    text = """# HELP tact_events_consumed Events.
# TYPE tact_events_consumed counter
tact_events_consumed_total{topic="clickstream"} 12
tact_events_consumed_total{topic="profile_commands"} 3
tact_outbox_pending 0
tact_decisions_total{kind="welcome_back",channel="on_site"} 2.0
tact_batch_duration_seconds_bucket{le="+Inf"} 5
# EOF
"""
    m = Metrics.parse(text)
    assert m.value("tact_events_consumed_total") == 15
    assert m.value("tact_events_consumed_total", topic="profile_commands") == 3
    assert m.value("tact_decisions_total", kind="welcome_back") == 2
    assert m.has("tact_outbox_pending") and m.value("tact_outbox_pending") == 0
    assert m.value("tact_nope") == 0 and not m.has("tact_nope")


def test_config_writer_produces_the_contract_shape(tmp_path):
    cfg = base_config("127.0.0.1:1", topic_set(), "g", tmp_path / "state", 1234)
    parsed = tomllib.loads(dump_toml(cfg))
    assert parsed == cfg
    assert parsed["kafka"]["client"]["session.timeout.ms"] == "2000"
    assert parsed["http"]["listen"] == "127.0.0.1:1234"


def test_broker_roundtrip_keyed_by_customer(broker, producer):
    topic = unique("selftest")
    broker.create_topics([topic], partitions=3)
    assert broker.partitions(topic) == [0, 1, 2]
    events = [click(f"cust-{i % 5}", f"s-{i % 5}", 1_700_000_000_000 + i, "PAGE_VIEW", page=f"/p/{i}")
              for i in range(40)]
    fmts = ["avro_confluent", "avro_single_object", "avro_datum", "json"]
    for i, ev in enumerate(events):
        producer.send(topic, ev["customer_id"], encode_click(ev, fmts[i % 4]))
    producer.send(topic, "cust-empty", b"")
    delivered = producer.flush()
    assert len(delivered) == 41
    # keyed: every customer's records sit in exactly one partition
    by_key = {}
    for d in delivered:
        by_key.setdefault(d.key, set()).add(d.partition)
    assert all(len(p) == 1 for p in by_key.values()), by_key

    records = read_topic(broker.bootstrap, topic, min_count=41, timeout=30)
    assert len(records) == 41
    assert sorted((r.partition, r.offset) for r in records) == sorted((d.partition, d.offset) for d in delivered)
    sent = {(d.partition, d.offset): d.value for d in delivered}
    assert all(r.value == sent[(r.partition, r.offset)] for r in records)
    empty = [r for r in records if r.key == b"cust-empty"]
    assert empty[0].value == b"", "the broker must keep an empty value as empty bytes"
    # read_topic returns promptly once caught up, and sees the same again with a new group
    assert len(read_topic(broker.bootstrap, topic, timeout=20)) == 41
    # ordering per partition is preserved for each customer
    for key in {r.key for r in records if r.key != b"cust-empty"}:
        mine = sorted((r for r in records if r.key == key), key=lambda r: r.offset)
        pages = [json.loads(r.value)["page"] if r.value[:1] == b"{" else
                 decode_any_click(r.value)["page"] for r in mine]
        assert pages == sorted(pages, key=lambda p: int(p.split("/")[-1]))


def decode_any_click(value: bytes) -> dict:
    if value[:2] == b"\xc3\x01":
        return decode_single_object("ClickEvent", value)
    if value[:1] == b"\x00":
        try:
            return read_datum("ClickEvent", value[5:])
        except DecodeError:
            pass
    return read_datum("ClickEvent", value)


def test_read_topic_on_an_empty_topic_returns_quickly(broker):
    topic = unique("selftest-empty")
    broker.create_topics([topic], partitions=2)
    assert read_topic(broker.bootstrap, topic, timeout=15) == []
