"""Benchmark: agents (tmux windows) started, kept and torn down by ``controller --once``.

Run it from the repository root with the project's interpreter::

    .venv/bin/python bench/agents.py            # 3 repetitions, medians (~4 minutes on 2 CPUs)
    .venv/bin/python bench/agents.py --quick    # 1 repetition
    .venv/bin/python bench/agents.py --json bench-agents.json

Every measurement runs in a fresh temporary git repository (one commit, a private global git
config, no system config) with a private tmux server (Workspace ``spec.tmuxSocket:
bench-<random>``, ``TMUX_TMPDIR`` a short fresh folder under /tmp), and runs the controller as
the real CLI in a subprocess: ``python -m controller --once --desired <repo>/desired`` with the
repository as working directory. Each binding runs ``[python, tests/stubs/agent.py, --sleep]``
(absolute paths), one binding per lane, so one tmux session per lane. Every ratio printed is
between numbers measured in the same run of this script; each number is the median of the
repetitions. The tmux servers are killed and leftover agent processes reaped at the end of every
repository, also on error. What is measured:

(a) 50 agents from scratch: one pass creating 50 lanes and starting their 50 agents, and,
    separately, the agent part alone (the 50 lanes converged first, then the 50 bindings added
    and the pass that only starts agents timed), each with maxParallelLanes 8 (default) and 16.
    The agent part is compared with one ``bash -c`` loop of ``tmux -L <other socket>
    new-session -d -s lNNN -c <worktree> -- python agent.py --sleep`` in the same worktrees
    (``-f /dev/null``: no user tmux configuration), and with a second loop that starts each
    agent through the controller's launcher (``python -m controller.system.launch ENVFILE --
    agent``), as the controller does, to split the launcher's cost from the controller's own.
    Two times per run: "wall" until the program exits, and "ready" until all 50 agent programs
    are running (polled from the process table after the program exits: tmux starts a pane's
    program in the background, and the controller's panes first run its launcher).
(b) A no-op pass (already converged) at 50 and 200 agents: wall time, and the programs it
    starts, counted with ``strace -f -e trace=execve`` (or, without strace, ``git``/``tmux``
    wrappers first on PATH), to show the count is constant per pass, not one per lane.
(c) Teardown of 50 agents and lanes (every YAML file removed, ``--once --allow-empty``): wall
    time, then what is left: panes, agent processes, worktrees (all must be 0).
(d) Peak RSS of the controller in the 200-agent no-op pass (``ru_maxrss`` from ``os.wait4``).
Also counted once, with the PATH wrappers: the tmux and git calls of the pass that starts 50
agents and of the pass that tears them down (calls per agent).

The rig (repositories, measuring, the quietness policy, subprocess counting, the report's frame)
is bench/harness.py, shared with the other benchmarks.
"""

from __future__ import annotations

import contextlib
import json
import shlex
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import harness as h  # bench/harness.py (scripts run as `python bench/<name>.py`)
import psutil
from harness import Ran, log

AGENTS = 50
NOOP_SIZES = (50, 200)
PARALLEL = (8, 16)
DEFAULT_PARALLEL = 8
TARGET_START_RATIO = 1.2
MAX_SETUP_PASSES = 4
BACKOFF_SECONDS = 10.0  # the controller's first backoff after a failed action
STUB = h.STUB
AGENT_ARGV = (sys.executable, STUB, "--sleep")
TOOLS = ("git", "tmux")  # counted with wrappers on PATH


# -- processes and panes --------------------------------------------------------------------------


def _agent_processes(under: str, *, running_only: bool) -> list[psutil.Process]:
    """Live agent processes working under ``under``.

    ``running_only``: only processes that already run the stub itself (not the controller's
    launcher that is about to ``exec`` it). The tmux server is never counted (its argv is the
    command of the session that started it).
    """
    found = []
    for proc in psutil.process_iter(["cmdline", "cwd", "status"]):
        info = proc.info
        cmdline: list[str] = info["cmdline"] or []
        if STUB not in cmdline or Path(cmdline[0]).name.startswith("tmux"):
            continue
        if info["status"] == psutil.STATUS_ZOMBIE or not (info["cwd"] or "").startswith(under):
            continue
        if running_only and cmdline[1:2] != [STUB]:
            continue
        found.append(proc)
    return found


# -- workspaces -----------------------------------------------------------------------------------


class Workspace(h.Repo):
    """A fresh repository with its private tmux server (and a second one for the baseline)."""

    @property
    def baseline_socket(self) -> str:
        """The tmux server of the shell loops."""
        return f"{self.socket}-loop"

    def sockets(self) -> tuple[str, ...]:
        """Both tmux servers."""
        return (self.socket, self.baseline_socket)

    def write_workspace(self, parallel: int | None) -> None:
        """The Workspace document: the private socket, and maxParallelLanes when set."""
        extra = f", maxParallelLanes: {parallel}" if parallel is not None else ""
        (self.desired / "workspace.yaml").write_text(
            "apiVersion: lanes/v1\nkind: Workspace\nmetadata: {name: bench}\n"
            f"spec: {{tmuxSocket: {self.socket}{extra}}}\n"
        )

    def write_lanes(self) -> None:
        """One Lane document per lane."""
        docs = [
            f"apiVersion: lanes/v1\nkind: Lane\nmetadata: {{name: {name}}}\n" for name in self.lanes
        ]
        (self.desired / "lanes.yaml").write_text("---\n".join(docs))

    def write_bindings(self) -> None:
        """One Binding per lane (participant ``a-<lane>``) running the sleeping stub agent."""
        docs = []
        for name in self.lanes:
            doc = {
                "apiVersion": "lanes/v1",
                "kind": "Binding",
                "metadata": {"name": f"{name}-agent"},
                "spec": {"lane": name, "participant": f"a-{name}", "command": list(AGENT_ARGV)},
            }
            docs.append(json.dumps(doc))  # JSON is YAML
        (self.desired / "bindings.yaml").write_text("\n---\n".join(docs) + "\n")

    def remove_yaml(self) -> None:
        """Remove every YAML file of ``desired/`` (the workspace is remembered in the store)."""
        for path in self.desired.glob("*.yaml"):
            path.unlink()

    def shell_loop(self) -> list[str]:
        """The baseline: one bash script starting every agent in its own tmux session."""
        tmux = f"tmux -L {shlex.quote(self.baseline_socket)} -f /dev/null"
        agent = shlex.join(AGENT_ARGV)
        root = shlex.quote(str(self.worktree_root))
        script = (
            f"for n in {' '.join(self.lanes)}; do "
            f'{tmux} new-session -d -s "$n" -c {root}/"$n" -- {agent} || exit 1; done'
        )
        return ["bash", "-c", script]

    def launcher_loop(self) -> list[str]:
        """The shell loop, each agent started through the controller's launcher.

        Like the controller, each pane runs ``python -m controller.system.launch ENVFILE --
        AGENT``, which reads the environment from a file (written here beforehand, as the
        controller does, with this benchmark's environment) and ``exec``s the agent.
        """
        folder = self.scratch / "env"
        folder.mkdir(exist_ok=True)
        for name in self.lanes:
            (folder / f"{name}.json").write_text(json.dumps(self.env))
        tmux = f"tmux -L {shlex.quote(self.baseline_socket)} -f /dev/null"
        launcher = shlex.join((sys.executable, "-m", "controller.system.launch"))
        agent = shlex.join(AGENT_ARGV)
        root, envs = shlex.quote(str(self.worktree_root)), shlex.quote(str(folder))
        script = (
            f"for n in {' '.join(self.lanes)}; do "
            f'{tmux} new-session -d -s "$n" -c {root}/"$n" -- {launcher} {envs}/"$n".json -- '
            f"{agent} || exit 1; done"
        )
        return ["bash", "-c", script]

    def agents_running(self, expected: int) -> Callable[[], bool]:
        """A check that exactly ``expected`` agents run the stub in this repository."""
        under = str(self.path)
        return lambda: len(_agent_processes(under, running_only=True)) == expected

    def agent_count(self) -> int:
        """Live agent processes (stub or launcher) working in this repository."""
        return len(_agent_processes(str(self.path), running_only=False))

    def agent_pids(self) -> frozenset[int]:
        """PIDs of the agents that run the stub in this repository."""
        return frozenset(p.pid for p in _agent_processes(str(self.path), running_only=True))

    def panes(self, socket: str | None = None) -> int:
        """Panes of a tmux server (0 when no server runs)."""
        argv = ("tmux", "-L", socket or self.socket, "list-panes", "-a", "-F", "#{pane_id}")
        done = h.run_quiet(argv, cwd=self.path, env=self.env)
        return len(done.stdout.split()) if done.returncode == 0 else 0

    def root_dirs(self) -> int:
        """Folders left in the worktree root (its ``.gitignore`` is the controller's, and stays)."""
        if not self.worktree_root.is_dir():
            return 0
        return sum(1 for entry in self.worktree_root.iterdir() if entry.is_dir())

    def kill_baseline(self) -> None:
        """Stop the baseline's tmux server and wait until its agents are gone."""
        with contextlib.suppress(OSError, subprocess.SubprocessError):
            argv = ("tmux", "-L", self.baseline_socket, "kill-server")
            h.run_quiet(argv, cwd=self.top, env=self.env)
        agents = _agent_processes(str(self.path), running_only=False)
        _, alive = psutil.wait_procs(agents, timeout=10)
        for proc in alive:
            h.kill(proc)


@contextlib.contextmanager
def fresh_workspace(lanes: int, *, parallel: int | None = None) -> Iterator[Workspace]:
    """A new repository with one commit, a private tmux socket, and only the Workspace declared."""
    with h.fresh_repo(Workspace, lanes, prefix="agents-bench-", tmux=True) as ws:
        ws.write_workspace(parallel)
        yield ws


def count_spawns(ws: Workspace, argv: Sequence[str]) -> h.Spawns:
    """The programs ``argv`` starts: strace if it works here, else the PATH wrappers."""
    return h.count_spawns(ws, argv, tools=TOOLS)


def count_with_wrappers(ws: Workspace, argv: Sequence[str]) -> tuple[h.Spawns, Ran]:
    """The git and tmux calls of ``argv``, counted with wrappers on PATH."""
    return h.count_with_wrappers(ws, argv, TOOLS)


# -- the benchmark -------------------------------------------------------------------------------


@dataclass(slots=True)
class Results(h.Results):
    """The harness's results, and what each teardown left behind."""

    leaks: dict[str, list[dict[str, int]]] = field(default_factory=dict)


def check_run(results: Results, key: str, ran: Ran) -> None:
    """Warn about a controller run that failed or whose agents never all ran."""
    sample = ran.sample
    if sample.rc != 0:
        results.warn(f"{key}: exit {sample.rc}: {h.first_problem(ran.output)}")
    if sample.ready_s is not None and sample.ready_s != sample.ready_s:  # NaN: never ready
        results.warn(f"{key}: the agents were not all running within {h.READY_TIMEOUT:g} s")


def converge(results: Results, ws: Workspace, key: str) -> Ran:
    """Run passes until ``controller plan --detailed-exitcode`` sees nothing to do.

    Returns the first pass. After a failed pass this waits out the controller's backoff.
    """
    first: Ran | None = None
    for attempt in range(1, MAX_SETUP_PASSES + 1):
        ran = ws.measure(ws.controller(), quiet=first is None)  # the first pass is reported
        first = first or ran
        if ran.sample.rc != 0:
            results.warn(
                f"{key}: pass {attempt} exited {ran.sample.rc}: {h.first_problem(ran.output)}"
            )
            time.sleep(BACKOFF_SECONDS * 2 ** (attempt - 1) + 0.5)
            continue
        plan = ws.measure(ws.controller("plan", "--detailed-exitcode"), quiet=False)
        if plan.sample.rc == 0:
            return first
    raise RuntimeError(f"{key}: not converged after {MAX_SETUP_PASSES} passes")


def teardown(results: Results, ws: Workspace, key: str) -> None:
    """(c): remove every YAML file, one ``--once --allow-empty``, then count what is left."""
    ws.remove_yaml()
    ran = ws.measure(ws.controller("--once", "--allow-empty"))
    results.add(key, ran.sample)
    check_run(results, key, ran)
    left = {
        "panes": ws.panes(),
        "agent_processes": ws.agent_count(),
        "worktrees": ws.worktree_count(),
        "worktree_dirs": ws.root_dirs(),
    }
    results.leaks.setdefault(key, []).append(left)
    if any(left.values()):
        results.warn(f"{key}: left behind {left}")


def bench_full(results: Results, parallel: int) -> None:
    """(a) lanes and agents from scratch in one pass, then (c) the teardown of everything."""
    with fresh_workspace(AGENTS, parallel=parallel) as ws:
        ws.write_lanes()
        ws.write_bindings()
        key = f"full/{AGENTS}/ctl-p{parallel}"
        log(f"  {key}")
        ran = ws.measure(ws.controller(), ready=ws.agents_running(AGENTS))
        results.add(key, ran.sample)
        check_run(results, key, ran)
        if ws.worktree_count() != AGENTS or ws.panes() != AGENTS:
            results.warn(f"{key}: {ws.worktree_count()} worktrees, {ws.panes()} panes")
        log(f"  teardown/{AGENTS}/ctl-p{parallel}")
        teardown(results, ws, f"teardown/{AGENTS}/ctl-p{parallel}")


def bench_agents_only(results: Results, parallel: int) -> None:
    """(a) the agent part alone, against the shell loop, in the same converged worktrees."""
    with fresh_workspace(AGENTS, parallel=parallel) as ws:
        ws.write_lanes()
        ran = converge(results, ws, f"lanes/{AGENTS}/ctl-p{parallel}")
        results.add(f"lanes/{AGENTS}/ctl-p{parallel}", ran.sample)
        key = f"agents/{AGENTS}/shell-loop"
        log(f"  {key}")
        ran = ws.measure(ws.shell_loop(), ready=ws.agents_running(AGENTS))
        results.add(key, ran.sample)
        check_run(results, key, ran)
        if ws.panes(ws.baseline_socket) != AGENTS:
            results.warn(f"{key}: {ws.panes(ws.baseline_socket)} panes")
        ws.kill_baseline()
        key = f"agents/{AGENTS}/launcher-loop"
        log(f"  {key}")
        ran = ws.measure(ws.launcher_loop(), ready=ws.agents_running(AGENTS))
        results.add(key, ran.sample)
        check_run(results, key, ran)
        ws.kill_baseline()
        ws.write_bindings()
        key = f"agents/{AGENTS}/ctl-p{parallel}"
        log(f"  {key}")
        ran = ws.measure(ws.controller(), ready=ws.agents_running(AGENTS))
        results.add(key, ran.sample)
        check_run(results, key, ran)
        if ws.panes() != AGENTS:
            results.warn(f"{key}: {ws.panes()} panes")


def bench_calls(results: Results) -> None:
    """tmux and git calls of the pass starting 50 agents and of the teardown (PATH wrappers)."""
    with fresh_workspace(AGENTS) as ws:
        log(f"  counting tmux and git calls of starting and tearing down {AGENTS} agents")
        ws.write_lanes()
        converge(results, ws, "calls/setup")
        ws.write_bindings()
        results.spawns[f"start/{AGENTS}"], ran = count_with_wrappers(ws, ws.controller())
        check_run(results, "calls/start", ran)
        ws.remove_yaml()
        argv = ws.controller("--once", "--allow-empty")
        results.spawns[f"teardown/{AGENTS}"], ran = count_with_wrappers(ws, argv)
        check_run(results, "calls/teardown", ran)


def bench_noop(results: Results, reps: int) -> None:
    """(b), (d): converged workspaces of 50 and 200 agents, timed no-op passes, counted."""
    for size in NOOP_SIZES:
        with fresh_workspace(size) as ws:
            ws.write_lanes()
            ws.write_bindings()
            log(f"  setup/{size}: {size} lanes and agents")
            ran = converge(results, ws, f"setup/{size}")
            results.add(f"setup/{size}/ctl-p{DEFAULT_PARALLEL}", ran.sample)
            ran = ws.measure(ws.controller())  # clears the lanes' memory of the creation
            results.add(f"noop/{size}/first-after-create", ran.sample)
            pids = ws.agent_pids()
            if len(pids) != size:
                results.warn(f"noop/{size}: {len(pids)} agents running, expected {size}")
            measurements = {
                f"noop/{size}/controller": ws.controller(),
                f"noop/{size}/import-cli": [sys.executable, "-c", "import controller.cli.main"],
                f"noop/{size}/list-panes": ["tmux", "-L", ws.socket, "list-panes", "-a"],
                f"noop/{size}/worktree-list": ["git", "worktree", "list", "--porcelain"],
            }
            for rep in range(reps):
                log(f"  noop/{size} [{rep + 1}/{reps}]")
                for key, argv in measurements.items():
                    ran = ws.measure(argv)
                    results.add(key, ran.sample)
                    if ran.sample.rc != 0:
                        results.warn(f"{key}: exit {ran.sample.rc}: {h.first_problem(ran.output)}")
                    elif key.endswith("/controller") and "No changes" not in ran.output:
                        results.warn(f"{key}: not a no-op: {h.first_problem(ran.output)}")
            log(f"  counting programs started by a no-op pass at {size} agents")
            results.spawns[f"noop/{size}"] = count_spawns(ws, ws.controller())
            plan = ws.measure(ws.controller("plan", "--detailed-exitcode"), quiet=False)
            if plan.sample.rc != 0 or ws.agent_pids() != pids:
                results.warn(f"noop/{size}: the world changed during the no-op passes")
            log(f"  teardown/{size}")
            teardown(results, ws, f"teardown/{size}/after-noop")


def warm_up() -> None:
    """Compile bytecode (controller and launcher) so that the first measured run is not special."""
    with fresh_workspace(1) as ws:
        ws.write_lanes()
        ws.write_bindings()
        for argv in ([sys.executable, "-m", "controller", "--help"], ws.controller()):
            ran = ws.measure(argv, ready=ws.agents_running(1) if "--once" in argv else None)
            if ran.sample.rc != 0:
                raise RuntimeError(f"{shlex.join(argv)} failed: {h.first_problem(ran.output)}")
        ws.remove_yaml()
        ws.measure(ws.controller("--once", "--allow-empty"))


# -- the report ----------------------------------------------------------------------------------


def derive(results: Results) -> dict[str, Any]:
    """Ratios and per-agent figures, all from medians of this run."""
    med = results.median
    loop, launcher = f"agents/{AGENTS}/shell-loop", f"agents/{AGENTS}/launcher-loop"
    ratios: dict[str, dict[str, float]] = {}
    for p in PARALLEL:
        key = f"agents/{AGENTS}/ctl-p{p}"
        ratios[f"p{p}"] = {
            "wall": med(key) / med(loop),
            "ready": med(key, "ready_s") / med(loop, "ready_s"),
            "wall_vs_launcher_loop": med(key) / med(launcher),
            "ready_vs_launcher_loop": med(key, "ready_s") / med(launcher, "ready_s"),
        }
    noop50 = med(f"noop/{NOOP_SIZES[0]}/controller")
    per_agent = {
        "controller_ms": 1000 * (med(f"agents/{AGENTS}/ctl-p{DEFAULT_PARALLEL}") - noop50) / AGENTS,
        "shell_loop_ms": 1000 * med(loop) / AGENTS,
        "launcher_loop_ms": 1000 * med(launcher) / AGENTS,
        "launcher_ready_cost_ms": 1000 * (med(launcher, "ready_s") - med(loop, "ready_s")) / AGENTS,
        "controller_cpu_ms": 1000
        * (
            med(f"agents/{AGENTS}/ctl-p{DEFAULT_PARALLEL}", "cpu_s")
            - med(f"noop/{NOOP_SIZES[0]}/controller", "cpu_s")
        )
        / AGENTS,
    }
    spawns = {size: results.spawns[f"noop/{size}"].programs for size in NOOP_SIZES}
    counts = list(spawns.values())
    constant = all(c == counts[0] for c in counts)
    small, big = NOOP_SIZES[0], NOOP_SIZES[-1]
    leaks = {
        key: max((sum(left.values()) for left in lefts), default=0)
        for key, lefts in results.leaks.items()
    }
    ratio = ratios[f"p{DEFAULT_PARALLEL}"]
    return {
        "agent_start_ratio_to_shell_loop": ratios,
        "agent_start_per_agent": per_agent,
        "noop_per_agent_slope_ms": 1000
        * (med(f"noop/{big}/controller") - med(f"noop/{small}/controller"))
        / (big - small),
        "noop_spawns_constant": constant,
        "leaks_max": leaks,
        "targets": {
            f"agent_start_wall_ratio_le_{TARGET_START_RATIO}": ratio["wall"] <= TARGET_START_RATIO,
            f"agent_start_ready_ratio_le_{TARGET_START_RATIO}": ratio["ready"]
            <= TARGET_START_RATIO,
            "noop_spawns_constant": constant,
            "no_leaks": not any(leaks.values()),
        },
    }


def report(results: Results, derived: Mapping[str, Any], reps: int, info: Mapping[str, Any]) -> str:
    """The human-readable tables."""
    title = f"Agent benchmark: median of {reps} repetition(s); (min-max); seconds"
    cells = h.Cells(results)
    out = [
        *h.header(title, info),
        h.quiet_line(results),
        "",
        *start_section(cells, derived),
        "",
        *noop_section(cells, derived),
        "",
        *teardown_section(cells, derived, results.leaks),
        "",
        *rss_section(cells),
        *calls_section(results.spawns),
        *h.warning_lines(results),
    ]
    return "\n".join(out)


LOOP, LAUNCHER = f"agents/{AGENTS}/shell-loop", f"agents/{AGENTS}/launcher-loop"


def start_section(cells: h.Cells, derived: Mapping[str, Any]) -> list[str]:
    """(a): agents from scratch against the shell loops."""
    med = cells.results.median
    ratios = derived["agent_start_ratio_to_shell_loop"]

    def started(label: str, key: str, wall: str = "", ready: str = "") -> list[str]:
        return [label, cells.spread(key), cells.spread(key, "ready_s"), cells.cpu(key), wall, ready]

    launcher = [f"{med(LAUNCHER) / med(LOOP):.2f}x"]
    launcher.append(f"{med(LAUNCHER, 'ready_s') / med(LOOP, 'ready_s'):.2f}x")
    rows = [
        started(f"shell loop: tmux new-session x{AGENTS} (bash -c)", LOOP, "1.00x", "1.00x"),
        started("shell loop, agents through the controller's launcher", LAUNCHER, *launcher),
    ]
    for p in PARALLEL:
        r = ratios[f"p{p}"]
        default = " (default)" if p == DEFAULT_PARALLEL else ""
        label = f"controller, agents only, maxParallelLanes {p}{default}"
        rows.append(
            started(label, f"agents/{AGENTS}/ctl-p{p}", f"{r['wall']:.2f}x", f"{r['ready']:.2f}x")
        )
    for p in PARALLEL:
        key = f"lanes/{AGENTS}/ctl-p{p}"
        label = f"controller, lanes only, maxParallelLanes {p}"
        rows.append([label, cells.spread(key), "-", cells.cpu(key), "", ""])
    for p in PARALLEL:
        rows.append(
            started(f"controller, lanes + agents, maxParallelLanes {p}", f"full/{AGENTS}/ctl-p{p}")
        )
    header = ["", "wall s", "ready s", "cpu s", "wall vs loop", "ready vs loop"]
    return [
        f"(a) {AGENTS} agents from scratch. wall: until the program exits; ready: until all "
        f"{AGENTS} agent programs run",
        *h.table(header, rows),
        *start_notes(ratios[f"p{DEFAULT_PARALLEL}"], derived["agent_start_per_agent"]),
    ]


def start_notes(ratio: Mapping[str, float], per: Mapping[str, float]) -> list[str]:
    """The target of (a), and the costs per agent."""
    return [
        f"  target agent part <= {TARGET_START_RATIO}x the shell loop (default parallelism): "
        f"wall {h.verdict(ratio['wall'] <= TARGET_START_RATIO)} ({ratio['wall']:.2f}x), ready "
        f"{h.verdict(ratio['ready'] <= TARGET_START_RATIO)} ({ratio['ready']:.2f}x)",
        f"  against the launcher loop (same panes, same launcher: the controller's own overhead): "
        f"wall {ratio['wall_vs_launcher_loop']:.2f}x, ready {ratio['ready_vs_launcher_loop']:.2f}x",
        f"  per agent: controller {per['controller_ms']:.1f} ms ((agents-only pass - no-op pass "
        f"at {NOOP_SIZES[0]}) / {AGENTS}), shell loop {per['shell_loop_ms']:.1f} ms, launcher "
        f"loop {per['launcher_loop_ms']:.1f} ms; the launcher adds "
        f"{per['launcher_ready_cost_ms']:.1f} ms per agent to 'ready'",
        f"  controller CPU per agent started: {per['controller_cpu_ms']:.1f} ms ((CPU of the "
        f"agents-only pass - CPU of the no-op pass at {NOOP_SIZES[0]}) / {AGENTS}; the launchers "
        "and agents run under tmux, not counted)",
    ]


def noop_section(cells: h.Cells, derived: Mapping[str, Any]) -> list[str]:
    """(b): the no-op passes, their floors, and the programs they start."""
    med, spawned = cells.results.median, cells.results.spawns
    names = sorted({n for s in spawned.values() for n in s.programs})
    rows = []
    for size in NOOP_SIZES:
        spawns, key = spawned[f"noop/{size}"], f"noop/{size}"
        above = med(f"{key}/controller") - med(f"{key}/import-cli")
        floors = [
            cells.seconds(f"{key}/{floor}")
            for floor in ("import-cli", "list-panes", "worktree-list")
        ]
        counts = [*(str(spawns.programs.get(n, 0)) for n in names), str(spawns.total)]
        rows.append(
            [
                f"{size} agents",
                cells.spread(f"{key}/controller"),
                cells.cpu(f"{key}/controller"),
                f"{above:.3f}",
                *floors,
                *counts,
                str(spawns.failed_execs),
            ]
        )
    header = ["", "no-op s", "cpu s", "above import s", "import cli s", "list-panes s"]
    header += ["worktree list s", *names, "execs", "failed execs"]
    setup = [(s, med(f"setup/{s}/ctl-p{DEFAULT_PARALLEL}")) for s in NOOP_SIZES]
    return [
        "(b) no-op pass (already converged) and the programs it starts; floors measured in the "
        "same repository",
        *h.table(header, rows),
        f"  programs counted with {spawned[f'noop/{NOOP_SIZES[0]}'].method}; 'python' is the "
        "controller itself; failed execs are the PATH search trying folders without the program",
        f"  constant number of programs per pass (same at {' and '.join(map(str, NOOP_SIZES))}):"
        f" {h.verdict(derived['noop_spawns_constant'])}; marginal wall per extra agent "
        f"{derived['noop_per_agent_slope_ms']:+.2f} ms",
        "  set-up, one pass creating every lane and agent: "
        + ", ".join(f"{s}: {t:.2f} s ({1000 * t / s:.0f} ms per lane + agent)" for s, t in setup),
        "  first pass after creating the agents: "
        + ", ".join(f"{s}: {cells.seconds(f'noop/{s}/first-after-create')} s" for s in NOOP_SIZES),
    ]


LEFT = ("panes", "agent_processes", "worktrees", "worktree_dirs")


def teardown_section(
    cells: h.Cells, derived: Mapping[str, Any], leaks: Mapping[str, list[dict[str, int]]]
) -> list[str]:
    """(c): teardowns, and the largest count of what each left behind."""
    teardowns = {
        f"{AGENTS} agents + lanes, maxParallelLanes {p}": f"teardown/{AGENTS}/ctl-p{p}"
        for p in PARALLEL
    }
    for size in NOOP_SIZES:
        label = f"{size} agents + lanes, after (b), maxParallelLanes {DEFAULT_PARALLEL}"
        teardowns[label] = f"teardown/{size}/after-noop"
    rows = []
    for label, key in teardowns.items():
        lefts = leaks.get(key, [])
        worst = {k: max(left[k] for left in lefts) for k in lefts[0]} if lefts else {}
        left = [str(worst.get(k, "?")) for k in LEFT]
        rows.append([label, cells.spread(key), cells.cpu(key), *left])
    return [
        "(c) teardown: every YAML file removed, --once --allow-empty; what is left afterwards",
        *h.table(["", "wall s", "cpu s", "panes", "agent procs", "worktrees", "dirs"], rows),
        f"  zero leaks: {h.verdict(derived['targets']['no_leaks'])} (largest count over every "
        "run of each row)",
    ]


def rss_section(cells: h.Cells) -> list[str]:
    """(d): peak RSS of the controller."""
    rows = [
        [f"no-op pass, {s} agents", cells.mib(f"noop/{s}/controller")] for s in reversed(NOOP_SIZES)
    ]
    start = f"agents/{AGENTS}/ctl-p{DEFAULT_PARALLEL}"
    rows.append([f"start {AGENTS} agents, default parallelism", cells.mib(start)])
    cli = f"noop/{NOOP_SIZES[-1]}/import-cli"
    rows.append(["python -c 'import controller.cli.main'", cells.mib(cli)])
    return ["(d) peak RSS of the controller process (ru_maxrss, MiB)", *h.table(["", "MiB"], rows)]


def calls_section(spawned: Mapping[str, h.Spawns]) -> list[str]:
    """The tmux and git calls of the passes that start and tear down the agents."""
    calls = [k for k in (f"start/{AGENTS}", f"teardown/{AGENTS}") if k in spawned]
    rows = []
    for key in calls:
        spawns = spawned[key]
        tmux_verbs = Counter(_tmux_verb(c) for c in spawns.commands if c.startswith("tmux "))
        git_verbs = Counter(_git_verb(c) for c in spawns.commands if c.startswith("git "))
        tmux = spawns.programs.get("tmux", 0)
        verbs = [", ".join(f"{v} {n}" for v, n in c.most_common()) for c in (tmux_verbs, git_verbs)]
        rows.append(
            [key, str(tmux), str(spawns.programs.get("git", 0)), f"{tmux / AGENTS:.2f}", *verbs]
        )
    if not rows:
        return []
    header = ["", "tmux", "git", "tmux/agent", "tmux commands", "git commands"]
    title = f"calls of the pass that starts / tears down {AGENTS} agents (PATH wrappers)"
    return ["", title, *h.table(header, rows)]


_TMUX_VERBS = (
    "list-panes",
    "list-sessions",
    "new-session",
    "new-window",
    "kill-window",
    "kill-server",
    "kill-session",
)


def _tmux_verb(command: str) -> str:
    return next((w for w in command.split() if w in _TMUX_VERBS), "other")


def _git_verb(command: str) -> str:
    words = command.split()[1:]
    while words and (words[0].startswith("-") or words[0].startswith("/")):
        words = words[1:]  # -C <repo>
    if words[:1] == ["worktree"]:
        return " ".join(words[:2])
    return words[0] if words else "?"


def to_json(
    results: Results, derived: Mapping[str, Any], reps: int, info: Mapping[str, Any]
) -> dict[str, Any]:
    """Every raw number."""
    return {
        **results.to_json(),
        "machine": info,
        "repetitions": reps,
        "derived": derived,
        "leaks": results.leaks,
    }


def main(argv: Sequence[str] | None = None) -> int:
    """Run every measurement, print the tables, optionally write JSON."""
    parser = h.options(__doc__)
    args = parser.parse_args(argv)
    h.require(parser, *TOOLS)
    reps = h.repetitions(args)
    info = h.machine("git", "tmux", "strace")
    log(f"agent benchmark: {reps} repetition(s) on {info['cpus']} CPUs; warming up")
    results = Results()
    with h.private_bytecode("agents-bench-"):
        warm_up()
        for rep in range(reps):
            log(f"[start and teardown {rep + 1}/{reps}]")
            order = PARALLEL[rep % len(PARALLEL) :] + PARALLEL[: rep % len(PARALLEL)]
            for parallel in order:
                bench_agents_only(results, parallel)
                bench_full(results, parallel)
        bench_calls(results)
        log("[no-op passes]")
        bench_noop(results, reps)
    h.at_end(info)
    derived = derive(results)
    payload = to_json(results, derived, reps, info)
    h.publish(report(results, derived, reps, info), payload, args.json)
    return 0


if __name__ == "__main__":
    sys.exit(main())
