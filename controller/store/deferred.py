"""Modules imported on first use, for store modules that most commands load but seldom need.

``sa = deferred.module("sqlalchemy")`` (next to a ``TYPE_CHECKING`` import of the real module,
for the type checker) lets a module name SQLAlchemy throughout and still cost nothing at import:
the first attribute read imports it (under Python's import locks, so threads may race for it).
A pass that only reads a SQLite store never reads one (``store.sqlite``).
"""

from __future__ import annotations

import importlib
from typing import Any


class Deferred:
    """A stand-in for the module called ``name``, imported when an attribute is first read."""

    __slots__ = ("_name",)

    def __init__(self, name: str) -> None:
        self._name = name

    def __getattr__(self, attribute: str) -> Any:
        return getattr(importlib.import_module(self._name), attribute)

    def __repr__(self) -> str:
        return f"<deferred module {self._name}>"


def module(name: str) -> Any:
    """The module called ``name``, imported when one of its attributes is first read."""
    return Deferred(name)
