"""SIGTERM with a broker that does not answer: every step of the drain keeps to
`pipeline.shutdown_deadline_ms` (no commit or leave without a deadline), tact says what was left,
and a restart once the broker is back sends it: nothing is lost compared with a straight run."""

from __future__ import annotations

import os
import signal
import time

import pytest

from harness import (InputProducer, TactProcess, Tansu, click, decode_records, now_ms, read_topic, set_consent,
                     topic_set, wait_until)

pytestmark = pytest.mark.timeout(240)

MIN = 60_000
DEADLINE_MS = 3000


def test_sigterm_with_a_frozen_broker_stops_within_the_deadline_and_loses_nothing(tact_bin, tmp_path):
    broker = Tansu(tmp_path / "tansu").start()  # its own: this test freezes it
    procs = []
    try:
        inputs = topic_set("freeze")
        straight = {**inputs, "decisions": inputs["decisions"] + "-straight",
                    "suppressed": inputs["suppressed"] + "-straight",
                    "changelog": inputs["changelog"].replace("freeze-", "freezes-")}
        broker.create_topics(sorted(set(inputs.values()) | set(straight.values())), partitions=1)
        overrides = {"pipeline": {"shutdown_deadline_ms": DEADLINE_MS, "idle_timer_wall_clock_ms": 0}}
        a = TactProcess(tmp_path, broker.bootstrap, inputs, name="frozen", tact_bin=tact_bin, overrides=overrides)
        ref = TactProcess(tmp_path, broker.bootstrap, straight, name="straight", tact_bin=tact_bin, overrides=overrides)
        procs += [a, ref]
        a.start()
        ref.start()
        t0 = now_ms() - 6 * 60 * MIN
        customers = [f"frz-{i}" for i in range(10)]
        producer = InputProducer(broker.bootstrap)
        producer.send_commands(inputs["profile_commands"], [set_consent(c, t0) for c in customers])
        producer.flush()
        clicks = [click(c, f"{c}-s{n // 6}", t0 + n * 7 * MIN, "PRODUCT_VIEW", category="shoes",
                        product_id=f"shoe-{n % 4}") for n in range(60) for c in customers]
        half = len(clicks) // 2
        producer.send_clicks(inputs["clickstream"], clicks[:half])
        producer.flush()
        a.wait_idle({"clickstream": half, "profile_commands": len(customers)})
        # More input, and the broker freezes while tact works on it: output in flight, nothing
        # answers (not even a refused connection).
        producer.send_clicks(inputs["clickstream"], clicks[half:])
        producer.flush()
        wait_until(lambda: a.metrics().value("tact_events_consumed_total", topic="clickstream") > half, 30, 0.005)
        os.kill(broker.proc.pid, signal.SIGSTOP)
        try:
            started = time.monotonic()
            a.proc.send_signal(signal.SIGTERM)
            a.proc.wait(DEADLINE_MS / 1000 + 10)
            took = time.monotonic() - started
            assert took < DEADLINE_MS / 1000 + 5, f"the drain took {took:.1f}s with a {DEADLINE_MS} ms deadline"
            code = a.proc.returncode
            assert code in (0, 5), f"exit {code}"
            print(f"stopped in {took:.1f}s with exit {code}")
        finally:
            os.kill(broker.proc.pid, signal.SIGCONT)
        a.start()
        for p in (a, ref):
            p.wait_idle({"clickstream": len(clicks) if p is ref else len(clicks) - half})
            assert p.stop() == 0
        dec = {d["decision_id"]: d for _, d in decode_records("Decision", read_topic(broker.bootstrap,
                                                                                     inputs["decisions"], timeout=30))}
        ref_dec = {d["decision_id"]: d for _, d in decode_records("Decision", read_topic(
            broker.bootstrap, straight["decisions"], timeout=30))}
        assert len(ref_dec) >= 10
        assert dec == ref_dec, f"{len(set(ref_dec) - set(dec))} missing, {len(set(dec) - set(ref_dec))} extra"
    finally:
        for p in procs:
            p.close()
        broker.stop()
