"""Operations endpoints: liveness, readiness (pings the store) and Prometheus metrics."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Awaitable, Callable
from typing import Any

from fastapi import APIRouter, Request, Response
from fastapi.responses import JSONResponse, PlainTextResponse
from fleet_datastore import DatastoreError
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from ..errors import MAX_CAUSE_CHARS, CoordinatorError
from ..services import StatsSnapshot, queue_stats
from .deps import Co
from .errors import error_response

__all__ = ["READY_MAX_AGE", "Readiness", "router"]

READY_MAX_AGE = 1.0
"""Seconds one store ping answers every ``/readyz`` of a replica."""


class Readiness:
    """The store's last ping, shared by the ``/readyz`` calls of one replica.

    ``/readyz`` needs no token (load balancers probe it), and on Cosmos DB each ping
    is a database read, a metadata request that Cosmos throttles account-wide: anyone
    who could reach the port could have made it fail, and so taken every replica out
    of its load balancer. Calls within ``READY_MAX_AGE`` of a ping share its outcome,
    and calls made while a ping is in flight wait for that one; so a replica pings at
    most about once a ``READY_MAX_AGE``, however often it is asked.
    """

    def __init__(self, max_age: float = READY_MAX_AGE) -> None:
        self.max_age = max_age
        self._at = -float("inf")  # when the last ping ended (time.monotonic)
        self._problem: str | None = None  # its error's type name, or None: it answered
        self.reason = ""  # its error's own text, for the log (not the answer)
        self._ping: asyncio.Task[None] | None = None

    async def check(self, ping: Callable[[], Awaitable[None]]) -> str | None:
        """None if the store answered a recent ping, else the name of what it raised."""
        if time.monotonic() - self._at > self.max_age:
            if self._ping is None:
                self._ping = asyncio.ensure_future(self._run(ping))
            # A caller that leaves does not cancel the ping the others wait for.
            await asyncio.shield(self._ping)
        return self._problem

    async def _run(self, ping: Callable[[], Awaitable[None]]) -> None:
        try:
            try:
                await ping()
                self._problem = None
            except DatastoreError as exc:
                self._problem = type(exc).__name__
                self.reason = str(exc)[:MAX_CAUSE_CHARS]
            # Only an answer is shared on: a defect (a 500) is not remembered as either.
            self._at = time.monotonic()
        finally:
            self._ping = None


router = APIRouter(tags=["operations"])


@router.get("/healthz")
async def healthz() -> dict[str, Any]:
    """The process is alive."""
    return {"status": "ok"}


@router.get("/readyz", responses={503: {"description": "the store does not answer"}})
async def readyz(request: Request, co: Co) -> JSONResponse:
    """Ready when the store answered a ping (one ping a second at most, shared)."""
    readiness: Readiness = request.app.state.readiness
    problem = await readiness.check(co.containers.store.ping)
    if problem is not None:
        co.unavailable.answered("GET", "/readyz", readiness.reason)
        return error_response(
            503, "store_unavailable", "the store does not answer", {"store": problem}
        )
    return JSONResponse({"status": "ok", "checks": {"store": "ok"}})


@router.get(
    "/metrics",
    response_class=PlainTextResponse,
    responses={200: {"content": {CONTENT_TYPE_LATEST.split(";")[0]: {}}}},
)
async def metrics(request: Request, co: Co) -> Response:
    """Prometheus text format; the queue gauges are recounted at most once per reaper interval.

    The endpoint needs no token (scrapers), and each recount is 5 counts a queue whose
    cost grows with the jobs kept: scrapes share one recount per interval per replica
    (``StatsSnapshot``), so no caller can make the store count faster than that. A
    scrape finding the gauges older than that waits for their recount (5 s at most);
    ``fleet_queue_stats_age_seconds`` says how old the gauges it gets are.
    """
    gauges: StatsSnapshot = request.app.state.queue_gauges
    # The counters are still worth serving when the store is down; the gauges' age
    # then grows, which is how a scraper tells the last counts from fresh ones.
    with contextlib.suppress(CoordinatorError):
        await gauges.get(lambda: queue_stats(co))
    co.metrics.stats_age.set(gauges.age())
    return Response(generate_latest(co.metrics.registry), media_type=CONTENT_TYPE_LATEST)
