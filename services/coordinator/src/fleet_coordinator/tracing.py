"""OpenTelemetry for the coordinator, when the ``otel`` extra is installed.

The extra (``fleet-coordinator[otel]``) brings ``opentelemetry-instrumentation-asgi``;
its import is tried once, here. With it, ``instrument`` puts the ASGI middleware
outside everything else, so every request — the hot path's included — gets a
server span that joins the caller's ``traceparent`` header, and ``job_span`` records
a job's claim and the end of its lease as spans of the trace its enqueue began
(the job's stored ``traceparent``); until the process sets an SDK tracer provider the
middleware passes requests straight through. Without the extra both are a single ``None`` check:
no middleware is added and the hot path is what it was. Where spans go is the
process's SDK configuration (see docs/client.md, "Tracing").
"""

from __future__ import annotations

import os
import re
from typing import Any

from starlette.types import ASGIApp

from .domain import JobState

try:
    from opentelemetry import trace as _trace
    from opentelemetry.environment_variables import OTEL_PYTHON_TRACER_PROVIDER
    from opentelemetry.instrumentation.asgi import OpenTelemetryMiddleware as _Middleware
    from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator
except ImportError:  # the otel extra is not installed
    _trace = None  # type: ignore[assignment]
    _Middleware = None  # type: ignore[assignment,misc]
    OTEL_PYTHON_TRACER_PROVIDER = ""

__all__ = ["TRACING", "instrument", "job_span", "requests_traced"]

TRACING = _Middleware is not None
"""Whether the ``otel`` extra is installed in this process."""

_W3C = TraceContextTextMapPropagator() if TRACING else None


_ID_SEGMENT = re.compile(r"^/v1/(jobs|agents|schedules|queues)/(?!(?:batch|retry|cancel)$)[^/]+")
_PLACEHOLDER = {
    "jobs": "{job_id}",
    "agents": "{agent_id}",
    "schedules": "{name}",
    "queues": "{queue}",
}
_NOT_TRACED = "/healthz,/readyz,/metrics"
"""Probes and scrapes: a span each every few seconds would drown the traces that matter."""


def _span_details(scope: dict[str, Any]) -> tuple[str, dict[str, str]]:
    """``POST /v1/jobs/{job_id}/complete``: the route, not the path, so span names stay few."""
    path = str(scope.get("path", ""))
    route = _ID_SEGMENT.sub(lambda m: f"/v1/{m[1]}/{_PLACEHOLDER[m[1]]}", path)
    return f"{scope.get('method', 'HTTP')} {route}", {"http.route": route}


_PROVIDER_FROM_ENVIRONMENT = bool(OTEL_PYTHON_TRACER_PROVIDER) and (
    OTEL_PYTHON_TRACER_PROVIDER in os.environ
)
"""Whether the environment names a tracer provider, which OpenTelemetry loads on first use."""

_NOT_SDK: tuple[type, ...] = (
    () if _trace is None else (_trace.ProxyTracerProvider, _trace.NoOpTracerProvider)
)
_UNKNOWN = object()


def _sdk_configured() -> bool:
    """Whether a real tracer provider is set (not OpenTelemetry's proxy or no-op one)."""
    assert _trace is not None
    # While none is set, get_tracer_provider looks its environment variable up in
    # os.environ on every call (an encode and a KeyError: ~0.5 % of an enqueue's
    # instructions, every request). A provider set in code is kept in the module's
    # global, so while that is None and the environment named none (at import), no
    # SDK is set; otherwise, or if a later OpenTelemetry keeps it elsewhere, ask it.
    if not _PROVIDER_FROM_ENVIRONMENT and getattr(_trace, "_TRACER_PROVIDER", _UNKNOWN) is None:
        return False
    return not isinstance(_trace.get_tracer_provider(), _NOT_SDK)


_traced = False  # once a tracer provider is set, OpenTelemetry never unsets it


def requests_traced() -> bool:
    """Whether requests get server spans: the extra is installed and an SDK is configured."""
    global _traced
    if not _traced and _Middleware is not None and _sdk_configured():
        _traced = True
    return _traced


class _WhileTracing:
    """The OpenTelemetry ASGI middleware, passed through until an SDK provider is set.

    With the extra installed but no SDK configured every span is a no-op, yet the
    middleware still builds each request's attributes and duration metrics: about a
    tenth of the CPU of a small request here (docs/benchmarks.md). So requests go
    straight to the app until a tracer provider is set; OpenTelemetry sets one at
    most once per process, so once seen it is never checked again.
    """

    def __init__(self, app: Any, **options: Any) -> None:
        self.app = app
        self.traced = _Middleware(app, **options)

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if requests_traced():  # remembered once true (``requests_traced``)
            await self.traced(scope, receive, send)
        else:
            await self.app(scope, receive, send)


def instrument(app: ASGIApp) -> ASGIApp:
    """``app`` inside the OpenTelemetry ASGI middleware (``app`` itself without the extra)."""
    if _Middleware is None:
        return app
    return _WhileTracing(
        app,
        excluded_urls=_NOT_TRACED,
        default_span_details=_span_details,
        exclude_spans=["receive", "send"],  # one span per request, not three
    )


def job_span(event: str, job: JobState, agent_id: str, epoch: int) -> None:
    """Record ``event`` (``coordinator.job.claimed`` …) as a span of the job's trace."""
    if _trace is None or _W3C is None or job.traceparent is None:
        return
    parent = _W3C.extract({"traceparent": job.traceparent})
    tracer = _trace.get_tracer("fleet_coordinator")
    span = tracer.start_span(
        event,
        context=parent,
        kind=_trace.SpanKind.INTERNAL,
        attributes={
            "fleet.job.id": job.id,
            "fleet.job.kind": job.kind,
            "fleet.agent.id": agent_id,
            "fleet.epoch": epoch,
        },
    )
    span.end()
