"""The Lane kind: one git worktree on its own branch, under the workspace's worktree root.

Branch names are checked against git's `check-ref-format --branch` rules so that a bad name is
a validation problem, not a failed `git worktree add` later. Pure: no I/O, never runs git.
"""

from __future__ import annotations

import re
from typing import Annotated, Literal

from pydantic import AfterValidator

from controller.spec import meta

_FORBIDDEN_IN_BRANCH = re.compile(r"[\x00-\x20\x7f~^:?*\[\\]")


def _branch_problem(branch: str) -> str | None:
    checks = (
        (not branch, "must not be empty"),
        (branch == "HEAD" or branch == "@", "must not be 'HEAD' or '@'"),
        (branch.startswith("-"), "must not start with '-'"),
        (branch.startswith("/") or branch.endswith("/"), "must not start or end with '/'"),
        (branch.endswith("."), "must not end with '.'"),
        (".." in branch, "must not contain '..'"),
        ("//" in branch, "must not contain '//'"),
        ("@{" in branch, "must not contain '@{'"),
        (_FORBIDDEN_IN_BRANCH.search(branch) is not None, _forbidden_message(branch)),
        (_bad_component(branch), "no '/'-separated part may start with '.' or end with '.lock'"),
    )
    return next((message for failed, message in checks if failed), None)


def _forbidden_message(branch: str) -> str:
    found = _FORBIDDEN_IN_BRANCH.search(branch)
    return f"must not contain {found[0]!r}" if found else ""


def _bad_component(branch: str) -> bool:
    return any(part.startswith(".") or part.endswith(".lock") for part in branch.split("/"))


def check_branch(branch: str) -> str:
    """Return `branch` if git would accept it as a branch name, else raise `ValueError`."""
    problem = _branch_problem(branch)
    if problem is not None:
        raise ValueError(f"branch {problem} (got {branch!r})")
    return branch


def check_base(base: str) -> str:
    """Return `base` if it can be a git revision passed in argv, else raise `ValueError`."""
    # Any revision git understands (a branch, a tag, a SHA, HEAD~2); only what could be
    # mistaken for an option or could not travel through argv is refused.
    if not base or base.startswith("-") or re.search(r"[\x00-\x20\x7f]", base):
        raise ValueError(f"base must be a git revision such as main or origin/main (got {base!r})")
    return base


class LaneSpec(meta.SpecModel):
    """What a lane should look like."""

    branch: Annotated[str, AfterValidator(check_branch)] | None = None
    """Branch checked out in the worktree; default `lane/<name>`. An existing branch is reused."""
    base: Annotated[str, AfterValidator(check_base)] | None = None
    """Revision a missing branch is created from; default the repository's current HEAD."""
    on_dirty_cleanup: Literal["preserve", "refuse"] = "preserve"
    """On removal with unsaved work: `preserve` saves it to a rescue ref, `refuse` blocks."""
    suspend: bool = False
    """True stops the lane's agents and wakes but keeps its worktree."""


class Lane(meta.Document):
    """A git worktree on its own branch, where bound agents run."""

    kind: Literal["Lane"] = "Lane"
    """Always `Lane`."""
    spec: LaneSpec = LaneSpec()
    """The lane's settings; every field has a default."""

    @property
    def branch(self) -> str:
        """The effective branch: `spec.branch`, or `lane/<name>` when unset."""
        return self.spec.branch or f"lane/{self.name}"
