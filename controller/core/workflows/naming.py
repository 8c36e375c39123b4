"""Names a run gives its tasks' lanes, branches and agent sessions. Pure and deterministic: the
same run, task and attempt always get the same names, so a rerun after a crash finds them.
"""

from __future__ import annotations

import hashlib
import uuid

MAX_NAME = 63
SESSION_NAMESPACE = uuid.UUID("6d1f3e58-5b8e-4c0a-9d64-1a2b3c4d5e6f")


def lane_name(run: str, task: str) -> str:
    """The lane of ``task`` in ``run``: ``<run>--<task>``, shortened with a digest past 63."""
    name = f"{run}--{task}"
    if len(name) <= MAX_NAME:
        return name
    digest = hashlib.sha256(name.encode()).hexdigest()[:8]
    keep = (MAX_NAME - len(digest) - 3) // 2
    return f"{run[:keep].rstrip('-')}--{task[:keep].rstrip('-')}-{digest}"


def branch(run: str, task: str) -> str:
    """The branch of ``task`` in ``run``: ``runs/<run>/<task>``."""
    return f"runs/{run}/{task}"


def session_id(workspace: str, run: str, task: str, attempt: int) -> str:
    """A UUID stable per workspace, run, task and attempt (for `--session-id`)."""
    return str(uuid.uuid5(SESSION_NAMESPACE, f"{workspace}/{run}/{task}/{attempt}"))


def run_name(workflow: str, taken: frozenset[str]) -> str:
    """The first free name ``<workflow>-<n>`` (n from 1), shortened to stay a valid name."""
    stem = workflow[: MAX_NAME - 6].rstrip("-")
    n = 1
    while f"{stem}-{n}" in taken:
        n += 1
    return f"{stem}-{n}"
