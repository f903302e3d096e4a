"""Operations endpoints: liveness, readiness (pings the store) and Prometheus metrics."""

from __future__ import annotations

import contextlib
from typing import Any

from fastapi import APIRouter, Request, Response
from fastapi.responses import JSONResponse, PlainTextResponse
from fleet_datastore import DatastoreError
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from ..errors import CoordinatorError
from ..services import StatsSnapshot, queue_stats
from .deps import Co
from .errors import error_response

__all__ = ["router"]

router = APIRouter(tags=["operations"])


@router.get("/healthz")
async def healthz() -> dict[str, Any]:
    """The process is alive."""
    return {"status": "ok"}


@router.get("/readyz", responses={503: {"description": "the store does not answer"}})
async def readyz(co: Co) -> JSONResponse:
    """Ready when the store answers a ping."""
    try:
        await co.containers.store.ping()
    except DatastoreError as exc:
        return error_response(
            503, "store_unavailable", "the store does not answer", {"store": type(exc).__name__}
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
    (``StatsSnapshot``), so no caller can make the store count faster than that.
    """
    gauges: StatsSnapshot = request.app.state.queue_gauges
    # The counters are still worth serving when the store is down.
    with contextlib.suppress(CoordinatorError):
        await gauges.get(lambda: queue_stats(co))
    return Response(generate_latest(co.metrics.registry), media_type=CONTENT_TYPE_LATEST)
