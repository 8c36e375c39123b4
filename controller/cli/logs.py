"""Structured logs for the daemon (structlog): key=value for people, JSON lines for programs.

Events written to the store are redacted at the store; log lines carry only ids, counts and
messages, never env values.
"""

from __future__ import annotations

import logging
import sys
from collections.abc import Mapping, MutableMapping
from typing import Any

import structlog

from controller.store import events


def _redact(_logger: Any, _name: str, event_dict: MutableMapping[str, Any]) -> Mapping[str, Any]:
    return {k: events.redact(v, key=k) for k, v in event_dict.items()}


def configure(*, json_output: bool, verbose: int, colors: bool) -> Any:
    """Configure structlog to stderr and return a ``log(message, *, level, **fields)``
    function (``level``: a ``logging`` number, INFO by default)."""
    renderer: Any = (
        structlog.processors.JSONRenderer(sort_keys=True)
        if json_output
        else structlog.dev.ConsoleRenderer(colors=colors)
    )
    structlog.configure(
        processors=[
            structlog.processors.add_log_level,
            structlog.processors.TimeStamper(fmt="iso", utc=True),
            _redact,
            renderer,
        ],
        wrapper_class=structlog.make_filtering_bound_logger(
            logging.DEBUG if verbose else logging.INFO
        ),
        logger_factory=structlog.PrintLoggerFactory(file=sys.stderr),
        cache_logger_on_first_use=True,
    )
    logger = structlog.get_logger("controller")

    def log(event: str, /, *, level: int = logging.INFO, **fields: Any) -> None:
        logger.log(level, event, **fields)

    return log
