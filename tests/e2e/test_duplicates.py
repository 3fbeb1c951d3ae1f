"""A producer that retries sends the same event again, at a later offset: tact applies each event
id once. Before, a product view sent three times counted as three views and made a
recommendation (it takes three) out of a single look.

Runs against tansu and the tact binary; outputs decoded with fastavro, state read with
`tact inspect`.
"""

from __future__ import annotations

import time

import pytest

from harness import (click, decode_records, encode_click, now_ms, read_topic, set_consent, tact_inspect,
                     topic_set, unique)

pytestmark = pytest.mark.timeout(180)

MIN = 60_000


def test_an_event_sent_three_times_counts_once_even_across_a_restart(tact, broker, producer):
    tag = unique("dup")
    ada, bo = f"{tag}-ada", f"{tag}-bo"
    topics = topic_set("dup")
    broker.create_topics(topics.values(), partitions=1)
    p = tact(topics).start()
    t0 = (now_ms() - 3 * 60 * MIN) // 1000 * 1000
    producer.send_commands(topics["profile_commands"], [set_consent(ada, t0 - MIN)])
    producer.flush()
    p.wait_metric("tact_events_consumed_total", 1, topic="profile_commands")

    view = click(ada, f"{ada}-s1", t0, "PRODUCT_VIEW", category="shoes", product_id="shoe-1",
                 event_id=f"{tag}-view")
    # bo's return after an hour is the marker that everything before it was processed.
    marker = [click(bo, f"{bo}-s1", t0, "PAGE_VIEW", event_id=f"{tag}-bo-1"),
              click(bo, f"{bo}-s2", t0 + 60 * MIN, "PAGE_VIEW", event_id=f"{tag}-bo-2")]
    for _ in range(3):
        producer.send(topics["clickstream"], ada, encode_click(view))
    producer.send_clicks(topics["clickstream"], marker)
    producer.flush()
    decisions = decode_records("Decision", read_topic(broker.bootstrap, topics["decisions"], min_count=1, timeout=60))
    time.sleep(1.0)  # a recommendation would have come with the views, before the marker
    decisions = decode_records("Decision", read_topic(broker.bootstrap, topics["decisions"], timeout=30))
    assert [(d["customer_id"], d["kind"]) for _, d in decisions] == [(bo, "WELCOME_BACK")], \
        f"one look is not three: {[d for _, d in decisions]}"
    assert p.metrics().value("tact_duplicate_events_total") == 2
    assert p.stop() == 0
    state = tact_inspect(p.state_dir, ada)["state"]
    assert [(i["category"], i["views"]) for i in state["interests"]] == [("shoes", 1)], state["interests"]
    assert len(state["recent_events"]) == 1, state["recent_events"]

    # The remembered ids are state: after a restart a fourth copy is still a duplicate.
    p.start()
    producer.send(topics["clickstream"], ada, encode_click(view))
    producer.flush()
    p.wait_metric("tact_duplicate_events_total", 1, timeout=60)
    assert p.stop() == 0
    assert tact_inspect(p.state_dir, ada)["state"] == state
