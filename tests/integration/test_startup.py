"""What a command loads: a pass on the embedded (SQLite) store imports nothing it does not use.

Every import is paid on every start, and a no-op ``--once`` is mostly start-up: these tests run
the real command line in a scratch repository and read ``sys.modules`` when it exits.
"""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from tests.conftest import Repo

# Never needed by a pass on SQLite: the PostgreSQL dialect and driver, migrations (a store at
# the newest revision), the live status view and the daemon's file watcher.
FORBIDDEN = ("sqlalchemy.dialects.postgresql", "psycopg", "alembic", "rich.live", "watchdog")

# Runs the command line as `python -m controller` does, and writes the modules it loaded to the
# file named by the first argument when it exits (whatever its exit code).
# The kinds whose validators were built are written too.
PRELUDE = """
import atexit, json, runpy, sys
out, sys.argv = sys.argv[1], ["controller", *sys.argv[2:]]
def seen():
    state = sys.modules.get("controller.spec.state")
    kinds = state.KINDS.items() if state else ()
    built = sorted(k for k, m in kinds if m.__pydantic_complete__)
    open(out, "w").write(json.dumps({"modules": sorted(sys.modules), "built": built}))
atexit.register(seen)
runpy.run_module("controller", run_name="__main__", alter_sys=True)
"""


def run(repo: Repo, *args: str) -> dict[str, list[str]]:
    """What ``controller ARGS``, run in the repository, loaded: modules and built kinds."""
    out = repo.path.parent / "loaded.json"
    done = subprocess.run(
        (sys.executable, "-c", PRELUDE, str(out), *args),
        cwd=repo.path,
        env=repo.env,
        capture_output=True,
        text=True,
        check=False,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr
    found: dict[str, list[str]] = json.loads(out.read_text())
    return found


def loaded(repo: Repo, *args: str) -> set[str]:
    """The modules ``controller ARGS`` imported, run in the repository."""
    return set(run(repo, *args)["modules"])


def among(modules: set[str], packages: tuple[str, ...]) -> list[str]:
    """The modules that are one of ``packages`` or inside one."""
    return sorted(m for m in modules if any(m == p or m.startswith(f"{p}.") for p in packages))


def test_a_pass_on_sqlite_loads_no_postgresql_migrations_or_daemon_code(repo: Repo) -> None:
    repo.lanes("a", "b")
    first = loaded(repo, "--once")  # creates the store (no migration to run) and both lanes
    assert repo.worktrees() == [str(repo.root / "a"), str(repo.root / "b")]
    assert among(first, FORBIDDEN) == []
    assert among(loaded(repo, "--once"), FORBIDDEN) == []


# What a pass that changes nothing does without: SQLAlchemy (its reads go through sqlite3),
# the workflow runs' step (there are none) and the wake machinery (no thread is declared).
UNUSED = (
    "sqlalchemy",
    "controller.runtime.runs",
    "controller.runtime.wakes",
    "controller.cli.threads",
)


@pytest.mark.parametrize("command", [("--once",), ("plan",)])
def test_a_pass_that_changes_nothing_loads_no_sqlalchemy(
    repo: Repo, command: tuple[str, ...]
) -> None:
    repo.lanes("a")
    for _ in range(2):  # creates lane a; then clears the backoff memory its creation left
        assert repo.ctl("--once").returncode == 0
    assert among(loaded(repo, *command), UNUSED) == []


def test_a_pass_builds_the_validators_of_the_kinds_it_reads_only(repo: Repo) -> None:
    repo.lanes("a")
    # Models are built on first use (pydantic's defer_build): lanes and the Workspace, not the
    # kinds nobody declared.
    assert run(repo, "--once")["built"] == ["Lane", "Workspace"]
