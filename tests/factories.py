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


def binding(name: str, lane_: str = "a", participant: str | None = None, **spec: Any) -> Any:
    from controller.spec.binding import Binding

    spec.setdefault("command", ["agent"])
    return Binding.model_validate(
        {
            "apiVersion": "lanes/v1",
            "kind": "Binding",
            "metadata": {"name": name},
            "spec": {"lane": lane_, "participant": participant or name, **spec},
        },
        strict=False,  # test data is written with Python lists, YAML would give sequences
    )


def agent(
    b: Any, state: world.AgentState = world.AgentState.RUNNING, **kw: Any
) -> world.AgentRecord:
    from controller.core import lifecycle

    kw.setdefault("pid", 100)
    kw.setdefault("pid_created", 1000.0)
    kw.setdefault("spec_fields", dict(lifecycle.spec_fields(b)))
    if b.spec.runtime == "tmux":
        kw.setdefault("pane_id", "%1")
        kw.setdefault("window_id", "@1")
        kw.setdefault("session_id", "$1")
    return world.AgentRecord(
        binding=b.name,
        lane=b.spec.lane,
        participant=b.spec.participant,
        runtime=b.spec.runtime,
        state=state,
        spec_hash=lifecycle.spec_hash(b),
        **kw,
    )


def pane(record: world.AgentRecord, **kw: Any) -> world.Pane:
    kw.setdefault("pid", record.pid)
    return world.Pane(
        session_id=record.session_id or "$1",
        window_id=record.window_id or "@1",
        pane_id=record.pane_id or "%1",
        session_name=record.lane,
        **kw,
    )


def proc(record: world.AgentRecord) -> dict[int, world.Proc]:
    assert record.pid is not None and record.pid_created is not None
    return {record.pid: world.Proc(record.pid, record.pid_created)}
