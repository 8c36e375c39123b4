"""Benchmark: lanes created and no-op passes of ``controller --once`` against plain git.

Run it from the repository root with the project's interpreter::

    .venv/bin/python bench/lanes.py            # 3 repetitions, medians (3 to 4 minutes)
    .venv/bin/python bench/lanes.py --quick    # 1 repetition
    .venv/bin/python bench/lanes.py --json bench-results.json

Every measurement runs in fresh temporary git repositories (one commit, a private global git
config, no system config) and runs the controller as the real CLI in a subprocess, exactly as a
user or cron would: ``python -m controller --once --desired <repo>/desired`` with the repository
as working directory. Creations get a new repository each time; the no-op passes of one size
share one new, converged repository (a no-op pass changes nothing, which is checked). Every
ratio printed is between numbers measured in the same run of this script; each number is the
median of the repetitions. What is measured:

(a) 50 lanes from scratch: the controller (maxParallelLanes 8, the default; also 1 and 16)
    against one ``bash -c`` loop of ``git worktree add -b lane/lNNN <path> HEAD``. One lane from
    scratch is measured too, to split fixed cost (start-up, store creation) from per-lane cost.
(b) A no-op pass (already converged) at 50, 200 and 500 lanes, against a floor of
    ``python -c "import controller"`` plus one ``git worktree list --porcelain`` in the same
    repository, and against the import of the CLI module (what any command pays first).
(c) Peak RSS of the controller process (``ru_maxrss`` from ``os.wait4``: the largest resident
    set of the process and of every descendant it reaped; the Python process dominates).
(d) Subprocesses spawned by the controller in a no-op pass at each size, from
    ``strace -f -e trace=execve,...`` (or, without strace, a ``git`` wrapper first on PATH), to
    show observation is batched: a constant number per pass, not one per lane.
(e) Creation at 200 and 500 lanes (the set-up of (b)) against the same git loop, to show how
    ``git worktree add`` itself scales with the number of worktrees already registered.

On a shared machine other processes distort wall times. Each run waits briefly for the CPUs to
be mostly idle, and reads /proc/stat around it to see how much CPU other processes used while
it ran; a disturbed run is repeated (in a fresh repository for creations) within a budget, and
the report says how many samples were still disturbed. Bytecode is cached in a private
``PYTHONPYCACHEPREFIX`` so that runs measure an installed controller, not the compiler.
"""

from __future__ import annotations

import argparse
import itertools
import json
import os
import platform
import re
import shlex
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import harness as h  # bench/h.py (scripts run as `python bench/<name>.py`)

CREATE_LANES = 50
NOOP_SIZES = (50, 200, 500)
SCALING_SIZES = (200, 500)
PARALLEL_VARIANTS = (1, 16)
DEFAULT_PARALLEL = 8
TARGET_CREATE_RATIO = 1.2
AIM_CREATE_RATIO = 1.0
TARGET_NOOP_SECONDS = 0.5
TARGET_NOOP_LANES = 200
MAX_SETUP_PASSES = 3
EXIT_ACTION_FAILED = 2  # controller --once: some action failed (DESIGN section 8)
BACKOFF_SECONDS = 10.0  # the controller's first backoff after a failed action
RUN_TIMEOUT = 600.0

IDENTITY = {
    "GIT_AUTHOR_NAME": "Lane Bench",
    "GIT_AUTHOR_EMAIL": "bench@example.invalid",
    "GIT_COMMITTER_NAME": "Lane Bench",
    "GIT_COMMITTER_EMAIL": "bench@example.invalid",
}


def log(message: str) -> None:
    """Progress goes to stderr so that stdout holds only the report."""
    print(message, file=sys.stderr, flush=True)


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


@dataclass(frozen=True, slots=True)
class Ran:
    """A sample and what the program printed (stdout and stderr together)."""

    sample: Sample
    output: str


# The machine may be shared: someone else's test suite doubles every wall time while it runs.
# Each run waits (a little) for the CPUs to be mostly idle, and measures how much CPU other
# processes used while it ran; a disturbed run is repeated where that is possible (creations
# in a fresh repository, no-op passes), within a budget. Samples kept anyway are counted.
PROC_STAT = Path("/proc/stat")
QUIET_SHARE = 0.25  # other processes may use at most this share of all CPUs
QUIET_WAIT = 5.0  # seconds to wait for quiet before one run, at most
QUIET_BUDGET = 45.0  # seconds to wait for quiet in the whole benchmark, at most
QUIET_WINDOW = 0.2
MAX_ATTEMPTS = 3  # runs of one measurement, at most
RETRY_BUDGET = 30  # repeated runs in the whole benchmark, at most
CLOCK_TICKS = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100
CPUS = os.cpu_count() or 1


def _cpu_times() -> tuple[int, int] | None:
    """Busy and total jiffies of all CPUs, or None where /proc/stat does not exist."""
    try:
        fields = [int(x) for x in PROC_STAT.read_text().split("\n", 1)[0].split()[1:]]
    except (OSError, ValueError):
        return None
    total = sum(fields[:8])
    return total - fields[3] - fields[4], total


def _busy_between(before: tuple[int, int] | None, after: tuple[int, int] | None) -> float:
    """CPU seconds all processes used between two readings."""
    if before is None or after is None:
        return 0.0
    return (after[0] - before[0]) / CLOCK_TICKS


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
            before = _cpu_times()
            time.sleep(QUIET_WINDOW)
            share = _busy_between(before, _cpu_times()) / (QUIET_WINDOW * CPUS)
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


def measure(
    argv: Sequence[str], *, cwd: Path, env: Mapping[str, str], scratch: Path, attempt: int = 1
) -> Ran:
    """Run ``argv`` to completion; wall time from just before spawn to reaping, rusage of it."""
    neighbours.quiet()
    out_path = scratch / "output.txt"
    with out_path.open("w+b") as out:
        before = _cpu_times()
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
        after = _cpu_times()
        watchdog.cancel()
        child.returncode = os.waitstatus_to_exitcode(status)  # reaped here, not by Popen
        out.seek(0)
        text = out.read().decode("utf-8", "replace")
    cpu = usage.ru_utime + usage.ru_stime
    others = max(0.0, _busy_between(before, after) - cpu) / (wall * CPUS) if wall > 0 else 0.0
    sample = Sample(
        wall_s=wall,
        rc=child.returncode,
        maxrss_kib=int(usage.ru_maxrss),
        cpu_s=cpu,
        others=min(1.0, others),
        attempts=attempt,
    )
    return Ran(sample, text)


BYTECODE: dict[str, str] = {}
"""Where children keep bytecode (``PYTHONPYCACHEPREFIX``), set once by ``main``."""
NO_BYTECODE_CACHE = "import-cli-env-bytecode"


def base_env() -> dict[str, str]:
    """Our environment without anything that could redirect git or the controller's store.

    Children compile Python once into a private ``PYTHONPYCACHEPREFIX`` and reuse it, as an
    installed controller does, even where ``PYTHONDONTWRITEBYTECODE`` is set (the controller's
    source folder is left untouched). What the environment's own setting costs is measured
    separately (``import-cli-env-bytecode``).
    """
    env = dict(os.environ)
    for key in list(env):
        if key.startswith("GIT_") or key == "CONTROLLER_STATE":
            del env[key]
    env.pop("PYTHONDONTWRITEBYTECODE", None)
    env.update(IDENTITY)
    env.update({"GIT_CONFIG_NOSYSTEM": "1", "LC_ALL": "C", **BYTECODE})
    return env


def environment_bytecode(env: Mapping[str, str]) -> dict[str, str]:
    """``env`` with the bytecode settings this process was started with."""
    changed = {k: v for k, v in env.items() if k not in ("PYTHONPYCACHEPREFIX",)}
    for key in ("PYTHONDONTWRITEBYTECODE", "PYTHONPYCACHEPREFIX"):
        value = os.environ.get(key)
        if value is not None:
            changed[key] = value
    return changed


# -- repositories --------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Repo:
    """A fresh repository with ``desired/`` written, and the environment to use in it."""

    path: Path
    env: dict[str, str]
    scratch: Path
    lanes: tuple[str, ...]

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

    def git_loop(self) -> list[str]:
        """One bash script adding every lane's worktree with plain git."""
        names = " ".join(self.lanes)
        root = shlex.quote(str(self.worktree_root))
        script = (
            f'for n in {names}; do git worktree add -b "lane/$n" {root}/"$n" HEAD || exit 1; done'
        )
        return ["bash", "-c", script]

    def worktree_count(self) -> int:
        """Linked worktrees git knows of (the main checkout not counted)."""
        text = h.run_checked(
            ("git", "worktree", "list", "--porcelain"), cwd=self.path, env=self.env
        )
        return sum(1 for line in text.splitlines() if line.startswith("worktree ")) - 1

    def measure(
        self, argv: Sequence[str], env: Mapping[str, str] | None = None, *, attempt: int = 1
    ) -> Ran:
        """Measure ``argv`` run in this repository."""
        return measure(
            argv, cwd=self.path, env=env or self.env, scratch=self.scratch, attempt=attempt
        )

    def measure_repeatable(self, argv: Sequence[str], env: Mapping[str, str] | None = None) -> Ran:
        """Measure a run that changes nothing, again if other processes disturbed it."""
        ran = self.measure(argv, env)
        while neighbours.retry(ran.sample):
            ran = self.measure(argv, env, attempt=ran.sample.attempts + 1)
        return ran


def lanes_yaml(names: Sequence[str]) -> str:
    """One Lane document per name."""
    return "---\n".join(
        f"apiVersion: lanes/v1\nkind: Lane\nmetadata: {{name: {name}}}\n" for name in names
    )


def workspace_yaml(parallel: int) -> str:
    """A Workspace document setting maxParallelLanes."""
    return (
        "apiVersion: lanes/v1\nkind: Workspace\nmetadata: {name: default}\n"
        f"spec: {{maxParallelLanes: {parallel}}}\n"
    )


@contextmanager
def fresh_repo(lanes: int, *, parallel: int | None = None) -> Iterator[Repo]:
    """A new repository with one commit and ``desired/`` declaring ``lanes`` lanes."""
    with tempfile.TemporaryDirectory(prefix="lanes-bench-") as tmp:
        top = Path(tmp).resolve()
        path, scratch = top / "repo", top / "scratch"
        path.mkdir()
        scratch.mkdir()
        gitconfig = top / "gitconfig"
        gitconfig.write_text("[init]\n\tdefaultBranch = main\n")
        env = {**base_env(), "GIT_CONFIG_GLOBAL": str(gitconfig)}
        names = h.lane_names(lanes)
        h.run_checked(("git", "init", "--quiet"), cwd=path, env=env)
        (path / "README.md").write_text("A repository for the lane controller benchmark.\n")
        h.run_checked(("git", "add", "README.md"), cwd=path, env=env)
        h.run_checked(("git", "commit", "--quiet", "-m", "initial"), cwd=path, env=env)
        desired = path / "desired"
        desired.mkdir()
        (desired / "lanes.yaml").write_text(lanes_yaml(names))
        if parallel is not None:
            (desired / "workspace.yaml").write_text(workspace_yaml(parallel))
        yield Repo(path=path, env=env, scratch=scratch, lanes=names)


# -- counting subprocesses -------------------------------------------------------------------------


@dataclass(slots=True)
class Spawns:
    """Programs started during one controller run."""

    method: str
    direct: Counter[str] = field(default_factory=Counter)
    """Programs the controller process itself started, by name."""
    indirect: Counter[str] | None = None
    """Programs those started in turn (git's own helpers), when the method can tell."""
    commands: list[str] = field(default_factory=list)
    """The direct commands (first words), for reading."""

    @property
    def git(self) -> int:
        """Git commands the controller ran."""
        return self.direct["git"]

    def to_json(self) -> dict[str, Any]:
        """Raw numbers."""
        return {
            "method": self.method,
            "direct": dict(self.direct),
            "indirect": None if self.indirect is None else dict(self.indirect),
            "commands": self.commands,
        }


_STRACE_LINE = re.compile(r"^(\d+)\s+(.*)$")
_QUOTED = re.compile(r'"((?:[^"\\]|\\.)*)"')
_SPAWNED = re.compile(r"^(?:<\.\.\. )?(?:clone3?|vfork|fork)\b.*=\s+(\d+)$")
_SUCCESS = re.compile(r"\)\s+=\s+0$")
_EXEC_WORDS = 5


def _exec_call(body: str) -> tuple[str, list[str]]:
    """Program path and the first argv words of an ``execve(`` line."""
    path_match = _QUOTED.search(body)
    path = path_match.group(1) if path_match else "?"
    argv_part = body.partition("[")[2].partition("], ")[0]
    return path, _QUOTED.findall(argv_part)[:_EXEC_WORDS]


def parse_strace(text: str) -> Spawns:
    """Successful execs in ``strace -f -e trace=execve,clone,clone3,fork,vfork`` output.

    A program counts as started by the controller when the nearest ancestor (through threads)
    that executed a program is the controller's process.
    """
    parent: dict[int, int] = {}
    pending: dict[int, tuple[str, list[str]]] = {}
    execs: list[tuple[int, str, list[str]]] = []
    for line in text.splitlines():
        match = _STRACE_LINE.match(line)
        if not match:
            continue
        pid, body = int(match.group(1)), match.group(2)
        if body.startswith("execve("):
            call = _exec_call(body)
            if body.endswith("<unfinished ...>"):
                pending[pid] = call
            elif _SUCCESS.search(body):
                execs.append((pid, *call))
        elif body.startswith("<... execve resumed>"):
            call = pending.pop(pid, ("?", []))
            if _SUCCESS.search(body):
                execs.append((pid, *call))
        elif spawned := _SPAWNED.match(body):
            parent[int(spawned.group(1))] = pid
    spawns = Spawns("strace", indirect=Counter())
    if not execs:
        return spawns
    root = execs[0][0]
    programs = {pid for pid, _, _ in execs}
    for pid, path, argv in execs[1:]:
        spawner = parent.get(pid)
        while spawner is not None and spawner not in programs:
            spawner = parent.get(spawner)
        name = Path(path).name
        if spawner == root:
            spawns.direct[name] += 1
            spawns.commands.append(shlex.join([name, *argv[1:]]))
        else:
            assert spawns.indirect is not None
            spawns.indirect[name] += 1
    return spawns


def count_spawns(repo: Repo, argv: Sequence[str]) -> Spawns:
    """Run ``argv`` (unmeasured) and count the programs it starts."""
    strace = shutil.which("strace", path=repo.env.get("PATH"))
    if strace is not None:
        trace = repo.scratch / "strace.txt"
        traced = [
            strace,
            "-f",
            "-qq",
            "-e",
            "trace=execve,clone,clone3,fork,vfork",
            "-e",
            "signal=none",
            "-o",
            str(trace),
            "--",
            *argv,
        ]
        ran = repo.measure(traced)
        if trace.exists():
            spawns = parse_strace(trace.read_text(errors="replace"))
            if spawns.commands:
                return spawns
        log(f"  strace did not work here (rc {ran.sample.rc}); counting with a git wrapper")
    return _count_with_wrapper(repo, argv)


def _count_with_wrapper(repo: Repo, argv: Sequence[str]) -> Spawns:
    """A ``git`` first on PATH that logs each call, then runs the real git."""
    real = shutil.which("git", path=repo.env.get("PATH"))
    if real is None:
        raise RuntimeError("git not found on PATH")
    wrappers, calls = repo.scratch / "wrappers", repo.scratch / "git-calls.txt"
    wrappers.mkdir(exist_ok=True)
    calls.write_text("")
    wrapper = wrappers / "git"
    wrapper.write_text(
        f"#!/bin/sh\nprintf '%s\\n' \"git $*\" >> {shlex.quote(str(calls))}\n"
        f'exec {shlex.quote(real)} "$@"\n'
    )
    wrapper.chmod(0o755)
    env = {**repo.env, "PATH": f"{wrappers}{os.pathsep}{repo.env.get('PATH', '')}"}
    repo.measure(argv, env=env)
    lines = calls.read_text().splitlines()
    # git runs its own helpers from its exec-path, not through PATH: these are the direct calls.
    return Spawns("git wrapper on PATH", direct=Counter(git=len(lines)), commands=lines)


# -- the benchmark -------------------------------------------------------------------------------


@dataclass(slots=True)
class Results:
    """Every sample, by measurement key, and whatever went wrong on the way."""

    samples: dict[str, list[Sample]] = field(default_factory=dict)
    spawns: dict[str, Spawns] = field(default_factory=dict)
    failures: dict[str, int] = field(default_factory=dict)
    """Runs in which some lane failed, by measurement."""
    failed_lanes: dict[str, int] = field(default_factory=dict)
    """Lanes that failed, summed over those runs."""
    warnings: list[str] = field(default_factory=list)
    setup_passes: dict[str, int] = field(default_factory=dict)

    def add(self, key: str, sample: Sample) -> None:
        """Record one sample."""
        self.samples.setdefault(key, []).append(sample)

    def median(self, key: str, attr: str = "wall_s") -> float:
        """Median of one attribute over the repetitions."""
        return float(statistics.median(getattr(s, attr) for s in self.samples[key]))

    def spread(self, key: str) -> tuple[float, float]:
        """Lowest and highest wall time."""
        walls = [s.wall_s for s in self.samples[key]]
        return min(walls), max(walls)

    def note_failure(self, key: str, lanes: int) -> None:
        """Count a run of ``key`` in which ``lanes`` lanes failed."""
        self.failures[key] = self.failures.get(key, 0) + 1
        self.failed_lanes[key] = self.failed_lanes.get(key, 0) + lanes

    def warn(self, message: str) -> None:
        """Note something that makes a number less than clean (printed at the end)."""
        log(f"  warning: {message}")
        self.warnings.append(message)


def create_once(
    results: Results, key: str, lanes: int, kind: str, parallel: int | None, *, retry: bool = True
) -> None:
    """One from-scratch creation in a fresh repository (another if disturbed), then checked."""
    attempt = 1
    while True:
        with fresh_repo(lanes, parallel=parallel) as repo:
            argv = repo.git_loop() if kind == "git" else repo.controller()
            ran = repo.measure(argv, attempt=attempt)
            made = repo.worktree_count()
        if not (retry and neighbours.retry(ran.sample)):
            break
        attempt += 1
    results.add(key, ran.sample)
    if ran.sample.rc != 0 or made != lanes:
        results.note_failure(key, lanes - made)
        problem = h.first_problem(ran.output)
        results.warn(f"{key}: exit {ran.sample.rc}, {made}/{lanes} worktrees: {problem}")


def converge(results: Results, repo: Repo, key: str) -> tuple[Ran, int]:
    """Run passes until ``controller plan --detailed-exitcode`` sees nothing to do.

    A lane whose provisioning failed backs off (10 s, doubling) before the controller tries it
    again, so after a failed pass this waits the backoff out. Returns the first pass (a
    from-scratch creation) and how many passes it took.
    """
    first: Ran | None = None
    failed_passes = 0
    for attempt in range(1, MAX_SETUP_PASSES + 1):
        ran = repo.measure(repo.controller())
        first = first or ran
        if ran.sample.rc not in (0, EXIT_ACTION_FAILED):
            problem = h.first_problem(ran.output)
            raise RuntimeError(f"{key}: controller --once exited {ran.sample.rc}: {problem}")
        if ran.sample.rc != 0:
            if attempt == 1:
                results.note_failure(key, len(repo.lanes) - repo.worktree_count())
            results.warn(
                f"{key}: pass {attempt} exited {ran.sample.rc}: {h.first_problem(ran.output)}"
            )
            failed_passes += 1
            wait = BACKOFF_SECONDS * 2 ** (failed_passes - 1) + 0.5
            log(f"  waiting {wait:.1f} s for the controller's backoff of the failed lane(s)")
            time.sleep(wait)
            continue
        plan = repo.measure(repo.controller("plan", "--detailed-exitcode"))
        if plan.sample.rc == 0:
            return first, attempt
    raise RuntimeError(f"{key}: not converged after {MAX_SETUP_PASSES} passes")


def bench_create(results: Results, rep: int) -> None:
    """(a): 50 lanes from scratch, plus one lane to split fixed from per-lane cost."""
    variants: list[tuple[str, int, str, int | None]] = [
        (f"create/{CREATE_LANES}/git", CREATE_LANES, "git", None),
        (f"create/{CREATE_LANES}/ctl-p{DEFAULT_PARALLEL}", CREATE_LANES, "ctl", None),
        *[(f"create/{CREATE_LANES}/ctl-p{p}", CREATE_LANES, "ctl", p) for p in PARALLEL_VARIANTS],
        ("create/1/git", 1, "git", None),
        ("create/1/ctl", 1, "ctl", None),
    ]
    turn = rep % len(variants)  # rotate so that no variant always runs first
    for key, lanes, kind, parallel in variants[turn:] + variants[:turn]:
        log(f"  {key}")
        create_once(results, key, lanes, kind, parallel)
    if rep == 0:
        with fresh_repo(CREATE_LANES) as repo:
            log(f"  counting subprocesses of a {CREATE_LANES}-lane creation")
            results.spawns[f"create/{CREATE_LANES}"] = count_spawns(repo, repo.controller())


def bench_noop(results: Results, reps: int) -> None:
    """(b), (c), (d), (e): one fresh repository per size, converged, then timed no-op passes.

    The repository of each size is created once (creating 500 worktrees takes about as long as
    everything else together) and every repetition of the no-op pass and of its floors runs in
    it, interleaved; a no-op pass changes nothing, which is checked.
    """
    for size in NOOP_SIZES:
        if size in SCALING_SIZES:
            log(f"  create/{size}/git")
            create_once(results, f"create/{size}/git", size, "git", None, retry=False)
        with fresh_repo(size) as repo:
            create_key = f"create/{size}/ctl-p{DEFAULT_PARALLEL}"
            scaled = size in SCALING_SIZES
            log(f"  {create_key} (set-up of the no-op passes)")
            first, passes = converge(results, repo, create_key if scaled else f"setup/{size}")
            results.setup_passes[str(size)] = passes
            if scaled:
                results.add(create_key, first.sample)
            # The first pass after a creation clears the lanes' backoff memory (one store write
            # per lane); only passes after it are steady-state no-ops.
            ran = repo.measure(repo.controller())
            if passes == 1:
                results.add(f"noop/{size}/first-after-create", ran.sample)
            measurements = {
                f"noop/{size}/controller": repo.controller(),
                f"noop/{size}/import-controller": [sys.executable, "-c", "import controller"],
                f"noop/{size}/worktree-list": ["git", "worktree", "list", "--porcelain"],
                f"noop/{size}/import-cli": [sys.executable, "-c", "import controller.cli.main"],
            }
            for rep in range(reps):
                log(f"  noop/{size} [{rep + 1}/{reps}]")
                for key, argv in measurements.items():
                    ran = repo.measure_repeatable(argv)
                    results.add(key, ran.sample)
                    if ran.sample.rc != 0:
                        results.warn(f"{key}: exit {ran.sample.rc}: {h.first_problem(ran.output)}")
                if size == NOOP_SIZES[0]:
                    argv = measurements[f"noop/{size}/import-cli"]
                    ran = repo.measure_repeatable(argv, env=environment_bytecode(repo.env))
                    results.add(NO_BYTECODE_CACHE, ran.sample)
            plan = repo.measure(repo.controller("plan", "--detailed-exitcode"))
            count = repo.worktree_count()
            if count != size or plan.sample.rc != 0:
                results.warn(
                    f"noop/{size}: after the no-op passes, {count} worktrees and "
                    f"`plan --detailed-exitcode` exited {plan.sample.rc}: "
                    f"{h.first_problem(plan.output)}"
                )
            log(f"  counting subprocesses of a no-op pass at {size} lanes")
            results.spawns[f"noop/{size}"] = count_spawns(repo, repo.controller())


def warm_up() -> None:
    """Compile bytecode and warm caches so that the first measured run is not special."""
    with fresh_repo(1) as repo:
        for argv in (
            [sys.executable, "-m", "controller", "--help"],
            [sys.executable, "-c", "import controller.cli.main"],
            repo.controller(),
            repo.controller(),
        ):
            ran = repo.measure(argv)
            if ran.sample.rc != 0:
                raise RuntimeError(f"{shlex.join(argv)} failed: {h.first_problem(ran.output)}")


# -- the report ----------------------------------------------------------------------------------


def _controller_version() -> dict[str, Any]:
    """The commit of the controller measured, and how many of its files differ from it."""
    source = Path(__file__).resolve().parents[1]

    def git(*args: str) -> str:
        env = {**base_env(), "GIT_OPTIONAL_LOCKS": "0"}  # never take the index lock of others
        done = subprocess.run(
            ("git", "-C", str(source), *args), capture_output=True, text=True, check=False, env=env
        )
        return done.stdout.strip() if done.returncode == 0 else ""

    changed = git("status", "--porcelain", "--", "controller").splitlines()
    return {
        "commit": git("rev-parse", "--short", "HEAD") or "unknown",
        "changed_files": len(changed),
    }


def machine() -> dict[str, Any]:
    """What this ran on."""
    git = subprocess.run(("git", "--version"), capture_output=True, text=True, check=False)
    memory_kib = 0
    meminfo = Path("/proc/meminfo")
    if meminfo.exists():
        for line in meminfo.read_text().splitlines():
            if line.startswith("MemTotal:"):
                memory_kib = int(line.split()[1])
    return {
        "cpus": os.cpu_count(),
        "memory_gib": round(memory_kib / 1024 / 1024, 1),
        "python": platform.python_version(),
        "git": git.stdout.strip().removeprefix("git version "),
        "platform": platform.platform(),
        "strace": shutil.which("strace") is not None,
        "load_average_at_start": list(os.getloadavg()),
        "controller": _controller_version(),
        "environment_bytecode": {
            k: os.environ.get(k) for k in ("PYTHONDONTWRITEBYTECODE", "PYTHONPYCACHEPREFIX")
        },
    }


def _fails(results: Results, key: str) -> str:
    failed = results.failures.get(key, 0)
    if not failed:
        return "0"
    return f"{failed}/{len(results.samples[key])} ({results.failed_lanes.get(key, 0)} lanes)"


def derive(results: Results) -> dict[str, Any]:
    """Ratios and per-lane figures, all from medians of this run."""
    med = results.median
    git50 = med(f"create/{CREATE_LANES}/git")
    create = {
        f"p{p}": med(f"create/{CREATE_LANES}/ctl-p{p}") / git50
        for p in (DEFAULT_PARALLEL, *PARALLEL_VARIANTS)
    }
    fixed_ctl, fixed_git = med("create/1/ctl"), med("create/1/git")
    ctl50 = med(f"create/{CREATE_LANES}/ctl-p{DEFAULT_PARALLEL}")
    per_lane = {
        "controller_ms": 1000 * (ctl50 - fixed_ctl) / (CREATE_LANES - 1),
        "git_ms": 1000 * (git50 - fixed_git) / (CREATE_LANES - 1),
    }
    noop: dict[str, Any] = {}
    for size in NOOP_SIZES:
        pass_s = med(f"noop/{size}/controller")
        floor = med(f"noop/{size}/import-controller") + med(f"noop/{size}/worktree-list")
        cli_floor = med(f"noop/{size}/import-cli") + med(f"noop/{size}/worktree-list")
        noop[str(size)] = {
            "pass_s": pass_s,
            "floor_s": floor,
            "ratio_to_floor": pass_s / floor,
            "cli_floor_s": cli_floor,
            "ratio_to_cli_floor": pass_s / cli_floor,
            "ms_per_lane": 1000 * pass_s / size,
            "above_cli_floor_s": pass_s - cli_floor,
        }
    slopes = {
        f"{a}->{b}": 1000 * (med(f"noop/{b}/controller") - med(f"noop/{a}/controller")) / (b - a)
        for a, b in itertools.pairwise(NOOP_SIZES)
    }
    scaling = {
        str(size): med(f"create/{size}/ctl-p{DEFAULT_PARALLEL}") / med(f"create/{size}/git")
        for size in (CREATE_LANES, *SCALING_SIZES)
    }
    return {
        "create_ratio_to_git_loop": create,
        "create_per_lane": per_lane,
        "create_fixed_s": {"controller": fixed_ctl, "git": fixed_git},
        "noop": noop,
        "noop_marginal_ms_per_lane": slopes,
        "create_scaling_ratio_to_git_loop": scaling,
        "targets": {
            "create_ratio_le_1.2": create[f"p{DEFAULT_PARALLEL}"] <= TARGET_CREATE_RATIO,
            "create_ratio_le_1.0": create[f"p{DEFAULT_PARALLEL}"] <= AIM_CREATE_RATIO,
            "noop_200_le_0.5s": noop[str(TARGET_NOOP_LANES)]["pass_s"] <= TARGET_NOOP_SECONDS,
        },
    }


def report(results: Results, derived: Mapping[str, Any], reps: int, info: Mapping[str, Any]) -> str:
    """The human-readable tables."""
    med, spread = results.median, results.spread

    def wall(key: str) -> str:
        if len(results.samples[key]) == 1:
            return f"{med(key):.3f}"
        low, high = spread(key)
        return f"{med(key):.3f} ({low:.2f}-{high:.2f})"

    def mib(key: str) -> str:
        return f"{med(key, 'maxrss_kib') / 1024:.1f}"

    every = [sample for samples in results.samples.values() for sample in samples]
    busy, total = sum(1 for x in every if x.others > QUIET_SHARE), len(every)

    out = [
        f"Lane controller benchmark: median of {reps} repetition(s); (min-max) wall seconds",
        f"machine: {info['cpus']} CPUs, {info['memory_gib']} GiB, Python {info['python']}, "
        f"git {info['git']}, {info['platform']}",
        f"controller: commit {info['controller']['commit']}, "
        f"{info['controller']['changed_files']} file(s) under controller/ changed since",
        "load average (1, 5, 15 min) at start: "
        + ", ".join(f"{x:.2f}" for x in info["load_average_at_start"])
        + "; at end: "
        + ", ".join(f"{x:.2f}" for x in info["load_average_at_end"]),
        f"samples during which other processes used more than {QUIET_SHARE:.0%} of the CPUs: "
        f"{busy} of {total} (after {neighbours.retries} repeated runs and "
        f"{neighbours.waited_s:.0f} s waiting for quiet)",
        "",
        f"(a) {CREATE_LANES} lanes from scratch: controller --once vs a bash loop of "
        "`git worktree add -b lane/lNNN <path> HEAD`",
    ]

    def create_row(label: str, key: str, ratio: str) -> list[str]:
        cpu = f"{med(key, 'cpu_s'):.2f}"
        return [label, wall(key), cpu, mib(key), ratio, _fails(results, key)]

    git50 = f"create/{CREATE_LANES}/git"
    rows = [create_row("git worktree add loop (bash -c)", git50, "1.00x")]
    for p in (DEFAULT_PARALLEL, *PARALLEL_VARIANTS):
        default = " (default)" if p == DEFAULT_PARALLEL else ""
        ratio = f"{derived['create_ratio_to_git_loop'][f'p{p}']:.2f}x"
        rows.append(
            create_row(
                f"controller, maxParallelLanes {p}{default}",
                f"create/{CREATE_LANES}/ctl-p{p}",
                ratio,
            )
        )
    rows.append(create_row("git worktree add, 1 lane", "create/1/git", ""))
    rows.append(create_row("controller, 1 lane (fixed cost)", "create/1/ctl", ""))
    out += h.table(["", "wall s", "cpu s", "peak RSS MiB", "vs git", "failed runs"], rows)
    ratio = derived["create_ratio_to_git_loop"][f"p{DEFAULT_PARALLEL}"]
    per_lane = derived["create_per_lane"]
    out += [
        f"  target <= {TARGET_CREATE_RATIO}x: {h.verdict(ratio <= TARGET_CREATE_RATIO)} "
        f"({ratio:.2f}x); aim <= {AIM_CREATE_RATIO}x: {h.verdict(ratio <= AIM_CREATE_RATIO)}",
        f"  per extra lane ((T{CREATE_LANES} - T1) / {CREATE_LANES - 1}): controller "
        f"{per_lane['controller_ms']:.1f} ms, git loop {per_lane['git_ms']:.1f} ms",
        "",
        "(b) no-op pass (already converged) vs floors measured in the same repository",
        "    floor     = python -c 'import controller' + git worktree list --porcelain",
        "    cli floor = python -c 'import controller.cli.main' + git worktree list --porcelain",
    ]
    rows = []
    for size in NOOP_SIZES:
        n = derived["noop"][str(size)]
        rows.append(
            [
                f"{size} lanes",
                wall(f"noop/{size}/controller"),
                f"{med(f'noop/{size}/controller', 'cpu_s'):.3f}",
                f"{n['floor_s']:.3f}",
                f"{n['ratio_to_floor']:.1f}x",
                f"{n['cli_floor_s']:.3f}",
                f"{n['ratio_to_cli_floor']:.2f}x",
                f"{n['ms_per_lane']:.2f}",
            ]
        )
    header = [
        "",
        "no-op s",
        "cpu s",
        "floor s",
        "vs floor",
        "cli floor s",
        "vs cli floor",
        "ms/lane",
    ]
    out += h.table(header, rows)
    small = NOOP_SIZES[0]
    settings = ", ".join(f"{k}={v}" for k, v in info["environment_bytecode"].items() if v)
    out += [
        f"  parts of the floors ({small} lanes): import controller "
        f"{med(f'noop/{small}/import-controller'):.3f} s, import controller.cli.main "
        f"{med(f'noop/{small}/import-cli'):.3f} s wall / "
        f"{med(f'noop/{small}/import-cli', 'cpu_s'):.3f} s CPU, git worktree list "
        f"{med(f'noop/{small}/worktree-list'):.3f} s",
        f"  import controller.cli.main with this shell's bytecode settings "
        f"({settings or 'none'}): {med(NO_BYTECODE_CACHE):.3f} s wall / "
        f"{med(NO_BYTECODE_CACHE, 'cpu_s'):.3f} s CPU",
    ]
    slopes = ", ".join(f"{k}: {v:+.2f} ms" for k, v in derived["noop_marginal_ms_per_lane"].items())
    noop_target = derived["noop"][str(TARGET_NOOP_LANES)]["pass_s"]
    out += [
        f"  marginal cost per extra lane: {slopes}",
        f"  target <= {TARGET_NOOP_SECONDS} s at {TARGET_NOOP_LANES} lanes: "
        f"{h.verdict(noop_target <= TARGET_NOOP_SECONDS)} ({noop_target:.3f} s)",
        "",
        "(c) peak RSS of the controller process (ru_maxrss, MiB)",
    ]
    big = NOOP_SIZES[-1]
    rows = [
        [f"no-op pass, {big} lanes", mib(f"noop/{big}/controller")],
        [f"no-op pass, {NOOP_SIZES[0]} lanes", mib(f"noop/{NOOP_SIZES[0]}/controller")],
        [
            f"create {CREATE_LANES} lanes, default parallelism",
            mib(f"create/{CREATE_LANES}/ctl-p{DEFAULT_PARALLEL}"),
        ],
        ["python -c 'import controller.cli.main' (baseline)", mib(f"noop/{big}/import-cli")],
    ]
    out += h.table(["", "MiB"], rows)
    out += ["", "(d) programs the controller starts in one pass (counted once, not timed)"]
    rows = []
    for key, spawns in results.spawns.items():
        others = sum(spawns.direct.values()) - spawns.git
        helpers = "-" if spawns.indirect is None else str(sum(spawns.indirect.values()))
        adds = sum(1 for c in spawns.commands if " worktree add " in f" {c} ")
        rows.append([key, str(spawns.git), str(adds), str(others), helpers, spawns.method])
    header = [
        "",
        "git calls",
        "of which worktree add",
        "other programs",
        "git's own helpers",
        "counted by",
    ]
    out += h.table(header, rows)
    out += [
        "",
        f"(e) creation at scale, default parallelism, vs the same git loop ({CREATE_LANES}: "
        "from (a); 200 and 500: one run each, the set-up of (b))",
    ]
    rows = []
    for size in (CREATE_LANES, *SCALING_SIZES):
        ctl, git = f"create/{size}/ctl-p{DEFAULT_PARALLEL}", f"create/{size}/git"
        rows.append(
            [
                f"{size} lanes",
                wall(git),
                f"{med(git, 'cpu_s'):.2f}",
                f"{1000 * med(git) / size:.1f}",
                wall(ctl),
                f"{med(ctl, 'cpu_s'):.2f}",
                f"{1000 * med(ctl) / size:.1f}",
                f"{derived['create_scaling_ratio_to_git_loop'][str(size)]:.2f}x",
                _fails(results, ctl),
            ]
        )
    header = [
        "",
        "git loop s",
        "cpu s",
        "ms/lane",
        "controller s",
        "cpu s",
        "ms/lane",
        "ratio",
        "failed runs",
    ]
    out += h.table(header, rows)
    parallel = [k for k in results.samples if k.startswith("create/") and "/ctl-p" in k]
    parallel = [k for k in parallel if not k.endswith("-p1") and int(k.split("/")[1]) > 1]
    runs = sum(len(results.samples[k]) for k in parallel)
    hit = sum(results.failures.get(k, 0) for k in parallel)
    lanes = sum(results.failed_lanes.get(k, 0) for k in parallel)
    serial = f"create/{CREATE_LANES}/ctl-p1"
    out.append(
        f"  parallel creations with a failed lane: {hit} of {runs} runs ({lanes} lanes); "
        f"maxParallelLanes 1: {results.failures.get(serial, 0)} of {len(results.samples[serial])}"
    )
    slow = {size: n for size, n in results.setup_passes.items() if n > 1}
    if slow:
        out.append(f"  passes needed to converge the repositories of (b), by size: {slow}")
    if results.warnings:
        out += ["", "warnings:", *(f"  - {w}" for w in results.warnings)]
    return "\n".join(out)


def to_json(
    results: Results, derived: Mapping[str, Any], reps: int, info: Mapping[str, Any], seconds: float
) -> dict[str, Any]:
    """Every raw number."""
    return {
        "machine": info,
        "repetitions": reps,
        "benchmark_seconds": seconds,
        "waited_for_quiet_seconds": neighbours.waited_s,
        "repeated_runs": neighbours.retries,
        "samples": {k: [asdict(s) for s in v] for k, v in results.samples.items()},
        "medians": {
            k: {a: results.median(k, a) for a in ("wall_s", "cpu_s", "maxrss_kib")}
            for k in results.samples
        },
        "derived": derived,
        "subprocesses": {k: v.to_json() for k, v in results.spawns.items()},
        "failures": results.failures,
        "failed_lanes": results.failed_lanes,
        "setup_passes": results.setup_passes,
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
    started = time.perf_counter()
    info = machine()
    log(f"lane benchmark: {reps} repetition(s) on {info['cpus']} CPUs; warming up")
    results = Results()
    with tempfile.TemporaryDirectory(prefix="lanes-bench-pycache-") as pycache:
        BYTECODE["PYTHONPYCACHEPREFIX"] = pycache
        try:
            warm_up()
            for rep in range(reps):
                log(f"[create {rep + 1}/{reps}]")
                bench_create(results, rep)
            log("[no-op passes]")
            bench_noop(results, reps)
        except RuntimeError as exc:
            log(f"benchmark aborted: {exc}")
            return 1
    info["load_average_at_end"] = list(os.getloadavg())
    info["controller_at_end"] = _controller_version()
    if info["controller_at_end"] != info["controller"]:
        results.warn(
            f"the controller changed during the run: {info['controller']} -> "
            f"{info['controller_at_end']}"
        )
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
