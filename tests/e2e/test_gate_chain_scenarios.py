"""The seed stories, end to end through the gate chain with the shipped policy.

Each test is one story from the seed texts (a fussy shopper who wants help when it helps and is
left alone otherwise). Events and profile commands go in through the broker, decisions and the
audit of suppressed candidates come back out through it and are checked down to reasons, gates
and reason codes.

Setup shared by every test:
  * tact runs with ``[rules] policy_file = <repo>/deploy/policy.toml`` (the shipped policy,
    version "retail-2026-11"; the harness's inline ``[policy]`` table is dropped) and, where a
    story needs one, a catalog TOML written to the test's temp dir.
  * Topics have ONE partition: timers (session end, abandoned cart) fire when the event-time
    watermark of the input partition passes them, so any later event moves every customer's
    timers (page views of two "clock" customers stand for "time passes": a partition's event time
    moves only where two customers agree).
  * ``pipeline.idle_timer_wall_clock_ms = 0``: only event time moves timers (event times are on a
    fixed day in March 2026, far from the wall clock).
  * Event times are in daytime UTC (the policy's quiet hours are 21:00-08:00, default zone UTC).
  * Consent commands are produced and seen consumed before any click (the two input topics are
    consumed concurrently).
  * "Settled" = tact consumed every input, has no unacknowledged output, and has committed the
    input offsets (it commits only after every output of those inputs is acknowledged).
"""

from __future__ import annotations

import datetime as _dt
import json
import re
import tomllib
from pathlib import Path

import pytest

from harness import (
    InputProducer,
    TactProcess,
    click,
    committed_offsets,
    decode_records,
    dump_toml,
    read_topic,
    run_tact_cli,
    set_consent,
    topic_set,
    unique,
    wait_until,
)

pytestmark = pytest.mark.timeout(120)

REPO_ROOT = Path(__file__).resolve().parents[2]
POLICY_FILE = REPO_ROOT / "deploy" / "policy.toml"
POLICY = tomllib.loads(POLICY_FILE.read_text())
POLICY_VERSION = POLICY["version"]

MIN = 60_000
HOUR = 60 * MIN
DAY = 24 * HOUR
TTL_MS = POLICY["decision_ttl_minutes"] * MIN
CART_AFTER_MS = POLICY["outbound"]["abandoned_cart_after_minutes"] * MIN
# Day 0 of every story: Tuesday 2026-03-10, 00:00 UTC.
DAY0 = int(_dt.datetime(2026, 3, 10, tzinfo=_dt.timezone.utc).timestamp() * 1000)


def at(day: int, hhmm: str, seconds: int = 0) -> int:
    h, m = (int(x) for x in hhmm.split(":"))
    return DAY0 + day * DAY + h * HOUR + m * MIN + seconds * 1000


def test_policy_preconditions():
    """What the stories below rely on in the shipped policy (fails loudly if the policy moves)."""
    assert POLICY_VERSION == "retail-2026-11"
    assert POLICY["consent_regime"] == "opt_in"
    assert POLICY["session_gap_minutes"] == 30
    assert POLICY["sensitivity"]["categories"]["health"] == "never_remember"
    assert POLICY["outbound"]["channel"] == "email"
    assert POLICY["proactive_help"]["channel"] == "chat"
    assert POLICY["quiet_hours"]["start"] == "21:00" and POLICY["quiet_hours"]["end"] == "08:00"
    assert POLICY["quiet_hours"]["default_time_zone"] == "UTC"
    assert POLICY["holdout"]["share"] == 0.0
    assert any(c.get("kind") == "proactive_help" and c["max"] == 1 and c["per"] == "session"
               for c in POLICY["fatigue"]["caps"])


# --------------------------------------------------------------------------------------------
# the shop: one tact (shipped policy, optional catalog) on fresh one-partition topics
# --------------------------------------------------------------------------------------------


class PolicyFileTact(TactProcess):
    """tact configured with ``[rules] policy_file`` instead of the harness's inline ``[policy]``."""

    def config(self) -> dict:
        cfg = super().config()
        cfg.pop("policy", None)  # policy_file replaces [policy]: do not leave a misleading copy
        return cfg


class Shop:
    def __init__(self, broker, tact_bin: Path, workdir: Path, catalog: list[dict] | None = None):
        self.broker = broker
        self.tag = unique("gate")
        self.topics = topic_set("gates")
        broker.create_topics(self.topics.values(), partitions=1)
        rules = {"policy_file": str(POLICY_FILE), "catalog_file": ""}
        if catalog is not None:
            path = workdir / "catalog.toml"
            path.write_text(catalog_toml(catalog))
            rules["catalog_file"] = str(path)
        self.tact = PolicyFileTact(workdir, broker.bootstrap, self.topics, name="tact-gates", tact_bin=tact_bin,
                                   overrides={"rules": rules, "pipeline": {"idle_timer_wall_clock_ms": 0}})
        self.producer = InputProducer(broker.bootstrap)
        self.events: list[dict] = []
        self.commands_sent: list[dict] = []
        self._n = 0
        self.decisions: list[dict] = []
        self.suppressed: list[dict] = []
        self.output_keys: list[tuple[bytes | None, str]] = []

    # ---- cast and input
    def cid(self, role: str) -> str:
        return f"{self.tag}-{role}"

    def ev(self, role: str, session: str, t: int, type: str, **fields) -> dict:
        cid = self.cid(role)
        self._n += 1
        return click(cid, f"{cid}-{session}", t, type, event_id=f"{cid}-e{self._n:03d}", **fields)

    def start(self) -> "Shop":
        self.tact.start()
        return self

    def consent(self, grants: list[tuple[str, str]], granted: bool = True) -> None:
        """SetConsent commands (role, purpose) in, issued before any story event (the earliest is a
        purchase three months back); returns once tact has consumed all of them."""
        cmds = [set_consent(self.cid(role), at(-120, "09:00"), purpose=purpose, granted=granted,
                            command_id=f"{self.cid(role)}-{purpose}-{granted}")
                for role, purpose in grants]
        self.producer.send_commands(self.topics["profile_commands"], cmds, fmt="json")
        self.producer.flush()
        self.commands_sent += cmds
        self.tact.wait_metric("tact_events_consumed_total", len(self.commands_sent), timeout=60,
                              topic="profile_commands")

    def clicks(self, events: list[dict]) -> None:
        """Click events in (in the given order), then wait until tact has settled."""
        self.producer.send_clicks(self.topics["clickstream"], events, fmt="avro_confluent")
        self.producer.flush()
        self.events += events
        self.settle()

    def settle(self, timeout: float = 60) -> None:
        self.tact.wait_idle({"clickstream": len(self.events), "profile_commands": len(self.commands_sent)},
                            timeout=timeout)
        ends = {t: self.producer.end_offsets(self.topics[t]) for t in ("clickstream", "profile_commands")}

        def committed() -> bool:
            for logical, want in ends.items():
                got = committed_offsets(self.broker.bootstrap, self.tact.group_id, self.topics[logical], want)
                if any(got.get(p, -1) < o for p, o in want.items()):
                    return False
            return True

        wait_until(committed, timeout, 0.2, lambda: f"tact did not commit its input offsets {ends}")

    # ---- output
    def read(self) -> "Shop":
        dec = decode_records("Decision", read_topic(self.broker.bootstrap, self.topics["decisions"], timeout=30))
        sup = decode_records("SuppressedCandidate",
                             read_topic(self.broker.bootstrap, self.topics["suppressed"], timeout=30))
        self.decisions = [d for _, d in dec]
        self.suppressed = [s for _, s in sup]
        self.output_keys = [(r.key, d["customer_id"]) for r, d in dec + sup]
        return self

    def decisions_of(self, role: str, kind: str | None = None) -> list[dict]:
        cid = self.cid(role)
        return [d for d in self.decisions if d["customer_id"] == cid and kind in (None, d["kind"])]

    def suppressed_of(self, role: str, kind: str | None = None) -> list[dict]:
        cid = self.cid(role)
        return [s for s in self.suppressed if s["customer_id"] == cid and kind in (None, s["kind"])]

    def summary(self) -> str:
        def short(x: dict) -> str:
            who = x["customer_id"].removeprefix(self.tag + "-")
            what = (f"{x['gate']}/{x['reason_code']}" if "gate" in x
                    else f"items={x['items']} reasons={[r['code'] for r in x['reasons']]}")
            return f"  {who} {x['kind']} {x['channel']} cause={x['cause_event_id'].removeprefix(self.tag + '-')} {what}"

        return ("decisions:\n" + "\n".join(map(short, self.decisions)) + "\naudit (suppressed):\n"
                + "\n".join(map(short, self.suppressed)))

    def diagnostics(self) -> str:
        return f"{self.summary()}\n\n{self.tact.diagnostics()}\n\n{self.broker.diagnostics()}"

    def close(self) -> None:
        self.tact.close()
        self.producer = None  # librdkafka handle goes now, not after the module's broker is gone


def catalog_toml(products: list[dict]) -> str:
    return "\n".join(dump_toml({"product": p}).replace("[product]", "[[product]]", 1) for p in products)


def test_the_generated_config_uses_the_shipped_policy_file_and_the_catalog(tact_bin, tmp_path):
    """The stories below run on the policy file, not on an inline [policy] (nor the embedded one)."""
    catalog = tmp_path / "catalog.toml"
    catalog.write_text(catalog_toml(WIDGET_CATALOG))
    proc = PolicyFileTact(tmp_path, "127.0.0.1:9", topic_set("cfg"), tact_bin=tact_bin,
                          overrides={"rules": {"policy_file": str(POLICY_FILE), "catalog_file": str(catalog)}})
    assert "policy" not in proc.config()
    res = run_tact_cli(["validate", "--config", str(proc.write_config())], tact_bin=tact_bin)
    assert res.returncode == 0, res.stdout + res.stderr
    assert f"policy = {POLICY_FILE} (version {POLICY_VERSION})" in res.stdout, res.stdout
    assert f"catalog = {catalog} ({len(WIDGET_CATALOG)} products)" in res.stdout, res.stdout


@pytest.fixture
def shop(tact_bin, broker, tmp_path):
    """A factory: ``shop(catalog=None)`` -> a started Shop; stopped (SIGKILL if need be) at teardown."""
    made: list[Shop] = []

    class Factory:
        def __call__(self, catalog: list[dict] | None = None) -> Shop:
            s = Shop(broker, tact_bin, tmp_path, catalog)
            made.append(s)
            return s.start()

        def diagnostics(self) -> str:
            return "\n\n".join(s.diagnostics() for s in made) or "<no shop started>"

    yield Factory()
    for s in made:
        s.close()


def assert_well_formed(shop: Shop, d: dict, cause: dict) -> None:
    """Fields every decision carries, checked against the event that caused it."""
    assert d["cause_event_id"] == cause["event_id"], f"cause of {d}"
    assert d["created_at"] == cause["event_time"], "created_at is the event time of the cause"
    assert d["expires_at"] == d["created_at"] + TTL_MS
    assert d["policy_version"] == POLICY_VERSION, "decisions carry the version of the shipped policy file"
    assert d["reasons"] and all(r["code"].strip() and r["detail"].strip() for r in d["reasons"]), d["reasons"]
    for key, customer in shop.output_keys:
        assert key == customer.encode(), f"output keyed {key!r}, not by customer id {customer}"


# --------------------------------------------------------------------------------------------
# 1. "When I'm scrolling down the FAQ because none of the titles really gets at my question,
#     that's when I need to be asked if I'd like to talk with a real person."
# --------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def faq_story(tact_bin, broker, tmp_path_factory):
    """Four visitors on the help pages; the run is shared by the two tests below."""
    s = Shop(broker, tact_bin, tmp_path_factory.mktemp("faq")).start()
    try:
        s.consent([("struggler", "PROACTIVE_CHAT"), ("skimmer", "PROACTIVE_CHAT"),
                   ("resolver", "PROACTIVE_CHAT")])  # "nochat" never consented to proactive chat

        def faq(role, session, t, page, deep=True):
            return s.ev(role, session, t, "FAQ_VIEW", page=page, scroll_depth=0.9 if deep else 0.2,
                        dwell_ms=45_000 if deep else 4_000)

        s.struggler = [
            s.ev("struggler", "s1", at(0, "10:00"), "PAGE_VIEW", page="/"),
            faq("struggler", "s1", at(0, "10:01"), "/help/returns"),
            faq("struggler", "s1", at(0, "10:03"), "/help/refunds"),       # 2nd deep read: offer chat
            faq("struggler", "s1", at(0, "10:05"), "/help/exchanges"),     # still stuck: no second offer
            faq("struggler", "s1", at(0, "10:07"), "/help/store-credit"),
            # the next visit (> 30 min gap), stuck again: a new session, a new offer
            s.ev("struggler", "s2", at(0, "14:00"), "PAGE_VIEW", page="/"),
            faq("struggler", "s2", at(0, "14:01"), "/help/warranty"),
            faq("struggler", "s2", at(0, "14:03"), "/help/repairs"),
        ]
        s.others = [
            s.ev("nochat", "s1", at(0, "10:00"), "PAGE_VIEW", page="/"),
            faq("nochat", "s1", at(0, "10:01"), "/help/returns"),
            faq("nochat", "s1", at(0, "10:03"), "/help/refunds"),
            s.ev("skimmer", "s1", at(0, "10:00"), "PAGE_VIEW", page="/"),
            faq("skimmer", "s1", at(0, "10:01"), "/help/returns", deep=False),
            faq("skimmer", "s1", at(0, "10:02"), "/help/refunds", deep=False),
            faq("skimmer", "s1", at(0, "10:03"), "/help/exchanges", deep=False),
            s.ev("resolver", "s1", at(0, "10:00"), "PAGE_VIEW", page="/"),
            faq("resolver", "s1", at(0, "10:01"), "/help/sizing"),
            s.ev("resolver", "s1", at(0, "10:02"), "PRODUCT_VIEW", category="shoes", product_id="shoe-7"),  # found it
            faq("resolver", "s1", at(0, "10:04"), "/help/delivery"),
        ]
        s.clicks(sorted(s.struggler + s.others, key=lambda e: e["event_time"]))
        s.read()
        yield s
    finally:
        s.close()


def test_faq_struggler_is_offered_chat_once_per_session(faq_story):
    s, st, others = faq_story, faq_story.struggler, faq_story.others
    offers = s.decisions_of("struggler", "PROACTIVE_HELP")
    assert [o["session_id"] for o in offers] == [st[0]["session_id"], st[5]["session_id"]], \
        f"expected one chat offer in each of the struggler's two sessions, got:\n{s.summary()}"
    for offer, cause in zip(offers, (st[2], st[7])):
        assert offer["channel"] == "CHAT"
        assert [r["code"] for r in offer["reasons"]] == ["faq_struggle"], offer["reasons"]
        assert offer["items"] == []
        assert_well_formed(s, offer, cause)
    # further help pages in the first session are held back by the once-per-session cap, never sent
    repeats = s.suppressed_of("struggler", "PROACTIVE_HELP")
    assert all(r["session_id"] == st[0]["session_id"] and r["gate"] == "FATIGUE" and r["reason_code"] == "cap_reached"
               for r in repeats), f"struggler's suppressed chat offers:\n{s.summary()}"

    assert s.decisions_of("nochat", "PROACTIVE_HELP") == [], "no proactive chat without PROACTIVE_CHAT consent"
    [held] = s.suppressed_of("nochat", "PROACTIVE_HELP")
    assert (held["channel"], held["gate"], held["reason_code"]) == ("CHAT", "CONSENT", "consent_missing"), held
    assert held["cause_event_id"] == others[2]["event_id"] and held["policy_version"] == POLICY_VERSION

    for calm in ("skimmer", "resolver"):
        assert s.decisions_of(calm, "PROACTIVE_HELP") == [] and s.suppressed_of(calm, "PROACTIVE_HELP") == [], \
            f"{calm} did not struggle (shallow reads / found a product): no chat candidate at all\n{s.summary()}"


def test_faq_struggle_is_audited_once_per_session_not_for_every_further_help_page(faq_story):
    """engine/mod.rs: "Candidates are proposed at most once per session and subject (a suppressed
    one included), so the audit trail records decisions, not repetitions." """
    s, st = faq_story, faq_story.struggler
    repeats = s.suppressed_of("struggler", "PROACTIVE_HELP")
    assert repeats == [], (
        "the chat offer was already made in this session (subject faq_struggle); the 3rd and 4th deep FAQ "
        f"reads ({st[3]['event_id']}, {st[4]['event_id']}) should not be proposed and audited again:\n{s.summary()}")


# --------------------------------------------------------------------------------------------
# 2. "When I'm wandering through a category of products not sure of which model I really want,
#     that's when I need to know which widgets are compatible with the high-capacity widgetizer
#     I bought three months ago."
# --------------------------------------------------------------------------------------------

WIDGET_CATALOG = [
    {"id": "wz-hc-9000", "category": "widgetizers", "name": "High-Capacity Widgetizer"},
    {"id": "wz-mini", "category": "widgetizers", "name": "Widgetizer Mini"},
    {"id": "gizmo-1", "category": "gizmos", "name": "Gizmo"},
    {"id": "widget-a", "category": "widgets", "name": "Widget A", "compatible_with": ["wz-hc-9000"]},
    {"id": "widget-basic", "category": "widgets", "name": "Basic Widget", "compatible_with": ["wz-mini"]},
    {"id": "widget-b", "category": "widgets", "name": "Widget B", "compatible_with": ["wz-hc-9000", "wz-mini"]},
    {"id": "widget-c", "category": "widgets", "name": "Widget C", "compatible_with": ["wz-hc-9000"]},
    {"id": "widget-d", "category": "widgets", "name": "Widget D", "compatible_with": ["wz-hc-9000"]},
    {"id": "widget-plain", "category": "widgets", "name": "Plain Widget"},
]


def test_undecided_category_browser_with_a_past_widgetizer_purchase_sees_compatible_widgets(shop):
    s = shop(catalog=WIDGET_CATALOG)
    s.consent([("owner", "PERSONALIZATION"), ("gizmo_owner", "PERSONALIZATION")])
    bought = at(-91, "11:00")  # three months ago

    def story(role: str, product: str) -> list[dict]:
        return [
            s.ev(role, "old", bought, "PURCHASE", items=[{"product_id": product, "category": None,
                                                          "quantity": 1, "unit_price_cents": 24_900}]),
            # today: in and out of the widgets category, undecided
            s.ev(role, "today", at(0, "10:00"), "CATEGORY_VIEW", category="widgets", page="/c/widgets"),
            s.ev(role, "today", at(0, "10:02"), "PRODUCT_VIEW", category="widgets", product_id="widget-plain",
                 dwell_ms=40_000),
            s.ev(role, "today", at(0, "10:04"), "PRODUCT_VIEW", category="widgets", product_id="widget-basic",
                 dwell_ms=35_000),
            s.ev(role, "today", at(0, "10:06"), "PRODUCT_VIEW", category="widgets", product_id="widget-plain",
                 dwell_ms=30_000),
        ]

    owner, control = story("owner", "wz-hc-9000"), story("gizmo_owner", "gizmo-1")
    s.clicks(sorted(owner + control, key=lambda e: e["event_time"]))
    s.read()

    acc = s.decisions_of("owner", "COMPATIBLE_ACCESSORY")
    assert len(acc) == 1, f"expected exactly one compatible-accessory decision today, got:\n{s.summary()}"
    d = acc[0]
    assert d["channel"] == "ON_SITE" and d["personalized"] is True
    assert d["items"] == ["widget-a", "widget-b", "widget-c"], \
        "the catalog's widgets that fit the widgetizer, in catalog order, at most max_items (3)"
    assert [r["code"] for r in d["reasons"]] == ["fits_your_purchase"], d["reasons"]
    assert "High-Capacity Widgetizer" in d["reasons"][0]["detail"], \
        f"the reason names what was bought: {d['reasons'][0]['detail']!r}"
    assert d["session_id"] == owner[1]["session_id"]
    cause = next((e for e in owner[1:] if e["event_id"] == d["cause_event_id"]), None)
    assert cause is not None, "caused by today's browsing of the widgets category"
    assert_well_formed(s, d, cause)

    assert s.decisions_of("gizmo_owner", "COMPATIBLE_ACCESSORY") == [] and \
        s.suppressed_of("gizmo_owner", "COMPATIBLE_ACCESSORY") == [], \
        f"nothing in widgets fits a gizmo: no compatible-accessory candidate\n{s.summary()}"


# --------------------------------------------------------------------------------------------
# 3. "I was just curious of what they had, read their offerings and closed the browser window.
#     [...] in the next day I receive an email [...] that they know I've accessed their website
#     looking at product X" - browsing alone is never a reason to contact someone.
# --------------------------------------------------------------------------------------------


def test_visitor_who_only_browsed_gets_no_email_the_next_day(shop):
    s = shop()
    s.consent([("browser", "PERSONALIZATION"), ("browser", "MARKETING"),
               ("unconsented", "PERSONALIZATION"),
               ("cart", "MARKETING")])

    def browse(role: str, start: str) -> list[dict]:
        return [
            s.ev(role, "s1", at(0, start), "EMAIL_CLICK", page="/c/gadgets"),
            s.ev(role, "s1", at(0, start, 20), "CATEGORY_VIEW", category="gadgets", page="/c/gadgets"),
            s.ev(role, "s1", at(0, start, 60), "PRODUCT_VIEW", category="gadgets", product_id="gadget-x",
                 dwell_ms=60_000),
            s.ev(role, "s1", at(0, start, 150), "PRODUCT_VIEW", category="gadgets", product_id="gadget-y",
                 dwell_ms=50_000),
            s.ev(role, "s1", at(0, start, 240), "PRODUCT_VIEW", category="gadgets", product_id="gadget-z",
                 dwell_ms=40_000),
        ]

    browser, unconsented = browse("browser", "10:00"), browse("unconsented", "10:10")
    # control: explicit intent (a cart left behind) does earn an email once the watermark passes it
    cart = [s.ev("cart", "s1", at(0, "10:20"), "PRODUCT_VIEW", category="kitchen", product_id="kettle-1"),
            s.ev("cart", "s1", at(0, "10:21"), "ADD_TO_CART", items=[{"product_id": "kettle-1", "category": "kitchen",
                                                                      "quantity": 1, "unit_price_cents": 3999}])]
    # time passes on the partition (two customers agree: one alone never moves it)
    next_day = [s.ev(who, "s1", at(1, "11:00"), "PAGE_VIEW", page="/") for who in ("clock", "clock2")]
    s.clicks(sorted(browser + unconsented + cart, key=lambda e: e["event_time"]) + next_day)
    s.read()

    for role in ("browser", "unconsented"):
        outbound = [d for d in s.decisions_of(role) if d["kind"] == "OUTBOUND_NUDGE" or d["channel"] in ("EMAIL", "PUSH")]
        assert outbound == [], f"{role} only browsed: no email (or any outbound contact)\n{s.summary()}"

    [email] = s.suppressed_of("browser", "OUTBOUND_NUDGE")
    assert (email["channel"], email["gate"], email["reason_code"]) == ("EMAIL", "CONTEXT", "browsing_only"), \
        f"with marketing consent the browse follow-up email is stopped by the context gate:\n{s.summary()}"
    assert email["cause_event_id"] in {e["event_id"] for e in browser}
    assert email["policy_version"] == POLICY_VERSION and email["detail"].strip()

    [email2] = s.suppressed_of("unconsented", "OUTBOUND_NUDGE")
    assert (email2["gate"], email2["reason_code"]) == ("CONSENT", "consent_missing"), \
        "without marketing consent the consent gate (first in the chain) stops it"

    # the same browse did count on site (so it was seen, just not used for contact)
    [rec] = s.decisions_of("browser", "RECOMMENDATION")
    assert rec["channel"] == "ON_SITE"

    # the control: the pipeline does send email on explicit intent once event time moves on
    [nudge] = s.decisions_of("cart", "OUTBOUND_NUDGE")
    assert nudge["channel"] == "EMAIL" and nudge["items"] == ["kettle-1"]
    assert [r["code"] for r in nudge["reasons"]] == ["abandoned_cart"]
    assert nudge["created_at"] == cart[1]["event_time"] + CART_AFTER_MS


# --------------------------------------------------------------------------------------------
# 4. "A customer walks back into a store" - but one who said no to personalization is greeted,
#    not profiled.
# --------------------------------------------------------------------------------------------


def test_opted_out_returning_customer_gets_a_plain_welcome_back_and_nothing_else(shop):
    s = shop(catalog=WIDGET_CATALOG)
    s.consent([("consenting", "PERSONALIZATION"), ("consenting", "PROACTIVE_CHAT")])
    s.consent([("opted_out", "PERSONALIZATION"), ("opted_out", "PROACTIVE_CHAT"), ("opted_out", "MARKETING")],
              granted=False)

    def visits(role: str) -> list[dict]:
        return [
            s.ev(role, "v1", at(-30, "11:00"), "PURCHASE", items=[{"product_id": "wz-hc-9000", "category": None,
                                                                   "quantity": 1, "unit_price_cents": 24_900}]),
            s.ev(role, "v2", at(0, "10:00"), "PAGE_VIEW", page="/"),
            s.ev(role, "v2", at(0, "10:01"), "CATEGORY_VIEW", category="books", page="/c/books"),
            s.ev(role, "v2", at(0, "10:02"), "PRODUCT_VIEW", category="books", product_id="book-1"),
            s.ev(role, "v2", at(0, "10:03"), "PRODUCT_VIEW", category="books", product_id="book-2"),
            s.ev(role, "v2", at(0, "10:04"), "PRODUCT_VIEW", category="books", product_id="book-3"),
            s.ev(role, "v3", at(0, "11:30"), "PAGE_VIEW", page="/"),  # back after 86 minutes
            s.ev(role, "v3", at(0, "11:31"), "CATEGORY_VIEW", category="widgets", page="/c/widgets"),
            s.ev(role, "v3", at(0, "11:32"), "PRODUCT_VIEW", category="books", product_id="book-4"),
            s.ev(role, "v3", at(0, "11:33"), "FAQ_VIEW", page="/help/returns", scroll_depth=0.9, dwell_ms=40_000),
            s.ev(role, "v3", at(0, "11:35"), "FAQ_VIEW", page="/help/refunds", scroll_depth=0.9, dwell_ms=40_000),
        ]

    opted, consenting = visits("opted_out"), visits("consenting")
    s.clicks(sorted(opted + consenting, key=lambda e: e["event_time"]))
    s.read()

    # the consenting twin shows what the same clicks can earn, so "nothing else" is not vacuous
    twin_kinds = {d["kind"] for d in s.decisions_of("consenting")}
    assert {"WELCOME_BACK", "RECOMMENDATION", "COMPATIBLE_ACCESSORY", "PROACTIVE_HELP"} <= twin_kinds, \
        f"control customer with consent should get personalized decisions:\n{s.summary()}"

    mine = s.decisions_of("opted_out")
    assert [d["kind"] for d in mine] == ["WELCOME_BACK", "WELCOME_BACK"], \
        f"an opted-out customer gets welcome backs (one per return) and nothing else:\n{s.summary()}"
    for wb, cause in zip(mine, (opted[1], opted[6])):
        assert wb["personalized"] is False, "a plain greeting: nothing learned about the customer"
        assert wb["items"] == []
        assert wb["channel"] == "ON_SITE"
        assert [r["code"] for r in wb["reasons"]] == ["returning_visitor"], wb["reasons"]
        assert_well_formed(s, wb, cause)

    audit = s.suppressed_of("opted_out")
    assert audit and all(a["gate"] == "CONSENT" for a in audit), \
        f"everything else the opted-out customer's clicks suggested is stopped by the consent gate:\n{s.summary()}"
    assert {(a["kind"], a["reason_code"]) for a in audit} >= {("RECOMMENDATION", "consent_denied"),
                                                             ("PROACTIVE_HELP", "consent_denied")}, s.summary()


# --------------------------------------------------------------------------------------------
# 5. "The subjects' response [...] was 'Yeah, right,' followed by their clicking to close the
#    personalized 'helpful shopping suggestions' window." Three dismissals: back off.
# --------------------------------------------------------------------------------------------


def test_customer_who_dismissed_recommendations_three_times_sees_none_for_the_backoff_period(shop):
    s = shop()
    s.consent([("fussy", "PERSONALIZATION")])
    f = POLICY["fatigue"]
    base_h, factor = f["backoff_base_hours"], f["backoff_factor"]

    def view(session, t, product):
        return s.ev("fussy", session, t, "PRODUCT_VIEW", category="shoes", product_id=product, page=f"/p/{product}")

    def dismiss(rec: dict, t: int) -> list[dict]:
        sess = rec["session_id"].removeprefix(s.cid("fussy") + "-")
        common = dict(decision_id=rec["decision_id"], suggestion_kind=rec["kind"])
        return [s.ev("fussy", sess, t - 30_000, "SUGGESTION_SHOWN", **common),
                s.ev("fussy", sess, t, "SUGGESTION_DISMISSED", **common)]

    # three rounds: a recommendation is shown and dismissed, each after the previous back-off ran out
    # (the first time it takes three views of the category; later the interest is already there)
    rounds = [
        ("d0", [s.ev("fussy", "d0", at(0, "10:00"), "CATEGORY_VIEW", category="shoes", page="/c/shoes"),
                view("d0", at(0, "10:01"), "shoe-1"), view("d0", at(0, "10:02"), "shoe-2")], at(0, "10:04")),
        ("d1", [view("d1", at(1, "11:00"), "shoe-3")], at(1, "11:02")),
        ("d3", [view("d3", at(3, "12:00"), "shoe-4")], at(3, "12:02")),
    ]
    shown: list[dict] = []
    dismissed_at = []
    for session, views, t_dismiss in rounds:
        s.clicks(views)
        recs = s.read().decisions_of("fussy", "RECOMMENDATION")
        assert len(recs) == len(shown) + 1, f"round {session}: expected a new recommendation\n{s.summary()}"
        shown.append(recs[-1])
        assert recs[-1]["cause_event_id"] == views[-1]["event_id"]
        s.clicks(dismiss(recs[-1], t_dismiss))
        dismissed_at.append(t_dismiss)

    quiet_until = dismissed_at[-1] + int(base_h * factor ** 2 * HOUR)  # 3rd dismissal: 24 h * 2 * 2 = 4 days
    assert quiet_until == at(7, "12:02")

    during = [view("d5", at(5, "10:00"), "shoe-20"), view("d5", at(5, "10:03"), "shoe-21"),
              s.ev("fussy", "d5", at(5, "10:05"), "CATEGORY_VIEW", category="shoes", page="/c/shoes"),
              view("d6", at(6, "18:00"), "shoe-22"), view("d6", at(6, "18:02"), "shoe-23"),
              view("d7", at(7, "12:00"), "shoe-24")]
    after = [view("d8", at(7, "12:40"), "shoe-25")]
    s.clicks(during + after)
    s.read()

    recs = s.decisions_of("fussy", "RECOMMENDATION")
    assert [r["decision_id"] for r in recs[:3]] == [r["decision_id"] for r in shown]
    in_backoff = [r for r in recs if dismissed_at[-1] < r["created_at"] < quiet_until]
    assert in_backoff == [], f"no recommendation during the 4-day back-off after 3 dismissals:\n{s.summary()}"

    held = s.suppressed_of("fussy", "RECOMMENDATION")
    assert [h["session_id"].removeprefix(s.cid("fussy") + "-") for h in held] == ["d5", "d6", "d7"], \
        f"one suppressed recommendation per session in the back-off period:\n{s.summary()}"
    for h, cause in zip(held, (during[0], during[3], during[5])):
        assert (h["gate"], h["reason_code"]) == ("FATIGUE", "backoff_after_dismissal"), h
        assert h["channel"] == "ON_SITE" and h["cause_event_id"] == cause["event_id"]
        assert h["policy_version"] == POLICY_VERSION and re.search(r"\b3\b", h["detail"]), \
            f"the detail should mention the 3 dismissals: {h['detail']!r}"

    # and once the back-off has run out, recommendations come back
    assert len(recs) == 4 and recs[3]["cause_event_id"] == after[0]["event_id"], \
        f"after the back-off a recommendation is shown again:\n{s.summary()}"
    assert_well_formed(s, recs[3], after[0])


# --------------------------------------------------------------------------------------------
# 6. "Are you going to follow them and lurk around trying to overhear intimate details of their
#    lives?" - a never_remember category leaves no trace.
# --------------------------------------------------------------------------------------------

HEALTH_PRODUCTS = ["hp-bp-monitor", "hp-antacid-20", "hp-cold-flu"]


def test_browsing_a_never_remember_category_leaves_no_trace_in_state_or_output(shop):
    catalog = [{"id": "hp-bp-monitor", "category": "health", "name": "Blood Pressure Monitor"},
               {"id": "hp-antacid-20", "category": "health", "name": "Antacid 20"},
               {"id": "hp-cold-flu", "category": "health", "name": "Cold & Flu"},
               {"id": "shoe-1", "category": "shoes"}, {"id": "shoe-2", "category": "shoes"},
               {"id": "shoe-3", "category": "shoes"}, {"id": "shoe-4", "category": "shoes"}]
    s = shop(catalog=catalog)
    s.consent([("patient", "PERSONALIZATION"), ("patient", "MARKETING"), ("patient", "PROACTIVE_CHAT")])
    cart_item = {"product_id": "hp-bp-monitor", "category": "health", "quantity": 1, "unit_price_cents": 5999}
    ev = [
        s.ev("patient", "v1", at(0, "10:00"), "PAGE_VIEW", page="/"),
        s.ev("patient", "v1", at(0, "10:01"), "CATEGORY_VIEW", category="health", page="/c/health"),
        s.ev("patient", "v1", at(0, "10:02"), "PRODUCT_VIEW", category="health", product_id="hp-bp-monitor",
             dwell_ms=40_000),
        s.ev("patient", "v1", at(0, "10:03"), "PRODUCT_VIEW", product_id="hp-cold-flu"),  # category from the catalog
        s.ev("patient", "v1", at(0, "10:04"), "PRODUCT_VIEW", category="health", product_id="hp-bp-monitor",
             dwell_ms=30_000),
        s.ev("patient", "v1", at(0, "10:05"), "ADD_TO_CART", items=[cart_item]),
        s.ev("patient", "v1", at(0, "10:06"), "PRODUCT_VIEW", category="health", product_id="hp-antacid-20"),
        s.ev("patient", "v1", at(0, "10:07"), "CATEGORY_VIEW", category="shoes", page="/c/shoes"),
        s.ev("patient", "v1", at(0, "10:08"), "PRODUCT_VIEW", category="shoes", product_id="shoe-1"),
        s.ev("patient", "v1", at(0, "10:09"), "PRODUCT_VIEW", category="shoes", product_id="shoe-2"),
        # back 2.5 h later (past the abandoned-cart time): health again, session left open at the stop
        s.ev("patient", "v2", at(0, "12:40"), "PAGE_VIEW", page="/"),
        s.ev("patient", "v2", at(0, "12:41"), "PRODUCT_VIEW", category="health", product_id="hp-antacid-20",
             dwell_ms=30_000),
        s.ev("patient", "v2", at(0, "12:42"), "PRODUCT_VIEW", product_id="hp-cold-flu"),
        s.ev("patient", "v2", at(0, "12:43"), "PRODUCT_VIEW", category="shoes", product_id="shoe-3"),
    ]
    s.clicks(ev)
    s.read()
    assert s.tact.stop() == 0, "graceful stop"

    res = run_tact_cli(["inspect", "--state-dir", str(s.tact.state_dir), "--customer", s.cid("patient")])
    assert res.returncode == 0, f"tact inspect exited {res.returncode}: {res.stderr[-2000:]}"
    stored = json.loads(res.stdout)["state"]
    # controls: state is there, the open session is in it, and an ordinary category is remembered
    assert stored["session"] is not None and "shoes" in res.stdout and "shoe-1" in res.stdout, res.stdout
    for trace in ["health", *HEALTH_PRODUCTS]:
        assert trace not in res.stdout.lower(), \
            f"{trace!r} is in the stored state of a customer who browsed a never_remember category:\n{res.stdout}"
    assert stored["cart"] is None, "a cart of never_remember items is not remembered either"

    mine = s.decisions_of("patient") + s.suppressed_of("patient")
    assert {d["kind"] for d in s.decisions_of("patient")} >= {"RECOMMENDATION", "WELCOME_BACK"}, s.summary()
    for rec in mine:
        text = json.dumps(rec).lower()
        for trace in ["health", *HEALTH_PRODUCTS]:
            assert trace not in text, f"output mentions {trace!r}: {rec}"
    assert s.decisions_of("patient", "OUTBOUND_NUDGE") == [], f"no email about any of this:\n{s.summary()}"
    add_to_cart = ev[5]["event_id"]
    assert [r for r in mine if r["cause_event_id"] == add_to_cart] == [], \
        f"no abandoned-cart candidate (not even a suppressed one) for a never_remember cart:\n{s.summary()}"

    # and the raw store holds none of it (state, outbox, WAL, SST files)
    leaked = []
    for f in s.tact.state_dir.rglob("*"):
        if f.is_file() and not f.name.startswith(("LOG", "OPTIONS")):
            data = f.read_bytes()
            leaked += [f"{f.name}: {t}" for t in HEALTH_PRODUCTS + ["health"] if t.encode() in data]
    assert leaked == [], f"never_remember traces in the state directory's files: {leaked}"


# --------------------------------------------------------------------------------------------
# 7. Global Privacy Control: the browser says "do not sell / market to me". It is absolute.
# --------------------------------------------------------------------------------------------


def test_gpc_on_an_event_stops_the_abandoned_cart_email(shop):
    s = shop()
    s.consent([("control", "MARKETING"), ("gpc", "MARKETING")])
    kettle = {"product_id": "kettle-1", "category": "kitchen", "quantity": 1, "unit_price_cents": 3999}

    def story(role: str, gpc_first: bool) -> list[dict]:
        return [
            s.ev(role, "s1", at(0, "10:00"), "PAGE_VIEW", page="/", gpc=gpc_first),
            s.ev(role, "s1", at(0, "10:02"), "PRODUCT_VIEW", category="kitchen", product_id="kettle-1"),
            s.ev(role, "s1", at(0, "10:03"), "ADD_TO_CART", items=[kettle]),
        ]

    control, gpc = story("control", False), story("gpc", True)
    s.clicks(sorted(control + gpc, key=lambda e: e["event_time"]))
    s.read()
    assert s.decisions_of("control", "OUTBOUND_NUDGE") == [], "not before the cart is 120 minutes old"
    # event time passes 12:03 (two customers agree: one alone never moves it)
    s.clicks([s.ev(who, "s1", at(0, "12:10"), "PAGE_VIEW", page="/") for who in ("clock", "clock2")])
    s.read()

    [nudge] = s.decisions_of("control", "OUTBOUND_NUDGE")
    assert nudge["channel"] == "EMAIL" and nudge["personalized"] is True
    assert nudge["items"] == ["kettle-1"]
    assert [r["code"] for r in nudge["reasons"]] == ["abandoned_cart"], nudge["reasons"]
    assert nudge["cause_event_id"] == control[2]["event_id"], "the cause is the last addition to the cart"
    assert nudge["created_at"] == control[2]["event_time"] + CART_AFTER_MS
    assert nudge["expires_at"] == nudge["created_at"] + TTL_MS
    assert nudge["policy_version"] == POLICY_VERSION

    assert s.decisions_of("gpc", "OUTBOUND_NUDGE") == [], f"GPC: no marketing email\n{s.summary()}"
    [held] = s.suppressed_of("gpc", "OUTBOUND_NUDGE")
    assert (held["channel"], held["gate"], held["reason_code"]) == ("EMAIL", "CONSENT", "gpc_opt_out"), held
    assert held["cause_event_id"] == gpc[2]["event_id"]
    assert held["created_at"] == gpc[2]["event_time"] + CART_AFTER_MS
    assert held["policy_version"] == POLICY_VERSION
