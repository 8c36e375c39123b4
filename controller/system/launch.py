"""The agent launcher: ``python -m controller.system.launch ENVFILE [--supervise FILE] -- ARGV``.

It reads the agent's environment from a private file (0600, deleted at once) so secrets never
appear in a process listing or tmux's argv, then either replaces itself with the agent
(``exec``: tmux keeps the exit status) or, for the process runtime, runs the agent as a child
and writes its exit status to ``EXITFILE`` so the controller can see how it ended. While the
agent runs, its pid is in ``<binding>.pid`` next to ``EXITFILE``, so that ``status`` can show the
agent's own pid rather than this launcher's.
"""

from __future__ import annotations

import json
import os
import secrets
import signal
import sys
from pathlib import Path

# A random id per start, in the agent's environment: every process the agent starts inherits
# it, so a stop finds helpers that left its process group, session and parentage.
AGENT_ID = "LANE_AGENT_ID"


def _read_env(path: Path) -> dict[str, str]:
    try:
        data = json.loads(path.read_text())
    finally:
        path.unlink(missing_ok=True)
    return {str(k): str(v) for k, v in data.items()}


def _supervise(argv: list[str], env: dict[str, str], exit_file: Path) -> int:
    # The whole group gets the controller's SIGTERM; the launcher outlives the agent so that it
    # can record how the agent ended.
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    try:
        # The agent must not inherit the launcher's ignored signals.
        defaults = (signal.SIGTERM, signal.SIGINT)
        pid = os.posix_spawnp(argv[0], argv, env, setsigdef=defaults)
    except OSError as exc:
        exit_file.write_text(json.dumps({"status": 127, "error": str(exc)}))
        return 127
    pid_file = exit_file.with_suffix(".pid")
    _write_atomically(pid_file, {"pid": pid})
    _, status = os.waitpid(pid, 0)
    code = os.waitstatus_to_exitcode(status)
    code = 128 - code if code < 0 else code  # killed by signal N: 128 + N, as shells report
    pid_file.unlink(missing_ok=True)  # reaped: from now on its pid may be reused
    exit_file.write_text(json.dumps({"status": code}))
    return 0


def _write_atomically(path: Path, data: dict[str, int]) -> None:
    """A reader sees the whole file or none (never a half-written pid)."""
    temporary = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    temporary.write_text(json.dumps(data))
    temporary.replace(path)


def main(args: list[str]) -> int:
    """Entry point; returns only on error (or, supervising, after the agent ended)."""
    if "--" not in args:
        print("usage: launch ENVFILE [--supervise EXITFILE] -- ARGV...", file=sys.stderr)
        return 2
    split = args.index("--")
    head, argv = args[:split], args[split + 1 :]
    env = {**_read_env(Path(head[0])), AGENT_ID: secrets.token_hex(16)}
    if len(head) == 3 and head[1] == "--supervise":
        return _supervise(argv, env, Path(head[2]))
    try:
        os.execvpe(argv[0], argv, env)  # noqa: S606 - argv list from the Binding, no shell
    except OSError as exc:
        print(f"cannot start {argv[0]}: {exc}", file=sys.stderr)
        return 127


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
