"""Workflow runs against a plain shell script doing the same DAG, measured in one run.

A 50-task DAG, 10 wide and 5 deep (each task after the first level depends on two tasks of the
level before), of stand-in agents that exit at once (`true`):

- baseline: a shell script that, level by level, adds a worktree per task (`git worktree add`),
  starts the task's process in it, and waits for the level;
- baseline + git work: the same script also doing the git work the controller does (each
  dependent's base merged without a worktree, what a task left committed): the share of the
  gap that is git, not the controller;
- `controller submit --wait`;
- the daemon (`controller run`) with `controller submit`, polled until the run ends.

Prints wall times, the ratio to the baseline (target <= 1.5x, aim <= 1.2x), the scheduling
overhead per task and the controllers' peak RSS. Run: `.venv/bin/python bench/workflows.py`
(`--rounds N`, default 3; `--quick`: 1 round; `--json FILE`: every raw number). The rig
(repositories, environment, measuring, quietness, the report's frame) is bench/harness.py.
"""

from __future__ import annotations

import contextlib
import json
import shutil
import subprocess
import sys
import time
from collections.abc import Callable, Iterator, Mapping
from typing import Any

import harness as h  # bench/harness.py (scripts run as `python bench/<name>.py`)
import psutil
from harness import Repo, Sample

WIDE, DEEP = 10, 5
TARGET_RATIO = 1.5
FILES = 20
DAEMON_TIMEOUT = 300.0
POLL = 0.05


def names() -> list[list[str]]:
    return [[f"t{level}x{i}" for i in range(WIDE)] for level in range(DEEP)]


def deps(level: int, i: int) -> list[str]:
    if level == 0:
        return []
    return [f"t{level - 1}x{i}", f"t{level - 1}x{(i + 1) % WIDE}"]


def workflow_yaml(true: str) -> str:
    tasks = [
        {"name": f"t{level}x{i}", "model": "m", "command": [true], "dependsOn": deps(level, i)}
        for level in range(DEEP)
        for i in range(WIDE)
    ]
    catalog = {
        "apiVersion": "lanes/v1",
        "kind": "ModelCatalog",
        "metadata": {"name": "models"},
        "spec": {
            "models": [
                {"name": "m", "contextWindow": 100000, "inputPerMTok": 1, "outputPerMTok": 1}
            ]
        },
    }
    flow = {
        "apiVersion": "lanes/v1",
        "kind": "Workflow",
        "metadata": {"name": "dag"},
        "spec": {"maxParallel": WIDE, "tasks": tasks},
    }
    return json.dumps(catalog) + "\n---\n" + json.dumps(flow) + "\n"


@contextlib.contextmanager
def fresh_repo() -> Iterator[Repo]:
    """A new repository with 20 committed files; ``desired/`` still empty."""
    with h.fresh_repo(Repo, 0, prefix="bench-wf-") as repo:
        for i in range(FILES):
            (repo.path / f"file{i}.txt").write_text(f"content {i}\n" * 50)
        h.run_checked(("git", "add", "."), cwd=repo.path, env=repo.env)
        h.run_checked(("git", "commit", "-q", "-m", "files"), cwd=repo.path, env=repo.env)
        yield repo


def checked(ran: h.Ran) -> Sample:
    """The sample of a run that must succeed."""
    if ran.sample.rc != 0:
        raise RuntimeError(h.first_problem(ran.output))
    return ran.sample


def script(repo: Repo, lines: list[str]) -> Sample:
    """Measure a bash script run in the repository."""
    path = repo.scratch / "baseline.sh"
    path.write_text("\n".join(lines) + "\n")
    return checked(repo.measure(("bash", str(path))))


def baseline(repo: Repo, true: str) -> Sample:
    """The shell script's way: per level, add each worktree and start it; wait for the level."""
    lines = ["set -e"]
    for level in names():
        for task in level:
            lines.append(f"git worktree add -q -b runs/{task} wt/{task} HEAD")
            lines.append(f"(cd wt/{task} && {true}) &")
        lines.append("wait")
    return script(repo, lines)


def baseline_with_git(repo: Repo, true: str) -> Sample:
    """The shell script doing the git work the controller does: merge each task's dependencies
    without a worktree (merge-tree + commit-tree), add its worktree there, run it, commit what it
    left; still no bookkeeping, no budget, no crash safety."""
    lines = ["set -e", "head=$(git rev-parse HEAD)"]
    for level, tasks in enumerate(names()):
        for i, task in enumerate(tasks):
            lines += _task_with_git(task, deps(level, i), true)
        lines.append("wait")
    return script(repo, lines)


def _task_with_git(task: str, parents: list[str], true: str) -> list[str]:
    if parents:
        a, b = (f"$(git rev-parse runs/{p})" for p in parents)
        base = [
            f"tree=$(git merge-tree --write-tree {a} {b})",
            f'base=$(git commit-tree "$tree" -p {a} -p {b} -m base)',
        ]
    else:
        base = ['base="$head"']
    return [
        *base,
        f'git worktree add -q -b runs/{task} wt/{task} "$base"',
        f"(cd wt/{task} && {true} && git add -A && "
        f"(git diff --cached --quiet || git commit -q -m left)) &",
    ]


def with_submit_wait(repo: Repo, true: str) -> Sample:
    """``controller submit dag --wait``: passes until the run ends, in one process."""
    repo.write("dag.yaml", workflow_yaml(true))
    return checked(repo.measure(repo.controller("submit", "dag", "--wait")))


def with_daemon(repo: Repo, true: str) -> Sample:
    """The daemon runs the DAG: from ``controller submit`` until ``runs show`` says it ended.

    Peak RSS is the daemon's, sampled with psutil while it runs; CPU is the daemon's own.
    """
    repo.write("dag.yaml", workflow_yaml(true))
    log = repo.scratch / "daemon.log"
    argv = repo.controller("run", "--resync", "30", "--debounce", "0.05", "-o", "json")
    with log.open("wb") as out:
        daemon = subprocess.Popen(argv, cwd=repo.path, env=repo.env, stdout=out, stderr=out)
    try:
        h.wait_for(lambda: '"event": "pass"' in log.read_text(), 60, log.read_text)
        h.neighbours.quiet()
        started = time.perf_counter()
        run = h.run_checked(repo.controller("submit", "dag"), cwd=repo.path, env=repo.env)
        peak = _until_ended(repo, run.strip(), psutil.Process(daemon.pid))
        elapsed = time.perf_counter() - started
        cpu = sum(psutil.Process(daemon.pid).cpu_times()[:2])
    finally:
        daemon.terminate()
        daemon.wait(timeout=60)
    return Sample(wall_s=elapsed, rc=0, maxrss_kib=peak, cpu_s=cpu, others=0.0)


def _until_ended(repo: Repo, run: str, daemon: psutil.Process) -> int:
    """Poll the run until it ends (it must succeed); the daemon's peak RSS meanwhile, KiB."""
    peak = 0
    deadline = time.perf_counter() + DAEMON_TIMEOUT
    argv = repo.controller("runs", "show", run, "-o", "json")
    while time.perf_counter() < deadline:
        peak = max(peak, daemon.memory_info().rss // 1024)
        view = json.loads(h.run_checked(argv, cwd=repo.path, env=repo.env))
        if view["phase"] == "succeeded":
            return peak
        if view["phase"] != "running":
            raise RuntimeError(f"the run ended {view['phase']}: {view['message']}")
        time.sleep(POLL)
    raise RuntimeError(f"the run did not end within {DAEMON_TIMEOUT:.0f} s")


VARIANTS: Mapping[str, Callable[[Repo, str], Sample]] = {
    "baseline": baseline,
    "baseline + git work": baseline_with_git,
    "submit --wait": with_submit_wait,
    "daemon": with_daemon,
}


def report(results: h.Results, rounds: int, info: Mapping[str, Any]) -> str:
    """The table: best wall time of each variant against the best baseline."""
    floor = min(s.wall_s for s in results.samples["baseline"])
    rows = []
    for name, samples in results.samples.items():
        best = min(s.wall_s for s in samples)
        ratio = best / floor
        over = (best - floor) / (WIDE * DEEP) * 1000
        controller = not name.startswith("baseline")
        peak = f"{max(s.maxrss_kib for s in samples) / 1024:.0f} MiB" if controller else "-"
        target = f"{h.verdict(ratio <= TARGET_RATIO)} (<= {TARGET_RATIO}x)" if controller else "-"
        rows.append([name, f"{best:.2f} s", f"{ratio:.2f}x", f"{over:.0f} ms", peak, target])
    header = ["variant", "best wall", "ratio", "overhead/task", "peak RSS", "target"]
    title = f"50-task DAG ({WIDE} wide, {DEEP} deep), best of {rounds} rounds"
    every = "; ".join(
        f"{k}: " + ", ".join(f"{s.wall_s:.2f}" for s in v) for k, v in results.samples.items()
    )
    lines = [*h.header(title, info), h.quiet_line(results), "", *h.table(header, rows)]
    return "\n".join([*lines, f"all runs (s): {every}"])


def main(argv: list[str] | None = None) -> int:
    """Run every variant, interleaved, ``--rounds`` times; print the table."""
    parser = h.options(__doc__, reps=False)
    parser.add_argument("--rounds", type=int, default=3, help="rounds of every variant")
    args = parser.parse_args(argv)
    h.require(parser, "git", "bash")
    rounds = 1 if args.quick else max(1, args.rounds)
    true = shutil.which("true") or "/bin/true"
    info = h.machine("git")
    results = h.Results()
    with h.private_bytecode("workflows-bench-"):
        h.warm_bytecode()
        try:
            for n in range(rounds):  # interleaved: a noisy moment hits every variant
                for name, variant in VARIANTS.items():
                    h.log(f"[round {n + 1}/{rounds}] {name}")
                    with fresh_repo() as repo:
                        results.add(name, variant(repo, true))
        except RuntimeError as exc:
            h.log(f"benchmark aborted: {exc}")
            return 1
    h.at_end(info)
    payload = {**results.to_json(), "machine": info, "rounds": rounds}
    h.publish(report(results, rounds, info), payload, args.json)
    return 0


if __name__ == "__main__":
    sys.exit(main())
