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

(a) 50 lanes from scratch: the controller (maxParallelLanes 8, the default; also 1, 2, 4, 16)
    against one ``bash -c`` loop of ``git worktree add -b lane/lNNN <path> HEAD``, and the same
    adds two at a time (``xargs -P 2``). One lane from scratch is measured too, to split fixed
    cost (start-up, store creation) from per-lane cost.
(b) A no-op pass (already converged) at 50, 200, 500 and 1000 lanes, against a floor of
    ``python -c "import controller"`` plus one ``git worktree list --porcelain`` in the same
    repository, and against the import of the CLI module (what any command pays first). At
    200 lanes, ``python -X importtime`` splits the imports of the pass: SQLAlchemy, pydantic,
    the controller's own modules and the rest (self times, the smallest of the repetitions).
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
``PYTHONPYCACHEPREFIX`` so that runs measure an installed controller, not the compiler. The rig
(repositories, measuring, quietness, subprocess counting, the report's frame) is
bench/harness.py, shared with the other benchmarks.
"""

from __future__ import annotations

import itertools
import os
import shlex
import sys
import time
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

import harness as h  # bench/harness.py (scripts run as `python bench/<name>.py`)
from harness import Ran, count_spawns, log, neighbours

CREATE_LANES = 50
NOOP_SIZES = (50, 200, 500, 1000)
SCALING_SIZES = (200, 500)
PARALLEL_VARIANTS = (1, 2, 4, 16)
DEFAULT_PARALLEL = 8
GIT_PARALLEL = 2  # the git loop's adds at a time in its parallel variant
TARGET_CREATE_RATIO = 0.8
TARGET_NOOP_SECONDS = 0.3
TARGET_NOOP_FLOOR_RATIO = 10.0
TARGET_NOOP_LANES = 200
IMPORT_GROUPS = {
    "sqlalchemy": ("sqlalchemy",),
    "pydantic": ("pydantic", "pydantic_core", "annotated_types", "typing_inspection"),
    "controller": ("controller",),
}
MAX_SETUP_PASSES = 3
EXIT_ACTION_FAILED = 2  # controller --once: some action failed (DESIGN section 8)
BACKOFF_SECONDS = 10.0  # the controller's first backoff after a failed action


NO_BYTECODE_CACHE = "import-cli-env-bytecode"


BYTECODE_SETTINGS = ("PYTHONDONTWRITEBYTECODE", "PYTHONPYCACHEPREFIX")


def environment_bytecode(env: Mapping[str, str]) -> dict[str, str]:
    """``env`` with the bytecode settings this process was started with."""
    changed = {k: v for k, v in env.items() if k not in ("PYTHONPYCACHEPREFIX",)}
    for key in BYTECODE_SETTINGS:
        value = os.environ.get(key)
        if value is not None:
            changed[key] = value
    return changed


# -- repositories --------------------------------------------------------------------------------


class Repo(h.Repo):
    """A fresh repository with ``desired/`` declaring its lanes."""

    def git_loop(self, parallel: int = 1) -> list[str]:
        """One bash script adding every lane's worktree with plain git, ``parallel`` at a time."""
        names = " ".join(self.lanes)
        root = shlex.quote(str(self.worktree_root))
        if parallel > 1:
            add = f'git worktree add -b "lane/$0" {root}/"$0" HEAD'
            each = f"printf '%s\\n' {names} | xargs -P {parallel} -n 1 bash -c {shlex.quote(add)}"
            return ["bash", "-c", each]
        script = (
            f'for n in {names}; do git worktree add -b "lane/$n" {root}/"$n" HEAD || exit 1; done'
        )
        return ["bash", "-c", script]


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
    with h.fresh_repo(Repo, lanes, prefix="lanes-bench-") as repo:
        repo.write("lanes.yaml", lanes_yaml(repo.lanes))
        if parallel is not None:
            repo.write("workspace.yaml", workspace_yaml(parallel))
        yield repo


# -- the benchmark -------------------------------------------------------------------------------


@dataclass(slots=True)
class Results(h.Results):
    """The harness's results, and the lanes that failed."""

    failures: dict[str, int] = field(default_factory=dict)
    """Runs in which some lane failed, by measurement."""
    failed_lanes: dict[str, int] = field(default_factory=dict)
    """Lanes that failed, summed over those runs."""
    setup_passes: dict[str, int] = field(default_factory=dict)
    imports: dict[str, float] = field(default_factory=dict)
    """Import time of a no-op pass by group, in ms (smallest self times of the repetitions)."""

    def note_failure(self, key: str, lanes: int) -> None:
        """Count a run of ``key`` in which ``lanes`` lanes failed."""
        self.failures[key] = self.failures.get(key, 0) + 1
        self.failed_lanes[key] = self.failed_lanes.get(key, 0) + lanes


def create_once(
    results: Results, key: str, lanes: int, kind: str, parallel: int | None, *, retry: bool = True
) -> None:
    """One from-scratch creation in a fresh repository (another if disturbed), then checked."""
    attempt = 1
    while True:
        with fresh_repo(lanes, parallel=parallel) as repo:
            if kind.startswith("git"):
                argv = repo.git_loop(GIT_PARALLEL if kind == f"git-p{GIT_PARALLEL}" else 1)
            else:
                argv = repo.controller()
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
        (f"create/{CREATE_LANES}/git-p{GIT_PARALLEL}", CREATE_LANES, f"git-p{GIT_PARALLEL}", None),
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
            if size == TARGET_NOOP_LANES:
                results.imports = import_split(repo, reps)
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


def import_split(repo: Repo, reps: int) -> dict[str, float]:
    """``python -X importtime`` of a no-op pass: self times in ms by group (see IMPORT_GROUPS).

    Each module's smallest self time over the repetitions, so that a disturbed run does not
    count; importtime's own overhead makes the total a little larger than a plain import.
    """
    argv = [sys.executable, "-X", "importtime", *repo.controller()[1:]]
    best: dict[str, int] = {}
    for _ in range(max(reps, 3)):
        for line in repo.measure_repeatable(argv).output.splitlines():
            parts = line.split("|")
            if not line.startswith("import time:") or len(parts) != 3 or "[us]" in line:
                continue
            name, micros = parts[2].strip(), int(parts[0].split(":")[1])
            best[name] = min(best.get(name, micros), micros)
    split = dict.fromkeys([*IMPORT_GROUPS, "rest"], 0.0)
    for name, micros in best.items():
        top = name.split(".")[0]
        group = next((g for g, tops in IMPORT_GROUPS.items() if top in tops), "rest")
        split[group] += micros / 1000
    return {**split, "total": sum(split.values())}


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
    create[f"git-p{GIT_PARALLEL}"] = med(f"create/{CREATE_LANES}/git-p{GIT_PARALLEL}") / git50
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
        "imports_ms": results.imports,
        "targets": {
            "create_ratio_le_0.8": create[f"p{DEFAULT_PARALLEL}"] <= TARGET_CREATE_RATIO,
            "noop_200_le_0.3s": noop[str(TARGET_NOOP_LANES)]["pass_s"] <= TARGET_NOOP_SECONDS,
            "noop_200_le_10x_floor": (
                noop[str(TARGET_NOOP_LANES)]["ratio_to_floor"] <= TARGET_NOOP_FLOOR_RATIO
            ),
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

    title = f"Lane controller benchmark: median of {reps} repetition(s); (min-max) wall seconds"
    out = [
        *h.header(title, info),
        h.quiet_line(results),
        "",
        f"(a) {CREATE_LANES} lanes from scratch: controller --once vs a bash loop of "
        "`git worktree add -b lane/lNNN <path> HEAD`",
    ]

    def create_row(label: str, key: str, ratio: str) -> list[str]:
        cpu = f"{med(key, 'cpu_s'):.2f}"
        return [label, wall(key), cpu, mib(key), ratio, _fails(results, key)]

    git50 = f"create/{CREATE_LANES}/git"
    rows = [create_row("git worktree add loop (bash -c)", git50, "1.00x")]
    git_p2 = f"create/{CREATE_LANES}/git-p{GIT_PARALLEL}"
    ratio_p2 = f"{derived['create_ratio_to_git_loop'][f'git-p{GIT_PARALLEL}']:.2f}x"
    rows.append(create_row(f"the same adds, {GIT_PARALLEL} at a time (xargs)", git_p2, ratio_p2))
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
        f"({ratio:.2f}x)",
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
    floors = derived["noop"][str(TARGET_NOOP_LANES)]["ratio_to_floor"]
    split = ", ".join(f"{k} {v:.0f} ms" for k, v in results.imports.items())
    out += [
        f"  marginal cost per extra lane: {slopes}",
        f"  imports of a no-op pass at {TARGET_NOOP_LANES} lanes (-X importtime, self): {split}",
        f"  target <= {TARGET_NOOP_SECONDS} s at {TARGET_NOOP_LANES} lanes: "
        f"{h.verdict(noop_target <= TARGET_NOOP_SECONDS)} ({noop_target:.3f} s); "
        f"<= {TARGET_NOOP_FLOOR_RATIO:.0f}x the floor: "
        f"{h.verdict(floors <= TARGET_NOOP_FLOOR_RATIO)} ({floors:.1f}x)",
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
    results: Results, derived: Mapping[str, Any], reps: int, info: Mapping[str, Any]
) -> dict[str, Any]:
    """Every raw number."""
    return {
        **results.to_json(),
        "machine": info,
        "repetitions": reps,
        "derived": derived,
        "failures": results.failures,
        "failed_lanes": results.failed_lanes,
        "setup_passes": results.setup_passes,
    }


def main(argv: Sequence[str] | None = None) -> int:
    """Run every measurement, print the tables, optionally write JSON."""
    args = h.options(__doc__).parse_args(argv)
    reps = h.repetitions(args)
    info = h.machine("git", "strace")
    info["environment_bytecode"] = {k: os.environ.get(k) for k in BYTECODE_SETTINGS}
    log(f"lane benchmark: {reps} repetition(s) on {info['cpus']} CPUs; warming up")
    results = Results()
    with h.private_bytecode("lanes-bench-"):
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
    h.at_end(info)
    derived = derive(results)
    payload = to_json(results, derived, reps, info)
    h.publish(report(results, derived, reps, info), payload, args.json)
    return 0


if __name__ == "__main__":
    sys.exit(main())
