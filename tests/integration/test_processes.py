"""Real processes: what a timed-out command leaves behind, and who a stop reaches."""

from __future__ import annotations

import os
import sys
from collections.abc import Iterator
from pathlib import Path

import anyio
import psutil
import pytest

from controller import errors
from controller.system import launch, proc
from tests.conftest import Repo, alive_with, reap, wait_until

pytestmark = pytest.mark.integration

# A wrapper that starts a long child in its own process group (as a hung git or tmux wrapper
# would), writes the child's pid, then hangs. Both carry the marker in their argv.
HANGING_WRAPPER = """
import subprocess, sys, time
child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(1000)", sys.argv[1]])
open(sys.argv[2], "w").write(str(child.pid))
time.sleep(1000)
"""


@pytest.fixture
def marker(tmp_path: Path) -> Iterator[str]:
    """A string in the argv of every process a test starts; they are all killed afterwards."""
    text = str(tmp_path / "marker")
    yield text
    reap(text)


def hanging(marker: str, pidfile: Path) -> list[str]:
    return [sys.executable, "-c", HANGING_WRAPPER, marker, str(pidfile)]


@pytest.mark.anyio
async def test_timeout_ends_the_whole_group(marker: str, tmp_path: Path) -> None:
    runner = proc.SubprocessRunner(dict(os.environ))
    pidfile = tmp_path / "child.pid"
    with pytest.raises(errors.CommandFailed) as failed:
        await runner.run(hanging(marker, pidfile), timeout=1.0)
    assert failed.value.rc is None
    assert pidfile.exists()  # the child had started
    wait_until(lambda: alive_with(marker) == [], timeout=5)


@pytest.mark.anyio
async def test_cancelled_call_ends_the_whole_group(marker: str, tmp_path: Path) -> None:
    runner = proc.SubprocessRunner(dict(os.environ))
    pidfile = tmp_path / "child.pid"
    with anyio.move_on_after(1.0) as scope:
        await runner.run(hanging(marker, pidfile), timeout=60)
    assert scope.cancelled_caught and pidfile.exists()
    wait_until(lambda: alive_with(marker) == [], timeout=5)


@pytest.mark.anyio
async def test_output_and_status_are_unchanged(tmp_path: Path) -> None:
    runner = proc.SubprocessRunner(dict(os.environ))
    code = "import sys; print('out'); print('err', file=sys.stderr); sys.exit(3)"
    done = await runner.run([sys.executable, "-c", code], cwd=tmp_path)
    assert (done.rc, done.stdout, done.stderr) == (3, "out\n", "err\n")
    big = await runner.run([sys.executable, "-c", "print('x' * 1_000_000)"])
    assert len(big.stdout) == 1_000_001  # both pipes drained while waiting
    with pytest.raises(errors.CommandFailed) as missing:
        await runner.run(["/nonexistent/program"])
    assert missing.value.rc == 127


@pytest.mark.anyio
async def test_tmux_server_leaves_its_clients_session(repo: Repo, tmux_socket: str) -> None:
    """The server daemonizes into its own session: killing a client's group never reaches it."""
    runner = proc.SubprocessRunner(repo.env)
    tmux = ("tmux", "-L", tmux_socket, "-f", "/dev/null")
    (await runner.run((*tmux, "new-session", "-d", "sleep", "1000"))).check()
    done = (await runner.run((*tmux, "display-message", "-p", "#{pid}"))).check()
    server = int(done.stdout)
    assert os.getsid(server) == server and os.getpgid(server) == server
    with pytest.raises(errors.CommandFailed):
        # A client that hangs (waits for a signal that never comes) is killed with its group.
        await runner.run((*tmux, "wait-for", "never"), timeout=1.0)
    assert psutil.Process(server).status() != psutil.STATUS_ZOMBIE
    assert (await runner.run((*tmux, "list-sessions"))).ok


@pytest.mark.anyio
async def test_an_agents_id_is_not_passed_on(tmp_path: Path) -> None:
    """A controller run inside an agent does not hand the agent's id to what it starts (a tmux
    server carrying it would be stopped with that agent)."""
    runner = proc.SubprocessRunner({**os.environ, launch.AGENT_ID: "outer-agent"})
    done = await runner.run(["env"], env={launch.AGENT_ID: "given"})
    assert launch.AGENT_ID not in done.stdout
