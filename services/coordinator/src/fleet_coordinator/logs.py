"""structlog set-up: JSON lines when the output is not a terminal, readable lines when it is."""

from __future__ import annotations

import asyncio
import atexit
import contextlib
import logging
import re
import sys
import threading
import time
import weakref
from typing import TextIO

import orjson
import structlog
from structlog.typing import EventDict, WrappedLogger

__all__ = ["ClientNoise", "TurnFlushedLogger", "configure_logging", "utc_timestamp"]

_HOLDING: weakref.WeakSet[TurnFlushedLogger] = weakref.WeakSet()
"""Every live logger, for the lines still held when the interpreter exits."""


@atexit.register
def _write_what_is_held() -> None:
    for logger in list(_HOLDING):
        with contextlib.suppress(ValueError, OSError):  # a file closed or gone by now
            logger.flush()


_format_exc_info = structlog.processors.format_exc_info


def _json_line(logger: WrappedLogger, name: str, event: EventDict) -> str:
    """``format_exc_info`` then ``JSONRenderer`` with orjson, as one processor.

    orjson: several times faster than ``json.dumps`` on every state change. The two
    processors in one: a call less per event, and the exception formatter only runs
    for an event that carries ``exc_info`` (it changes nothing in any other), ~0.6 µs
    of an event's ~5 (docs/benchmarks.md, "Twenty-fourth session").
    """
    if "exc_info" in event:
        event = _format_exc_info(logger, name, event)
    return orjson.dumps(event, default=str).decode()


class TurnFlushedLogger:
    """Holds each line until the end of its event-loop turn, then writes the turn's lines at once.

    structlog's loggers write and flush every line: a ``write`` system call per
    event, two events a job (SPEC: one per state change). Here the lines of one
    turn of the event loop (a batched report's ten completions, say) leave in one
    ``write``, at the end of that turn. They are held here, not in the file's own
    buffer, so that holds with ``PYTHONUNBUFFERED=1`` too (the container image
    sets it), where standard output writes every line through at once. Outside a
    running loop (a thread, the command line) every line is written at once, after
    any still held; lines still held when the interpreter exits are written then.
    """

    def __init__(self, file: TextIO) -> None:
        self._file = file
        self._lock = threading.Lock()
        self._held: list[str] = []
        self._flushing: asyncio.AbstractEventLoop | None = None
        _HOLDING.add(self)

    def msg(self, message: str) -> None:
        try:
            loop: asyncio.AbstractEventLoop | None = asyncio.get_running_loop()
        except RuntimeError:
            loop = None
        with self._lock:
            self._held.append(message)
            if loop is None:
                self._write_held()
                return
            if self._flushing is loop:
                return  # this turn's flush is queued already
            self._flushing = loop
        loop.call_soon(self.flush)

    def flush(self) -> None:
        """Write the held lines and hand them to the operating system."""
        with self._lock:
            self._flushing = None
            self._write_held()

    def _write_held(self) -> None:
        if self._held:
            lines, self._held = self._held, []
            self._file.write("\n".join(lines) + "\n")
        self._file.flush()

    log = debug = info = warn = warning = msg
    fatal = failure = err = error = critical = exception = msg


_stamp_second: tuple[int, str] = (-1, "")
"""The last second formatted and its text; one tuple, so a thread reads both at once."""


def utc_timestamp(_logger: WrappedLogger, _name: str, event: EventDict) -> EventDict:
    """``timestamp`` as structlog's ``TimeStamper(fmt="iso", utc=True)`` writes it, cheaper.

    ``2026-12-05T19:30:29.257273Z`` (no fraction when the microseconds are 0, as
    ``datetime.isoformat`` does); the date and time of day are formatted once a
    second instead of building a ``datetime`` per event (~1.6 → ~0.5 µs).
    """
    global _stamp_second
    second, micro = divmod(time.time_ns() // 1000, 1_000_000)
    cached, prefix = _stamp_second
    if second != cached:
        prefix = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(second))
        _stamp_second = (second, prefix)
    event["timestamp"] = f"{prefix}.{micro:06d}Z" if micro else f"{prefix}Z"
    return event


_CONTROLS = re.compile("[\x00-\x1f\x7f-\x9f\u202a-\u202e\u2066-\u2069]")


def _escaped(found: re.Match[str]) -> str:
    code = ord(found.group())
    return f"\\x{code:02x}" if code < 0x100 else f"\\u{code:04x}"


def _shown_not_acted_on(logger: WrappedLogger, method: str, event: EventDict) -> EventDict:
    """Escape what a terminal would act on in the text values of an event (terminal only).

    Lock and schedule names are the clients' text: an ``ESC [2J`` in one would clear
    the screen of the person watching ``make run``. JSON lines escape them already.
    """
    for key, value in event.items():
        if isinstance(value, str) and _CONTROLS.search(value):
            event[key] = _CONTROLS.sub(_escaped, value)
    return event


class _StdlibLines(logging.StreamHandler[TextIO]):
    """The root logger's handler that ``configure_logging`` installs (and replaces)."""


CLIENT_NOISE = frozenset(
    {
        "Unsupported upgrade request.",  # an ``Upgrade: h2c`` (or any but websocket)
        "Invalid HTTP request received.",  # bytes that are not HTTP/1.1
    }
)
"""uvicorn's warnings that any client, before any token, causes once per request."""

NOISE_INTERVAL_SECONDS = 60.0
"""One line per kind of client noise in this long, then a count of the lines left out."""


class ClientNoise(logging.Filter):
    """Let through one of each ``CLIENT_NOISE`` warning per interval, counting the rest.

    uvicorn logs them at every such request, and nobody needs a token to send
    one: unfiltered, a client writes log lines at its request rate, filling the
    disk and the log pipeline. The first of a kind is logged, then at most one
    per ``NOISE_INTERVAL_SECONDS``, which says how many it stands for.
    """

    def __init__(self, interval: float = NOISE_INTERVAL_SECONDS) -> None:
        super().__init__()
        self.interval = interval
        self._last: dict[str, float] = {}
        self._left_out: dict[str, int] = {}

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.msg
        if not isinstance(message, str) or message not in CLIENT_NOISE:
            return True
        now = time.monotonic()
        last = self._last.get(message)
        if last is not None and now - last < self.interval:
            self._left_out[message] = self._left_out.get(message, 0) + 1
            return False
        self._last[message] = now
        left_out = self._left_out.pop(message, 0)
        if left_out:
            record.msg = f"{message} ({left_out} more since the last such line, not logged)"
        return True


def configure_logging(level: int = logging.INFO, file: TextIO | None = None) -> None:
    """Configure structlog once for the process (called by the CLI, not at import).

    Events go to ``file`` (default: standard output), rendered as JSON unless it
    is a terminal; so do the records of the standard library's loggers (``serve``
    hands uvicorn no logging configuration of its own).
    """
    out = sys.stdout if file is None else file
    logger = TurnFlushedLogger(out)
    # Tracebacks are plain text: rich's, with local variables, would print tokens and
    # payloads, and took minutes of CPU on a deeply nested request body.
    renderers: list[structlog.typing.Processor] = (
        [
            _shown_not_acted_on,
            structlog.dev.ConsoleRenderer(exception_formatter=structlog.dev.plain_traceback),
        ]
        if out.isatty()
        else [_json_line]
    )
    # Records of the standard library's loggers (uvicorn's own warnings, a library's)
    # become the same lines, rendered by the same processors, instead of plain text.
    root = logging.getLogger()
    for handler in [h for h in root.handlers if isinstance(h, _StdlibLines)]:
        root.removeHandler(handler)
    lines = _StdlibLines(out)
    lines.setFormatter(
        structlog.stdlib.ProcessorFormatter(
            foreign_pre_chain=[
                structlog.stdlib.add_log_level,
                structlog.stdlib.add_logger_name,
                utc_timestamp,
            ],
            processors=[structlog.stdlib.ProcessorFormatter.remove_processors_meta, *renderers],
        )
    )
    root.addHandler(lines)
    uvicorn = logging.getLogger("uvicorn.error")
    for noise in [f for f in uvicorn.filters if isinstance(f, ClientNoise)]:
        uvicorn.removeFilter(noise)
    uvicorn.addFilter(ClientNoise())
    structlog.configure(
        processors=[
            structlog.contextvars.merge_contextvars,
            structlog.processors.add_log_level,
            utc_timestamp,
            *renderers,
        ],
        wrapper_class=structlog.make_filtering_bound_logger(level),
        logger_factory=lambda *_: logger,
        cache_logger_on_first_use=True,
    )
