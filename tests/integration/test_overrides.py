"""The audited overrides (trigger, unblock, triggers retry) take the workspace lock, like a
pass: they wait behind one, say so, and give up after ``--lock-timeout``."""

from __future__ import annotations

import fcntl
import json
import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.conftest import Repo

pytestmark = pytest.mark.integration

THREAD = """\
apiVersion: lanes/v1
kind: Thread
metadata: {name: review}
spec: {participants: [human, reviewer]}
"""

OVERRIDES = [
    ("trigger", "human", "--thread", "review"),
    ("trigger", "human", "--thread", "review", "--force", "--reason", "now"),
    ("unblock", "human", "--reason", "fixed"),
    ("triggers", "retry", "1", "--reason", "again"),
]


@pytest.fixture
def held(repo: Repo) -> Iterator[Path]:
    """The workspace lock, held by this test process as a long pass would hold it."""
    repo.write("threads.yaml", THREAD)
    lock = repo.path / ".lanes" / "controller.lock"
    lock.parent.mkdir(parents=True, exist_ok=True)
    with lock.open("w") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        handle.write(f"{os.getpid()}\n")
        handle.flush()
        yield lock


@pytest.mark.parametrize("argv", OVERRIDES, ids=lambda a: " ".join(a[:2]))
def test_an_override_waits_for_a_pass_and_says_so(
    repo: Repo, held: Path, argv: tuple[str, ...]
) -> None:
    done = repo.ctl(*argv, "--lock-timeout", "0.5")
    assert done.returncode == 1, done
    waiting = f"waiting for another controller pass (pid {os.getpid()}) to finish..."
    assert waiting in done.stderr
    assert "--lock-timeout" in done.stderr


def test_a_trigger_behind_a_pass_neither_queues_nor_audits(repo: Repo, held: Path) -> None:
    forced = ("trigger", "human", "--thread", "review", "--force", "--reason", "now")
    assert repo.ctl(*forced, "--lock-timeout", "0.2").returncode == 1
    assert json.loads(repo.ctl("triggers", "-o", "json").stdout) == []
    assert "TriggerForced" not in repo.ctl("events").stdout


def test_a_trigger_proceeds_once_the_lock_is_free(repo: Repo) -> None:
    repo.write("threads.yaml", THREAD)
    assert repo.ctl("post", "review", "please look", "--as", "reviewer").returncode == 0
    done = repo.ctl("trigger", "human", "--thread", "review", "--lock-timeout", "5")
    assert done.returncode == 0, done
    assert done.stdout.startswith("fallback_required (fallback_required_unmanaged)")
    assert "waiting for another controller pass" not in done.stderr
