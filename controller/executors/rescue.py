"""Saving a worktree's work before it is removed: nothing is ever lost.

A rescue commit is built without touching the worktree, its index or its branch: a temporary
index receives every tracked and untracked (not ignored) file, and the commit has the worktree's
HEAD as first parent (so commits on a detached HEAD stay reachable) and a commit of the real
index as second parent (so staged-but-different content survives too), like ``git stash``.
It is stored at ``refs/lanes/rescue/<lane>/<UTC timestamp>``.
"""

from __future__ import annotations

import secrets
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

import anyio

from controller.system import proc

TIMEOUT = 120.0  # hashing a large worktree can take a while
IDENTITY = {
    "GIT_AUTHOR_NAME": "lane controller",
    "GIT_AUTHOR_EMAIL": "controller@lanes.invalid",
    "GIT_COMMITTER_NAME": "lane controller",
    "GIT_COMMITTER_EMAIL": "controller@lanes.invalid",
}


@dataclass(frozen=True, slots=True)
class WorktreeState:
    """What a worktree holds that removal could lose."""

    head: str | None  # None on an unborn branch
    branch: str | None  # None when detached
    changes: tuple[str, ...]  # `git status --porcelain` entries, tracked and untracked

    @property
    def needs_rescue(self) -> bool:
        """Uncommitted changes, or a detached HEAD whose commits may be on no branch."""
        return bool(self.changes) or (self.branch is None and self.head is not None)


async def inspect(runner: proc.Runner, path: Path) -> WorktreeState:
    """Read HEAD, branch and pending changes of the worktree at ``path`` (one git call)."""
    argv = (
        "git", "-C", str(path), "status", "--porcelain=v2", "--branch", "-z",
        "--untracked-files=all", "--ignore-submodules=none",
    )  # fmt: skip
    status = (await runner.run(argv, timeout=TIMEOUT)).check()
    return parse_status(status.stdout)


def parse_status(text: str) -> WorktreeState:
    """Parse ``git status --porcelain=v2 --branch -z`` into HEAD, branch and changes."""
    head: str | None = None
    branch: str | None = None
    changes: list[str] = []
    fields = iter(text.split("\0"))
    for entry in fields:
        if entry.startswith("# branch.oid "):
            oid = entry.removeprefix("# branch.oid ")
            head = None if oid == "(initial)" else oid
        elif entry.startswith("# branch.head "):
            name = entry.removeprefix("# branch.head ")
            branch = None if name == "(detached)" else name
        elif entry[:2] in ("1 ", "2 ", "u "):
            parts = entry.split(" ", {"1": 8, "2": 9, "u": 10}[entry[0]])
            changes.append(f"{parts[1].replace('.', ' ')} {parts[-1]}")
            if entry[0] == "2":
                next(fields, None)  # a rename's original path
        elif entry.startswith("? "):
            changes.append(f"?? {entry[2:]}")
    return WorktreeState(head=head, branch=branch, changes=tuple(changes))


def rescue_ref(lane: str, now: datetime, *, suffix: str = "") -> str:
    """The ref a lane's work is saved under at ``now``."""
    return f"refs/lanes/rescue/{lane}/{now.strftime('%Y%m%dT%H%M%SZ')}{suffix}"


async def save(
    runner: proc.Runner,
    path: Path,
    *,
    lane: str,
    state: WorktreeState,
    now: datetime,
    scratch: Path,
) -> str:
    """Save everything removal could lose into a new rescue ref and return the ref's name."""
    await anyio.Path(scratch).mkdir(mode=0o700, parents=True, exist_ok=True)
    index = anyio.Path(scratch / f"rescue-{lane}-{secrets.token_hex(4)}.index")
    try:
        tree = await _snapshot_tree(runner, path, index=Path(index), head=state.head)
    finally:
        await index.unlink(missing_ok=True)
    staged = await _git(runner, path, "write-tree")
    parents = ("-p", state.head) if state.head else ()
    staged_commit = await _git(
        runner, path, "commit-tree", staged, *parents, "-m", f"index of lane {lane}"
    )
    message = _message(lane, state, now)
    commit = await _git(
        runner, path, "commit-tree", tree, *parents, "-p", staged_commit, "-m", message
    )
    return await _create_ref(runner, path, lane=lane, commit=commit, now=now)


async def _snapshot_tree(runner: proc.Runner, path: Path, *, index: Path, head: str | None) -> str:
    env = {"GIT_INDEX_FILE": str(index)}
    await _git(runner, path, "read-tree", *((head,) if head else ("--empty",)), env=env)
    await _git(runner, path, "add", "--all", "--", ".", env=env)
    return await _git(runner, path, "write-tree", env=env)


async def _create_ref(
    runner: proc.Runner, path: Path, *, lane: str, commit: str, now: datetime
) -> str:
    for attempt in range(100):
        ref = rescue_ref(lane, now, suffix=f"-{attempt}" if attempt else "")
        # An empty old value makes update-ref fail if the ref exists: never overwrite a rescue.
        done = await runner.run(("git", "-C", str(path), "update-ref", ref, commit, ""))
        if done.ok:
            return ref
    raise RuntimeError(f"could not find a free rescue ref for lane {lane}")


def _message(lane: str, state: WorktreeState, now: datetime) -> str:
    shown = "\n".join(state.changes[:50])
    more = f"\n... and {len(state.changes) - 50} more" if len(state.changes) > 50 else ""
    return (
        f"lanes rescue: {lane} at {now.isoformat(timespec='seconds')}\n\n"
        f"Work saved by the lane controller before removing the worktree.\n"
        f"Branch: {state.branch or '(detached HEAD)'}\n"
        f"Restore with: git checkout -b <new-branch> <this commit>  (files as they were)\n\n"
        f"{shown}{more}\n"
    )


async def _git(
    runner: proc.Runner, path: Path, *args: str, env: Mapping[str, str] | None = None
) -> str:
    done = await runner.run(
        ("git", "-C", str(path), *args), env={**IDENTITY, **(env or {})}, timeout=TIMEOUT
    )
    return done.check().stdout.strip()
