"""Many hosts on the command line (DESIGN §9): ``hosts`` lists them as ``status`` does, ``hosts
forget NAME`` deletes the lease row of a host gone for good (decision 125), and ``check_host``
tells a command that must run on a lane's own host (``attach``, ``logs``) where to go.

``hosts``: 0 listed, 1 the Workspace declares no hosts. ``hosts forget``: 0 forgotten, 1 refused
(unknown, still declared, live, or still holding lane or agent records without
``--drop-lanes``, decision 127).
"""

from __future__ import annotations

import uuid
from typing import Any

import click

from controller.cli import common, output
from controller.core import hosts, world
from controller.runtime import wiring
from controller.spec.state import DesiredState
from controller.store import events, leases, queries

FORGOTTEN = "HostForgotten"


def register(group: click.Group) -> None:
    """Add the command to the command line."""
    group.add_command(hosts_group)


def check_host(
    desired: DesiredState,
    paths: wiring.Paths,
    lane: str,
    record: world.LaneRecord | None,
    *,
    then: str,
) -> None:
    """Exit 1 naming the host to go to when ``lane`` is another host's (its panes, files and
    logs are on that machine) or no host's; ``then`` is the command to run there."""
    mine = hosts.hosting(desired, paths.host)
    host = mine.host_of(lane, record.host if record else None)
    if host is None and lane in desired.lanes:
        common.fail(f"lane {lane} is Unscheduled: no host in the Workspace's hosts selects it")
    if host is not None and not mine.is_me(host):
        common.fail(f"lane {lane} runs on host {host}: ssh {host}, then {then}")


@click.group("hosts", invoke_without_command=True)
@common.global_options
@click.pass_context
@common.handle_errors
def hosts_group(ctx: click.Context, /, **given: Any) -> None:
    """List the hosts of the Workspace: lease state, holder and lanes (as `status` does)."""
    settings = common.merge(ctx, **given)
    if ctx.invoked_subcommand is not None:
        return
    desired, paths = _hosted(settings)
    store = wiring.open_store(paths)
    try:
        seen, records = leases.read(store), store.lane_records()
    finally:
        store.close()
    mine = hosts.hosting(desired, paths.host)
    declared = {h.lower() for h in mine.hosts}
    listed = [
        {**view, "declared": str(view["name"]).lower() in declared}
        for view in hosts.views(mine, seen, records)
    ]
    if settings.json:
        click.echo(output.to_json({"host": mine.me, "hosts": listed}))
        return
    for view in listed:
        click.echo(_line(view, me=mine))


def _line(view: dict[str, Any], *, me: hosts.Hosting) -> str:
    this = " (this host)" if me.is_me(str(view["name"])) else ""
    gone = "" if view["declared"] else " (not declared)"
    held = f", pid {view['pid']} on {view['machine']}" if view["pid"] else ""
    lease = f", lease until {view['leaseExpiresAt']}" if view["leaseExpiresAt"] else ""
    lanes = ", ".join(view["lanes"]) or "none"
    return f"host {view['name']}{this}{gone}: {view['state']}{held}{lease}; lanes: {lanes}"


@hosts_group.command("forget")
@common.global_options
@click.argument("name")
@click.option("--reason", required=True, help="Why (recorded in the event log).")
@click.option(
    "--drop-lanes",
    is_flag=True,
    help="Its disk is gone for good: forget the lane and agent records it holds too, so other "
    "hosts may create those lanes anew. No file, branch or process is touched.",
)
@click.pass_context
@common.handle_errors
def hosts_forget(
    ctx: click.Context, /, name: str, reason: str, drop_lanes: bool, **given: Any
) -> None:
    """Delete the lease row of host NAME, gone for good: it leaves `status` and `hosts`.

    Refused while NAME is live or still declared in the Workspace's hosts, and, without
    --drop-lanes, while it holds lane or agent records (their worktrees are on its disk).
    Nothing but its lease row (and, with --drop-lanes, those records) is deleted.
    """
    settings = common.merge(ctx, **given)
    desired, paths = _hosted(settings)
    store = wiring.open_store(paths)
    try:
        lease = _check_forget(store, desired, paths, name, drop_lanes=drop_lanes)
        event = _event(lease.name, reason)
        gone = leases.forget(store, lease.name, event=event, drop_lanes=drop_lanes)
        if gone is None:
            common.fail(f"host {lease.name} changed while it was being forgotten; nothing done")
    finally:
        store.close()
    if settings.json:
        view = {"host": gone.host, "forgotten": True}
        if drop_lanes:
            view |= {"droppedLanes": list(gone.lanes), "droppedAgents": list(gone.agents)}
        click.echo(output.to_json(view))
        return
    click.echo(f"forgot host {gone.host}")
    if gone.lanes:
        click.echo(dropped_line(gone))


def dropped_line(gone: leases.Forgotten) -> str:
    """What ``hosts forget --drop-lanes`` says of the records it dropped."""
    lanes = ("lane " if len(gone.lanes) == 1 else "lanes ") + ", ".join(gone.lanes)
    agents = f"{len(gone.agents)} agent" + ("" if len(gone.agents) == 1 else "s")
    return (
        f"dropped the records of {lanes} and {agents}: "
        "a host that selects them creates them anew from their branches"
    )


def _check_forget(
    store: queries.Store,
    desired: DesiredState,
    paths: wiring.Paths,
    name: str,
    *,
    drop_lanes: bool,
) -> hosts.Lease:
    """The lease row of ``name``, or exit 1 saying why it may not be forgotten."""
    seen = leases.read(store)
    lease = seen.of(name)
    declared = [h for h in desired.workspace.spec.hosts if h.name.lower() == name.lower()]
    where = desired.locations.get(("Workspace", paths.workspace))
    declared_at = (str(where) if where is not None else "desired/") if declared else None
    on_it = [f"lane {r.name}" for r in store.lane_records().values() if _on(r.host, name)]
    on_it += [
        f"agent {a.participant} (lane {a.lane})"
        for a in store.agent_records().values()
        if _on(a.host, name)
    ]
    why = leases.forget_refusal(
        name, lease, seen.now, declared_at=declared_at, records=on_it, drop_lanes=drop_lanes
    )
    if why is not None:
        common.fail(why)
    assert lease is not None  # forget_refusal refuses a host without a lease row
    return lease


def _on(host: str | None, name: str) -> bool:
    return host is not None and host.lower() == name.lower()


def _event(name: str, reason: str) -> events.Event:
    """The audit record: who forgot which host, and why."""
    data = {"host": name, "by": wiring.who()}
    correlation = uuid.uuid4().hex[:16]
    return events.Event(FORGOTTEN, reason, common.clock().now(), correlation, data=data)


def _hosted(settings: common.Settings) -> tuple[DesiredState, wiring.Paths]:
    """Desired state and paths of a Workspace with `hosts`; exit 1 without them."""
    loaded = common.load_or_exit(settings)
    paths = common.paths(settings, loaded)
    if not paths.hosted:
        common.fail("the Workspace declares no hosts: one host, no leases (see DESIGN §9)")
    return wiring.effective(paths, loaded), paths
