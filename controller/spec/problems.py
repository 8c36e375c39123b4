"""A problem with desired state, located as `path:line`.

Problems are values: loading and reference checks collect every one and return them sorted,
instead of raising at the first. Pure: no I/O.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass


@dataclass(frozen=True, slots=True, order=True)
class Problem:
    """One thing wrong with desired state: the file, the 1-based line, and what to fix."""

    path: str
    line: int
    message: str

    def __str__(self) -> str:
        return f"{self.path}:{self.line}: {self.message}"


FieldPath = tuple[str | int, ...]
"""A path into a document as YAML spells it: `("spec", "tasks", 0, "dependsOn")`."""


def nearest_line(lines: Mapping[FieldPath, int], path: FieldPath, *, default: int) -> int:
    """The line of `path`, else of its nearest recorded ancestor, else `default`."""
    for end in range(len(path), 0, -1):
        line = lines.get(path[:end])
        if line is not None:
            return line
    return default
