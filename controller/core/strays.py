"""Panes and processes no agent record owns: adopt the controller's own live agents, close the
controller's other leftovers, and never touch anything a person opened. Pure.

The controller knows its panes by their start command (tmux's ``pane_start_command``): the
agent launcher with an environment file named ``env-<binding>-<token>.json``. tmux sets it in
the very command that creates the pane and nothing can change it later, so a crash cannot
leave a controller pane without it; a window a person opens (``Ctrl-b c`` after ``controller
attach``) or a pane they split off never has it.
"""

from __future__ import annotations

import re
from collections.abc import Collection, Mapping
from datetime import UTC, datetime
from pathlib import PurePosixPath

from controller.core import actions, lifecycle, world
from controller.spec.binding import Binding

WORKSPACE_WIDE = "-"  # the "lane" of actions that belong to no lane (never a valid lane name)
LAUNCHER = "launch.py"
_ENV_FILE = re.compile(r"/env-(?P<binding>[a-z0-9](?:[-a-z0-9]{0,61}[a-z0-9])?)-[0-9a-f]{12}\.json")


def env_file_name(binding: str, token: str) -> str:
    """The name of the launcher's environment file for ``binding`` (``token``: 12 hex digits)."""
    return f"env-{binding}-{token}.json"


def binding_of(start_command: str) -> str:
    """The binding a pane was started for, read from its start command; "" if not ours."""
    if LAUNCHER not in start_command:
        return ""
    found = _ENV_FILE.search(start_command)
    return found.group("binding") if found else ""


def runs(argv: tuple[str, ...], command: tuple[str, ...] | list[str]) -> bool:
    """Whether a process with ``argv`` is running ``command``: some word of ``argv`` names the
    command's program, and the words after it are the command's arguments.

    Words may come before the program: an interpreter (a script's ``#!`` line makes the kernel
    run ``/bin/sh ./agent.sh``, ``env node`` runs ``node /usr/bin/claude``), or the launcher
    itself in the moment before it ``exec``s the agent.
    """
    if not command:
        return False
    name, rest = PurePosixPath(command[0]).name, tuple(command[1:])
    return any(
        PurePosixPath(word).name == name and tuple(argv[index + 1 :]) == rest
        for index, word in enumerate(argv)
    )


def adoption(binding: Binding, observed: world.Observed, *, path: str) -> actions.AdoptAgent | None:
    """The binding's live agent that no record owns, as an adoption, if there is one.

    tmux: a live pane started for the binding, in its lane's session, whose process runs the
    binding's command. process: a supervising launcher started for the binding with the
    binding's command, working in the lane's worktree. Never one stranded in a deleted
    worktree: that one is replaced.
    """
    s = binding.spec
    found = (
        _pane_candidate(binding, observed, path=path)
        if s.runtime == "tmux"
        else _launcher_candidate(binding, observed, path=path)
    )
    if found is None:
        return None
    proc, pane = found
    return actions.AdoptAgent(
        s.lane,
        path,
        "its agent is running but not in the inventory (lost store or crash)",
        binding=binding.name,
        participant=s.participant,
        runtime=s.runtime,
        pid=proc.pid,
        pid_created=proc.created,
        session_id=pane.session_id if pane else "",
        window_id=pane.window_id if pane else "",
        pane_id=pane.pane_id if pane else "",
        spec_hash=lifecycle.spec_hash(binding),
        spec_fields=lifecycle.spec_fields(binding),
        grace=s.stop_grace_seconds,
        started_at=datetime.fromtimestamp(proc.created, UTC),
    )


def _pane_candidate(
    binding: Binding, observed: world.Observed, *, path: str
) -> tuple[world.Proc, world.Pane] | None:
    for pane in unowned_panes(observed):
        proc = observed.unrecorded.get(pane.pid or -1)
        if (
            pane.binding == binding.name
            and pane.session_name == binding.spec.lane
            and not pane.dead
            and proc is not None
            and not proc.zombie
            and not proc.stranded_in(path)
            and runs(proc.argv, binding.spec.command)
        ):
            return proc, pane
    return None


def _launcher_candidate(
    binding: Binding, observed: world.Observed, *, path: str
) -> tuple[world.Proc, None] | None:
    owned = {a.pid for a in observed.agents.values() if a.pid is not None}
    wanted = (binding.name, tuple(binding.spec.command))
    for pid, proc in sorted(observed.launched.items()):
        if pid in owned or proc.zombie or proc.cwd_deleted or proc.cwd != path:
            continue
        if launched_for(proc.argv) == wanted:
            return proc, None
    return None


def launched_for(argv: tuple[str, ...]) -> tuple[str, tuple[str, ...]] | None:
    """The binding and command a supervising launcher was started with, from its argv
    (``... launch.py ENVFILE --supervise EXITFILE -- COMMAND...``)."""
    for index, word in enumerate(argv):
        found = _ENV_FILE.search(word)
        tail = argv[index + 1 : index + 4]
        if found and len(tail) == 3 and tail[0] == "--supervise" and tail[2] == "--":
            return found.group("binding"), tuple(argv[index + 4 :])
    return None


def unowned_panes(observed: world.Observed) -> list[world.Pane]:
    """Panes the controller started that no agent record owns, oldest first."""
    return unowned(observed.panes, observed.agents)


def unowned(
    panes: tuple[world.Pane, ...] | world.Unknown, agents: Mapping[str, world.AgentRecord]
) -> list[world.Pane]:
    """``unowned_panes`` before the snapshot is assembled (the observer reads their PIDs)."""
    if isinstance(panes, world.Unknown):
        return []
    owned = {r.pane_id for r in agents.values() if r.pane_id}
    mine = [p for p in panes if p.binding and p.pane_id not in owned]
    return sorted(mine, key=lambda p: _number(p.pane_id))


def _number(pane_id: str) -> int:
    digits = pane_id.lstrip("%")
    return int(digits) if digits.isdigit() else -1


def stray_panes(
    observed: world.Observed, *, adopted: Collection[actions.AdoptAgent] = ()
) -> list[actions.KillStray]:
    """Close the controller's panes that no record owns and nothing adopts; nobody else's.

    A live pane whose process could not be read this pass (it just ended) waits a pass: its
    PID would be signalled without an identity to check.
    """
    closes = []
    taken = {a.pane_id for a in adopted}
    for pane in unowned_panes(observed):
        proc = observed.unrecorded.get(pane.pid or -1)
        if pane.pane_id in taken or (proc is None and not pane.dead):
            continue
        live = proc if proc is not None and not pane.dead else None
        closes.append(
            actions.KillStray(
                pane.session_name or WORKSPACE_WIDE,
                "",
                f"the controller started it for {pane.binding}; no agent record owns it",
                window_id=pane.window_id,
                pane_id=pane.pane_id,
                pid=live.pid if live else None,
                created=live.created if live else None,
            )
        )
    return closes


def stray_processes(
    observed: world.Observed, *, adopted: Collection[actions.AdoptAgent] = ()
) -> list[actions.KillStrayProcess]:
    """Process-runtime launchers of this workspace that no agent record owns or adopts."""
    owned = {a.pid for a in observed.agents.values() if a.pid is not None}
    owned |= {a.pid for a in adopted}
    reason = "no agent record owns it (its start was never recorded)"
    return [
        actions.KillStrayProcess(WORKSPACE_WIDE, "", reason, pid=pid, created=proc.created)
        for pid, proc in sorted(observed.launched.items())
        if pid not in owned and not proc.zombie
    ]
