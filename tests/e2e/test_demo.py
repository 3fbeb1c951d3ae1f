"""`make demo` (the README's first command): the whole pipeline on the embedded broker, with the
example catalog and knowledge base. It must run by itself for a given duration, print decisions
with their reasons, show hand-offs with the agent's context, callbacks with their due time and
suggested answers, and end with a summary."""

from __future__ import annotations

import re
import subprocess

import pytest

from harness import free_port, tact_bin_path, tact_env

pytestmark = pytest.mark.timeout(180)


def test_the_demo_runs_by_itself_and_shows_hand_offs_callbacks_and_suggested_answers(tmp_path):
    res = subprocess.run([str(tact_bin_path()), "demo", "--duration", "25s", "--state-dir", str(tmp_path / "state"),
                          "--http", f"127.0.0.1:{free_port()}"],
                         capture_output=True, text=True, timeout=150, env=tact_env())
    out = res.stdout
    assert res.returncode == 0, out[-3000:] + res.stderr[-3000:]
    assert re.search(r"^  DECISION welcome_back", out, re.M), out[-2000:]
    assert re.search(r"^  DECISION chat_handoff +chat ", out, re.M), "no chat hand-off in the demo"
    assert re.search(r"^  DECISION callback +routing ", out, re.M), "no callback in the demo"
    assert re.search(r"^           due by \d{4}-\d\d-\d\d \d\d:\d\d UTC$", out, re.M), "no callback due time"
    assert re.search(r"^           for the agent: pages \[", out, re.M), "no agent context"
    assert re.search(r"^           suggested answers: ", out, re.M), "no suggested answers"
    assert re.search(r"^summary after ", out, re.M), out[-2000:]
    assert "chat_handoff" in out.split("summary after", 1)[1], "the summary counts hand-offs"
