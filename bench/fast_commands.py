"""Benchmark: ``controller post``, ``status`` and ``runs`` with a daemon (the thin client) and
without, against ``python -c pass``.

Run it from the repository root with the project's interpreter::

    .venv/bin/python bench/fast_commands.py            # 20 posts of each kind (~30 s)
    .venv/bin/python bench/fast_commands.py --quick    # 5 of each

A fresh git repository declares one Thread ``review: [bot, human]`` and nothing else. The
daemon ``controller run --resync 60`` runs in a subprocess; once its socket answers and
``/readyz`` says ready, N times each: ``controller post review --as human "msg N"``,
``controller status`` and ``controller runs`` (text, into a pipe; served through the socket
by ``controller/fast.py``, the text drawn by the daemon). The daemon is then stopped
(SIGTERM) and the same commands run N times more through the command line. ``python -c
pass`` runs N times as the floor. Reported: median wall time (and spread) of each, and the
ratios to the floor; the target is ``post`` with a daemon at most 3 times the floor. Every
measured command must exit 0 (exit status 1 otherwise). Bytecode is compiled once into a
private cache first, as an installed controller would have it. The daemon and the temporary
folder are removed at the end, also on error.
"""

from __future__ import annotations

import contextlib
import http.client
import signal
import socket
import subprocess
import sys
from collections.abc import Iterator, Sequence
from pathlib import Path

import harness as h  # bench/harness.py (scripts run as `python bench/<name>.py`)
from harness import Cells, Repo, Results, log

from controller.server import sockets

TARGET = 3.0  # post with a daemon, at most this many times `python -c pass`
THREAD = (
    "apiVersion: lanes/v1\nkind: Thread\nmetadata: {name: review}\n"
    "spec: {participants: [bot, human]}\n"
)
COMMANDS = ("post", "status", "runs")
KEYS = ("python -c pass", *(f"{c}, {w}" for c in COMMANDS for w in ("daemon", "no daemon")))


def argv(command: str, n: int) -> list[str]:
    """The measured command line: the n-th post, or ``status`` or ``runs``."""
    if command == "post":
        return [sys.executable, "-m", "controller", "post", "review", "--as", "human", f"msg {n}"]
    return [sys.executable, "-m", "controller", command]


@contextlib.contextmanager
def running_daemon(repo: Repo) -> Iterator[subprocess.Popen[bytes]]:
    """``controller run`` until its socket answers and it is ready; stopped afterwards."""
    argv = [*repo.controller("run", "--resync", "60")]
    log_file = (repo.scratch / "daemon.log").open("wb")
    proc = subprocess.Popen(argv, cwd=repo.path, env=repo.env, stdout=log_file, stderr=log_file)
    path = repo.path / ".lanes" / sockets.SOCKET_NAME
    try:
        h.wait_for(lambda: path.exists() and sockets.answers(path), 60, lambda: "no socket")
        h.wait_for(lambda: _ready(path), 60, lambda: "the daemon is not ready")
        yield proc
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=60)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=10)
        log_file.close()


class _Unix(http.client.HTTPConnection):
    def __init__(self, path: Path) -> None:
        super().__init__("localhost", timeout=10)
        self.socket_path = path

    def connect(self) -> None:
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        with sockets.address(self.socket_path) as where:
            self.sock.connect(where)


def _ready(path: Path) -> bool:
    """``/readyz`` of the daemon says ready."""
    conn = _Unix(path)
    try:
        conn.request("GET", "/readyz")
        return conn.getresponse().status == 200
    except OSError:
        return False
    finally:
        conn.close()


def sample(results: Results, repo: Repo, key: str, argv: Sequence[str]) -> None:
    ran = repo.measure_repeatable(argv)
    if ran.sample.rc != 0:
        raise RuntimeError(f"{key} exited {ran.sample.rc}: {ran.output.strip()[:300]}")
    results.add(key, ran.sample)


def bench(results: Results, count: int) -> None:
    with h.fresh_repo(Repo, 0, prefix="fast-bench-") as repo:
        repo.write("talk.yaml", THREAD)
        h.run_checked(repo.controller("--once"), cwd=repo.path, env=repo.env)
        for _ in range(count):
            sample(results, repo, KEYS[0], [sys.executable, "-c", "pass"])
        log("[with a daemon]")
        with running_daemon(repo):
            for command in COMMANDS:
                for n in range(count):
                    sample(results, repo, f"{command}, daemon", argv(command, n + 1))
        log("[without a daemon]")
        for command in COMMANDS:
            for n in range(count):
                sample(results, repo, f"{command}, no daemon", argv(command, count + n + 1))


def report(results: Results, count: int, info: dict[str, object]) -> str:
    cells = Cells(results)
    floor = results.median(KEYS[0])
    rows = [
        [key, cells.spread(key), f"{results.median(key) / floor:.1f}x", cells.mib(key)]
        for key in KEYS
    ]
    ratio = results.median(KEYS[1]) / floor
    lines = [
        *h.header("Fast commands: `post`, `status`, `runs` through the daemon's socket", info),
        "",
        f"{count} runs each; wall seconds: median (lowest-highest)",
        *h.table(["command", "wall s", "x floor", "peak MiB"], rows),
        "",
        f"target: post with a daemon <= {TARGET:.0f}x `python -c pass`: {ratio:.1f}x, "
        f"{h.verdict(ratio <= TARGET)}",
        h.quiet_line(results),
        *h.warning_lines(results),
    ]
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    """Measure, print the table, optionally write JSON."""
    args = h.options(__doc__, reps=False).parse_args(argv)
    count = 5 if args.quick else 20  # of each command, with and without a daemon
    info = h.machine("git")
    results = Results()
    with h.private_bytecode("fast-bench-"):
        h.warm_bytecode("controller.fast")
        bench(results, count)
    h.at_end(info)
    payload = {"machine": info, "count": count, **results.to_json()}
    h.publish(report(results, count, info), payload, args.json)
    return 0


if __name__ == "__main__":
    sys.exit(main())
