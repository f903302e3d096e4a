"""``co.log`` (``FirstUseLog``) logs exactly where structlog's lazy logger would, and then cheaper.

It keeps a logger's methods only once structlog's proxy keeps the logger itself; each
test runs the same events through both, reconfiguring structlog in between.
"""

from __future__ import annotations

import io
from collections.abc import Iterator
from typing import Any

import pytest
import structlog
from fleet_coordinator.services.context import FirstUseLog


@pytest.fixture(autouse=True)
def _structlog_restored() -> Iterator[None]:
    saved = structlog.get_config()
    yield
    structlog.configure(**saved)


def _to(file: io.StringIO, *, cache: bool) -> None:
    structlog.configure(
        processors=[structlog.processors.KeyValueRenderer(key_order=["event"])],
        logger_factory=structlog.PrintLoggerFactory(file),
        cache_logger_on_first_use=cache,
    )


def _both(cache: bool) -> tuple[list[str], list[str], Any]:
    """Lines of the proxy and of ``FirstUseLog`` per file, logging the same events."""
    first, second = io.StringIO(), io.StringIO()
    _to(first, cache=cache)
    proxy, log = structlog.get_logger("fleet_coordinator"), FirstUseLog("fleet_coordinator")
    proxy.info("one")
    log.info("one")
    _to(second, cache=cache)  # reconfigured after the first use
    proxy.info("two")
    log.info("two")
    return first.getvalue().splitlines(), second.getvalue().splitlines(), log


def test_a_logger_structlog_keeps_is_kept_and_logs_as_the_proxy_does() -> None:
    first, second, log = _both(cache=True)
    assert first == ["event='one'", "event='one'", "event='two'", "event='two'"]
    assert second == []  # the kept logger stays with the first configuration
    assert "info" in vars(log)  # read as a plain attribute from now on


def test_without_keeping_every_event_follows_the_configuration_of_its_moment() -> None:
    first, second, log = _both(cache=False)
    assert first == ["event='one'", "event='one'"]
    assert second == ["event='two'", "event='two'"]
    assert "info" not in vars(log)
