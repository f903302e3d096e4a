"""The coordinator's log lines: flushed once per event-loop turn, timestamped as before."""

from __future__ import annotations

import asyncio
import datetime
import io
import json
import logging
import threading
import time
from collections.abc import Iterator
from typing import Any

import pytest
import structlog
from fleet_coordinator.logs import TurnFlushedLogger, configure_logging, utc_timestamp


@pytest.fixture(autouse=True)
def _root_handlers() -> Iterator[None]:
    """``configure_logging`` adds a handler to the root logger: each test's goes after it."""
    root = logging.getLogger()
    kept = list(root.handlers)
    yield
    root.handlers = kept


class _Spy(io.StringIO):
    """A file that counts its flushes and remembers what each one handed on."""

    def __init__(self) -> None:
        super().__init__()
        self.flushed: list[str] = []
        self.writes: list[str] = []

    def write(self, text: str) -> int:
        # Every write counted, as with PYTHONUNBUFFERED=1, where each reaches the OS.
        self.writes.append(text)
        return super().write(text)

    def flush(self) -> None:
        self.flushed.append(self.getvalue())
        super().flush()

    def isatty(self) -> bool:
        return False


async def _flushed_by_then(spy: _Spy) -> list[str]:
    """The flushes seen by a callback queued now: the logger's, queued before it, ran."""
    loop = asyncio.get_running_loop()
    seen: asyncio.Future[list[str]] = loop.create_future()
    loop.call_soon(lambda: seen.set_result(list(spy.flushed)))
    return await asyncio.wait_for(seen, 5)  # the timeout only guards against a hang


async def test_the_lines_of_one_loop_turn_leave_in_one_flush_at_its_end() -> None:
    spy = _Spy()
    logger = TurnFlushedLogger(spy)
    logger.msg("one")
    logger.msg("two")
    assert spy.flushed == []  # still this turn
    assert await _flushed_by_then(spy) == ["one\ntwo\n"]
    logger.msg("three")
    assert await _flushed_by_then(spy) == ["one\ntwo\n", "one\ntwo\nthree\n"]
    assert spy.writes == ["one\ntwo\n", "three\n"]  # one write a turn, however unbuffered


def test_outside_an_event_loop_every_line_is_flushed_at_once() -> None:
    spy = _Spy()
    logger = TurnFlushedLogger(spy)
    logger.msg("one")
    assert spy.flushed == ["one\n"]
    logger.msg("two")
    assert spy.flushed == ["one\n", "one\ntwo\n"]


async def test_a_line_from_a_thread_follows_the_lines_the_loop_still_holds() -> None:
    spy = _Spy()
    logger = TurnFlushedLogger(spy)
    logger.msg("held by the loop")
    # Joined without yielding to the loop, so its flush cannot run in between.
    thread = threading.Thread(target=logger.msg, args=("from a thread",))
    thread.start()
    thread.join()  # no loop on that thread: written at once, after what is held
    assert spy.writes == ["held by the loop\nfrom a thread\n"]
    assert await _flushed_by_then(spy) == ["held by the loop\nfrom a thread\n"] * 2


async def test_configured_events_are_json_lines_on_the_file() -> None:
    spy = _Spy()
    configure_logging(file=spy)
    try:
        structlog.get_logger("fleet_coordinator").info("coordinator.test", job_id="j", epoch=1)
        [line] = await _flushed_by_then(spy)
    finally:
        structlog.reset_defaults()
    event = json.loads(line)
    assert event["event"] == "coordinator.test"
    assert (event["job_id"], event["epoch"], event["level"]) == ("j", 1, "info")
    assert event["timestamp"].endswith("Z")


def test_the_standard_librarys_records_are_json_lines_on_the_same_file(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """uvicorn's own warnings (a request that is not HTTP, say) were plain text on stderr."""
    # As under serve, which hands uvicorn no logging configuration: an earlier test's
    # uvicorn.Config may have given its loggers handlers of their own and no propagation.
    for name in ("uvicorn", "uvicorn.error"):
        monkeypatch.setattr(logging.getLogger(name), "handlers", [])
        monkeypatch.setattr(logging.getLogger(name), "propagate", True)
    spy = _Spy()
    configure_logging(file=spy)
    try:
        logging.getLogger("uvicorn.error").warning("Invalid HTTP request received.")
        logging.getLogger("some.library").info("below the root's level: not written")
    finally:
        structlog.reset_defaults()
    [line] = spy.getvalue().splitlines()
    event = json.loads(line)
    assert event["event"] == "Invalid HTTP request received."
    assert (event["level"], event["logger"]) == ("warning", "uvicorn.error")
    assert event["timestamp"].endswith("Z")


def test_the_timestamp_is_what_structlogs_iso_utc_stamper_writes(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    def iso(ns: int) -> str:
        # structlog's TimeStamper(fmt="iso", utc=True), at a given instant.
        second, micro = divmod(ns // 1000, 1_000_000)
        moment = datetime.datetime.fromtimestamp(second, tz=datetime.UTC).replace(microsecond=micro)
        return moment.isoformat().replace("+00:00", "Z")

    instants = [
        1_764_963_029_257_273_000,  # 2025-12-05T19:30:29.257273Z
        1_764_963_029_000_000_000,  # a whole second: no fraction, as isoformat does
        1_764_963_029_000_001_999,
        1_764_963_030_999_999_999,  # the next second's prefix
        951_782_400_000_000_000,  # 2000-02-29, a leap day
    ]
    for ns in instants:
        monkeypatch.setattr(time, "time_ns", lambda ns=ns: ns)
        assert utc_timestamp(None, "info", {})["timestamp"] == iso(ns)


class _Terminal(_Spy):
    def isatty(self) -> bool:
        return True


async def test_on_a_terminal_a_clients_text_is_shown_not_acted_on() -> None:
    """A lock name holding ``ESC [2J`` reaches the terminal escaped, not as a control;
    the renderer's own colours still do."""
    spy = _Terminal()
    configure_logging(file=spy)
    try:
        structlog.get_logger("fleet_coordinator").info(
            "coordinator.lock.released", lock="L\x1b[2J\x9b\u202e", epoch=1
        )
        [text] = await _flushed_by_then(spy)
    finally:
        structlog.reset_defaults()
    assert "L\\x1b[2J\\x9b\\u202e" in text
    assert "\x1b[2J" not in text
    assert "\x9b" not in text
    assert "\u202e" not in text


def test_a_json_line_is_what_structlogs_exception_formatter_and_json_renderer_write(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The one renderer of JSON lines writes what ``format_exc_info`` followed by
    ``JSONRenderer`` wrote: the same keys in the same order, an event with
    ``exc_info`` given its ``exception`` text, one without left as it is."""
    monkeypatch.setattr(time, "time_ns", lambda: 1_764_963_029_257_273_000)
    spy = _Spy()
    configure_logging(file=spy)
    log = structlog.get_logger("fleet_coordinator")
    try:
        log.info("coordinator.job.enqueued", job_id="j1", queue="default")
        try:
            raise ValueError("boom")
        except ValueError:
            log.exception("coordinator.defect", path="/v1/jobs")
        log.warning("coordinator.odd", value=b"bytes", exc_info=False)
    finally:
        structlog.reset_defaults()
    stock: list[Any] = [
        structlog.contextvars.merge_contextvars,
        structlog.processors.add_log_level,
        utc_timestamp,
        structlog.processors.format_exc_info,
        structlog.processors.JSONRenderer(serializer=lambda e, **_: json.dumps(e, default=str)),
    ]
    lines = spy.getvalue().splitlines()
    cases: list[tuple[str, str, dict[str, Any]]] = [
        ("info", "coordinator.job.enqueued", {"job_id": "j1", "queue": "default"}),
        ("exception", "coordinator.defect", {"path": "/v1/jobs"}),
        ("warning", "coordinator.odd", {"value": b"bytes", "exc_info": False}),
    ]
    expected = []
    for method, event, kw in cases:
        rendered: Any = {**kw, "event": event}
        if method == "exception":
            rendered["exc_info"] = (ValueError, ValueError("boom"), None)
        for processor in stock:
            rendered = processor(None, method, rendered)
        expected.append(rendered)
    assert len(lines) == 3
    for line, want in zip(lines, expected, strict=True):
        got, wanted = json.loads(line), json.loads(str(want))
        assert list(got) == list(wanted)
        if "exception" in wanted:
            assert got["exception"].endswith("ValueError: boom")
            got["exception"] = wanted["exception"] = ""
        assert got == wanted
