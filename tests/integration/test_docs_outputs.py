"""The docs show what the commands print: every checked block of README.md, the user guide and
the recipes runs in a scratch folder and its output is compared (see tests/doccheck.py).

To refresh drifted outputs after a change of the output, run this test with
``DOCS_REWRITE=1``: mismatching outputs are written back into the Markdown (check the diff).
"""

from __future__ import annotations

import concurrent.futures
import contextlib
import os
import random
import re
import shutil
import string
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests import doccheck
from tests.conftest import alive_with, need, reap, wait_until

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[2]
FILES = [ROOT / "README.md", ROOT / "docs" / "user-guide.md", ROOT / "docs" / "recipes.md"]
SCENARIOS = doccheck.scenarios([f for f in FILES if f.exists()], base=ROOT)
WORKERS = 4
TOOLS = {"recipe-ci": "jq", "recipe-systemd": "systemd-analyze"}  # beyond git, tmux and bash
# "1": outputs that differ; "all": every output; "fresh": every output, with new values
REWRITE = os.environ.get("DOCS_REWRITE", "")
SCENARIO_LINES = {
    path.relative_to(ROOT).as_posix(): path.read_text(encoding="utf-8").split("\n")
    for path in FILES
    if path.exists()
}


@dataclass(frozen=True, slots=True)
class Folders:
    """The real folders behind the documented ones, and a home without anyone's settings."""

    base: Path
    tmux: Path
    home: Path


def as_long_as(documented: str) -> Path:
    """A new folder in /tmp whose path is as long as ``documented``: table columns then line
    up in outputs written back into the docs (DOCS_REWRITE=1)."""
    length = len(documented) - len("/tmp/")
    while True:
        name = "".join(random.choices(string.ascii_lowercase + string.digits, k=length))
        path = Path("/tmp") / name
        if f"/tmp/{name}" in (doccheck.DOC_BASE, doccheck.DOC_TMUX):
            continue
        with contextlib.suppress(FileExistsError):
            path.mkdir(mode=0o700)
            return path


@contextlib.contextmanager
def scratch() -> Iterator[Folders]:
    """Scratch folders as long as the documented ones; every tmux server and process started
    in them is stopped afterwards, and the folders deleted."""
    made = Folders(
        as_long_as(doccheck.DOC_BASE),
        as_long_as(doccheck.DOC_TMUX),
        Path(tempfile.mkdtemp(prefix="h-", dir="/tmp")),
    )
    try:
        yield made
    finally:
        for socket in made.tmux.glob("tmux-*/*"):
            subprocess.run(
                ("tmux", "-L", socket.name, "kill-server"),
                env={**os.environ, "TMUX_TMPDIR": str(made.tmux)},
                capture_output=True,
                check=False,
                timeout=10,
            )
        for folder in (made.base, made.tmux):
            reap(str(folder))
        wait_until(lambda: alive_with(str(made.base)) == [], timeout=30)
        for folder in (made.base, made.tmux, made.home):
            shutil.rmtree(folder, ignore_errors=True)


def environment(folders: Folders) -> dict[str, str]:
    """What a reader's shell would have: the controller on PATH, git with an identity and no
    user configuration, the docs' user name and tmux folder, no colours, UTC."""
    config = folders.home / ".gitconfig"
    config.write_text(
        "[user]\n\tname = Ada\n\temail = ada@example.invalid\n"
        "[init]\n\tdefaultBranch = main\n[advice]\n\tdetachedHead = false\n"
    )
    dropped = ("CONTROLLER_", "LANE_", "TMUX", "GIT_", "NO_COLOR", "FORCE_COLOR", "COLUMNS")
    env = {k: v for k, v in os.environ.items() if not k.startswith(dropped)}
    return {
        **env,
        "PATH": f"{Path(sys.executable).parent}:{env.get('PATH', '/usr/bin:/bin')}",
        "HOME": str(folders.home),
        "GIT_CONFIG_GLOBAL": str(config),
        "GIT_CONFIG_NOSYSTEM": "1",
        "TMUX_TMPDIR": str(folders.tmux),
        "USER": "ada",
        "LOGNAME": "ada",
        "TZ": "UTC",
        "PROJECT_VENV_BIN": str(Path(sys.executable).parent),
    }


@dataclass(slots=True)
class Report:
    """Mismatches, each with where it is in the docs; rewrites for DOCS_REWRITE=1."""

    problems: list[str]
    rewrites: list[tuple[str, int, int, str, list[str]]]

    def mismatch(
        self, step: doccheck.Step, command: doccheck.Command, got: list[str], shell: doccheck.Shell
    ) -> None:
        shown = "\n".join(f"    {line}" for line in got)
        wanted = "\n".join(f"    {line}" for line in command.expected)
        self.problems.append(
            f"{step.path}:{command.line}: $ {command.text}\n  docs:\n{wanted}\n  now:\n{shown}"
        )
        self.refresh(step, command, got, shell)

    def refresh(
        self, step: doccheck.Step, command: doccheck.Command, got: list[str], shell: doccheck.Shell
    ) -> None:
        if "..." not in command.expected:
            span = (command.output_line, len(command.expected))
            # "fresh": this run's values, even where the docs' commands use the old ones.
            kept = got if REWRITE == "fresh" else [shell.as_documented(line) for line in got]
            self.rewrites.append((step.path, *span, step.indent, kept))


# Commands that only look: an agent may write its file a moment after the pass that woke it
# returned, so these are asked again (for a while) until they show what the docs show.
READ_ONLY = re.compile(r"^(tail|cat|head|ls|find) |^tmux -L \S+ capture-pane ")


def settled(
    shell: doccheck.Shell, command: doccheck.Command, got: list[str], *, unordered: bool
) -> list[str]:
    """The output of a looking command, once it matches the docs (or after 10 s)."""
    deadline = time.monotonic() + 10
    while not doccheck.matches(command.expected, got, unordered=unordered):
        if time.monotonic() > deadline:
            break
        time.sleep(0.2)
        got = shell.run(command.text).splitlines()
    return got


def run_step(shell: doccheck.Shell, step: doccheck.Step, report: Report) -> None:
    if step.kind in ("write", "append"):
        shell.write(step.target, step.text, append=step.kind == "append")
        return
    shown: list[str] = []
    for command in step.commands:
        got = shell.run(command.text).splitlines()
        if step.kind == "console" and READ_ONLY.match(command.text):
            got = settled(shell, command, got, unordered=step.unordered)
        if step.kind == "console":
            shell.learned.update(doccheck.learn(command.expected, got))
            if not doccheck.matches(command.expected, got, unordered=step.unordered):
                report.mismatch(step, command, got, shell)
            elif REWRITE in ("all", "fresh"):
                report.refresh(step, command, got, shell)
            continue
        if shell.status != 0:
            output = "\n".join(got)
            report.problems.append(
                f"{step.path}:{command.line}: `{command.text}` exited {shell.status}:\n{output}"
            )
        shown += got
    if step.shows is not None and not doccheck.matches(step.shows, shown):
        report.problems.append(
            f"{step.path}:{step.line}: the hidden commands print\n"
            + "\n".join(shown)
            + "\n  but the next block shows\n"
            + "\n".join(step.shows)
        )


def rewrite(rewrites: list[tuple[str, int, int, str, list[str]]]) -> None:
    """Write the outputs seen back into the Markdown files. Each output is found again by
    its text, nearest to where it was read (earlier rewrites may have moved it)."""
    for path, line, count, indent, got in rewrites:
        file = ROOT / path
        lines = file.read_text(encoding="utf-8").split("\n")
        original = SCENARIO_LINES[path][line - 1 : line - 1 + count]
        starts = [i for i in range(len(lines) - count + 1) if lines[i : i + count] == original]
        if not starts:
            continue
        start = min(starts, key=lambda i: abs(i - (line - 1)))
        lines[start : start + count] = [indent + out if out else "" for out in got]
        file.write_text("\n".join(lines), encoding="utf-8")


def run_scenario(scenario: doccheck.Scenario) -> tuple[Report, float]:
    """Run every step of one scenario in scratch folders; what differed, and how long."""
    report = Report([], [])
    started = time.monotonic()
    with scratch() as folders:
        shell = doccheck.Shell(
            cwd=folders.base,
            env=environment(folders),
            to_real={
                doccheck.DOC_TMUX: str(folders.tmux),
                doccheck.DOC_BASE: str(folders.base),
                doccheck.DOC_PROJECT: str(ROOT),
            },
            state=folders.home / ".state",
        )
        for step in scenario.steps:
            run_step(shell, step, report)
    return report, time.monotonic() - started


class Outcomes:
    """Each scenario's report and how long it took, run when first asked for.

    Run alone, pytest gets every selected scenario started at once, side by side (each in its
    own folders and tmux servers: most of their time is spent waiting for the programs they
    start). Under pytest-xdist the workers already run side by side, and the scheduler hands
    each worker some of this module's tests: a test then runs its own scenario only, so no
    scenario runs twice. ``DOCS_REWRITE`` always runs them all, then writes back once.
    """

    def __init__(self, chosen: set[str]) -> None:
        self.chosen = chosen
        self.started: dict[str, concurrent.futures.Future[tuple[Report, float]]] = {}
        self.pool = concurrent.futures.ThreadPoolExecutor(max_workers=WORKERS)
        if REWRITE or not os.environ.get("PYTEST_XDIST_WORKER"):
            for name in sorted(chosen):
                self.started[name] = self.pool.submit(run_scenario, SCENARIOS[name])
        if REWRITE in ("1", "all", "fresh"):
            done = [self.started[name].result() for name in sorted(chosen)]
            rewrite([r for report, _ in done for r in report.rewrites])

    def __contains__(self, name: str) -> bool:
        return name in self.chosen

    def __getitem__(self, name: str) -> tuple[Report, float]:
        if name not in self.started:
            self.started[name] = self.pool.submit(run_scenario, SCENARIOS[name])
        return self.started[name].result()

    def close(self) -> None:
        self.pool.shutdown(wait=True, cancel_futures=True)


@pytest.fixture(scope="module")
def outcomes(request: pytest.FixtureRequest) -> Iterator[Outcomes]:
    """The selected scenarios of this module (see ``Outcomes``)."""
    for tool in ("git", "tmux", "bash"):
        need(tool)
    chosen = {
        str(item.callspec.params["name"])
        for item in request.session.items
        if isinstance(item, pytest.Function)
        and hasattr(item, "callspec")
        and "name" in item.callspec.params
        and item.module is request.module
    }
    found = Outcomes({n for n in chosen if n not in TOOLS or shutil.which(TOOLS[n])})
    try:
        yield found
    finally:
        found.close()


@pytest.mark.parametrize("name", sorted(SCENARIOS))
def test_the_docs_show_what_the_commands_print(name: str, outcomes: Outcomes) -> None:
    if name not in outcomes:
        need(TOOLS[name])  # skips, or fails with CONTROLLER_REQUIRE_TOOLS=1
    report, took = outcomes[name]
    where = f"{SCENARIOS[name].path}, scenario {name} ({took:.0f}s)"
    assert not report.problems, f"{where}:\n\n" + "\n\n".join(report.problems)


def test_every_scenario_has_steps_and_the_docs_check_something() -> None:
    assert {"readme-taste", "lanes", "agents", "wakes", "workflows"} <= set(SCENARIOS)
    for scenario in SCENARIOS.values():
        assert any(step.kind == "console" for step in scenario.steps), scenario.name


def test_a_shell_keeps_its_folder_and_last_status_and_maps_paths(tmp_path: Path) -> None:
    real = tmp_path / "real"
    real.mkdir()
    shell = doccheck.Shell(
        cwd=tmp_path,
        env={"PATH": "/usr/bin:/bin"},
        to_real={"/tmp/docs": str(real)},
        state=tmp_path / "state",
    )
    assert shell.run("cd /tmp/docs && pwd") == "/tmp/docs\n"
    assert shell.cwd == real
    shell.run("false")
    assert shell.run("echo $?") == "1\n"
    shell.learned["20261121T144947Z"] = "20261202T101010Z"
    assert shell.run("echo refs/x/20261121T144947Z") == "refs/x/20261202T101010Z\n"
    shell.write("a.yaml", "b: 1\n")
    shell.write("a.yaml", "c: 2\n", append=True)
    assert (real / "a.yaml").read_text() == "b: 1\n---\nc: 2\n"


def test_the_pictures_can_be_made_again(tmp_path: Path) -> None:
    for tool in ("git", "tmux"):
        need(tool)
    done = subprocess.run(
        (sys.executable, str(ROOT / "scripts" / "render_svgs.py"), "--out", str(tmp_path)),
        capture_output=True,
        text=True,
        check=False,
        timeout=600,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    for name in ("plan", "status", "runs-show"):
        svg = (tmp_path / f"{name}.svg").read_text()
        assert svg.startswith("<svg") and svg.rstrip().endswith("</svg>"), name
        assert "/tmp/docs/app" in svg.replace("&#160;", " ") or name == "runs-show"
        committed = f"docs/images/{name}.svg"
        assert (ROOT / committed).is_file(), committed
        assert committed in (ROOT / "README.md").read_text(), committed
        assert f"images/{name}.svg" in (ROOT / "docs" / "user-guide.md").read_text(), name
