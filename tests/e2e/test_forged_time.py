"""One customer's timestamps never move time for anyone else. Before, a single event stamped 2150
(accepted: the valid range is 2000-2200) moved its partition's event time a century on, which fired
every pending timer there at once: other customers' sessions ended, carts were nudged early.

Runs against tansu and the tact binary; state read with `tact inspect`.
"""

from __future__ import annotations

import pytest

from harness import click, now_ms, read_topic, set_consent, tact_inspect, topic_set, unique, decode_records

pytestmark = pytest.mark.timeout(180)

MIN = 60_000
YEAR_2150 = 5_680_281_600_000


def test_an_event_stamped_2150_ends_no_other_customers_session_and_nudges_no_cart(tact, broker, producer):
    tag = unique("forged")
    carol, dan, forger = f"{tag}-carol", f"{tag}-dan", f"{tag}-forger"
    topics = topic_set("forged")
    broker.create_topics(topics.values(), partitions=1)
    # Event time only: no wall-clock advance while the input is idle.
    p = tact(topics, overrides={"pipeline": {"idle_timer_wall_clock_ms": 0}}).start()
    t0 = (now_ms() - 60 * MIN) // 1000 * 1000
    producer.send_commands(topics["profile_commands"], [set_consent(carol, t0 - MIN, purpose="MARKETING")])
    producer.flush()
    p.wait_metric("tact_events_consumed_total", 1, topic="profile_commands")
    clicks = [
        click(carol, f"{carol}-s1", t0, "ADD_TO_CART", category="shoes", product_id="boot-1"),
        click(dan, f"{dan}-s1", t0 + MIN, "PAGE_VIEW", page="/"),
        click(forger, f"{forger}-s1", YEAR_2150, "PAGE_VIEW", page="/"),
        click(forger, f"{forger}-s1", YEAR_2150 + MIN, "PAGE_VIEW", page="/"),
    ]
    producer.send_clicks(topics["clickstream"], clicks)
    producer.flush()
    p.wait_idle({"clickstream": len(clicks), "profile_commands": 1})
    assert p.stop() == 0

    about_carol = [d for _, d in decode_records("Decision", read_topic(broker.bootstrap, topics["decisions"], timeout=10))
                   + decode_records("SuppressedCandidate", read_topic(broker.bootstrap, topics["suppressed"], timeout=10))
                   if d["customer_id"] == carol]
    assert about_carol == [], f"carol's cart was acted on a century early: {about_carol}"
    dan_state = tact_inspect(p.state_dir, dan)["state"]
    assert dan_state["session"] is not None, "dan's session was ended by another customer's clock"
    carol_state = tact_inspect(p.state_dir, carol)["state"]
    assert carol_state["cart"] is not None, carol_state
    # The forger's own time is theirs: their state says 2150.
    assert tact_inspect(p.state_dir, forger)["state"]["last_event_at"] == YEAR_2150 + MIN
