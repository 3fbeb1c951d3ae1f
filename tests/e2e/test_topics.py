"""`tact topics create` creates every topic tact needs with the settings it relies on (and is
idempotent), and `tact run` refuses, at start and with what is wrong, topics of the wrong shape:
a changelog that is not compacted, or a changelog or profile-commands topic whose partition count
differs from the clickstream's."""

from __future__ import annotations

import pytest

from harness import base_config, dump_toml, free_port, run_tact_cli, topic_set, unique

pytestmark = pytest.mark.timeout(180)


def config(tmp_path, broker, topics, name="tact.toml"):
    cfg = base_config(broker.bootstrap, topics, unique("topics"), tmp_path / f"{name}-state", free_port(), free_port())
    path = tmp_path / name
    path.write_text(dump_toml(cfg))
    return path


def show(res) -> str:
    return f"exit {res.returncode}\nstdout:\n{res.stdout[-3000:]}\nstderr:\n{res.stderr[-3000:]}"


def test_topics_create_makes_every_topic_once_and_tact_starts_on_them(tact, broker, tmp_path):
    topics = topic_set("create")
    path = config(tmp_path, broker, topics)
    args = ["topics", "create", "--config", str(path), "--partitions", "4", "--replication", "1"]
    first = run_tact_cli(args, timeout=90)
    assert first.returncode == 0, show(first)
    for name in topics.values():
        assert f"created  {name}" in first.stdout, f"{name} not created:\n{show(first)}"
    assert "cleanup.policy=compact" in first.stdout
    admin = broker.admin()
    md = admin.list_topics(timeout=10)
    for key in ("clickstream", "profile_commands", "changelog"):
        assert len(md.topics[topics[key]].partitions) == 4, key
    again = run_tact_cli(args, timeout=90)
    assert again.returncode == 0, show(again)
    assert "created" not in again.stdout and f"exists   {topics['changelog']} (4 partitions): ok" in again.stdout, \
        show(again)
    proc = tact(topics).start()  # ready: the shape checks at start pass
    assert proc.stop() == 0


@pytest.mark.parametrize("defect", ["uncompacted changelog", "changelog partitions", "commands partitions"])
def test_tact_refuses_to_start_on_topics_of_the_wrong_shape(broker, tmp_path, defect):
    topics = topic_set("shape")
    odd = {"changelog partitions": "changelog", "commands partitions": "profile_commands"}.get(defect)
    fine = [n for k, n in topics.items() if k != odd and not (defect == "uncompacted changelog" and k == "changelog")]
    broker.create_topics(fine, partitions=3)
    if defect == "uncompacted changelog":
        from confluent_kafka.admin import NewTopic

        admin = broker.admin()  # keep the client alive until its request is answered
        fut = admin.create_topics([NewTopic(topics["changelog"], num_partitions=3, replication_factor=1)])
        fut[topics["changelog"]].result(30)
    else:
        broker.create_topics([topics[odd]], partitions=2)
    res = run_tact_cli(["run", "--config", str(config(tmp_path, broker, topics))], timeout=90)
    assert res.returncode == 3, show(res)
    want = "cleanup.policy" if defect == "uncompacted changelog" else "partitions"
    assert want in res.stderr and (topics[odd] if odd else topics["changelog"]) in res.stderr, show(res)
