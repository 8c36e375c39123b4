"""The web status page (``server.page.render``): a pure function of the status view."""

from __future__ import annotations

import re
from typing import Any

from controller.server import page


def a_view(**more: Any) -> dict[str, Any]:
    agent = {
        "participant": "dev",
        "runtime": "shell",
        "state": "running",
        "pid": 42,
        "pane": "%1",
        "log": None,
        "restarts": 0,
        "lastExit": None,
        "heartbeatAge": 12.5,
        "blocked": None,
    }
    lane = {
        "name": "feat-a",
        "phase": "Ready",
        "branch": "feat-a",
        "worktree": "/w/feat-a",
        "inSync": True,
        "pendingActions": [],
        "conditions": [],
        "agents": [agent],
    }
    view = {
        "workspace": "demo",
        "repo": "/r",
        "desiredValid": True,
        "problems": [],
        "notices": [],
        "lanes": [lane],
        "participants": [],
        "triggers": {},
    }
    return {**view, **more}


def test_every_lane_and_agent_is_shown_with_its_phase_and_state() -> None:
    view = a_view()
    second = {**view["lanes"][0], "name": "feat-b", "phase": "Pending", "agents": []}
    view["lanes"].append(second)
    text = page.render(view)
    assert text.count('<tr class="lane">') == 2
    assert "<td>feat-b</td><td>Pending</td>" in text
    assert '<tr class="agent"><td>feat-a</td><td>dev</td><td>shell</td><td>running</td>' in text
    assert "nothing needs attention" in text


def test_names_and_messages_are_escaped() -> None:
    hostile = "<script>alert(1)</script>"
    view = a_view(notices=[f'"{hostile}'], problems=[hostile], desiredValid=False)
    lane = view["lanes"][0]
    lane["name"] = hostile
    lane["conditions"] = [{"type": "CrashLoop", "reason": "<b>", "message": hostile}]
    lane["agents"][0]["participant"] = hostile
    text = page.render(view, refresh=0)
    assert "<script" not in text
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in text
    assert "<b>" not in text


def test_attention_comes_first_most_urgent_on_top() -> None:
    view = a_view()
    lane = view["lanes"][0]
    lane["conditions"] = [
        {"type": "BackingOff", "reason": "Retry", "message": "slow"},
        {"type": "CrashLoop", "reason": "Exits", "message": "exited 5 times"},
    ]
    text = page.render(view)
    assert text.index("Attention") < text.index("Lanes")
    assert text.index("crash-looping") < text.index("backing off")
    assert "exited 5 times" in text


def test_the_page_loads_nothing_and_has_no_script_form_or_link() -> None:
    text = page.render(
        a_view(runs=[{"name": "r1", "workflow": "w", "phase": "failed", "tasks": {}}])
    )
    assert not re.search(r"<(script|form|link|img|iframe|input|button)\b", text)
    assert not re.search(r"(src|href)\s*=", text)
    assert "http://" not in text and "https://" not in text
    assert '<meta http-equiv="refresh" content="5">' in text
    assert "refresh" not in page.render(a_view(), refresh=0)
    assert page.CSP == "default-src 'none'; style-src 'unsafe-inline'"


def test_env_values_are_never_shown() -> None:
    view = a_view()
    view["lanes"][0]["agents"][0]["env"] = {"TOKEN": "s3cret"}
    view["lanes"][0]["env"] = {"TOKEN": "s3cret"}
    assert "s3cret" not in page.render(view)
