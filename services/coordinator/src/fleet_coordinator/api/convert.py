"""Domain values to response models, or to the JSON of those models (epoch floats to ISO-8601).

Jobs and leases are built with ``model_construct``: their values come from the
domain already in the declared types, so validating them again only cost time
(≈ a fifth of a batch enqueue's server work, 1,000 jobs answered per request).

The routes every job passes through (enqueue, claim, reports, complete, fail,
release) skip the models altogether: ``job_json`` and ``lease_json`` give the
same fields as plain values and ``Answer`` encodes them with orjson, byte for
byte what the model would serialise (``tests/coordinator/test_answers.py``), at
a quarter of the CPU (a claimed job 20 → 5 µs). Those routes still declare
their model as ``response_model``, so the OpenAPI document is unchanged.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import UTC, datetime
from typing import Any

import orjson
from starlette.responses import Response

from ..domain import AgentState, JobState, Lease, to_datetime
from .models import AgentOut, JobDetailOut, JobOut, LeaseOut, RunOut

__all__ = [
    "Answer",
    "agent_out",
    "job_detail_out",
    "job_json",
    "job_jsons",
    "job_out",
    "lease_json",
    "lease_out",
]


class Answer(Response):
    """A JSON answer encoded from plain values, as its route's response model would be.

    FastAPI sends a returned ``Response`` as it is, and so does the hot path.
    """

    media_type = "application/json"

    def __init__(self, content: Any, status_code: int = 200) -> None:
        # OPT_UTC_Z: aware UTC datetimes end in "Z", as pydantic writes them.
        body = orjson.dumps(content, option=orjson.OPT_UTC_Z)
        if status_code < 200 or status_code in (204, 304):
            super().__init__(body, status_code)  # no content-length: Starlette's rule
            return
        # Starlette's ``__init__`` for these arguments, without its generic steps (the
        # body's type checks, the header rules for given headers and text types): the
        # same attributes and headers, in its order (``tests/coordinator/test_answers.py``).
        self.status_code = status_code
        self.background = None
        self.body = body
        self.raw_headers = [
            (b"content-length", str(len(body)).encode()),
            (b"content-type", b"application/json"),
        ]


def lease_json(lease: Lease) -> dict[str, Any]:
    """A lease as ``LeaseOut`` shows it, as plain values."""
    return {
        "agent_id": lease.agent_id,
        "run_id": lease.run_id,
        "epoch": lease.epoch,
        "expires_at": to_datetime(lease.expires_at),
    }


def lease_out(job: JobState) -> LeaseOut | None:
    """The job's lease as the API shows it."""
    lease = job.lease
    if lease is None:
        return None
    return LeaseOut.model_construct(**lease_json(lease))


def job_json(job: JobState) -> dict[str, Any]:
    """A job without its runs as ``JobOut`` shows it, as plain values."""
    lease = job.lease
    return _fields(job, None if lease is None else lease_json(lease))


def job_jsons(jobs: Iterable[JobState]) -> list[dict[str, Any]]:
    """``job_json`` of each job, each ``run_after`` they share converted once.

    The jobs of a batch enqueue share it (the request's time, unless given), while
    each has its own ``created_at`` (a microsecond apart): one datetime fewer a job.
    """
    moments: dict[float, datetime] = {}
    return [
        _fields(job, None if job.lease is None else lease_json(job.lease), moments) for job in jobs
    ]


def _instant(at: float, moments: dict[float, datetime] | None) -> datetime:
    """``to_datetime(at)``, from ``moments`` if it was converted before (kept there)."""
    if moments is None:
        return to_datetime(at)
    found = moments.get(at)
    if found is None:
        found = moments[at] = to_datetime(at)
    return found


_at = datetime.fromtimestamp
"""``to_datetime``'s own call, taken by position: every job answered converts one."""


def _fields(
    job: JobState, lease: Any, moments: dict[float, datetime] | None = None
) -> dict[str, Any]:
    # A job enqueued now has one instant as its three times (and a claimed one, as its
    # first two): each distinct one is converted once (a datetime is ~1 µs to build).
    created = _at(job.created_at, UTC)  # to_datetime(job.created_at)
    run_after = created if job.run_after == job.created_at else _instant(job.run_after, moments)
    updated = created if job.updated_at == job.created_at else to_datetime(job.updated_at)
    # The job's own dicts, encoded as they are (no copy); another mapping becomes one.
    payload, requires = job.payload, job.requires
    return {
        "id": job.id,
        "queue": job.queue,
        "kind": job.kind,
        "payload": payload if type(payload) is dict else dict(payload),
        "traceparent": job.traceparent,
        "priority": job.priority,
        "status": job.status._value_,  # not .value: a property (domain/statuses.py)
        "attempts": job.attempts,
        "max_attempts": job.max_attempts,
        "run_after": run_after,
        "requires": requires if type(requires) is dict else dict(requires),
        "cancel_requested": job.cancel_requested,
        "result": job.result,
        "last_error": job.last_error,
        "created_at": created,
        "updated_at": updated,
        "lock": job.lock,
        "schedule": job.schedule,
        "lease": lease,
    }


def job_out(job: JobState) -> JobOut:
    """A job without its runs."""
    return JobOut.model_construct(**_fields(job, lease_out(job)))


def job_detail_out(job: JobState) -> JobDetailOut:
    """A job with its runs."""
    runs = [
        RunOut(
            run_id=r.run_id,
            epoch=r.epoch,
            agent_id=r.agent_id,
            claimed_at=to_datetime(r.claimed_at),
            ended_at=None if r.ended_at is None else to_datetime(r.ended_at),
            outcome=r.outcome.value,
            error=r.error,
        )
        for r in job.runs
    ]
    return JobDetailOut(**_fields(job, lease_out(job)), runs=runs, runs_dropped=job.runs_dropped)


def agent_out(agent: AgentState, live_leases: int) -> AgentOut:
    """An agent as the API shows it (never the token hash), with its live lease count."""
    return AgentOut(
        id=agent.id,
        name=agent.name,
        labels=dict(agent.labels),
        capacity=agent.capacity,
        queues=list(agent.queues),
        draining=agent.draining,
        live_leases=live_leases,
        last_seen=None if agent.last_seen is None else to_datetime(agent.last_seen),
        created_at=to_datetime(agent.created_at),
    )
