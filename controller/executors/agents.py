"""Agent handlers: start (tmux window or detached process), stop, record an exit, adopt a live
agent the inventory lost, close the controller's stray panes.

The environment reaches the agent through a private file read (and deleted) by the launcher,
so values never appear in argv, tmux, logs or events. Lane phases follow the number of running
agents: ready (none), running (one), shared (two or more). Only panes the controller started
are ever closed, one pane at a time: a person's window, or a pane they split off an agent's
window, is never touched.
"""

from __future__ import annotations

import contextlib
import json
import os
import secrets
import subprocess
from collections.abc import Mapping
from dataclasses import replace
from pathlib import Path
from typing import Any, BinaryIO

import anyio

from controller import errors
from controller.core import actions, phases, strays, world
from controller.core.phases import Phase
from controller.executors import signals
from controller.executors.context import Context, Outcome
from controller.system import launch, paths, tmuxserver

State = world.AgentState
LAUNCHER = str(Path(launch.__file__).resolve())


async def start_agent(action: actions.StartAgent, ctx: Context) -> Outcome:
    """Start the binding's agent in the lane's worktree and record its identity."""
    worktree = paths.inside(ctx.root_of(action.path), action.path)
    if not await anyio.Path(worktree).is_dir():
        return Outcome(action, "failed", f"worktree {worktree} does not exist")
    old = await ctx.db(ctx.store.agent_record, action.binding)
    if old is not None and await _alive(old):
        running = f"lane {old.lane}, pid {old.pid}"
        message = f"its previous agent still runs ({running}); not starting a second one"
        return Outcome(action, "failed", message)
    if old is not None and old.pane_id and ctx.tmux is not None:
        await ctx.tmux.kill_pane(old.pane_id)  # the dead pane of the previous run
    envfile = await anyio.to_thread.run_sync(_write_env, ctx, action, worktree)
    pending = _carry_over(_base(ctx, action), old)
    await _record_pending(ctx, action, pending)
    try:
        record = await _launch(ctx, action, worktree, envfile, pending)
    except errors.CommandFailed:
        envfile.unlink(missing_ok=True)  # nothing was started, so nothing will read it
        await _undo_pending(ctx, action, old)
        raise
    record = await _record_start(ctx, action, record, old=old)
    where = record.pane_id or record.log_path
    return Outcome(action, "applied", f"started {action.participant} (pid {record.pid}, {where})")


async def _record_start(
    ctx: Context,
    action: actions.StartAgent,
    record: world.AgentRecord,
    *,
    old: world.AgentRecord | None,
) -> world.AgentRecord:
    """Record the started agent, its lane's phase (and its old lane's), and the event."""
    await ctx.db(ctx.store.put_agent, record, ctx.clock.now())
    await refresh_phase(ctx, action.lane)
    if old is not None and old.lane != action.lane:
        await refresh_phase(ctx, old.lane)  # the binding moved: its old lane lost an agent
    await ctx.emit(
        "AgentStarted",
        action.reason,
        lane=action.lane,
        participant=action.participant,
        binding=action.binding,
        runtime=action.runtime,
        pid=record.pid,
        pane=record.pane_id,
        window=record.window_id,
        program=action.command[0],
        restarts=record.restarts,
    )
    return record


async def _alive(record: world.AgentRecord) -> bool:
    """Whether the recorded agent still runs: never start a second copy of it."""
    if record.pid is None:
        return False
    return await anyio.to_thread.run_sync(signals.matches, record.pid, record.pid_created)


def agent_env(ctx: Context, action: actions.StartAgent, worktree: Path) -> dict[str, str]:
    """The agent's environment: the controller's, the binding's, then the lane's identity."""
    return {
        **ctx.agent_env,
        **dict(action.env),
        "LANE_NAME": action.lane,
        "LANE_WORKTREE": str(worktree),
        "LANE_PARTICIPANT": action.participant,
        "LANE_BINDING": action.binding,
        "CONTROLLER_STATE": ctx.state_url,
        "CONTROLLER_WORKSPACE": ctx.workspace,
        "CONTROLLER_DESIRED": str(ctx.desired),
    }


def _write_env(ctx: Context, action: actions.StartAgent, worktree: Path) -> Path:
    ctx.run_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
    path = ctx.run_dir / strays.env_file_name(action.binding, secrets.token_hex(6))
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o600)
    with os.fdopen(fd, "w") as out:
        json.dump(agent_env(ctx, action, worktree), out)
    return path


def _base(ctx: Context, action: actions.StartAgent) -> world.AgentRecord:
    return world.AgentRecord(
        binding=action.binding,
        lane=action.lane,
        participant=action.participant,
        runtime=action.runtime,
        state=State.STARTING,
        spec_hash=action.spec_hash,
        spec_fields=dict(action.spec_fields),
        started_at=ctx.clock.now(),
        stop_grace=action.grace,
        log_path=str(_log_path(ctx, action.lane, action.participant))
        if action.runtime == "process"
        else None,
    )


async def _record_pending(
    ctx: Context, action: actions.StartAgent, pending: world.AgentRecord
) -> None:
    """Record the start before the launch, as worktrees are recorded before ``git worktree
    add``: a controller killed in between leaves a ``starting`` record that the next pass
    settles (adopts the agent, records its exit, or starts it) instead of starting a second
    copy of an agent it has no record of. A leftover exit file would read as this launch's."""
    if action.runtime == "process":
        await anyio.Path(ctx.run_dir / f"{action.binding}.exit").unlink(missing_ok=True)
    await ctx.db(ctx.store.put_agent, pending, ctx.clock.now())


async def _undo_pending(
    ctx: Context, action: actions.StartAgent, old: world.AgentRecord | None
) -> None:
    """Nothing was launched: the binding's record is what it was before the start."""
    if old is None:
        await ctx.db(ctx.store.delete_agent, action.binding)
    else:
        await ctx.db(ctx.store.put_agent, old, ctx.clock.now())


async def _launch(
    ctx: Context,
    action: actions.StartAgent,
    worktree: Path,
    envfile: Path,
    pending: world.AgentRecord,
) -> world.AgentRecord:
    base = replace(pending, state=State.RUNNING)
    # The launcher needs only the standard library: -I -S skips site and user paths (faster).
    launcher = (ctx.python, "-I", "-S", LAUNCHER, str(envfile))
    if action.runtime == "process":
        return await _launch_process(ctx, action, worktree, launcher, base)
    created = await _new_window(ctx, action, worktree, argv=(*launcher, "--", *action.command))
    born = await anyio.to_thread.run_sync(signals.create_time, created.pid)
    return replace(
        base,
        pid=created.pid,
        pid_created=born,
        session_id=created.session_id,
        window_id=created.window_id,
        pane_id=created.pane_id,
    )


async def _new_window(
    ctx: Context, action: actions.StartAgent, worktree: Path, *, argv: tuple[str, ...]
) -> tmuxserver.Created:
    """A window in the lane's session (created if need be), from the pass's known sessions."""
    assert ctx.tmux is not None
    known = ctx.pass_state.sessions.get(action.lane, action.session_id)
    try:
        created = await ctx.tmux.new_window(
            session=action.lane,
            session_id=known,
            name=action.participant,
            cwd=str(worktree),
            argv=argv,
        )
    except errors.CommandFailed:
        if known is None:
            raise
        # The session went away since it was observed: ask tmux, then try once more.
        current = (await ctx.tmux.sessions()).get(action.lane)
        created = await ctx.tmux.new_window(
            session=action.lane,
            session_id=current,
            name=action.participant,
            cwd=str(worktree),
            argv=argv,
        )
    ctx.pass_state.sessions[action.lane] = created.session_id
    return created


async def _launch_process(
    ctx: Context,
    action: actions.StartAgent,
    worktree: Path,
    launcher: tuple[str, ...],
    base: world.AgentRecord,
) -> world.AgentRecord:
    log = _log_path(ctx, action.lane, action.participant)
    exit_file = ctx.run_dir / f"{action.binding}.exit"
    argv = (*launcher, "--supervise", str(exit_file), "--", *action.command)

    def spawn() -> subprocess.Popen[bytes]:
        log.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        exit_file.unlink(missing_ok=True)
        errors_to = log.with_suffix(".err") if action.split_stderr else None
        with log.open("ab") as out, _maybe_open(errors_to) as err:
            return _popen(argv, cwd=worktree, out=out, err=err, env=ctx.agent_env)

    child = await anyio.to_thread.run_sync(spawn)
    ctx.pass_state.children.append(child)
    born = await anyio.to_thread.run_sync(signals.create_time, child.pid)
    return replace(base, pid=child.pid, pid_created=born, log_path=str(log))


def _maybe_open(path: Path | None) -> contextlib.AbstractContextManager[BinaryIO | None]:
    """The file to append a task's stderr to, or None (stderr joins stdout in the log)."""
    return path.open("ab") if path is not None else contextlib.nullcontext()


def _log_path(ctx: Context, lane: str, participant: str) -> Path:
    return ctx.logs / lane / f"{participant}.log"


def _popen(
    argv: tuple[str, ...],
    *,
    cwd: Path,
    out: BinaryIO,
    err: BinaryIO | None,
    env: Mapping[str, str],
) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        argv,
        cwd=cwd,
        stdin=subprocess.DEVNULL,
        stdout=out,
        stderr=err if err is not None else subprocess.STDOUT,
        env={k: v for k, v in env.items() if k != launch.AGENT_ID},  # the launcher sets its own
        start_new_session=True,
        close_fds=True,
    )


def _carry_over(record: world.AgentRecord, old: world.AgentRecord | None) -> world.AgentRecord:
    """A restart keeps the death history and counters of the previous run (an interrupted
    start already counted this one)."""
    if old is None:
        return record
    return replace(
        record,
        restarts=old.restarts + (0 if old.state == State.STARTING else 1),
        consecutive=old.consecutive,
        deaths=old.deaths,
        last_exit=old.last_exit,
    )


async def stop_agent(action: actions.StopAgent, ctx: Context) -> Outcome:
    """Stop the agent (TERM, grace, KILL), close its window, then record or forget it."""
    ended = await signals.terminate(
        action.pid, action.pid_created, grace=action.grace, clk=ctx.clock
    )
    if ended == signals.Ended.SURVIVED:
        return Outcome(action, "failed", f"pid {action.pid} survived SIGKILL")
    if ctx.tmux is not None:
        await _close_pane(ctx.tmux, action)
    if isinstance(action, actions.RemoveAgent):
        await ctx.db(ctx.store.delete_agent, action.binding)
        for suffix in (".exit", ".pid"):  # a launcher that was killed leaves its pid file
            await anyio.Path(ctx.run_dir / f"{action.binding}{suffix}").unlink(missing_ok=True)
    else:
        await ctx.db(
            ctx.store.update_agents,
            ctx.clock.now(),
            where={"binding": action.binding},
            **_after_stop(action),
        )
    await refresh_phase(ctx, action.lane)
    changed = {"changed": [str(c) for c in action.changes]} if action.changes else {}
    await ctx.emit(
        "AgentStopped",
        action.reason,
        lane=action.lane,
        participant=action.participant,
        binding=action.binding,
        pid=action.pid,
        how=str(ended),
        **changed,
    )
    return Outcome(action, "applied", f"stopped {action.participant} ({ended})")


def _after_stop(action: actions.StopAgent) -> dict[str, Any]:
    cleared = {"window_id": None, "pane_id": None}
    if action.exit is None:
        return {"state": State.STOPPED, "next_start_at": None, **cleared}
    return {**_decision(action.exit), **cleared}


def _decision(decision: Any) -> dict[str, Any]:
    return {
        "state": decision.state,
        "deaths": decision.deaths,
        "consecutive": decision.consecutive,
        "last_exit": decision.last_exit,
        "next_start_at": decision.next_start_at,
        "blocked": decision.blocked,
    }


async def record_exit(action: actions.RecordExit, ctx: Context) -> Outcome:
    """Record an agent's death and the restart decision the planner made."""
    assert action.exit is not None
    await ctx.db(
        ctx.store.update_agents,
        ctx.clock.now(),
        where={"binding": action.binding},
        **_decision(action.exit),
    )
    await refresh_phase(ctx, action.lane)
    await ctx.emit(
        "AgentExited",
        action.reason,
        lane=action.lane,
        participant=action.participant,
        binding=action.binding,
        status=action.exit.last_exit,
        restartAt=action.exit.next_start_at.isoformat() if action.exit.next_start_at else None,
    )
    if action.exit.blocked:
        await ctx.emit(
            "AgentBlocked",
            action.exit.blocked,
            lane=action.lane,
            participant=action.participant,
            binding=action.binding,
        )
    status = "unknown status" if action.exit.last_exit is None else action.exit.last_exit
    return Outcome(action, "applied", f"{action.participant} exited ({status})")


async def _close_pane(tmux: tmuxserver.TmuxServer, action: actions.StopAgent) -> None:
    """Close the agent's pane, not its window: a person may have split the window."""
    if action.pane_id:
        await tmux.kill_pane(action.pane_id)
    elif action.window_id:
        await tmux.kill_window(action.window_id)  # a record from before panes were recorded


async def kill_stray(action: actions.KillStray, ctx: Context) -> Outcome:
    """Close a pane the controller started that no record owns, stopping its process first.

    Pane ids are never reused by a tmux server, but a new server starts again at ``%0``: the
    pane must still show the observed process, which must still be the observed one.
    """
    if ctx.tmux is None:
        return Outcome(action, "refused", "no tmux server is configured")
    probe = await ctx.tmux.probe(action.pane_id)
    if probe is None:
        return Outcome(action, "unchanged", f"pane {action.pane_id} is already gone")
    if action.pid is not None and probe.pid != action.pid:
        return Outcome(action, "refused", f"pane {action.pane_id} now runs pid {probe.pid}")
    ended = await signals.terminate(action.pid, action.created, grace=2.0, clk=ctx.clock)
    await ctx.tmux.kill_pane(action.pane_id)
    await ctx.emit(
        "StrayPaneClosed",
        action.reason,
        lane=action.lane,
        window=action.window_id,
        pane=action.pane_id,
        pid=action.pid,
        how=str(ended),
    )
    return Outcome(action, "applied", f"closed stray pane {action.pane_id} ({ended})")


async def adopt_agent(action: actions.AdoptAgent, ctx: Context) -> Outcome:
    """Take a live agent the controller started, but has no record of, into the inventory."""
    pending = await ctx.db(ctx.store.agent_record, action.binding)
    if pending is not None and pending.state != State.STARTING:
        return Outcome(action, "unchanged", f"{action.binding} is already recorded")
    if not await _still_there(ctx, action):
        return Outcome(action, "refused", f"pid {action.pid} is no longer the agent it was")
    process = action.runtime == "process"
    record = world.AgentRecord(
        binding=action.binding,
        lane=action.lane,
        participant=action.participant,
        runtime=action.runtime,
        state=State.RUNNING,
        spec_hash=action.spec_hash,
        spec_fields=dict(action.spec_fields),
        pid=action.pid,
        pid_created=action.pid_created,
        session_id=action.session_id or None,
        window_id=action.window_id or None,
        pane_id=action.pane_id or None,
        log_path=str(_log_path(ctx, action.lane, action.participant)) if process else None,
        started_at=action.started_at,
        stop_grace=action.grace,
    )
    if pending is not None:  # its start was interrupted: it keeps the counters of that start
        record = replace(
            record,
            started_at=pending.started_at,
            restarts=pending.restarts,
            consecutive=pending.consecutive,
            deaths=pending.deaths,
            last_exit=pending.last_exit,
        )
    await ctx.db(ctx.store.put_agent, record, ctx.clock.now())
    await refresh_phase(ctx, action.lane)
    await ctx.emit(
        "AgentAdopted",
        action.reason,
        lane=action.lane,
        participant=action.participant,
        binding=action.binding,
        pid=action.pid,
        pane=action.pane_id,
        window=action.window_id,
    )
    shown = record.pane_id or record.log_path
    return Outcome(action, "applied", f"adopted {action.participant} (pid {action.pid}, {shown})")


async def _still_there(ctx: Context, action: actions.AdoptAgent) -> bool:
    """Re-checked just before it is recorded: the same process, in the same pane."""
    if not await anyio.to_thread.run_sync(signals.matches, action.pid, action.pid_created):
        return False
    if action.runtime == "process":
        return True
    probe = await ctx.tmux.probe(action.pane_id) if ctx.tmux is not None else None
    return probe is not None and probe.pid == action.pid and not probe.dead


def phase_for(running: int) -> Phase:
    """An active lane's phase by its running agents: ready, running (1) or shared (2+)."""
    return Phase.READY if running == 0 else Phase.RUNNING if running == 1 else Phase.SHARED


async def refresh_phase(ctx: Context, lane: str) -> None:
    """Set the lane's phase from its running agents: ready, running (1) or shared (2+)."""
    record = await ctx.db(ctx.store.lane_record, lane)
    if record is None or record.phase not in phases.ACTIVE:
        return
    target = phase_for(await ctx.db(ctx.store.running_agents, lane))
    if target != record.phase:
        phases.transition(record.phase, target)
        await ctx.db(ctx.store.update_lane, lane, ctx.clock.now(), phase=target)
        await ctx.emit(
            "PhaseChanged",
            f"{record.phase} -> {target}",
            lane=lane,
            previous=str(record.phase),
            phase=str(target),
        )


async def kill_stray_process(action: actions.KillStrayProcess, ctx: Context) -> Outcome:
    """Stop a launcher (and its agent) that no record owns; identity checked first."""
    ended = await signals.terminate(action.pid, action.created, grace=5.0, clk=ctx.clock)
    await ctx.emit("StrayProcessStopped", action.reason, pid=action.pid, how=str(ended))
    return Outcome(action, "applied", f"stopped unrecorded process {action.pid} ({ended})")


HANDLERS: Mapping[type[actions.ActionBase], Any] = {
    actions.StartAgent: start_agent,
    actions.StopAgent: stop_agent,
    actions.RemoveAgent: stop_agent,
    actions.RecordExit: record_exit,
    actions.AdoptAgent: adopt_agent,
    actions.KillStray: kill_stray,
    actions.KillStrayProcess: kill_stray_process,
}
