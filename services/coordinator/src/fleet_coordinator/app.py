"""``create_app(settings)``: the FastAPI app, its lifespan (store, reaper) and its routes."""

from __future__ import annotations

import asyncio
import contextlib
import gc
from collections.abc import AsyncIterator, Callable
from typing import Any

import structlog
from fastapi import FastAPI, Request, Response
from fleet_datastore import DocumentStore, store_from_url
from starlette.types import ASGIApp

from .api import (
    agents_router,
    install_error_handlers,
    jobs_router,
    leases_router,
    ops_router,
    queues_router,
    schedules_router,
)
from .api.direct import DirectAnswers
from .api.hot import HotPath
from .api.middleware import GuardMiddleware, HeadAsGet, RefuseJsonConstants
from .api.models import ErrorOut
from .api.routes_ops import Readiness
from .console import SECURITY_HEADERS, error_page, install_console
from .domain import Clock, SystemClock
from .metrics import Metrics
from .services import Coordinator, StatsSnapshot, refresh_paused, remember_agents, run_reaper
from .settings import SettingError, Settings
from .store import open_containers, settle_job_shards
from .tracing import instrument

__all__ = ["create_app"]

CONSOLE = "/ui"
"""Where the console's pages are: its headers and its error pages apply below it."""

_ERROR_RESPONSES: dict[int | str, dict[str, Any]] = {
    status: {"model": ErrorOut, "description": text}
    for status, text in (
        (400, "malformed request"),
        (401, "missing or unknown token"),
        (403, "wrong role for this endpoint"),
        (404, "unknown resource"),
        (409, "state conflict (lease_lost, already_terminal, idempotency_conflict, …)"),
        (413, "payload too large"),
        (415, "a body in a content coding (Content-Encoding other than identity)"),
        (422, "validation error"),
        (500, "a defect, answered internal_error with an error_id that the log carries"),
        (503, "store unavailable (Retry-After)"),
    )
}


def create_app(
    settings: Settings | None = None,
    *,
    clock: Clock | None = None,
    store: DocumentStore | None = None,
    hot_path: bool = True,
    tune_gc: bool = False,
) -> FastAPI:
    """Build the app; the store opens and the reaper starts in the lifespan.

    ``hot_path=False`` serves every request through FastAPI's routes alone (the
    tests compare the two paths; see ``api/hot.py``). ``tune_gc`` (set by
    ``serve``, which owns its process) tunes the garbage collector for a server
    that allocates a lot and keeps little (``_tune_gc`` below).
    """
    settings = settings or Settings()
    settings.ensure_admin_token()
    metrics = Metrics()
    app_clock: Clock = clock or SystemClock()  # the one the snapshot and the services read

    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        opened = store or store_from_url(settings.store_url, cosmos=settings.cosmos_config())
        await opened.open()
        try:
            containers = await open_containers(opened)
            try:
                await settle_job_shards(containers.agents, containers.jobs, settings.job_shards)
            except SettingError as exc:
                structlog.get_logger("fleet_coordinator").error(
                    "coordinator.start_refused", reason=str(exc)
                )
                app.state.start_refused = True  # the guard drops the traceback (middleware.py)
                raise
            co = Coordinator(
                settings=settings,
                containers=containers,
                clock=app_clock,
                metrics=metrics,
            )
            app.state.coordinator = co
            # Paused queues are known before the first claim is served (SPEC 10).
            await refresh_paused(co)
            # Agents already registered spend nothing of the budget for unknown ones.
            await remember_agents(co)
            reaper = asyncio.create_task(run_reaper(co)) if settings.reaper_enabled else None
            co.log.info("coordinator.started", store=opened.url.split("?")[0])
            if tune_gc:
                _tune_gc()
            try:
                yield
            finally:
                co.notifier.close()
                await co.ledger.close()
                if reaper is not None:
                    reaper.cancel()
                    with contextlib.suppress(asyncio.CancelledError):
                        await reaper
        finally:
            await opened.close()

    def front(framework: ASGIApp) -> ASGIApp:
        # Outermost first: tracing (when installed), HEAD served as GET, the guard
        # (which also puts the console's security headers on every /ui answer, its own
        # refusals and 500s included, and answers its refusals there with the console's
        # page), the hot path, then the framework's own layers, which only requests the
        # hot path hands on go through.
        # NaN and the infinities are refused right in front of FastAPI's JSON parser,
        # the only one that reads them: requests the hot path answers never pay it.
        framework = RefuseJsonConstants(framework)
        inner = HotPath(framework) if hot_path else framework
        headers = (CONSOLE, SECURITY_HEADERS)
        guard = GuardMiddleware(
            inner, settings=settings, metrics=metrics, headers_under=headers, page_under=error_page
        )
        return instrument(HeadAsGet(guard))

    app = _CoordinatorApp(
        front,
        title="Fleet Coordinator",
        version="1",
        lifespan=lifespan,
        description="A job coordinator with fenced leases; see SPEC.md.",
        # FastAPI's native OpenTelemetry hooks check their providers on every request;
        # the coordinator's metrics are Prometheus (/metrics) and its logs structlog.
        telemetry={"tracing": False, "metrics": False, "logs": False},
        # FastAPI's /docs and /redoc pages load their scripts from a CDN: third-party
        # code on the origin whose cookies are the console's sessions. The API's
        # description stays at /openapi.json, for any OpenAPI viewer.
        docs_url=None,
        redoc_url=None,
        # A path with a stray trailing slash is 404 (SPEC: unknown resource), not a 307
        # to the path without it, whose Location Starlette builds from the request's
        # own Host header (``Host: evil.example`` got ``http://evil.example/v1/jobs``).
        redirect_slashes=False,
    )

    if hot_path:
        # serve's protocol answers plain hot requests itself (protocol.py, api/direct.py).
        app.direct_answers = DirectAnswers(app)
    # Under /ui an error is the console's page (same status and headers), for people.
    install_error_handlers(app, pages_under=(CONSOLE, error_page))
    # The queue counts of /metrics' gauges and the console's pages: one recount per
    # reaper interval, however often and by whichever of them it is asked.
    app.state.queue_gauges = StatsSnapshot(settings.reaper_interval_seconds, app_clock)
    install_console(app, app.state.queue_gauges)
    # /readyz: one store ping a second at most, however often it is asked.
    app.state.readiness = Readiness()

    for router in (jobs_router, queues_router, agents_router, leases_router, schedules_router):
        app.include_router(router, responses=_ERROR_RESPONSES)
    app.include_router(ops_router)
    return app


class _CoordinatorApp(FastAPI):
    """FastAPI with the coordinator's own layers in front of the framework's.

    FastAPI puts its server-error, exception-telemetry and body-limit layers
    outside every added middleware, so each hot request went through three more
    layers (and a wrapper of every ``send``) before the guard. Built here, the
    guard and the hot path come first and only what the hot path hands on reaches
    them. A defect on that path must still reach the guard, which logs it with an
    error id and answers 500 ``internal_error``: Starlette's server-error layer would
    answer first with its own plain 500, so its handler hands the exception on.
    """

    direct_answers: DirectAnswers | None = None
    """Plain hot requests answered from ``serve``'s protocol (None: every one through ASGI)."""

    def __init__(self, front: Callable[[ASGIApp], ASGIApp], **options: Any) -> None:
        super().__init__(**options)
        self._front = front
        self.add_exception_handler(Exception, _to_the_guard)

    def build_middleware_stack(self) -> ASGIApp:
        return self._front(super().build_middleware_stack())

    def begin_shutdown(self) -> None:
        """The server begins to shut down: long-polls waiting here answer nothing at once.

        ``serve``'s protocol calls it when uvicorn starts its shutdown (``protocol.py``),
        before uvicorn waits for the requests in flight; the lifespan's end comes only
        after them, too late to cut a long-poll short.
        """
        co: Coordinator | None = getattr(self.state, "coordinator", None)
        if co is not None:
            co.notifier.shut()


async def _to_the_guard(request: Request, exc: Exception) -> Response:
    raise exc  # the guard outside logs the defect and answers it (api/middleware.py)


GC_THRESHOLDS = (50_000, 20, 10)
"""Young-generation collections every 50,000 allocations instead of 700."""


def _tune_gc() -> None:
    """Freeze the started heap and collect the young generation less often.

    A request allocates hundreds of short-lived objects (a batch enqueue ~100 per
    job) and keeps almost none, so with CPython's defaults (a collection every 700
    allocations) the collector ran every few jobs and took 25-45 % of a batch
    enqueue. ``gc.freeze`` moves the ~65k objects alive after startup (mostly the
    imported framework) out of every later collection: a full one took 50-70 ms
    here, a pause every request in flight waited out, and now takes ~9 ms.
    In-process bulk enqueue on memory: ~5.3k jobs/s with the defaults, ~10k tuned.
    """
    gc.collect()
    gc.freeze()
    gc.set_threshold(*GC_THRESHOLDS)
