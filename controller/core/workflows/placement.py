"""Where a run's tasks run, with many hosts: each connected part of the DAG on one live host.

A task with dependencies branches from the merge of their final commits, which exist only in
the clone of the host that ran them (hosts share PostgreSQL, not their disks). So the tasks of
one *group* (a connected part of the workflow's DAG: tasks linked by `dependsOn`, either way)
share a host: the first one placed decides, and the others follow it, also across attempts.
A group not yet placed goes to the least loaded live host the workflow allows (the fewest
running tasks, of every run), the first declared one on a tie. Independent groups of one run,
and different runs, spread over the hosts.

Every host computes the same placement from the same store rows and leases; only the host a
task is placed on dispatches it, and the dispatch's own statement refuses a task whose group
is already on another host (``store.runs.dispatch``), so two hosts that disagree for a moment
never split a group. A group whose host is lost waits for it: nobody else has its commits.
Pure: no I/O.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass

from controller.core.workflows.model import TaskSpec


@dataclass(frozen=True, slots=True)
class Placed:
    """Where a ready task goes: ``host``, or None and why it waits."""

    host: str | None
    why: str = ""


def groups(tasks: Sequence[TaskSpec]) -> dict[str, tuple[str, ...]]:
    """Each task's group: the tasks connected to it by dependencies, in declaration order."""
    parent = {t.name: t.name for t in tasks}

    def root(name: str) -> str:
        while parent[name] != name:
            parent[name] = parent[parent[name]]
            name = parent[name]
        return name

    for task in tasks:
        for needed in task.depends_on:
            if needed in parent:
                parent[root(needed)] = root(task.name)
    members: dict[str, list[str]] = {}
    for task in tasks:
        members.setdefault(root(task.name), []).append(task.name)
    return {name: tuple(members[root(name)]) for name in parent}


@dataclass(frozen=True, slots=True)
class Hosts:
    """The hosts a run may use and what the leases say of them (names compare in lower case)."""

    allowed: tuple[str, ...]  # in declaration order
    live: frozenset[str]  # lower-cased
    load: Mapping[str, int]  # lower-cased name -> running tasks (every run)

    def is_live(self, host: str) -> bool:
        """Whether ``host``'s lease is held now."""
        return host.lower() in self.live


def place(
    ready: Iterable[str],
    grouping: Mapping[str, tuple[str, ...]],
    recorded: Mapping[str, str | None],
    hosts: Hosts,
) -> dict[str, Placed]:
    """The host of each task of ``ready`` (in dispatch order).

    ``recorded`` is the host each task of the run was placed on (None: not yet). A group keeps
    the host one of its tasks has; a new group takes the least loaded live allowed host, and
    counts towards that host's load for the groups placed after it.
    """
    chosen: dict[str, str] = {}  # group key -> host, this call's choices
    load = {name.lower(): count for name, count in hosts.load.items()}
    found: dict[str, Placed] = {}
    for task in ready:
        group = grouping.get(task, (task,))
        key = group[0]
        host = chosen.get(key) or next((h for t in group if (h := recorded.get(t))), None)
        if host is not None:
            chosen[key] = host
            if hosts.is_live(host):
                found[task] = Placed(host)
            else:
                found[task] = Placed(None, f"waits for host {host}, which has its group's work")
            continue
        candidates = [h for h in hosts.allowed if hosts.is_live(h)]
        if not candidates:
            allowed = ", ".join(hosts.allowed) or "none"
            found[task] = Placed(None, f"no live host may run it (allowed: {allowed})")
            continue
        best = min(candidates, key=lambda h: (load.get(h.lower(), 0), candidates.index(h)))
        chosen[key] = best
        load[best.lower()] = load.get(best.lower(), 0) + 1
        found[task] = Placed(best)
    return found
