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
overhead per task and the controllers' peak RSS. Run: `.venv/bin/python bench/workflows.py`.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import psutil

sys.path.insert(0, str(Path(__file__).resolve().parent))
import harness

WIDE, DEEP = 10, 5
ENV_KEYS = ("GIT_AUTHOR_NAME", "GIT_AUTHOR_EMAIL", "GIT_COMMITTER_NAME", "GIT_COMMITTER_EMAIL")


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


def fresh_repo(base: Path, env: dict[str, str]) -> Path:
    repo = base / f"repo-{time.monotonic_ns()}"
    repo.mkdir()
    harness.run_checked(("git", "init", "-q", "-b", "main"), cwd=repo, env=env)
    for i in range(20):
        (repo / f"file{i}.txt").write_text(f"content {i}\n" * 50)
    harness.run_checked(("git", "add", "."), cwd=repo, env=env)
    harness.run_checked(("git", "commit", "-q", "-m", "initial"), cwd=repo, env=env)
    return repo


def baseline(repo: Path, env: dict[str, str], true: str) -> float:
    """The shell script's way: per level, add each worktree and start it; wait for the level."""
    lines = ["set -e"]
    for level in names():
        for task in level:
            lines.append(f"git worktree add -q -b runs/{task} wt/{task} HEAD")
            lines.append(f"(cd wt/{task} && {true}) &")
        lines.append("wait")
    script = repo.parent / f"baseline-{repo.name}.sh"
    script.write_text("\n".join(lines) + "\n")
    started = time.perf_counter()
    harness.run_checked(("bash", str(script)), cwd=repo, env=env)
    return time.perf_counter() - started


def baseline_with_git(repo: Path, env: dict[str, str], true: str) -> float:
    """The shell script doing the git work the controller does: merge each task's dependencies
    without a worktree (merge-tree + commit-tree), add its worktree there, run it, commit what it
    left; still no bookkeeping, no budget, no crash safety."""
    lines = ["set -e", "head=$(git rev-parse HEAD)"]
    for level, tasks in enumerate(names()):
        for i, task in enumerate(tasks):
            parents = deps(level, i)
            if parents:
                a, b = (f"$(git rev-parse runs/{p})" for p in parents)
                lines.append(f"tree=$(git merge-tree --write-tree {a} {b})")
                lines.append(f'base=$(git commit-tree "$tree" -p {a} -p {b} -m base)')
            else:
                lines.append('base="$head"')
            lines.append(f'git worktree add -q -b runs/{task} wt/{task} "$base"')
            lines.append(
                f"(cd wt/{task} && {true} && git add -A && "
                f"(git diff --cached --quiet || git commit -q -m left)) &"
            )
        lines.append("wait")
    script = repo.parent / f"baseline-git-{repo.name}.sh"
    script.write_text("\n".join(lines) + "\n")
    started = time.perf_counter()
    harness.run_checked(("bash", str(script)), cwd=repo, env=env)
    return time.perf_counter() - started


def controller(repo: Path, env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        (sys.executable, "-m", "controller", *args),
        cwd=repo,
        env=env,
        capture_output=True,
        text=True,
        check=False,
        timeout=harness.RUN_TIMEOUT,
    )


def with_submit_wait(repo: Path, env: dict[str, str], true: str) -> tuple[float, float]:
    (repo / "desired").mkdir()
    (repo / "desired" / "dag.yaml").write_text(workflow_yaml(true))
    before = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    started = time.perf_counter()
    done = controller(repo, env, "submit", "dag", "--wait")
    elapsed = time.perf_counter() - started
    if done.returncode != 0:
        raise RuntimeError(harness.first_problem(done.stdout + done.stderr))
    rss = max(before, resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss) / 1024
    return elapsed, rss


def with_daemon(repo: Path, env: dict[str, str], true: str) -> tuple[float, float]:
    (repo / "desired").mkdir()
    (repo / "desired" / "dag.yaml").write_text(workflow_yaml(true))
    daemon = subprocess.Popen(
        (sys.executable, "-m", "controller", "run", "--resync", "30", "--debounce", "0.05"),
        cwd=repo,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    peak = 0.0
    try:
        time.sleep(1.0)  # let it start and make its first (empty) pass
        started = time.perf_counter()
        run = controller(repo, env, "submit", "dag").stdout.strip()
        while True:
            peak = max(peak, psutil.Process(daemon.pid).memory_info().rss / 2**20)
            view = json.loads(controller(repo, env, "runs", "show", run, "-o", "json").stdout)
            if view["phase"] != "running":
                break
            time.sleep(0.05)
        elapsed = time.perf_counter() - started
        if view["phase"] != "succeeded":
            raise RuntimeError(f"the run ended {view['phase']}: {view['message']}")
    finally:
        daemon.terminate()
        daemon.wait(timeout=60)
    return elapsed, peak


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=3)
    options = parser.parse_args()
    true = shutil.which("true") or "/bin/true"
    env = {**os.environ, **dict.fromkeys(ENV_KEYS, "bench")}
    env = {k: v for k, v in env.items() if not k.startswith(("LANE_", "CONTROLLER_"))}
    results: dict[str, list[float]] = {
        "baseline": [],
        "baseline + git work": [],
        "submit --wait": [],
        "daemon": [],
    }
    rss: dict[str, float] = {"submit --wait": 0.0, "daemon": 0.0}
    with tempfile.TemporaryDirectory(prefix="bench-wf-") as tmp:
        base = Path(tmp)
        for _ in range(options.rounds):  # interleaved: a noisy moment hits every variant
            results["baseline"].append(baseline(fresh_repo(base, env), env, true))
            results["baseline + git work"].append(
                baseline_with_git(fresh_repo(base, env), env, true)
            )
            seconds, peak = with_submit_wait(fresh_repo(base, env), env, true)
            results["submit --wait"].append(seconds)
            rss["submit --wait"] = max(rss["submit --wait"], peak)
            seconds, peak = with_daemon(fresh_repo(base, env), env, true)
            results["daemon"].append(seconds)
            rss["daemon"] = max(rss["daemon"], peak)
    report(results, rss)
    return 0


def report(results: dict[str, list[float]], rss: dict[str, float]) -> None:
    floor = min(results["baseline"])
    tasks = WIDE * DEEP
    rows = []
    for name, times in results.items():
        best = min(times)
        ratio = best / floor
        over = (best - floor) / tasks * 1000
        peak = f"{rss[name]:.0f} MiB" if name in rss else "-"
        target = (
            "-" if name.startswith("baseline") else f"{harness.verdict(ratio <= 1.5)} (<= 1.5x)"
        )
        rows.append((name, f"{best:.2f} s", f"{ratio:.2f}x", f"{over:.0f} ms", peak, target))
    header = ("variant", "best wall", "ratio", "overhead/task", "peak RSS", "target")
    print(f"50-task DAG ({WIDE} wide, {DEEP} deep), best of {len(results['baseline'])} rounds")
    print("\n".join(harness.table(header, rows)))
    print(
        "all runs (s): "
        + "; ".join(f"{k}: " + ", ".join(f"{t:.2f}" for t in v) for k, v in results.items())
    )


if __name__ == "__main__":
    sys.exit(main())
