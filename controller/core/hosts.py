"""Many hosts: which lanes this host owns, which records are another host's, and what the
other hosts' leases say (DESIGN §9).

With `Workspace.hosts`, a host reconciles only its lanes: the planner sees only the desired
lanes it owns and only the inventory rows that are its own; a lane no host selects is
`Unscheduled`, a lane of a host whose lease expired is `HostLost`. Without `hosts` the one host
owns everything and nothing here changes a pass. Pure: no I/O, no clock (the database's time
comes in with the leases).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field, replace
from typing import TypeVar

from controller.core import world
from controller.spec import workspace
from controller.spec.state import DesiredState

UNSCHEDULED = "Unscheduled"
HOST_LOST = "HostLost"
ON_ANOTHER_HOST = "OnAnotherHost"

_R = TypeVar("_R", world.LaneRecord, world.AgentRecord)


HostState = world.HostState
Lease = world.Lease
Leases = world.Leases


@dataclass(frozen=True, slots=True)
class Hosting:
    """This host's share of desired state: ``owners`` maps each declared lane to the host
    that owns it (None: no host selects it). Without declared hosts, everything is ours."""

    me: str
    hosts: tuple[str, ...] = ()
    owners: Mapping[str, str | None] = field(default_factory=dict)

    @property
    def enabled(self) -> bool:
        """Whether the workspace declares hosts (else the one host owns every lane)."""
        return bool(self.hosts)

    def is_me(self, host: str | None) -> bool:
        """Whether ``host`` names this host."""
        return host is not None and host.lower() == self.me.lower()

    def owns(self, lane: str) -> bool:
        """Whether desired state gives ``lane`` to this host."""
        return not self.enabled or self.is_me(self.owners.get(lane))

    def mine(self, lane: str, host: str | None) -> bool:
        """Whether a record of ``lane`` written by ``host`` is this host's to act on.

        A record without a host was written by a single host before `hosts` existed: it belongs
        to whichever host owns its lane now.
        """
        if not self.enabled:
            return True
        return self.owns(lane) if host is None else self.is_me(host)

    def host_of(self, lane: str, host: str | None = None) -> str | None:
        """The host a lane is on: its record's, else the one desired state gives it to."""
        if not self.enabled:
            return self.me
        return host if host is not None else self.owners.get(lane)


def hosting(desired: DesiredState, me: str) -> Hosting:
    """Who owns each declared lane, seen from host ``me``."""
    declared = tuple(h.name for h in desired.workspace.spec.hosts)
    if not declared:
        return Hosting(me=me)
    owners = {
        name: next(iter(workspace.owners(desired.workspace, lane)), None)
        for name, lane in desired.lanes.items()
    }
    return Hosting(me=me, hosts=declared, owners=owners)


def split(hosting_: Hosting, records: Mapping[str, _R]) -> tuple[dict[str, _R], dict[str, _R]]:
    """Records this host acts on, and those of other hosts (never touched), by key."""
    mine: dict[str, _R] = {}
    foreign: dict[str, _R] = {}
    for key, record in records.items():
        target = mine if hosting_.mine(_lane_of(record), record.host) else foreign
        target[key] = record
    return mine, foreign


def _lane_of(record: world.LaneRecord | world.AgentRecord) -> str:
    return record.lane if isinstance(record, world.AgentRecord) else record.name


def restrict(desired: DesiredState, hosting_: Hosting, foreign: Iterable[str] = ()) -> DesiredState:
    """Desired state as this host reconciles it: its own lanes and their bindings.

    A lane this host owns whose record is still another host's (the lane is moving) waits
    until that host has removed it: both must never hold one lane.
    """
    if not hosting_.enabled:
        return desired
    held = set(foreign)
    lanes = {n: lane for n, lane in desired.lanes.items() if hosting_.owns(n) and n not in held}
    bindings = {n: b for n, b in desired.bindings.items() if b.spec.lane in lanes}
    return replace(desired, lanes=lanes, bindings=bindings)


def conditions(
    hosting_: Hosting,
    foreign: Mapping[str, world.LaneRecord],
    leases: Leases | None,
) -> dict[str, tuple[world.Condition, ...]]:
    """Conditions of the lanes this host does not reconcile: `Unscheduled` (no host selects
    it), `HostLost` (its host's lease expired) or `OnAnotherHost` (it is still held there)."""
    if not hosting_.enabled:
        return {}
    found: dict[str, tuple[world.Condition, ...]] = {}
    for lane in sorted({*hosting_.owners, *foreign}):
        record = foreign.get(lane)
        host = hosting_.host_of(lane, record.host if record else None)
        if host is None:
            found[lane] = (_unscheduled(lane, hosting_),)
        elif not hosting_.is_me(host):
            lost = _lost(host, leases)
            if lost is not None:
                found[lane] = (lost,)
    for lane, record in foreign.items():
        owner = hosting_.owners.get(lane)
        if hosting_.is_me(owner) and lane not in found:
            message = f"waiting for host {record.host} to remove its worktree (lane moved here)"
            found[lane] = (world.Condition(ON_ANOTHER_HOST, "Moving", message),)
    return found


def _unscheduled(lane: str, hosting_: Hosting) -> world.Condition:
    hosts = ", ".join(hosting_.hosts)
    message = f"no host selects lane {lane} (hosts: {hosts}); it is created nowhere"
    return world.Condition(UNSCHEDULED, "NoHostSelects", message)


def _lost(host: str, leases: Leases | None) -> world.Condition | None:
    """`HostLost` when ``host``'s lease expired (or it never held one); None when it is live or
    was released."""
    if leases is None:
        return None
    lease = leases.of(host)
    if lease is None:
        return world.Condition(HOST_LOST, "NeverSeen", f"host {host} has never held a lease")
    if lease.state(leases.now) != HostState.LOST:
        return None  # live, or stopped on purpose (a daemon stopped, a --once that ended)
    message = (
        f"host {host} (pid {lease.pid} on {lease.machine}) has not renewed its lease since "
        f"{lease.renewed_at.isoformat()}; its worktrees and agents are left as they are"
    )
    return world.Condition(HOST_LOST, "LeaseExpired", message)


def waiting(
    desired: DesiredState, leases: Leases | None, participant: str
) -> tuple[str, str] | None:
    """Why a queued wake of ``participant`` waits, with `hosts`: ``("host_lost", HOST)`` when
    the host of its lane is lost (its job is claimed by nobody until it returns), else None."""
    binding = desired.binding_of(participant)
    if leases is None or binding is None or not desired.workspace.spec.hosts:
        return None
    lane = desired.lanes.get(binding.spec.lane)
    owner = next(iter(workspace.owners(desired.workspace, lane)), None) if lane else None
    if owner is None or leases.state(owner) not in (HostState.LOST, None):
        return None
    return "host_lost", owner


def views(
    hosting_: Hosting,
    leases: Leases | None,
    records: Mapping[str, world.LaneRecord],
) -> list[dict[str, object]]:
    """``status``'s ``hosts``: each declared or leased host, its state and its lanes."""
    if not hosting_.enabled:
        return []
    lanes: dict[str, set[str]] = {}
    for lane in {*hosting_.owners, *records}:
        record = records.get(lane)
        host = hosting_.host_of(lane, record.host if record else None)
        if host is not None:
            lanes.setdefault(host.lower(), set()).add(lane)
    leased = tuple(x.name for x in leases.items) if leases is not None else ()
    names = {h.lower(): h for h in (*leased, *hosting_.hosts)}
    return [_view(names[key], leases, sorted(lanes.get(key, ()))) for key in sorted(names)]


def _view(name: str, leases: Leases | None, lanes: list[str]) -> dict[str, object]:
    lease = leases.of(name) if leases is not None else None
    state = lease.state(leases.now) if lease is not None and leases is not None else None
    return {
        "name": name,
        "state": str(state) if state is not None else "unknown",  # never held a lease
        "leaseExpiresAt": lease.expires_at.isoformat() if lease else None,
        "pid": lease.pid if lease else None,
        "machine": lease.machine if lease else None,
        "version": lease.version if lease else None,
        "lanes": lanes,
    }
