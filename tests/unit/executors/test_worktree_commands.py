"""`git worktree` commands race with concurrent ones in git's admin folder: those are retried."""

from __future__ import annotations

from pathlib import Path

import pytest

from controller.system import git
from tests.fakes import FakeClock, ScriptedRunner

pytestmark = pytest.mark.anyio

WORKTREE = Path("/repo/.lanes/worktrees/a")
RACES = [
    "fatal: Invalid path '/repo/.git/worktrees/l024': No such file or directory",
    "fatal: failed to read /repo/.git/worktrees/l007/commondir: Success",
    "fatal: Unable to create '/repo/.git/worktrees/a/index.lock': File exists.",
]


@pytest.mark.parametrize("stderr", RACES)
async def test_a_race_with_a_concurrent_worktree_command_is_retried(stderr: str) -> None:
    runner, clock = ScriptedRunner(), FakeClock()
    runner.first("worktree", "remove", rc=128, stderr=stderr)
    runner.on("worktree", "remove")
    done = await git.Git(runner, Path("/repo"), clock=clock).worktree_remove(WORKTREE)
    assert done.ok
    assert len(runner.calls) == 2
    assert clock.slept  # backs off before the retry


async def test_a_real_failure_is_not_retried() -> None:
    runner, clock = ScriptedRunner(), FakeClock()
    runner.on("worktree", "remove", rc=128, stderr="fatal: '/x' is not a working tree")
    done = await git.Git(runner, Path("/repo"), clock=clock).worktree_remove(WORKTREE)
    assert not done.ok
    assert len(runner.calls) == 1


async def test_a_race_that_goes_on_gives_up() -> None:
    runner, clock = ScriptedRunner(), FakeClock()
    runner.on("worktree", "remove", rc=128, stderr=RACES[0])
    done = await git.Git(runner, Path("/repo"), clock=clock).worktree_remove(WORKTREE)
    assert not done.ok
    assert len(runner.calls) == git.ATTEMPTS
