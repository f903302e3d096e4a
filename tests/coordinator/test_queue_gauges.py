"""``/metrics``' queue gauges: counted for the scrape that finds them stale, and dated.

Found by an audit of a served coordinator: the snapshot answered the previous
recount and recounted in the background, so with a 30-60 s scrape interval every
scrape reported the queues as the previous scrape had found them (the oldest queued
age frozen at that value), and with the store down the last gauges were served for
ever, with nothing to tell them from fresh ones.
"""

from __future__ import annotations

import asyncio
import math
from typing import Any

import pytest
from fleet_datastore import StoreUnavailableError

from .conftest import Api, CallCounter

DEPTH = 'fleet_queue_depth{queue="g",status="queued"}'
OLDEST = 'fleet_queue_oldest_queued_age_seconds{queue="g"}'
AGE = "fleet_queue_stats_age_seconds"


def _value(text: str, name: str) -> float:
    """The value of the sample ``name`` (with its labels) in a scrape."""
    for line in text.splitlines():
        if line.startswith(name + " "):
            return float(line.split()[-1])
    raise AssertionError(f"{name} is not in the scrape:\n{text}")


async def _scrape(api: Api) -> str:
    r = await api.client.get("/metrics")
    assert r.status_code == 200, r.text
    return r.text


async def test_a_scrape_after_the_interval_reports_the_queues_as_they_are_now(api: Api) -> None:
    """Past the reaper interval, a scrape waits for the recount it starts (before: it got
    the previous scrape's counts); within it, scrapes share the last one, dated."""
    interval = api.app.state.queue_gauges.max_age  # FLEET_REAPER_INTERVAL_SECONDS
    await api.enqueue(queue="g")
    text = await _scrape(api)
    assert (_value(text, DEPTH), _value(text, OLDEST), _value(text, AGE)) == (1.0, 0.0, 0.0)
    await api.enqueue(queue="g")
    await api.enqueue(queue="g")
    api.clock.advance(interval / 2)
    text = await _scrape(api)  # within the interval: the last counts, and how old they are
    assert (_value(text, DEPTH), _value(text, AGE)) == (1.0, interval / 2)
    api.clock.advance(interval / 2)
    text = await _scrape(api)
    assert _value(text, DEPTH) == 3.0
    assert _value(text, OLDEST) == interval  # the first job's age now, not frozen
    assert _value(text, AGE) == 0.0


async def test_concurrent_scrapes_wait_for_one_recount(
    api: Api, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Scrapes arriving together past the interval share one recount and all get it."""
    interval = api.app.state.queue_gauges.max_age
    await api.enqueue(queue="g")
    await _scrape(api)
    await api.enqueue(queue="g")
    counts = CallCounter(monkeypatch, api.co.jobs, "count")
    api.clock.advance(interval)
    texts = await asyncio.gather(*(_scrape(api) for _ in range(10)))
    assert [_value(text, DEPTH) for text in texts] == [2.0] * 10
    assert counts.calls == 5  # one recount: one count per status of the one queue


async def test_with_the_store_down_the_last_gauges_are_served_with_their_age(
    api: Api, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A failed recount leaves the last gauges, which ``fleet_queue_stats_age_seconds``
    dates; and while it fails, scrapes still cost one attempt per interval, not one each."""
    interval = api.app.state.queue_gauges.max_age
    await api.enqueue(queue="g")
    await _scrape(api)
    attempts = 0
    working = api.co.containers.jobs.count

    async def down(*args: Any, **kwargs: Any) -> Any:
        nonlocal attempts
        attempts += 1
        raise StoreUnavailableError("sqlite: database is locked")

    monkeypatch.setattr(api.co.containers.jobs, "count", down)
    api.clock.advance(interval)
    text = await _scrape(api)
    assert (_value(text, DEPTH), _value(text, AGE)) == (1.0, interval)
    for _ in range(10):
        await _scrape(api)
    assert attempts == 1  # the other scrapes of the interval did not count again
    api.clock.advance(interval)
    text = await _scrape(api)
    assert (_value(text, DEPTH), _value(text, AGE)) == (1.0, 2 * interval)
    assert attempts == 2
    monkeypatch.setattr(api.co.containers.jobs, "count", working)
    await api.enqueue(queue="g")
    api.clock.advance(interval)
    text = await _scrape(api)
    assert (_value(text, DEPTH), _value(text, AGE)) == (2.0, 0.0)


async def test_a_recount_slower_than_the_wait_answers_the_last_gauges_and_goes_on(
    api: Api, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A scrape waits for a recount a bounded time; past it, it gets the last gauges,
    dated, and the recount goes on for the next scrape."""
    gauges = api.app.state.queue_gauges
    interval = gauges.max_age
    await api.enqueue(queue="g")
    await _scrape(api)
    await api.enqueue(queue="g")
    gate = asyncio.Event()
    working = api.co.containers.jobs.count

    async def slow(*args: Any, **kwargs: Any) -> Any:
        await gate.wait()
        return await working(*args, **kwargs)

    monkeypatch.setattr(api.co.containers.jobs, "count", slow)
    gauges.wait = 0.0  # the bound: the recount cannot finish within it
    api.clock.advance(interval)
    text = await _scrape(api)
    assert (_value(text, DEPTH), _value(text, AGE)) == (1.0, interval)
    gate.set()
    gauges.wait = 60.0
    text = await _scrape(api)  # joins the recount still running
    assert (_value(text, DEPTH), _value(text, AGE)) == (2.0, 0.0)


async def test_before_the_first_count_the_age_is_not_a_number(
    api: Api, monkeypatch: pytest.MonkeyPatch
) -> None:
    """With no counts at all (the store down since the start) there is no age to give:
    NaN, which no ``<`` or ``>`` alert takes for fresh."""

    async def down(*args: Any, **kwargs: Any) -> Any:
        raise StoreUnavailableError("sqlite: unable to open database file")

    monkeypatch.setattr(api.co.containers.jobs, "count", down)
    await api.enqueue(queue="g")
    text = await _scrape(api)
    assert math.isnan(_value(text, AGE))
    assert DEPTH not in text
