"""Loop safeguards: a participant woken again and again without progress, or producing the same
finding cycle after cycle, is blocked until an operator unblocks it.

A turn (a delivered wake) made progress when, by the next wake, the participant posted a
message, committed on its lane branch or changed its worktree. A finding is a message the
participant posted, compared after normalising white space.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass, replace

from controller.core.safeguards import decisions
from controller.core.safeguards.decisions import Decision, Reason


@dataclass(frozen=True, slots=True)
class LoopState:
    """Per participant: turns without progress, and the repeat count of the last finding."""

    no_progress: int = 0
    finding: str | None = None  # digest of the last finding
    identical: int = 0  # how many cycles in a row produced that same finding


@dataclass(frozen=True, slots=True)
class Progress:
    """What the participant did since its last wake."""

    posted: tuple[str, ...] = ()  # message bodies it posted
    committed: bool = False
    worktree_changed: bool = False

    @property
    def made(self) -> bool:
        """Whether any of it counts as progress."""
        return bool(self.posted) or self.committed or self.worktree_changed


def finding_digest(text: str) -> str:
    """A finding's identity: its text with white space normalised."""
    normal = re.sub(r"\s+", " ", text).strip()
    return hashlib.sha256(normal.encode()).hexdigest()[:32]


def after_turn(state: LoopState, progress: Progress) -> LoopState:
    """The state after one more delivered turn whose outcome is ``progress``."""
    state = replace(state, no_progress=0 if progress.made else state.no_progress + 1)
    if not progress.posted:
        return state
    digest = finding_digest(progress.posted[-1])
    identical = state.identical + 1 if digest == state.finding else 1
    return replace(state, finding=digest, identical=identical)


def decide(state: LoopState, *, max_no_progress: int, max_identical: int) -> Decision:
    """Block when either limit is reached."""
    if state.no_progress >= max_no_progress:
        return decisions.block(
            Reason.LOOP_NO_PROGRESS, f"{state.no_progress} wakes in a row made no progress"
        )
    if state.identical >= max_identical:
        return decisions.block(
            Reason.LOOP_IDENTICAL_FINDINGS,
            f"the same finding came back {state.identical} cycles in a row",
        )
    return decisions.ALLOW
