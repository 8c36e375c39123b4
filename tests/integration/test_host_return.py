"""A host killed with ``kill -9`` and brought back, with real tmux and a real stub agent
(issue 12: "jobs wait as host_lost and are delivered exactly once when it returns").

Two clones of one origin share one PostgreSQL store; each runs its own daemon with its own
``--host`` and its own tmux server (the default socket name is a digest of the clone's path,
under the test's private ``TMUX_TMPDIR``). Host beta's lane ``b`` runs agent ``bot``.
"""

from __future__ import annotations

import json
import os
import secrets
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psutil
import pytest

from controller.runtime import wiring
from tests.conftest import Repo, stays_true, wait_until
from tests.integration.test_agents import AGENT
from tests.integration.test_wakes import _policy, lines

pytestmark = pytest.mark.integration

LEASE = "2"  # CONTROLLER_LEASE_SECONDS: a lost host shows within seconds
SLOW = 90.0  # generous: a loaded 2-core machine, two daemons, tmux and PostgreSQL


def _desired(name: str, url: str, record: Path) -> dict[str, str]:
    workspace = f"""apiVersion: lanes/v1
kind: Workspace
metadata: {{name: {name}}}
spec:
  stateUrl: {url}
  hosts:
    - name: alpha
      lanes: [a]
    - name: beta
      lanes: [b]
"""
    rest = f"""apiVersion: lanes/v1
kind: Lane
metadata: {{name: a}}
---
apiVersion: lanes/v1
kind: Lane
metadata: {{name: b}}
---
apiVersion: lanes/v1
kind: Binding
metadata: {{name: b-bot}}
spec:
  lane: b
  participant: bot
  command: [{sys.executable}, {AGENT}, --quiet, --record, {record}]
---
apiVersion: lanes/v1
kind: Thread
metadata: {{name: review}}
spec: {{participants: [bot, human]}}
---
apiVersion: lanes/v1
kind: TriggerPolicy
metadata: {{name: default}}
spec:
  {_policy("")}
"""
    return {"workspace.yaml": workspace, "lanes.yaml": rest}


@pytest.fixture
def clones(
    repo: Repo, tmux_socket: str, postgres_url: str, tmp_path: Path
) -> Iterator[tuple[Repo, Repo, Path]]:
    """alpha's and beta's clones, and bot's record file; both tmux servers are killed after
    (the ``tmux_socket`` fixture then reaps every process of the test's folder)."""
    del tmux_socket  # requested for its private TMUX_TMPDIR (now in repo.env) and its reaping
    record = tmp_path / "bot.jsonl"
    for name, text in _desired(f"return-{secrets.token_hex(4)}", postgres_url, record).items():
        repo.write(name, text)
    repo.git("add", ".")
    repo.git("commit", "-q", "-m", "desired")
    env = {**repo.env, "CONTROLLER_LEASE_SECONDS": LEASE}
    found = []
    for host in ("alpha", "beta"):
        path = (tmp_path / f"clone-{host}").resolve()
        repo.git("clone", "-q", str(repo.path), str(path))
        found.append(Repo(path, env))
    alpha, beta = found
    try:
        yield alpha, beta, record
    finally:
        for clone in found:
            socket = wiring.default_socket(clone.path)
            argv = ("tmux", "-L", socket, "kill-server")
            subprocess.run(argv, env=env, capture_output=True, check=False, timeout=10)


def _daemon(clone: Repo, host: str) -> subprocess.Popen[bytes]:
    """``controller run --host HOST`` in ``clone``; its log goes to ``daemon-HOST.log``."""
    with (clone.path.parent / f"daemon-{host}.log").open("ab") as log:
        return subprocess.Popen(
            (sys.executable, "-m", "controller", "run", "--host", host, "--resync", "0.5"),
            cwd=clone.path,
            env=clone.env,
            stdout=subprocess.DEVNULL,
            stderr=log,
        )


def _stop(proc: subprocess.Popen[bytes]) -> None:
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        proc.wait(timeout=60)


def _status(clone: Repo, host: str) -> dict[str, Any]:
    done = clone.ctl("status", "--host", host, "-o", "json")
    assert done.returncode == 0, done.stderr
    view: dict[str, Any] = json.loads(done.stdout)
    return view


def _conditions(clone: Repo, host: str, lane: str) -> list[str]:
    found = next(x for x in _status(clone, host)["lanes"] if x["name"] == lane)
    return [c["type"] for c in found["conditions"]]


def _jobs(clone: Repo, host: str) -> list[dict[str, Any]]:
    done = clone.ctl("triggers", "--host", host, "-o", "json")
    assert done.returncode == 0, done.stderr
    found: list[dict[str, Any]] = json.loads(done.stdout)
    return found


def _starts(record: Path) -> list[int]:
    """The pids bot was started with (one line per start in its record)."""
    if not record.exists():
        return []
    entries = [json.loads(x) for x in record.read_text().splitlines()]
    return [e["pid"] for e in entries if "pid" in e]


def _pane_of_bot(clone: Repo) -> str | None:
    agents = [a for x in _status(clone, "beta")["lanes"] for a in x["agents"]]
    panes = [a.get("pane") for a in agents if a["participant"] == "bot"]
    return panes[0] if panes else None


def test_a_killed_hosts_wake_waits_and_is_delivered_once_when_it_returns(
    clones: tuple[Repo, Repo, Path],
) -> None:
    alpha, beta, record = clones
    first = _daemon(alpha, "alpha")
    second = _daemon(beta, "beta")
    try:
        wait_until(lambda: len(_starts(record)) == 1, timeout=SLOW)
        wait_until(lambda: beta.worktrees() == [str(beta.root / "b")], timeout=SLOW)
        wait_until(lambda: alpha.worktrees() == [str(alpha.root / "a")], timeout=SLOW)
        (pid,) = _starts(record)
        pane = _pane_of_bot(beta)
        (beta.root / "b" / "work.txt").write_text("unsaved\n")

        os.kill(second.pid, signal.SIGKILL)  # its tmux server and agent live on, as they would
        second.wait(timeout=30)
        wait_until(lambda: _conditions(alpha, "alpha", "b") == ["HostLost"], timeout=SLOW)

        done = alpha.ctl("post", "review", "--as", "human", "while beta is away")
        assert done.returncode == 0, done.stderr

        def waiting() -> bool:
            found = _jobs(alpha, "alpha")
            return [(j["participant"], j.get("waiting")) for j in found] == [
                ("bot", {"reason": "host_lost", "host": "beta"})
            ]

        wait_until(waiting, timeout=SLOW)  # alpha's daemon enqueued it; nobody claims it
        # alpha's passes go on (resync 0.5 s) and never type into bot's pane.
        stays_true(lambda: lines(record) == [], 5)
        (job,) = _jobs(alpha, "alpha")
        assert (job["state"], job["failures"], job["attempts"]) == ("queued", 0, [])
        assert psutil.pid_exists(pid) and _starts(record) == [pid]
        assert beta.worktrees() == [str(beta.root / "b")]
        assert (beta.root / "b" / "work.txt").read_text() == "unsaved\n"

        second = _daemon(beta, "beta")  # it returns: takes its lease and delivers the wake
        wait_until(lambda: len(lines(record)) == 1, timeout=SLOW)
        assert "unread message(s) in review from human" in lines(record)[0]
        wait_until(lambda: _conditions(alpha, "alpha", "b") == [], timeout=SLOW)
        stays_true(lambda: len(lines(record)) == 1, 5)  # several passes of both hosts later
        assert _starts(record) == [pid]  # the same agent, in the same pane, never restarted
        assert _pane_of_bot(beta) == pane
        (job,) = _jobs(alpha, "alpha")
        verdicts = [a["verdict"] for a in job["attempts"]]
        assert verdicts.count("delivered") == 1, job
        assert (beta.root / "b" / "work.txt").read_text() == "unsaved\n"
    finally:
        _stop(first)
        _stop(second)
    assert first.returncode == 0 and second.returncode == 0
