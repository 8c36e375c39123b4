"""Agent handlers: start (tmux window or detached process), stop, record an exit, close strays.

The environment reaches the agent through a private file read (and deleted) by the launcher,
so values never appear in argv, tmux, logs or events. Lane phases follow the number of running
agents: ready (none), running (one), shared (two or more).
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
from controller.core import actions, phases, world
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
    if old is not None and old.window_id and ctx.tmux is not None:
        await ctx.tmux.kill_window(old.window_id)  # the dead pane of the previous run
    envfile = await anyio.to_thread.run_sync(_write_env, ctx, action, worktree)
    try:
        record = await _launch(ctx, action, worktree, envfile)
    except errors.CommandFailed:
        envfile.unlink(missing_ok=True)  # nothing was started, so nothing will read it
        raise
    record = _carry_over(record, old)
    await ctx.db(ctx.store.put_agent, record, ctx.clock.now())
    await refresh_phase(ctx, action.lane)
    await ctx.emit(
        "AgentStarted", action.reason, lane=action.lane, participant=action.participant,
        binding=action.binding, runtime=action.runtime, pid=record.pid, pane=record.pane_id,
        window=record.window_id, program=action.command[0], restarts=record.restarts,
    )  # fmt: skip
    where = record.pane_id or record.log_path
    return Outcome(action, "applied", f"started {action.participant} (pid {record.pid}, {where})")


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
        "CONTROLLER_DESIRED": str(ctx.desired) if ctx.desired else "",
    }


def _write_env(ctx: Context, action: actions.StartAgent, worktree: Path) -> Path:
    ctx.run_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
    path = ctx.run_dir / f"env-{action.binding}-{secrets.token_hex(6)}.json"
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o600)
    with os.fdopen(fd, "w") as out:
        json.dump(agent_env(ctx, action, worktree), out)
    return path


async def _launch(
    ctx: Context, action: actions.StartAgent, worktree: Path, envfile: Path
) -> world.AgentRecord:
    base = world.AgentRecord(
        binding=action.binding, lane=action.lane, participant=action.participant,
        runtime=action.runtime, state=State.RUNNING, spec_hash=action.spec_hash,
        started_at=ctx.clock.now(), stop_grace=action.grace,
    )  # fmt: skip
    # The launcher needs only the standard library: -I -S skips site and user paths (faster).
    launcher = (ctx.python, "-I", "-S", LAUNCHER, str(envfile))
    if action.runtime == "process":
        return await _launch_process(ctx, action, worktree, launcher, base)
    created = await _new_window(ctx, action, worktree, argv=(*launcher, "--", *action.command))
    born = await anyio.to_thread.run_sync(signals.create_time, created.pid)
    return replace(
        base, pid=created.pid, pid_created=born, session_id=created.session_id,
        window_id=created.window_id, pane_id=created.pane_id,
    )  # fmt: skip


async def _new_window(
    ctx: Context, action: actions.StartAgent, worktree: Path, *, argv: tuple[str, ...]
) -> tmuxserver.Created:
    """A window in the lane's session (created if need be), from the pass's known sessions."""
    assert ctx.tmux is not None
    known = ctx.sessions.get(action.lane, action.session_id)
    try:
        created = await ctx.tmux.new_window(
            session=action.lane, session_id=known, name=action.participant, cwd=str(worktree),
            argv=argv,
        )  # fmt: skip
    except errors.CommandFailed:
        if known is None:
            raise
        # The session went away since it was observed: ask tmux, then try once more.
        current = (await ctx.tmux.sessions()).get(action.lane)
        created = await ctx.tmux.new_window(
            session=action.lane, session_id=current, name=action.participant,
            cwd=str(worktree), argv=argv,
        )  # fmt: skip
    ctx.sessions[action.lane] = created.session_id
    return created


async def _launch_process(
    ctx: Context,
    action: actions.StartAgent,
    worktree: Path,
    launcher: tuple[str, ...],
    base: world.AgentRecord,
) -> world.AgentRecord:
    log = ctx.logs / action.lane / f"{action.participant}.log"
    exit_file = ctx.run_dir / f"{action.binding}.exit"
    argv = (*launcher, "--supervise", str(exit_file), "--", *action.command)

    def spawn() -> subprocess.Popen[bytes]:
        log.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        exit_file.unlink(missing_ok=True)
        errors_to = log.with_suffix(".err") if action.split_stderr else None
        with log.open("ab") as out, _maybe_open(errors_to) as err:
            return _popen(argv, cwd=worktree, out=out, err=err, env=ctx.agent_env)

    child = await anyio.to_thread.run_sync(spawn)
    ctx.children.append(child)
    born = await anyio.to_thread.run_sync(signals.create_time, child.pid)
    return replace(base, pid=child.pid, pid_created=born, log_path=str(log))


def _maybe_open(path: Path | None) -> contextlib.AbstractContextManager[BinaryIO | None]:
    """The file to append a task's stderr to, or None (stderr joins stdout in the log)."""
    return path.open("ab") if path is not None else contextlib.nullcontext()


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
    """A restart keeps the death history and counters of the previous run."""
    if old is None:
        return record
    return replace(
        record, restarts=old.restarts + 1, consecutive=old.consecutive, deaths=old.deaths,
        last_exit=old.last_exit,
    )  # fmt: skip


async def stop_agent(action: actions.StopAgent, ctx: Context) -> Outcome:
    """Stop the agent (TERM, grace, KILL), close its window, then record or forget it."""
    ended = await signals.terminate(
        action.pid, action.pid_created, grace=action.grace, clk=ctx.clock
    )
    if ended == signals.Ended.SURVIVED:
        return Outcome(action, "failed", f"pid {action.pid} survived SIGKILL")
    if action.window_id and ctx.tmux is not None:
        await ctx.tmux.kill_window(action.window_id)
    if isinstance(action, actions.RemoveAgent):
        await ctx.db(ctx.store.delete_agent, action.binding)
        for suffix in (".exit", ".pid"):  # a launcher that was killed leaves its pid file
            await anyio.Path(ctx.run_dir / f"{action.binding}{suffix}").unlink(missing_ok=True)
    else:
        await ctx.db(
            ctx.store.update_agents, ctx.clock.now(), where={"binding": action.binding},
            **_after_stop(action),
        )  # fmt: skip
    await refresh_phase(ctx, action.lane)
    await ctx.emit(
        "AgentStopped", action.reason, lane=action.lane, participant=action.participant,
        binding=action.binding, pid=action.pid, how=str(ended),
    )  # fmt: skip
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
        ctx.store.update_agents, ctx.clock.now(), where={"binding": action.binding},
        **_decision(action.exit),
    )  # fmt: skip
    await refresh_phase(ctx, action.lane)
    await ctx.emit(
        "AgentExited", action.reason, lane=action.lane, participant=action.participant,
        binding=action.binding, status=action.exit.last_exit,
        restartAt=action.exit.next_start_at.isoformat() if action.exit.next_start_at else None,
    )  # fmt: skip
    if action.exit.blocked:
        await ctx.emit("AgentBlocked", action.exit.blocked, lane=action.lane,
                       participant=action.participant, binding=action.binding)  # fmt: skip
    status = "unknown status" if action.exit.last_exit is None else action.exit.last_exit
    return Outcome(action, "applied", f"{action.participant} exited ({status})")


async def kill_stray(action: actions.KillStray, ctx: Context) -> Outcome:
    """Close a window no binding owns, stopping its processes first."""
    for pid in action.pids:
        born = await anyio.to_thread.run_sync(signals.create_time, pid)
        await signals.terminate(pid, born, grace=2.0, clk=ctx.clock)
    if ctx.tmux is not None:
        await ctx.tmux.kill_window(action.window_id)
    await ctx.emit("StrayWindowClosed", action.reason, lane=action.lane, window=action.window_id)
    return Outcome(action, "applied", f"closed stray window {action.window_id}")


async def refresh_phase(ctx: Context, lane: str) -> None:
    """Set the lane's phase from its running agents: ready, running (1) or shared (2+)."""
    record = await ctx.db(ctx.store.lane_record, lane)
    if record is None or record.phase not in phases.ACTIVE:
        return
    running = await ctx.db(ctx.store.running_agents, lane)
    target = Phase.READY if running == 0 else Phase.RUNNING if running == 1 else Phase.SHARED
    if target != record.phase:
        phases.transition(record.phase, target)
        await ctx.db(ctx.store.update_lane, lane, ctx.clock.now(), phase=target)
        await ctx.emit("PhaseChanged", f"{record.phase} -> {target}", lane=lane,
                       previous=str(record.phase), phase=str(target))  # fmt: skip


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
    actions.KillStray: kill_stray,
    actions.KillStrayProcess: kill_stray_process,
}
