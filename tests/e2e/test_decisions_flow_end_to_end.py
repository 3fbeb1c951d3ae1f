"""Clickstream in, decisions out: what a visitor of the shop would notice.

One tact pipeline runs for the whole module against a scripted clickstream; each test checks
one behaviour of its output (decisions topic, audit topic, metrics, shutdown).

Cast (policy of the contract: opt_in consent, 30 min session gap, 3 category views):
  alice  PERSONALIZATION consent (every channel); views "shoes" 4 times in session 1 and comes back
         2 h later  -> one RECOMMENDATION (the 3rd view) and one WELCOME_BACK (session 2).
  bob    no consent; views "books" 3 times, comes back 45 min later and views once more
         -> only a plain WELCOME_BACK; the recommendation is suppressed (gate CONSENT).
  carol  consent for ON_SITE; comes back after 31 min -> WELCOME_BACK.
  dave   consent; new session id only 10 min after his last event -> nothing.
  erin   first visit only -> nothing.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field

import pytest

from harness import (
    Delivered,
    InputProducer,
    Metrics,
    TactProcess,
    click,
    decode_records,
    metrics_excerpt,
    now_ms,
    read_topic,
    set_consent,
    topic_set,
    unique,
)

pytestmark = pytest.mark.timeout(180)

MIN = 60_000
TTL_MS = 30 * MIN
POLICY_VERSION = "default-1"


@dataclass
class Scenario:
    tag: str
    t0: int
    customers: dict[str, str]
    events: list[dict] = field(default_factory=list)
    commands: list[dict] = field(default_factory=list)
    named: dict[str, dict] = field(default_factory=dict)  # label -> event

    def cid(self, who: str) -> str:
        return self.customers[who]

    def add(self, label: str | None, who: str, session: str, t: int, type: str, **kw) -> dict:
        ev = click(self.cid(who), f"{self.cid(who)}-{session}", t, type, event_id=f"{self.tag}-{who}-{len(self.events)}", **kw)
        self.events.append(ev)
        if label:
            self.named[label] = ev
        return ev


def build_scenario() -> Scenario:
    tag = unique("flow")
    # event times end a few minutes before now (decisions are not stale by the wall clock)
    t0 = (now_ms() - 3 * 60 * MIN) // 1000 * 1000
    sc = Scenario(tag, t0, {w: f"{tag}-{w}" for w in ("alice", "bob", "carol", "dave", "erin")})

    sc.commands = [
        set_consent(sc.cid("alice"), t0 - 5 * MIN, command_id=f"{tag}-cmd-alice"),
        set_consent(sc.cid("carol"), t0 - 5 * MIN, channel="ON_SITE", command_id=f"{tag}-cmd-carol"),
        set_consent(sc.cid("dave"), t0 - 5 * MIN, command_id=f"{tag}-cmd-dave"),
    ]

    # alice: session 1, four views of shoes; session 2 two hours later
    t = t0
    sc.add("alice_s1_first", "alice", "s1", t, "PAGE_VIEW", page="/")
    sc.add("alice_view1", "alice", "s1", t + 30_000, "CATEGORY_VIEW", category="shoes", page="/c/shoes")
    sc.add("alice_view2", "alice", "s1", t + 60_000, "PRODUCT_VIEW", category="shoes", product_id="shoe-100",
           page="/p/shoe-100")
    sc.add("alice_view3", "alice", "s1", t + 90_000, "PRODUCT_VIEW", category="shoes", product_id="shoe-200",
           page="/p/shoe-200")
    sc.add("alice_view4", "alice", "s1", t + 120_000, "PRODUCT_VIEW", category="shoes", product_id="shoe-300",
           page="/p/shoe-300")
    sc.add("alice_s2_first", "alice", "s2", t + 120_000 + 120 * MIN, "PAGE_VIEW", page="/")
    sc.add(None, "alice", "s2", t + 120_000 + 121 * MIN, "FAQ_VIEW", page="/help/returns", scroll_depth=0.5)

    # bob: no consent
    sc.add("bob_s1_first", "bob", "s1", t, "PAGE_VIEW", page="/")
    sc.add("bob_view1", "bob", "s1", t + 20_000, "CATEGORY_VIEW", category="books", page="/c/books")
    sc.add("bob_view2", "bob", "s1", t + 40_000, "PRODUCT_VIEW", category="books", product_id="book-1")
    sc.add("bob_view3", "bob", "s1", t + 60_000, "PRODUCT_VIEW", category="books", product_id="book-2")
    sc.add("bob_s2_first", "bob", "s2", t + 60_000 + 45 * MIN, "PAGE_VIEW", page="/")
    sc.add("bob_s2_view", "bob", "s2", t + 60_000 + 46 * MIN, "PRODUCT_VIEW", category="books", product_id="book-3")

    # carol: comes back after 31 minutes
    sc.add("carol_s1_first", "carol", "s1", t + 5 * MIN, "PAGE_VIEW", page="/")
    sc.add("carol_s1_last", "carol", "s1", t + 6 * MIN, "SEARCH", search_query="red dress", search_results=12)
    sc.add("carol_s2_first", "carol", "s2", t + 37 * MIN, "PAGE_VIEW", page="/")

    # dave: a new session id after only 10 minutes
    sc.add("dave_s1_first", "dave", "s1", t, "PAGE_VIEW", page="/")
    sc.add("dave_s2_first", "dave", "s2", t + 10 * MIN, "PAGE_VIEW", page="/")

    # erin: first visit
    sc.add("erin_1", "erin", "s1", t + 2 * MIN, "PAGE_VIEW", page="/")
    sc.add("erin_2", "erin", "s1", t + 3 * MIN, "CATEGORY_VIEW", category="garden", page="/c/garden")

    # production order: by event time (as a site would emit them)
    sc.events.sort(key=lambda e: e["event_time"])
    return sc


@dataclass
class FlowRun:
    scenario: Scenario
    tact: TactProcess
    topics: dict[str, str]
    delivered: list[Delivered]
    decisions: list  # (Record, dict)
    suppressed: list
    dead_letters: list
    metrics: Metrics
    exit_code: int | None
    stop_seconds: float

    def diagnostics(self) -> str:
        return self.tact.diagnostics()

    def decisions_of(self, who: str, kind: str | None = None) -> list[dict]:
        cid = self.scenario.cid(who)
        return [d for _, d in self.decisions if d["customer_id"] == cid and (kind is None or d["kind"] == kind)]

    def suppressed_of(self, who: str) -> list[dict]:
        cid = self.scenario.cid(who)
        return [s for _, s in self.suppressed if s["customer_id"] == cid]


@pytest.fixture(scope="module")
def flow(tact_bin, broker, tmp_path_factory):
    sc = build_scenario()
    topics = topic_set("flow")
    broker.create_topics(topics.values(), partitions=3)
    tact = TactProcess(tmp_path_factory.mktemp("flow"), broker.bootstrap, topics, name="tact-flow",
                       tact_bin=tact_bin)
    try:
        tact.start()
        producer = InputProducer(broker.bootstrap)
        producer.send_commands(topics["profile_commands"], sc.commands, fmt="json")
        producer.flush()
        tact.wait_metric("tact_events_consumed_total", len(sc.commands), timeout=60, topic="profile_commands")

        producer.send_clicks(topics["clickstream"], sc.events, fmt="avro_confluent")
        delivered = producer.flush()
        metrics = tact.wait_idle({"clickstream": len(sc.events), "profile_commands": len(sc.commands)}, timeout=90)

        decisions = decode_records("Decision", read_topic(broker.bootstrap, topics["decisions"], timeout=30))
        suppressed = decode_records("SuppressedCandidate",
                                    read_topic(broker.bootstrap, topics["suppressed"], timeout=30))
        dead = read_topic(broker.bootstrap, topics["dead_letter"], timeout=10)
        metrics = tact.metrics()
        t = time.monotonic()
        code = tact.stop()
        run = FlowRun(sc, tact, topics, delivered, decisions, suppressed, dead, metrics, code, time.monotonic() - t)
        yield run
    finally:
        tact.close()


# ------------------------------------------------------------------------------------------


def _reasons_ok(d: dict) -> bool:
    return bool(d["reasons"]) and all(r["code"].strip() and r["detail"].strip() for r in d["reasons"])


def test_consenting_customer_who_viewed_a_category_three_times_gets_a_recommendation_of_the_viewed_products(flow):
    sc = flow.scenario
    recs = flow.decisions_of("alice", "RECOMMENDATION")
    assert len(recs) == 1, (f"alice viewed 'shoes' 4 times in one session (consent granted): expected exactly one "
                            f"RECOMMENDATION (once per session per category set), got {recs}; all her decisions: "
                            f"{flow.decisions_of('alice')}")
    rec = recs[0]
    cause = sc.named["alice_view3"]
    assert rec["cause_event_id"] == cause["event_id"], "the 3rd view in the category triggers the recommendation"
    assert rec["items"] == ["shoe-200", "shoe-100"], "items: the products viewed in the category, most recent first"
    assert rec["personalized"] is True
    assert rec["channel"] == "ON_SITE"
    assert rec["session_id"] == cause["session_id"]
    assert rec["created_at"] == cause["event_time"], "created_at is the event time of the cause"
    assert _reasons_ok(rec), f"a recommendation must say why: {rec['reasons']}"


def test_returning_customer_gets_a_welcome_back_on_the_first_event_of_the_new_session(flow):
    sc = flow.scenario
    for who, first in (("alice", "alice_s2_first"), ("carol", "carol_s2_first")):
        wbs = flow.decisions_of(who, "WELCOME_BACK")
        assert len(wbs) == 1, f"{who} came back after a > 30 min gap: expected one WELCOME_BACK, got {wbs}"
        wb, cause = wbs[0], sc.named[first]
        assert wb["cause_event_id"] == cause["event_id"], f"{who}: the first event of the new session is the cause"
        assert wb["created_at"] == cause["event_time"]
        assert wb["session_id"] == cause["session_id"]
        assert wb["channel"] == "ON_SITE"
        assert _reasons_ok(wb), f"{who}: a welcome back must carry reasons: {wb['reasons']}"


def test_no_welcome_back_for_a_first_visit_or_after_a_short_gap(flow):
    assert flow.decisions_of("dave") == [], "dave's new session started only 10 min after his last event"
    assert flow.decisions_of("erin") == [], "erin was never seen before: nothing to welcome back"
    s1_first = flow.scenario.named["alice_s1_first"]["event_id"]
    assert all(d["cause_event_id"] != s1_first for d in flow.decisions_of("alice")), \
        "alice's very first event must not trigger a welcome back"


def test_customer_without_consent_gets_only_a_plain_welcome_back_and_never_a_recommendation(flow):
    sc = flow.scenario
    mine = flow.decisions_of("bob")
    assert [d["kind"] for d in mine] == ["WELCOME_BACK"], \
        f"bob has no PERSONALIZATION consent: only a plain welcome back is allowed, got {mine}"
    wb = mine[0]
    assert wb["personalized"] is False, "without consent the welcome back must not be personalized"
    assert wb["items"] == [], "without consent the welcome back must carry no items"
    assert wb["cause_event_id"] == sc.named["bob_s2_first"]["event_id"]
    assert wb["created_at"] == sc.named["bob_s2_first"]["event_time"]
    assert _reasons_ok(wb)


def test_recommendation_without_consent_is_audited_as_suppressed_by_the_consent_gate(flow):
    sc = flow.scenario
    cands = [s for s in flow.suppressed_of("bob") if s["kind"] == "RECOMMENDATION"]
    assert cands, (f"bob viewed 'books' 3 times without consent: expected a suppressed RECOMMENDATION on the audit "
                   f"topic; audit topic holds {[s for _, s in flow.suppressed]}")
    first = min(cands, key=lambda s: s["created_at"])
    cause = sc.named["bob_view3"]
    assert first["gate"] == "CONSENT"
    # No consent command was ever sent for this customer: "missing", not "denied".
    assert first["reason_code"] == "consent_missing"
    assert first["cause_event_id"] == cause["event_id"]
    assert first["created_at"] == cause["event_time"]
    assert first["channel"] == "ON_SITE"
    assert first["session_id"] == cause["session_id"]
    assert first["policy_version"] == POLICY_VERSION
    assert first["candidate_id"] and first["detail"].strip()
    per_session = {}
    for s in cands:
        per_session[s["session_id"]] = per_session.get(s["session_id"], 0) + 1
    assert all(n == 1 for n in per_session.values()), \
        f"a recommendation candidate is made once per session per category set: {per_session}"
    assert all(s["gate"] == "CONSENT" for s in cands)


def test_every_decision_names_its_cause_and_is_keyed_by_customer(flow):
    by_id = {e["event_id"]: e for e in flow.scenario.events}
    assert flow.decisions, "no decisions at all"
    ids = [d["decision_id"] for _, d in flow.decisions]
    assert len(ids) == len(set(ids)), f"duplicate decision ids in a clean run: {ids}"
    for rec, d in flow.decisions:
        assert rec.key == d["customer_id"].encode(), f"decision {d['decision_id']} keyed {rec.key!r}"
        cause = by_id.get(d["cause_event_id"])
        assert cause is not None, f"cause_event_id {d['cause_event_id']} is not an input event"
        assert cause["customer_id"] == d["customer_id"]
        assert d["created_at"] == cause["event_time"], "created_at = event time of the cause"
        assert d["expires_at"] == d["created_at"] + TTL_MS, \
            f"expires_at should be created_at + decision_ttl_minutes (30): {d}"
        assert d["policy_version"] == POLICY_VERSION
        assert _reasons_ok(d), f"decision without usable reasons: {d}"
    for rec, s in flow.suppressed:
        assert rec.key == s["customer_id"].encode()
        assert s["cause_event_id"] in by_id
    expected = {("alice", "RECOMMENDATION"), ("alice", "WELCOME_BACK"), ("bob", "WELCOME_BACK"),
                ("carol", "WELCOME_BACK")}
    who = {v: k for k, v in flow.scenario.customers.items()}
    got = sorted((who[d["customer_id"]], d["kind"]) for _, d in flow.decisions)
    assert got == sorted(expected), f"decisions made: {got}"
    assert flow.dead_letters == [], "valid input must not be dead-lettered"


def test_metrics_count_what_happened_without_customer_ids(flow):
    m = flow.metrics
    assert m.value("tact_events_consumed_total", topic="clickstream") == len(flow.scenario.events)
    assert m.value("tact_events_consumed_total", topic="profile_commands") == len(flow.scenario.commands)
    assert m.value("tact_decisions_total") == len(flow.decisions), metrics_excerpt(m)
    assert m.value("tact_suppressions_total") == len(flow.suppressed), metrics_excerpt(m)
    assert m.value("tact_outbox_pending") == 0
    assert m.value("tact_dead_lettered_total") == 0
    for name in ("tact_build_info", "tact_batch_duration_seconds_count", "tact_commits_total",
                 "tact_outbox_pending", "tact_store_size_bytes", "tact_delivery_errors_total"):
        assert m.has(name), f"{name} missing from /metrics:\n{metrics_excerpt(m)}"
    assert m.value("tact_delivery_errors_total") == 0
    assert m.value("tact_commits_total") >= 1
    for cid in flow.scenario.customers.values():
        assert cid not in m.text, f"customer id {cid} appears in /metrics"


def test_sigterm_shuts_the_pipeline_down_cleanly(flow):
    assert flow.exit_code == 0, f"tact run exited {flow.exit_code} after SIGTERM"
    assert flow.stop_seconds < 10 + 5, f"shutdown took {flow.stop_seconds:.1f}s (deadline 10 s)"
