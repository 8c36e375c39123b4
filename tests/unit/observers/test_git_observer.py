"""Parsing git's porcelain output, and Unknown (never empty) when git cannot answer."""

from __future__ import annotations

from pathlib import Path

import pytest

from controller import errors
from controller.core import world
from controller.observers import git
from tests.fakes import ScriptedRunner

PORCELAIN = "\0".join(
    [
        "worktree /r",
        "HEAD aaa",
        "branch refs/heads/main",
        "",
        "worktree /r/.lanes/worktrees/a",
        "HEAD bbb",
        "branch refs/heads/lane/a",
        "prunable gitdir file points to non-existent location",
        "",
        "worktree /r/.lanes/worktrees/b",
        "HEAD ccc",
        "detached",
        "locked initializing",
        "",
        "worktree /r/.lanes/worktrees/c",
        "HEAD ddd",
        "branch refs/heads/lane/c",
        "locked",
        "",
        "worktree /r/with space\nnewline",
        "bare",
        "",
    ]
)


def test_parse_worktree_list() -> None:
    trees = git.parse_worktree_list(PORCELAIN)
    assert [t.path for t in trees] == [
        "/r",
        "/r/.lanes/worktrees/a",
        "/r/.lanes/worktrees/b",
        "/r/.lanes/worktrees/c",
        "/r/with space\nnewline",
    ]
    main, a, b, c, bare = trees
    assert main == world.GitWorktree("/r", head="aaa", branch="main")
    assert a.prunable == "gitdir file points to non-existent location"
    assert b.detached and b.branch is None and b.locked == "initializing"
    assert c.locked == "" and c.branch == "lane/c"
    assert bare.bare


def test_parse_without_trailing_separator() -> None:
    assert git.parse_worktree_list("worktree /r\0HEAD a") == (world.GitWorktree("/r", head="a"),)


def test_parse_refs() -> None:
    assert git.parse_refs("main\0aaa\nlane/x\0bbb\n\ngarbage\n") == {
        "main": "aaa",
        "lane/x": "bbb",
    }


@pytest.mark.anyio
@pytest.mark.parametrize(
    "answer",
    [
        errors.CommandFailed(("git",), None, "no answer within 20s"),
        errors.CommandFailed(("git",), 128, "fatal: not a git repository"),
    ],
    ids=["timeout", "error"],
)
async def test_unreadable_git_is_unknown_not_empty(answer: errors.CommandFailed) -> None:
    runner = ScriptedRunner()
    runner.fail("git", "worktree", "list", exc=answer)
    runner.fail("git", "for-each-ref", exc=answer)
    trees = await git.observe_worktrees(runner, Path("/r"))
    refs = await git.observe_branches(runner, Path("/r"))
    assert isinstance(trees, world.Unknown) and answer.stderr in trees.reason
    assert isinstance(refs, world.Unknown)


@pytest.mark.anyio
async def test_exit_code_is_unknown() -> None:
    runner = ScriptedRunner()
    runner.on("git", "worktree", "list", rc=128, stderr="fatal: bad")
    assert isinstance(await git.observe_worktrees(runner, Path("/r")), world.Unknown)


@pytest.mark.anyio
async def test_observe_root(tmp_path: Path) -> None:
    assert await git.observe_root(tmp_path / "missing") == ()
    (tmp_path / "b").mkdir()
    (tmp_path / "a").write_text("")
    (tmp_path / "l").symlink_to(tmp_path / "b")
    entries = await git.observe_root(tmp_path)
    assert entries == (
        world.RootEntry("a", is_dir=False, is_symlink=False),
        world.RootEntry("b", is_dir=True, is_symlink=False),
        world.RootEntry("l", is_dir=False, is_symlink=True),
    )


@pytest.mark.anyio
async def test_observe_root_sees_worktrees_whose_record_names_another_path(tmp_path: Path) -> None:
    root, admin = tmp_path / "root", tmp_path / "repo" / ".git" / "worktrees"
    for name, recorded in [("moved", "/elsewhere/moved/.git"), ("fine", None), ("relative", None)]:
        (root / name).mkdir(parents=True)
        (admin / name).mkdir(parents=True)
        (root / name / ".git").write_text(f"gitdir: {admin / name}\n")
        (admin / name / "gitdir").write_text(f"{recorded or root / name / '.git'}\n")
    (root / "relative" / ".git").write_text("gitdir: ../../repo/.git/worktrees/relative\n")
    (root / "plain" / ".git").mkdir(parents=True)  # a repository of its own, not a worktree
    (root / "broken").mkdir()
    (root / "broken" / ".git").write_text("gitdir: /nowhere\n")
    entries = await git.observe_root(root)
    assert isinstance(entries, tuple)
    found = {e.name: e.misrecorded for e in entries}
    assert found == {
        "broken": None,
        "fine": None,
        "moved": "/elsewhere/moved",
        "plain": None,
        "relative": None,
    }
