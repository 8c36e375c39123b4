"""The daemon's log as a person reads it, from a real ``controller run``: a start-up line,
one line per pass that did something (none for idle passes), invalid desired state as one
warning and its fix as info, a condition as one warning when it appears and info when it
clears, ``--log-format json`` lines that parse as JSON, and never an env value or a message
body."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import Repo, wait_until
from tests.integration.test_server import (
    BROKEN,
    answering,
    daemon,
    get,
    marker,
    samples,
    scraped,
    status,
    worker,
)

pytestmark = pytest.mark.integration
__all__ = ["marker"]  # a fixture


def passes(socket: Path) -> float:
    """How many passes ended (every result), from the daemon's own /metrics."""
    found = samples(get(socket, "/metrics")[1])
    return sum(v for k, v in found.items() if k.startswith("lanes_reconcile_total{"))


def more_passes(socket: Path, count: int = 2) -> None:
    """Wait until ``count`` more passes have ended (the daemon resyncs every second)."""
    start = passes(socket)
    wait_until(lambda: passes(socket) >= start + count)


def lines(log: Path) -> list[dict[str, Any]]:
    """Every line of a JSON log (each one must parse)."""
    return [json.loads(line) for line in log.read_text().splitlines()]


def named(log: Path, event: str) -> list[dict[str, Any]]:
    return [x for x in lines(log) if x["event"] == event]


def test_a_start_up_line_and_one_line_per_pass_that_did_something(
    repo: Repo, tmp_path: Path
) -> None:
    repo.lanes("a")
    socket = repo.path / ".lanes" / "controller.sock"
    log = tmp_path / "daemon.log"
    with daemon(repo, log=log):
        wait_until(lambda: answering(socket) and repo.worktrees() != [])
        more_passes(socket, 3)
        text = log.read_text()
    (started,) = [line for line in text.splitlines() if "] started " in line]
    for field in ("workspace=", f"desired={repo.desired}", f"socket={socket}", "metrics=off"):
        assert field in started
    assert "resync=1.0" in started
    pass_lines = [line for line in text.splitlines() if "] pass " in line]
    assert len(pass_lines) == 1, text  # the idle passes after it print nothing
    assert "actions=1" in pass_lines[0] and "provision a" in pass_lines[0]


def test_invalid_desired_state_warns_once_and_its_fix_is_info(repo: Repo, tmp_path: Path) -> None:
    repo.lanes("a")
    socket = repo.path / ".lanes" / "controller.sock"
    log = tmp_path / "daemon.log"
    invalid = "desired state invalid; keeping the last valid desired state"
    with daemon(repo, "--log-format", "json", log=log):
        wait_until(lambda: answering(socket) and repo.worktrees() != [])
        good = (repo.desired / "lanes.yaml").read_text()
        repo.write("lanes.yaml", BROKEN)
        wait_until(lambda: named(log, invalid) != [])
        more_passes(socket)
        repo.write("lanes.yaml", good)
        wait_until(lambda: named(log, "desired state valid again") != [])
    (warning,) = named(log, invalid)  # once, not on every pass
    assert warning["level"] == "warning"
    assert warning["problems"] and all("lanes.yaml:" in p for p in warning["problems"])
    (fixed,) = named(log, "desired state valid again")
    assert fixed["level"] == "info"
    assert lines(log)[0]["event"] == "started"
    assert all({"event", "level", "timestamp"} <= set(x) for x in lines(log))


def test_a_condition_warns_once_when_it_appears_and_informs_when_it_clears(
    repo: Repo, tmp_path: Path
) -> None:
    repo.lanes("a")
    socket = repo.path / ".lanes" / "controller.sock"
    log = tmp_path / "daemon.log"
    with daemon(repo, "--log-format", "json", log=log):
        wait_until(lambda: answering(socket) and repo.worktrees() != [])
        tree = repo.root / "a"
        branch = repo.git("-C", str(tree), "branch", "--show-current").strip()
        repo.git("-C", str(tree), "checkout", "-q", "-b", "elsewhere")
        wait_until(lambda: named(log, "condition") != [])
        more_passes(socket)
        repo.git("-C", str(tree), "checkout", "-q", branch)
        wait_until(lambda: named(log, "condition cleared") != [])
    (appeared,) = named(log, "condition")
    assert appeared["level"] == "warning"
    assert (appeared["lane"], appeared["type"]) == ("a", "BranchMismatch")
    assert "elsewhere" in appeared["message"]
    (cleared,) = named(log, "condition cleared")
    assert (cleared["level"], cleared["lane"], cleared["type"]) == ("info", "a", "BranchMismatch")


def test_env_values_and_message_bodies_never_reach_the_log(
    repo: Repo, marker: str, tmp_path: Path
) -> None:
    worker(repo, marker)
    agents = (repo.desired / "a.yaml").read_text()
    repo.write("a.yaml", agents + "  env: {API_TOKEN: tok-s3cret-value}\n")
    repo.write(
        "talk.yaml",
        "apiVersion: lanes/v1\nkind: Thread\nmetadata: {name: t}\n"
        "spec: {participants: [worker, human]}\n---\n"
        "apiVersion: lanes/v1\nkind: TriggerPolicy\nmetadata: {name: wake}\n"
        "spec: {participants: [worker], threads: [t], collision: {quietSeconds: 0}}\n",
    )
    socket = repo.path / ".lanes" / "controller.sock"
    log = tmp_path / "daemon.log"
    with daemon(repo, "--log-format", "json", "-v", log=log):
        wait_until(lambda: answering(socket))
        wait_until(lambda: [a["state"] for a in status(repo)["lanes"][0]["agents"]] == ["running"])
        assert repo.ctl("post", "t", "--as", "human", "body-t3xt-private").returncode == 0
        wait_until(lambda: any(k.startswith("lanes_wakes_total") for k in scraped(socket)))
        more_passes(socket)
    text = log.read_text()
    assert named(log, "action")  # -v: every action's details are there
    assert "tok-s3cret-value" not in text and "body-t3xt-private" not in text
