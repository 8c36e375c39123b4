"""Workflow runs with real git, real processes and the real command line: a stand-in agent
(tests/stubs/task.py) writes files, fails, sleeps and prints each agent CLI's report.
"""

from __future__ import annotations

import itertools
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import psutil
import pytest

from tests.conftest import Repo, wait_until

pytestmark = pytest.mark.integration

TASK = str(Path(__file__).resolve().parents[1] / "stubs" / "task.py")
CATALOG = {
    "apiVersion": "lanes/v1",
    "kind": "ModelCatalog",
    "metadata": {"name": "models"},
    "spec": {
        "models": [
            {"name": "sonnet", "contextWindow": 200000, "inputPerMTok": 3.0, "outputPerMTok": 15.0},
            {
                "name": "small",
                "contextWindow": 2000,
                "maxOutputTokens": 256,
                "inputPerMTok": 1.0,
                "outputPerMTok": 2.0,
            },
        ]
    },
}


def task(name: str, *args: str, deps: tuple[str, ...] = (), **fields: Any) -> dict[str, Any]:
    """A task running the stand-in agent with ``args``."""
    spec: dict[str, Any] = {
        "name": name,
        "model": "sonnet",
        "command": [sys.executable, TASK, *args],
        **fields,
    }
    if deps:
        spec["dependsOn"] = list(deps)
    return spec


def workflow(repo: Repo, tasks: list[dict[str, Any]], name: str = "w", **spec: Any) -> None:
    """Declare the catalog and one workflow (JSON is YAML)."""
    doc = {
        "apiVersion": "lanes/v1",
        "kind": "Workflow",
        "metadata": {"name": name},
        "spec": {"tasks": tasks, **spec},
    }
    repo.write("catalog.yaml", json.dumps(CATALOG) + "\n")
    repo.write(f"workflow-{name}.yaml", json.dumps(doc) + "\n")


def submit(repo: Repo, *args: str, code: int = 0, timeout: float = 180) -> str:
    """``controller submit ... --wait``; the run's name."""
    done = repo.ctl("submit", *args, "--wait", timeout=timeout)
    assert done.returncode == code, done.stdout + done.stderr
    return done.stdout.splitlines()[0]


def show(repo: Repo, run: str) -> dict[str, Any]:
    done = repo.ctl("runs", "show", run, "-o", "json")
    assert done.returncode == 0, done.stderr
    result: dict[str, Any] = json.loads(done.stdout)
    return result


def tasks_of(repo: Repo, run: str) -> dict[str, dict[str, Any]]:
    return {t["name"]: t for t in show(repo, run)["tasks"]}


def records(path: Path) -> list[dict[str, Any]]:
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text().splitlines()]


def events(repo: Repo, kind: str) -> list[dict[str, Any]]:
    done = repo.ctl("events", "-o", "json")
    found = [json.loads(line) for line in done.stdout.splitlines()]
    return [e for e in found if e["kind"] == kind]


def test_linear_run_routes_messages_and_files_and_captures_usage(
    repo: Repo, tmp_path: Path
) -> None:
    rec = tmp_path / "c.jsonl"
    workflow(
        repo,
        [
            task(
                "a",
                "--format",
                "claude-json",
                "--input-tokens",
                "100",
                "--output-tokens",
                "10",
                "--cost",
                "0.5",
                "--message",
                "a says hi",
                "--commit",
                "A.md=from a",
                "--write",
                "loose-a.txt=not committed",
                "--",
                "{prompt}",
                prompt="do a",
                outputs=["A.md"],
            ),
            task(
                "b",
                "--format",
                "codex-jsonl",
                "--input-tokens",
                "200",
                "--output-tokens",
                "20",
                "--message",
                "b done",
                "--write",
                "B.md=from b",
                "--",
                "{prompt}",
                deps=("a",),
                prompt="do b",
                outputs=["B.md", "MISSING.md"],
            ),
            task(
                "c",
                "--format",
                "gemini-json",
                "--input-tokens",
                "300",
                "--output-tokens",
                "30",
                "--record",
                str(rec),
                "--prompt-file",
                "{promptFile}",
                deps=("b",),
                prompt="do c",
            ),
        ],
    )
    run = submit(repo, "w")
    assert run == "w-1"
    found = tasks_of(repo, run)
    assert {t["phase"] for t in found.values()} == {"succeeded"}
    assert [found[n]["usage"]["inputTokens"] for n in "abc"] == [100, 200, 300]
    assert found["a"]["usage"]["reportedCostUsd"] == 0.5
    assert found["b"]["usage"]["costUsd"] == pytest.approx((200 * 3 + 20 * 15) / 1e6)
    assert found["c"]["branch"] == f"runs/{run}/c"
    c_tree = Path(found["c"]["worktree"])
    for name in ("A.md", "loose-a.txt", "B.md"):  # committed and uncommitted work flows down
        assert (c_tree / name).exists(), name
    (started,) = [r for r in records(rec) if "start" in r]
    prompt = started["prompt"]
    assert prompt.startswith("do c") and "b done" in prompt and "from b" in prompt
    assert "a says hi" not in prompt  # only direct dependencies are routed
    assert found["b"]["outputs"]["MISSING.md"] is None
    assert started["env"]["CONTROLLER_RUN"] == run and started["env"]["CONTROLLER_TASK"] == "c"
    listing = json.loads(repo.ctl("runs", "-o", "json").stdout)["runs"]
    assert listing[0]["tasks"]["succeeded"] == 3 and listing[0]["phase"] == "succeeded"


def test_a_diamond_merges_every_dependency_without_a_worktree(repo: Repo) -> None:
    workflow(
        repo,
        [
            task("a", "--commit", "a.txt=a"),
            task("b", "--commit", "b.txt=b", deps=("a",)),
            task("c", "--write", "c.txt=c", deps=("a",)),
            task("d", deps=("b", "c")),
        ],
        maxParallel=2,
    )
    run = submit(repo, "w")
    found = tasks_of(repo, run)
    d_tree = Path(found["d"]["worktree"])
    assert sorted(p.name for p in d_tree.iterdir() if p.name != ".git") == [
        ".gitignore",
        "README.md",
        "a.txt",
        "b.txt",
        "c.txt",
    ]
    parents = repo.git("rev-list", "--parents", "-n", "1", found["d"]["baseCommit"]).split()[1:]
    assert sorted(parents) == sorted([found["b"]["headCommit"], found["c"]["headCommit"]])
    assert repo.git("status", "--porcelain", "--", ":!desired") == ""  # main checkout untouched


def test_every_usage_format_is_captured(repo: Repo) -> None:
    formats = ["claude-json", "claude-stream", "codex-jsonl", "gemini-json", "opencode-jsonl"]
    workflow(
        repo,
        [
            task(
                f"t{i}",
                "--format",
                fmt,
                "--input-tokens",
                str(1000 + i),
                "--output-tokens",
                str(10 + i),
                "--cost",
                "0.25",
                "--sleep",
                "0.2",
                usage="auto",
            )
            for i, fmt in enumerate(formats)
        ],
        maxParallel=5,
    )
    run = submit(repo, "w")
    found = tasks_of(repo, run)
    for i, fmt in enumerate(formats):
        usage = found[f"t{i}"]["usage"]
        assert (usage["inputTokens"], usage["outputTokens"]) == (1000 + i, 10 + i), fmt
    totals = json.loads(repo.ctl("usage", run, "-o", "json").stdout)
    assert totals["models"][0]["model"] == "sonnet"
    assert totals["runs"][0]["usage"]["inputTokens"] == sum(1000 + i for i in range(5))


def test_max_parallel_one_never_overlaps_and_priority_goes_first(
    repo: Repo, tmp_path: Path
) -> None:
    rec = tmp_path / "rec.jsonl"
    args = ("--record", str(rec), "--sleep", "0.3")
    workflow(
        repo,
        [task("low", *args, priority=0), task("high", *args, priority=5), task("mid", *args)],
        maxParallel=1,
    )
    run = submit(repo, "w")
    spans: dict[int, dict[str, Any]] = {}
    for r in records(rec):
        spans.setdefault(r["pid"], {}).update(r)
    ordered = sorted(spans.values(), key=lambda s: s["start"])
    assert [Path(s["cwd"]).name for s in ordered] == [f"{run}--high", f"{run}--low", f"{run}--mid"]
    for first, second in itertools.pairwise(ordered):
        assert first["end"] <= second["start"]


def test_fail_fast_stops_the_running_and_skips_the_pending(repo: Repo) -> None:
    workflow(
        repo,
        [
            task("bad", "--exit", "3"),
            task("slow", "--sleep", "30"),
            task("after", deps=("bad",)),
        ],
        maxParallel=2,
    )
    run = submit(repo, "w", code=2)
    found = tasks_of(repo, run)
    assert found["bad"]["phase"] == "failed" and found["bad"]["reason"] == "exit_status"
    assert found["slow"]["phase"] == "aborted" and found["slow"]["reason"] == "fail_fast"
    assert found["after"]["phase"] == "skipped"
    assert show(repo, run)["reason"] == "task_failed"
    wait_until(lambda: not _alive(repo, f"{run}--slow"))


def test_without_fail_fast_independent_branches_finish(repo: Repo) -> None:
    workflow(
        repo,
        [
            task("bad", "--exit", "1"),
            task("child", deps=("bad",)),
            task("other", "--sleep", "0.3"),
            task("other-child", deps=("other",)),
        ],
        maxParallel=2,
        failFast=False,
    )
    run = submit(repo, "w", code=2)
    phases = {n: t["phase"] for n, t in tasks_of(repo, run).items()}
    assert phases == {
        "bad": "failed",
        "child": "skipped",
        "other": "succeeded",
        "other-child": "succeeded",
    }


def test_an_error_in_the_agents_json_fails_even_with_exit_zero(repo: Repo) -> None:
    workflow(repo, [task("t", "--format", "claude-json", "--error", "--message", "broke")])
    run = submit(repo, "w", code=2)
    found = tasks_of(repo, run)["t"]
    assert (found["phase"], found["reason"], found["exitCode"]) == ("failed", "agent_error", 0)


def test_a_failed_task_is_retried_after_its_backoff(repo: Repo, tmp_path: Path) -> None:
    state = tmp_path / "starts"
    workflow(
        repo,
        [task("t", "--fail-first", "1", "--state", str(state), retries={"limit": 2, "backoff": 0})],
    )
    run = submit(repo, "w")
    found = tasks_of(repo, run)["t"]
    assert (found["phase"], found["attempt"]) == ("succeeded", 2)
    assert state.read_text() == "2"


def test_a_budget_exceeded_by_usage_fails_the_run(repo: Repo) -> None:
    workflow(
        repo,
        [
            task("spender", "--format", "claude-json", "--cost", "3.0", "--input-tokens", "10"),
            task("next", deps=("spender",)),
        ],
        budget={"maxCostUsd": 2.0},
    )
    run = submit(repo, "w", code=2)
    view = show(repo, run)
    assert view["reason"] == "budget_exceeded"
    assert {t["name"]: t["phase"] for t in view["tasks"]}["next"] == "skipped"


def test_a_dispatch_that_cannot_fit_the_budget_is_refused_before_it_runs(
    repo: Repo, tmp_path: Path
) -> None:
    rec = tmp_path / "rec.jsonl"
    workflow(repo, [task("t", "--record", str(rec))], budget={"maxCostUsd": 0.0001})
    run = submit(repo, "w", code=2)
    view = show(repo, run)
    assert view["reason"] == "budget_exceeded"
    assert view["tasks"][0]["attempt"] == 0 and not rec.exists()  # it never started


def test_a_huge_upstream_output_is_compacted_into_a_small_window(
    repo: Repo, tmp_path: Path
) -> None:
    rec = tmp_path / "rec.jsonl"
    workflow(
        repo,
        [
            task("big", "--format", "claude-json", "--big-message", "40000"),
            task(
                "reader",
                "--record",
                str(rec),
                "--prompt-file",
                "{promptFile}",
                deps=("big",),
                model="small",
                prompt="summarise",
            ),
        ],
    )
    run = submit(repo, "w")
    (started,) = [r for r in records(rec) if "start" in r]
    prompt = started["prompt"]
    assert "elided by the lane controller" in prompt
    assert len(prompt) <= (2000 - 256) * 4
    assert "line 0:" in prompt and "line 560:" in prompt  # head and tail kept
    dispatched = [e for e in events(repo, "TaskDispatched") if e["data"]["task"] == "reader"]
    assert dispatched[0]["data"]["compaction"], dispatched
    assert tasks_of(repo, run)["reader"]["phase"] == "succeeded"


def test_abort_stops_a_task_that_ignores_sigterm_and_keeps_its_lane(repo: Repo) -> None:
    workflow(repo, [task("stubborn", "--ignore-term", "--sleep", "120")])
    run = repo.ctl("submit", "w").stdout.strip()
    assert repo.ctl("--once").returncode == 0
    wait_until(lambda: _alive(repo, f"{run}--stubborn"))
    done = repo.ctl("abort", run, "--reason", "changed my mind", timeout=120)
    assert done.returncode == 0, done.stdout + done.stderr
    assert not _alive(repo, f"{run}--stubborn")
    view = show(repo, run)
    assert (view["phase"], view["reason"]) == ("aborted", "user_abort")
    assert view["tasks"][0]["phase"] == "aborted"
    assert Path(view["tasks"][0]["worktree"]).is_dir()  # lanes stay after the run
    again = repo.ctl("abort", run, "--reason", "twice")
    assert again.returncode == 1 and "already ended" in again.stderr
    assert repo.ctl("abort", "nope", "--reason", "x").returncode == 1


def test_sigkill_of_the_controller_at_any_point_never_starts_a_task_twice(
    repo: Repo, tmp_path: Path
) -> None:
    rec = tmp_path / "rec.jsonl"

    def crashy(name: str, *deps: str) -> dict[str, Any]:
        args = ("--record", str(rec), "--commit", f"{name}.txt=x", "--sleep", "0.1")
        return task(name, *args, deps=deps)

    workflow(
        repo,
        [crashy("a"), crashy("b", "a"), crashy("c", "a"), crashy("d", "b", "c"), crashy("e")],
        maxParallel=2,
    )
    run = repo.ctl("submit", "w").stdout.strip()
    for delay in (0.05, 0.2, 0.4, 0.1, 0.3, 0.6, 0.15, 0.5):
        proc = subprocess.Popen(
            (sys.executable, "-m", "controller", "--once"),
            cwd=repo.path,
            env=repo.env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        time.sleep(delay)
        proc.send_signal(signal.SIGKILL)
        proc.wait()
    wait_until(lambda: _settle(repo, run), timeout=120, every=0.3)
    starts = [Path(r["cwd"]).name for r in records(rec) if "start" in r]
    assert sorted(starts) == sorted(f"{run}--{t}" for t in "abcde")  # each exactly once
    dispatched = [e["data"]["task"] for e in events(repo, "TaskDispatched")]
    assert sorted(dispatched) == list("abcde")
    assert show(repo, run)["phase"] == "succeeded"


def _settle(repo: Repo, run: str) -> bool:
    repo.ctl("--once")
    return bool(show(repo, run)["phase"] == "succeeded")


def test_template_drift_is_reported_and_the_run_keeps_its_snapshot(
    repo: Repo, tmp_path: Path
) -> None:
    rec = tmp_path / "rec.jsonl"
    workflow(repo, [task("t", "--record", str(rec), "--", "{prompt}", prompt="first")])
    run = repo.ctl("submit", "w").stdout.strip()
    assert not show(repo, run)["templateDrift"]
    workflow(repo, [task("t", "--record", str(rec), "--", "{prompt}", prompt="second")])
    assert show(repo, run)["templateDrift"]
    wait_until(lambda: _settle(repo, run), timeout=60, every=0.3)
    (started,) = [r for r in records(rec) if "start" in r]
    assert started["argv"][-1] == "first"


def test_a_workflow_run_document_creates_its_run_once(repo: Repo) -> None:
    workflow(repo, [task("t")])
    repo.write(
        "run.yaml",
        "apiVersion: lanes/v1\nkind: WorkflowRun\nmetadata: {name: nightly}\nspec: {workflow: w}\n",
    )
    assert repo.ctl("--once").returncode == 0
    wait_until(lambda: _settle(repo, "nightly"), timeout=60, every=0.3)
    assert repo.ctl("--once").returncode == 0
    created = events(repo, "RunCreated")
    assert [e["data"]["run"] for e in created] == ["nightly"]
    workflow(repo, [task("t")], name="other")
    repo.write(
        "run.yaml",
        "apiVersion: lanes/v1\nkind: WorkflowRun\nmetadata: {name: nightly}\n"
        "spec: {workflow: other}\n",
    )
    out = repo.ctl("plan").stdout
    assert "runs are immutable" in out
    (repo.desired / "run.yaml").unlink()
    assert repo.ctl("--once").returncode == 0
    assert show(repo, "nightly")["phase"] == "succeeded"  # history stays


def test_runs_retry_reruns_only_what_failed(repo: Repo, tmp_path: Path) -> None:
    rec = tmp_path / "rec.jsonl"
    state = tmp_path / "starts"
    workflow(
        repo,
        [
            task("ok", "--record", str(rec)),
            task("flaky", "--record", str(rec), "--fail-first", "1", "--state", str(state)),
            task("after", "--record", str(rec), deps=("flaky",)),
        ],
        failFast=False,
        maxParallel=2,
    )
    run = submit(repo, "w", code=2)
    assert {n: t["phase"] for n, t in tasks_of(repo, run).items()} == {
        "ok": "succeeded",
        "flaky": "failed",
        "after": "skipped",
    }
    done = repo.ctl("runs", "retry", run)
    assert done.returncode == 0, done.stderr
    wait_until(lambda: _settle(repo, run), timeout=60, every=0.3)
    starts = [Path(r["cwd"]).name.split("--")[1] for r in records(rec) if "start" in r]
    assert sorted(starts) == ["after", "flaky", "flaky", "ok"]
    assert tasks_of(repo, run)["flaky"]["attempt"] == 2


def test_runs_clean_removes_the_lanes_and_keeps_the_branches(repo: Repo) -> None:
    workflow(repo, [task("t", "--write", "left.txt=unsaved")])
    run = submit(repo, "w")
    tree = Path(tasks_of(repo, run)["t"]["worktree"])
    assert tree.is_dir()
    assert repo.ctl("runs", "clean", run).returncode == 0
    assert not tree.exists()
    assert f"runs/{run}/t" in repo.branches()
    assert repo.git("show", f"runs/{run}/t:left.txt") == "unsaved"  # committed at its exit


def test_a_merge_conflict_blocks_the_task_until_resolved(repo: Repo) -> None:
    workflow(
        repo,
        [
            task("a", "--commit", "same.txt=from a"),
            task("b", "--commit", "same.txt=from b"),
            task("c", deps=("a", "b")),
        ],
        maxParallel=2,
    )
    run = repo.ctl("submit", "w").stdout.strip()
    wait_until(lambda: _task_phase(repo, run, "c") == "blocked", timeout=60, every=0.3)
    c = tasks_of(repo, run)["c"]
    assert c["reason"] == "merge_conflict" and "same.txt" in c["detail"]
    done = repo.ctl("runs", "resolve", run, "c", "--base", f"runs/{run}/a", "--reason", "take a")
    assert done.returncode == 0, done.stderr
    wait_until(lambda: _settle(repo, run), timeout=60, every=0.3)
    assert (Path(tasks_of(repo, run)["c"]["worktree"]) / "same.txt").read_text() == "from a\n"


def _task_phase(repo: Repo, run: str, name: str) -> str:
    repo.ctl("--once")
    return str(tasks_of(repo, run)[name]["phase"])


def test_a_manual_task_reports_its_usage_itself(repo: Repo) -> None:
    code = (
        "import subprocess, sys; sys.exit(subprocess.run([sys.executable, '-m', 'controller', "
        "'usage', 'add', '--input-tokens', '7', '--output-tokens', '3', '--cost-usd', '0.02'])"
        ".returncode)"
    )
    workflow(
        repo,
        [
            {
                "name": "m",
                "model": "sonnet",
                "command": [sys.executable, "-c", code],
                "usage": "manual",
            }
        ],
    )
    run = submit(repo, "w")
    usage = tasks_of(repo, run)["m"]["usage"]
    assert (usage["inputTokens"], usage["outputTokens"], usage["costUsd"]) == (7, 3, 0.02)


def _alive(repo: Repo, lane: str) -> bool:
    """A live process runs in ``lane``'s worktree of this test's repository."""
    mine = str(repo.path)
    for proc in psutil.process_iter(["cmdline", "status", "cwd"]):
        try:
            cwd = proc.info["cwd"] or ""
        except psutil.Error:
            continue
        alive = proc.info["status"] != psutil.STATUS_ZOMBIE
        if alive and cwd.startswith(mine) and cwd.endswith(lane):
            return True
    return False


def test_plan_shows_a_dispatch_with_its_estimate(repo: Repo) -> None:
    workflow(repo, [task("t", "--", "{prompt}", prompt="hello")], budget={"maxCostUsd": 20})
    run = repo.ctl("submit", "w").stdout.strip()
    out = repo.ctl("plan").stdout
    assert f"+ {run}--t: dispatch t of run {run}: sonnet, est. $0.12, $20.00 left" in out
    assert f"create worktree {repo.root / (run + '--t')} on new branch runs/{run}/t" in out
    assert os.environ.get("CONTROLLER_RUN") is None


def test_streaming_usage_stops_the_run_while_the_task_still_runs(repo: Repo) -> None:
    workflow(
        repo,
        [
            task(
                "hungry",
                "--format",
                "claude-stream",
                "--input-tokens",
                "5000",
                "--output-tokens",
                "10",
                "--sleep",
                "60",
                usage="claude-stream",
                model="small",
            )
        ],
        budget={"maxTokens": 2000},
    )
    run = submit(repo, "w", code=2, timeout=120)
    view = show(repo, run)
    assert (view["phase"], view["reason"]) == ("failed", "budget_exceeded")
    hungry = view["tasks"][0]
    assert (hungry["phase"], hungry["reason"]) == ("aborted", "budget_exceeded")
    assert hungry["usage"]["inputTokens"] == 5000  # tallied while it ran
    assert not _alive(repo, f"{run}--hungry")


def test_placeholders_and_the_text_views(repo: Repo, tmp_path: Path) -> None:
    rec = tmp_path / "rec.jsonl"
    workflow(
        repo,
        [
            task("a", "--record", str(rec), "--", "{sessionId}", "{taskBudgetUsd}", "{{x}}"),
            task("b", deps=("a",)),
        ],
        budget={"maxCostUsd": 3},
    )
    run = submit(repo, "w")
    (started,) = [r for r in records(rec) if "start" in r]
    session, left, literal = started["argv"][-3:]
    assert session == tasks_of(repo, run)["a"]["sessionId"] and len(session) == 36
    assert left == "3.00" and literal == "{x}"
    text = repo.ctl("runs", "show", run).stdout
    assert f"Run:       {run}" in text and "└─ b" in text and "succeeded" in text
    listing = repo.ctl("runs").stdout
    assert listing.splitlines()[0].split() == [
        "RUN",
        "WORKFLOW",
        "PHASE",
        "TASKS",
        "TOKENS",
        "COST",
        "STARTED",
    ]
    assert all(line == line.rstrip() for line in listing.splitlines())
