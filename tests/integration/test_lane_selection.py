"""``--lane``: a pass that acts on some lanes only, with real git, tmux and processes."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import Repo
from tests.integration import test_wakes as wakes_test

pytestmark = pytest.mark.integration

TASK = str(Path(__file__).resolve().parents[1] / "stubs" / "task.py")


def ctl(repo: Repo, *args: str, code: int = 0) -> subprocess.CompletedProcess[str]:
    done = repo.ctl(*args)
    assert done.returncode == code, done.stdout + done.stderr
    return done


def as_json(repo: Repo, *args: str, code: int = 0) -> Any:
    return json.loads(ctl(repo, *args, "-o", "json", code=code).stdout)


def test_lane_selection_never_touches_other_lanes(repo: Repo) -> None:
    repo.lanes("a", "old")
    ctl(repo, "--once")
    repo.lanes("a", "new")
    plan = as_json(repo, "plan", "--lane", "new")
    assert [(a["kind"], a["lane"]) for a in plan["actions"]] == [("provision", "new")]
    assert [(a["kind"], a["lane"]) for a in plan["unselected"]] == [("remove", "old")]
    assert plan["selection"] == ["new"]
    text = ctl(repo, "--once", "--lane", "new").stdout
    assert "Held back, not selected by --lane: old (1 action)." in text
    assert (repo.root / "new").is_dir() and (repo.root / "old").is_dir()
    assert ctl(repo, "plan", "--detailed-exitcode", "--lane", "new", "--lane", "a").returncode == 0
    ctl(repo, "plan", "--detailed-exitcode", code=2)
    ctl(repo, "run", "--once", "--lane", "old")
    assert not (repo.root / "old").exists()
    assert "No changes. The world matches" in ctl(repo, "plan").stdout


def test_lane_selection_keeps_the_guards(repo: Repo) -> None:
    repo.lanes("a", "b", "c")
    ctl(repo, "--once")
    repo.write(
        "workspace.yaml",
        "apiVersion: lanes/v1\nkind: Workspace\n"
        "metadata: {name: default}\nspec: {maxDeletionsPerPass: 1}\n",
    )
    repo.lanes("a")
    out = ctl(repo, "--once", "--lane", "b", "--lane", "c").stdout
    assert out.count("ok: removed") == 1 and "MaxDeletionsPerPass" in out
    repo.lanes()
    refused = ctl(repo, "--once", "--lane", "a", code=1)
    assert "refusing" in refused.stdout and (repo.root / "a").is_dir()


def test_an_unknown_selected_lane_is_an_error(repo: Repo) -> None:
    repo.lanes("a", "b")
    for args in (("--once",), ("plan",), ("run", "--once")):
        done = ctl(repo, *args, "--lane", "a", "--lane", "zz", code=1)
        assert "--lane zz: no such lane" in done.stderr and "lanes: a, b" in done.stderr
    assert repo.worktrees() == []
    assert "--lane goes with --once" in ctl(repo, "run", "--lane", "a", code=1).stderr
    assert "--lane goes with --once" in ctl(repo, "--lane", "a", "plan", code=1).stderr


def test_lane_selection_of_runs(repo: Repo) -> None:
    repo.lanes("a")
    workflow(repo, [task("t")])
    run = ctl(repo, "submit", "w").stdout.strip()
    view = as_json(repo, "--once", "--lane", "a")
    assert [a["kind"] for a in view["plan"]["unselected"]] == ["dispatch"]
    assert not (repo.root / f"{run}--t").exists()
    assert as_json(repo, "runs", "show", run)["tasks"][0]["phase"] == "pending"
    view = as_json(repo, "--once", "--lane", f"{run}--t")
    assert "dispatch" in [a["kind"] for a in view["plan"]["actions"]]
    assert (repo.root / f"{run}--t").is_dir()


def test_a_lane_pass_wakes_nobody(repo: Repo, tmux_socket: str, tmp_path: Path) -> None:
    record = wakes_test.setup(repo, tmux_socket, tmp_path)
    wakes_test.post(repo, "human", "please review")
    assert as_json(repo, "--once", "--lane", "a")["wakes"] == []
    assert wakes_test.lines(record) == []
    assert [w["result"] for w in wakes_test.wakes(repo)] == ["delivered"]


def task(name: str, *args: str) -> dict[str, Any]:
    return {"name": name, "model": "m", "command": [sys.executable, TASK, *args]}


def workflow(repo: Repo, tasks: list[dict[str, Any]], name: str = "w") -> None:
    catalog = {
        "apiVersion": "lanes/v1",
        "kind": "ModelCatalog",
        "metadata": {"name": "models"},
        "spec": {
            "models": [
                {"name": "m", "contextWindow": 200000, "inputPerMTok": 1.0, "outputPerMTok": 2.0}
            ]
        },
    }
    doc = {
        "apiVersion": "lanes/v1",
        "kind": "Workflow",
        "metadata": {"name": name},
        "spec": {"tasks": tasks},
    }
    repo.write("catalog.yaml", json.dumps(catalog) + "\n")
    repo.write(f"workflow-{name}.yaml", json.dumps(doc) + "\n")
