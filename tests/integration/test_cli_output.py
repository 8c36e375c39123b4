"""What the commands print, through the real command line: the fields a restart names, colours
(``--color``, ``NO_COLOR``, ``FORCE_COLOR``), tables without trailing spaces, the event log's
filters and ``-f --limit``, ``attach`` of a lane that is not declared.
"""

from __future__ import annotations

import json
import os
import re
import selectors
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.conftest import Repo, alive_with, reap, wait_until

pytestmark = pytest.mark.integration

ANSI = re.compile(r"\x1b\[[0-9;]*m")
TASK = str(Path(__file__).resolve().parents[1] / "stubs" / "task.py")


@pytest.fixture
def marker(tmp_path: Path) -> Iterator[str]:
    """A string in the argv of every agent a test starts; they are all killed afterwards."""
    text = str(tmp_path / "marker")
    yield text
    reap(text)


def worker(repo: Repo, marker: str, *, command: str = "a", env: str = "one") -> None:
    """Lane `a` with a `runtime: process` agent that sleeps (no tmux needed)."""
    repo.write(
        "a.yaml",
        "apiVersion: lanes/v1\nkind: Lane\nmetadata: {name: a}\n---\n"
        "apiVersion: lanes/v1\nkind: Binding\nmetadata: {name: a-worker}\nspec:\n"
        "  lane: a\n  participant: worker\n  runtime: process\n  stopGraceSeconds: 2\n"
        f"  command: [{sys.executable}, -c, 'import time; time.sleep(600)', {marker}, {command}]\n"
        f"  env: {{API_KEY: {env}, MODE: dev}}\n",
    )


def ok(done: subprocess.CompletedProcess[str]) -> str:
    assert done.returncode == 0, done.stdout + done.stderr
    return done.stdout


# -- a changed binding ------------------------------------------------------------------------


def test_a_restart_names_the_changed_fields_and_env_keys_never_values(
    repo: Repo, marker: str
) -> None:
    worker(repo, marker, env="first-secret")
    ok(repo.ctl("--once"))
    worker(repo, marker, command="b", env="second-secret")
    shown = ok(repo.ctl("plan"))
    assert "  ~ a: restart worker: command, env (API_KEY) changed\n" in shown
    assert "      # the binding changed\n" in shown
    plan = json.loads(ok(repo.ctl("plan", "-o", "json")))
    (halt,) = [a for a in plan["actions"] if a["kind"] == "stop-agent"]
    assert halt["changes"] == [
        {"field": "command", "keys": []},
        {"field": "env", "keys": ["API_KEY"]},
    ]
    applied = ok(repo.ctl("--once"))
    assert "~ a: ok: stopped worker (terminated)" in applied
    stopped = ok(repo.ctl("events", "--kind", "AgentStopped", "-o", "json"))
    assert json.loads(stopped)["data"]["changed"] == ["command", "env (API_KEY)"]
    every = ok(repo.ctl("events", "-o", "json")) + ok(repo.ctl("plan", "-o", "json"))
    assert "secret" not in every
    assert "secret" not in (repo.path / ".lanes" / "state.db").read_bytes().decode("latin-1")


# -- colours ----------------------------------------------------------------------------------


def colored(repo: Repo, *args: str, **env: str) -> bool:
    """Whether the command's output has colour codes (with these environment variables)."""
    base = {k: v for k, v in repo.env.items() if k not in ("NO_COLOR", "FORCE_COLOR")}
    done = subprocess.run(
        (sys.executable, "-m", "controller", *args),
        cwd=repo.path,
        env={**base, **env},
        capture_output=True,
        text=True,
        check=False,
        timeout=120,
    )
    assert done.returncode in (0, 2), done.stdout + done.stderr
    return bool(ANSI.search(done.stdout + done.stderr))


@pytest.mark.parametrize(
    ("args", "env", "expected"),
    [
        ((), {}, False),  # not a terminal
        (("--color", "always"), {}, True),
        (("--color", "never"), {"FORCE_COLOR": "1"}, False),
        (("--color", "auto"), {"FORCE_COLOR": "1"}, True),
        ((), {"FORCE_COLOR": "1"}, True),
        ((), {"NO_COLOR": "1", "FORCE_COLOR": "1"}, False),  # NO_COLOR wins under auto
        (("--color", "always"), {"NO_COLOR": "1"}, True),  # the option wins over both
        ((), {"NO_COLOR": ""}, False),  # empty means unset
        (("-o", "json", "--color", "always"), {}, False),  # JSON never
    ],
)
def test_color_is_chosen_by_option_then_environment_then_terminal(
    repo: Repo, args: tuple[str, ...], env: dict[str, str], expected: bool
) -> None:
    repo.lanes("a")
    assert colored(repo, "plan", *args, **env) is expected  # plan symbols
    assert colored(repo, "status", *args, **env) is expected  # rich tables


def test_colors_reach_the_pass_and_can_follow_the_command_name(repo: Repo) -> None:
    repo.lanes("a")
    assert colored(repo, "--color", "always", "--once")
    repo.lanes("a", "b")
    assert not colored(repo, "--once", "--color", "never", FORCE_COLOR="1")


# -- tables -----------------------------------------------------------------------------------


def test_no_table_or_list_prints_trailing_spaces(repo: Repo, marker: str) -> None:
    worker(repo, marker)
    repo.write(
        "talk.yaml",
        "apiVersion: lanes/v1\nkind: Thread\nmetadata: {name: t}\n"
        "spec: {participants: [worker, human]}\n---\n"
        "apiVersion: lanes/v1\nkind: ModelCatalog\nmetadata: {name: m}\nspec:\n  models:\n"
        "    - {name: sonnet, contextWindow: 200000, inputPerMTok: 3.0, outputPerMTok: 15.0}\n"
        "---\napiVersion: lanes/v1\nkind: Workflow\nmetadata: {name: w}\nspec:\n  tasks:\n"
        f"    - {{name: one, model: sonnet, command: [{sys.executable}, {TASK}, {marker}]}}\n",
    )
    ok(repo.ctl("--once"))
    ok(repo.ctl("post", "t", "--as", "worker", "hello"))
    ok(repo.ctl("trigger", "human", "--thread", "t"))  # a job for `triggers` and status
    run = ok(repo.ctl("submit", "w", "--wait", timeout=180)).splitlines()[0]
    commands = [
        ("status",),
        ("status", "--color", "always"),
        ("plan",),
        ("events",),
        ("events", "--color", "always"),
        ("threads",),
        ("triggers",),
        ("runs",),
        ("runs", "show", run),
        ("usage",),
        ("usage", run),
        ("validate",),
    ]
    for args in commands:
        shown = ok(repo.ctl(*args))
        assert shown.strip(), args
        padded = [line for line in ANSI.sub("", shown).splitlines() if line != line.rstrip()]
        assert padded == [], (args, padded)
    status = ok(repo.ctl("status"))
    assert "PARTICIPANT  MANAGED  UNREAD  BLOCKED" in status
    assert "trigger jobs: 1 done  (controller triggers)" in status


# -- events -----------------------------------------------------------------------------------


def test_events_by_kind_and_since_in_text_and_json(repo: Repo) -> None:
    repo.lanes("a", "b")
    ok(repo.ctl("--once"))
    kinds = ["--kind", "LaneProvisioned"]
    text = ok(repo.ctl("events", *kinds)).splitlines()
    assert len(text) == 2 and all(" LaneProvisioned " in line for line in text)
    lines = ok(repo.ctl("events", *kinds, "--kind", "PhaseChanged", "-o", "json")).splitlines()
    assert {json.loads(line)["kind"] for line in lines} == {"LaneProvisioned", "PhaseChanged"}
    assert len(lines) == 4
    assert ok(repo.ctl("events", "--since", "1h")).count("\n") == 4
    assert (
        ok(repo.ctl("events", "--since", "2000-01-01T00:00:00Z", "--limit", "1")).count("\n") == 1
    )
    assert ok(repo.ctl("events", "--since", "2999-01-01")) == ""
    assert ok(repo.ctl("events", "--lane", "a", "--kind", "LaneProvisioned")).count("\n") == 1
    bad = repo.ctl("events", "--since", "yesterday")
    assert bad.returncode == 2
    assert "neither a duration (30s, 10m, 2h, 1d) nor an ISO 8601 time" in bad.stderr


class Follower:
    """``controller events -f ...`` running in the background, read line by line."""

    def __init__(self, repo: Repo, *args: str) -> None:
        self.proc = subprocess.Popen(
            (sys.executable, "-m", "controller", "events", "-f", *args),
            cwd=repo.path,
            env=repo.env,
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
            text=True,
        )
        assert self.proc.stdout is not None
        os.set_blocking(self.proc.stdout.fileno(), False)
        self.selector = selectors.DefaultSelector()
        self.selector.register(self.proc.stdout, selectors.EVENT_READ)
        self.lines: list[str] = []
        self._buffer = ""

    def read(self) -> list[str]:
        """Every complete line printed so far."""
        assert self.proc.stdout is not None
        for _ in self.selector.select(timeout=0.05):
            self._buffer += self.proc.stdout.read() or ""
        *done, self._buffer = self._buffer.split("\n")
        self.lines += done
        return self.lines

    def stop(self) -> None:
        self.proc.send_signal(signal.SIGINT)
        self.proc.wait(timeout=30)
        self.selector.close()
        assert self.proc.stdout is not None
        self.proc.stdout.close()


def test_follow_prints_the_last_n_then_new_events(repo: Repo) -> None:
    repo.lanes("a", "b", "c")
    ok(repo.ctl("--once"))  # six events: provisioned and ready, per lane
    newest = ok(repo.ctl("events", "--limit", "2")).splitlines()
    follower = Follower(repo, "--limit", "2")
    try:
        wait_until(lambda: len(follower.read()) >= 2, timeout=60)
        repo.lanes("a", "b", "c", "d")
        ok(repo.ctl("--once"))
        wait_until(lambda: len(follower.read()) >= 4, timeout=60)
        assert follower.read()[:2] == newest
        assert [line.split()[2] for line in follower.read()[2:4]] == ["d", "d"]
    finally:
        follower.stop()


def test_follow_with_limit_0_prints_only_new_events(repo: Repo) -> None:
    lanes = ["a", "b", "c"]
    repo.lanes(*lanes)
    ok(repo.ctl("--once"))
    follower = Follower(repo, "--limit", "0")
    more = iter("defghijk")

    def printed() -> bool:
        # Until the follower shows something, make news (it may start after the first pass).
        if not follower.read():
            lanes.append(next(more))
            repo.lanes(*lanes)
            ok(repo.ctl("--once"))
        return bool(follower.read())

    try:
        wait_until(printed, timeout=120, every=0.2)
        assert {line.split()[2] for line in follower.read()} <= set(lanes[3:])
    finally:
        follower.stop()


# -- attach -----------------------------------------------------------------------------------


def test_attach_to_a_lane_that_is_not_declared_says_so(repo: Repo) -> None:
    repo.lanes("auth", "billing")
    done = repo.ctl("attach", "nope")
    assert done.returncode == 1
    assert done.stderr == "error: lane nope is not declared (declared lanes: auth, billing)\n"
    declared = repo.ctl("attach", "auth")
    assert declared.returncode == 1
    assert declared.stderr == "error: no agent recorded in lane auth\n"


def test_no_agent_outlives_these_tests(marker: str) -> None:
    wait_until(lambda: alive_with(marker) == [], timeout=10)


# -- shell completion -------------------------------------------------------------------------


def completion(shell_kind: str, **env: str) -> subprocess.CompletedProcess[str]:
    """What ``controller`` prints with ``_CONTROLLER_COMPLETE`` set, as a shell asks."""
    program = Path(sys.executable).parent / "controller"
    return subprocess.run(
        (str(program),),
        env={**os.environ, "_CONTROLLER_COMPLETE": shell_kind, **env},
        capture_output=True,
        text=True,
        check=False,
        timeout=60,
    )


@pytest.mark.parametrize(
    ("shell_kind", "found"),
    [
        ("bash_source", "complete -o nosort -F _controller_completion controller"),
        ("zsh_source", "#compdef controller"),
        ("fish_source", "complete --no-files --command controller"),
    ],
)
def test_completion_scripts_are_produced(shell_kind: str, found: str) -> None:
    done = completion(shell_kind)
    assert done.returncode == 0, done.stderr
    assert found in done.stdout
    assert "_CONTROLLER_COMPLETE=" in done.stdout  # the script asks the program back


def test_bash_loads_the_script_and_completes_commands_options_and_choices() -> None:
    script = completion("bash_source").stdout
    loaded = subprocess.run(
        ("bash", "--noprofile", "--norc", "-c", f"{script}\ncomplete -p controller"),
        capture_output=True,
        text=True,
        check=False,
        timeout=60,
    )
    assert loaded.returncode == 0, loaded.stderr
    asked = {
        "controller ev": ("1", "plain,events"),
        "controller events --ki": ("2", "plain,--kind"),
        "controller status --color ": ("3", "plain,always"),
        "controller plan -o ": ("3", "plain,json"),
    }
    for words, (cword, answer) in asked.items():
        done = completion("bash_complete", COMP_WORDS=words, COMP_CWORD=cword)
        assert answer in done.stdout.splitlines(), (words, done.stdout)
