"""structlog set-up: JSON lines when the output is not a terminal, readable lines when it is."""

from __future__ import annotations

import logging
import sys
from typing import TextIO

import orjson
import structlog

__all__ = ["configure_logging"]


def _dumps(event: object, **_: object) -> str:
    # orjson: several times faster than json.dumps on every state change.
    return orjson.dumps(event, default=str).decode()


def configure_logging(level: int = logging.INFO, file: TextIO | None = None) -> None:
    """Configure structlog once for the process (called by the CLI, not at import).

    Events go to ``file`` (default: standard output), rendered as JSON unless it
    is a terminal.
    """
    out = sys.stdout if file is None else file
    # Tracebacks are plain text: rich's, with local variables, would print tokens and
    # payloads, and took minutes of CPU on a deeply nested request body.
    renderers: list[structlog.typing.Processor] = (
        [structlog.dev.ConsoleRenderer(exception_formatter=structlog.dev.plain_traceback)]
        if out.isatty()
        else [
            structlog.processors.format_exc_info,
            structlog.processors.JSONRenderer(serializer=_dumps),
        ]
    )
    structlog.configure(
        processors=[
            structlog.contextvars.merge_contextvars,
            structlog.processors.add_log_level,
            structlog.processors.TimeStamper(fmt="iso", utc=True),
            *renderers,
        ],
        wrapper_class=structlog.make_filtering_bound_logger(level),
        logger_factory=structlog.PrintLoggerFactory(file),
        cache_logger_on_first_use=True,
    )
