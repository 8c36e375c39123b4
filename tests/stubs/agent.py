"""A stand-in agent: records how it was started, then reads lines from stdin.

Options (argv): ``--exit CODE`` exits at once with CODE; ``--ignore-term`` ignores SIGTERM;
``--quiet`` prints nothing (so its window shows no activity); ``--record FILE`` appends a JSON
line with pid, cwd and the LANE_* environment at start, and every line read from stdin;
``--helpers`` starts two helpers that leave its process group, as background jobs of agents
do: one through ``setsid`` (its child, in a new session), one double-forked (re-parented to
init, in a new session). Both sleep with the last argument in their argv.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

SLEEP = "import time; time.sleep(3600)"
DOUBLE_FORK = (
    "import subprocess, sys; "
    "subprocess.Popen([sys.executable, '-c', sys.argv[1], sys.argv[2]], start_new_session=True)"
)


def start_helpers(marker: str) -> None:
    """Helpers outside the agent's process group (and, for one, outside its descendants)."""
    subprocess.Popen(["setsid", sys.executable, "-c", SLEEP, marker])
    subprocess.run([sys.executable, "-c", DOUBLE_FORK, SLEEP, marker], check=True)


def main(args: list[str]) -> int:
    record = args[args.index("--record") + 1] if "--record" in args else None
    if "--ignore-term" in args:
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
    env = {k: v for k, v in os.environ.items() if k.startswith(("LANE_", "CONTROLLER_", "TEST_"))}
    if record:
        with Path(record).open("a") as out:
            out.write(json.dumps({"pid": os.getpid(), "cwd": str(Path.cwd()), "env": env}) + "\n")
    if "--helpers" in args:
        start_helpers(args[-1])
    if "--exit" in args:
        return int(args[args.index("--exit") + 1])
    if "--quiet" not in args:
        print(f"agent {env.get('LANE_PARTICIPANT')} ready in {Path.cwd()}", flush=True)
    if "--sleep" in args:
        time.sleep(3600)
    for line in sys.stdin:
        if record:
            with Path(record).open("a") as out:
                out.write(json.dumps({"line": line.rstrip("\n")}) + "\n")
    time.sleep(3600)  # stdin closed: keep running like an agent would
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
