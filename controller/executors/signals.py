"""Stopping processes safely: identity checked (PID *and* create time) before every signal,
SIGTERM to the whole family, SIGKILL after the grace period.

An agent's family is its process group, its descendants (even those that left the group with
``setsid``), the other processes of its session, and every process that carries its launcher's
``LANE_AGENT_ID`` (so a helper that double-forked and was re-parented to init is still found).
The family is gathered before the first signal and again before SIGKILL.
"""

from __future__ import annotations

import contextlib
import enum
import os
import signal
from collections.abc import Iterable, Mapping
from dataclasses import dataclass

import anyio
import psutil

from controller.core import lifecycle
from controller.system import clock, launch

POLL = 0.1
KILL_WAIT = 5.0
TOLERANCE = lifecycle.CREATE_TIME_TOLERANCE


class Ended(enum.StrEnum):
    """How a stop went."""

    NOT_RUNNING = "not-running"  # already gone, or the PID now belongs to another process
    TERMINATED = "terminated"  # ended within the grace period after SIGTERM
    KILLED = "killed"  # needed SIGKILL
    SURVIVED = "survived"  # still there after SIGKILL (e.g. stuck in the kernel)


@dataclass(frozen=True, slots=True, order=True)
class Member:
    """One process, identified by its PID and create time (PIDs are reused)."""

    pid: int
    created: float


@dataclass(frozen=True, slots=True)
class Family:
    """A process to stop and everything it started that can still be found."""

    leader: Member
    members: frozenset[Member] = frozenset()  # the leader excluded
    ids: frozenset[str] = frozenset()  # the LANE_AGENT_ID values the family carries

    def everyone(self) -> tuple[Member, ...]:
        """The leader, then the members in pid order."""
        return (self.leader, *sorted(self.members - {self.leader}))


@dataclass(frozen=True, slots=True)
class _Row:
    """One live process of a scan of the process table."""

    pid: int
    ppid: int
    created: float


def matches(pid: int, created: float | None) -> bool:
    """Whether ``pid`` is alive and is the process that was recorded (not a reused PID)."""
    if created is None:
        return False
    try:
        proc = psutil.Process(pid)
        if proc.status() == psutil.STATUS_ZOMBIE:
            return False
        return abs(proc.create_time() - created) <= lifecycle.CREATE_TIME_TOLERANCE
    except (psutil.NoSuchProcess, psutil.AccessDenied):
        return False


def create_time(pid: int) -> float | None:
    """The create time of ``pid``, or None if it is already gone."""
    try:
        return psutil.Process(pid).create_time()
    except psutil.Error:
        return None


def _scan() -> dict[int, _Row]:
    rows: dict[int, _Row] = {}
    for proc in psutil.process_iter(["pid", "ppid", "create_time", "status"]):
        info = proc.info
        if info["create_time"] is None or info["status"] == psutil.STATUS_ZOMBIE:
            continue
        rows[info["pid"]] = _Row(info["pid"], info["ppid"] or 0, info["create_time"])
    return rows


def _alive(rows: Mapping[int, _Row], member: Member) -> bool:
    row = rows.get(member.pid)
    return row is not None and abs(row.created - member.created) <= TOLERANCE


def _descendants(rows: Mapping[int, _Row], roots: Iterable[int]) -> set[Member]:
    children: dict[int, list[_Row]] = {}
    for row in rows.values():
        children.setdefault(row.ppid, []).append(row)
    found: set[Member] = set()
    todo = list(roots)
    while todo:
        for row in children.get(todo.pop(), ()):
            if Member(row.pid, row.created) not in found:
                found.add(Member(row.pid, row.created))
                todo.append(row.pid)
    return found


def _ids_of(pid: int) -> tuple[int, int] | None:
    """(session id, process group id) of ``pid``, or None if it is gone."""
    try:
        return os.getsid(pid), os.getpgid(pid)
    except OSError:
        return None


def _agent_id(pid: int) -> str | None:
    try:
        return psutil.Process(pid).environ().get(launch.AGENT_ID)
    except psutil.Error:
        return None  # gone, a zombie, or not readable (another user, a non-dumpable process)


def _own_ids() -> frozenset[str]:
    """Agent ids this controller carries (it runs inside an agent): never swept."""
    own = _agent_id(os.getpid())
    return frozenset({own} if own else ())


def _leader_ids_in_use(family: Family, alive: Iterable[Member]) -> frozenset[int]:
    """The leader's pid as a session or group id, while someone alive still uses it.

    The kernel does not reuse a pid while a session or group of that id has a member, so
    scanning for it is safe exactly then (the leader may already be gone).
    """
    leader = family.leader.pid
    for member in alive:
        ids = _ids_of(member.pid)
        if ids is not None and leader in ids:
            return frozenset({leader})
    return frozenset()


def _in_session_or_group(rows: Iterable[_Row], ids: frozenset[int]) -> set[Member]:
    found: set[Member] = set()
    for row in rows if ids else ():
        own = _ids_of(row.pid)
        if own is not None and ids & set(own):
            found.add(Member(row.pid, row.created))
    return found


def _carrying(rows: Iterable[_Row], agent_ids: frozenset[str]) -> set[Member]:
    if not agent_ids:
        return set()
    return {Member(r.pid, r.created) for r in rows if _agent_id(r.pid) in agent_ids}


def gather(leader: Member, previous: Family | None = None) -> Family:
    """The leader's family now, added to ``previous``: its descendants, the members of its
    session and group, and the carriers of its agent ids (all born after it); never this
    process."""
    rows = _scan()
    family = previous or Family(leader)
    alive = [m for m in family.everyone() if _alive(rows, m)]
    # Helpers are born after the leader: older processes are never part of its family.
    recent = [r for r in rows.values() if r.created >= leader.created - TOLERANCE]
    members = set(family.members) | _descendants(rows, (m.pid for m in alive))
    members |= _in_session_or_group(recent, _leader_ids_in_use(family, alive))
    agent_ids = family.ids
    if previous is None:
        carried = (_agent_id(m.pid) for m in (leader, *members))
        agent_ids = frozenset(i for i in carried if i) - _own_ids()
    members |= _carrying(recent, agent_ids)
    me = os.getpid()
    return Family(leader, frozenset(m for m in members if m.pid != me), agent_ids)


def _signal(family: Family, sig: signal.Signals) -> bool:
    """Signal the leader's group (or the leader) and every member outside that group."""
    sent, group = False, None
    leader = family.leader
    if matches(leader.pid, leader.created):
        with contextlib.suppress(ProcessLookupError):
            group = leader.pid if os.getpgid(leader.pid) == leader.pid else None
            if group is not None:
                os.killpg(group, sig)
            else:
                os.kill(leader.pid, sig)
            sent = True
    for member in sorted(family.members):
        ids = _ids_of(member.pid)
        if ids is None or (group is not None and ids[1] == group):
            continue  # gone, or reached through its group just now
        if matches(member.pid, member.created):
            with contextlib.suppress(ProcessLookupError):
                os.kill(member.pid, sig)
                sent = True
    return sent


def _any_alive(family: Family) -> bool:
    return any(matches(m.pid, m.created) for m in family.everyone())


async def _gone_within(family: Family, seconds: float, clk: clock.Clock) -> bool:
    waited = 0.0
    while waited < seconds:
        if not await anyio.to_thread.run_sync(_any_alive, family):
            return True
        await clk.sleep(POLL)
        waited += POLL
    return not await anyio.to_thread.run_sync(_any_alive, family)


async def terminate(
    pid: int | None, created: float | None, *, grace: float, clk: clock.Clock
) -> Ended:
    """SIGTERM the process and its family, wait up to ``grace``, then SIGKILL them."""
    if pid is None or created is None or not await anyio.to_thread.run_sync(matches, pid, created):
        return Ended.NOT_RUNNING
    family = await anyio.to_thread.run_sync(gather, Member(pid, created))
    if not await anyio.to_thread.run_sync(_signal, family, signal.SIGTERM):
        return Ended.NOT_RUNNING
    if await _gone_within(family, grace, clk):
        return Ended.TERMINATED
    family = await anyio.to_thread.run_sync(gather, family.leader, family)
    await anyio.to_thread.run_sync(_signal, family, signal.SIGKILL)
    if await _gone_within(family, KILL_WAIT, clk):
        return Ended.KILLED
    return Ended.SURVIVED
