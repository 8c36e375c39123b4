"""Run the command line: ``python -m controller``, and the ``controller`` script."""

from __future__ import annotations

import gc
import sys

FAST = frozenset(
    {"post", "heartbeat", "read", "events", "status", "triggers", "runs"}
)  # served by a running daemon when one answers


def main() -> None:
    """Serve a fast command through the daemon (``controller.fast``), or run the command line."""
    if FAST.intersection(sys.argv[1:]):
        from controller import fast

        code = fast.run(sys.argv[1:])
        if code is not None:
            sys.exit(code)
    _command_line()


def _command_line() -> None:
    """Load the command line with the cyclic garbage collector off, then run it.

    Loading creates hundreds of thousands of objects (classes, functions, pydantic models) and
    no cycle worth collecting, yet the collector traverses all of them each time it runs in
    full: that was about a tenth of a pass that changes nothing. What is loaded then moves to
    the permanent generation (``gc.freeze``), and the collector works as usual on the rest: a
    daemon's objects too.
    """
    gc.disable()
    try:
        from controller.cli.main import entrypoint
    finally:
        gc.freeze()
        gc.enable()
    entrypoint()


if __name__ == "__main__":
    main()
