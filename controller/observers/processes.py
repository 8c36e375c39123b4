"""Observe processes with one scan of the process table per pass (psutil), plus the exit files,
agent pid files and log times the process runtime leaves in ``.lanes/run`` and ``.lanes/logs``.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from dataclasses import replace
from datetime import UTC, datetime
from pathlib import Path

import anyio
import psutil

from controller.core import world

DELETED = " (deleted)"  # how Linux marks a link in /proc whose target was deleted


def _scan(pids: frozenset[int], marker: str) -> tuple[dict[int, world.Proc], dict[int, world.Proc]]:
    found: dict[int, world.Proc] = {}
    launched: dict[int, world.Proc] = {}
    parents: dict[int, int] = {}
    attrs = ["pid", "create_time", "status", "cmdline", "ppid"]
    for proc in psutil.process_iter(attrs if marker else attrs[:3]):
        info = proc.info
        if info["create_time"] is None:
            continue
        entry = world.Proc(info["pid"], info["create_time"], info["status"] == psutil.STATUS_ZOMBIE)
        if info["pid"] in pids:
            found[info["pid"]] = _with_cwd(entry)
        if marker and _is_launcher(info.get("cmdline") or (), marker):
            launched[info["pid"]] = _with_cwd(replace(entry, argv=tuple(info["cmdline"])))
            parents[info["pid"]] = info.get("ppid") or 0
    return found, launchers_only(launched, parents)


def launchers_only(
    candidates: Mapping[int, world.Proc], parents: Mapping[int, int]
) -> dict[int, world.Proc]:
    """Drop a candidate whose parent is a launcher: it is that launcher's agent, forked and
    not yet exec'd, so for an instant it still has the launcher's command line (taking it for
    an unrecorded launcher would stop a healthy agent)."""
    return {pid: p for pid, p in candidates.items() if parents.get(pid) not in candidates}


def _with_cwd(proc: world.Proc) -> world.Proc:
    """``proc`` with its working directory, and whether that was deleted under it.

    Read from ``/proc`` directly: psutil drops the kernel's " (deleted)" mark. Elsewhere (no
    ``/proc``) it stays unknown, and a deleted worktree is only noticed when it is re-created.
    """
    try:
        target = str(Path(f"/proc/{proc.pid}/cwd").readlink())
    except OSError:
        return proc
    deleted = target.endswith(DELETED)
    return replace(
        proc, cwd=target.removesuffix(DELETED) if deleted else target, cwd_deleted=deleted
    )


def _read_unrecorded(pids: frozenset[int], parent: int) -> dict[int, world.Proc]:
    found: dict[int, world.Proc] = {}
    for pid in sorted(pids):
        try:
            proc = psutil.Process(pid)
            with proc.oneshot():
                if proc.ppid() != parent:
                    continue  # the pane's program ended and its PID went to another process
                created, zombie = proc.create_time(), proc.status() == psutil.STATUS_ZOMBIE
                argv = tuple(proc.cmdline())
        except psutil.Error:
            continue  # gone, or not ours to read: not adopted
        found[pid] = _with_cwd(world.Proc(pid, created, zombie, argv=argv))
    return found


async def observe_unrecorded(
    pids: Iterable[int], *, parent: int | None
) -> Mapping[int, world.Proc]:
    """Identity, argv and working directory of the processes of panes the controller started
    but has no record of; read only when there are such panes (after a crash or a lost store).

    Only children of ``parent`` (the tmux server) count: a pane whose program ended shows its
    PID until tmux notices, and by then the PID may be another process's.
    """
    wanted = frozenset(pids)
    if not wanted or parent is None:
        return {}
    return await anyio.to_thread.run_sync(_read_unrecorded, wanted, parent)


def _is_launcher(cmdline: list[str] | tuple[str, ...], marker: str) -> bool:
    """A supervising launcher of this workspace: ``... launch.py <run>/env-... --supervise``.

    The tmux server's argv also mentions the run folder (it is the command of its first
    session), and tmux-runtime agents replace the launcher by exec: only the process runtime's
    supervisor has ``--supervise`` right after the environment file.
    """
    for index, part in enumerate(cmdline[:-1]):
        if part.startswith(marker) and cmdline[index + 1] == "--supervise":
            return not cmdline or "tmux" not in cmdline[0].rsplit("/", 1)[-1]
    return False


async def observe_processes(
    pids: Iterable[int], *, launcher_marker: str = ""
) -> tuple[Mapping[int, world.Proc] | world.Unknown, Mapping[int, world.Proc]]:
    """From one scan of the process table: the recorded PIDs that are alive (with their create
    times), and every live supervising launcher of this workspace (argv names its run folder).
    """
    wanted = frozenset(pids)
    if not wanted and not launcher_marker:
        return {}, {}
    try:
        return await anyio.to_thread.run_sync(_scan, wanted, launcher_marker)
    except (psutil.Error, OSError) as exc:
        return world.Unknown(f"cannot read the process table: {exc}"), {}


def _read_exits(run_dir: Path) -> dict[str, int]:
    exits: dict[str, int] = {}
    if not run_dir.is_dir():
        return exits
    for path in run_dir.glob("*.exit"):
        try:
            exits[path.stem] = int(json.loads(path.read_text())["status"])
        except (OSError, ValueError, KeyError, TypeError):
            continue  # half-written: the next pass reads it
    return exits


async def observe_exits(run_dir: Path) -> Mapping[str, int]:
    """Exit statuses the supervising launcher wrote, by binding."""
    return await anyio.to_thread.run_sync(_read_exits, run_dir)


def _supervised(run_dir: Path, launchers: Mapping[str, int]) -> dict[str, world.Proc]:
    found: dict[str, world.Proc] = {}
    for binding, launcher in launchers.items():
        try:
            pid = int(json.loads((run_dir / f"{binding}.pid").read_text())["pid"])
            child = psutil.Process(pid)
            # Its launcher's child, not yet reaped by it: the pid cannot have been reused.
            if child.ppid() != launcher or child.status() == psutil.STATUS_ZOMBIE:
                continue
            found[binding] = world.Proc(pid, child.create_time())
        except (OSError, ValueError, KeyError, TypeError, psutil.Error):
            continue  # not written yet, or the agent is gone: nothing to show
    return found


async def observe_supervised(
    run_dir: Path, launchers: Mapping[str, int]
) -> Mapping[str, world.Proc]:
    """The agents that process-runtime launchers (binding -> launcher pid) run right now.

    Each launcher writes its agent's pid to ``<binding>.pid``; a pid counts only while it is
    still that launcher's live child.
    """
    if not launchers:
        return {}
    return await anyio.to_thread.run_sync(_supervised, run_dir, launchers)


def _mtimes(logs: Mapping[str, str]) -> dict[str, datetime]:
    times: dict[str, datetime] = {}
    for binding, path in logs.items():
        try:
            times[binding] = datetime.fromtimestamp(Path(path).stat().st_mtime, UTC)
        except OSError:
            continue
    return times


async def observe_log_activity(logs: Mapping[str, str]) -> Mapping[str, datetime]:
    """Last write time of each process-runtime agent's log (its activity heartbeat)."""
    if not logs:
        return {}
    return await anyio.to_thread.run_sync(_mtimes, logs)
