"""Observe processes with one scan of the process table per pass (psutil), plus the exit files
and log times the process runtime leaves in ``.lanes/run`` and ``.lanes/logs``.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from datetime import UTC, datetime
from pathlib import Path

import anyio
import psutil

from controller.core import world


def _scan(pids: frozenset[int]) -> dict[int, world.Proc]:
    found: dict[int, world.Proc] = {}
    for proc in psutil.process_iter(["pid", "create_time", "status"]):
        info = proc.info
        if info["pid"] in pids and info["create_time"] is not None:
            zombie = info["status"] == psutil.STATUS_ZOMBIE
            found[info["pid"]] = world.Proc(info["pid"], info["create_time"], zombie)
    return found


async def observe_processes(pids: Iterable[int]) -> Mapping[int, world.Proc] | world.Unknown:
    """The recorded PIDs that are alive, with their create times, from one table scan."""
    wanted = frozenset(pids)
    if not wanted:
        return {}
    try:
        return await anyio.to_thread.run_sync(_scan, wanted)
    except (psutil.Error, OSError) as exc:
        return world.Unknown(f"cannot read the process table: {exc}")


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
