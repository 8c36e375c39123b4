"""The git seam assembles every git argv: handlers call named operations, tests script git."""

from __future__ import annotations

from pathlib import Path

import pytest

from controller.system import git
from tests.fakes import FakeClock, ScriptedRunner

pytestmark = pytest.mark.anyio

REPO = Path("/repo")
LANE = Path("/repo/.lanes/worktrees/a")


def _git(runner: ScriptedRunner) -> git.Git:
    return git.Git(runner, REPO, clock=FakeClock())


async def test_a_worktree_is_added_on_a_new_branch_or_on_an_existing_one() -> None:
    runner = ScriptedRunner()
    runner.on("git", "worktree", "add")
    await _git(runner).worktree_add(LANE, branch="lane/a", base="main")
    await _git(runner).worktree_add(LANE, branch="lane/a")
    new, reused = (call[3:] for call in runner.calls)
    assert new == ("worktree", "add", "--quiet", "--no-track", "-b", "lane/a", str(LANE), "main")
    assert reused == ("worktree", "add", "--quiet", str(LANE), "lane/a")


async def test_force_is_given_as_many_times_as_asked() -> None:
    runner = ScriptedRunner()
    runner.on("git", "worktree", "remove")
    await _git(runner).worktree_remove(LANE)
    await _git(runner).worktree_remove(LANE, force=2)
    assert runner.calls[0][3:] == ("worktree", "remove", str(LANE))
    assert runner.calls[1][3:] == ("worktree", "remove", "--force", "--force", str(LANE))


async def test_a_missing_ref_or_commit_reads_as_none() -> None:
    runner = ScriptedRunner()
    runner.on("git", "rev-parse", rc=1)
    assert await _git(runner).ref_target("refs/heads/gone") is None
    assert await _git(runner).commit_of("gone") is None


async def test_a_head_git_cannot_read_is_none() -> None:
    runner = ScriptedRunner()
    runner.on("git", "rev-parse", rc=128, stderr="fatal: not a git repository")
    assert await _git(runner).head_of(LANE) is None


async def test_calls_in_another_worktree_run_there() -> None:
    runner = ScriptedRunner()
    runner.on("git", "hash-object", stdout="a1\nb2\n")
    assert await _git(runner).hash_objects(["x", "y"], cwd=LANE) == ["a1", "b2"]
    assert runner.calls == [("git", "-C", str(LANE), "hash-object", "--", "x", "y")]
