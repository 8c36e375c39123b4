"""The API's routes for workflow runs and the trigger queue, through a real ``controller run``
and real HTTP on its unix socket: submit, list, show and abort answer what the commands print
(and refuse with their messages), and none of them is served on the TCP listener."""

from __future__ import annotations

import http.client
import json
import sys
from pathlib import Path

import pytest

from tests.conftest import Repo, wait_until
from tests.integration.test_fast_commands import TALK, TASK, local, marker
from tests.integration.test_server import answering, daemon, free_port, get, worker

pytestmark = pytest.mark.integration

__all__ = ["marker"]  # the fixture, shared

SLOW = (
    "apiVersion: lanes/v1\nkind: ModelCatalog\nmetadata: {name: m}\nspec:\n  models:\n"
    "    - {name: sonnet, contextWindow: 200000, inputPerMTok: 3.0, outputPerMTok: 15.0}\n"
    "---\napiVersion: lanes/v1\nkind: Workflow\nmetadata: {name: slow}\nspec:\n  tasks:\n"
    "    - name: one\n      model: sonnet\n"
    f"      command: [{sys.executable}, {TASK}, --sleep, '600', --, MARKER]\n"
)


def ready(path: Path) -> None:
    wait_until(lambda: answering(path) and get(path, "/readyz")[0] == 200)


def refusal(repo: Repo, *args: str) -> tuple[int, str]:
    """What the command line says refusing: (1, its error line)."""
    code, _, err = local(repo, *args)
    return code, err


def test_runs_submit_list_show_and_abort_as_the_commands_do(
    repo: Repo, marker: str, tmp_path: Path
) -> None:
    repo.write("work.yaml", SLOW.replace("MARKER", marker))
    path = repo.path / ".lanes" / "controller.sock"
    with daemon(repo, log=tmp_path / "daemon.log"):
        ready(path)
        code, text = get(path, "/v1/runs", "POST", {"workflow": "slow"})
        assert (code, json.loads(text)["run"]) == (201, "slow-1")

        def show() -> dict[str, object]:
            code, text = get(path, "/v1/runs/slow-1")
            assert code == 200, text
            view: dict[str, object] = json.loads(text)
            return view

        wait_until(lambda: show()["tasks"][0]["phase"] == "running")  # type: ignore[index]
        assert show() == json.loads(local(repo, "runs", "show", "slow-1", "-o", "json")[1])
        listed = json.loads(get(path, "/v1/runs")[1])
        assert listed == json.loads(local(repo, "runs", "-o", "json")[1])
        assert [r["name"] for r in listed["runs"]] == ["slow-1"]
        assert get(path, "/v1/runs?format=text")[1] == local(repo, "runs")[1]
        assert (
            get(path, "/v1/runs/slow-1?format=text")[1] == local(repo, "runs", "show", "slow-1")[1]
        )

        for body, args in [
            ({"workflow": "slow", "name": "slow-1"}, ("submit", "slow", "--name", "slow-1")),
            ({"workflow": "nope"}, ("submit", "nope")),
        ]:
            code, text = get(path, "/v1/runs", "POST", body)
            assert (1, f"error: {json.loads(text)['error']}\n") == refusal(repo, *args)
            assert code == 400
        assert get(path, "/v1/runs", "POST", "[]")[0] == 400
        assert get(path, "/v1/runs", "POST", {"workflow": 1})[0] == 400
        code, text = get(path, "/v1/runs/nope")
        assert (1, f"error: {json.loads(text)['error']}\n") == refusal(repo, "runs", "show", "nope")
        assert code == 404
        assert get(path, "/v1/runs?desired=/elsewhere")[0] == 421

        code, text = get(path, "/v1/runs/slow-1/abort", "POST", {"reason": "enough"})
        assert (code, json.loads(text)) == (
            200,
            {"run": "slow-1", "message": "abort of slow-1 requested: enough"},
        )
        wait_until(lambda: show()["phase"] == "aborted")
        code, text = get(path, "/v1/runs/slow-1/abort", "POST", {"reason": "again"})
        args = ("abort", "slow-1", "--reason", "again")
        assert (code, f"error: {json.loads(text)['error']}\n") == (400, refusal(repo, *args)[1])
        assert get(path, "/v1/runs/slow-1/abort", "POST", {})[0] == 400


def test_triggers_answer_what_the_command_prints_and_stay_off_tcp(
    repo: Repo, marker: str, tmp_path: Path
) -> None:
    worker(repo, marker)
    repo.write("talk.yaml", TALK)
    assert repo.ctl("--once").returncode == 0
    assert repo.ctl("post", "t", "--as", "worker", "hello").returncode == 0
    assert repo.ctl("trigger", "human", "--thread", "t").returncode == 0
    path, port = repo.path / ".lanes" / "controller.sock", free_port()
    with daemon(repo, "--metrics-addr", f"127.0.0.1:{port}", log=tmp_path / "daemon.log"):
        ready(path)
        found = json.loads(get(path, "/v1/triggers")[1])
        assert found == json.loads(local(repo, "triggers", "-o", "json")[1])
        assert [(j["participant"], j["state"]) for j in found] == [("human", "done")]
        assert set(found[0]) >= {"id", "participant", "thread", "state", "attempts"}
        assert set(found[0]["attempts"][0]) >= {"at", "reason", "detail"}
        assert json.loads(get(path, "/v1/triggers?jobState=queued&jobState=dead")[1]) == []
        assert get(path, "/v1/triggers?jobState=bogus")[0] == 400
        assert get(path, "/v1/triggers?format=text")[1] == local(repo, "triggers")[1]
        assert get(path, "/v1/triggers?format=yaml")[0] == 400
        for method, target in [
            ("GET", "/v1/triggers"),
            ("GET", "/v1/runs"),
            ("POST", "/v1/runs"),
            ("GET", "/v1/runs/x"),
            ("POST", "/v1/runs/x/abort"),
            ("GET", "/v1/status?format=text"),
        ]:
            conn = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
            try:
                conn.request(method, target, body="{}" if method == "POST" else None)
                answer = conn.getresponse()
                assert answer.status in (400, 404, 405), (method, target, answer.status)
            finally:
                conn.close()
