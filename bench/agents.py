"""Benchmark: agents (tmux windows) started, kept and torn down by ``controller --once``.

Run it from the repository root with the project's interpreter::

    .venv/bin/python bench/agents.py            # 3 repetitions, medians (~4 minutes on 2 CPUs)
    .venv/bin/python bench/agents.py --quick    # 1 repetition
    .venv/bin/python bench/agents.py --json bench-agents.json

Every measurement runs in a fresh temporary git repository (one commit, a private global git
config, no system config) with a private tmux server (Workspace ``spec.tmuxSocket:
bench-<random>``, ``TMUX_TMPDIR`` a short fresh folder under /tmp), and runs the controller as
the real CLI in a subprocess: ``python -m controller --once --desired <repo>/desired`` with the
repository as working directory. Each binding runs ``[python, tests/stubs/agent.py, --sleep]``
(absolute paths), one binding per lane, so one tmux session per lane. Every ratio printed is
between numbers measured in the same run of this script; each number is the median of the
repetitions. The tmux servers are killed and leftover agent processes reaped at the end of every
repository, also on error. What is measured:

(a) 50 agents from scratch: one pass creating 50 lanes and starting their 50 agents, and,
    separately, the agent part alone (the 50 lanes converged first, then the 50 bindings added
    and the pass that only starts agents timed), each with maxParallelLanes 8 (default) and 16.
    The agent part is compared with one ``bash -c`` loop of ``tmux -L <other socket>
    new-session -d -s lNNN -c <worktree> -- python agent.py --sleep`` in the same worktrees
    (``-f /dev/null``: no user tmux configuration), and with a second loop that starts each
    agent through the controller's launcher (``python -m controller.system.launch ENVFILE --
    agent``), as the controller does, to split the launcher's cost from the controller's own.
    Two times per run: "wall" until the program exits, and "ready" until all 50 agent programs
    are running (polled from the process table after the program exits: tmux starts a pane's
    program in the background, and the controller's panes first run its launcher).
(b) A no-op pass (already converged) at 50 and 200 agents: wall time, and the programs it
    starts, counted with ``strace -f -e trace=execve`` (or, without strace, ``git``/``tmux``
    wrappers first on PATH), to show the count is constant per pass, not one per lane.
(c) Teardown of 50 agents and lanes (every YAML file removed, ``--once --allow-empty``): wall
    time, then what is left: panes, agent processes, worktrees (all must be 0).
(d) Peak RSS of the controller in the 200-agent no-op pass (``ru_maxrss`` from ``os.wait4``).
Also counted once, with the PATH wrappers: the tmux and git calls of the pass that starts 50
agents and of the pass that tears them down (calls per agent).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import platform
import re
import secrets
import shlex
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import harness as h  # bench/h.py (scripts run as `python bench/<name>.py`)
import psutil

AGENTS = 50
NOOP_SIZES = (50, 200)
PARALLEL = (8, 16)
DEFAULT_PARALLEL = 8
TARGET_START_RATIO = 1.2
RUN_TIMEOUT = 600.0
READY_TIMEOUT = 60.0
READY_POLL = 0.02
MAX_SETUP_PASSES = 4
BACKOFF_SECONDS = 10.0  # the controller's first backoff after a failed action

ROOT = Path(__file__).resolve().parents[1]
STUB = str(ROOT / "tests" / "stubs" / "agent.py")
AGENT_ARGV = (sys.executable, STUB, "--sleep")

IDENTITY = {
    "GIT_AUTHOR_NAME": "Agent Bench",
    "GIT_AUTHOR_EMAIL": "bench@example.invalid",
    "GIT_COMMITTER_NAME": "Agent Bench",
    "GIT_COMMITTER_EMAIL": "bench@example.invalid",
}


STARTED = time.perf_counter()


def log(message: str) -> None:
    """Progress goes to stderr (with the seconds since start) so that stdout holds the report."""
    print(f"[{time.perf_counter() - STARTED:6.1f}s] {message}", file=sys.stderr, flush=True)


# -- running and measuring ----------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Sample:
    """One measured run of one program."""

    wall_s: float
    rc: int
    maxrss_kib: int
    cpu_s: float
    """User plus system CPU of the process and of every descendant it reaped."""
    busy_before: float
    """Share of all CPUs that other processes kept busy just before the run (0 to 1)."""
    ready_s: float | None = None
    """From spawn until every expected agent program was running (None: not asked)."""


@dataclass(frozen=True, slots=True)
class Ran:
    """A sample and what the program printed (stdout and stderr together)."""

    sample: Sample
    output: str


PROC_STAT = Path("/proc/stat")
QUIET_SHARE = 0.25  # at most this share of all CPUs busy before a measurement starts
QUIET_WAIT = 3.0  # seconds to wait for that, at most, before measuring anyway
QUIET_WAIT_BUSY = 0.6  # ... once the machine has stayed busy through several waits in a row
QUIET_MISSES = 3
QUIET_WINDOW = 0.2
_quiet_misses: list[int] = [0]  # consecutive waits that ended busy


def _cpu_times() -> tuple[int, int] | None:
    """Idle and total jiffies of all CPUs, or None where /proc/stat does not exist."""
    try:
        fields = [int(x) for x in PROC_STAT.read_text().split("\n", 1)[0].split()[1:]]
    except (OSError, ValueError):
        return None
    return fields[3] + fields[4], sum(fields[:8])


def busy_share() -> float:
    """Share of all CPUs busy over a short window (0 where it cannot be known)."""
    before = _cpu_times()
    time.sleep(QUIET_WINDOW)
    after = _cpu_times()
    if before is None or after is None or after[1] <= before[1]:
        return 0.0
    return 1.0 - (after[0] - before[0]) / (after[1] - before[1])


def wait_for_quiet() -> float:
    """Wait (a little) until the CPUs are mostly idle; return the last busy share.

    Agents that are still starting from a previous step, or someone else's test suite, would
    otherwise slow the next measurement down. On a machine that stays busy (several waits in a
    row ended busy) the wait is cut short: waiting longer would not make it quiet. Runs that
    started busy are counted in the report.
    """
    limit = QUIET_WAIT if _quiet_misses[0] < QUIET_MISSES else QUIET_WAIT_BUSY
    deadline = time.perf_counter() + limit
    share = busy_share()
    while share > QUIET_SHARE and time.perf_counter() < deadline:
        time.sleep(0.1)
        share = busy_share()
    _quiet_misses[0] = _quiet_misses[0] + 1 if share > QUIET_SHARE else 0
    return share


def measure(
    argv: Sequence[str],
    *,
    cwd: Path,
    env: Mapping[str, str],
    scratch: Path,
    ready: Callable[[], bool] | None = None,
    quiet: bool = True,
) -> Ran:
    """Run ``argv`` to completion; wall time from just before spawn to reaping, its rusage.

    With ``ready``, the process table is then polled until ``ready()`` holds, and the time from
    spawn to that moment is kept too (polling starts only after the program exits, so that it
    does not compete with it for the CPUs). ``quiet=False`` skips waiting for idle CPUs (set-up
    runs whose time is not reported).
    """
    busy = wait_for_quiet() if quiet else busy_share()
    out_path = scratch / "output.txt"
    with out_path.open("w+b") as out:
        start = time.perf_counter()
        child = subprocess.Popen(
            list(argv),
            cwd=cwd,
            env=dict(env),
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=subprocess.STDOUT,
        )
        watchdog = threading.Timer(RUN_TIMEOUT, child.kill)  # a hung run must not hang us
        watchdog.start()
        _, status, usage = os.wait4(child.pid, 0)
        wall = time.perf_counter() - start
        watchdog.cancel()
        child.returncode = os.waitstatus_to_exitcode(status)  # reaped here, not by Popen
        ready_s: float | None = None
        if ready is not None:
            deadline = time.perf_counter() + READY_TIMEOUT
            while not ready():
                if time.perf_counter() > deadline:
                    ready_s = float("nan")
                    break
                time.sleep(READY_POLL)
            else:
                ready_s = time.perf_counter() - start
        out.seek(0)
        text = out.read().decode("utf-8", "replace")
    sample = Sample(
        wall_s=wall,
        rc=child.returncode,
        maxrss_kib=int(usage.ru_maxrss),
        cpu_s=usage.ru_utime + usage.ru_stime,
        busy_before=busy,
        ready_s=ready_s,
    )
    return Ran(sample, text)


def run_quiet(
    argv: Sequence[str], *, cwd: Path, env: Mapping[str, str]
) -> subprocess.CompletedProcess[str]:
    """Run a helper command to completion (not measured), whatever its exit status."""
    return subprocess.run(
        list(argv),
        cwd=cwd,
        env=dict(env),
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        check=False,
        timeout=60,
    )


BYTECODE: dict[str, str] = {}
"""Where children keep bytecode (``PYTHONPYCACHEPREFIX``), set once by ``main``."""


def base_env() -> dict[str, str]:
    """Our environment without anything that could redirect git, tmux or the store.

    Children (the controller and the agents' launcher) compile Python once into a private
    ``PYTHONPYCACHEPREFIX`` and reuse it, as an installed controller does, even where
    ``PYTHONDONTWRITEBYTECODE`` is set (the source folder is left untouched).
    """
    env = dict(os.environ)
    for key in list(env):
        if key.startswith(("GIT_", "TMUX")) or key in ("CONTROLLER_STATE",):
            del env[key]
    env.pop("PYTHONDONTWRITEBYTECODE", None)
    env.update(IDENTITY)
    env.update({"GIT_CONFIG_NOSYSTEM": "1", "LC_ALL": "C", **BYTECODE})
    return env


# -- processes, panes and cleanup ----------------------------------------------------------------


def _agent_processes(under: str, *, running_only: bool) -> list[psutil.Process]:
    """Live agent processes working under ``under``.

    ``running_only``: only processes that already run the stub itself (not the controller's
    launcher that is about to ``exec`` it). The tmux server is never counted (its argv is the
    command of the session that started it).
    """
    found = []
    for proc in psutil.process_iter(["cmdline", "cwd", "status"]):
        info = proc.info
        cmdline: list[str] = info["cmdline"] or []
        if STUB not in cmdline or Path(cmdline[0]).name.startswith("tmux"):
            continue
        if info["status"] == psutil.STATUS_ZOMBIE or not (info["cwd"] or "").startswith(under):
            continue
        if running_only and cmdline[1:2] != [STUB]:
            continue
        found.append(proc)
    return found


def _kill_all(processes: Sequence[psutil.Process]) -> int:
    killed = 0
    for proc in processes:
        with contextlib.suppress(psutil.Error):
            proc.kill()
            killed += 1
    return killed


def _tmux_servers(socket: str) -> list[psutil.Process]:
    """tmux processes of one socket name (a fallback when ``kill-server`` does not answer)."""
    found = []
    for proc in psutil.process_iter(["cmdline"]):
        cmdline: list[str] = proc.info["cmdline"] or []
        if cmdline and Path(cmdline[0]).name == "tmux" and socket in cmdline:
            found.append(proc)
    return found


# -- workspaces -----------------------------------------------------------------------------------


@dataclass(slots=True)
class Workspace:
    """A fresh repository with its private tmux server (and a second one for the baseline)."""

    path: Path
    env: dict[str, str]
    scratch: Path
    top: Path
    socket: str
    baseline_socket: str
    lanes: tuple[str, ...]
    parallel: int | None

    @property
    def desired(self) -> Path:
        """The desired-state folder."""
        return self.path / "desired"

    @property
    def worktree_root(self) -> Path:
        """Where lanes are checked out (the controller's default worktreeRoot)."""
        return self.path / ".lanes" / "worktrees"

    def controller(self, *extra: str) -> list[str]:
        """The controller's command line for this repository (``--once`` unless told)."""
        args = list(extra) or ["--once"]
        return [sys.executable, "-m", "controller", *args, "--desired", str(self.desired)]

    def write_workspace(self) -> None:
        """The Workspace document: the private socket, and maxParallelLanes when set."""
        extra = f", maxParallelLanes: {self.parallel}" if self.parallel is not None else ""
        (self.desired / "workspace.yaml").write_text(
            "apiVersion: lanes/v1\nkind: Workspace\nmetadata: {name: bench}\n"
            f"spec: {{tmuxSocket: {self.socket}{extra}}}\n"
        )

    def write_lanes(self) -> None:
        """One Lane document per lane."""
        docs = [
            f"apiVersion: lanes/v1\nkind: Lane\nmetadata: {{name: {name}}}\n" for name in self.lanes
        ]
        (self.desired / "lanes.yaml").write_text("---\n".join(docs))

    def write_bindings(self) -> None:
        """One Binding per lane (participant ``a-<lane>``) running the sleeping stub agent."""
        docs = []
        for name in self.lanes:
            doc = {
                "apiVersion": "lanes/v1",
                "kind": "Binding",
                "metadata": {"name": f"{name}-agent"},
                "spec": {"lane": name, "participant": f"a-{name}", "command": list(AGENT_ARGV)},
            }
            docs.append(json.dumps(doc))  # JSON is YAML
        (self.desired / "bindings.yaml").write_text("\n---\n".join(docs) + "\n")

    def remove_yaml(self) -> None:
        """Remove every YAML file of ``desired/`` (the workspace is remembered in the store)."""
        for path in self.desired.glob("*.yaml"):
            path.unlink()

    def shell_loop(self) -> list[str]:
        """The baseline: one bash script starting every agent in its own tmux session."""
        tmux = f"tmux -L {shlex.quote(self.baseline_socket)} -f /dev/null"
        agent = shlex.join(AGENT_ARGV)
        root = shlex.quote(str(self.worktree_root))
        script = (
            f"for n in {' '.join(self.lanes)}; do "
            f'{tmux} new-session -d -s "$n" -c {root}/"$n" -- {agent} || exit 1; done'
        )
        return ["bash", "-c", script]

    def launcher_loop(self) -> list[str]:
        """The shell loop, each agent started through the controller's launcher.

        Like the controller, each pane runs ``python -m controller.system.launch ENVFILE --
        AGENT``, which reads the environment from a file (written here beforehand, as the
        controller does, with this benchmark's environment) and ``exec``s the agent.
        """
        folder = self.scratch / "env"
        folder.mkdir(exist_ok=True)
        for name in self.lanes:
            (folder / f"{name}.json").write_text(json.dumps(self.env))
        tmux = f"tmux -L {shlex.quote(self.baseline_socket)} -f /dev/null"
        launcher = shlex.join((sys.executable, "-m", "controller.system.launch"))
        agent = shlex.join(AGENT_ARGV)
        root, envs = shlex.quote(str(self.worktree_root)), shlex.quote(str(folder))
        script = (
            f"for n in {' '.join(self.lanes)}; do "
            f'{tmux} new-session -d -s "$n" -c {root}/"$n" -- {launcher} {envs}/"$n".json -- '
            f"{agent} || exit 1; done"
        )
        return ["bash", "-c", script]

    def measure(
        self,
        argv: Sequence[str],
        env: Mapping[str, str] | None = None,
        *,
        ready: Callable[[], bool] | None = None,
        quiet: bool = True,
    ) -> Ran:
        """Measure ``argv`` run in this repository."""
        return measure(
            argv, cwd=self.path, env=env or self.env, scratch=self.scratch, ready=ready, quiet=quiet
        )

    def agents_running(self, expected: int) -> Callable[[], bool]:
        """A check that exactly ``expected`` agents run the stub in this repository."""
        under = str(self.path)
        return lambda: len(_agent_processes(under, running_only=True)) == expected

    def agent_count(self) -> int:
        """Live agent processes (stub or launcher) working in this repository."""
        return len(_agent_processes(str(self.path), running_only=False))

    def agent_pids(self) -> frozenset[int]:
        """PIDs of the agents that run the stub in this repository."""
        return frozenset(p.pid for p in _agent_processes(str(self.path), running_only=True))

    def panes(self, socket: str | None = None) -> int:
        """Panes of a tmux server (0 when no server runs)."""
        argv = ("tmux", "-L", socket or self.socket, "list-panes", "-a", "-F", "#{pane_id}")
        done = run_quiet(argv, cwd=self.path, env=self.env)
        return len(done.stdout.split()) if done.returncode == 0 else 0

    def worktree_count(self) -> int:
        """Linked worktrees git knows of (the main checkout not counted)."""
        text = h.run_checked(
            ("git", "worktree", "list", "--porcelain"), cwd=self.path, env=self.env
        )
        return sum(1 for line in text.splitlines() if line.startswith("worktree ")) - 1

    def root_dirs(self) -> int:
        """Folders left in the worktree root (its ``.gitignore`` is the controller's, and stays)."""
        if not self.worktree_root.is_dir():
            return 0
        return sum(1 for entry in self.worktree_root.iterdir() if entry.is_dir())

    def kill_baseline(self) -> None:
        """Stop the baseline's tmux server and wait until its agents are gone."""
        self._kill_server(self.baseline_socket)
        deadline = time.perf_counter() + 10
        while self.agent_count() and time.perf_counter() < deadline:
            time.sleep(0.05)
        _kill_all(_agent_processes(str(self.path), running_only=False))

    def _kill_server(self, socket: str) -> None:
        with contextlib.suppress(subprocess.SubprocessError, OSError):
            run_quiet(("tmux", "-L", socket, "kill-server"), cwd=self.top, env=self.env)
        _kill_all(_tmux_servers(socket))

    def cleanup(self) -> int:
        """Kill both tmux servers and every agent left in the repository; return how many."""
        for socket in (self.socket, self.baseline_socket):
            self._kill_server(socket)
        time.sleep(0.1)  # the servers' SIGHUP reaches their panes
        return _kill_all(_agent_processes(str(self.top), running_only=False))


@contextlib.contextmanager
def fresh_workspace(lanes: int, *, parallel: int | None = None) -> Iterator[Workspace]:
    """A new repository with one commit, an empty ``desired/`` and a private tmux socket."""
    with contextlib.ExitStack() as stack:
        top = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="agents-bench-")))
        top = top.resolve()
        # tmux socket paths are limited to about 107 bytes: a short folder directly under /tmp.
        tmux_dir = tempfile.mkdtemp(prefix="ab-", dir="/tmp")
        stack.callback(shutil.rmtree, tmux_dir, ignore_errors=True)
        path, scratch = top / "repo", top / "scratch"
        path.mkdir()
        scratch.mkdir()
        gitconfig = top / "gitconfig"
        gitconfig.write_text("[init]\n\tdefaultBranch = main\n")
        env = {**base_env(), "GIT_CONFIG_GLOBAL": str(gitconfig), "TMUX_TMPDIR": tmux_dir}
        tag = secrets.token_hex(4)
        ws = Workspace(
            path=path,
            env=env,
            scratch=scratch,
            top=top,
            socket=f"bench-{tag}",
            baseline_socket=f"bench-{tag}-loop",
            lanes=h.lane_names(lanes),
            parallel=parallel,
        )
        stack.callback(ws.cleanup)
        h.run_checked(("git", "init", "--quiet"), cwd=path, env=env)
        (path / "README.md").write_text("A repository for the agent benchmark.\n")
        h.run_checked(("git", "add", "README.md"), cwd=path, env=env)
        h.run_checked(("git", "commit", "--quiet", "-m", "initial"), cwd=path, env=env)
        ws.desired.mkdir()
        ws.write_workspace()
        yield ws


# -- counting subprocesses -------------------------------------------------------------------------


@dataclass(slots=True)
class Spawns:
    """Programs started during one controller run."""

    method: str
    programs: Counter[str] = field(default_factory=Counter)
    """Successful ``execve`` calls (or wrapper calls), by program name."""
    failed_execs: int = 0
    """``execve`` attempts that failed (the PATH search trying each folder in turn)."""
    commands: list[str] = field(default_factory=list)

    @property
    def total(self) -> int:
        """Every program started, the controller itself included (strace)."""
        return sum(self.programs.values())

    def to_json(self) -> dict[str, Any]:
        """Raw numbers."""
        return {
            "method": self.method,
            "programs": dict(self.programs),
            "total": self.total,
            "failed_execs": self.failed_execs,
            "commands": self.commands,
        }


_STRACE_LINE = re.compile(r"^(\d+)\s+(.*)$")
_QUOTED = re.compile(r'"((?:[^"\\]|\\.)*)"')
_SUCCESS = re.compile(r"\)\s+=\s+0$")
_EXEC_WORDS = 4


def program_name(path: str) -> str:
    """A program's group: ``python3.11`` and friends are ``python``."""
    name = Path(path).name
    return "python" if name.startswith("python") else name


def parse_strace(text: str) -> Spawns:
    """Count the execve calls of ``strace -f -e trace=execve`` output, by program."""
    spawns = Spawns("strace -f -e trace=execve")
    pending: dict[int, tuple[str, list[str]]] = {}

    def done(call: tuple[str, list[str]], body: str) -> None:
        if _SUCCESS.search(body):
            spawns.programs[program_name(call[0])] += 1
            spawns.commands.append(shlex.join(call[1]))
        else:
            spawns.failed_execs += 1

    for line in text.splitlines():
        match = _STRACE_LINE.match(line)
        if not match:
            continue
        pid, body = int(match.group(1)), match.group(2)
        if body.startswith("execve("):
            quoted = _QUOTED.search(body)
            argv = _QUOTED.findall(body.partition("[")[2].partition("]")[0])[:_EXEC_WORDS]
            call = (quoted.group(1) if quoted else "?", argv)
            if body.endswith("<unfinished ...>"):
                pending[pid] = call
            else:
                done(call, body)
        elif body.startswith("<... execve resumed>"):
            done(pending.pop(pid, ("?", [])), body)
    return spawns


def count_with_strace(ws: Workspace, argv: Sequence[str]) -> Spawns | None:
    """Run ``argv`` under strace (unmeasured); None when strace is missing or cannot trace."""
    strace = shutil.which("strace", path=ws.env.get("PATH"))
    if strace is None:
        return None
    trace = ws.scratch / "strace.txt"
    traced = [
        strace,
        "-f",
        "-qq",
        "-e",
        "trace=execve",
        "-e",
        "signal=none",
        "-o",
        str(trace),
        "--",
        *argv,
    ]
    ran = ws.measure(traced, quiet=False)
    if ran.sample.rc == 0 and trace.exists():
        spawns = parse_strace(trace.read_text(errors="replace"))
        if spawns.total:
            return spawns
    log(f"  strace did not work here (rc {ran.sample.rc}); counting with PATH wrappers")
    return None


def count_with_wrappers(ws: Workspace, argv: Sequence[str]) -> tuple[Spawns, Ran]:
    """Run ``argv`` with ``git`` and ``tmux`` wrappers first on PATH that log each call.

    The wrappers ``exec`` the real program (found beforehand), so no extra process stays
    around; git's own helpers and the controller's launcher are not seen this way.
    """
    wrappers, calls = ws.scratch / "wrappers", ws.scratch / "calls.txt"
    wrappers.mkdir(exist_ok=True)
    calls.write_text("")
    for tool in ("git", "tmux"):
        real = shutil.which(tool, path=ws.env.get("PATH"))
        if real is None:
            raise RuntimeError(f"{tool} not found on PATH")
        wrapper = wrappers / tool
        wrapper.write_text(
            f"#!/bin/sh\nprintf '%s\\n' \"{tool} $*\" >> {shlex.quote(str(calls))}\n"
            f'exec {shlex.quote(real)} "$@"\n'
        )
        wrapper.chmod(0o755)
    env = {**ws.env, "PATH": f"{wrappers}{os.pathsep}{ws.env.get('PATH', '')}"}
    ran = ws.measure(argv, env=env, quiet=False)
    lines = calls.read_text().splitlines()
    programs = Counter(line.split(" ", 1)[0] for line in lines)
    return Spawns("git/tmux wrappers on PATH", programs=programs, commands=lines), ran


def count_spawns(ws: Workspace, argv: Sequence[str]) -> Spawns:
    """The programs ``argv`` starts: strace if it works here, else the PATH wrappers."""
    return count_with_strace(ws, argv) or count_with_wrappers(ws, argv)[0]


# -- the benchmark -------------------------------------------------------------------------------


@dataclass(slots=True)
class Results:
    """Every sample, by measurement key, and whatever went wrong on the way."""

    samples: dict[str, list[Sample]] = field(default_factory=dict)
    spawns: dict[str, Spawns] = field(default_factory=dict)
    leaks: dict[str, list[dict[str, int]]] = field(default_factory=dict)
    warnings: list[str] = field(default_factory=list)

    def add(self, key: str, sample: Sample) -> None:
        """Record one sample."""
        self.samples.setdefault(key, []).append(sample)

    def median(self, key: str, attr: str = "wall_s") -> float:
        """Median of one attribute over the repetitions."""
        values = [getattr(s, attr) for s in self.samples[key]]
        return float(statistics.median(v for v in values if v is not None))

    def spread(self, key: str, attr: str = "wall_s") -> tuple[float, float]:
        """Lowest and highest value."""
        values = [getattr(s, attr) for s in self.samples[key]]
        return min(values), max(values)

    def warn(self, message: str) -> None:
        """Note something that makes a number less than clean (printed at the end)."""
        log(f"  warning: {message}")
        self.warnings.append(message)


def check_run(results: Results, key: str, ran: Ran) -> None:
    """Warn about a controller run that failed or whose agents never all ran."""
    sample = ran.sample
    if sample.rc != 0:
        results.warn(f"{key}: exit {sample.rc}: {h.first_problem(ran.output)}")
    if sample.ready_s is not None and sample.ready_s != sample.ready_s:  # NaN: never ready
        results.warn(f"{key}: the agents were not all running within {READY_TIMEOUT:g} s")


def converge(results: Results, ws: Workspace, key: str) -> Ran:
    """Run passes until ``controller plan --detailed-exitcode`` sees nothing to do.

    Returns the first pass. After a failed pass this waits out the controller's backoff.
    """
    first: Ran | None = None
    for attempt in range(1, MAX_SETUP_PASSES + 1):
        ran = ws.measure(ws.controller(), quiet=first is None)  # the first pass is reported
        first = first or ran
        if ran.sample.rc != 0:
            results.warn(
                f"{key}: pass {attempt} exited {ran.sample.rc}: {h.first_problem(ran.output)}"
            )
            time.sleep(BACKOFF_SECONDS * 2 ** (attempt - 1) + 0.5)
            continue
        plan = ws.measure(ws.controller("plan", "--detailed-exitcode"), quiet=False)
        if plan.sample.rc == 0:
            return first
    raise RuntimeError(f"{key}: not converged after {MAX_SETUP_PASSES} passes")


def teardown(results: Results, ws: Workspace, key: str) -> None:
    """(c): remove every YAML file, one ``--once --allow-empty``, then count what is left."""
    ws.remove_yaml()
    ran = ws.measure(ws.controller("--once", "--allow-empty"))
    results.add(key, ran.sample)
    check_run(results, key, ran)
    left = {
        "panes": ws.panes(),
        "agent_processes": ws.agent_count(),
        "worktrees": ws.worktree_count(),
        "worktree_dirs": ws.root_dirs(),
    }
    results.leaks.setdefault(key, []).append(left)
    if any(left.values()):
        results.warn(f"{key}: left behind {left}")


def bench_full(results: Results, parallel: int) -> None:
    """(a) lanes and agents from scratch in one pass, then (c) the teardown of everything."""
    with fresh_workspace(AGENTS, parallel=parallel) as ws:
        ws.write_lanes()
        ws.write_bindings()
        key = f"full/{AGENTS}/ctl-p{parallel}"
        log(f"  {key}")
        ran = ws.measure(ws.controller(), ready=ws.agents_running(AGENTS))
        results.add(key, ran.sample)
        check_run(results, key, ran)
        if ws.worktree_count() != AGENTS or ws.panes() != AGENTS:
            results.warn(f"{key}: {ws.worktree_count()} worktrees, {ws.panes()} panes")
        log(f"  teardown/{AGENTS}/ctl-p{parallel}")
        teardown(results, ws, f"teardown/{AGENTS}/ctl-p{parallel}")


def bench_agents_only(results: Results, parallel: int) -> None:
    """(a) the agent part alone, against the shell loop, in the same converged worktrees."""
    with fresh_workspace(AGENTS, parallel=parallel) as ws:
        ws.write_lanes()
        ran = converge(results, ws, f"lanes/{AGENTS}/ctl-p{parallel}")
        results.add(f"lanes/{AGENTS}/ctl-p{parallel}", ran.sample)
        key = f"agents/{AGENTS}/shell-loop"
        log(f"  {key}")
        ran = ws.measure(ws.shell_loop(), ready=ws.agents_running(AGENTS))
        results.add(key, ran.sample)
        check_run(results, key, ran)
        if ws.panes(ws.baseline_socket) != AGENTS:
            results.warn(f"{key}: {ws.panes(ws.baseline_socket)} panes")
        ws.kill_baseline()
        key = f"agents/{AGENTS}/launcher-loop"
        log(f"  {key}")
        ran = ws.measure(ws.launcher_loop(), ready=ws.agents_running(AGENTS))
        results.add(key, ran.sample)
        check_run(results, key, ran)
        ws.kill_baseline()
        ws.write_bindings()
        key = f"agents/{AGENTS}/ctl-p{parallel}"
        log(f"  {key}")
        ran = ws.measure(ws.controller(), ready=ws.agents_running(AGENTS))
        results.add(key, ran.sample)
        check_run(results, key, ran)
        if ws.panes() != AGENTS:
            results.warn(f"{key}: {ws.panes()} panes")


def bench_calls(results: Results) -> None:
    """tmux and git calls of the pass starting 50 agents and of the teardown (PATH wrappers)."""
    with fresh_workspace(AGENTS) as ws:
        log(f"  counting tmux and git calls of starting and tearing down {AGENTS} agents")
        ws.write_lanes()
        converge(results, ws, "calls/setup")
        ws.write_bindings()
        results.spawns[f"start/{AGENTS}"], ran = count_with_wrappers(ws, ws.controller())
        check_run(results, "calls/start", ran)
        ws.remove_yaml()
        argv = ws.controller("--once", "--allow-empty")
        results.spawns[f"teardown/{AGENTS}"], ran = count_with_wrappers(ws, argv)
        check_run(results, "calls/teardown", ran)


def bench_noop(results: Results, reps: int) -> None:
    """(b), (d): converged workspaces of 50 and 200 agents, timed no-op passes, counted."""
    for size in NOOP_SIZES:
        with fresh_workspace(size) as ws:
            ws.write_lanes()
            ws.write_bindings()
            log(f"  setup/{size}: {size} lanes and agents")
            ran = converge(results, ws, f"setup/{size}")
            results.add(f"setup/{size}/ctl-p{DEFAULT_PARALLEL}", ran.sample)
            ran = ws.measure(ws.controller())  # clears the lanes' memory of the creation
            results.add(f"noop/{size}/first-after-create", ran.sample)
            pids = ws.agent_pids()
            if len(pids) != size:
                results.warn(f"noop/{size}: {len(pids)} agents running, expected {size}")
            measurements = {
                f"noop/{size}/controller": ws.controller(),
                f"noop/{size}/import-cli": [sys.executable, "-c", "import controller.cli.main"],
                f"noop/{size}/list-panes": ["tmux", "-L", ws.socket, "list-panes", "-a"],
                f"noop/{size}/worktree-list": ["git", "worktree", "list", "--porcelain"],
            }
            for rep in range(reps):
                log(f"  noop/{size} [{rep + 1}/{reps}]")
                for key, argv in measurements.items():
                    ran = ws.measure(argv)
                    results.add(key, ran.sample)
                    if ran.sample.rc != 0:
                        results.warn(f"{key}: exit {ran.sample.rc}: {h.first_problem(ran.output)}")
                    elif key.endswith("/controller") and "No changes" not in ran.output:
                        results.warn(f"{key}: not a no-op: {h.first_problem(ran.output)}")
            log(f"  counting programs started by a no-op pass at {size} agents")
            results.spawns[f"noop/{size}"] = count_spawns(ws, ws.controller())
            plan = ws.measure(ws.controller("plan", "--detailed-exitcode"), quiet=False)
            if plan.sample.rc != 0 or ws.agent_pids() != pids:
                results.warn(f"noop/{size}: the world changed during the no-op passes")
            log(f"  teardown/{size}")
            teardown(results, ws, f"teardown/{size}/after-noop")


def warm_up() -> None:
    """Compile bytecode (controller and launcher) so that the first measured run is not special."""
    with fresh_workspace(1) as ws:
        ws.write_lanes()
        ws.write_bindings()
        for argv in ([sys.executable, "-m", "controller", "--help"], ws.controller()):
            ran = ws.measure(argv, ready=ws.agents_running(1) if "--once" in argv else None)
            if ran.sample.rc != 0:
                raise RuntimeError(f"{shlex.join(argv)} failed: {h.first_problem(ran.output)}")
        ws.remove_yaml()
        ws.measure(ws.controller("--once", "--allow-empty"))


# -- the report ----------------------------------------------------------------------------------


def _version(argv: Sequence[str]) -> str:
    try:
        done = subprocess.run(list(argv), capture_output=True, text=True, check=False, timeout=10)
    except (OSError, subprocess.SubprocessError):
        return "?"
    return (done.stdout or done.stderr).strip().splitlines()[0] if done.returncode == 0 else "?"


def machine() -> dict[str, Any]:
    """What this ran on."""
    memory = psutil.virtual_memory()
    return {
        "cpus": os.cpu_count(),
        "memory_gib": round(memory.total / 1024**3, 1),
        "python": platform.python_version(),
        "git": _version(("git", "--version")).removeprefix("git version "),
        "tmux": _version(("tmux", "-V")).removeprefix("tmux "),
        "strace": _version(("strace", "-V")) if shutil.which("strace") else None,
        "platform": platform.platform(),
        "load_average_at_start": list(os.getloadavg()),
    }


def derive(results: Results) -> dict[str, Any]:
    """Ratios and per-agent figures, all from medians of this run."""
    med = results.median
    loop, launcher = f"agents/{AGENTS}/shell-loop", f"agents/{AGENTS}/launcher-loop"
    ratios: dict[str, dict[str, float]] = {}
    for p in PARALLEL:
        key = f"agents/{AGENTS}/ctl-p{p}"
        ratios[f"p{p}"] = {
            "wall": med(key) / med(loop),
            "ready": med(key, "ready_s") / med(loop, "ready_s"),
            "wall_vs_launcher_loop": med(key) / med(launcher),
            "ready_vs_launcher_loop": med(key, "ready_s") / med(launcher, "ready_s"),
        }
    noop50 = med(f"noop/{NOOP_SIZES[0]}/controller")
    per_agent = {
        "controller_ms": 1000 * (med(f"agents/{AGENTS}/ctl-p{DEFAULT_PARALLEL}") - noop50) / AGENTS,
        "shell_loop_ms": 1000 * med(loop) / AGENTS,
        "launcher_loop_ms": 1000 * med(launcher) / AGENTS,
        "launcher_ready_cost_ms": 1000 * (med(launcher, "ready_s") - med(loop, "ready_s")) / AGENTS,
        "controller_cpu_ms": 1000
        * (
            med(f"agents/{AGENTS}/ctl-p{DEFAULT_PARALLEL}", "cpu_s")
            - med(f"noop/{NOOP_SIZES[0]}/controller", "cpu_s")
        )
        / AGENTS,
    }
    spawns = {size: results.spawns[f"noop/{size}"].programs for size in NOOP_SIZES}
    counts = list(spawns.values())
    constant = all(c == counts[0] for c in counts)
    small, big = NOOP_SIZES[0], NOOP_SIZES[-1]
    leaks = {
        key: max((sum(left.values()) for left in lefts), default=0)
        for key, lefts in results.leaks.items()
    }
    ratio = ratios[f"p{DEFAULT_PARALLEL}"]
    return {
        "agent_start_ratio_to_shell_loop": ratios,
        "agent_start_per_agent": per_agent,
        "noop_per_agent_slope_ms": 1000
        * (med(f"noop/{big}/controller") - med(f"noop/{small}/controller"))
        / (big - small),
        "noop_spawns_constant": constant,
        "leaks_max": leaks,
        "targets": {
            f"agent_start_wall_ratio_le_{TARGET_START_RATIO}": ratio["wall"] <= TARGET_START_RATIO,
            f"agent_start_ready_ratio_le_{TARGET_START_RATIO}": ratio["ready"]
            <= TARGET_START_RATIO,
            "noop_spawns_constant": constant,
            "no_leaks": not any(leaks.values()),
        },
    }


def report(results: Results, derived: Mapping[str, Any], reps: int, info: Mapping[str, Any]) -> str:
    """The human-readable tables."""
    med, spread = results.median, results.spread

    def cell(key: str, attr: str = "wall_s") -> str:
        if len(results.samples[key]) == 1:
            return f"{med(key, attr):.3f}"
        low, high = spread(key, attr)
        return f"{med(key, attr):.3f} ({low:.2f}-{high:.2f})"

    def cpu(key: str) -> str:
        return f"{med(key, 'cpu_s'):.2f}"

    def mib(key: str) -> str:
        return f"{med(key, 'maxrss_kib') / 1024:.1f}"

    every = [s for samples in results.samples.values() for s in samples]
    busy = sum(1 for s in every if s.busy_before > QUIET_SHARE)
    loop, launcher = f"agents/{AGENTS}/shell-loop", f"agents/{AGENTS}/launcher-loop"
    out = [
        f"Agent benchmark: median of {reps} repetition(s); (min-max); seconds",
        f"machine: {info['cpus']} CPUs, {info['memory_gib']} GiB, Python {info['python']}, "
        f"git {info['git']}, tmux {info['tmux']}, {info['platform']}",
        "load average (1, 5, 15 min) at start: "
        + ", ".join(f"{x:.2f}" for x in info["load_average_at_start"])
        + "; at end: "
        + ", ".join(f"{x:.2f}" for x in info["load_average_at_end"]),
        f"runs that started with more than {QUIET_SHARE:.0%} of the CPUs busy (after waiting up "
        f"to {QUIET_WAIT:g} s for quiet, {QUIET_WAIT_BUSY:g} s once the machine stayed busy): "
        f"{busy} of {len(every)}",
        "",
        f"(a) {AGENTS} agents from scratch. wall: until the program exits; ready: until all "
        f"{AGENTS} agent programs run",
    ]
    rows = [
        [
            f"shell loop: tmux new-session x{AGENTS} (bash -c)",
            cell(loop),
            cell(loop, "ready_s"),
            cpu(loop),
            "1.00x",
            "1.00x",
        ]
    ]
    rows.append(
        [
            "shell loop, agents through the controller's launcher",
            cell(launcher),
            cell(launcher, "ready_s"),
            cpu(launcher),
            f"{med(launcher) / med(loop):.2f}x",
            f"{med(launcher, 'ready_s') / med(loop, 'ready_s'):.2f}x",
        ]
    )
    for p in PARALLEL:
        key = f"agents/{AGENTS}/ctl-p{p}"
        r = derived["agent_start_ratio_to_shell_loop"][f"p{p}"]
        default = " (default)" if p == DEFAULT_PARALLEL else ""
        rows.append(
            [
                f"controller, agents only, maxParallelLanes {p}{default}",
                cell(key),
                cell(key, "ready_s"),
                cpu(key),
                f"{r['wall']:.2f}x",
                f"{r['ready']:.2f}x",
            ]
        )
    for p in PARALLEL:
        key = f"lanes/{AGENTS}/ctl-p{p}"
        rows.append(
            [f"controller, lanes only, maxParallelLanes {p}", cell(key), "-", cpu(key), "", ""]
        )
    for p in PARALLEL:
        key = f"full/{AGENTS}/ctl-p{p}"
        rows.append(
            [
                f"controller, lanes + agents, maxParallelLanes {p}",
                cell(key),
                cell(key, "ready_s"),
                cpu(key),
                "",
                "",
            ]
        )
    out += h.table(["", "wall s", "ready s", "cpu s", "wall vs loop", "ready vs loop"], rows)
    ratio = derived["agent_start_ratio_to_shell_loop"][f"p{DEFAULT_PARALLEL}"]
    per = derived["agent_start_per_agent"]
    out += [
        f"  target agent part <= {TARGET_START_RATIO}x the shell loop (default parallelism): "
        f"wall {h.verdict(ratio['wall'] <= TARGET_START_RATIO)} ({ratio['wall']:.2f}x), ready "
        f"{h.verdict(ratio['ready'] <= TARGET_START_RATIO)} ({ratio['ready']:.2f}x)",
        f"  against the launcher loop (same panes, same launcher: the controller's own overhead): "
        f"wall {ratio['wall_vs_launcher_loop']:.2f}x, ready {ratio['ready_vs_launcher_loop']:.2f}x",
        f"  per agent: controller {per['controller_ms']:.1f} ms ((agents-only pass - no-op pass "
        f"at {NOOP_SIZES[0]}) / {AGENTS}), shell loop {per['shell_loop_ms']:.1f} ms, launcher "
        f"loop {per['launcher_loop_ms']:.1f} ms; the launcher adds "
        f"{per['launcher_ready_cost_ms']:.1f} ms per agent to 'ready'",
        f"  controller CPU per agent started: {per['controller_cpu_ms']:.1f} ms ((CPU of the "
        f"agents-only pass - CPU of the no-op pass at {NOOP_SIZES[0]}) / {AGENTS}; the launchers "
        "and agents run under tmux, not counted)",
        "",
        "(b) no-op pass (already converged) and the programs it starts; floors measured in the "
        "same repository",
    ]
    rows = []
    names = sorted({n for s in results.spawns.values() for n in s.programs})
    for size in NOOP_SIZES:
        spawns = results.spawns[f"noop/{size}"]
        rows.append(
            [
                f"{size} agents",
                cell(f"noop/{size}/controller"),
                cpu(f"noop/{size}/controller"),
                f"{med(f'noop/{size}/controller') - med(f'noop/{size}/import-cli'):.3f}",
                f"{med(f'noop/{size}/import-cli'):.3f}",
                f"{med(f'noop/{size}/list-panes'):.3f}",
                f"{med(f'noop/{size}/worktree-list'):.3f}",
                *(str(spawns.programs.get(n, 0)) for n in names),
                str(spawns.total),
                str(spawns.failed_execs),
            ]
        )
    header = [
        "",
        "no-op s",
        "cpu s",
        "above import s",
        "import cli s",
        "list-panes s",
        "worktree list s",
        *names,
        "execs",
        "failed execs",
    ]
    out += h.table(header, rows)
    method = results.spawns[f"noop/{NOOP_SIZES[0]}"].method
    out += [
        f"  programs counted with {method}; 'python' is the controller itself; failed execs "
        "are the PATH search trying folders without the program",
        f"  constant number of programs per pass (same at {' and '.join(map(str, NOOP_SIZES))}):"
        f" {h.verdict(derived['noop_spawns_constant'])}; marginal wall per extra agent "
        f"{derived['noop_per_agent_slope_ms']:+.2f} ms",
        "  set-up, one pass creating every lane and agent: "
        + ", ".join(
            f"{s}: {med(f'setup/{s}/ctl-p{DEFAULT_PARALLEL}'):.2f} s "
            f"({1000 * med(f'setup/{s}/ctl-p{DEFAULT_PARALLEL}') / s:.0f} ms per lane + agent)"
            for s in NOOP_SIZES
        ),
        "  first pass after creating the agents: "
        + ", ".join(f"{s}: {med(f'noop/{s}/first-after-create'):.3f} s" for s in NOOP_SIZES),
        "",
        "(c) teardown: every YAML file removed, --once --allow-empty; what is left afterwards",
    ]
    rows = []
    teardowns = {
        f"{AGENTS} agents + lanes, maxParallelLanes {p}": f"teardown/{AGENTS}/ctl-p{p}"
        for p in PARALLEL
    }
    for size in NOOP_SIZES:
        teardowns[f"{size} agents + lanes, after (b), maxParallelLanes {DEFAULT_PARALLEL}"] = (
            f"teardown/{size}/after-noop"
        )
    for label, key in teardowns.items():
        lefts = results.leaks.get(key, [])
        worst = {k: max(left[k] for left in lefts) for k in lefts[0]} if lefts else {}
        rows.append(
            [
                label,
                cell(key),
                cpu(key),
                *(
                    str(worst.get(k, "?"))
                    for k in ("panes", "agent_processes", "worktrees", "worktree_dirs")
                ),
            ]
        )
    out += h.table(["", "wall s", "cpu s", "panes", "agent procs", "worktrees", "dirs"], rows)
    out += [
        f"  zero leaks: {h.verdict(derived['targets']['no_leaks'])} (largest count over every "
        "run of each row)",
        "",
        "(d) peak RSS of the controller process (ru_maxrss, MiB)",
    ]
    rows = [[f"no-op pass, {s} agents", mib(f"noop/{s}/controller")] for s in reversed(NOOP_SIZES)]
    rows.append(
        [
            f"start {AGENTS} agents, default parallelism",
            mib(f"agents/{AGENTS}/ctl-p{DEFAULT_PARALLEL}"),
        ]
    )
    cli = f"noop/{NOOP_SIZES[-1]}/import-cli"
    rows.append(["python -c 'import controller.cli.main'", mib(cli)])
    out += h.table(["", "MiB"], rows)
    calls = [k for k in (f"start/{AGENTS}", f"teardown/{AGENTS}") if k in results.spawns]
    if calls:
        out += ["", f"calls of the pass that starts / tears down {AGENTS} agents (PATH wrappers)"]
        rows = []
        for key in calls:
            spawns = results.spawns[key]
            tmux_verbs = Counter(_tmux_verb(c) for c in spawns.commands if c.startswith("tmux "))
            git_verbs = Counter(_git_verb(c) for c in spawns.commands if c.startswith("git "))
            rows.append(
                [
                    key,
                    str(spawns.programs.get("tmux", 0)),
                    str(spawns.programs.get("git", 0)),
                    f"{spawns.programs.get('tmux', 0) / AGENTS:.2f}",
                    ", ".join(f"{v} {n}" for v, n in tmux_verbs.most_common()),
                    ", ".join(f"{v} {n}" for v, n in git_verbs.most_common()),
                ]
            )
        out += h.table(["", "tmux", "git", "tmux/agent", "tmux commands", "git commands"], rows)
    if results.warnings:
        out += ["", "warnings:", *(f"  - {w}" for w in results.warnings)]
    return "\n".join(out)


_TMUX_VERBS = (
    "list-panes",
    "list-sessions",
    "new-session",
    "new-window",
    "kill-window",
    "kill-server",
    "kill-session",
)


def _tmux_verb(command: str) -> str:
    return next((w for w in command.split() if w in _TMUX_VERBS), "other")


def _git_verb(command: str) -> str:
    words = command.split()[1:]
    while words and (words[0].startswith("-") or words[0].startswith("/")):
        words = words[1:]  # -C <repo>
    if words[:1] == ["worktree"]:
        return " ".join(words[:2])
    return words[0] if words else "?"


def to_json(
    results: Results, derived: Mapping[str, Any], reps: int, info: Mapping[str, Any], seconds: float
) -> dict[str, Any]:
    """Every raw number."""
    return {
        "machine": info,
        "repetitions": reps,
        "benchmark_seconds": seconds,
        "samples": {k: [asdict(s) for s in v] for k, v in results.samples.items()},
        "medians": {
            k: {
                a: results.median(k, a)
                for a in ("wall_s", "cpu_s", "maxrss_kib", "ready_s")
                if any(getattr(s, a) is not None for s in results.samples[k])
            }
            for k in results.samples
        },
        "derived": derived,
        "subprocesses": {k: v.to_json() for k, v in results.spawns.items()},
        "leaks": results.leaks,
        "warnings": results.warnings,
    }


def main(argv: Sequence[str] | None = None) -> int:
    """Run every measurement, print the tables, optionally write JSON."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    parser.add_argument("--quick", action="store_true", help="one repetition instead of three")
    parser.add_argument("--reps", type=int, default=None, help="repetitions (default 3; 1 quick)")
    parser.add_argument("--json", type=Path, default=None, metavar="FILE", help="write raw numbers")
    args = parser.parse_args(argv)
    reps = max(1, args.reps or (1 if args.quick else 3))
    for tool in ("git", "tmux"):
        if shutil.which(tool) is None:
            parser.error(f"{tool} is required")
    started = time.perf_counter()
    info = machine()
    log(f"agent benchmark: {reps} repetition(s) on {info['cpus']} CPUs; warming up")
    results = Results()
    with tempfile.TemporaryDirectory(prefix="agents-bench-pycache-") as pycache:
        BYTECODE["PYTHONPYCACHEPREFIX"] = pycache
        warm_up()
        for rep in range(reps):
            log(f"[start and teardown {rep + 1}/{reps}]")
            order = PARALLEL[rep % len(PARALLEL) :] + PARALLEL[: rep % len(PARALLEL)]
            for parallel in order:
                bench_agents_only(results, parallel)
                bench_full(results, parallel)
        bench_calls(results)
        log("[no-op passes]")
        bench_noop(results, reps)
    info["load_average_at_end"] = list(os.getloadavg())
    derived = derive(results)
    seconds = time.perf_counter() - started
    print(report(results, derived, reps, info))
    print(f"\n(benchmark took {seconds:.0f} s)")
    if args.json is not None:
        payload = to_json(results, derived, reps, info, seconds)
        args.json.write_text(json.dumps(payload, indent=2, sort_keys=True) + "\n")
        log(f"wrote {args.json}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
