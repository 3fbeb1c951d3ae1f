"""A crash (SIGKILL) at any moment neither loses nor double-applies anything.

Same deterministic input, two pipelines with their own state dir, consumer group and output topics:
  A  runs straight through and stops with SIGTERM (the reference);
  B  is SIGKILLed 5-8 times at random moments while it consumes and restarted each time with the
     same state dir and group, then allowed to finish.
Consent commands are produced (and durably applied by both) before the clickstream starts, which
then arrives as a live stream while B is being killed, so every kill lands mid-stream.

B must end with exactly A's decisions and audit records (same ids; a re-sent id carries identical
content) and every customer's stored state (tact inspect) must equal A's.

Env knobs: TACT_E2E_SEED (input + kill schedule), TACT_E2E_CRASH_CUSTOMERS (20).
"""

from __future__ import annotations

import os
import random
import threading
import time
from collections import Counter

import pytest

from harness import (
    InputProducer,
    committed_offsets,
    decode_records,
    encode_click,
    metrics_excerpt,
    now_ms,
    read_topic,
    tact_inspect,
    topic_set,
    unique,
    wait_until,
)
from workload import generate, profile_commands

pytestmark = pytest.mark.timeout(300)

MIN = 60_000
SEED = int(os.environ.get("TACT_E2E_SEED", "20240611"))
N_CUSTOMERS = int(os.environ.get("TACT_E2E_CRASH_CUSTOMERS", "20"))
PARTITIONS = 3

def _done(proc, bootstrap, topics, ends: dict[str, dict[int, int]]) -> bool:
    """All input committed by the group and nothing pending in the outbox."""
    for logical, per_part in ends.items():
        got = committed_offsets(bootstrap, proc.group_id, topics[logical], range(PARTITIONS))
        if any(got.get(p, -1) < per_part.get(p, 0) for p in range(PARTITIONS)):
            return False
    m = proc.metrics()
    return m.has("tact_outbox_pending") and m.value("tact_outbox_pending") == 0


def test_sigkill_at_random_moments_loses_nothing_and_applies_nothing_twice(tact, broker):
    rng = random.Random(SEED)
    tag = unique("crash")
    customers, commands, events = generate(tag, rng, now_ms(), N_CUSTOMERS)
    assert 1500 <= len(events) <= 6000, len(events)

    inputs = topic_set("crash-in")
    topics_a = {**inputs, **{k: v.replace("crash-in", "crash-A") for k, v in inputs.items()
                             if k in ("decisions", "suppressed", "dead_letter", "changelog")}}
    topics_b = {**inputs, **{k: v.replace("crash-in", "crash-B") for k, v in inputs.items()
                             if k in ("decisions", "suppressed", "dead_letter", "changelog")}}
    broker.create_topics(sorted(set(topics_a.values()) | set(topics_b.values())), partitions=PARTITIONS)
    cfg = {"pipeline": {"batch_max_events": 200, "batch_max_wait_ms": 50}}
    a = tact(topics_a, overrides=cfg, name="tact-A", group_id=f"{tag}-A")
    b = tact(topics_b, overrides=cfg, name="tact-B", group_id=f"{tag}-B")
    a.start()
    b.start()

    # ---- phase 1: consent, durably applied by both before any click
    cmd_producer = InputProducer(broker.bootstrap)
    cmd_producer.send_commands(inputs["profile_commands"], commands, fmt="json")
    cmd_producer.flush()
    cmd_ends = cmd_producer.end_offsets(inputs["profile_commands"])
    for p in (a, b):
        p.wait_metric("tact_events_consumed_total", len(commands), timeout=60, topic="profile_commands")
        wait_until(lambda p=p: _done(p, broker.bootstrap, inputs, {"profile_commands": cmd_ends}), 60, 0.3,
                   lambda p=p: f"{p.name}: profile commands not committed: "
                   f"{committed_offsets(broker.bootstrap, p.group_id, inputs['profile_commands'], range(PARTITIONS))}"
                   f" vs ends {cmd_ends}")

    # ---- phase 2: the clickstream arrives live while B is being killed
    kills_wanted = rng.randint(5, 8)
    kill_loop_over = threading.Event()
    click_producer = InputProducer(broker.bootstrap)
    produce_error: list[BaseException] = []

    def produce():
        try:
            budget = 60.0  # seconds to spread the stream over, unless the kill loop finishes first
            start = time.monotonic()
            for i, ev in enumerate(events):
                click_producer.send(inputs["clickstream"], ev["customer_id"], encode_click(ev))
                if not kill_loop_over.is_set():
                    lag = start + budget * (i + 1) / len(events) - time.monotonic()
                    if lag > 0:
                        kill_loop_over.wait(lag)
            click_producer.flush(60)
        except BaseException as exc:  # noqa: BLE001
            produce_error.append(exc)

    producer_thread = threading.Thread(target=produce, name="clicks", daemon=True)
    producer_thread.start()

    kill_log = []
    try:
        while len(kill_log) < kills_wanted:
            if not b.alive():
                b.start()
            # a random moment after this incarnation has started consuming clicks: often while it
            # works through the backlog that piled up while it was down, sometimes later
            try:
                wait_until(lambda: b.metrics().value("tact_events_consumed_total", topic="clickstream") > 0,
                           30, 0.05, "")
            except TimeoutError:
                if producer_thread.is_alive():
                    raise AssertionError(f"tact-B incarnation {b.starts} consumes nothing while clicks arrive:\n"
                                         f"{b.diagnostics()}")
                break  # all input is there and B has caught up: no more mid-stream moments
            time.sleep(rng.choice([rng.uniform(0.0, 0.3), rng.uniform(0.0, 1.5)]))
            m = b.metrics()
            consumed = m.value("tact_events_consumed_total", topic="clickstream")
            skipped = m.value("tact_events_skipped_total")
            b.kill()
            committed = committed_offsets(broker.bootstrap, b.group_id, inputs["clickstream"], range(PARTITIONS))
            produced = click_producer.count(inputs["clickstream"])  # approximate while producing
            kill_log.append({"incarnation": b.starts, "consumed_in_incarnation": consumed, "skipped": skipped,
                             "committed_after_kill": sum(max(v, 0) for v in committed.values()),
                             "produced_so_far": produced})
    finally:
        kill_loop_over.set()
    producer_thread.join(120)
    assert not producer_thread.is_alive() and not produce_error, f"producing clicks failed: {produce_error}"
    clicks_delivered = click_producer.delivered
    assert len(clicks_delivered) == len(events)
    ends = {"profile_commands": cmd_ends, "clickstream": click_producer.end_offsets(inputs["clickstream"])}
    mid_stream = [k for k in kill_log if k["committed_after_kill"] < len(events)]
    print(f"seed {SEED}: {len(events)} clicks, {len(commands)} commands; kills: {kill_log}")
    assert len(mid_stream) >= 3, f"too few kills landed before the input was processed: {kill_log}"

    # ---- A: straight run to the end, then SIGTERM
    a.wait_idle({"clickstream": len(events), "profile_commands": len(commands)}, timeout=120)
    wait_until(lambda: _done(a, broker.bootstrap, inputs, ends), 60, 0.3,
               lambda: f"tact-A consumed everything but did not commit it: {a.diagnostics()}")
    # consumer lag is reported per input partition and drops to 0 once everything is consumed
    # (it comes from librdkafka statistics, every 5 s)
    want_series = {(t, str(p)) for t in ("clickstream", "profile_commands") for p in range(PARTITIONS)}

    def lag_is_zero():
        lag = {(l.get("topic"), l.get("partition")): v for l, v in a.metrics().series("tact_consumer_lag_messages")}
        return set(lag) >= want_series and all(lag[k] == 0 for k in want_series)

    wait_until(lag_is_zero, 20, 0.5, lambda: f"tact_consumer_lag_messages of tact-A after it consumed everything:\n"
               f"{a.metrics().series('tact_consumer_lag_messages')}")
    assert a.stop() == 0, "tact-A: SIGTERM should shut down cleanly"

    # ---- B: last restart, let it finish
    if not b.alive():
        b.start()
    wait_until(lambda: _done(b, broker.bootstrap, inputs, ends), 120, 0.3,
               lambda: (f"tact-B never caught up after {len(kill_log)} kills: committed "
                        f"{committed_offsets(broker.bootstrap, b.group_id, inputs['clickstream'], range(PARTITIONS))}"
                        f" vs ends {ends['clickstream']};\n{metrics_excerpt(b.metrics())}"))
    b_metrics = b.metrics()
    assert b.stop() == 0, "tact-B: SIGTERM should shut down cleanly"

    # ---- outputs
    dec_a = decode_records("Decision", read_topic(broker.bootstrap, topics_a["decisions"], timeout=60))
    dec_b = decode_records("Decision", read_topic(broker.bootstrap, topics_b["decisions"], timeout=60))
    sup_a = decode_records("SuppressedCandidate", read_topic(broker.bootstrap, topics_a["suppressed"], timeout=60))
    sup_b = decode_records("SuppressedCandidate", read_topic(broker.bootstrap, topics_b["suppressed"], timeout=60))
    kinds_a = Counter(d["kind"] for _, d in dec_a)
    print(f"A: {len(dec_a)} decisions {dict(kinds_a)}, {len(sup_a)} suppressed; "
          f"B: {len(dec_b)} decisions, {len(sup_b)} suppressed; B restarts {b.starts}")
    # the reference run must have done real work, or the comparison below proves nothing
    assert kinds_a["WELCOME_BACK"] >= 5 and kinds_a["RECOMMENDATION"] >= 3 and len(sup_a) >= 1, \
        f"run A made too few decisions to compare: {dict(kinds_a)}, {len(sup_a)} suppressed"
    for name, recs, id_field in (("A decisions", dec_a, "decision_id"), ("A suppressed", sup_a, "candidate_id")):
        dup = [k for k, n in Counter(d[id_field] for _, d in recs).items() if n > 1]
        assert not dup, f"{name}: a straight run produced duplicate ids {dup[:5]}"

    for what, ra, rb, id_field in (("decisions", dec_a, dec_b, "decision_id"),
                                   ("suppressed candidates", sup_a, sup_b, "candidate_id")):
        by_a = {d[id_field]: (r.key, d) for r, d in ra}
        ids_b = {d[id_field] for _, d in rb}
        missing, extra = set(by_a) - ids_b, ids_b - set(by_a)
        assert not missing and not extra, (
            f"{what}: B (crashed {len(kill_log)}x) differs from A: {len(missing)} missing, {len(extra)} extra;\n"
            f"missing e.g. {[by_a[i][1] for i in sorted(missing)[:3]]}\n"
            f"extra e.g. {[d for _, d in rb if d[id_field] in extra][:3]}")
        for r, d in rb:
            key_a, d_a = by_a[d[id_field]]
            assert d == d_a and r.key == key_a, \
                f"{what}: id {d[id_field]} re-sent with different content:\nA {d_a}\nB {d}"
        dups = sum(n - 1 for n in Counter(d[id_field] for _, d in rb).values())
        print(f"{what}: B re-sent {dups} records (identical duplicates are allowed)")

    # ---- stored state: nothing lost, nothing applied twice
    diffs = []
    for cid in customers:
        sa = tact_inspect(a.state_dir, cid)
        sb = tact_inspect(b.state_dir, cid)
        assert sa is not None, f"run A has no stored state for {cid}"
        if sa != sb:
            diffs.append((cid, sa, sb))
    assert not diffs, (f"{len(diffs)} customers' stored state differs after crashes, e.g. {diffs[0][0]}:\n"
                       f"A: {diffs[0][1]}\nB: {diffs[0][2]}")
    assert b_metrics.value("tact_delivery_errors_total") == 0
    # Every restart found its own state current (its checkpoint, and nothing but its own writes in
    # the changelog since): only the very first start restored (an empty changelog) in full.
    log = b.log_path.read_text()
    assert log.count('"restored in full"') == PARTITIONS, "a restart after kill -9 restored in full"
    assert log.count('"state here was current"') >= PARTITIONS * len(kill_log)


def test_commands_and_events_in_flight_apply_in_order_across_sigkills(tact, broker):
    """Commands interleaved with each customer's events (in event time), everything in the topics
    before tact starts; B is SIGKILLed at random moments while it works through it. B must end with
    A's decisions, audit records and stored state for every customer."""
    rng = random.Random(SEED + 1)
    tag = unique("inflight")
    customers, consents, events = generate(tag, rng, now_ms(), N_CUSTOMERS)
    commands = consents + profile_commands(customers, events, rng)
    inputs = topic_set("inflight-in")
    topics_a = {**inputs, **{k: v.replace("inflight-in", "inflight-A") for k, v in inputs.items()
                             if k in ("decisions", "suppressed", "dead_letter", "erasure_receipts", "changelog")}}
    topics_b = {**inputs, **{k: v.replace("inflight-in", "inflight-B") for k, v in inputs.items()
                             if k in ("decisions", "suppressed", "dead_letter", "erasure_receipts", "changelog")}}
    broker.create_topics(sorted(set(topics_a.values()) | set(topics_b.values())), partitions=PARTITIONS)
    producer = InputProducer(broker.bootstrap)
    producer.send_commands(inputs["profile_commands"], commands, fmt="json")
    for ev in events:
        producer.send(inputs["clickstream"], ev["customer_id"], encode_click(ev))
    producer.flush(60)
    ends = {t: producer.end_offsets(inputs[t]) for t in ("clickstream", "profile_commands")}
    # A long interleave wait: a lane that runs dry waits for the broker's next fetch, so both runs
    # see the same event-time order however their fetches are cut.
    cfg = {"pipeline": {"batch_max_events": 100, "batch_max_wait_ms": 50, "idle_timer_wall_clock_ms": 0},
           "input": {"interleave_wait_ms": 2000}}
    a = tact(topics_a, overrides=cfg, name="tact-A", group_id=f"{tag}-A")
    b = tact(topics_b, overrides=cfg, name="tact-B", group_id=f"{tag}-B")
    a.start()
    b.start()

    kills = []
    for _ in range(rng.randint(4, 6)):
        if not b.alive():
            b.start()
        try:
            wait_until(lambda: b.metrics().value("tact_events_consumed_total", topic="clickstream") > 0, 30, 0.02, "")
        except TimeoutError:
            break
        time.sleep(rng.uniform(0.0, 0.6))
        if _done(b, broker.bootstrap, inputs, ends):
            break
        b.kill()
        kills.append(sum(max(v, 0) for v in committed_offsets(
            broker.bootstrap, b.group_id, inputs["clickstream"], range(PARTITIONS)).values()))
    print(f"seed {SEED + 1}: {len(events)} clicks, {len(commands)} commands; committed at each kill: {kills}")
    assert len([k for k in kills if k < len(events)]) >= 2, f"too few kills landed mid-stream: {kills}"
    if not b.alive():
        b.start()
    for p in (a, b):
        wait_until(lambda p=p: _done(p, broker.bootstrap, inputs, ends), 180, 0.3,
                   lambda p=p: f"{p.name} did not finish: {p.diagnostics()}")
        assert p.stop() == 0

    for topic, schema, id_field in (("decisions", "Decision", "decision_id"),
                                    ("suppressed", "SuppressedCandidate", "candidate_id")):
        ra = decode_records(schema, read_topic(broker.bootstrap, topics_a[topic], timeout=60))
        rb = decode_records(schema, read_topic(broker.bootstrap, topics_b[topic], timeout=60))
        assert len(ra) >= 10, f"run A made too few {topic} to compare: {len(ra)}"
        by_a = {d[id_field]: d for _, d in ra}
        ids_b = {d[id_field] for _, d in rb}
        assert ids_b == set(by_a), (f"{topic}: B differs from A: missing {sorted(set(by_a) - ids_b)[:3]}, "
                                    f"extra {sorted(ids_b - set(by_a))[:3]}")
        assert all(d == by_a[d[id_field]] for _, d in rb), f"{topic}: a re-sent id carries other content"
    diffs = [cid for cid in customers if tact_inspect(a.state_dir, cid) != tact_inspect(b.state_dir, cid)]
    assert not diffs, f"{len(diffs)} customers' state differs after crashes, e.g. {diffs[0]}"
    # The commands really took effect (else the comparison proves little).
    states = [tact_inspect(a.state_dir, c) for c in customers]
    assert sum(1 for s in states if s and s["preferences"]["excluded_categories"]) >= len(customers) // 2
    assert sum(1 for s in states if s and s["follows"]) >= len(customers) // 2
