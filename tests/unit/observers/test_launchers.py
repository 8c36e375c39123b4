"""Only supervising launchers count as process-runtime agents; never the tmux server."""

from __future__ import annotations

import pytest

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
