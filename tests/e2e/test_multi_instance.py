"""Several tact instances in one consumer group: partitions and their state move between them when
one is killed and never comes back, when the group grows and shrinks, and when an instance loses
its disk. Downstream must see what one straight run produces.

Each test runs a straight single-instance pipeline A (its own group, outputs and changelog) beside
a group G of separate `tact run` processes over the same input topics (6 partitions). The input is
deterministic: consent and preference commands first, then a live clickstream with a few poison
records, spread over half a minute while G's membership changes. At the end:

* G's decisions and suppressed candidates have exactly A's ids, and every copy (re-sends after a
  move are allowed) has A's content;
* G's dead letters are A's (same source partition/offset, class, message and original bytes;
  `dead_lettered_at` is wall-clock time and differs);
* every customer's state, as each run's changelog holds it (`tact inspect --config`), is equal.

Static membership is not used here: the tansu build in the tests breaks cooperative-sticky
rebalances when group.instance.id is set (a rejoining static member never gets its partitions);
see tests/e2e/README.md.
"""

from __future__ import annotations

import json
import os
import random
import shutil
import threading
import time
from collections import Counter
from concurrent.futures import ThreadPoolExecutor

import pytest

from harness import (
    InputProducer,
    click,
    committed_offsets,
    decode_records,
    encode_click,
    now_ms,
    read_topic,
    tact_inspect_changelog,
    topic_set,
    unique,
    wait_until,
)
from test_crash_recovery import generate

pytestmark = pytest.mark.timeout(420)

PARTITIONS = 6
SEED = int(os.environ.get("TACT_E2E_SEED", "20240611"))
PER_RUN = ("decisions", "suppressed", "dead_letter", "erasure_receipts", "changelog")
CONFIG = {
    "pipeline": {"batch_max_events": 200, "batch_max_wait_ms": 50, "idle_timer_wall_clock_ms": 0,
                 "revoke_deadline_ms": 5000},
    # A lane that runs dry waits for the broker's next fetch, so every run sees the same
    # event-time order of commands and clicks however its fetches are cut.
    "input": {"interleave_wait_ms": 2000},
    # Plain files: the erasure scenario searches them for the erased customer's bytes.
    "state": {"compression": "none"},
}


def run_topics(inputs: dict[str, str], prefix: str, run: str) -> dict[str, str]:
    """The shared input topics, with this run's own outputs and changelog."""
    return {**inputs, **{k: v.replace(prefix, f"{prefix}{run}", 1) for k, v in inputs.items() if k in PER_RUN}}


class Run:
    """Shared input, a straight run A and a group G, and the comparison between them."""

    def __init__(self, tact, broker, name: str, seed: int):
        self.tact, self.broker = tact, broker
        self.rng = random.Random(seed)
        self.tag = unique(name)
        self.customers, self.commands, self.events = generate(self.tag, self.rng, now_ms())
        prefix = f"mi{self.rng.randint(0, 99999)}"
        self.inputs = topic_set(prefix)
        self.topics_a = run_topics(self.inputs, prefix, "a")
        self.topics_g = run_topics(self.inputs, prefix, "g")
        broker.create_topics(sorted(set(self.topics_a.values()) | set(self.topics_g.values())),
                             partitions=PARTITIONS)
        self.a = tact(self.topics_a, overrides=CONFIG, name="A", group_id=f"{self.tag}-A")
        self.group_id = f"{self.tag}-G"
        self.members = []
        self.producer = InputProducer(broker.bootstrap)
        self.poison: list[bytes] = []
        self.done = threading.Event()
        self.errors: list[BaseException] = []

    def member(self, name: str):
        m = self.tact(self.topics_g, overrides=CONFIG, name=name, group_id=self.group_id)
        self.members.append(m)
        return m

    def living(self):
        return [m for m in self.members if m.alive()]

    def send_commands(self) -> None:
        self.producer.send_commands(self.inputs["profile_commands"], self.commands)
        self.producer.flush()

    def stream_clicks(self, seconds: float) -> threading.Thread:
        """The clickstream, spread over `seconds`, with a poison record every few hundred events."""
        def produce():
            try:
                start = time.monotonic()
                for i, ev in enumerate(self.events):
                    self.producer.send(self.inputs["clickstream"], ev["customer_id"], encode_click(ev))
                    if i % 400 == 17:
                        bad = bytes([0, 0, 0, 0, 1]) + os.urandom(6)
                        self.poison.append(bad)
                        self.producer.send(self.inputs["clickstream"], ev["customer_id"], bad)
                    lag = start + seconds * (i + 1) / len(self.events) - time.monotonic()
                    if lag > 0:
                        time.sleep(lag)
                self.producer.flush(60)
            except BaseException as exc:  # noqa: BLE001
                self.errors.append(exc)
            finally:
                self.done.set()

        t = threading.Thread(target=produce, name="clicks", daemon=True)
        t.start()
        return t

    def group_consumed(self) -> float:
        total = 0.0
        for m in self.living():
            try:
                total += m.metrics().value("tact_events_consumed_total", topic="clickstream")
            except Exception:  # noqa: BLE001 - a member may be starting or stopping
                pass
        return total

    def wait_consumed(self, share: float, timeout: float = 120) -> None:
        want = share * len(self.events)
        wait_until(lambda: self.group_consumed() >= want, timeout, 0.2,
                   lambda: f"the group consumed {self.group_consumed()} of {want} clicks:\n"
                           + "\n".join(m.diagnostics() for m in self.members))

    def wait_owned(self, counts: dict, timeout: float = 90) -> None:
        """Each member in `counts` owns that many restored partitions."""
        def ok():
            for m, n in counts.items():
                mm = m.metrics()
                if mm.value("tact_partitions_assigned") != n or mm.value("tact_partitions_restoring") != 0:
                    return False
            return True

        wait_until(ok, timeout, 0.3, lambda: "partitions owned: " + ", ".join(
            f"{m.name}={m.metrics().value('tact_partitions_assigned')}" for m in counts))

    def ends(self) -> dict[str, dict[int, int]]:
        return {t: self.producer.end_offsets(self.inputs[t]) for t in ("clickstream", "profile_commands")}

    def unfinished(self, group_id: str, procs) -> str:
        """Why `group_id` has not finished yet ("" once every input is committed and nothing
        is pending in any of `procs`)."""
        for logical, per_part in self.ends().items():
            got = committed_offsets(self.broker.bootstrap, group_id, self.inputs[logical], range(PARTITIONS))
            # A partition without input has nothing to commit (its committed offset stays unset).
            behind = {p: (got.get(p, -1), per_part.get(p, 0)) for p in range(PARTITIONS)
                      if per_part.get(p, 0) > 0 and got.get(p, -1) < per_part[p]}
            if behind:
                return f"{logical} committed behind the end (committed, end): {behind}"
        for p in procs:
            m = p.metrics()
            for name in ("tact_outbox_pending", "tact_interleave_held", "tact_partitions_restoring"):
                if m.value(name) != 0:
                    return f"{p.name}: {name} = {m.value(name)}"
        return ""

    def finish(self, clicks: threading.Thread) -> None:
        clicks.join(120)
        assert self.done.is_set() and not self.errors, f"producing clicks failed: {self.errors}"
        for gid, procs in ((self.a.group_id, [self.a]), (self.group_id, self.living())):
            wait_until(lambda gid=gid, procs=procs: not self.unfinished(gid, procs), 180, 0.5,
                       lambda gid=gid, procs=procs: f"{gid} did not finish: {self.unfinished(gid, procs)}\n"
                       + "\n".join(p.diagnostics() for p in procs))

    def stop_all(self) -> None:
        for p in [self.a, *self.living()]:
            assert p.stop() == 0, f"{p.name} did not stop cleanly:\n{p.diagnostics()}"

    def compare(self) -> None:
        bootstrap = self.broker.bootstrap
        for topic, schema, id_field in (("decisions", "Decision", "decision_id"),
                                        ("suppressed", "SuppressedCandidate", "candidate_id")):
            ra = decode_records(schema, read_topic(bootstrap, self.topics_a[topic], timeout=60))
            rg = decode_records(schema, read_topic(bootstrap, self.topics_g[topic], timeout=60))
            assert len(ra) >= 20, f"the straight run made too few {topic} to compare: {len(ra)}"
            by_a = {d[id_field]: (r.key, d) for r, d in ra}
            assert len(by_a) == len(ra), f"the straight run repeated {topic}"
            ids_g = {d[id_field] for _, d in rg}
            missing, extra = set(by_a) - ids_g, ids_g - set(by_a)
            assert not missing and not extra, (
                f"{topic}: the group differs from the straight run: {len(missing)} missing "
                f"(e.g. {[by_a[i][1] for i in sorted(missing)[:2]]}), {len(extra)} extra "
                f"(e.g. {[d for _, d in rg if d[id_field] in extra][:2]})")
            for r, d in rg:
                key_a, d_a = by_a[d[id_field]]
                assert d == d_a and r.key == key_a, f"{topic}: {d[id_field]} re-sent with other content:\n{d_a}\n{d}"
            dups = sum(n - 1 for n in Counter(d[id_field] for _, d in rg).values())
            print(f"{topic}: {len(by_a)} in both runs; the group re-sent {dups} (identical)")

        def dead(topics):
            recs = decode_records("DeadLetter", read_topic(bootstrap, topics["dead_letter"], timeout=30))
            out = {}
            for _, d in recs:
                d = {k: v for k, v in d.items() if k != "dead_lettered_at"}
                out.setdefault((d["source_partition"], d["source_offset"]), d)
            return out

        dead_a, dead_g = dead(self.topics_a), dead(self.topics_g)
        assert len(dead_a) == len(self.poison), f"{len(dead_a)} dead letters for {len(self.poison)} poison records"
        assert dead_g == dead_a, "the group's dead letters differ from the straight run's"

        # Every customer's state, as each run's changelog holds it (whichever instance owns them).
        def both(cid):
            return (tact_inspect_changelog(self.a.config_path, cid),
                    tact_inspect_changelog(self.members[0].config_path, cid))

        with ThreadPoolExecutor(max_workers=4) as pool:
            states = dict(zip(self.customers, pool.map(both, self.customers)))
        assert all(sa is not None for sa, _ in states.values()), "the straight run holds every customer"
        diffs = [cid for cid, (sa, sg) in states.items() if sa != sg]
        assert not diffs, (f"{len(diffs)} customers' state differs, e.g. {diffs[0]}:\n"
                           f"A: {states[diffs[0]][0]}\nG: {states[diffs[0]][1]}")


@pytest.mark.parametrize("scenario", ["kill_without_restart", "scale_1_3_2", "disk_lost"])
def test_a_group_whose_members_change_mid_stream_decides_exactly_as_one_straight_run(tact, broker, scenario):
    run = Run(tact, broker, scenario.replace("_", "-"), SEED + hash(scenario) % 1000)
    run.a.start()
    run.send_commands()
    if scenario == "kill_without_restart":
        g1, g2, g3 = run.member("g1").start(), run.member("g2").start(), run.member("g3").start()
        run.wait_owned({g1: 2, g2: 2, g3: 2})
        clicks = run.stream_clicks(30)
        run.wait_consumed(0.3)
        g2.kill()  # and never comes back: g1 and g3 take its partitions over from the changelog
        run.finish(clicks)
        restored = sum(m.metrics().value("tact_restore_records_total") for m in (g1, g3))
        assert restored > 0, "the survivors restored the killed member's partitions from the changelog"
        assert sum(m.metrics().value("tact_partitions_assigned") for m in (g1, g3)) == PARTITIONS
    elif scenario == "scale_1_3_2":
        g1 = run.member("g1").start()
        run.wait_owned({g1: PARTITIONS})
        clicks = run.stream_clicks(36)
        run.wait_consumed(0.2)
        g2, g3 = run.member("g2").start(), run.member("g3").start()
        run.wait_owned({g1: 2, g2: 2, g3: 2})
        run.wait_consumed(0.55)
        assert g3.stop() == 0  # scaled down: its partitions move to g1 and g2
        run.wait_owned({g1: 3, g2: 3})
        run.finish(clicks)
    else:  # disk_lost
        g1, g2 = run.member("g1").start(), run.member("g2").start()
        run.wait_owned({g1: 3, g2: 3})
        clicks = run.stream_clicks(30)
        run.wait_consumed(0.35)
        assert g2.stop() == 0
        shutil.rmtree(g2.state_dir)
        g2.start()
        run.wait_owned({g1: 3, g2: 3})
        m = g2.metrics()
        records = m.value("tact_restore_records_total")
        seconds = m.value("tact_restore_duration_seconds_sum")
        assert records > 0 and m.value("tact_restore_duration_seconds_count") >= 3, m.text[-2000:]
        print(f"g2 restored {records:.0f} changelog records in {seconds:.2f}s "
              f"({records / max(seconds, 0.001):.0f} records/s)")
        run.finish(clicks)
        assert "restored in full" in g2.log_path.read_text(), "the empty disk was restored, not trusted"
    run.stop_all()
    run.compare()


def test_timers_and_a_release_reach_each_customer_exactly_once_while_partitions_move(tact, broker, tmp_path):
    """Abandoned-cart nudges, birthday reminders and a new release, all due or announced while the
    group grows (a release is being announced as partitions move) and loses a member for good."""
    from test_customer_control import CATALOG, at, command, item

    from harness import dump_toml, set_consent

    run = Run(tact, broker, "timers", SEED + 7)
    catalog = tmp_path / "catalog.toml"
    catalog.write_text("\n".join(dump_toml({"product": p}).replace("[product]", "[[product]]", 1) for p in CATALOG))
    overrides = {**CONFIG, "rules": {"catalog_file": str(catalog)}}
    run.a = tact(run.topics_a, overrides=overrides, name="A2", group_id=f"{run.tag}-A2")
    member = lambda name: run.members.append(  # noqa: E731
        tact(run.topics_g, overrides=overrides, name=name, group_id=run.group_id)) or run.members[-1]
    customers = [f"{run.tag}-t{i:02d}" for i in range(18)]
    cmds = []
    for c in customers:
        for purpose in ("PERSONALIZATION", "MARKETING", "REMINDERS"):
            cmds.append(set_consent(c, at(0, "09:00"), purpose=purpose))
        # Birthday March 20: the reminder is due March 13 10:00 (day 11).
        cmds.append(command(c, at(0, "09:01"), "UpsertRecipient",
                            {"recipient_id": "kid", "name": "Kid", "birthday": "03-20", "interests": ["toys"]}))
        cmds.append(command(c, at(0, "09:02"), "Follow", {"subject": "brickworks", "follow": True}))
    run.a.start()
    g1, g2 = member("g1").start(), member("g2").start()
    run.wait_owned({g1: 3, g2: 3})
    run.producer.send_commands(run.inputs["profile_commands"], cmds)
    run.producer.flush()
    # Day 0: everyone leaves something in the cart (a nudge is due two hours later).
    carts = [click(c, f"{c}-d0", at(0, "10:00"), "ADD_TO_CART", items=[item("toy-1", "toys")]) for c in customers]
    run.producer.send_clicks(run.inputs["clickstream"], carts)
    run.producer.flush()
    release = {"release_id": "castle-2026", "subject": "brickworks", "title": "Castle",
               "product_ids": ["toy-4"], "category": "toys", "released_at": at(2, "11:00")}
    g3 = None
    for day in range(1, 15):
        # Every customer is back each day at noon: event time moves past the nudges and reminders.
        run.producer.send_clicks(run.inputs["clickstream"],
                                 [click(c, f"{c}-d{day}", at(day, "12:00"), "PAGE_VIEW", page="/") for c in customers])
        run.producer.flush()
        if day == 3:
            run.producer.send(run.inputs["catalog"], "castle-2026", json.dumps(release).encode())
            run.producer.flush()
            g3 = member("g3").start()  # partitions move while the release is announced
        if day == 9:
            g1.kill()  # and never comes back
        time.sleep(1.5)
    sent_clicks = len(carts) + 14 * len(customers)
    for gid, procs in ((run.a.group_id, [run.a]), (run.group_id, [g2, g3])):
        wait_until(lambda gid=gid, procs=procs: not run.unfinished(gid, procs), 180, 0.5,
                   lambda gid=gid, procs=procs: f"{gid} did not finish: {run.unfinished(gid, procs)}")
    assert run.producer.count(run.inputs["clickstream"]) == sent_clicks

    def decisions(topics):
        recs = decode_records("Decision", read_topic(broker.bootstrap, topics["decisions"], timeout=60))
        return [d for _, d in recs]

    # The release is announced outside the input offsets: wait for its decisions. (An instance
    # that took partitions over after the release finds it announced there already: the progress
    # came with the partitions' changelog, so it does not read the release again.)
    run.a.wait_metric("tact_events_consumed_total", 1, topic="catalog")
    released = lambda topics: {d["customer_id"] for d in decisions(topics) if d["kind"] == "NEW_RELEASE"}  # noqa: E731
    wait_until(lambda: released(run.topics_a) == set(customers), 90, 1,
               lambda: f"the straight run announced to {len(released(run.topics_a))} of {len(customers)}")
    wait_until(lambda: released(run.topics_g) == set(customers), 90, 1,
               lambda: f"the group announced to {len(released(run.topics_g))} of {len(customers)}")
    for p in (run.a, g2, g3):
        assert p.stop() == 0

    da, dg = decisions(run.topics_a), decisions(run.topics_g)
    for kind in ("OUTBOUND_NUDGE", "GIFT_REMINDER", "NEW_RELEASE"):
        ids_a = {d["decision_id"]: d for d in da if d["kind"] == kind}
        per_customer = Counter(d["customer_id"] for d in ids_a.values())
        assert set(per_customer) == set(customers) and set(per_customer.values()) == {1}, \
            f"the straight run: one {kind} per customer, got {per_customer}"
        got = [d for d in dg if d["kind"] == kind]
        assert {d["decision_id"] for d in got} == set(ids_a), f"{kind}: the group's ids differ from the straight run's"
        assert all(d == ids_a[d["decision_id"]] for d in got), f"{kind}: a re-sent copy differs"
    ids = {d["decision_id"] for d in da}
    assert {d["decision_id"] for d in dg} == ids, "every decision, not only the timed ones"


def test_an_erased_customer_stays_gone_when_their_partition_moves(tact, broker):
    from harness import click, decode_single_object, files_containing, set_consent

    run = Run(tact, broker, "erase", SEED + 11)
    erased = f"{run.tag}-erase-me"
    others = [f"{run.tag}-keep-{i}" for i in range(12)]
    t0 = now_ms() - 3 * 3_600_000
    g = [run.member(f"g{i}").start() for i in (1, 2, 3)]
    run.wait_owned({m: 2 for m in g})
    cmds = [set_consent(c, t0) for c in [erased, *others]]
    run.producer.send_commands(run.inputs["profile_commands"], cmds)
    clicks = [click(c, f"{c}-s", t0 + i * 60_000, "PRODUCT_VIEW", category="shoes", product_id=f"shoe-of-{c}")
              for c in [erased, *others] for i in range(4)]
    run.producer.send_clicks(run.inputs["clickstream"], clicks)
    run.producer.flush()
    wait_until(lambda: not run.unfinished(run.group_id, g), 90, 0.5,
               lambda: f"the group did not finish: {run.unfinished(run.group_id, g)}")
    owner = [m for m in g if m.admin_get(f"/customers/{erased}")[0] == 200]
    assert len(owner) == 1, "exactly one instance holds the customer"
    owner = owner[0]
    status, body = next(m for m in g if m is not owner).admin_get(f"/customers/{erased}")
    assert status == 404 and "partitions_here" in body, body

    erase = {"command_id": f"{run.tag}-erase", "customer_id": erased, "issued_at": t0 + 30 * 60_000,
             "command": ("Erase", {"request_ref": "dsr-7"})}
    run.producer.send_commands(run.inputs["profile_commands"], [erase])
    run.producer.flush()
    receipts = read_topic(broker.bootstrap, run.topics_g["erasure_receipts"], min_count=1, timeout=60)
    assert len(receipts) == 1
    receipt = decode_single_object("ErasureReceipt", receipts[0].value)
    assert receipt["changelog_topic"] == run.topics_g["changelog"], receipt
    partition = receipt["changelog_partition"]

    # The owner leaves: the customer's partition moves to an instance that restores it from the
    # changelog (their earlier states, then the tombstone); then the owner comes back.
    assert owner.stop() == 0
    rest = [m for m in g if m is not owner]
    run.wait_owned({rest[0]: 3, rest[1]: 3})
    owner.start()
    wait_until(lambda: not run.unfinished(run.group_id, run.living()), 120, 0.5,
               lambda: f"the group did not finish: {run.unfinished(run.group_id, run.living())}")
    assert all(m.admin_get(f"/customers/{erased}")[0] == 404 for m in g), "no instance holds them"
    assert tact_inspect_changelog(g[0].config_path, erased) is None, "the changelog ends with their tombstone"
    assert tact_inspect_changelog(g[0].config_path, others[0]) is not None

    # The tombstone is on the changelog, in the partition the receipt names.
    log = read_topic(broker.bootstrap, run.topics_g["changelog"], timeout=60)
    theirs = [r for r in log if r.key == b"sc" + erased.encode()]
    assert theirs and theirs[-1].value is None and theirs[-1].partition == partition, \
        [(r.partition, r.offset, r.value is None) for r in theirs]

    # No instance's files hold the customer: every store opened once more (so RocksDB's manifest
    # no longer names keys of deleted files), each alone in a group of its own, where it restores
    # every partition from the changelog, the erased customer's old states and tombstone included.
    # (Alone, too, because tansu stops assigning a group whose members leave mid-rebalance.)
    for m in g:
        assert m.stop() == 0
    for m in g:
        m.group_id = unique(f"{run.tag}-reopen")
        for _ in range(2):  # restore and purge; then open once more, for the manifest
            m.start()
            wait_until(lambda: m.metrics().value("tact_partitions_assigned") == PARTITIONS
                       and m.metrics().value("tact_partitions_restoring") == 0, 90, 0.3,
                       f"{m.name} did not restore every partition alone")
            assert m.stop() == 0
    for m in g:
        assert files_containing(m.state_dir, erased.encode()) == [], f"{m.name} still holds the erased customer"
        assert files_containing(m.state_dir, f"shoe-of-{erased}".encode()) == []
    assert any(files_containing(m.state_dir, others[0].encode()) for m in g), "the scan does see kept customers"
