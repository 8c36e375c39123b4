"""The reads every pass makes, as SQLAlchemy statements: their one definition.

``Store`` runs them through SQLAlchemy when it has no SQLite reader (PostgreSQL, or a store
still to create or migrate), and otherwise through ``store.sqlite``, from ``statements.json``,
which ``render()`` compiles from these statements. After changing one of them, or a table they
read, regenerate it with ``python -m controller.store.reads`` (a test fails until then;
``--check`` only says whether it is current).
"""

from __future__ import annotations

import json
import sys
from collections.abc import Sequence
from functools import cache
from typing import Any

import sqlalchemy as sa
from sqlalchemy.dialects import sqlite as sqlite_dialect

from controller.store import sqlite, tables

WORKSPACE: sa.BindParameter[str] = sa.bindparam("workspace", type_=sa.String)


@cache
def statements() -> dict[str, sa.Select[Any]]:
    """Every read by name; each takes the workspace as its one parameter."""
    lanes, agents, memory, runs = tables.lanes, tables.agents, tables.lane_memory, tables.runs
    return {
        "lanes": sa.select(lanes).where(lanes.c.workspace == WORKSPACE).order_by(lanes.c.name),
        "agents": sa.select(agents)
        .where(agents.c.workspace == WORKSPACE)
        .order_by(agents.c.binding),
        "memories": sa.select(memory).where(memory.c.workspace == WORKSPACE),
        "has_runs": sa.select(sa.exists().where(runs.c.workspace == WORKSPACE).label("found")),
    }


def decode(column_type: sa.types.TypeEngine[Any]) -> sqlite.Decode:
    """How ``store.sqlite`` decodes a column of this type as SQLAlchemy would."""
    if isinstance(column_type, tables.UTCDateTime):
        return sqlite.Decode.UTC
    if isinstance(column_type, sa.JSON):
        return sqlite.Decode.JSON
    if isinstance(column_type, sa.Boolean):
        return sqlite.Decode.BOOL
    if isinstance(column_type, sa.String | sa.Integer | sa.Float):
        return sqlite.Decode.PLAIN
    raise TypeError(f"no SQLite decoding for {column_type!r}: teach store.sqlite.Decode it")


def render() -> str:
    """The text of ``statements.json``: each read compiled for SQLite, and the revision."""
    dialect = sqlite_dialect.dialect()
    reads: dict[str, dict[str, Any]] = {}
    for name, statement in sorted(statements().items()):
        compiled = statement.compile(dialect=dialect)
        reads[name] = {
            "sql": str(compiled),
            "params": list(compiled.positiontup or ()),
            # In result order (JSON objects keep theirs): each column's decoding by its name.
            "columns": {c.key: str(decode(c.type)) for c in statement.selected_columns},
        }
    data = {"revision": tables.HEAD_REVISION, "reads": reads}
    return json.dumps(data, indent=2) + "\n"


def main(argv: Sequence[str]) -> int:
    """``python -m controller.store.reads``: write ``statements.json``; with ``--check``, only
    say whether it is current (exit 1 when not), as ``controller schema --check`` does."""
    current = sqlite.STATEMENTS.read_text(encoding="utf-8") == render()
    if list(argv) == ["--check"]:
        if not current:
            print(f"{sqlite.STATEMENTS} is out of date: run python -m controller.store.reads")
        return 0 if current else 1
    if argv:
        print("usage: python -m controller.store.reads [--check]")
        return 2
    if not current:
        sqlite.STATEMENTS.write_text(render(), encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
