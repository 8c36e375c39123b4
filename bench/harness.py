"""The rig every benchmark shares (bench/lanes.py, agents.py, wakes.py, workflows.py).

It owns the environment children run in (private git config, private bytecode cache), fresh
repositories with a private tmux server, the one quietness policy, running and measuring a
program, counting the programs it starts, the results, and the report: its header, tables,
verdicts and JSON. Scripts run as ``python bench/<name>.py`` and import it as ``harness``.
"""

from __future__ import annotations

import argparse
import contextlib
import hashlib
import json
import math
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
from typing import Any, TypeVar

import psutil

ROOT = Path(__file__).resolve().parents[1]
STUB = str(ROOT / "tests" / "stubs" / "agent.py")
RUN_TIMEOUT = 600.0  # a hung run must not hang the benchmark
HELPER_TIMEOUT = 60.0
READY_TIMEOUT = 60.0
READY_POLL = 0.02
STARTED = time.perf_counter()


def log(message: str) -> None:
    """Progress goes to stderr (with the seconds since start) so that stdout holds the report."""
    print(f"[{time.perf_counter() - STARTED:6.1f}s] {message}", file=sys.stderr, flush=True)


# -- the environment children run in ------------------------------------------------------------

IDENTITY = {
    "GIT_AUTHOR_NAME": "Lane Bench",
    "GIT_AUTHOR_EMAIL": "bench@example.invalid",
    "GIT_COMMITTER_NAME": "Lane Bench",
    "GIT_COMMITTER_EMAIL": "bench@example.invalid",
}
GITCONFIG = "[init]\n\tdefaultBranch = main\n[advice]\n\tdetachedHead = false\n"
REDIRECTS = ("GIT_", "TMUX", "CONTROLLER_", "LANE_")  # could point git, tmux or the store away
BYTECODE: dict[str, str] = {}
"""Where children keep bytecode (``PYTHONPYCACHEPREFIX``), set by ``private_bytecode``."""


@contextlib.contextmanager
def private_bytecode(prefix: str) -> Iterator[None]:
    """Children compile Python once into a private cache and reuse it, as an installed
    controller does, even where ``PYTHONDONTWRITEBYTECODE`` is set (the source stays untouched).
    """
    with tempfile.TemporaryDirectory(prefix=f"{prefix}pycache-") as folder:
        BYTECODE["PYTHONPYCACHEPREFIX"] = folder
        try:
            yield
        finally:
            BYTECODE.clear()


def python_env() -> dict[str, str]:
    """Our environment with the private bytecode cache."""
    env = {k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE"}
    return {**env, **BYTECODE}


def base_env(top: Path) -> dict[str, str]:
    """``python_env()`` without anything that could redirect git, tmux or the controller's
    store, with a private global git config in ``top``, no system config, a fixed identity.
    """
    config = top / "gitconfig"
    config.write_text(GITCONFIG)
    env = {k: v for k, v in python_env().items() if not k.startswith(REDIRECTS)}
    fixed = {"GIT_CONFIG_GLOBAL": str(config), "GIT_CONFIG_NOSYSTEM": "1", "LC_ALL": "C"}
    return {**env, **IDENTITY, **fixed}


def warm_bytecode(*modules: str) -> None:
    """Compile the controller into the private cache so that no measured run compiles it."""
    imports = ", ".join(("controller.cli.main", *modules))
    argv = (sys.executable, "-c", f"import {imports}")
    subprocess.run(argv, cwd=ROOT, env=python_env(), check=True, timeout=RUN_TIMEOUT)


# -- quiet CPUs -----------------------------------------------------------------------------------

# The machine may be shared: someone else's test suite doubles every wall time while it runs.
# Each run waits (a little) for the CPUs to be mostly idle, and measures how much CPU other
# processes used while it ran; a disturbed run is repeated where that is possible, within a
# budget. Samples kept anyway are counted in the report.
PROC_STAT = Path("/proc/stat")
QUIET_SHARE = 0.25  # other processes may use at most this share of all CPUs
QUIET_WAIT = 5.0  # seconds to wait for quiet before one run, at most
QUIET_BUDGET = 45.0  # seconds to wait for quiet in the whole benchmark, at most
QUIET_WINDOW = 0.2
MAX_ATTEMPTS = 3  # runs of one measurement, at most
RETRY_BUDGET = 30  # repeated runs in the whole benchmark, at most
CLOCK_TICKS = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100
CPUS = os.cpu_count() or 1

CpuTimes = tuple[int, int] | None


def cpu_times() -> CpuTimes:
    """Busy and total jiffies of all CPUs, or None where /proc/stat does not exist."""
    try:
        fields = [int(x) for x in PROC_STAT.read_text().split("\n", 1)[0].split()[1:]]
    except (OSError, ValueError):
        return None
    total = sum(fields[:8])
    return total - fields[3] - fields[4], total


def busy_seconds(before: CpuTimes, after: CpuTimes) -> float:
    """CPU seconds all processes used between two readings (0 if unknown)."""
    if before is None or after is None:
        return 0.0
    return (after[0] - before[0]) / CLOCK_TICKS


def busy_share(before: CpuTimes, after: CpuTimes) -> float:
    """Share of all CPUs busy between two readings (nan if unknown)."""
    if before is None or after is None or after[1] <= before[1]:
        return float("nan")
    return (after[0] - before[0]) / (after[1] - before[1])


@dataclass(slots=True)
class Neighbours:
    """Other processes on the machine: waits for them to calm down, and counts retries."""

    waited_s: float = 0.0
    retries: int = 0

    def quiet(self) -> None:
        """Wait until others use at most QUIET_SHARE of the CPUs (capped per run and in all)."""
        limit = min(QUIET_WAIT, QUIET_BUDGET - self.waited_s)
        started = time.perf_counter()
        while True:
            before = cpu_times()
            time.sleep(QUIET_WINDOW)
            share = busy_seconds(before, cpu_times()) / (QUIET_WINDOW * CPUS)
            if share <= QUIET_SHARE or time.perf_counter() - started >= limit:
                break
        self.waited_s += time.perf_counter() - started

    def retry(self, sample: Sample) -> bool:
        """Whether to run a measurement again because others disturbed this sample."""
        if sample.others <= QUIET_SHARE or sample.attempts >= MAX_ATTEMPTS:
            return False
        if self.retries >= RETRY_BUDGET:
            return False
        self.retries += 1
        log(f"  (disturbed: others used {sample.others:.0%} of the CPUs; measuring again)")
        return True


neighbours = Neighbours()


# -- running and measuring ----------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Sample:
    """One measured run of one program."""

    wall_s: float
    rc: int
    maxrss_kib: int
    cpu_s: float
    """User plus system CPU of the process and of every descendant it reaped."""
    others: float
    """Share of all CPUs that other processes used while it ran (0 to 1; 0 if unknown)."""
    attempts: int = 1
    """Runs it took to get this sample (more when other processes disturbed earlier ones)."""
    ready_s: float | None = None
    """From spawn until ``ready()`` held (None: not asked; nan: never within READY_TIMEOUT)."""


@dataclass(frozen=True, slots=True)
class Ran:
    """A sample and what the program printed (stdout and stderr together)."""

    sample: Sample
    output: str


@dataclass(frozen=True, slots=True)
class _Reaped:
    start: float
    wall_s: float
    rc: int
    usage: Any  # resource.struct_rusage
    busy_s: float


def _run_and_reap(argv: Sequence[str], *, cwd: Path, env: Mapping[str, str], out: Any) -> _Reaped:
    """Wall time from just before spawn to reaping, and the rusage of the process tree."""
    before = cpu_times()
    start = time.perf_counter()
    child = subprocess.Popen(
        list(argv), cwd=cwd, env=dict(env), stdin=subprocess.DEVNULL, stdout=out, stderr=out
    )
    watchdog = threading.Timer(RUN_TIMEOUT, child.kill)
    watchdog.start()
    _, status, usage = os.wait4(child.pid, 0)
    wall = time.perf_counter() - start
    busy = busy_seconds(before, cpu_times())
    watchdog.cancel()
    child.returncode = os.waitstatus_to_exitcode(status)  # reaped here, not by Popen
    return _Reaped(start, wall, child.returncode, usage, busy)


def _ready_after(start: float, ready: Callable[[], bool]) -> float:
    deadline = time.perf_counter() + READY_TIMEOUT
    while not ready():
        if time.perf_counter() > deadline:
            return float("nan")
        time.sleep(READY_POLL)
    return time.perf_counter() - start


def measure(
    argv: Sequence[str],
    *,
    cwd: Path,
    env: Mapping[str, str],
    scratch: Path,
    ready: Callable[[], bool] | None = None,
    quiet: bool = True,
    attempt: int = 1,
) -> Ran:
    """Run ``argv`` to completion and measure it.

    With ``ready``, the process table is then polled until ``ready()`` holds, and the time from
    spawn to that moment is kept too (polling starts only after the program exits, so that it
    does not compete with it for the CPUs). ``quiet=False`` skips waiting for idle CPUs (runs
    whose time is not reported).
    """
    if quiet:
        neighbours.quiet()
    with (scratch / "output.txt").open("w+b") as out:
        done = _run_and_reap(argv, cwd=cwd, env=env, out=out)
        ready_s = None if ready is None else _ready_after(done.start, ready)
        out.seek(0)
        text = out.read().decode("utf-8", "replace")
    cpu = done.usage.ru_utime + done.usage.ru_stime
    others = max(0.0, done.busy_s - cpu) / (done.wall_s * CPUS) if done.wall_s > 0 else 0.0
    sample = Sample(
        wall_s=done.wall_s,
        rc=done.rc,
        maxrss_kib=int(done.usage.ru_maxrss),
        cpu_s=cpu,
        others=min(1.0, others),
        attempts=attempt,
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
        timeout=HELPER_TIMEOUT,
    )


def run_checked(argv: Sequence[str], *, cwd: Path, env: Mapping[str, str]) -> str:
    """Run a set-up command that must succeed; return its stdout."""
    done = run_quiet(argv, cwd=cwd, env=env)
    if done.returncode != 0:
        raise RuntimeError(f"{shlex.join(argv)} failed ({done.returncode}): {done.stderr.strip()}")
    return done.stdout


def wait_for(predicate: Callable[[], object], timeout: float, why: Callable[[], str]) -> None:
    """Poll ``predicate`` until it holds; raise with ``why()`` on timeout."""
    deadline = time.perf_counter() + timeout
    while time.perf_counter() < deadline:
        if predicate():
            return
        time.sleep(0.05)
    raise RuntimeError(f"not ready within {timeout:.0f} s; {why()}")


def first_problem(output: str) -> str:
    """The line of a program's output that most likely says what went wrong."""
    lines = [line.strip() for line in output.splitlines() if line.strip()]
    bad = [line for line in lines if "FAIL" in line or "error" in line.lower()]
    return (bad or lines or ["(no output)"])[0][:200]


# -- repositories ---------------------------------------------------------------------------------


def lane_names(count: int) -> tuple[str, ...]:
    """``l001``, ``l002``, ..."""
    return tuple(f"l{i:03d}" for i in range(1, count + 1))


@dataclass(slots=True)
class Repo:
    """A fresh repository in ``top``, the environment to use in it, its tmux socket name."""

    top: Path
    env: dict[str, str]
    lanes: tuple[str, ...]
    socket: str

    @property
    def path(self) -> Path:
        """The repository's working tree."""
        return self.top / "repo"

    @property
    def scratch(self) -> Path:
        """A folder for the benchmark's own files (outputs, traces, wrappers)."""
        return self.top / "scratch"

    @property
    def desired(self) -> Path:
        """The desired-state folder."""
        return self.path / "desired"

    @property
    def worktree_root(self) -> Path:
        """Where lanes are checked out (the controller's default worktreeRoot)."""
        return self.path / ".lanes" / "worktrees"

    def sockets(self) -> tuple[str, ...]:
        """The tmux servers stopped by ``cleanup``."""
        return (self.socket,)

    def init(self) -> None:
        """``git init``, one commit, an empty ``desired/``."""
        for folder in (self.path, self.scratch):
            folder.mkdir()
        (self.path / "README.md").write_text("A repository for the lane controller benchmark.\n")
        for argv in (("init", "--quiet"), ("add", "README.md"), ("commit", "-qm", "initial")):
            run_checked(("git", *argv), cwd=self.path, env=self.env)
        self.desired.mkdir()

    def write(self, name: str, text: str) -> None:
        """Write one file of ``desired/``."""
        (self.desired / name).write_text(text)

    def controller(self, *extra: str) -> list[str]:
        """The controller's command line for this repository (``--once`` unless told)."""
        args = list(extra) or ["--once"]
        return [sys.executable, "-m", "controller", *args, "--desired", str(self.desired)]

    def worktree_count(self) -> int:
        """Linked worktrees git knows of (the main checkout not counted)."""
        argv = ("git", "worktree", "list", "--porcelain")
        text = run_checked(argv, cwd=self.path, env=self.env)
        return sum(1 for line in text.splitlines() if line.startswith("worktree ")) - 1

    def measure(
        self,
        argv: Sequence[str],
        env: Mapping[str, str] | None = None,
        *,
        ready: Callable[[], bool] | None = None,
        quiet: bool = True,
        attempt: int = 1,
    ) -> Ran:
        """Measure ``argv`` run in this repository."""
        return measure(
            argv,
            cwd=self.path,
            env=env or self.env,
            scratch=self.scratch,
            ready=ready,
            quiet=quiet,
            attempt=attempt,
        )

    def measure_repeatable(self, argv: Sequence[str], env: Mapping[str, str] | None = None) -> Ran:
        """Measure a run that changes nothing, again if other processes disturbed it."""
        ran = self.measure(argv, env)
        while neighbours.retry(ran.sample):
            ran = self.measure(argv, env, attempt=ran.sample.attempts + 1)
        return ran

    def leftovers(self) -> list[psutil.Process]:
        """Processes working in the repository, or whose argv names its folder or socket."""
        found = []
        for proc in psutil.process_iter(["cmdline", "cwd"]):
            argv: list[str] = proc.info["cmdline"] or []
            mine = (proc.info["cwd"] or "").startswith(str(self.top)) or any(
                str(self.top) in part or part in self.sockets() for part in argv
            )
            if mine and proc.pid != os.getpid():
                found.append(proc)
        return found

    def cleanup(self) -> list[str]:
        """Stop the tmux servers and every process left behind; what had to be killed."""
        for socket in self.sockets():
            with contextlib.suppress(subprocess.SubprocessError, OSError):
                run_quiet(("tmux", "-L", socket, "kill-server"), cwd=self.top, env=self.env)
        # kill-server returns before the server and the agents it hangs up on have exited.
        _, alive = psutil.wait_procs(self.leftovers(), timeout=2)
        return [note for proc in alive if (note := kill(proc))]


def kill(proc: psutil.Process) -> str:
    """Kill one process; say which (empty if it was gone already)."""
    with contextlib.suppress(psutil.Error):
        note = f"killed leftover {proc.pid}: {' '.join(proc.cmdline())[:120]}"
        proc.kill()
        return note
    return ""


R = TypeVar("R", bound=Repo)


def _clean(repo: Repo) -> None:
    for note in repo.cleanup():
        log(f"  {note}")


@contextlib.contextmanager
def fresh_repo(make: type[R], lanes: int, *, prefix: str, tmux: bool = False) -> Iterator[R]:
    """A new repository (one commit, an empty ``desired/``) declaring nothing yet.

    With ``tmux``, a short ``TMUX_TMPDIR`` (socket paths are limited to about 107 bytes), and at
    the end its tmux servers and the processes left in it are stopped, also on error.
    """
    with contextlib.ExitStack() as stack:
        top = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix=prefix))).resolve()
        env = base_env(top)
        if tmux:
            short = tempfile.mkdtemp(prefix="lb-", dir="/tmp")
            stack.callback(shutil.rmtree, short, ignore_errors=True)
            env["TMUX_TMPDIR"] = short
        socket = f"bench-{secrets.token_hex(4)}"
        repo = make(top=top, env=env, lanes=lane_names(lanes), socket=socket)
        if tmux:
            stack.callback(_clean, repo)
        repo.init()
        yield repo


# -- counting the programs a run starts ----------------------------------------------------------


@dataclass(slots=True)
class Spawns:
    """Programs started during one run."""

    method: str
    programs: Counter[str] = field(default_factory=Counter)
    """Every program started, by name (with strace: the measured program itself too)."""
    direct: Counter[str] = field(default_factory=Counter)
    """Programs the measured process itself started."""
    indirect: Counter[str] | None = None
    """Programs those started in turn (git's own helpers), when the method can tell."""
    failed_execs: int = 0
    """``execve`` calls that failed (the PATH search trying each folder in turn)."""
    commands: list[str] = field(default_factory=list)
    """The direct commands (first words), for reading."""

    @property
    def total(self) -> int:
        """Every program started."""
        return sum(self.programs.values())

    @property
    def git(self) -> int:
        """Git commands the measured process ran."""
        return self.direct["git"]

    def to_json(self) -> dict[str, Any]:
        """Raw numbers."""
        return {
            "method": self.method,
            "programs": dict(self.programs),
            "direct": dict(self.direct),
            "indirect": None if self.indirect is None else dict(self.indirect),
            "failed_execs": self.failed_execs,
            "commands": self.commands,
        }


STRACE_CALLS = "trace=execve,clone,clone3,fork,vfork"
_STRACE_LINE = re.compile(r"^(\d+)\s+(.*)$")
_QUOTED = re.compile(r'"((?:[^"\\]|\\.)*)"')
_SPAWNED = re.compile(r"^(?:<\.\.\. )?(?:clone3?|vfork|fork)\b.*=\s+(\d+)$")
_SUCCESS = re.compile(r"\)\s+=\s+0$")
_EXEC_WORDS = 5


def program_name(path: str) -> str:
    """A program's group: ``python3.11`` and friends are ``python``."""
    name = Path(path).name
    return "python" if name.startswith("python") else name


def _exec_call(body: str) -> tuple[str, list[str]]:
    """Program path and the first argv words of an ``execve(`` line."""
    path_match = _QUOTED.search(body)
    path = path_match.group(1) if path_match else "?"
    argv_part = body.partition("[")[2].partition("], ")[0]
    return path, _QUOTED.findall(argv_part)[:_EXEC_WORDS]


@dataclass(slots=True)
class _Trace:
    """What ``strace -f`` saw: who started whom, and the programs executed."""

    parent: dict[int, int] = field(default_factory=dict)
    pending: dict[int, tuple[str, list[str]]] = field(default_factory=dict)
    execs: list[tuple[int, str, list[str]]] = field(default_factory=list)
    failed: int = 0

    def feed(self, pid: int, body: str) -> None:
        if body.startswith("execve("):
            call = _exec_call(body)
            if body.endswith("<unfinished ...>"):
                self.pending[pid] = call
            else:
                self._done(pid, call, body)
        elif body.startswith("<... execve resumed>"):
            self._done(pid, self.pending.pop(pid, ("?", [])), body)
        elif spawned := _SPAWNED.match(body):
            self.parent[int(spawned.group(1))] = pid

    def _done(self, pid: int, call: tuple[str, list[str]], body: str) -> None:
        if _SUCCESS.search(body):
            self.execs.append((pid, *call))
        else:
            self.failed += 1

    def spawner(self, pid: int, programs: set[int]) -> int | None:
        """The nearest ancestor (through threads) among ``programs`` (pids that executed one)."""
        found = self.parent.get(pid)
        while found is not None and found not in programs:
            found = self.parent.get(found)
        return found


def parse_strace(text: str) -> Spawns:
    """Successful execs in ``strace -f -e trace=execve,clone,clone3,fork,vfork`` output.

    A program counts as started by the measured process when the nearest ancestor that
    executed a program is the measured process (the first exec).
    """
    trace = _Trace()
    for line in text.splitlines():
        if match := _STRACE_LINE.match(line):
            trace.feed(int(match.group(1)), match.group(2))
    spawns = Spawns("strace", failed_execs=trace.failed)
    indirect: Counter[str] = Counter()
    spawns.indirect = indirect
    if not trace.execs:
        return spawns
    root, programs = trace.execs[0][0], {pid for pid, _, _ in trace.execs}
    spawns.programs[program_name(trace.execs[0][1])] += 1
    for pid, path, argv in trace.execs[1:]:
        name = program_name(path)
        spawns.programs[name] += 1
        if trace.spawner(pid, programs) == root:
            spawns.direct[name] += 1
            spawns.commands.append(shlex.join([name, *argv[1:]]))
        else:
            indirect[name] += 1
    return spawns


def count_with_strace(repo: Repo, argv: Sequence[str]) -> Spawns | None:
    """Run ``argv`` under strace (unmeasured); None when strace is missing or cannot trace."""
    strace = shutil.which("strace", path=repo.env.get("PATH"))
    if strace is None:
        return None
    trace = repo.scratch / "strace.txt"
    options = ["-f", "-qq", "-e", STRACE_CALLS, "-e", "signal=none", "-o", str(trace)]
    ran = repo.measure([strace, *options, "--", *argv], quiet=False)
    if trace.exists():
        spawns = parse_strace(trace.read_text(errors="replace"))
        if spawns.direct:
            return spawns
    log(f"  strace did not work here (rc {ran.sample.rc}); counting with wrappers on PATH")
    return None


def count_with_wrappers(
    repo: Repo, argv: Sequence[str], tools: Sequence[str]
) -> tuple[Spawns, Ran]:
    """Run ``argv`` with a wrapper first on PATH for each tool that logs each call.

    The wrappers ``exec`` the real program (found beforehand), so no extra process stays
    around; the programs' own helpers are not seen this way.
    """
    wrappers, calls = repo.scratch / "wrappers", repo.scratch / "calls.txt"
    wrappers.mkdir(exist_ok=True)
    calls.write_text("")
    for tool in tools:
        real = shutil.which(tool, path=repo.env.get("PATH"))
        if real is None:
            raise RuntimeError(f"{tool} not found on PATH")
        wrapper = wrappers / tool
        wrapper.write_text(
            f"#!/bin/sh\nprintf '%s\\n' \"{tool} $*\" >> {shlex.quote(str(calls))}\n"
            f'exec {shlex.quote(real)} "$@"\n'
        )
        wrapper.chmod(0o755)
    env = {**repo.env, "PATH": f"{wrappers}{os.pathsep}{repo.env.get('PATH', '')}"}
    ran = repo.measure(argv, env=env, quiet=False)
    lines = calls.read_text().splitlines()
    programs = Counter(line.split(" ", 1)[0] for line in lines)
    method = "/".join(tools) + " wrappers on PATH"
    return Spawns(method, programs=programs, direct=Counter(programs), commands=lines), ran


def count_spawns(repo: Repo, argv: Sequence[str], *, tools: Sequence[str] = ("git",)) -> Spawns:
    """The programs ``argv`` starts: strace if it works here, else wrappers for ``tools``."""
    return count_with_strace(repo, argv) or count_with_wrappers(repo, argv, tools)[0]


# -- results --------------------------------------------------------------------------------------

ATTRIBUTES = ("wall_s", "cpu_s", "maxrss_kib", "ready_s")


@dataclass(slots=True)
class Results:
    """Every sample, by measurement key, and whatever went wrong on the way."""

    samples: dict[str, list[Sample]] = field(default_factory=dict)
    spawns: dict[str, Spawns] = field(default_factory=dict)
    warnings: list[str] = field(default_factory=list)

    def add(self, key: str, sample: Sample) -> None:
        """Record one sample."""
        self.samples.setdefault(key, []).append(sample)

    def median(self, key: str, attr: str = "wall_s") -> float:
        """Median of one attribute over the repetitions (samples without it left out)."""
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

    def every(self) -> list[Sample]:
        """Every sample of every measurement."""
        return [sample for samples in self.samples.values() for sample in samples]

    def to_json(self) -> dict[str, Any]:
        """Every raw number, the medians, and how quiet the machine was."""
        return {
            "samples": {k: [asdict(s) for s in v] for k, v in self.samples.items()},
            "medians": {
                k: {
                    a: self.median(k, a)
                    for a in ATTRIBUTES
                    if any(getattr(s, a) is not None for s in v)
                }
                for k, v in self.samples.items()
            },
            "subprocesses": {k: v.to_json() for k, v in self.spawns.items()},
            "waited_for_quiet_seconds": neighbours.waited_s,
            "repeated_runs": neighbours.retries,
            "warnings": self.warnings,
        }


# -- the report -----------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Cells:
    """How the tables show the medians of one run's results."""

    results: Results

    def spread(self, key: str, attr: str = "wall_s") -> str:
        """The median, and the lowest and highest value when there are several."""
        median = self.results.median(key, attr)
        if len(self.results.samples[key]) == 1:
            return f"{median:.3f}"
        low, high = self.results.spread(key, attr)
        return f"{median:.3f} ({low:.2f}-{high:.2f})"

    def seconds(self, key: str, attr: str = "wall_s") -> str:
        """The median, in seconds."""
        return f"{self.results.median(key, attr):.3f}"

    def cpu(self, key: str) -> str:
        """The median CPU seconds."""
        return f"{self.results.median(key, 'cpu_s'):.2f}"

    def mib(self, key: str) -> str:
        """The median peak RSS, MiB."""
        return f"{self.results.median(key, 'maxrss_kib') / 1024:.1f}"


def warning_lines(results: Results) -> list[str]:
    """The warnings of the run, last in every report."""
    return ["", "warnings:", *(f"  - {w}" for w in results.warnings)] if results.warnings else []


def row(cells: Sequence[str], widths: Sequence[int]) -> str:
    """One line of a table: the first column left-aligned, the others right-aligned."""
    padded = [
        cell.ljust(width) if i == 0 else cell.rjust(width)
        for i, (cell, width) in enumerate(zip(cells, widths, strict=True))
    ]
    return "  ".join(padded).rstrip()


def table(header: Sequence[str], rows: Sequence[Sequence[str]]) -> list[str]:
    """A plain-text table: header, rule, rows."""
    widths = [max(len(r[i]) for r in [header, *rows]) for i in range(len(header))]
    rule = "  ".join("-" * w for w in widths)
    return [row(header, widths), rule, *(row(r, widths) for r in rows)]


def verdict(ok: bool) -> str:
    """How a target reads in the report."""
    return "met" if ok else "MISSED"


def version(tool: str, flag: str = "--version") -> str:
    """The version a program reports (``2.39.5``), or '-'."""
    try:
        done = subprocess.run((tool, flag), capture_output=True, text=True, check=False, timeout=10)
    except (OSError, subprocess.SubprocessError):
        return "-"
    found = re.search(r"\d[\w.]*", (done.stdout or done.stderr).split("\n", 1)[0])
    return found.group(0) if done.returncode == 0 and found else "-"


def code_state() -> dict[str, Any]:
    """Which controller code ran: git HEAD, uncommitted changes, a digest of controller/."""
    env = {**python_env(), "GIT_OPTIONAL_LOCKS": "0"}  # never take the index lock of others

    def git(*args: str) -> str:
        argv = ("git", *args)
        done = subprocess.run(argv, cwd=ROOT, env=env, capture_output=True, text=True, check=False)
        return done.stdout if done.returncode == 0 else ""

    dirty = git("status", "--porcelain", "--", "controller").splitlines()
    digest = hashlib.sha256()
    for path in sorted((ROOT / "controller").rglob("*.py")):
        digest.update(path.read_bytes())
    return {
        "head": git("rev-parse", "--short", "HEAD").strip() or "-",
        "uncommitted": [line.strip() for line in dirty if line.strip()],
        "controller_sha256": digest.hexdigest()[:16],
    }


def code_line(info: Mapping[str, Any]) -> str:
    """The code measured, and a warning when it changed during the run."""
    start, end = info["code_at_start"], info.get("code_at_end", info["code_at_start"])
    dirty = f", uncommitted: {' '.join(start['uncommitted'])}" if start["uncommitted"] else ""
    line = f"code: {start['head']} (controller/ sha256 {start['controller_sha256']}{dirty})"
    if end["controller_sha256"] != start["controller_sha256"]:
        line += (
            f"; WARNING: controller/ changed during the run (now {end['head']}, "
            f"{end['controller_sha256']}): the numbers may mix two versions"
        )
    elif end["head"] != start["head"]:
        line += f"; HEAD moved to {end['head']} during the run, controller/ unchanged"
    return line


def machine(*tools: str) -> dict[str, Any]:
    """What the numbers were measured on (the version of each of ``tools``)."""
    return {
        "cpus": os.cpu_count(),
        "memory_gib": round(psutil.virtual_memory().total / 2**30, 1),
        "python": platform.python_version(),
        "tools": {
            tool: version(tool, "-V" if tool in ("tmux", "strace") else "--version")
            for tool in tools
            if shutil.which(tool)
        },
        "platform": platform.platform(),
        "load_average_at_start": [round(x, 2) for x in os.getloadavg()],
        "code_at_start": code_state(),
    }


def at_end(info: dict[str, Any]) -> None:
    """Add the load average and the code at the end of the run to ``info``."""
    info["load_average_at_end"] = [round(x, 2) for x in os.getloadavg()]
    info["code_at_end"] = code_state()


def header(title: str, info: Mapping[str, Any]) -> list[str]:
    """The first lines of every report: what ran, on what, how busy the machine was."""
    tools = "".join(f", {name} {v or '-'}" for name, v in info["tools"].items())
    loads = [
        ", ".join(f"{x:.2f}" for x in info[k])
        for k in ("load_average_at_start", "load_average_at_end")
    ]
    return [
        title,
        f"machine: {info['cpus']} CPUs, {info['memory_gib']} GiB, Python {info['python']}"
        f"{tools}, {info['platform']}",
        code_line(info),
        f"load average (1, 5, 15 min) at start: {loads[0]}; at end: {loads[1]}",
    ]


def quiet_line(results: Results) -> str:
    """How many samples other processes disturbed, after the waits and repeated runs."""
    every = results.every()
    busy = sum(1 for sample in every if sample.others > QUIET_SHARE)
    return (
        f"samples during which other processes used more than {QUIET_SHARE:.0%} of the CPUs: "
        f"{busy} of {len(every)} (after {neighbours.retries} repeated runs and "
        f"{neighbours.waited_s:.0f} s waiting for quiet)"
    )


def options(description: str | None, *, reps: bool = True) -> argparse.ArgumentParser:
    """The common command line: ``--quick``, ``--json FILE`` and (with ``reps``) ``--reps N``."""
    parser = argparse.ArgumentParser(description=(description or "").split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="a short run (see the docstring)")
    if reps:
        parser.add_argument("--reps", type=int, default=None, help="repetitions (3; 1 quick)")
    parser.add_argument("--json", type=Path, default=None, metavar="FILE", help="write raw numbers")
    return parser


def repetitions(args: argparse.Namespace) -> int:
    """``--reps``, or 3 (1 with ``--quick``)."""
    return max(1, args.reps or (1 if args.quick else 3))


def require(parser: argparse.ArgumentParser, *tools: str) -> None:
    """Stop with a usage error when a program the benchmark needs is missing."""
    for tool in tools:
        if shutil.which(tool) is None:
            parser.error(f"{tool} is required")


def no_nan(value: Any) -> Any:
    """``value`` with every nan replaced by None (JSON has no nan)."""
    if isinstance(value, float) and math.isnan(value):
        return None
    if isinstance(value, dict):
        return {k: no_nan(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [no_nan(v) for v in value]
    return value


def publish(report: str, payload: Mapping[str, Any], path: Path | None) -> None:
    """Print the report and how long it all took; write the raw numbers to ``path`` if given."""
    seconds = time.perf_counter() - STARTED
    print(report)
    print(f"\n(benchmark took {seconds:.0f} s)")
    if path is not None:
        text = json.dumps(
            no_nan({**payload, "benchmark_seconds": seconds}), indent=2, sort_keys=True, default=str
        )
        path.write_text(text + "\n")
        log(f"wrote {path}")
