"""Which panes are the controller's, which running agent may be adopted, and what is closed."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime
from typing import Any

import pytest

from controller.core import actions as A
from controller.core import lifecycle, planner, strays, world
from tests.factories import agent, binding, desired, observed, path, record, tree

NOW = datetime(2026, 11, 21, 12, 0, tzinfo=UTC)
LAUNCH = "/usr/bin/python3 -I -S /opt/controller/system/launch.py"


@pytest.mark.parametrize(
    ("command", "expected"),
    [
        (f"{LAUNCH} /r/.lanes/run/env-one-0123456789ab.json -- agent", "one"),
        (f"{LAUNCH} /r/.lanes/run/env-a-agent-0123456789ab.json -- agent --x", "a-agent"),
        (f'{LAUNCH} "/my repo/.lanes/run/env-b2-00000000000f.json" -- "a b"', "b2"),
        ("", ""),  # a person's Ctrl-b c: the default shell
        ("bash", ""),
        ("vim /r/.lanes/run/env-one-0123456789ab.json", ""),  # not our launcher
        (f"{LAUNCH} /r/.lanes/run/env-one-12345.json -- agent", ""),  # not our file name
        (f"{LAUNCH} /r/.lanes/run/env--bad-0123456789ab.json -- agent", ""),
    ],
)
def test_binding_of_a_start_command(command: str, expected: str) -> None:
    assert strays.binding_of(command) == expected


def test_env_file_names_are_recognised() -> None:
    name = strays.env_file_name("lane-1-agent", "abcdef012345")
    assert strays.binding_of(f"{LAUNCH} /x/run/{name} -- agent") == "lane-1-agent"


@pytest.mark.parametrize(
    ("argv", "command", "expected"),
    [
        (("agent", "--x"), ("agent", "--x"), True),
        (("/usr/bin/agent", "--x"), ("agent", "--x"), True),  # found on PATH
        (("/bin/sh", "./agent.sh", "--x"), ("./agent.sh", "--x"), True),  # a #! script
        (("node", "/usr/lib/claude", "--continue"), ("claude", "--continue"), True),
        (("python3", "-I", "-S", "launch.py", "env", "--", "agent"), ("agent",), True),
        (("agent", "--y"), ("agent", "--x"), False),
        (("agent", "--old"), ("agent",), False),
        (("agent", "--x", "--more"), ("agent", "--x"), False),
        (("agent",), ("agent", "--x"), False),
        (("other", "--x"), ("agent", "--x"), False),
        ((), ("agent",), False),
        (("agent",), (), False),
    ],
)
def test_runs(argv: tuple[str, ...], command: tuple[str, ...], expected: bool) -> None:
    assert strays.runs(argv, command) is expected


def lost(*panes: world.Pane, procs: dict[int, world.Proc] | None = None, **kw: Any) -> Any:
    """Lane `a` converged; the store lost its agent records; these panes are on the server."""
    seen = observed([tree("a")], records=[record("a")])
    return replace(seen, panes=panes, unrecorded=procs or {}, **kw)


def ours(pane_id: str = "%3", pid: int = 300, **kw: Any) -> world.Pane:
    kw.setdefault("session_name", "a")
    kw.setdefault("binding", "one")
    return world.Pane("$1", "@" + pane_id[1:], pane_id, pid, **kw)


def running(pid: int = 300, argv: tuple[str, ...] = ("agent",), **kw: Any) -> world.Proc:
    return world.Proc(pid, 1000.0 + pid, argv=argv, **kw)


def test_lost_agent_is_adopted_with_its_identity() -> None:
    b = binding("one")
    p = planner.plan(desired("a", b), lost(ours(), procs={300: running()}), {}, NOW)
    (adopt,) = p.actions
    assert isinstance(adopt, A.AdoptAgent)
    assert (adopt.pid, adopt.pid_created, adopt.pane_id, adopt.window_id) == (
        300,
        1300.0,
        "%3",
        "@3",
    )
    assert adopt.spec_hash == lifecycle.spec_hash(b) and adopt.path == path("a")
    assert adopt.started_at == datetime.fromtimestamp(1300.0, UTC)


def test_lost_store_adopts_the_worktree_then_the_agent() -> None:
    seen = replace(lost(ours(), procs={300: running()}), records={})
    p = planner.plan(desired("a", binding("one")), seen, {}, NOW)
    assert [a.kind for a in p.actions] == ["adopt", "adopt-agent"]


@pytest.mark.parametrize(
    ("pane", "proc", "why"),
    [
        (ours(), running(argv=("agent", "--old")), "another command"),
        (ours(dead=True, dead_status=1), running(), "its program exited"),
        (ours(), running(cwd=path("a"), cwd_deleted=True), "its worktree was deleted"),
        (ours(), running(zombie=True), "a zombie"),
    ],
)
def test_controller_pane_that_cannot_be_adopted_is_closed_and_replaced(
    pane: world.Pane, proc: world.Proc, why: str
) -> None:
    p = planner.plan(desired("a", binding("one")), lost(pane, procs={300: proc}), {}, NOW)
    assert [a.kind for a in p.actions] == ["kill-stray", "start-agent"], why
    kill = p.actions[0]
    assert isinstance(kill, A.KillStray) and kill.pane_id == "%3"


def test_pane_in_another_lanes_session_is_not_adopted() -> None:
    seen = lost(ours(session_name="b"), procs={300: running()})
    p = planner.plan(desired("a", binding("one")), seen, {}, NOW)
    assert [(a.kind, a.lane) for a in p.actions] == [("start-agent", "a"), ("kill-stray", "b")]


def test_one_copy_is_adopted_and_the_others_closed() -> None:
    panes = (ours("%12", 312), ours("%4", 304))
    procs = {312: running(312), 304: running(304)}
    p = planner.plan(desired("a", binding("one")), lost(*panes, procs=procs), {}, NOW)
    assert [(a.kind, getattr(a, "pane_id", "")) for a in p.actions] == [
        ("kill-stray", "%12"),
        ("adopt-agent", "%4"),
    ]


def test_live_pane_whose_process_could_not_be_read_waits() -> None:
    p = planner.plan(desired("a"), lost(ours()), {}, NOW)  # no binding, no process info
    assert p.actions == ()
    dead = planner.plan(desired("a"), lost(ours(dead=True, dead_status=0)), {}, NOW)
    (kill,) = dead.actions
    assert isinstance(kill, A.KillStray) and (kill.pid, kill.created) == (None, None)


def test_recorded_panes_are_never_strays_or_candidates() -> None:
    b = binding("one")
    r = agent(b, pane_id="%3", pid=300, pid_created=1300.0)
    seen = replace(lost(ours(), procs={300: running()}), agents={"one": r}, processes={})
    assert strays.unowned_panes(seen) == []
    assert strays.stray_panes(seen, adopted=frozenset()) == []


def test_unknown_panes_hold_no_strays() -> None:
    seen = lost(procs={300: running()})
    assert strays.unowned_panes(replace(seen, panes=world.Unknown("hung"))) == []


RUN = "/r/.lanes/run"


def launcher(
    pid: int = 500, binding_: str = "one", command: tuple[str, ...] = ("agent",), **kw: Any
) -> world.Proc:
    head = ("python3", "-I", "-S", "/c/launch.py", f"{RUN}/env-{binding_}-0123456789ab.json")
    argv = (*head, "--supervise", f"{RUN}/{binding_}.exit", "--", *command)
    kw.setdefault("cwd", path("a"))
    return world.Proc(pid, 2000.0, argv=argv, **kw)


@pytest.mark.parametrize(
    ("argv", "expected"),
    [
        (launcher().argv, ("one", ("agent",))),
        (launcher(binding_="a-b", command=("x", "--", "y")).argv, ("a-b", ("x", "--", "y"))),
        (("python3", "launch.py", f"{RUN}/env-one-0123456789ab.json", "--", "agent"), None),
        (("agent",), None),
    ],
)
def test_launched_for(argv: tuple[str, ...], expected: object) -> None:
    assert strays.launched_for(argv) == expected


def test_lost_process_agent_is_adopted() -> None:
    b = binding("one", runtime="process")
    seen = replace(lost(), launched={500: launcher()})
    (adopt,) = planner.plan(desired("a", b), seen, {}, NOW).actions
    assert isinstance(adopt, A.AdoptAgent)
    assert (adopt.runtime, adopt.pid, adopt.pid_created, adopt.pane_id) == (
        "process",
        500,
        2000.0,
        "",
    )
    assert "(process, pid 500)" in adopt.describe()


@pytest.mark.parametrize(
    "proc",
    [
        launcher(command=("agent", "--old")),
        launcher(binding_="two"),
        launcher(cwd=path("b")),  # works in another lane's worktree
        launcher(cwd=path("a"), cwd_deleted=True),
        launcher(zombie=True),
    ],
)
def test_process_launcher_that_cannot_be_adopted_is_stopped(proc: world.Proc) -> None:
    b = binding("one", runtime="process")
    p = planner.plan(desired("a", b), replace(lost(), launched={500: proc}), {}, NOW)
    expected = ["start-agent"] if proc.zombie else ["kill-stray-process", "start-agent"]
    assert [a.kind for a in p.actions] == expected


def starting(b: Any) -> world.AgentRecord:
    """The record a start writes before its launch, left by a controller killed mid-start."""
    return agent(
        b, world.AgentState.STARTING, pid=None, pid_created=None, pane_id=None, window_id=None
    )


def interrupted(b: Any, *panes: world.Pane, **kw: Any) -> world.Observed:
    seen: world.Observed = replace(lost(*panes, **kw), agents={b.name: starting(b)})
    return seen


def test_an_interrupted_start_whose_launcher_runs_adopts_it_and_starts_nothing() -> None:
    b = binding("one", runtime="process")
    (adopt,) = planner.plan(
        desired("a", b), interrupted(b, launched={500: launcher()}), {}, NOW
    ).actions
    assert isinstance(adopt, A.AdoptAgent) and adopt.pid == 500


def test_an_interrupted_start_whose_process_ended_records_its_exit_and_starts_nothing() -> None:
    b = binding("one", runtime="process", restart="never")
    p = planner.plan(desired("a", b), interrupted(b, exits={"one": 0}), {}, NOW)
    (exit_,) = p.actions
    assert isinstance(exit_, A.RecordExit) and exit_.exit is not None
    assert exit_.exit.last_exit == 0


def test_an_interrupted_tmux_start_whose_pane_died_records_its_status() -> None:
    b = binding("one", restart="never")
    p = planner.plan(desired("a", b), interrupted(b, ours(dead=True, dead_status=3)), {}, NOW)
    exits = [a for a in p.actions if isinstance(a, A.RecordExit)]
    assert [e.exit.last_exit for e in exits if e.exit] == [3]
    assert not [a for a in p.actions if isinstance(a, A.StartAgent)]


def test_an_interrupted_tmux_start_whose_pane_runs_adopts_it() -> None:
    b = binding("one")
    seen = interrupted(b, ours(), procs={300: running()})
    (adopt,) = planner.plan(desired("a", b), seen, {}, NOW).actions
    assert isinstance(adopt, A.AdoptAgent) and adopt.pane_id == "%3"


@pytest.mark.parametrize("runtime", ["tmux", "process"])
def test_an_interrupted_start_that_never_launched_starts_once(runtime: str) -> None:
    b = binding("one", runtime=runtime)
    (start,) = planner.plan(desired("a", b), interrupted(b), {}, NOW).actions
    assert isinstance(start, A.StartAgent)
    assert "interrupted before the launch" in start.reason


def test_an_interrupted_start_waits_while_the_process_table_is_unknown() -> None:
    b = binding("one", runtime="process")
    seen = interrupted(b, processes=world.Unknown("ps failed"))
    p = planner.plan(desired("a", b), seen, {}, NOW)
    assert p.actions == ()
    assert [c.reason for c in p.conditions["a"]] == ["SourceUnreadable"]


def test_a_starting_record_is_settling_for_everyone_else() -> None:
    b = binding("one", runtime="process")
    seen = lifecycle.liveness(starting(b), interrupted(b, exits={"one": 0}))
    assert seen.life == lifecycle.Life.SETTLING
