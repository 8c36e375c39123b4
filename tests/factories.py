"""Factories for desired-state values and observed snapshots used by unit tests."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from controller.core import world
from controller.core.phases import Phase
from controller.spec.lane import Lane
from controller.spec.state import DesiredState
from controller.spec.workspace import Workspace

REPO = "/r"
ROOT = "/r/.lanes/worktrees"


def lane(name: str, **spec: Any) -> Lane:
    return Lane.model_validate(
        {"apiVersion": "lanes/v1", "kind": "Lane", "metadata": {"name": name}, "spec": spec}
    )


def desired(*lanes: Lane | str, **workspace: Any) -> DesiredState:
    docs: list[Any] = [lane(x) if isinstance(x, str) else x for x in lanes]
    if workspace:
        docs.append(
            Workspace.model_validate(
                {
                    "apiVersion": "lanes/v1",
                    "kind": "Workspace",
                    "metadata": {"name": "default"},
                    "spec": workspace,
                }
            )
        )
    return DesiredState.build(docs)


def path(name: str) -> str:
    return f"{ROOT}/{name}"


def tree(name: str, branch: str | None = None, **kw: Any) -> world.GitWorktree:
    return world.GitWorktree(path(name), head="c0ffee", branch=branch or f"lane/{name}", **kw)


def record(name: str, phase: Phase = Phase.READY, **kw: Any) -> world.LaneRecord:
    kw.setdefault("branch", f"lane/{name}")
    return world.LaneRecord(name=name, phase=phase, path=path(name), **kw)


def entry(name: str, *, is_dir: bool = True, is_symlink: bool = False) -> world.RootEntry:
    return world.RootEntry(name, is_dir=is_dir, is_symlink=is_symlink)


def observed(
    trees: Iterable[world.GitWorktree] = (),
    entries: Iterable[world.RootEntry] | None = None,
    records: Iterable[world.LaneRecord] = (),
    branches: Mapping[str, str] | None = None,
) -> world.Observed:
    trees = (world.GitWorktree(REPO, head="c0ffee", branch="main"), *trees)
    if entries is None:  # by default every worktree that is not prunable has its directory
        entries = [entry(t.path.rsplit("/", 1)[1]) for t in trees[1:] if t.prunable is None]
    names = branches if branches is not None else {t.branch: "c0ffee" for t in trees if t.branch}
    return world.Observed(
        repo=REPO,
        root=ROOT,
        worktrees=tuple(trees),
        root_entries=tuple(sorted(entries, key=lambda e: e.name)),
        branches=dict(names),
        records={r.name: r for r in records},
    )
