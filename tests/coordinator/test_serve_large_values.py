"""Large payloads, results and progress cost the event loop about their parse, not a minute.

``check_size`` used to walk every member of a value in Python before measuring it:
~3.6 µs a member on a slow host, on the event loop. One agent's ``POST /v1/reports``
of 30 results of 520 KB (``[0,0,…]``, refused 413 each, well within the route's
53 MB limit) held a replica for 25 s, and ``GET /healthz`` from another client
waited as long. Now a value over the limit is refused on its size, measured in C,
and the portability checks run a level of nesting at a time in C loops.
"""

from __future__ import annotations

import sys
import threading
import time
from collections.abc import Callable, Iterator
from types import FrameType
from typing import TYPE_CHECKING, Any

import httpx
import pytest
from fleet_coordinator.api.routes_jobs import _unportable

from tests.support.served import Served

if TYPE_CHECKING:
    from _typeshed import TraceFunction

STALL_LIMIT = 4.0
"""Seconds the replica may take to answer ``/healthz`` meanwhile (the old code: > 20)."""


@pytest.fixture
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Served]:
    with Served(cwd=tmp_path_factory.mktemp("large"), store_url="memory://") as served:
        yield served


def test_a_report_of_large_results_does_not_stall_the_replica(server: Served) -> None:
    r = httpx.post(f"{server.base_url}/v1/agents", json={"name": "a"}, headers=server.admin_headers)
    agent = {"Authorization": f"Bearer {r.json()['token']}", "Content-Type": "application/json"}
    over = b"[" + b",".join([b"0"] * 260_000) + b"]"  # 520 KB: over the 256 KiB limit
    under = b"[" + b",".join([b"[]"] * 80_000) + b"]"  # 240 KB of empty arrays: checked
    items = [
        b'{"job_id":"j%d","epoch":1,"action":"complete","result":%s}'
        % (i, over if i % 2 else under)
        for i in range(30)
    ]
    body = b'{"items":[' + b",".join(items) + b"]}"
    worst = 0.0
    done = threading.Event()

    def probe() -> None:
        nonlocal worst
        with httpx.Client(base_url=server.base_url, timeout=120) as client:
            while not done.is_set():
                begin = time.monotonic()
                assert client.get("/healthz").status_code == 200
                worst = max(worst, time.monotonic() - begin)
                done.wait(0.05)

    prober = threading.Thread(target=probe)
    prober.start()
    try:
        r = httpx.post(f"{server.base_url}/v1/reports", content=body, headers=agent, timeout=300)
    finally:
        done.set()
        prober.join()
    assert r.status_code == 200, r.text[:300]
    codes = [item["error"]["code"] for item in r.json()["items"]]
    assert codes == ["not_found" if i % 2 == 0 else "payload_too_large" for i in range(30)]
    assert worst < STALL_LIMIT, f"/healthz waited {worst:.1f} s behind one report"


def _visit_every_member(value: object) -> None:
    """The cost of the least a check visiting each member in Python does (the old walk's
    shape): the yardstick the real check is measured against on the same host."""
    stack = [value]
    while stack:
        item = stack.pop()
        if isinstance(item, dict):
            stack.extend(item.values())
        elif isinstance(item, list):
            stack.extend(item)
        elif isinstance(item, int):
            abs(item)


def _python_lines(run: Callable[[], object]) -> int:
    """Lines of Python ``run`` executes (``sys.settrace``'s line events): a count, not a
    time, so a loaded host cannot make it flaky, and what C does costs none."""
    lines = 0

    def trace(frame: FrameType, event: str, arg: Any) -> TraceFunction:
        nonlocal lines
        if event == "line":
            lines += 1
        return trace

    previous = sys.gettrace()
    sys.settrace(trace)
    try:
        run()
    finally:
        sys.settrace(previous)
    return lines


@pytest.mark.parametrize(
    "value",
    [[0] * 128_000, [[] for _ in range(85_000)], [{} for _ in range(85_000)], [[0]] * 64_000],
    ids=["zeros", "empty-arrays", "empty-objects", "one-member-arrays"],
)
def test_checking_a_large_value_does_not_visit_each_member_in_python(value: list[object]) -> None:
    """256 KiB values of the smallest members: the check runs a few lines of Python a level
    of nesting, not one a member (the old check walked each member in Python, ~3.6 µs a
    member on the event loop). Counted in lines executed, not timed: the barest walk in
    Python is counted the same way, to show the count would see one."""
    members = len(value)
    assert _python_lines(lambda: _visit_every_member(value)) > members  # the yardstick sees a walk
    lines = _python_lines(lambda: _unportable(value))
    assert lines < members // 100, f"{lines} lines of Python for {members} members"
