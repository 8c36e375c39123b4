"""The loop of `status --watch` with a stub watcher and screen: it redraws only on change,
keeps the view up when a look fails, and quits on `q` (in a paste too)."""

from __future__ import annotations

import os
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import pytest
from rich.console import Console, RenderableType

from controller import errors
from controller.cli import watch
from tests.fakes import FakeClock


def view(*lanes: str, conditions: tuple[str, ...] = ()) -> dict[str, Any]:
    """A `status -o json` view with these lanes (each with these condition types)."""
    return {
        "workspace": "shop",
        "repo": "/r",
        "desiredValid": True,
        "problems": [],
        "lanes": [
            {
                "name": name,
                "phase": "ready",
                "branch": f"lane/{name}",
                "worktree": f"/r/.lanes/worktrees/{name}",
                "inSync": not conditions,
                "pendingActions": [],
                "conditions": [{"type": t, "reason": "Why", "message": "m"} for t in conditions],
                "agents": [],
            }
            for name in lanes
        ],
        "participants": [],
        "triggers": {},
        "runs": [],
        "notices": [],
        "refused": None,
    }


@dataclass
class Watcher:
    """Returns (or raises) the given looks in turn."""

    looks: Iterator[dict[str, Any] | Exception]
    clock: FakeClock = field(default_factory=FakeClock)

    def view(self) -> dict[str, Any]:
        look = next(self.looks)
        if isinstance(look, Exception):
            raise look
        return look


@dataclass
class Screen:
    """Stands in for rich.live.Live: keeps what it was given to draw."""

    console: Console = field(default_factory=lambda: Console(width=120, height=40))
    drawn: list[RenderableType] = field(default_factory=list)

    def update(self, renderable: RenderableType, *, refresh: bool = False) -> None:
        assert refresh
        self.drawn.append(renderable)


def text(renderable: RenderableType) -> str:
    console = Console(width=120, color_system=None)
    with console.capture() as captured:
        console.print(renderable)
    return captured.get()


def run(looks: list[Any], keys: list[str | None]) -> list[str]:
    """Run the loop; the texts it drew."""
    screen = Screen()
    pressed = iter(keys)
    watcher = Watcher(iter(looks))
    watch.loop(watcher, screen, wait_key=lambda _t: next(pressed), interval=1)
    return [text(r) for r in screen.drawn]


def test_it_redraws_only_when_the_view_changed() -> None:
    drawn = run([view("a"), view("a"), view("a", "b")], [None, None, "q"])
    assert len(drawn) == 2
    assert "a " in drawn[0] and "\nb " not in drawn[0] and "\nb " in drawn[1]


def test_a_paste_with_q_quits() -> None:
    assert len(run([view("a")], ["xyq"])) == 1


def test_what_needs_attention_is_drawn_above_the_tables() -> None:
    (drawn,) = run([view("a", conditions=("Stalled",))], ["q"])
    lines = drawn.splitlines()
    assert lines[0].startswith("controller status --watch")
    assert lines[1].split() == ["ATTENTION", "WHO", "WHAT"]
    assert lines[2].split()[:2] == ["stalled", "a"]
    assert lines.index(next(x for x in lines if x.startswith("LANE"))) > 2


def test_a_failed_look_keeps_the_last_view_and_says_so() -> None:
    busy = errors.ControllerError("the store is busy\nmore detail")
    drawn = run([view("a"), busy, view("a")], [None, None, "q"])
    assert len(drawn) == 3  # the failure is a change, and so is its end
    assert "the last look failed (trying again): the store is busy;" in drawn[1]
    assert "\na " in drawn[1] and "failed" not in drawn[2]


def test_a_bug_is_not_hidden_and_the_first_look_must_work() -> None:
    with pytest.raises(ValueError, match="bug"):
        run([view("a"), ValueError("bug")], [None])
    with pytest.raises(errors.ControllerError):
        run([errors.ControllerError("not a git repository")], [])


def test_keys_are_read_as_typed_and_a_hang_up_quits() -> None:
    read, write = os.pipe()
    try:
        assert watch.read_keys(read, 0) is None
        os.write(write, b"xq")
        assert watch.read_keys(read, 1) == "xq"
        os.close(write)
        assert watch.read_keys(read, 1) == "q"  # no bytes from a readable terminal: hung up
    finally:
        os.close(read)
