"""The command line's text views, handed to the daemon's server (``server.views.Texts``).

The thin client (``controller/fast.py``) cannot load rich or the commands; the daemon draws
the text for it with these, the functions the commands print with, so the output cannot
drift. Each loads its command's module when first called, not when the daemon starts.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from controller.server import views


def status(view: Mapping[str, Any], *, color: bool, width: int) -> str:
    """``controller status``, ``width`` columns wide."""
    from controller.cli import tables

    return tables.status_text(view, color=color, width=width)


def triggers(view: list[dict[str, Any]]) -> str:
    """``controller triggers``."""
    from controller.cli import threads

    return threads.triggers_text(view)


def runs(view: Mapping[str, Any]) -> str:
    """``controller runs``."""
    from controller.cli import runs as commands

    return commands.runs_text(view)


def run(view: Mapping[str, Any]) -> str:
    """``controller runs show RUN``."""
    from controller.cli import runs as commands

    return commands.run_text(view)


TEXTS = views.Texts(status=status, triggers=triggers, runs=runs, run=run)
