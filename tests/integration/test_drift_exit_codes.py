"""Exit codes do not hide drift: a lane that cannot converge is not "converged" to CI.

`--once` and `plan --detailed-exitcode` exit 2, and their JSON says why (`drift`), when a lane
carries a condition that waiting will not clear (`BranchInUse`, `BranchMismatch`, ...).
"""

from __future__ import annotations

import json

import pytest

from tests.conftest import Repo

pytestmark = pytest.mark.integration


def drift_of(repo: Repo, *args: str) -> tuple[int, list[tuple[str, str]]]:
    done = repo.ctl(*args, "-o", "json")
    found = json.loads(done.stdout)["drift"]
    return done.returncode, [(d["lane"], d["type"]) for d in found]


def test_branch_in_use_is_not_converged(repo: Repo) -> None:
    repo.lanes("hotfix", branch="main")  # main is checked out in the main checkout
    assert drift_of(repo, "plan", "--detailed-exitcode") == (2, [("hotfix", "BranchInUse")])
    assert drift_of(repo, "plan") == (0, [("hotfix", "BranchInUse")])
    assert drift_of(repo, "--once") == (2, [("hotfix", "BranchInUse")])
    text = repo.ctl("--once")
    assert text.returncode == 2
    assert "Not converged: 1 condition(s) need you: hotfix (BranchInUse)." in text.stdout
    repo.lanes("hotfix")  # fixed: its own branch
    assert drift_of(repo, "--once") == (0, [])
    assert repo.ctl("plan", "--detailed-exitcode").returncode == 0


def test_branch_mismatch_is_not_converged(repo: Repo) -> None:
    repo.lanes("a")
    assert repo.ctl("--once").returncode == 0
    repo.git("checkout", "-q", "-b", "elsewhere", cwd=repo.root / "a")
    assert drift_of(repo, "--once") == (2, [("a", "BranchMismatch")])
    assert drift_of(repo, "plan", "--detailed-exitcode") == (2, [("a", "BranchMismatch")])


def test_refused_cleanup_is_drift_in_the_pass_that_refuses_it(repo: Repo) -> None:
    repo.lanes("a", "keep", onDirtyCleanup="refuse")
    assert repo.ctl("--once").returncode == 0
    (repo.root / "a" / "wip.txt").write_text("wip")
    repo.lanes("keep", onDirtyCleanup="refuse")
    assert drift_of(repo, "--once") == (2, [("a", "CleanupRefused")])
    assert drift_of(repo, "plan", "--detailed-exitcode") == (2, [("a", "CleanupRefused")])


def test_held_back_deletions_wait_on_policy(repo: Repo) -> None:
    repo.lanes("a", "b", "c")
    assert repo.ctl("--once").returncode == 0
    repo.write(
        "workspace.yaml",
        "apiVersion: lanes/v1\nkind: Workspace\nmetadata: {name: default}\n"
        "spec: {maxDeletionsPerPass: 1}\n",
    )
    repo.lanes("a")
    assert drift_of(repo, "--once") == (0, [])  # DeletionPending: the next pass goes on
    assert drift_of(repo, "plan", "--detailed-exitcode") == (2, [])  # but changes are pending
