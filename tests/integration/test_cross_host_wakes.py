"""Wakes across hosts on PostgreSQL: ``post`` notifies in its transaction, the daemon listens.

The "other host" is a second clone of the repository with the same desired/ and store: its
``controller post`` finds no daemon socket there, so it writes to PostgreSQL itself, as a post
on another machine does. The daemon's wake poll and resync are longer than a whole test, so
only a notification (or the nudge after reconnecting) can start a wake between passes.
"""

from __future__ import annotations

import json
import secrets
import shutil
import signal
import subprocess
import sys
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import psycopg
import pytest

from controller.store import messaging, notifications, queries
from tests.conftest import Repo, stays_true, wait_until
from tests.integration.test_agents import AGENT
from tests.integration.test_wakes import _policy, lines, logged

pytestmark = pytest.mark.integration

LONG_POLL = 600.0  # the daemon's --wake-poll: no poll (nor resync, 120 s) falls within a test
WITHIN = 10.0  # "well under the poll": generous for a loaded 2-core machine


@pytest.fixture
def hosts(
    repo: Repo, tmux_socket: str, tmp_path: Path, postgres_url: str
) -> tuple[Repo, Repo, Path]:
    """This host (a lane, agent `bot`, thread `review`) and another host's clone, sharing one
    PostgreSQL store under a workspace name of the test's own."""
    record = tmp_path / "bot.jsonl"
    name = f"notify-{secrets.token_hex(4)}"
    repo.env = {**repo.env, "CONTROLLER_STATE": postgres_url}
    repo.write(
        "workspace.yaml",
        f"apiVersion: lanes/v1\nkind: Workspace\nmetadata: {{name: {name}}}\n"
        f"spec: {{tmuxSocket: {tmux_socket}}}\n",
    )
    repo.lanes("a")
    repo.write(
        "wakes.yaml",
        f"""\
apiVersion: lanes/v1
kind: Binding
metadata: {{name: a-bot}}
spec:
  lane: a
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
""",
    )
    other = Repo((tmp_path / "other").resolve(), repo.env)
    subprocess.run(
        ("git", "clone", "-q", str(repo.path), str(other.path)), env=repo.env, check=True
    )
    shutil.copytree(repo.desired, other.desired)
    return repo, other, record


@pytest.fixture
def daemon(hosts: tuple[Repo, Repo, Path], tmp_path: Path) -> Iterator[tuple[Any, Path]]:
    """``controller run`` on this host with a long wake poll, listening; stopped after (it must
    exit 0 and leave no connection behind)."""
    repo = hosts[0]
    log = tmp_path / "daemon.log"
    argv = ("run", "--resync", "120", "--debounce", "0.1", "--wake-poll", str(LONG_POLL))
    with log.open("wb") as out:
        proc = subprocess.Popen(
            (sys.executable, "-m", "controller", *argv, "-o", "json"),
            cwd=repo.path,
            env=repo.env,
            stdout=subprocess.DEVNULL,
            stderr=out,
        )
    try:
        wait_until(lambda: {"pass", "listening for posts"} <= set(logged(log)), timeout=90)
        wait_until(lambda: (tmp_path / "bot.jsonl").exists(), timeout=60)
        yield proc, log
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(timeout=60)
    assert proc.returncode == 0, log.read_text()
    stray = [x for x in log.read_text().splitlines() if not x.startswith("{")]
    assert stray == []  # no warning or traceback outside the log lines
    wait_until(lambda: not listeners(repo.env["CONTROLLER_STATE"], proc.pid), timeout=20)


def listeners(url: str, pid: int) -> list[int]:
    """Server pids of the daemon's listening connections (named by its pid)."""
    with psycopg.connect(url, autocommit=True) as conn:
        rows = conn.execute(
            "SELECT pid FROM pg_stat_activity WHERE application_name = %s",
            (f"lanes-listen {pid}",),
        ).fetchall()
    return [int(r[0]) for r in rows]


def post_from(other: Repo, text: str) -> None:
    done = other.ctl("post", "review", "--as", "human", text)
    assert done.returncode == 0, done.stderr


def delivered(repo: Repo) -> int:
    jobs = json.loads(repo.ctl("triggers", "-o", "json").stdout)
    return sum(a["verdict"] == "delivered" for j in jobs for a in j["attempts"])


def warnings(log: Path) -> list[str]:
    entries = [json.loads(x) for x in log.read_text().splitlines() if x.startswith("{")]
    return [e["event"] for e in entries if e.get("level") in ("warning", "error", "critical")]


def test_a_post_on_another_host_wakes_at_once_and_once(
    hosts: tuple[Repo, Repo, Path], daemon: tuple[Any, Path]
) -> None:
    repo, other, record = hosts
    _, log = daemon
    post_from(other, "TOP-SECRET please review")
    wait_until(lambda: len(lines(record)) == 1, timeout=WITHIN)  # a notification's nudge
    stays_true(lambda: len(lines(record)) == 1, 3)
    assert delivered(repo) == 1
    assert "TOP-SECRET" not in log.read_text()
    assert warnings(log) == []


def test_a_killed_listening_connection_is_reopened_and_nothing_is_missed(
    hosts: tuple[Repo, Repo, Path], daemon: tuple[Any, Path]
) -> None:
    repo, other, record = hosts
    proc, log = daemon
    url = repo.env["CONTROLLER_STATE"]
    (backend,) = listeners(url, proc.pid)
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute("SELECT pg_terminate_backend(%s)", (backend,))
    post_from(other, "while the daemon may not listen")  # before or after it listens again
    wait_until(lambda: len(lines(record)) == 1, timeout=WITHIN)
    wait_until(lambda: "listening for posts again" in logged(log), timeout=WITHIN)
    assert "listening connection lost; reconnecting" in logged(log)
    (again,) = listeners(url, proc.pid)
    assert again != backend
    post_from(other, "after it listens again")
    wait_until(lambda: len(lines(record)) == 2, timeout=WITHIN)
    stays_true(lambda: len(lines(record)) == 2, 2)
    assert delivered(repo) == 2


def notify_and_roll_back(store: queries.Store) -> None:
    with store.engine.begin() as conn:
        notifications.send(conn, store.workspace, "t", 99)
        raise RuntimeError("rolled back")


def test_post_notifies_on_commit_with_names_only(postgres_url: str) -> None:
    workspace = f"notify-{secrets.token_hex(4)}"
    store = queries.Store.open(postgres_url, workspace)
    try:
        with psycopg.connect(postgres_url, autocommit=True) as listener:
            listener.execute("LISTEN lanes_messages")
            with pytest.raises(RuntimeError):
                notify_and_roll_back(store)
            seq = messaging.post(store, "t", "human", "SECRET body", datetime.now(UTC))
            got = [n.payload for n in listener.notifies(timeout=10, stop_after=1)]
    finally:
        store.close()
    assert [json.loads(p) for p in got] == [{"workspace": workspace, "thread": "t", "seq": seq}]
    assert notifications.workspace_of(got[0]) == workspace
    assert notifications.workspace_of("not json") is None


def test_the_listener_modules_load_no_psycopg() -> None:
    """A daemon on SQLite imports them and must not pay for (or need) the driver."""
    code = (
        "import sys, controller.runtime.listening, controller.store.messaging; "
        "print('psycopg' in sys.modules)"
    )
    done = subprocess.run(
        (sys.executable, "-c", code), capture_output=True, text=True, check=True, timeout=60
    )
    assert done.stdout.strip() == "False"
