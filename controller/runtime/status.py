"""The status view: the inventory, what desired state declares, and what a plan would do now.

Built from a fresh observation (nothing is changed), so ``controller status`` shows the world
as it is, not as the last pass left it.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any

import anyio

from controller.core import hosts, lifecycle, planner, triggers, world
from controller.core.phases import Phase
from controller.runtime import runviews, wiring
from controller.runtime.reconcile import Reconciler
from controller.spec.binding import Binding
from controller.spec.loading import Problem
from controller.spec.state import DesiredState
from controller.store import jobs, messaging, participants


async def build(
    reconciler: Reconciler, desired: DesiredState, problems: Sequence[Problem] = ()
) -> dict[str, Any]:
    """The ``controller status --output json`` object (DESIGN §8)."""
    # With invalid desired state the view shows the inventory as it is, without pretending the
    # (empty) fallback state would remove everything.
    the_plan, observed, now = await reconciler.plan(desired, allow_empty=bool(problems))
    return await compose(reconciler, desired, problems=problems, seen=(the_plan, observed, now))


async def compose(
    reconciler: Reconciler,
    desired: DesiredState,
    *,
    problems: Sequence[Problem],
    seen: tuple[planner.Plan, world.Observed, datetime],
) -> dict[str, Any]:
    """The status object from a plan already made (the daemon's pass made it: no second look
    at git, tmux and processes), reading only the store afresh."""
    the_plan, observed, now = seen
    paths = reconciler.wiring.paths
    hosting = hosts.hosting(wiring.effective(paths, desired), paths.host)
    names = sorted(set(desired.lanes) | set(observed.records) | set(observed.foreign))
    lanes = [_lane(name, desired, observed, the_plan, now) for name in names]
    view = {
        "workspace": reconciler.wiring.paths.workspace,
        "repo": str(reconciler.wiring.paths.repo),
        "worktreeRoot": str(reconciler.wiring.paths.root),
        "desiredValid": not problems,
        "problems": [str(p) for p in problems],
        "lanes": lanes,
        "participants": await _participants(reconciler, desired, observed),
        "triggers": await anyio.to_thread.run_sync(jobs.counts, reconciler.wiring.store),
        "runs": await anyio.to_thread.run_sync(_runs, reconciler, desired),
        "notices": list(the_plan.notices),
        "refused": the_plan.refused,
        "pending": {
            "actions": len(the_plan.actions),
            "heldBack": len(the_plan.pending),
        },
    }
    return {**view, **_hosts(hosting, observed, lanes)} if hosting.enabled else view


def _hosts(
    hosting: hosts.Hosting, observed: world.Observed, lanes: list[dict[str, Any]]
) -> dict[str, Any]:
    """Many hosts: this host's name, every host's lease and lanes, and each lane's host (set
    on ``lanes``). A single host's view has none of these keys."""
    every = {**observed.foreign, **observed.records}
    for lane in lanes:
        record = every.get(lane["name"])
        lane["host"] = hosting.host_of(lane["name"], record.host if record else None)
    return {"host": hosting.me, "hosts": hosts.views(hosting, observed.leases, every)}


def _runs(reconciler: Reconciler, desired: DesiredState) -> list[dict[str, Any]]:
    """Runs that are running or still hold lanes (`controller runs` lists them all)."""
    found = runviews.runs_view(reconciler.wiring.store, desired)["runs"]
    return [r for r in found if r["phase"] == "running" or not r["cleaned"]]


def _lane(
    name: str,
    desired: DesiredState,
    observed: world.Observed,
    the_plan: planner.Plan,
    now: datetime,
) -> dict[str, Any]:
    record = observed.records.get(name) or observed.foreign.get(name)
    lane = desired.lanes.get(name)
    path = record.path if record else planner.lane_path(observed.root, name)
    conditions = [*(record.conditions if record else ()), *the_plan.conditions.get(name, ())]
    todo = [a.describe() for a in the_plan.actions if a.lane == name]
    tree = observed.worktree_at(path)
    branch = tree.branch if tree is not None and tree.branch else None
    return {
        "name": name,
        "phase": str(record.phase if record else Phase.NEW),
        "declared": lane is not None,
        "branch": branch or (record.branch if record else (lane.branch if lane else None)),
        "worktree": path,
        "conditions": [
            {"type": c.type, "reason": c.reason, "message": c.message} for c in conditions
        ],
        "agents": _agents(name, desired, observed, now),
        "pendingActions": todo,
        "inSync": not todo and not conditions,
    }


def _agents(
    lane: str, desired: DesiredState, observed: world.Observed, now: datetime
) -> list[dict[str, Any]]:
    names = {b.name for b in desired.bindings_of(lane)}
    names |= {a.binding for a in observed.agents.values() if a.lane == lane}
    names |= {a.binding for a in observed.foreign_agents.values() if a.lane == lane}
    return [_agent(name, desired, observed, now) for name in sorted(names)]


def _agent(
    name: str, desired: DesiredState, observed: world.Observed, now: datetime
) -> dict[str, Any]:
    record = observed.agents.get(name)
    binding = desired.bindings.get(name)
    elsewhere = observed.foreign_agents.get(name)
    if record is None and elsewhere is not None:
        # Another host's agent: shown as that host last recorded it (its processes are there).
        return _foreign_agent(elsewhere, declared=binding is not None)
    if record is None:
        assert binding is not None
        return _pending_agent(name, binding)
    running = record.state == world.AgentState.RUNNING
    beat = lifecycle.last_heartbeat(record, binding, observed) if binding and running else None
    return {
        "binding": name,
        "participant": record.participant,
        "runtime": record.runtime,
        "pid": _agent_pid(record, observed),
        "launcherPid": record.pid if record.runtime == "process" else None,
        "pane": record.pane_id,
        "window": record.window_id,
        "state": _agent_state(record, observed),
        "restarts": record.restarts,
        "lastExit": record.last_exit,
        "heartbeatAge": round((now - beat).total_seconds(), 1) if beat else None,
        "blocked": record.blocked,
        "declared": binding is not None,
        "log": record.log_path,
        "nextStartAt": record.next_start_at.isoformat() if record.next_start_at else None,
    }


def _foreign_agent(record: world.AgentRecord, *, declared: bool) -> dict[str, Any]:
    """Another host's agent, as that host last recorded it (its processes are over there)."""
    return {
        "binding": record.binding,
        "participant": record.participant,
        "runtime": record.runtime,
        "pid": record.pid,
        "launcherPid": None,
        "pane": record.pane_id,
        "window": record.window_id,
        "state": str(record.state),
        "restarts": record.restarts,
        "lastExit": record.last_exit,
        "heartbeatAge": None,
        "blocked": record.blocked,
        "declared": declared,
        "log": record.log_path,
        "nextStartAt": record.next_start_at.isoformat() if record.next_start_at else None,
        "host": record.host,
    }


def _pending_agent(name: str, binding: Binding) -> dict[str, Any]:
    """A declared agent no pass has started yet."""
    return {
        "binding": name,
        "participant": binding.spec.participant,
        "runtime": binding.spec.runtime,
        "pid": None,
        "launcherPid": None,
        "pane": None,
        "window": None,
        "state": "pending",
        "restarts": 0,
        "lastExit": None,
        "heartbeatAge": None,
        "blocked": None,
        "declared": True,
        "log": None,
        "nextStartAt": None,
    }


def _agent_state(record: world.AgentRecord, observed: world.Observed) -> str:
    """The recorded state, or ``dead`` / ``unknown`` for a running agent not seen alive."""
    if record.state != world.AgentState.RUNNING:
        return str(record.state)
    seen = lifecycle.liveness(record, observed)
    if seen.life == lifecycle.Life.ALIVE:
        return str(record.state)
    return "unknown" if seen.life == lifecycle.Life.UNKNOWN else "dead"


def _agent_pid(record: world.AgentRecord, observed: world.Observed) -> int | None:
    """The agent's own pid: a tmux pane runs it directly; a process-runtime launcher runs it
    as its child (known while it runs), and ``kill`` must reach the agent, not the launcher."""
    if record.runtime != "process":
        return record.pid
    child = observed.supervised.get(record.binding)
    return child.pid if child is not None else None


async def _participants(
    reconciler: Reconciler, desired: DesiredState, observed: world.Observed
) -> list[dict[str, Any]]:
    store = reconciler.wiring.store
    names = {b.spec.participant for b in desired.bindings.values()}
    names |= {p for t in desired.threads.values() for p in t.spec.participants}
    blocked = {a.participant: a.blocked for a in observed.agents.values() if a.blocked}
    states = await anyio.to_thread.run_sync(participants.every, store)
    blocked |= {n: s.blocked for n, s in states.items() if s.blocked}
    counts = await anyio.to_thread.run_sync(messaging.unread, store, triggers.members(desired))
    unread: dict[str, dict[str, int]] = {}
    for u in counts:
        unread.setdefault(u.participant, {})[u.thread] = u.count
    return [
        {
            "name": name,
            "managed": desired.binding_of(name) is not None,
            "blocked": name in blocked,
            "reason": blocked.get(name),
            "unread": unread.get(name, {}),
        }
        for name in sorted(names)
    ]
