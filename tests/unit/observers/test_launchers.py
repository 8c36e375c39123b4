"""Only supervising launchers count as process-runtime agents; never the tmux server."""

from __future__ import annotations

import pytest

from controller.core import world
from controller.observers import processes

RUN = "/r/.lanes/run/env-"


@pytest.mark.parametrize(
    ("cmdline", "expected"),
    [
        (
            [
                "python",
                "-I",
                "-S",
                "launch.py",
                f"{RUN}a-b-1.json",
                "--supervise",
                "/x.exit",
                "--",
                "agent",
            ],
            True,
        ),
        (
            [
                "tmux",
                "-L",
                "s",
                "new-session",
                "-d",
                "--",
                "python",
                "-I",
                "-S",
                "launch.py",
                f"{RUN}a-b-1.json",
                "--",
                "agent",
            ],
            False,
        ),  # the tmux server (argv of its 1st session)
        (
            ["/usr/bin/tmux", "new-session", "--", "launch.py", f"{RUN}x.json", "--supervise", "e"],
            False,
        ),
        (["agent", "--sleep"], False),
        ([], False),
    ],
)
def test_is_launcher(cmdline: list[str], expected: bool) -> None:
    assert processes._is_launcher(cmdline, RUN) is expected


def test_a_launchers_agent_not_yet_execd_is_not_a_launcher() -> None:
    # Between fork and exec the agent still has its launcher's command line: it must never be
    # taken for an unrecorded launcher (stopping it killed healthy tasks under load).
    launcher = world.Proc(100, 1.0)
    child = world.Proc(101, 2.0)
    stray = world.Proc(200, 3.0)
    found = processes.launchers_only({100: launcher, 101: child, 200: stray}, {101: 100, 200: 1})
    assert found == {100: launcher, 200: stray}
