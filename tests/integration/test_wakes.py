"""Waking agents in real tmux panes: the trigger pipeline with its safeguards and fallback."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from controller.core.safeguards import collision
from tests.conftest import Repo, wait_until
from tests.integration.test_agents import AGENT, agents, events, once, workspace

pytestmark = pytest.mark.integration


def setup(
    repo: Repo,
    socket: str,
    tmp_path: Path,
    *,
    policy: str = "",
    binding: str = "",
    thread_members: str = "[bot, human]",
) -> Path:
    """A lane with a stand-in agent `bot` that records what it reads; thread `review`."""
    record = tmp_path / "bot.jsonl"
    workspace(repo, socket)
    repo.lanes("a")
    extra = f"\n  {binding}" if binding else ""
    repo.write(
        "wakes.yaml",
        f"""\
apiVersion: lanes/v1
kind: Binding
metadata: {{name: a-bot}}
spec:
  lane: a
  participant: bot
  command: [{sys.executable}, {AGENT}, --quiet, --record, {record}]{extra}
---
apiVersion: lanes/v1
kind: Thread
metadata: {{name: review}}
spec: {{participants: {thread_members}}}
---
apiVersion: lanes/v1
kind: TriggerPolicy
metadata: {{name: default}}
spec:
  {_policy(policy)}
""",
    )
    once(repo)
    wait_until(lambda: record.exists())
    return record


def _policy(extra: str) -> str:
    """The test's policy lines; collision checks are off (quiet 0) unless the test sets them."""
    quick = "collision: {quietSeconds: 0, recheckSeconds: 1, maxDeferSeconds: 30}"
    parts = [extra] if extra else []
    if "collision" not in extra:
        parts.insert(0, quick)
    return "\n  ".join(parts)


def lines(record: Path) -> list[str]:
    entries = [json.loads(x) for x in record.read_text().splitlines()] if record.exists() else []
    return [e["line"] for e in entries if "line" in e]


def post(repo: Repo, who: str, text: str, thread: str = "review") -> None:
    done = repo.ctl("post", thread, "--as", who, text)
    assert done.returncode == 0, done.stderr


def wakes(repo: Repo) -> list[dict[str, Any]]:
    done = repo.ctl("--once", "-o", "json")
    assert done.returncode in (0, 2), done.stderr
    result: list[dict[str, Any]] = json.loads(done.stdout)["wakes"]
    return result


def test_wake_is_delivered_with_the_template_and_no_body(
    repo: Repo, tmux_socket: str, tmp_path: Path
) -> None:
    record = setup(repo, tmux_socket, tmp_path)
    post(repo, "human", "TOP-SECRET body please review")
    (wake,) = wakes(repo)
    assert (wake["result"], wake["reason"]) == ("delivered", "delivered")
    wait_until(lambda: lines(record))
    (line,) = lines(record)
    assert (
        line
        == "You have 1 unread message(s) in review from human. Run: controller read review --as bot"
    )
    assert "TOP-SECRET" not in record.read_text()
    assert wakes(repo) == []  # already woken about it: no second wake
    read = repo.ctl("read", "review", "--as", "bot")
    assert "TOP-SECRET body please review" in read.stdout
    post(repo, "human", "one more")
    assert [w["result"] for w in wakes(repo)] == ["delivered"]


def test_own_message_wakes_nobody(repo: Repo, tmux_socket: str, tmp_path: Path) -> None:
    record = setup(repo, tmux_socket, tmp_path)
    post(repo, "bot", "note to self")
    assert wakes(repo) == []
    assert lines(record) == []


def test_non_members_are_refused(repo: Repo, tmux_socket: str, tmp_path: Path) -> None:
    setup(repo, tmux_socket, tmp_path)
    done = repo.ctl("post", "review", "--as", "stranger", "hi")
    assert done.returncode == 1 and "not a member of thread review" in done.stderr
    done = repo.ctl("read", "review", "--as", "stranger")
    assert done.returncode == 1


# Long enough that a loaded machine starts the next command within it: typing must still
# count as recent when the controller looks (tmux stamps activity in whole seconds).
QUIET = 8
COLLISION = f"collision: {{quietSeconds: {QUIET}, recheckSeconds: 1, maxDeferSeconds: 60}}"


def test_busy_terminal_defers_then_delivers(repo: Repo, tmux_socket: str, tmp_path: Path) -> None:
    record = setup(repo, tmux_socket, tmp_path, policy=COLLISION)
    pane = agents(repo)["bot"]["pane"]
    post(repo, "human", "review please")
    # Someone types in the agent's terminal (a half-written line, not submitted).
    subprocess.run(
        ("tmux", "-L", tmux_socket, "send-keys", "-t", pane, "-l", "typing.."),
        env=repo.env,
        check=True,
    )
    (first,) = wakes(repo)
    assert (first["result"], first["reason"]) == ("deferred", "collision_deferred")
    wait_until(lambda: idle_seconds(repo, tmux_socket, pane) >= QUIET)
    (second,) = wakes(repo)
    assert second["result"] == "delivered"
    wait_until(lambda: lines(record))
    assert lines(record)[0].startswith("typing..You have 1 unread")


def test_rate_limit_holds_the_second_wake(repo: Repo, tmux_socket: str, tmp_path: Path) -> None:
    setup(repo, tmux_socket, tmp_path, policy="rateLimits: {perParticipant: {count: 1, per: 1h}}")
    post(repo, "human", "first")
    assert [w["result"] for w in wakes(repo)] == ["delivered"]
    post(repo, "human", "second")
    (held,) = wakes(repo)
    assert (held["result"], held["reason"]) == ("deferred", "rate_limited_participant")
    forced = repo.ctl(
        "trigger", "bot", "--thread", "review", "--force", "--reason", "urgent fix", "-o", "json"
    )
    assert json.loads(forced.stdout)["result"] == "delivered"
    audit = [e for e in events(repo) if e["kind"] == "TriggerForced"]
    assert audit and audit[0]["reason"] == "urgent fix" and audit[0]["data"]["by"]


def test_loop_block_and_audited_unblock(repo: Repo, tmux_socket: str, tmp_path: Path) -> None:
    setup(repo, tmux_socket, tmp_path, policy="loop: {maxNoProgressTurns: 2}")
    post(repo, "human", "1")
    assert [w["result"] for w in wakes(repo)] == ["delivered"]
    post(repo, "human", "2")  # the bot did nothing since its last wake: 1 turn without progress
    assert [w["result"] for w in wakes(repo)] == ["delivered"]
    post(repo, "human", "3")  # 2 turns without progress: blocked
    (blocked,) = wakes(repo)
    assert (blocked["result"], blocked["reason"]) == ("refused", "loop_no_progress")
    status = json.loads(repo.ctl("status", "-o", "json").stdout)
    (bot,) = [p for p in status["participants"] if p["name"] == "bot"]
    assert bot["blocked"] is True and "loop_no_progress" in bot["reason"]
    post(repo, "human", "4")
    assert [w["reason"] for w in wakes(repo)] == ["participant_blocked"]
    done = repo.ctl("unblock", "bot", "--reason", "looked at it")
    assert done.returncode == 0 and "wakes" in done.stdout
    assert [e for e in events(repo) if e["kind"] == "ParticipantUnblocked"]
    post(repo, "human", "5")
    assert [w["result"] for w in wakes(repo)] == ["delivered"]


def test_progress_keeps_the_loop_guard_quiet(repo: Repo, tmux_socket: str, tmp_path: Path) -> None:
    setup(repo, tmux_socket, tmp_path, policy="loop: {maxNoProgressTurns: 2}")
    for i in range(4):
        post(repo, "human", f"round {i}")
        assert [w["result"] for w in wakes(repo)] == ["delivered"]
        (repo.root / "a" / f"work{i}.txt").write_text("progress")  # the agent changed files


def test_dead_window_is_resumed_then_woken(repo: Repo, tmux_socket: str, tmp_path: Path) -> None:
    resumed = tmp_path / "resumed.jsonl"
    setup(
        repo,
        tmux_socket,
        tmp_path,
        binding=f"restart: never\n  resume: [{sys.executable}, {AGENT}, --quiet, --record, "
        f"{resumed}]",
    )
    os.kill(agents(repo)["bot"]["pid"], signal.SIGKILL)
    wait_until(lambda: agents(repo)["bot"]["state"] == "dead")
    post(repo, "human", "are you there?")
    (first,) = wakes(repo)
    assert (first["result"], first["reason"]) == ("queued", "resumed")
    wait_until(lambda: resumed.exists())
    due = datetime.fromisoformat(first["until"])  # the wake follows once the session is up
    wait_until(lambda: datetime.now(UTC) >= due)
    (second,) = wakes(repo)
    assert second["result"] == "delivered"
    wait_until(lambda: lines(resumed))
    assert lines(resumed)[0].startswith("You have 1 unread message(s) in review")


def test_unmanaged_participant_is_fallback_required(
    repo: Repo, tmux_socket: str, tmp_path: Path
) -> None:
    setup(repo, tmux_socket, tmp_path)
    post(repo, "bot", "human, please decide")
    done = repo.ctl("trigger", "human", "--thread", "review", "-o", "json")
    envelope = json.loads(done.stdout)
    assert (envelope["result"], envelope["reason"]) == (
        "fallback_required",
        "fallback_required_unmanaged",
    )
    assert [e for e in events(repo) if e["kind"] == "FallbackRequired"]


def test_control_bytes_in_a_template_never_reach_the_terminal(
    repo: Repo, tmux_socket: str, tmp_path: Path
) -> None:
    template = 'template: "wake {participant}\\e]52;c;aGk=\\a\\e[2J\\u0003 now\\r\\n"'
    record = setup(repo, tmux_socket, tmp_path, policy=template)
    post(repo, "human", "x")
    assert [w["result"] for w in wakes(repo)] == ["delivered"]
    wait_until(lambda: lines(record))
    assert lines(record) == ["wake bot now"]


def test_triggers_json_lists_jobs_with_attempts(
    repo: Repo, tmux_socket: str, tmp_path: Path
) -> None:
    setup(repo, tmux_socket, tmp_path)
    post(repo, "human", "x")
    wakes(repo)
    (job,) = json.loads(repo.ctl("triggers", "-o", "json").stdout)
    assert {"id", "participant", "thread", "state", "attempts"} <= set(job)
    assert job["state"] == "done" and job["attempts"][0]["reason"] == "delivered"
    status = json.loads(repo.ctl("status", "-o", "json").stdout)
    assert status["triggers"] == {"done": 1}


def test_daemon_wakes_quickly_and_rechecks_deferrals(
    repo: Repo, tmux_socket: str, tmp_path: Path
) -> None:
    record = setup(repo, tmux_socket, tmp_path, policy=COLLISION)
    pane = agents(repo)["bot"]["pane"]
    log = tmp_path / "daemon.log"
    daemon = start_daemon(repo, log)
    try:
        wait_until(lambda: "pass" in logged(log), timeout=60)
        wait_until(lambda: idle_seconds(repo, tmux_socket, pane) >= QUIET)
        started = time.monotonic()
        post(repo, "human", "first")
        wait_until(lambda: len(lines(record)) == 1, timeout=20)
        assert time.monotonic() - started < 5  # not the 120 s resync
        wait_until(lambda: past_own_echo(repo))
        subprocess.run(
            ("tmux", "-L", tmux_socket, "send-keys", "-t", pane, "-l", "busy"),
            env=repo.env,
            check=True,
        )
        post(repo, "human", "second")
        wait_until(lambda: len(lines(record)) == 2, timeout=30)  # deferred, then re-checked
        kinds = [
            a["reason"]
            for j in json.loads(repo.ctl("triggers", "-o", "json").stdout)
            for a in j["attempts"]
        ]
        assert "collision_deferred" in kinds
    finally:
        daemon.send_signal(signal.SIGTERM)
        daemon.wait(timeout=30)
    assert daemon.returncode == 0, log.read_text()


def start_daemon(repo: Repo, log: Path) -> subprocess.Popen[bytes]:
    """`controller run` logging JSON lines to ``log``, which the test reads as it goes."""
    argv = ("run", "--resync", "120", "--debounce", "0.1", "-o", "json")
    with log.open("wb") as out:
        return subprocess.Popen(
            (sys.executable, "-m", "controller", *argv),
            cwd=repo.path,
            env=repo.env,
            stdout=subprocess.DEVNULL,
            stderr=out,
        )


def logged(log: Path) -> list[str]:
    """The events the daemon logged so far (``pass`` once a pass is done)."""
    complete = log.read_text().split("\n")[:-1]  # a line still being written is not one yet
    return [json.loads(x).get("event", "") for x in complete if x.startswith("{")]


def idle_seconds(repo: Repo, socket: str, pane: str) -> float:
    """Seconds since tmux last saw activity in the pane's window (it stamps whole seconds)."""
    argv = ("tmux", "-L", socket, "display-message", "-p", "-t", pane, "#{window_activity}")
    done = subprocess.run(
        argv, env=repo.env, capture_output=True, text=True, check=False, timeout=10
    )
    stamp = done.stdout.strip()
    return time.time() - int(stamp) if done.returncode == 0 and stamp.isdigit() else 0.0


def past_own_echo(repo: Repo) -> bool:
    """Whether activity tmux stamps now falls after the echo window of the last delivery.

    The stub may read the wake before the delivery is recorded: no delivery yet is not past it.
    """
    jobs = json.loads(repo.ctl("triggers", "-o", "json").stdout)
    attempts = [a for j in jobs for a in j["attempts"] if a["verdict"] == "delivered"]
    if not attempts:
        return False
    last = max(datetime.fromisoformat(a["at"]) for a in attempts)
    return int(time.time()) > (last + collision.ECHO_AFTER).timestamp()


def test_process_runtime_participant_is_not_typed_into_or_duplicated(
    repo: Repo, tmux_socket: str, tmp_path: Path
) -> None:
    setup(
        repo,
        tmux_socket,
        tmp_path,
        binding=f"runtime: process\n  resume: [{sys.executable}, {AGENT}, --quiet]",
    )
    post(repo, "human", "hello")
    (wake,) = wakes(repo)
    assert (wake["result"], wake["reason"]) == ("fallback_required", "fallback_required_no_session")
    assert wakes(repo) == []  # dealt with: no new job every pass
    from tests.conftest import alive_with

    assert len(alive_with(str(tmp_path))) == 2  # one supervisor and its agent: none resumed


def test_refused_wakes_do_not_churn_jobs(repo: Repo, tmux_socket: str, tmp_path: Path) -> None:
    setup(repo, tmux_socket, tmp_path, policy="loop: {maxNoProgressTurns: 1}")
    post(repo, "human", "1")
    assert [w["result"] for w in wakes(repo)] == ["delivered"]
    post(repo, "human", "2")
    assert [w["reason"] for w in wakes(repo)] == ["loop_no_progress"]
    for _ in range(3):
        assert wakes(repo) == []
    assert len(json.loads(repo.ctl("triggers", "-o", "json").stdout)) == 2


def test_post_from_inside_a_lane_uses_the_workspace_desired_state(
    repo: Repo, tmux_socket: str, tmp_path: Path
) -> None:
    setup(repo, tmux_socket, tmp_path)
    env = {
        **repo.env,
        "LANE_PARTICIPANT": "bot",
        "LANE_NAME": "a",
        "CONTROLLER_DESIRED": str(repo.desired),
    }  # what the agent is given
    done = subprocess.run(
        (sys.executable, "-m", "controller", "post", "review", "from the lane"),
        cwd=repo.root / "a",
        env=env,
        capture_output=True,
        text=True,
        check=False,
        timeout=60,
    )
    assert done.returncode == 0, done.stderr
    assert "as bot" in done.stdout
