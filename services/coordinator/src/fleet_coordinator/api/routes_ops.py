"""Operations endpoints: liveness, readiness (pings the store) and Prometheus metrics."""

from __future__ import annotations

import contextlib
from typing import Any

from fastapi import APIRouter, Response
from fastapi.responses import JSONResponse, PlainTextResponse
from fleet_datastore import DatastoreError
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from ..errors import CoordinatorError
from ..services import queue_stats
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
async def metrics(co: Co) -> Response:
    """Prometheus text format; queue depth gauges are refreshed on each scrape."""
    # The counters are still worth serving when the store is down.
    with contextlib.suppress(CoordinatorError):
        await queue_stats(co)
    return Response(generate_latest(co.metrics.registry), media_type=CONTENT_TYPE_LATEST)
