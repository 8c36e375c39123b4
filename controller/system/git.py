"""The git seam: named operations on one repository, through the Runner (argv, timeouts).

Handlers read as intent (``worktree_add``, ``merge_commits``, ``commit_all``, ``blob``) and unit
tests script the argv underneath. Every git argv of the controller is assembled here: ``run``
and ``text`` for the async callers (through the Runner), ``run_sync`` for the few that run
before the event loop exists or in a worker thread with input on stdin. Object reads keep bytes
exact (``surrogateescape``): a file a task wrote is routed as it is, whatever its encoding.
"""

from __future__ import annotations

import re
import subprocess
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from controller import errors
from controller.system import clock, proc

TIMEOUT = 120.0
SYNC_TIMEOUT = 20.0
SUBMODULE_TIMEOUT = 600.0  # cloning a submodule can take a while
FETCH_TIMEOUT = 600.0  # the first rescue of a submodule copies its history
PATHS = "surrogateescape"  # names that are not UTF-8 keep their bytes
IDENTITY: Mapping[str, str] = {
    "GIT_AUTHOR_NAME": "lane controller",
    "GIT_AUTHOR_EMAIL": "controller@lanes.invalid",
    "GIT_COMMITTER_NAME": "lane controller",
    "GIT_COMMITTER_EMAIL": "controller@lanes.invalid",
}
NO_PROMPT: Mapping[str, str] = {"GIT_TERMINAL_PROMPT": "0"}  # a pass never waits for a password
ATTEMPTS = 5
# Every `git worktree` command first reads the admin folder of *every* worktree, and dies when
# a concurrent add half-wrote one (13 of 60 parallel adds, with plain git) or a concurrent
# removal deleted one between two reads (`Invalid path '.git/worktrees/x'`, from realpath in
# get_common_dir_noenv). Both happen before the command changes anything, so it is retried.
TRANSIENT = re.compile(
    r"failed to read .*worktrees/|Invalid path '.*worktrees/|unable to create .*\.lock"
    r"|cannot lock ref",
    re.IGNORECASE,
)
# Fetching by commit: the inner rescue commit is on no ref of the inner repository (protocol
# v2 allows that anyway; the setting reaches the local upload-pack for v0 users too).
FETCH = (
    "-c",
    "uploadpack.allowAnySHA1InWant=true",
    "fetch",
    "--quiet",
    "--no-tags",
    "--no-write-fetch-head",
    "--no-recurse-submodules",
    "--no-auto-gc",
)
BRANCH_TIPS = "--format=%(refname:lstrip=2)%00%(objectname)"
_OID = "# branch.oid "


def raced(done: proc.Completed) -> bool:
    """Whether a failed ``git worktree`` command lost a race with a concurrent one (TRANSIENT)."""
    return not done.ok and bool(TRANSIENT.search(done.stderr))


async def back_off(clk: clock.Clock, attempt: int) -> None:
    """Wait a little longer after each race before the next attempt."""
    await clk.sleep(0.05 * attempt)


@dataclass(frozen=True, slots=True)
class Merged:
    """A merge made without a worktree: the commit, or the files that conflicted."""

    commit: str | None
    conflicts: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class Git:
    """git on one repository (``repo`` may be any of its worktrees).

    ``cwd`` runs one call in another place of the same repository (a worktree, an inner
    repository); ``clock`` paces the retries of ``git worktree`` races.
    """

    runner: proc.Runner
    repo: Path
    timeout: float = TIMEOUT
    clock: clock.Clock = field(default_factory=clock.SystemClock)

    async def run(
        self,
        *args: str,
        cwd: Path | None = None,
        env: Mapping[str, str] | None = None,
        timeout: float | None = None,
        stdout_errors: str = "replace",
    ) -> proc.Completed:
        """One git call, whatever its exit status."""
        argv = ("git", "-C", str(cwd or self.repo), *args)
        return await self.runner.run(
            argv, env=env, timeout=timeout or self.timeout, stdout_errors=stdout_errors
        )

    async def text(
        self,
        *args: str,
        cwd: Path | None = None,
        env: Mapping[str, str] | None = None,
        strip: bool = True,
    ) -> str:
        """What a git call printed, names kept exact; ``CommandFailed`` if it failed."""
        done = await self.run(*args, cwd=cwd, env=env, stdout_errors=PATHS)
        out = done.check().stdout
        return out.strip() if strip else out

    async def _run(
        self, *args: str, cwd: Path | None = None, env: Mapping[str, str] | None = None
    ) -> proc.Completed:
        return await self.run(*args, cwd=cwd, env={**IDENTITY, **(env or {})})

    async def _out(
        self, *args: str, cwd: Path | None = None, env: Mapping[str, str] | None = None
    ) -> str:
        return (await self._run(*args, cwd=cwd, env=env)).check().stdout.strip()

    # Worktrees

    async def worktree_add(
        self, path: Path, *, branch: str, base: str | None = None
    ) -> proc.Completed:
        """One attempt to add a worktree at ``path``: on a new ``branch`` from ``base``, or on
        the existing ``branch`` when ``base`` is None. The caller undoes a half-done attempt
        before it tries again (see ``raced``)."""
        add = ("worktree", "add", "--quiet")
        if base is None:
            return await self.run(*add, str(path), branch)
        return await self.run(*add, "--no-track", "-b", branch, str(path), base)

    async def worktree_remove(self, path: Path, *, force: int = 0) -> proc.Completed:
        """Remove the worktree at ``path``; ``force`` times ``--force`` (twice passes git's
        lock). Retried after a race."""
        return await self._worktree("remove", *("--force",) * force, str(path))

    async def worktree_repair(self, path: Path) -> proc.Completed:
        """Point git's record of the worktree at ``path`` back at it. Retried after a race."""
        return await self._worktree("repair", str(path))

    async def _worktree(self, *args: str) -> proc.Completed:
        """Run a ``git worktree`` command, again after a race with a concurrent one."""
        attempt = 1
        while True:
            done = await self.run("worktree", *args)
            if attempt == ATTEMPTS or not raced(done):
                return done
            await back_off(self.clock, attempt)
            attempt += 1

    async def worktree_list(self) -> str:
        """``git worktree list --porcelain -z``; ``CommandFailed`` if git cannot tell."""
        return (await self.run("worktree", "list", "--porcelain", "-z")).check().stdout

    async def submodule_update(self, worktree: Path) -> proc.Completed:
        """Check out, in ``worktree``, the submodules the repository has initialised."""
        args = ("submodule", "update", "--recursive")
        return await self.run(*args, cwd=worktree, env=NO_PROMPT, timeout=SUBMODULE_TIMEOUT)

    async def head_of(self, worktree: Path) -> tuple[str, ...] | None:
        """The top of the worktree holding ``worktree`` and HEAD's full ref name, or None."""
        args = ("rev-parse", "--show-toplevel", "--symbolic-full-name", "HEAD")
        done = await self.run(*args, cwd=worktree)
        return tuple(done.stdout.splitlines()) if done.ok else None

    async def top_and_common(self, worktree: Path) -> tuple[str, ...]:
        """The absolute top of the worktree holding ``worktree`` and its common git folder."""
        args = ("rev-parse", "--path-format=absolute", "--show-toplevel", "--git-common-dir")
        return tuple((await self.run(*args, cwd=worktree)).check().stdout.splitlines())

    async def common_dir(self, *, cwd: Path | None = None) -> str:
        """The repository's common git folder, absolute."""
        args = ("rev-parse", "--path-format=absolute", "--git-common-dir")
        return (await self.run(*args, cwd=cwd)).check().stdout.strip()

    async def git_path(self, name: str, *, cwd: Path | None = None) -> str:
        """The absolute path of ``name`` in the git folder of ``cwd``'s worktree."""
        return await self.text("rev-parse", "--path-format=absolute", "--git-path", name, cwd=cwd)

    # Refs

    async def ref_target(self, ref: str) -> str | None:
        """The object ``ref`` points at, or None if there is no such ref."""
        done = await self.run("rev-parse", "--verify", "--quiet", ref)
        sha = done.stdout.strip()
        return sha if done.ok and sha else None

    async def delete_ref(self, ref: str, *, old: str) -> proc.Completed:
        """Delete ``ref`` only while it still points at ``old`` (compare-and-delete)."""
        return await self.run("update-ref", "-d", ref, old)

    async def create_ref(self, ref: str, commit: str) -> None:
        """Create ``ref`` at ``commit``; ``CommandFailed`` if it exists (never overwritten)."""
        await self._out("update-ref", ref, commit, "")

    async def for_each_ref(self, fmt: str, *patterns: str, cwd: Path | None = None) -> str:
        """``git for-each-ref --format=<fmt> <patterns>``, names kept exact."""
        return await self.text("for-each-ref", f"--format={fmt}", *patterns, cwd=cwd)

    async def branch_tips(self) -> str:
        """Every local branch and its commit, one ``name\\0sha`` per line."""
        return (await self.run("for-each-ref", BRANCH_TIPS, "refs/heads/")).check().stdout

    async def has_commit(self, sha: str, *, cwd: Path | None = None) -> bool:
        """Whether the repository holds the commit ``sha``."""
        return (await self.run("cat-file", "-e", f"{sha}^{{commit}}", cwd=cwd)).ok

    async def commit_of(self, revision: str, *, cwd: Path | None = None) -> str | None:
        """The commit ``revision`` names, or None if it names none."""
        spec = f"{revision}^{{commit}}"
        done = await self._run(
            "rev-parse", "--verify", "--quiet", "--end-of-options", spec, cwd=cwd
        )
        sha = done.stdout.strip()
        return sha if done.ok and sha else None

    async def first_unpushed(self, tips: Sequence[str]) -> str:
        """A commit reachable from ``tips`` and from no remote-tracking branch ("" if none)."""
        return await self.text("rev-list", "-n1", *tips, "--not", "--remotes")

    async def fetch(self, source: Path, specs: Sequence[str]) -> None:
        """Fetch commits (by id, on no ref there) from the repository at ``source``."""
        done = await self.run(*FETCH, str(source), *specs, env=IDENTITY, timeout=FETCH_TIMEOUT)
        done.check()

    # Files and the index

    async def status(self, *flags: str, cwd: Path | None = None) -> str:
        """``git status --porcelain=v2 --branch -z --untracked-files=all`` and ``flags``."""
        args = ("status", "--porcelain=v2", "--branch", "-z", "--untracked-files=all", *flags)
        return await self.text(*args, cwd=cwd)

    async def ls_files(self, *flags: str, cwd: Path | None = None) -> str:
        """``git ls-files -z`` with ``flags``, names kept exact and output unstripped."""
        return await self.text("ls-files", *flags, "-z", cwd=cwd, strip=False)

    async def hash_objects(self, paths: Sequence[str], *, cwd: Path | None = None) -> list[str]:
        """The blob id each file in ``paths`` would have, in order."""
        return (await self.text("hash-object", "--", *paths, cwd=cwd)).split()

    async def object_text(self, sha: str) -> str:
        """The content of the object ``sha`` (a symbolic link's target), unstripped."""
        return await self.text("cat-file", "blob", sha, strip=False)

    async def read_tree(self, treeish: str | None, *, cwd: Path, index: Path) -> None:
        """Fill the temporary ``index`` from ``treeish`` (empty when None)."""
        await self._out("read-tree", treeish or "--empty", cwd=cwd, env=_index(index))

    async def add_all(self, *, cwd: Path, index: Path, excluding: Sequence[str] = ()) -> None:
        """Add every file of ``cwd`` (ignored ones aside) to the temporary ``index``."""
        excluded = [f":(exclude,literal){name}" for name in excluding]
        await self._out("add", "--all", "--", ".", *excluded, cwd=cwd, env=_index(index))

    async def write_tree(self, *, cwd: Path, index: Path | None = None) -> str:
        """The tree of ``index`` (the worktree's own when None)."""
        return await self._out("write-tree", cwd=cwd, env=_index(index) if index else None)

    # Merging and commits without a worktree

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

    async def commit_tree(
        self, tree: str, parents: Sequence[str], message: str, *, cwd: Path | None = None
    ) -> str:
        """A commit of ``tree`` with ``parents``; nothing else changes."""
        flags = [arg for parent in parents for arg in ("-p", parent)]
        return await self._out("commit-tree", tree, *flags, "-m", message, cwd=cwd)

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
        done = await self.run("cat-file", "blob", f"{commit}:{path}", stdout_errors=PATHS)
        if not done.ok:
            return None
        return done.stdout.encode("utf-8", "surrogateescape")


def _index(index: Path) -> dict[str, str]:
    return {"GIT_INDEX_FILE": str(index)}


class GitFailed(errors.ControllerError):
    """git ran and exited non-zero; the message is its error output."""


def run_sync(
    start: Path,
    *args: str,
    env: Mapping[str, str],
    stdin: bytes | None = None,
    timeout: float = SYNC_TIMEOUT,
) -> bytes:
    """One git call outside the Runner: before the event loop exists, or in a worker thread
    with input on stdin (which the Runner does not pass). An argv list, a timeout and the
    caller's clean environment, as for every other program.
    """
    argv = ("git", "-C", str(start), *args)
    feed: dict[str, Any] = {"stdin": subprocess.DEVNULL} if stdin is None else {"input": stdin}
    try:
        done = subprocess.run(
            argv, capture_output=True, timeout=timeout, env=dict(env), check=False, **feed
        )
    except subprocess.TimeoutExpired as exc:
        raise errors.ControllerError(f"git {args[0]} gave no answer within {timeout:g}s") from exc
    except OSError as exc:
        raise errors.ControllerError(f"cannot run git: {exc}") from exc
    if done.returncode != 0:
        error = done.stderr.decode("utf-8", "replace").strip()
        raise GitFailed(error or f"git {args[0]} exited {done.returncode}")
    return bytes(done.stdout)
