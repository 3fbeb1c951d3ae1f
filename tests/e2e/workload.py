"""A deterministic shop's worth of input for the tests that compare a faulty run with a straight
one (tests/e2e/test_crash_recovery.py, tests/faults/matrix.py): customers with consent or
without, sessions of page, category and product views, searches, carts, purchases (some gifts),
FAQ reads, chat and callback requests (some callbacks answered by the contact system, the others
escalating on their timer), and profile commands spread over each customer's own activity."""

from __future__ import annotations

import random

from harness import click, set_consent

MIN = 60_000

CATALOG = {
    "shoes": [f"shoe-{i}" for i in range(8)],
    "books": [f"book-{i}" for i in range(8)],
    "garden": [f"garden-{i}" for i in range(6)],
    "audio": [f"audio-{i}" for i in range(6)],
    "kitchen": [f"kitchen-{i}" for i in range(6)],
    "toys": [f"toy-{i}" for i in range(6)],
}
EVENT_MIX = [("PAGE_VIEW", 22), ("CATEGORY_VIEW", 18), ("PRODUCT_VIEW", 30), ("SEARCH", 8), ("ADD_TO_CART", 7),
             ("PURCHASE", 3), ("FAQ_VIEW", 5), ("EMAIL_CLICK", 2), ("OTHER", 5)]


def generate(tag: str, rng: random.Random, t_end: int, n_customers: int = 20):
    """Deterministic input: (customers, consent commands, click events sorted by event time)."""
    customers = [f"{tag}-c{i:02d}" for i in range(n_customers)]
    commands, events = [], []
    t_base = t_end - 5 * 24 * 60 * MIN
    for i, cid in enumerate(customers):
        kind = i % 5
        ts = t_base - 60 * MIN
        if kind in (0, 1, 2):  # personalization consent (all channels / on-site)
            commands.append(set_consent(cid, ts, channel=None if kind != 1 else "ON_SITE",
                                        command_id=f"{cid}-consent"))
        elif kind == 3:  # granted, then withdrawn
            commands.append(set_consent(cid, ts, command_id=f"{cid}-consent"))
            commands.append(set_consent(cid, ts + MIN, granted=False, source="account_settings",
                                        command_id=f"{cid}-withdraw"))
        else:  # marketing only: no personalization
            commands.append(set_consent(cid, ts, purpose="MARKETING", command_id=f"{cid}-marketing"))

        t = t_base + rng.randint(0, 12 * 60 * MIN)
        favourite = rng.choice(sorted(CATALOG))
        for s in range(rng.randint(3, 6)):
            sid = f"{cid}-s{s}"
            for _ in range(rng.randint(15, 40)):
                type_ = rng.choices([k for k, _ in EVENT_MIX], [w for _, w in EVENT_MIX])[0]
                cat = favourite if rng.random() < 0.6 else rng.choice(sorted(CATALOG))
                prod = rng.choice(CATALOG[cat])
                kw = {"dwell_ms": rng.randint(500, 90_000)}
                if type_ == "PAGE_VIEW":
                    kw["page"] = rng.choice(["/", "/deals", "/new", f"/c/{cat}"])
                elif type_ == "CATEGORY_VIEW":
                    kw.update(category=cat, page=f"/c/{cat}")
                elif type_ == "PRODUCT_VIEW":
                    kw.update(category=cat, product_id=prod, page=f"/p/{prod}")
                elif type_ == "SEARCH":
                    kw.update(search_query=rng.choice(["red", "gift", "wireless", "size 42", "cheap"]),
                              search_results=rng.randint(0, 50))
                elif type_ in ("ADD_TO_CART", "PURCHASE"):
                    kw["items"] = [{"product_id": prod, "category": cat, "quantity": rng.randint(1, 3),
                                    "unit_price_cents": rng.randint(199, 19999)}]
                    kw["gift"] = type_ == "PURCHASE" and rng.random() < 0.2
                elif type_ == "FAQ_VIEW":
                    kw.update(page="/help/shipping", scroll_depth=round(rng.random(), 2))
                events.append(click(cid, sid, t, type_, event_id=f"{cid}-e{len(events):05d}", **kw))
                t += rng.randint(3_000, 150_000)
            # next session: mostly well after the 30 min gap, sometimes a new session id sooner
            t += rng.choice([rng.randint(31, 600), rng.randint(60, 3000), rng.randint(5, 25)]) * MIN
    # Seeded by the workload's shape (the tag is unique per run), so a seed gives the same asks.
    events += asks_for_help(customers, events, random.Random(f"help-{n_customers}-{len(events)}"))
    events.sort(key=lambda e: (e["event_time"], e["event_id"]))
    assert events[-1]["event_time"] < t_end + 30 * 24 * 60 * MIN
    return customers, commands, events


def stable_id(prefix: str, parts: list[str]) -> str:
    """tact-core's deterministic id (crates/tact-core/src/id.rs): two FNV-1a 64 passes."""
    prime, mask = 0x100000001B3, (1 << 64) - 1
    a, b = 0xCBF29CE484222325, 0x6C62272E07BB0142

    def feed(data: bytes) -> None:
        nonlocal a, b
        for byte in data:
            a = ((a ^ byte) * prime) & mask
            b = ((b ^ (((byte << 3) | (byte >> 5)) & 0xFF)) * prime) & mask

    feed(prefix.encode())
    for part in parts:
        feed(b"\xff")
        feed(part.encode())
    return f"{prefix}-{a:016x}{b:016x}"


def callback_decision_id(customer_id: str, request_event_id: str) -> str:
    """The id of the callback decision a CALLBACK_REQUESTED yields (what CALLBACK_DONE names)."""
    return stable_id("d", [customer_id, request_event_id, "callback", "routing", request_event_id])


def asks_for_help(customers: list[str], events: list[dict], rng: random.Random) -> list[dict]:
    """Every fourth customer asks for help once, between two of their events: in turn a call the
    contact system answers 20 minutes later, a call nobody answers (it escalates when the
    partition's time passes its due time), a chat. Drawn from their own random stream, so the
    rest of the workload is the same with or without them."""
    by_customer: dict[str, list[dict]] = {}
    for ev in events:
        by_customer.setdefault(ev["customer_id"], []).append(ev)
    out = []
    for i, cid in enumerate(customers):
        own = by_customer.get(cid, [])
        if i % 4 != 1 or len(own) < 10:
            continue
        # Like every event of the workload, at least 3 s from the customer's others (the fault
        # matrix delays events by up to 2 s and relies on each customer's order holding).
        times = [e["event_time"] for e in own]
        gaps = [k for k in range(3, len(own) - 3) if times[k + 1] - times[k] >= 6_000]
        if not gaps:
            continue
        k = rng.choice(gaps)
        t, sid = (times[k] + times[k + 1]) // 2, own[k]["session_id"]
        ask = (i // 4) % 3
        if ask == 2:
            out.append(click(cid, sid, t, "CHAT_REQUESTED", event_id=f"{cid}-chat", page="/help"))
            continue
        cat = rng.choice(sorted(CATALOG))
        req = click(cid, sid, t, "CALLBACK_REQUESTED", event_id=f"{cid}-call",
                    category=cat, product_id=rng.choice(CATALOG[cat]))
        out.append(req)
        if ask == 0:
            done = t + 20 * MIN
            while any(abs(x - done) < 3_000 for x in times):
                done += 3_500
            out.append(click(cid, sid, done, "CALLBACK_DONE", event_id=f"{cid}-called",
                             decision_id=callback_decision_id(cid, req["event_id"])))
    return out



def profile_commands(customers: list[str], events: list[dict], rng: random.Random) -> list[dict]:
    """Commands spread over the customers' own activity: consent toggles, exclusions, private
    categories, suggestions off, gift mode with a recipient, follows. Each lands between that
    customer's events in event time."""
    by_customer: dict[str, list[int]] = {}
    for ev in events:
        by_customer.setdefault(ev["customer_id"], []).append(ev["event_time"])
    cats = sorted(CATALOG)
    out = []
    for cid in customers:
        times = by_customer.get(cid, [])
        if len(times) < 10:
            continue
        picks = sorted(rng.sample(times[1:-1], 5))
        bodies = [
            ("SetConsent", {"purpose": "PERSONALIZATION", "channel": None, "granted": rng.random() < 0.7,
                            "source": "account_settings", "expires_at": None}),
            ("SetPreferences", {"excluded_categories": [rng.choice(cats)],
                                "private_categories": [rng.choice(cats)] if rng.random() < 0.3 else [],
                                "suggestions_enabled": rng.random() < 0.8}),
            ("UpsertRecipient", {"recipient_id": "kid", "name": "Kid", "birthday": "06-01",
                                 "interests": ["toys"]}),
            ("SetGiftMode", {"enabled": True, "recipient_id": "kid", "until": picks[3] + 45 * MIN}),
            ("Follow", {"subject": rng.choice(["brickworks", "tinkertoys"]), "follow": True}),
        ]
        for i, (t, (name, body)) in enumerate(zip(picks, bodies)):
            # 1 ms before an event: a distinct time, so event-time order is unambiguous
            out.append({"command_id": f"{cid}-k{i}", "customer_id": cid, "issued_at": t - 1,
                        "command": (name, body)})
    return out
