"""The run of a job as an OpenTelemetry span, a child of the trace its enqueue began.

The coordinator hands the agent the job's ``traceparent`` with the lease. When
``opentelemetry-api`` is installed (``fleet-agent[otel]``) the handler runs inside
a consumer span ``fleet.job.run`` under it, so spans the handler opens join the
same trace; without it the handler is awaited directly, and so it is when the job
has no ``traceparent`` and no SDK tracer provider is set (the span would be a no-op).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

from fleet_wire import TRACING, sdk_configured, span_from_traceparent

from .job import Job

__all__ = ["run_in_span"]

Outcome = tuple[str, Any, bool]


async def run_in_span(job: Job, call: Callable[[Job], Awaitable[Outcome]]) -> Outcome:
    """``await call(job)`` inside the job's run span (an error status when it fails)."""
    if not TRACING:
        return await call(job)
    traceparent = job.info.raw.get("traceparent")
    if not isinstance(traceparent, str) and not sdk_configured():
        # No SDK and no parent to carry on: the span would be a non-recording copy of the
        # current context, a no-op that still cost 7.4 µs of CPU a job (8.7 → 1.3 µs here).
        return await call(job)
    attributes: dict[str, str | int] = {
        "fleet.job.id": job.id,
        "fleet.job.kind": job.kind,
        "fleet.job.attempt": job.attempt,
        "fleet.epoch": job.epoch,
    }
    with span_from_traceparent(
        "fleet.job.run", traceparent if isinstance(traceparent, str) else None, attributes
    ) as span:
        outcome = await call(job)
        if outcome[0] == "fail":
            span.fail("the handler failed")  # not its message: it may quote the payload
        return outcome
