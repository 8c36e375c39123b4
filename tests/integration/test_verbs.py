"""Everyday verbs with real git, tmux and processes: ``restart`` and ``wait``."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import psutil
import pytest

from tests.conftest import Repo, ended, wait_until
from tests.integration.test_lane_selection import as_json, ctl, task, workflow

pytestmark = pytest.mark.integration

AGENT = str(Path(__file__).resolve().parents[1] / "stubs" / "agent.py")


def declare(repo: Repo, socket: str, *docs: dict[str, Any]) -> None:
    """A Workspace on the test's tmux socket, then ``docs`` (JSON is YAML)."""
    workspace = {
        "apiVersion": "lanes/v1",
        "kind": "Workspace",
        "metadata": {"name": "test"},
        "spec": {"tmuxSocket": socket},
    }
    repo.write("all.yaml", "\n---\n".join(json.dumps(d) for d in (workspace, *docs)) + "\n")


def lane(name: str) -> dict[str, Any]:
    return {"apiVersion": "lanes/v1", "kind": "Lane", "metadata": {"name": name}}


def binding(lane_: str, participant: str, *args: str, **spec: Any) -> dict[str, Any]:
    spec = {
        "lane": lane_,
        "participant": participant,
        "command": [sys.executable, AGENT, *args],
        "stopGraceSeconds": 2,
        **spec,
    }
    return {
        "apiVersion": "lanes/v1",
        "kind": "Binding",
        "metadata": {"name": f"{lane_}-{participant}"},
        "spec": spec,
    }


def agents(repo: Repo, name: str = "a") -> dict[str, dict[str, Any]]:
    (found,) = [x for x in as_json(repo, "status")["lanes"] if x["name"] == name]
    return {a["participant"]: a for a in found["agents"]}


def events(repo: Repo, kind: str) -> list[dict[str, Any]]:
    out = repo.ctl("events", "-o", "json", "--limit", "1000").stdout
    return [e for e in map(json.loads, out.splitlines()) if e["kind"] == kind]


def background(repo: Repo, *args: str) -> subprocess.Popen[str]:
    """The real command line, running while the test does something else."""
    return subprocess.Popen(
        (sys.executable, "-m", "controller", *args),
        cwd=repo.path,
        env=repo.env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def finish(proc: subprocess.Popen[str], timeout: float = 120) -> tuple[int, str, str]:
    try:
        out, err = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        out, err = proc.communicate()
        raise AssertionError(f"still running after {timeout}s: {out} {err}") from None
    return proc.returncode, out, err


# -- restart ----------------------------------------------------------------------------------


@pytest.mark.parametrize("runtime", ["tmux", "process"])
def test_restart_stops_a_running_agent_and_starts_it_again(
    repo: Repo, tmux_socket: str, tmp_path: Path, runtime: str
) -> None:
    declare(
        repo,
        tmux_socket,
        lane("a"),
        lane("b"),
        binding("a", "one", "--sleep", str(tmp_path), runtime=runtime),
    )
    ctl(repo, "--once")
    first = agents(repo)["one"]
    old = first["pid"]
    assert first["state"] == "running" and psutil.pid_exists(old)
    declare(
        repo, tmux_socket, lane("a"), binding("a", "one", "--sleep", str(tmp_path), runtime=runtime)
    )
    report = as_json(repo, "restart", "a", "--reason", "stuck on a prompt")
    (one,) = report["agents"]
    assert (one["participant"], one["was"], one["state"], one["back"]) == (
        "one",
        "running",
        "running",
        True,
    )
    assert one["restarts"] == 1 and report["exitCode"] == 0 and report["lane"] == "a"
    assert [o["kind"] for o in report["outcomes"]] == ["stop-agent", "start-agent"]
    assert report["reason"] == "stuck on a prompt" and report["by"]
    wait_until(lambda: ended(old))
    again = agents(repo)["one"]
    assert again["state"] == "running" and again["pid"] != old and again["restarts"] == 1
    (asked,) = events(repo, "AgentRestartRequested")
    assert asked["reason"] == "stuck on a prompt" and asked["lane"] == "a"
    assert asked["data"]["by"] and asked["data"]["was"] == "running"
    assert asked["correlationId"] == report["correlationId"]
    stopped = events(repo, "AgentStopped")
    assert "restart requested by" in stopped[-1]["reason"]
    # The pass was over lane a alone: lane b, no longer declared, is still there.
    assert (repo.root / "b").is_dir()
    ctl(repo, "--once")
    assert not (repo.root / "b").exists()


def test_restart_brings_back_an_agent_its_policy_leaves_exited(
    repo: Repo, tmux_socket: str, tmp_path: Path
) -> None:
    declare(
        repo,
        tmux_socket,
        lane("a"),
        binding("a", "done", "--exit", "0", str(tmp_path)),
        binding("a", "never", "--exit", "3", str(tmp_path), restart="never"),
    )
    ctl(repo, "--once")
    wait_until(lambda: all(a["state"] == "dead" for a in agents(repo).values()))
    out = ctl(repo, "--once").stdout
    assert out.count("NotRestarted") == 2  # on-failure after exit 0, never after exit 3
    done = ctl(repo, "restart", "a", "done", "--reason", "run it once more")
    assert "done: was exited, started again" in done.stdout
    assert "Restarted 1 of 1 agent(s) of lane a." in done.stdout
    report = as_json(repo, "restart", "a", "never", "--reason", "after the fix")
    assert [(a["participant"], a["was"], a["back"]) for a in report["agents"]] == [
        ("never", "exited", True)
    ]
    kinds = [e["data"]["was"] for e in events(repo, "AgentRestartRequested")]
    assert kinds == ["exited", "exited"]


def test_restart_of_a_crash_looping_agent_gives_it_one_more_start(
    repo: Repo, tmux_socket: str, tmp_path: Path
) -> None:
    declare(
        repo,
        tmux_socket,
        lane("a"),
        binding(
            "a",
            "crashy",
            "--exit",
            "1",
            str(tmp_path),
            restart="always",
            crashLoop={"deaths": 2, "within": "10m"},
        ),
    )
    ctl(repo, "--once")
    wait_until(lambda: agents(repo)["crashy"]["state"] == "dead")
    ctl(repo, "--once")  # first death: restarted at once
    wait_until(lambda: agents(repo)["crashy"]["state"] == "dead")
    ctl(repo, "--once", code=2)  # second death: blocked
    assert agents(repo)["crashy"]["state"] == "blocked"
    report = as_json(repo, "restart", "a", "crashy", "--reason", "try once more")
    (crashy,) = report["agents"]
    assert (crashy["was"], crashy["back"], crashy["state"]) == ("blocked", True, "running")
    # Its deaths are kept: dying again within the window blocks it again at once.
    wait_until(lambda: agents(repo)["crashy"]["state"] == "dead")
    assert "CrashLoop" in ctl(repo, "--once", code=2).stdout
    assert agents(repo)["crashy"]["state"] == "blocked"


def test_restart_refuses_what_it_cannot_restart(repo: Repo, tmux_socket: str) -> None:
    declare(repo, tmux_socket, lane("a"), lane("idle"), binding("a", "one"), binding("a", "two"))
    unknown = ctl(repo, "restart", "nope", "--reason", "x", code=1)
    assert "lane nope is not declared (lanes: a, idle)" in unknown.stderr
    nobody = ctl(repo, "restart", "a", "three", "--reason", "x", code=1)
    assert "lane a has no participant three (participants: one, two)" in nobody.stderr
    empty = ctl(repo, "restart", "idle", "--reason", "x", code=1)
    assert "lane idle has no agents" in empty.stderr
    assert ctl(repo, "restart", "a", code=2).stderr.count("--reason") >= 1  # click: required
    assert events(repo, "AgentRestartRequested") == []
    assert repo.worktrees() == []  # refused before anything was done


def test_restart_refuses_a_run_task(repo: Repo) -> None:
    workflow(repo, [task("t", "--sleep", "60")])
    run = ctl(repo, "submit", "w").stdout.strip()
    done = ctl(repo, "restart", f"{run}--t", "--reason", "x", code=1)
    assert f"use `controller runs retry {run} --task t`" in done.stderr


# -- wait -------------------------------------------------------------------------------------


def test_wait_for_converged_changes_nothing_and_sees_another_pass(repo: Repo) -> None:
    repo.lanes("a", "b")
    once = as_json(repo, "wait", "--timeout", "0", code=1)
    assert once == {
        "reached": False,
        "condition": "converged",
        "state": {"actions": 2, "pending": 0, "drift": [], "refused": None, "blind": False},
    }
    assert repo.worktrees() == [] and events(repo, "LaneProvisioned") == []
    waiting = background(repo, "wait", "--timeout", "120")
    assert waiting.stderr is not None
    assert waiting.stderr.readline() == "waiting for converged (timeout 120s)...\n"
    assert waiting.stderr.readline() == "  2 action(s) to apply (a, b)\n"  # it looked once
    ctl(repo, "--once")
    code, out, err = finish(waiting)
    assert (code, out, err) == (0, "converged\n", "")


def test_wait_for_converged_sees_drift(repo: Repo) -> None:
    repo.lanes("hotfix", branch="main")  # main is checked out in the main checkout
    view = as_json(repo, "wait", "--timeout", "0", code=1)
    assert [d["type"] for d in view["state"]["drift"]] == ["BranchInUse"]


def test_wait_for_a_lane_with_its_agents(repo: Repo, tmux_socket: str, tmp_path: Path) -> None:
    declare(repo, tmux_socket, lane("a"), binding("a", "one", "--sleep", str(tmp_path)))
    waiting = background(repo, "wait", "--for", "lane=a", "-o", "json", "--timeout", "120")
    ctl(repo, "--once")
    code, out, err = finish(waiting)
    assert code == 0, out + err
    view = json.loads(out)
    assert (view["reached"], view["condition"]) == (True, "lane=a")
    assert view["state"]["phase"] == "running" and view["state"]["conditions"] == []
    assert view["state"]["agents"] == [
        {"binding": "a-one", "participant": "one", "state": "running"}
    ]
    assert err == ""  # JSON: the final state on stdout, no progress


def test_wait_times_out(repo: Repo) -> None:
    repo.lanes("a")
    started = time.monotonic()
    done = ctl(repo, "wait", "--for", "lane=a", "--timeout", "1.5", code=1)
    assert time.monotonic() - started >= 1.5
    assert done.stdout == "lane a: new; 1 action(s) to apply\n"
    assert "timed out after 1.5s waiting for lane=a" in done.stderr
    assert repo.worktrees() == []


def test_wait_for_what_does_not_exist(repo: Repo) -> None:
    repo.lanes("a")
    lost = ctl(repo, "wait", "--for", "lane=nope", code=1)
    assert "lane nope is neither declared nor in the inventory (lanes: a)" in lost.stderr
    assert "run zz is unknown" in ctl(repo, "wait", "--for", "run=zz", code=1).stderr
    assert (
        "expected converged, lane=NAME or run=NAME"
        in ctl(repo, "wait", "--for", "ready", code=2).stderr
    )


def test_wait_for_a_run_to_succeed_or_fail(repo: Repo) -> None:
    workflow(repo, [task("ok")], name="good")
    workflow(repo, [task("bad", "--exit", "3")], name="bad")
    good = ctl(repo, "submit", "good").stdout.strip()
    bad = ctl(repo, "submit", "bad").stdout.strip()
    pending = as_json(repo, "wait", "--for", f"run={good}", "--timeout", "0", code=1)
    assert (pending["reached"], pending["state"]["phase"]) == (False, "running")
    waits = [background(repo, "wait", "--for", f"run={r}", "--timeout", "120") for r in (good, bad)]
    for _ in range(20):
        if all(w.poll() is not None for w in waits):
            break
        repo.ctl("--once")
    (good_code, good_out, _), (bad_code, bad_out, _) = map(finish, waits)
    assert (good_code, good_out) == (0, f"run {good}: succeeded; tasks: 1 succeeded\n")
    assert (bad_code, bad_out) == (2, f"run {bad}: failed (task_failed); tasks: 1 failed\n")
