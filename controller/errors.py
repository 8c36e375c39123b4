"""One exception tree for everything the controller raises on purpose.

Expected outcomes (a lane that cannot be cleaned, a deferred wake) are values, not exceptions;
these are for failures of the shell (a git command that failed) and for bugs (an invalid phase
transition).
"""

from __future__ import annotations


class ControllerError(Exception):
    """Root of every error the controller raises on purpose."""


class InvalidTransition(ControllerError):
    """A lane was asked to move between two phases the transition table does not allow."""


class CommandFailed(ControllerError):
    """An external program exited non-zero or timed out."""

    def __init__(self, argv: tuple[str, ...], rc: int | None, stderr: str) -> None:
        shown = " ".join(argv[:4]) + (" ..." if len(argv) > 4 else "")
        what = "timed out" if rc is None else f"exited {rc}"
        super().__init__(f"{shown} {what}: {stderr.strip()[:500]}")
        self.argv = argv
        self.rc = rc
        self.stderr = stderr


class OutsideRoot(ControllerError):
    """A path resolved outside the directory it must stay in."""


class WorkspaceBusy(ControllerError):
    """Another controller pass holds the workspace lock."""


class StoreError(ControllerError):
    """The state store cannot be opened or migrated."""
