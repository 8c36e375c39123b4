"""What the benchmark scripts share: running a checked command, lane names, and the
plain-text tables and verdicts they print. Imported by bench/lanes.py and bench/agents.py.
"""

from __future__ import annotations

import shlex
import subprocess
from collections.abc import Mapping, Sequence
from pathlib import Path

RUN_TIMEOUT = 600.0


def first_problem(output: str) -> str:
    lines = [line.strip() for line in output.splitlines() if line.strip()]
    bad = [line for line in lines if "FAIL" in line or "error" in line.lower()]
    return (bad or lines or ["(no output)"])[0][:200]


def row(cells: Sequence[str], widths: Sequence[int]) -> str:
    padded = [
        cell.ljust(width) if i == 0 else cell.rjust(width)
        for i, (cell, width) in enumerate(zip(cells, widths, strict=True))
    ]
    return "  ".join(padded).rstrip()


def table(header: Sequence[str], rows: Sequence[Sequence[str]]) -> list[str]:
    widths = [max(len(r[i]) for r in [header, *rows]) for i in range(len(header))]
    rule = "  ".join("-" * w for w in widths)
    return [row(header, widths), rule, *(row(r, widths) for r in rows)]


def verdict(ok: bool) -> str:
    return "met" if ok else "MISSED"


def lane_names(count: int) -> tuple[str, ...]:
    """``l001``, ``l002``, ..."""
    return tuple(f"l{i:03d}" for i in range(1, count + 1))


def run_checked(argv: Sequence[str], *, cwd: Path, env: Mapping[str, str]) -> str:
    """Run a set-up command that must succeed; return its stdout."""
    done = subprocess.run(
        list(argv),
        cwd=cwd,
        env=dict(env),
        capture_output=True,
        text=True,
        check=False,
        timeout=RUN_TIMEOUT,
    )
    if done.returncode != 0:
        raise RuntimeError(f"{shlex.join(argv)} failed ({done.returncode}): {done.stderr.strip()}")
    return done.stdout
