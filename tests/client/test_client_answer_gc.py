"""A batch answer's jobs are built with the garbage collector paused, and its state kept.

Up to 1,000 jobs (~5,000 tracked objects, no cycle among them) made the collector run
its young and full collections inside the parse: ~30 % of it (docs/benchmarks.md).
"""

from __future__ import annotations

import gc
import sys
from collections.abc import Iterator
from typing import Any

import orjson
import pytest
from fleet_client import Job, calls
from fleet_client.calls import read_answer
from fleet_wire import Answer

STAMP = "2026-12-07T21:41:06.942345Z"


def _answer(count: int) -> bytes:
    job = {
        "id": "01a252740cfe6a67b7372bcd36788ac8",
        "queue": "default",
        "kind": "noop",
        "payload": {"n": [1, {"a": 2}]},
        "priority": 0,
        "status": "queued",
        "attempts": 0,
        "max_attempts": 3,
        "run_after": STAMP,
        "requires": {"gpu": "1"},
        "created_at": STAMP,
        "updated_at": STAMP,
    }
    return orjson.dumps({"items": [job] * count})


@pytest.fixture
def eager_collector() -> Iterator[list[str]]:
    """The collector enabled and run at every allocation; for each collection it makes,
    the function running when it started (``_jobs_body``: inside the parse)."""
    ran: list[str] = []

    def seen(phase: str, _: dict[str, Any]) -> None:
        if phase == "start":
            ran.append(sys._getframe(1).f_code.co_name)

    was, thresholds = gc.isenabled(), gc.get_threshold()
    gc.enable()
    gc.set_threshold(1, 1, 1)
    gc.callbacks.append(seen)
    try:
        yield ran
    finally:
        gc.callbacks.remove(seen)
        gc.set_threshold(*thresholds)
        if not was:
            gc.disable()


def test_a_batch_answer_is_read_without_a_collection_and_the_collector_stays_on(
    eager_collector: list[str],
) -> None:
    call = calls.enqueue_batch([{"kind": "noop"}])
    content = _answer(200)
    jobs = read_answer(call, Answer(201, "Created", {}, content))
    assert "_jobs_body" not in eager_collector
    assert gc.isenabled()
    assert len(jobs) == 200
    assert all(type(job) is Job for job in jobs)
    assert jobs[0].payload == {"n": [1, {"a": 2}]}
    # The same parse with the collector on does collect inside it (the check can fail).
    eager_collector.clear()
    calls._JobItems.model_validate_json(content)
    assert "test_a_batch_answer_is_read_without_a_collection_and_the_collector_stays_on" in (
        eager_collector
    )


def test_a_collector_turned_off_by_the_caller_stays_off(eager_collector: list[str]) -> None:
    gc.disable()
    call = calls.enqueue_batch([{"kind": "noop"}])
    jobs = read_answer(call, Answer(201, "Created", {}, _answer(3)))
    assert len(jobs) == 3
    assert not gc.isenabled()


def test_a_refused_answer_leaves_the_collector_on(eager_collector: list[str]) -> None:
    call = calls.enqueue_batch([{"kind": "noop"}])
    with pytest.raises(Exception, match="not the answer expected"):
        read_answer(call, Answer(201, "Created", {}, b'{"items": [{"id": 1}]}'))
    assert gc.isenabled()
