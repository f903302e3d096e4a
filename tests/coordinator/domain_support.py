"""Helpers shared by the domain tests: a fixed start time, job builders and result unwrapping."""

from __future__ import annotations

from typing import Any

from fleet_coordinator.domain import JobState, Rejected, Rejection, claim, enqueue

T0 = 1_700_000_000.0
AGENT = "agent-a"
OTHER = "agent-b"


def new_job(job_id: str = "job-1", *, now: float = T0, **fields: Any) -> JobState:
    """A freshly enqueued job with small defaults."""
    fields.setdefault("kind", "build")
    fields.setdefault("payload", {"n": 1})
    return enqueue(job_id=job_id, now=now, **fields)


def ok(result: JobState | Rejected) -> JobState:
    """Unwrap an accepted transition, failing the test on a rejection."""
    assert isinstance(result, JobState), f"expected a new job state, got {result!r}"
    return result


def refused(result: JobState | Rejected, reason: Rejection) -> Rejected:
    """Unwrap a rejection and check its reason."""
    assert isinstance(result, Rejected), f"expected a rejection, got {result!r}"
    assert result.reason is reason, result
    return result


def leased(
    job: JobState | None = None,
    *,
    agent: str = AGENT,
    now: float = T0,
    run_id: str | None = None,
    **fields: Any,
) -> JobState:
    """``job`` (or a new one built from ``fields``) claimed by ``agent`` at ``now``."""
    base = job if job is not None else new_job(now=now, **fields)
    return ok(claim(base, agent, run_id or f"run-{base.epoch + 1}", now, labels={}))


LEGACY_DEFAULTS: dict[str, Any] = {
    "payload": {},
    "traceparent": None,
    "timeout_seconds": None,
    "requires": {},
    "idempotency_key": None,
    "cancel_requested": False,
    "result": None,
    "last_error": None,
    "lease": None,
    "runs_dropped": 0,
    "request_hash": "",
    "schedule": None,
}
"""Fields at their default as older versions wrote them: spelled out instead of left out."""
