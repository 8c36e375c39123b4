"""The git seam: named operations on one repository, through the Runner (argv, timeouts).

Handlers read as intent (``merge_commits``, ``commit_all``, ``blob``) and unit tests script the
argv underneath. Object reads keep bytes exact (``surrogateescape``): a file a task wrote is
routed as it is, whatever its encoding.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from controller import errors
from controller.system import proc

TIMEOUT = 120.0
IDENTITY: Mapping[str, str] = {
    "GIT_AUTHOR_NAME": "lane controller",
    "GIT_AUTHOR_EMAIL": "controller@lanes.invalid",
    "GIT_COMMITTER_NAME": "lane controller",
    "GIT_COMMITTER_EMAIL": "controller@lanes.invalid",
}


_OID = "# branch.oid "


@dataclass(frozen=True, slots=True)
class Merged:
    """A merge made without a worktree: the commit, or the files that conflicted."""

    commit: str | None
    conflicts: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class Git:
    """git on one repository (``repo`` may be any of its worktrees)."""

    runner: proc.Runner
    repo: Path
    timeout: float = TIMEOUT

    async def _run(
        self, *args: str, cwd: Path | None = None, env: Mapping[str, str] | None = None
    ) -> proc.Completed:
        where = str(cwd or self.repo)
        argv = ("git", "-C", where, *args)
        return await self.runner.run(argv, env={**IDENTITY, **(env or {})}, timeout=self.timeout)

    async def _out(self, *args: str, cwd: Path | None = None) -> str:
        return (await self._run(*args, cwd=cwd)).check().stdout.strip()

    async def commit_of(self, revision: str, *, cwd: Path | None = None) -> str | None:
        """The commit ``revision`` names, or None if it names none."""
        spec = f"{revision}^{{commit}}"
        done = await self._run(
            "rev-parse", "--verify", "--quiet", "--end-of-options", spec, cwd=cwd
        )
        sha = done.stdout.strip()
        return sha if done.ok and sha else None

    async def merge_commits(self, commits: Sequence[str], message: str) -> Merged:
        """Merge ``commits`` without touching any worktree or index: one commit, or conflicts.

        ``git merge-tree --write-tree`` merges two commits into a tree; more are folded in one
        at a time through intermediate commits. The result has every commit as a parent.
        """
        unique = tuple(dict.fromkeys(commits))
        if len(unique) == 1:
            return Merged(unique[0])
        current = unique[0]
        tree = ""
        for index, other in enumerate(unique[1:], start=2):
            tree, conflicts = await self._merge_tree(current, other)
            if conflicts:
                return Merged(None, conflicts)
            if index < len(unique):
                current = await self.commit_tree(tree, unique[:index], "intermediate merge")
        return Merged(await self.commit_tree(tree, unique, message))

    async def _merge_tree(self, ours: str, theirs: str) -> tuple[str, tuple[str, ...]]:
        done = await self._run(
            "merge-tree", "--write-tree", "--no-messages", "--name-only", "-z", ours, theirs
        )
        if done.rc not in (0, 1):
            raise errors.CommandFailed(done.argv, done.rc, done.stderr)
        tree, *files = done.stdout.split("\0")
        return tree.strip(), tuple(dict.fromkeys(f for f in files if f)) if done.rc else ()

    async def commit_tree(self, tree: str, parents: Sequence[str], message: str) -> str:
        """A commit of ``tree`` with ``parents``; nothing else changes."""
        flags = [arg for parent in parents for arg in ("-p", parent)]
        return await self._out("commit-tree", tree, *flags, "-m", message)

    async def commit_all(self, worktree: Path, message: str) -> str | None:
        """Commit every change in ``worktree`` (ignored files aside); return its HEAD after.

        One ``git status`` tells whether there is anything to commit (and HEAD when there is
        not). Hooks are skipped (``--no-verify``): the commit is the controller's bookkeeping,
        and a hook could block or change it. None when the worktree has no commit at all.
        """
        status = await self._out(
            "status", "--porcelain=v2", "--branch", "-z", "--untracked-files=all", cwd=worktree
        )
        entries = [e for e in status.split("\0") if e]
        if all(e.startswith("#") for e in entries):
            oid = next((e[len(_OID) :] for e in entries if e.startswith(_OID)), "(initial)")
            return None if oid == "(initial)" else oid
        await self._out("add", "--all", "--", ".", cwd=worktree)
        done = await self._run("commit", "--quiet", "--no-verify", "-m", message, cwd=worktree)
        if not done.ok and "nothing to commit" not in done.stdout + done.stderr:
            raise errors.CommandFailed(done.argv, done.rc, done.stderr)
        return await self.commit_of("HEAD", cwd=worktree)

    async def blob(self, commit: str, path: str) -> bytes | None:
        """The bytes of ``path`` at ``commit``, or None if it has no such file."""
        done = await self.runner.run(
            ("git", "-C", str(self.repo), "cat-file", "blob", f"{commit}:{path}"),
            timeout=self.timeout,
            stdout_errors="surrogateescape",
        )
        if not done.ok:
            return None
        return done.stdout.encode("utf-8", "surrogateescape")
