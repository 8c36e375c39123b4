"""`controller status --watch` in a real terminal (a pane of a private tmux server): it shows a
lane declared and made while it watches (with its agent and unread messages), puts what needs
attention on top, and gives the terminal back as it found it on `q`, Ctrl-C and SIGTERM, with
exit 0.
"""

from __future__ import annotations

import json
import re
import shlex
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import Repo, wait_until

pytestmark = pytest.mark.integration

SESSION = "watch"


def tmux(repo: Repo, socket: str, *args: str) -> str:
    done = subprocess.run(
        ("tmux", "-L", socket, *args),
        env=repo.env,
        capture_output=True,
        text=True,
        check=True,
        timeout=10,
    )
    return done.stdout


def screen(repo: Repo, socket: str, *options: str) -> str:
    return tmux(repo, socket, "capture-pane", "-p", "-t", SESSION, *options)


@pytest.fixture
def shell(repo: Repo, tmux_socket: str) -> str:
    """A plain shell in a 200x50 pane of the test's tmux server, in the repository."""
    # No start-up files and a fixed prompt: the pane shows what the test typed and got.
    env = {**repo.env, "PS1": "$ ", "NO_COLOR": "1", "TERM": "xterm-256color"}
    repo.env = env
    argv = ("bash", "--norc", "--noprofile")
    tmux(repo, tmux_socket, "new-session", "-d", "-x", "200", "-y", "50", "-s", SESSION, *argv)
    tmux(repo, tmux_socket, "set-option", "-t", SESSION, "remain-on-exit", "on")
    return tmux_socket


def alternate_screen(repo: Repo, socket: str) -> bool:
    """Whether the pane shows the terminal's alternate screen (the view draws there)."""
    return tmux(repo, socket, "display-message", "-p", "-t", SESSION, "#{alternate_on}") == "1\n"


def type_line(repo: Repo, socket: str, line: str) -> None:
    tmux(repo, socket, "send-keys", "-t", SESSION, "-l", line)
    tmux(repo, socket, "send-keys", "-t", SESSION, "Enter")


def start_watch(repo: Repo, socket: str, tmp_path: Path, *options: str) -> None:
    """Run the view from the shell; afterwards the shell says its exit status and whether the
    terminal's settings (`stty -g`) are the ones from before."""
    before, after = tmp_path / "stty-before", tmp_path / "stty-after"
    argv = [sys.executable, "-m", "controller", "status", "--watch", "--interval", "0.3"]
    watch = shlex.join([*argv, "--desired", str(repo.desired), *options])
    type_line(
        repo,
        socket,
        f"stty -g > {before}; {watch}; echo exit=$?; stty -g > {after}; "
        f'cmp -s {before} {after} && echo tty-""restored',
    )
    wait_until(lambda: "q quits" in screen(repo, socket), timeout=60)
    assert alternate_screen(repo, socket)


def more(marker: Path) -> str:
    """An agent without tmux on lane beta (its argv names the test's folder, so that it is
    reaped), and a thread between it and a person."""
    sleeper = [sys.executable, "-c", "import time; time.sleep(600)", str(marker)]
    binding = {"lane": "beta", "participant": "worker", "runtime": "process", "command": sleeper}
    return (
        "apiVersion: lanes/v1\nkind: Binding\nmetadata: {name: beta-worker}\n"
        f"spec: {json.dumps(binding)}\n---\n"
        "apiVersion: lanes/v1\nkind: Thread\nmetadata: {name: review}\n"
        "spec: {participants: [human, worker]}\n"
    )


def once(repo: Repo) -> None:
    done = repo.ctl("--once")
    assert done.returncode == 0, done.stdout + done.stderr


def test_watch_shows_a_new_lane_its_agent_and_messages_and_quits_on_q(
    repo: Repo, shell: str, tmp_path: Path
) -> None:
    repo.lanes("alpha")
    once(repo)
    start_watch(repo, shell, tmp_path)
    wait_until(lambda: re.search(r"^alpha +ready", screen(repo, shell), re.M), timeout=60)
    assert "nothing needs attention" in screen(repo, shell)
    assert "\x1b[" not in screen(repo, shell, "-e")  # NO_COLOR is set

    repo.lanes("alpha", "beta")
    repo.write("more.yaml", more(tmp_path))
    once(repo)
    posted = repo.ctl("post", "review", "--as", "human", "please look")
    assert posted.returncode == 0, posted.stderr
    shown = [
        r"^beta +running ",  # the lane, with its agent started
        r"^beta +worker +process +running ",  # the agents table
        r"^worker +yes +review 1 ",  # the participants table, with the unread message
    ]
    wait_until(lambda: all(re.search(p, screen(repo, shell), re.M) for p in shown), timeout=60)

    tmux(repo, shell, "send-keys", "-t", SESSION, "q")
    wait_until(lambda: "tty-restored" in screen(repo, shell), timeout=30)
    assert "exit=0" in screen(repo, shell)
    assert not alternate_screen(repo, shell)
    type_line(repo, shell, "echo usable-$((6 * 7))")
    wait_until(lambda: "usable-42" in screen(repo, shell))


def test_what_needs_attention_comes_first_and_ctrl_c_quits(
    repo: Repo, shell: str, tmp_path: Path
) -> None:
    repo.lanes("alpha")
    once(repo)
    start_watch(repo, shell, tmp_path, "--color", "always")  # wins over NO_COLOR
    wait_until(lambda: re.search(r"^alpha +ready", screen(repo, shell), re.M), timeout=60)
    assert "\x1b[32mnothing needs attention" in screen(repo, shell, "-e")

    repo.write("broken.yaml", "apiVersion: lanes/v1\nkind: Lane\nmetadata: {}\n")

    def attention_on_top() -> bool:
        lines = screen(repo, shell).splitlines()
        return len(lines) > 2 and lines[1].startswith("ATTENTION") and "invalid" in lines[2]

    wait_until(attention_on_top, timeout=60)
    (repo.desired / "broken.yaml").unlink()
    wait_until(lambda: "nothing needs attention" in screen(repo, shell), timeout=60)

    tmux(repo, shell, "send-keys", "-t", SESSION, "C-c")
    wait_until(lambda: "tty-restored" in screen(repo, shell), timeout=30)
    assert "exit=0" in screen(repo, shell)
    assert not alternate_screen(repo, shell)


def test_sigterm_ends_it_like_ctrl_c(repo: Repo, shell: str, tmp_path: Path) -> None:
    import psutil

    repo.lanes("alpha")
    start_watch(repo, shell, tmp_path)
    pane_shell = int(tmux(repo, shell, "display-message", "-p", "-t", SESSION, "#{pane_pid}"))
    (watcher,) = psutil.Process(pane_shell).children()
    watcher.terminate()
    wait_until(lambda: "tty-restored" in screen(repo, shell), timeout=30)
    assert "exit=0" in screen(repo, shell)
    assert not alternate_screen(repo, shell)


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (("status", "--watch", "-o", "json"), "for machines use"),
        (("status", "--watch"), "needs a terminal"),
        (("status", "--interval", "5"), "--interval goes with --watch"),
    ],
)
def test_watch_is_for_a_terminal_and_not_json(
    repo: Repo, args: tuple[str, ...], message: str
) -> None:
    repo.lanes("alpha")
    done = repo.ctl(*args)  # standard output is a pipe here
    assert done.returncode == 2, done.stdout + done.stderr
    assert message in done.stderr
    assert done.stdout == ""
