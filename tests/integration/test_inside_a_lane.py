"""Commands run from inside a lane's worktree use the main checkout's workspace.

From a linked worktree git's top level is the worktree itself; the workspace is found through
git's common directory instead, so `status`, `post`, `--once` and the rest never start a new,
empty workspace (and `.lanes/`) inside a lane.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import Repo

pytestmark = pytest.mark.integration

THREAD = "apiVersion: lanes/v1\nkind: Thread\nmetadata: {name: review}\n"
THREAD += "spec: {participants: [human, bot]}\n"


def ctl_in(repo: Repo, cwd: Path, *args: str) -> subprocess.CompletedProcess[str]:
    """The real command line, run by a person who `cd`ed into ``cwd`` (no LANE_* variables)."""
    return subprocess.run(
        (sys.executable, "-m", "controller", *args),
        cwd=cwd,
        env=repo.env,
        capture_output=True,
        text=True,
        check=False,
        timeout=120,
    )


def test_commands_inside_a_lane_use_the_main_workspace(repo: Repo) -> None:
    repo.lanes("a", "b")
    repo.write("threads.yaml", THREAD)
    repo.git("add", "-A", "desired")
    repo.git("commit", "-q", "-m", "desired")  # so the lanes' branches carry a copy of it
    assert repo.ctl("--once").returncode == 0
    lane = repo.root / "a"
    assert (lane / "desired" / "lanes.yaml").is_file()  # the lane's (possibly older) copy
    repo.lanes("a", "b", "c")  # in the main checkout only, not committed
    status = ctl_in(repo, lane / "desired", "status", "-o", "json")
    assert status.returncode == 0, status.stderr
    view = json.loads(status.stdout)
    assert view["repo"] == str(repo.path)
    assert [(x["name"], x["phase"]) for x in view["lanes"]] == [
        ("a", "ready"),
        ("b", "ready"),
        ("c", "new"),  # declared in the main checkout's desired/, not in the lane's copy
    ]
    assert ctl_in(repo, lane, "post", "review", "--as", "human", "from a lane").returncode == 0
    read = ctl_in(repo, repo.path, "read", "review", "--as", "bot", "-o", "json")
    assert "from a lane" in read.stdout
    assert ctl_in(repo, lane, "--once").returncode == 0  # provisions c in the main workspace
    assert (repo.root / "c").is_dir()
    assert not (lane / ".lanes").exists()
    assert repo.git("status", "--porcelain", cwd=lane) == ""
    repo.lanes("b", "c")
    done = repo.ctl("--once")
    assert done.returncode == 0, done.stdout + done.stderr
    assert not lane.exists()  # removed in one pass
    assert not (repo.path / ".lanes" / "quarantine").exists()  # nothing of ours was in it


def test_explicit_desired_inside_a_lane_is_taken_as_given(repo: Repo) -> None:
    repo.lanes("a")
    repo.git("add", "-A", "desired")
    repo.git("commit", "-q", "-m", "desired")
    assert repo.ctl("--once").returncode == 0
    lane = repo.root / "a"
    done = ctl_in(repo, lane, "validate", "--desired", "desired", "-o", "json")
    assert json.loads(done.stdout)["counts"]["lanes"] == 1
    plan = ctl_in(repo, lane, "plan", "--desired", "desired", "--detailed-exitcode")
    assert plan.returncode == 0, plan.stdout + plan.stderr  # same workspace, nothing to do
    assert not (lane / ".lanes").exists()
