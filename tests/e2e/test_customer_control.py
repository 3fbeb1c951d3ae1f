"""Customer control, end to end: each profile command as the customer would notice it.

tansu and the tact binary run as separate processes; commands and events go in through the
broker, decisions are read back and decoded with fastavro, state is read with `tact inspect` and
the admin endpoint, and the raw RocksDB files are scanned.

Event times are fixed days in March 2026 and wall-clock timers are off, so timers (session end,
birthday reminders) move with event time only and every run is the same.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from harness import (InputProducer, click, decode_records, dump_toml, files_containing, read_topic, set_consent,
                     tact_inspect, topic_set, unique, wait_until)

pytestmark = pytest.mark.timeout(300)

MIN = 60_000
HOUR = 60 * MIN
DAY = 24 * HOUR
DAY0 = 1_772_409_600_000  # 2026-03-02 00:00 UTC

CATALOG = [
    {"id": f"toy-{i}", "category": "toys"} for i in range(1, 5)
] + [{"id": f"shoe-{i}", "category": "shoes"} for i in range(1, 5)] + [
    {"id": f"bag-{i}", "category": "handbags"} for i in range(1, 4)
]


def at(day: int, hhmm: str) -> int:
    h, m = (int(x) for x in hhmm.split(":"))
    return DAY0 + day * DAY + h * HOUR + m * MIN


def command(cid: str, t: int, name: str, body: dict, command_id: str | None = None) -> dict:
    return {"command_id": command_id or unique("cmd"), "customer_id": cid, "issued_at": t,
            "command": (name, body)}


def item(product: str, category: str) -> dict:
    return {"product_id": product, "category": category, "quantity": 1, "unit_price_cents": 1999}


class Story:
    """One tact over fresh topics, a catalog file, and helpers to feed it and read what it did."""

    def __init__(self, tact, broker, tmp_path: Path, partitions: int = 1, overrides: dict | None = None):
        self.broker = broker
        self.topics = topic_set("control")
        broker.create_topics(self.topics.values(), partitions=partitions)
        catalog = tmp_path / "catalog.toml"
        catalog.write_text("\n".join(dump_toml({"product": p}).replace("[product]", "[[product]]", 1)
                                     for p in CATALOG))
        base = {"rules": {"catalog_file": str(catalog)},
                "pipeline": {"idle_timer_wall_clock_ms": 0},
                # Plain files: a test searches them for what must be gone (LZ4 would hide it).
                "state": {"compression": "none"}}
        self.tact = tact(self.topics, overrides={**base, **(overrides or {})})
        self.producer = InputProducer(broker.bootstrap)
        self.sent = {"clickstream": 0, "profile_commands": 0}
        self.tag = unique("cc")

    def start(self) -> None:
        """(Re)start tact; its consumption counters start over with the process."""
        self.sent = {"clickstream": 0, "profile_commands": 0}
        self.tact.start()

    def cid(self, role: str) -> str:
        return f"{self.tag}-{role}"

    def commands(self, cmds: list[dict]) -> None:
        self.producer.send_commands(self.topics["profile_commands"], cmds)
        self.producer.flush()
        self.sent["profile_commands"] += len(cmds)

    def clicks(self, events: list[dict]) -> None:
        self.producer.send_clicks(self.topics["clickstream"], events)
        self.producer.flush()
        self.sent["clickstream"] += len(events)

    def settle(self) -> None:
        self.tact.wait_idle(dict(self.sent))

    def decisions(self, kind: str | None = None) -> list[dict]:
        recs = read_topic(self.broker.bootstrap, self.topics["decisions"], timeout=20)
        return [d for _, d in decode_records("Decision", recs) if kind in (None, d["kind"])]

    def suppressed(self) -> list[dict]:
        recs = read_topic(self.broker.bootstrap, self.topics["suppressed"], timeout=20)
        return [s for _, s in decode_records("SuppressedCandidate", recs)]


def views(story: Story, role: str, session: str, day: int, category: str, products: list[str]) -> list[dict]:
    cid = story.cid(role)
    return [click(cid, f"{cid}-{session}", at(day, "12:00") + i * MIN, "PRODUCT_VIEW",
                  category=category, product_id=p) for i, p in enumerate(products)]


def test_an_exclusion_beats_an_inferred_interest_and_suggestions_off_silences_recommendations(tact, broker, tmp_path):
    s = Story(tact, broker, tmp_path)
    s.start()
    roles = ["control", "excluder", "silent"]
    s.commands([set_consent(s.cid(r), at(0, "09:00")) for r in roles])
    # The excluder has already shown an interest in shoes, then says "no shoes".
    s.clicks(views(s, "excluder", "s0", 0, "shoes", ["shoe-1", "shoe-2"]))
    s.commands([
        command(s.cid("excluder"), at(0, "13:00"), "SetPreferences", {"excluded_categories": ["shoes"]}),
        command(s.cid("silent"), at(0, "13:00"), "SetPreferences", {"suggestions_enabled": False}),
    ])
    s.settle()
    for r in roles:
        s.clicks(views(s, r, "s1", 1, "shoes", ["shoe-1", "shoe-2", "shoe-3", "shoe-4"]))
    s.settle()

    recs = s.decisions("RECOMMENDATION")
    who = {d["customer_id"] for d in recs}
    assert s.cid("control") in who, f"the control customer gets a shoe recommendation: {recs}"
    assert s.cid("excluder") not in who and s.cid("silent") not in who, recs
    reasons = {(x["customer_id"], x["reason_code"]) for x in s.suppressed() if x["kind"] == "RECOMMENDATION"}
    assert (s.cid("silent"), "suggestions_off") in reasons, reasons
    # inspect explains the exclusion as stated, next to the interest it overrides.
    status, body = s.tact.admin_get(f"/customers/{s.cid('excluder')}")
    assert status == 200, body
    view = json.loads(body)
    assert view["preferences"]["excluded_categories"] == ["shoes"]
    assert view["preferences"]["provenance"] == "stated"
    inferred = [i for i in view["interests"] if i["provenance"] == "inferred"]
    assert inferred and inferred[0]["category"] == "shoes" and inferred[0]["from_events"], view["interests"]
    assert s.tact.admin_get("/customers/nobody-at-all")[0] == 404
    assert s.tact.stop() == 0


def test_a_private_category_is_gone_from_inspect_and_from_the_state_files(tact, broker, tmp_path):
    s = Story(tact, broker, tmp_path)
    s.start()
    cid = s.cid("shy")
    s.commands([set_consent(cid, at(0, "09:00"))])
    s.clicks(views(s, "shy", "s1", 1, "handbags", ["bag-1", "bag-2"])
             + views(s, "shy", "s1b", 1, "shoes", ["shoe-3"]))
    s.settle()
    status, body = s.tact.admin_get(f"/customers/{cid}")
    assert status == 200 and "bag-1" in body, "before: the interest is held (and shown)"

    s.commands([command(cid, at(1, "14:00"), "SetPreferences", {"private_categories": ["handbags"]})])
    s.settle()
    status, body = s.tact.admin_get(f"/customers/{cid}")
    assert status == 200 and "handbags" in body  # named only as the stated preference
    view = json.loads(body)
    assert "bag-" not in body, body
    assert all(i.get("category") != "handbags" for i in view["interests"]), view["interests"]
    assert view["preferences"]["private_categories"] == ["handbags"]
    # Later events in it leave no trace either.
    s.clicks(views(s, "shy", "s2", 2, "handbags", ["bag-3"]))
    s.settle()
    assert s.tact.stop() == 0
    s.start()  # an open rolls RocksDB's manifest (it may name deleted keys until then)
    assert s.tact.stop() == 0
    after = tact_inspect(s.tact.state_dir, cid)
    assert after is not None and "bag-" not in json.dumps(after)
    for product in ("bag-1", "bag-2", "bag-3"):
        assert files_containing(s.tact.state_dir, product.encode()) == [], product
    assert files_containing(s.tact.state_dir, b"shoe-3"), "the scan does see what the store keeps"


def test_a_gift_bought_in_gift_mode_is_listed_under_the_recipient_and_leaves_recommendations_alone(tact, broker, tmp_path):
    s = Story(tact, broker, tmp_path)
    s.start()
    buyer, control = s.cid("buyer"), s.cid("control")
    s.commands([set_consent(c, at(0, "09:00")) for c in (buyer, control)] + [
        command(buyer, at(0, "09:01"), "UpsertRecipient",
                {"recipient_id": "nephew", "name": "Sam", "birthday": "2018-09-14", "interests": ["toys"]}),
        command(buyer, at(1, "11:00"), "SetGiftMode",
                {"enabled": True, "recipient_id": "nephew", "until": at(1, "18:00")}),
    ])
    s.settle()
    for role, who in (("buyer", buyer), ("control", control)):
        evs = views(s, role, "s1", 1, "toys", ["toy-1", "toy-2", "toy-3", "toy-4"])
        evs.append(click(who, f"{who}-s1", at(1, "12:30"), "PURCHASE", items=[item("toy-2", "toys")]))
        s.clicks(evs)
    s.settle()

    recs = s.decisions("RECOMMENDATION")
    assert any(d["customer_id"] == control for d in recs), f"the same browsing, not as a gift, recommends: {recs}"
    assert not any(d["customer_id"] == buyer for d in recs), f"gift shopping fed the buyer's suggestions: {recs}"
    assert s.tact.stop() == 0
    view = tact_inspect(s.tact.state_dir, buyer)
    assert not any(i.get("category") == "toys" for i in view["interests"]), view["interests"]
    assert view["purchases"] == [], "a gift is not the buyer's own purchase"
    nephew = view["recipients"][0]
    assert [g["product_id"] for g in nephew["gifts"]] == ["toy-2"]
    assert nephew["gifts"][0]["provenance"] == "gift_recorded"
    assert nephew["looked_at_for_them"][0]["category"] == "toys"


def test_a_birthday_reminder_fires_once_at_the_right_time_across_a_crash(tact, broker, tmp_path):
    s = Story(tact, broker, tmp_path)
    s.start()
    cid, clock, clock2 = s.cid("aunt"), s.cid("clock"), s.cid("clock2")

    def tick(*whens):
        # Two customers move the partition's event time (one alone never does).
        return [click(who, f"{who}-{w}", w) for w in whens for who in (clock, clock2)]
    s.commands([
        set_consent(cid, at(0, "09:00")),
        set_consent(cid, at(0, "09:00"), purpose="REMINDERS"),
        # Birthday March 20: with the shipped 7 days' notice at 10:00 (UTC here), due March 13 10:00.
        command(cid, at(0, "09:05"), "UpsertRecipient",
                {"recipient_id": "mia", "name": "Mia", "birthday": "03-20", "interests": ["toys"]}),
        command(cid, at(0, "09:06"), "SetGiftMode", {"enabled": True, "recipient_id": "mia",
                                                      "until": at(0, "18:00")}),
    ])
    s.clicks([click(cid, f"{cid}-s1", at(0, "10:00"), "PURCHASE", items=[item("toy-1", "toys")])])
    s.settle()
    timers = json.loads(s.tact.admin_get(f"/customers/{cid}")[1])["pending_timers"]
    reminder = [t for t in timers if t["kind"] == "birthday_reminder"]
    assert reminder == [{"kind": "birthday_reminder", "due": "2026-03-13T10:00:00.000Z", "about": "mia"}], timers

    # Other customers' events move the partition's event time; a crash in between.
    s.clicks(tick(at(5, "12:00")))
    s.settle()
    s.tact.kill()
    s.start()
    s.clicks(tick(at(11, "09:59")))
    s.settle()
    assert s.decisions("GIFT_REMINDER") == [], "not before it is due"
    s.clicks(tick(at(11, "10:30"), at(12, "10:30")))
    s.settle()
    s.tact.kill()
    s.start()
    s.clicks(tick(at(14, "10:30")))
    s.settle()
    reminders = s.decisions("GIFT_REMINDER")
    # A record re-sent after a crash is the same record (same id, same content): still one reminder.
    assert len({d["decision_id"] for d in reminders}) == 1, f"exactly one reminder: {reminders}"
    assert all(d == reminders[0] for d in reminders), reminders
    r = reminders[0]
    assert r["customer_id"] == cid and r["channel"] == "EMAIL"
    assert r["created_at"] == at(11, "10:00"), "sent at its due time, in event time"
    assert "toy-1" not in r["items"] and r["items"] == ["toy-2", "toy-3", "toy-4"], r["items"]
    assert "Mia's birthday is on March 20" in r["reasons"][0]["detail"]
    assert s.tact.stop() == 0


def test_a_new_release_reaches_every_opted_in_follower_exactly_once_across_partitions(tact, broker, tmp_path):
    s = Story(tact, broker, tmp_path, partitions=3)
    s.start()
    fans = [s.cid(f"fan{i}") for i in range(24)]
    quiet = [s.cid(f"quiet{i}") for i in range(6)]       # follow, no marketing consent
    gone = [s.cid(f"gone{i}") for i in range(3)]         # followed, then unfollowed
    others = [s.cid(f"other{i}") for i in range(4)]      # consent, follow someone else
    follow = lambda c, subject, on, t: command(c, t, "Follow", {"subject": subject, "follow": on})  # noqa: E731
    cmds = []
    for c in fans + gone + others:
        cmds.append(set_consent(c, at(0, "09:00"), purpose="MARKETING"))
    for c in fans + quiet + gone:
        cmds.append(follow(c, "brickworks", True, at(0, "09:01")))
    cmds += [follow(c, "brickworks", False, at(0, "09:02")) for c in gone]
    cmds += [follow(c, "tinkertoys", True, at(0, "09:01")) for c in others]
    s.commands(cmds)
    s.settle()
    release = {"release_id": "castle-2026", "subject": "brickworks", "title": "Castle",
               "product_ids": ["toy-4"], "category": "toys", "released_at": at(2, "11:00")}
    s.producer.send(s.topics["catalog"], "castle-2026", json.dumps(release).encode())
    s.producer.flush()
    wait_until(lambda: len(s.decisions("NEW_RELEASE")) >= len(fans), 60, 0.5,
               lambda: f"new_release decisions: {len(s.decisions('NEW_RELEASE'))}")
    s.tact.wait_metric("tact_events_consumed_total", 1, topic="catalog")
    # A restart re-reads nothing it already announced.
    assert s.tact.stop() == 0
    s.start()
    s.clicks([click(fans[0], f"{fans[0]}-later", at(3, "10:00"))])
    s.settle()
    got = s.decisions("NEW_RELEASE")
    # Exactly once: one decision id per follower, and any copy re-sent after the restart identical.
    ids = {d["decision_id"]: d for d in got}
    assert sorted(d["customer_id"] for d in ids.values()) == sorted(fans), "each opted-in follower, nobody else"
    assert all(ids[d["decision_id"]] == d for d in got)
    assert all(d["items"] == ["toy-4"] and d["channel"] == "EMAIL" for d in got)
    audited = {x["customer_id"]: x["reason_code"] for x in s.suppressed() if x["kind"] == "NEW_RELEASE"}
    assert audited == {c: "consent_missing" for c in quiet}, audited
    parts = {r.partition for r in read_topic(s.broker.bootstrap, s.topics["profile_commands"], timeout=20)}
    assert len(parts) == 3, "the followers really are spread over the partitions"
    assert s.tact.stop() == 0


def test_a_command_is_applied_at_its_event_time_between_the_events_around_it(tact, broker, tmp_path):
    """Kafka Streams style: a consent given at 12:05 counts for the views after it, not the ones
    before, though all the views reached the broker before the command did."""
    s = Story(tact, broker, tmp_path, overrides={"input": {"interleave_wait_ms": 2000}})
    cid = s.cid("late-yes")
    evs = [click(cid, f"{cid}-s1", at(1, "12:00") + i * MIN, "PRODUCT_VIEW", category="shoes",
                 product_id=f"shoe-{1 + i % 4}", event_id=f"{cid}-e{i}") for i in range(10)]
    s.start()
    s.clicks(evs)
    s.commands([set_consent(cid, at(1, "12:05") - 1)])
    s.settle()
    assert s.tact.stop() == 0
    view = tact_inspect(s.tact.state_dir, cid)
    shoes = [i for i in view["interests"] if i.get("category") == "shoes" and i["provenance"] == "inferred"]
    assert shoes and shoes[0]["views"] == 5, view["interests"]
    learned_from = set(shoes[0]["from_events"])
    assert learned_from <= {f"{cid}-e{i}" for i in range(5, 10)}, learned_from
