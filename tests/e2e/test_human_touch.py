"""The human touch, end to end through tansu: help hand-offs with context, answers from the FAQ,
chat on demand, "call me" with a due time and one escalation, detectors that tell a reader from a
lost visitor, one interruption budget, and gifts that take their browsing with them.

Setup as in test_gate_chain_scenarios.py (the shipped policy file, one-partition topics, event
time only; a partition's time moves where two customers agree, so two "clock" customers' page
views stand for "time passes"), plus the shipped example knowledge base
(``deploy/faq.example.toml``) as ``rules.faq_file``. Day 0 is Tuesday 2026-03-10; business hours
are the policy's Mon-Fri 09:00-18:00 UTC.

Decisions are decoded with fastavro against the shipped ``decision.avsc``, and once more with the
previous version (``schemas/history/decision.v1.avsc``) as the reader's schema: consumers that
have not upgraded still read new decisions of the kinds they know.
"""

from __future__ import annotations

import io
import json
from pathlib import Path

import fastavro
import pytest

from harness import committed_offsets, read_topic, wait_until
from test_gate_chain_scenarios import POLICY, Shop, at
from workload import callback_decision_id

pytestmark = pytest.mark.timeout(180)

REPO_ROOT = Path(__file__).resolve().parents[2]
FAQ_FILE = REPO_ROOT / "deploy" / "faq.example.toml"
MIN = 60_000
HOUR = 60 * MIN


def test_policy_preconditions():
    """What the stories rely on in the shipped policy."""
    cb = POLICY["callback"]
    assert cb["answer_within_minutes"] == 60
    assert cb["business_hours"] == {"time_zone": "UTC", "open": "09:00", "close": "18:00",
                                    "days": ["mon", "tue", "wed", "thu", "fri"]}
    assert POLICY["proactive_help"]["pingpong_min_returns"] == 2
    assert POLICY["fatigue"]["interruption_max_dismissals"] == 2


class HelpShop(Shop):
    """A Shop whose tact also loads the example knowledge base."""

    def __init__(self, broker, tact_bin, workdir):
        super().__init__(broker, tact_bin, workdir)
        self.tact.overrides["rules"]["faq_file"] = str(FAQ_FILE)

    def tick(self, t: int) -> None:
        """Event time passes: both clock customers are seen at ``t``."""
        self.clicks([self.ev("clock-1", "c", t, "PAGE_VIEW", page="/"),
                     self.ev("clock-2", "c", t, "PAGE_VIEW", page="/")])


@pytest.fixture
def help_shop(tact_bin, broker, tmp_path):
    shops: list[HelpShop] = []

    def make() -> HelpShop:
        s = HelpShop(broker, tact_bin, tmp_path)
        shops.append(s)
        return s.start()

    yield make
    for s in shops:
        s.close()


def context(d: dict) -> dict:
    """A decision's context (the harness decodes record unions as (name, record))."""
    c = d["context"]
    assert c is not None, f"no context: {d}"
    return c[1] if isinstance(c, tuple) else c


def old_reader_decodes(shop: HelpShop) -> list[dict]:
    """Every decision on the topic, decoded with decision.v1 as the reader's schema."""
    writer = fastavro.parse_schema(json.loads((REPO_ROOT / "schemas/decision.avsc").read_text()))
    reader = fastavro.parse_schema(json.loads((REPO_ROOT / "schemas/history/decision.v1.avsc").read_text()))
    out = []
    for r in read_topic(shop.broker.bootstrap, shop.topics["decisions"], timeout=30):
        assert r.value[:2] == b"\xc3\x01", "single-object framing"
        out.append(fastavro.schemaless_reader(io.BytesIO(r.value[10:]), writer, reader))
    return out


def test_a_lost_faq_reader_gets_help_with_the_pages_and_searches_tried_and_the_answer_that_fits(help_shop):
    shop = help_shop()
    shop.consent([("lost", "PROACTIVE_CHAT")])
    t = at(0, "11:00")
    shop.clicks([
        shop.ev("lost", "s1", t, "SEARCH", search_query="refund for my shoes", search_results=0),
        shop.ev("lost", "s1", t + MIN, "FAQ_VIEW", page="/help/delivery", scroll_depth=0.9),
        shop.ev("lost", "s1", t + 2 * MIN, "FAQ_VIEW", page="/help/payment", scroll_depth=0.95),
    ])
    shop.read()
    [help_] = shop.decisions_of("lost", "PROACTIVE_HELP")
    ctx = context(help_)
    assert ctx["detector"] == "faq_struggle", ctx
    assert ctx["pages"] == ["/help/delivery", "/help/payment"], ctx
    assert ctx["faq_entries"] == ["delivery", "payment"], ctx
    assert ctx["searches"] == [{"query": "refund for my shoes", "results": 0}], ctx
    answers = help_["suggested_answers"]
    assert answers and answers[0]["faq_id"] == "returns", answers
    assert answers[0]["page"] == "/help/returns" and "refund" in answers[0]["answer"], answers[0]
    assert all(a["faq_id"] not in ("delivery", "payment") for a in answers), "already read, not suggested"
    # A consumer still on the previous schema reads the same decision, without the new fields.
    [old] = [d for d in old_reader_decodes(shop) if d["decision_id"] == help_["decision_id"]]
    assert old["kind"] == "PROACTIVE_HELP" and "context" not in old and old["reasons"] == help_["reasons"]


def test_chat_on_demand_is_handed_off_right_after_dismissals_while_proactive_chat_is_held_back(help_shop):
    shop = help_shop()
    shop.consent([("asker", "PERSONALIZATION"), ("asker", "PROACTIVE_CHAT")])
    t = at(0, "12:00")
    shop.clicks([
        shop.ev("asker", "s1", t, "SEARCH", search_query="which size", search_results=1),
        shop.ev("asker", "s1", t + MIN, "SUGGESTION_DISMISSED", suggestion_kind="recommendation"),
        shop.ev("asker", "s1", t + 2 * MIN, "SUGGESTION_DISMISSED", suggestion_kind="recommendation"),
        shop.ev("asker", "s1", t + 3 * MIN, "CHAT_REQUESTED", page="/p/trail-runner"),
        shop.ev("asker", "s1", t + 4 * MIN, "FAQ_VIEW", page="/help/returns", scroll_depth=0.9),
        shop.ev("asker", "s1", t + 5 * MIN, "FAQ_VIEW", page="/help/warranty", scroll_depth=0.9),
    ])
    shop.read()
    [handoff] = shop.decisions_of("asker", "CHAT_HANDOFF")
    assert handoff["channel"] == "CHAT"
    assert context(handoff)["searches"] == [{"query": "which size", "results": 1}]
    assert [a["faq_id"] for a in handoff["suggested_answers"]][:1] == ["sizes"], handoff["suggested_answers"]
    assert not shop.decisions_of("asker", "PROACTIVE_HELP"), shop.summary()
    held = [(s["gate"], s["reason_code"]) for s in shop.suppressed_of("asker", "PROACTIVE_HELP")]
    assert held == [("FATIGUE", "interruption_budget")], shop.summary()
    assert not shop.suppressed_of("asker", "CHAT_HANDOFF")


def test_callbacks_are_due_in_business_hours_and_an_unanswered_one_escalates_exactly_once_across_a_kill(help_shop):
    shop = help_shop()
    afternoon, evening, answered = at(0, "14:00"), at(0, "22:00"), at(0, "14:05")
    shop.clicks([
        shop.ev("late", "s1", afternoon, "CALLBACK_REQUESTED", product_id="espresso-9"),
        shop.ev("night", "s1", evening, "CALLBACK_REQUESTED"),
        shop.ev("kept", "s1", answered, "CALLBACK_REQUESTED"),
    ])
    shop.read()
    [late] = shop.decisions_of("late", "CALLBACK")
    [night] = shop.decisions_of("night", "CALLBACK")
    [kept] = shop.decisions_of("kept", "CALLBACK")
    assert late["channel"] == "ROUTING" and late["items"] == ["espresso-9"]
    assert late["due_at"] == at(0, "15:00"), "asked at 14:00: due at 15:00"
    assert night["due_at"] == at(1, "10:00"), "asked at 22:00: due at opening + 60 min"
    assert any(r["code"] == "outside_business_hours" for r in night["reasons"]), night["reasons"]
    assert late["expires_at"] >= late["due_at"], "a callback stays valid until it is due"
    # The id is the core's deterministic one (the workload of the fault tests computes it too).
    assert kept["decision_id"] == callback_decision_id(kept["customer_id"], kept["cause_event_id"])
    # The contact system answers one in time (it names the callback decision).
    shop.clicks([shop.ev("kept", "s1", at(0, "14:30"), "CALLBACK_DONE", decision_id=kept["decision_id"])])
    m = shop.tact.metrics()
    assert m.value("tact_callback_answer_seconds_count") == 1
    assert m.value("tact_callbacks_done_total", outcome="on_time") == 1
    # Event time passes 15:00: the unanswered one escalates; tact is killed right after.
    shop.tick(at(0, "15:01"))
    shop.read()
    assert len(shop.decisions_of("late", "ESCALATION")) >= 1, shop.summary()
    assert shop.tact.metrics().value("tact_callback_breaches_total") == 1
    shop.tact.kill()
    shop.tact.start()
    # Time runs on to the next day, past the evening request's due time.
    later = [shop.ev(c, "c", t, "PAGE_VIEW", page="/")
             for t in (at(0, "16:00"), at(1, "10:30")) for c in ("clock-1", "clock-2")]
    shop.producer.send_clicks(shop.topics["clickstream"], later, fmt="avro_confluent")
    shop.producer.flush()
    shop.events += later
    ends = shop.producer.end_offsets(shop.topics["clickstream"])

    def committed() -> bool:
        got = committed_offsets(shop.broker.bootstrap, shop.tact.group_id, shop.topics["clickstream"], ends)
        return all(got.get(p, -1) >= o for p, o in ends.items())

    wait_until(committed, 90, 0.3, lambda: f"tact did not catch up after the restart: {shop.diagnostics()}")
    shop.read()
    ids = {d["decision_id"] for d in shop.decisions_of("late", "ESCALATION")}
    assert len(ids) == 1, f"one escalation (a re-send keeps its id): {shop.summary()}"
    [esc] = [d for d in shop.decisions_of("late", "ESCALATION")][:1]
    assert esc["due_at"] == late["due_at"] and esc["channel"] == "ROUTING"
    assert len({d["decision_id"] for d in shop.decisions_of("night", "ESCALATION")}) == 1, shop.summary()
    assert not shop.decisions_of("kept", "ESCALATION"), "answered in time: never escalated"


def test_a_careful_reader_of_six_products_is_left_alone_while_a_shopper_going_back_and_forth_is_offered_help(help_shop):
    shop = help_shop()
    shop.consent([("reader", "PROACTIVE_CHAT"), ("pingpong", "PROACTIVE_CHAT")])
    t = at(0, "10:00")
    reader = [shop.ev("reader", "s1", t + i * MIN, "PRODUCT_VIEW", category="cameras",
                      product_id=f"cam-{i}", dwell_ms=40_000) for i in range(1, 7)]
    pingpong = [shop.ev("pingpong", "s1", t + i * MIN, "PRODUCT_VIEW", category="cameras",
                        product_id=p, dwell_ms=40_000) for i, p in enumerate(["cam-1", "cam-2", "cam-1", "cam-2"])]
    shop.clicks(reader + pingpong)
    shop.read()
    assert not shop.decisions_of("reader", "PROACTIVE_HELP"), shop.summary()
    assert not shop.suppressed_of("reader", "PROACTIVE_HELP"), "not even proposed"
    [help_] = shop.decisions_of("pingpong", "PROACTIVE_HELP")
    assert [r["code"] for r in help_["reasons"]] == ["product_pingpong"]
    assert context(help_)["products_compared"] == ["cam-1", "cam-2"]


def test_a_gift_bought_after_viewing_it_never_shows_in_the_buyers_welcome_back(help_shop):
    shop = help_shop()
    shop.consent([("giver", "PERSONALIZATION"), ("self", "PERSONALIZATION")])
    t = at(0, "10:00")
    views = [shop.ev(who, "s1", t + i * MIN, "PRODUCT_VIEW", category="toys", product_id="lego-castle")
             for who in ("giver", "self") for i in range(3)]
    gift = shop.ev("giver", "s1", t + 4 * MIN, "PURCHASE", gift=True,
                   items=[{"product_id": "lego-castle", "category": "toys", "quantity": 1, "unit_price_cents": 4999}])
    back = [shop.ev(who, "s2", at(2, "10:00"), "PAGE_VIEW", page="/") for who in ("giver", "self")]
    shop.clicks(views + [gift] + back)
    shop.read()
    [giver] = shop.decisions_of("giver", "WELCOME_BACK")
    [own] = shop.decisions_of("self", "WELCOME_BACK")
    assert giver["items"] == [] and not giver["personalized"], f"the gift fed the buyer's profile: {giver}"
    assert own["items"] == ["lego-castle"] and own["personalized"], own
    for d in shop.decisions_of("giver"):
        if d["created_at"] > gift["event_time"]:
            assert "lego-castle" not in d["items"], f"the gift offered to the buyer afterwards: {d}"
