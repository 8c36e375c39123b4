"""Benchmark: a ``/metrics`` scrape of the daemon at 200 lanes and 200 agents, against
``/healthz``, and the proof that a scrape starts no process.

Run it from the repository root with the project's interpreter::

    .venv/bin/python bench/scrape.py                # 200 lanes and agents, 100 scrapes (~3 min)
    .venv/bin/python bench/scrape.py --quick        # 50 lanes and agents, 30 scrapes

A fresh git repository (bench/harness.py) declares a Workspace on a private tmux server, N=200
lanes (50 with ``--quick``) and one Binding per lane whose agent is ``sleep 3600`` in a tmux
pane (a small program: 200 Python agents would only cost memory). Untimed ``controller
--once`` passes converge it; then the daemon ``controller run --resync 600`` starts (no
resync during the measurement) and the benchmark waits until ``/metrics`` shows N lanes and N
running agents. What is measured, over the daemon's unix socket, one connection per request
as a scraper makes it:

(a) Time per request: S=100 (30 with ``--quick``) rounds of ``GET /healthz`` (the baseline:
    the same HTTP stack, no work) then ``GET /metrics``; median, p95 and the ratio of the
    medians, measured in the same run. The response size is reported too.
(b) No process per scrape, two ways: (1) the daemon's descendants (psutil, recursively) are
    sampled every 2 ms by a thread during the timed scrapes, and every pid seen that was not
    there before is counted; (2) another S scrapes with ``strace -f -p DAEMON -e
    trace=execve,fork,vfork,clone,clone3`` attached, counting the ``execve`` calls and the
    clones that make a process (no ``CLONE_THREAD``). As a control that the trace sees
    spawns, one ``GET /v1/status`` (which observes git and tmux, as ``controller status``
    does) is traced the same way afterwards: its count must be above 0. Without strace (or
    ptrace) only (1) is reported.

Every ratio printed is between numbers measured in this run. The tmux server, the agents, the
daemon and the temporary folders are removed at the end, also on error. Exit status: 0, or 1
when a scrape started a process or the counts did not match.
"""

from __future__ import annotations

import contextlib
import http.client
import json
import re
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import harness as h  # bench/harness.py (scripts run as `python bench/<name>.py`)
import psutil
from harness import log

from controller.server import sockets

SLEEPER = ("sleep", "3600")
READY_TIMEOUT = 600.0
SAMPLE_EVERY = 0.002
CLONE = re.compile(r"\b(clone3?|v?fork)\(")
EXECVE = re.compile(r"\bexecve\(")


class Rig(h.Repo):
    """A repository with N lanes and N tmux agents, and the daemon."""

    daemon: subprocess.Popen[bytes] | None = None

    @property
    def socket_path(self) -> Path:
        return self.path / ".lanes" / sockets.SOCKET_NAME

    def create(self) -> None:
        home = self.top / "home"
        home.mkdir()
        self.env["HOME"] = str(home)
        self.write(
            "workspace.yaml",
            "apiVersion: lanes/v1\nkind: Workspace\nmetadata: {name: bench}\n"
            f"spec: {{tmuxSocket: {self.socket}, maxParallelLanes: 16}}\n",
        )
        lanes = [f"apiVersion: lanes/v1\nkind: Lane\nmetadata: {{name: {n}}}\n" for n in self.lanes]
        self.write("lanes.yaml", "---\n".join(lanes))
        sleeper = shutil.which("sleep") or "/bin/sleep"
        bindings = [
            json.dumps(
                {
                    "apiVersion": "lanes/v1",
                    "kind": "Binding",
                    "metadata": {"name": f"{n}-agent"},
                    "spec": {
                        "lane": n,
                        "participant": f"a-{n}",
                        "command": [sleeper, *SLEEPER[1:]],
                    },
                }
            )
            for n in self.lanes
        ]
        self.write("bindings.yaml", "\n---\n".join(bindings) + "\n")

    def start_daemon(self) -> None:
        out = (self.scratch / "daemon.log").open("wb")
        self.daemon = subprocess.Popen(
            self.controller("run", "--resync", "600"),
            cwd=self.path,
            env=self.env,
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=out,
        )
        out.close()

    def diagnose(self) -> str:
        log_file = self.scratch / "daemon.log"
        tail = log_file.read_text(errors="replace")[-2000:] if log_file.exists() else ""
        return f"daemon log tail:\n{tail}"

    def stop_daemon(self) -> int | None:
        if self.daemon is None:
            return None
        if self.daemon.poll() is None:
            self.daemon.send_signal(signal.SIGTERM)
            try:
                self.daemon.wait(timeout=60)
            except subprocess.TimeoutExpired:
                self.daemon.kill()
                self.daemon.wait()
        return self.daemon.returncode

    def cleanup(self) -> list[str]:
        with contextlib.suppress(Exception):
            self.stop_daemon()
        return super().cleanup()


class _Unix(http.client.HTTPConnection):
    def __init__(self, path: Path) -> None:
        super().__init__("localhost", timeout=60)
        self.socket_path = path

    def connect(self) -> None:
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        with sockets.address(self.socket_path) as where:
            self.sock.connect(where)


def get(path: Path, target: str) -> tuple[int, bytes]:
    conn = _Unix(path)
    try:
        conn.request("GET", target)
        answer = conn.getresponse()
        return answer.status, answer.read()
    finally:
        conn.close()


def timed_get(path: Path, target: str) -> tuple[float, int]:
    t0 = time.perf_counter()
    code, body = get(path, target)
    seconds = time.perf_counter() - t0
    if code != 200:
        raise RuntimeError(f"GET {target}: {code} {body[:200]!r}")
    return seconds, len(body)


def samples(text: str) -> dict[str, float]:
    found = {}
    for line in text.splitlines():
        if line and not line.startswith("#"):
            name, _, value = line.rpartition(" ")
            found[name] = float(value)
    return found


def converged(rig: Rig, n: int) -> Callable[[], bool]:
    def check() -> bool:
        try:
            code, body = get(rig.socket_path, "/metrics")
        except OSError:
            return False
        shown = samples(body.decode())
        lanes = sum(v for k, v in shown.items() if k.startswith("lanes_lanes{"))
        return code == 200 and lanes == n and shown.get('lanes_agents{state="running"}') == n

    return check


@dataclass(slots=True)
class Outcome:
    """What the benchmark measured."""

    lanes: int
    scrapes: int
    healthz_s: list[float] = field(default_factory=list)
    metrics_s: list[float] = field(default_factory=list)
    metrics_bytes: int = 0
    descendants_before: int = 0
    new_descendants: list[str] = field(default_factory=list)
    traced: dict[str, Any] | None = None
    status_traced: dict[str, Any] | None = None
    converge_s: float = float("nan")
    problems: list[str] = field(default_factory=list)


class Watcher:
    """Samples the daemon's descendants in a thread; remembers every new pid it sees."""

    def __init__(self, pid: int) -> None:
        self.root = psutil.Process(pid)
        self.before = {p.pid for p in self.root.children(recursive=True)}
        self.seen: dict[int, str] = {}
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.is_set():
            with contextlib.suppress(psutil.Error):
                for child in self.root.children(recursive=True):
                    if child.pid not in self.before and child.pid not in self.seen:
                        with contextlib.suppress(psutil.Error):
                            self.seen[child.pid] = " ".join(child.cmdline())[:80]
                        self.seen.setdefault(child.pid, "?")
            time.sleep(SAMPLE_EVERY)

    def __enter__(self) -> Watcher:
        self._thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self._stop.set()
        self._thread.join()


@contextlib.contextmanager
def traced(rig: Rig, pid: int) -> Iterator[dict[str, Any]]:
    """strace attached to every thread of ``pid`` while the block runs; the counts after it."""
    found: dict[str, Any] = {}
    out = rig.scratch / f"strace-{time.monotonic_ns()}.txt"
    calls = "trace=execve,fork,vfork,clone,clone3"
    argv = ["strace", "-f", "-qq", "-e", calls, "-e", "signal=none", "-o", str(out), "-p", str(pid)]
    proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stderr=subprocess.PIPE)
    time.sleep(1.0)  # attached to every thread by then
    try:
        yield found
    finally:
        time.sleep(0.5)
        proc.send_signal(signal.SIGINT)
        try:
            _, err = proc.communicate(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()
            _, err = proc.communicate()
        text = out.read_text(errors="replace") if out.exists() else ""
        lines = text.splitlines()
        clones = [line for line in lines if CLONE.search(line) and "resumed>" not in line]
        found["execve"] = sum(1 for line in lines if EXECVE.search(line))
        found["process_clones"] = sum(1 for line in clones if "CLONE_THREAD" not in line)
        found["thread_clones"] = sum(1 for line in clones if "CLONE_THREAD" in line)
        found["lines"] = len(lines)
        found["works"] = proc.returncode in (0, -signal.SIGINT, 130) and bool(lines or not err)
        found["stderr"] = err.decode(errors="replace")[-300:]


def bench(n: int, scrapes: int) -> Outcome:
    outcome = Outcome(lanes=n, scrapes=scrapes)
    with h.fresh_repo(Rig, n, prefix="scrape-bench-", tmux=True) as rig:
        try:
            _bench(rig, outcome)
        except Exception:
            log("failed; " + rig.diagnose())
            raise
    return outcome


def _bench(rig: Rig, outcome: Outcome) -> None:
    n, scrapes = outcome.lanes, outcome.scrapes
    rig.create()
    t0 = time.perf_counter()
    log(f"converging {n} lanes and {n} agents (untimed --once passes)")
    for _ in range(3):
        argv = rig.controller("--once")
        done = subprocess.run(
            argv, cwd=rig.path, env=rig.env, capture_output=True, check=False, timeout=600
        )
        if done.returncode == 0:
            break
    log("starting the daemon")
    rig.start_daemon()
    assert rig.daemon is not None
    h.wait_for(converged(rig, n), READY_TIMEOUT, rig.diagnose)
    outcome.converge_s = time.perf_counter() - t0
    pid = rig.daemon.pid
    for _ in range(5):  # warm both routes
        timed_get(rig.socket_path, "/healthz")
        timed_get(rig.socket_path, "/metrics")
    log(f"(a) {scrapes} rounds of /healthz then /metrics")
    with Watcher(pid) as watcher:
        for _ in range(scrapes):
            outcome.healthz_s.append(timed_get(rig.socket_path, "/healthz")[0])
            seconds, size = timed_get(rig.socket_path, "/metrics")
            outcome.metrics_s.append(seconds)
            outcome.metrics_bytes = size
    outcome.descendants_before = len(watcher.before)
    outcome.new_descendants = [f"{p} {c}" for p, c in watcher.seen.items()]
    if not converged(rig, n)():
        outcome.problems.append("the metrics no longer show every lane and agent running")
    if shutil.which("strace") is not None:
        log(f"(b) {scrapes} scrapes under strace")
        with traced(rig, pid) as counts:
            for _ in range(scrapes):
                timed_get(rig.socket_path, "/metrics")
        outcome.traced = counts
        log("(b) control: one GET /v1/status under strace")
        with traced(rig, pid) as control:
            timed_get(rig.socket_path, "/v1/status")
        outcome.status_traced = control
    code = rig.stop_daemon()
    if code != 0:
        outcome.problems.append(f"daemon exited {code}")


def pct(values: Sequence[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


def ms(seconds: float) -> str:
    return f"{seconds * 1000:.1f}"


def verdicts(o: Outcome) -> list[tuple[str, bool]]:
    found = [(f"no new descendant of the daemon during {o.scrapes} scrapes", not o.new_descendants)]
    if o.traced is not None and o.status_traced is not None and o.traced["works"]:
        spawned = o.traced["execve"] + o.traced["process_clones"]
        control = o.status_traced["execve"] + o.status_traced["process_clones"]
        found.append(
            (f"strace: 0 processes started by {o.scrapes} scrapes ({spawned})", spawned == 0)
        )
        found.append((f"strace control: GET /v1/status starts processes ({control})", control > 0))
    return found


def report(o: Outcome, info: dict[str, Any]) -> str:
    med_h, med_m = statistics.median(o.healthz_s), statistics.median(o.metrics_s)
    rows = [
        ["GET /healthz (baseline)", ms(med_h), ms(pct(o.healthz_s, 0.95)), "1.0x"],
        ["GET /metrics", ms(med_m), ms(pct(o.metrics_s, 0.95)), f"{med_m / med_h:.1f}x"],
    ]
    lines = [
        *h.header(f"Metrics scrape at {o.lanes} lanes and {o.lanes} agents", info),
        "",
        f"{o.scrapes} rounds over the unix socket, one connection per request; milliseconds",
        *h.table(["request", "median ms", "p95 ms", "x healthz"], rows),
        f"/metrics response: {o.metrics_bytes} bytes; daemon descendants (the agents' "
        f"launchers are not its children): {o.descendants_before}; setup (converge and "
        f"daemon start): {o.converge_s:.0f} s",
    ]
    if o.traced is not None:
        t, c = o.traced, o.status_traced or {}
        lines.append(
            f"strace over {o.scrapes} scrapes: execve {t['execve']}, process clones "
            f"{t['process_clones']}, thread clones {t['thread_clones']}; control (one "
            f"/v1/status): execve {c.get('execve')}, process clones {c.get('process_clones')}"
        )
        if not t["works"]:
            lines.append(f"strace did not work here: {t['stderr']}")
    else:
        lines.append("strace missing: only the descendant sampling counts")
    lines += [f"{text}: {h.verdict(ok)}" for text, ok in verdicts(o)]
    lines += [f"problem: {p}" for p in o.problems]
    lines += [f"new descendant: {d}" for d in o.new_descendants[:10]]
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    """Measure, print the report, optionally write JSON."""
    args = h.options(__doc__, reps=False).parse_args(argv)
    n, scrapes = (50, 30) if args.quick else (200, 100)
    info = h.machine("tmux", "strace")
    with h.private_bytecode("scrape-bench-"):
        h.warm_bytecode("controller.cli.main")
        outcome = bench(n, scrapes)
    h.at_end(info)
    payload = {"machine": info, **{k: getattr(o, k) for o in [outcome] for k in o.__slots__}}
    h.publish(report(outcome, info), payload, args.json)
    ok = all(passed for _, passed in verdicts(outcome)) and not outcome.problems
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
