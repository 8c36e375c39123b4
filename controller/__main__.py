"""Run the command line with ``python -m controller``."""

from __future__ import annotations

from controller.cli.main import entrypoint

entrypoint()
