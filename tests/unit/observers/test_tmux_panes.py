"""Parsing ``list-panes``: which panes the controller started, from their start command."""

from __future__ import annotations

from controller.observers import tmux
from controller.system import tmuxserver

LAUNCH = "/usr/bin/python3 -I -S /c/system/launch.py /r/.lanes/run/env-one-0123456789ab.json"


def line(*, session: str = "a", command: str = "") -> str:
    fields = ["$1", "@2", "%3", "42", "0", "", "", "1700000000", "0", "7", session, command]
    return tmuxserver.SEP.join(fields)


def test_start_command_names_the_binding_and_may_hold_the_separator() -> None:
    (ours,) = tmux.parse_panes(line(command=f'{LAUNCH} -- sh -c "a | b"'))
    assert (ours.binding, ours.session_name, ours.pid) == ("one", "a", 42)
    (person,) = tmux.parse_panes(line(command=""))
    assert person.binding == ""


def test_every_field_is_read() -> None:
    assert len(tmuxserver.PANE_FIELDS) == len(line().split(tmuxserver.SEP))
    assert tmuxserver.PANE_FIELDS[-1] == "#{pane_start_command}"
