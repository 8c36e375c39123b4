"""``controller rescues [LANE]``: every rescue ref and quarantine folder, with what it holds;
``controller rescues restore REF --into LANE|PATH``: the rescued files back, nothing else
touched (refused as a whole on any conflict), audited as ``RescueRestored``.
"""

from __future__ import annotations

import functools
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import anyio
import click

from controller.cli import common, output
from controller.cli.common import EXIT_INVALID, Settings
from controller.core import rescues as rescue_names
from controller.executors import restoring
from controller.observers import rescues
from controller.runtime import rescueops, wiring
from controller.spec.state import DesiredState
from controller.system import proc

MAX_LISTED = 1000  # paths per rescue in JSON (the counts are always complete)
SHOWN_CONFLICTS = 20


def register(group: click.Group) -> None:
    """Add the commands to the command line."""
    group.add_command(rescues_group)


class _LaneOrCommand(click.Group):
    """``rescues [LANE]`` lists; a first argument that names no subcommand is the lane."""

    def resolve_command(
        self, ctx: click.Context, args: list[str]
    ) -> tuple[str | None, click.Command | None, list[str]]:
        if args and args[0] not in self.commands:
            return "list", self.commands["list"], args
        return super().resolve_command(ctx, args)


@click.group(
    "rescues", cls=_LaneOrCommand, invoke_without_command=True, subcommand_metavar="[LANE]"
)
@common.global_options
@click.pass_context
@common.handle_errors
def rescues_group(ctx: click.Context, /, **given: Any) -> None:
    """List rescue refs and quarantine folders (of LANE), or restore one (`restore`)."""
    settings = common.merge(ctx, **given)
    if ctx.invoked_subcommand is None:
        _list(settings, None)


@rescues_group.command("list")
@common.global_options
@click.argument("lane", required=False)
@click.pass_context
@common.handle_errors
def rescues_list(ctx: click.Context, /, lane: str | None, **given: Any) -> None:
    """List rescue refs and quarantine folders (of LANE) with what each holds."""
    _list(common.merge(ctx, **given), lane)


@dataclass(frozen=True, slots=True)
class _Workspace:
    paths: wiring.Paths
    desired: DesiredState
    runner: proc.SubprocessRunner


def _workspace(settings: Settings) -> _Workspace:
    """The workspace, also when desired state is invalid (reading rescues needs none of it)."""
    loaded = common.load(settings)
    desired = loaded if isinstance(loaded, DesiredState) else DesiredState.empty()
    paths = common.paths(settings, desired)
    return _Workspace(paths, desired, proc.SubprocessRunner(wiring.base_env()))


def _list(settings: Settings, lane: str | None) -> None:
    ws = _workspace(settings)
    observe = functools.partial(
        rescues.observe,
        ws.runner,
        ws.paths.repo,
        quarantine=ws.paths.state_dir / "quarantine",
        lane=lane,
    )
    found = anyio.run(observe)
    if settings.json:
        click.echo(output.to_json(found_json(found)))
    else:
        click.echo(found_text(found, files=settings.verbose > 0))


# -- rendering the list -----------------------------------------------------------------------


def found_json(found: rescues.Found) -> dict[str, Any]:
    """The stable JSON of ``controller rescues``."""
    return {
        "rescues": [_rescue_json(r) for r in found.refs],
        "quarantine": [_folder_json(q) for q in found.quarantine],
        "strayInner": list(found.stray_inner),
    }


def _rescue_json(rescue: rescues.Rescue) -> dict[str, Any]:
    changes = rescue.changes[:MAX_LISTED]
    untracked = None if rescue.untracked is None else list(rescue.untracked[:MAX_LISTED])
    longest = max(len(rescue.changes), len(rescue.untracked or ()))
    return {
        "ref": rescue.name.ref,
        "lane": rescue.name.lane,
        "time": _time(rescue.name.at),
        "commit": rescue.commit,
        "base": None if rescue.base in rescue_names.EMPTY_TREE.values() else rescue.base,
        "branch": rescue.branch,
        "files": _counts(rescue),
        "changes": [{"status": c.status, "path": _shown(c.path)} for c in changes],
        "untracked": None if untracked is None else [_shown(p) for p in untracked],
        "truncated": longest > MAX_LISTED,
        "commitsOnNoBranch": rescue.commits,
        "inner": list(rescue.inner),
    }


def _counts(rescue: rescues.Rescue) -> dict[str, int | None]:
    statuses = [c.status for c in rescue.changes]
    return {
        "changed": len(statuses),
        "added": statuses.count("A"),
        "modified": statuses.count("M") + statuses.count("T"),
        "deleted": statuses.count("D"),
        "untracked": None if rescue.untracked is None else len(rescue.untracked),
    }


def _folder_json(folder: rescues.Quarantined) -> dict[str, Any]:
    return {
        "path": str(folder.path),
        "lane": folder.lane or None,
        "time": _time(folder.at),
        "files": folder.files,
        "bytes": folder.size,
    }


def _time(at: datetime | None) -> str | None:
    return at.strftime("%Y-%m-%dT%H:%M:%SZ") if at else None


def found_text(found: rescues.Found, *, files: bool) -> str:
    """Two tables: rescue refs, then quarantine folders (and each ref's files with -v)."""
    lines: list[str] = []
    if found.refs:
        rows = [["REF", "LANE", "TIME", "CHANGED", "UNTRACKED", "COMMITS", "BRANCH"]]
        rows += [_row(r) for r in found.refs]
        lines += output.columns(rows).splitlines()
        lines += (["", *_details(found.refs)]) if files else _inner_lines(found.refs)
    for ref in found.stray_inner:
        lines.append(f"inner ref of no rescue (a removal was cut short): {ref}")
    if found.quarantine:
        lines += [""] if lines else []
        rows = [["QUARANTINE", "LANE", "TIME", "FILES", "SIZE"]]
        rows += [_folder_row(q) for q in found.quarantine]
        lines += output.columns(rows).splitlines()
    return "\n".join(lines) if lines else "No rescue refs and no quarantine folders."


def _row(rescue: rescues.Rescue) -> list[str]:
    untracked = "?" if rescue.untracked is None else str(len(rescue.untracked))
    return [
        rescue.name.ref,
        rescue.name.lane,
        _shown_time(rescue.name.at),
        str(len(rescue.changes)),
        untracked,
        str(rescue.commits),
        rescue.branch or "(detached)",
    ]


def _details(found: Sequence[rescues.Rescue]) -> list[str]:
    lines = []
    for rescue in found:
        untracked = set(rescue.untracked or ())
        lines.append(f"{rescue.name.ref}:")
        for change in rescue.changes:
            status = "??" if change.path in untracked else f" {change.status}"
            lines.append(f"  {status} {_printable(change.path)}")
        lines += [f"  inner: {ref}" for ref in rescue.inner]
    return lines


def _inner_lines(found: Sequence[rescues.Rescue]) -> list[str]:
    return [f"  inner: {ref}" for rescue in found for ref in rescue.inner]


def _folder_row(folder: rescues.Quarantined) -> list[str]:
    return [
        str(folder.path),
        folder.lane or "?",
        _shown_time(folder.at),
        str(folder.files),
        _size(folder.size),
    ]


def _shown_time(at: datetime | None) -> str:
    return at.strftime("%Y-%m-%d %H:%M:%SZ") if at else "?"


def _size(size: int) -> str:
    if size < 1024:
        return f"{size} B"
    scaled = float(size)
    for unit in ("KiB", "MiB", "GiB"):
        scaled /= 1024
        if scaled < 1024 or unit == "GiB":
            break
    return f"{scaled:.1f} {unit}"


def _shown(path: str) -> str:
    """A path for JSON: bytes that are not UTF-8 become U+FFFD."""
    return path.encode("utf-8", "surrogateescape").decode("utf-8", "replace")


def _printable(path: str) -> str:
    """A path for a terminal: also control characters made visible (``\\x09``)."""
    return "".join(c if c.isprintable() else f"\\x{ord(c):02x}" for c in _shown(path))


# -- restore ----------------------------------------------------------------------------------


@rescues_group.command("restore")
@common.global_options
@click.argument("ref")
@click.option(
    "--into",
    "into",
    required=True,
    metavar="LANE|PATH",
    help="A lane (its worktree), an existing checkout's top folder, or a new folder "
    "(a path with a slash: ./restored).",
)
@click.option("--dry-run", is_flag=True, help="Say what would be written and deleted; do it not.")
@click.pass_context
@common.handle_errors
def rescues_restore(
    ctx: click.Context, /, ref: str, into: str, dry_run: bool, **given: Any
) -> None:
    """Bring the files of rescue REF back into a lane or a folder, touching nothing else."""
    settings = common.merge(ctx, **given)
    ws = _workspace(settings)
    into_target = rescueops.target(ws.paths, ws.desired, into=into)
    run = functools.partial(
        rescueops.restore,
        ws.paths,
        ws.runner,
        ref=ref,
        into=into_target,
        dry_run=dry_run,
        lock_timeout=settings.lock_timeout,
    )
    try:
        done = anyio.run(run)
    except rescueops.Refused as refused:
        if settings.json:
            click.echo(output.to_json(restored_json(refused.done)))
        common.fail(refused_text(refused.done), EXIT_INVALID)
        return
    click.echo(output.to_json(restored_json(done)) if settings.json else restored_text(done))


def restored_json(done: rescueops.Restored) -> dict[str, Any]:
    """The stable JSON of ``controller rescues restore``."""
    r = done.restore
    return {
        "ref": done.rescued.name.ref,
        "commit": done.rescued.commit,
        "lane": done.rescued.name.lane,
        "into": str(done.into.path),
        "intoLane": done.into.lane,
        "target": str(done.into.kind),
        "written": [_shown(p) for p in r.write],
        "deleted": [_shown(p) for p in r.delete],
        "unchanged": [_shown(p) for p in r.unchanged],
        "skipped": [_shown(p) for p in r.skipped],
        "conflicts": [{"path": _shown(c.path), "reason": c.reason} for c in r.conflicts],
        "dryRun": done.dry_run,
        "restored": not done.dry_run and not r.conflicts,
    }


def restored_text(done: rescueops.Restored) -> str:
    """What a restore did (or, dry, would do)."""
    r, name = done.restore, done.rescued.name.ref
    where = f"{done.into.path}" + (f" (lane {done.into.lane})" if done.into.lane else "")
    counts = f"{len(r.unchanged)} already as rescued" + (
        f", {len(r.skipped)} submodule(s) skipped" if r.skipped else ""
    )
    if done.dry_run:
        lines = [f"would restore {name} into {where}:"]
        lines += [f"  write  {_printable(p)}" for p in r.write]
        lines += [f"  delete {_printable(p)}" for p in r.delete]
        todo = f"{len(r.write)} to write, {len(r.delete)} to delete"
        return "\n".join([*lines, f"Nothing was changed ({todo}, {counts})."])
    lines = [
        f"restored {name} into {where}: {len(r.write)} written, {len(r.delete)} deleted, {counts}"
    ]
    if done.into.kind is restoring.Target.CHECKOUT:
        lines.append("The files show as uncommitted changes there; nothing was staged.")
    return "\n".join(lines)


def refused_text(done: rescueops.Restored) -> str:
    """Why a restore was refused, and what to do."""
    conflicts, ref = done.restore.conflicts, done.rescued.name.ref
    shown = [f"  {_printable(c.path)}: {c.reason}" for c in conflicts[:SHOWN_CONFLICTS]]
    more = len(conflicts) - SHOWN_CONFLICTS
    shown += [f"  ... and {more} more"] if more > 0 else []
    fresh = f"./{done.rescued.name.lane}-restored"
    return "\n".join(
        [
            f"restoring {ref} into {done.into.path} would overwrite work there; nothing was "
            "changed:",
            *shown,
            f"Commit or stash those changes in {done.into.path}, then run this again; or "
            f"restore into a new folder: controller rescues restore {ref} --into {fresh}",
        ]
    )
