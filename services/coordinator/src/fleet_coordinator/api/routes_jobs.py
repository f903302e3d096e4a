"""Admin job endpoints: enqueue, batch enqueue, list, read, cancel, retry, bulk retry and cancel."""

from __future__ import annotations

import hashlib
import json
import math
from datetime import UTC
from itertools import chain
from typing import Annotated, Any

import orjson
from fastapi import APIRouter, Query, Response
from pydantic import AwareDatetime, TypeAdapter

from ..domain import JobStatus, from_datetime
from ..errors import PayloadTooLargeError, ValidationFailedError
from ..services import (
    NewJob,
    bulk_cancel,
    bulk_retry,
    cancel_job,
    enqueue,
    enqueue_batch,
    get_job,
    list_jobs,
    retry_job,
)
from ..services.context import Coordinator
from ..store.listing import JobFilter
from .convert import Answer, job_detail_out, job_json, job_jsons, job_out
from .deps import AdminAuth, Co
from .models import (
    BatchCreate,
    BulkCancelRequest,
    BulkRetryRequest,
    JobCreate,
    JobDetailOut,
    JobItems,
    JobList,
    JobOut,
)
from .queries import DECIMAL

__all__ = ["check_size", "router"]

router = APIRouter(prefix="/v1", dependencies=[AdminAuth], tags=["admin"])


_MAX_INT = 2**53 - 1
MAX_DEPTH = 64
"""Deepest nesting of objects and arrays a payload, result or progress may have
(Cosmos DB allows 128 levels in a whole document)."""


_INT = frozenset({int})
_FLOAT = frozenset({float})
_LIST = frozenset({list})
_DICT = frozenset({dict})
_CONTAINERS = frozenset({dict, list})


def _unportable(value: Any) -> str | None:
    """Why JSON stores cannot keep ``value`` (too deep, a huge integer, NaN or ±inf), else None.

    Checked a level of nesting at a time, each level with builtins that loop in C (the
    types of its members, the largest and smallest integer among them, the members of
    its objects and arrays), so no nesting can exhaust the interpreter's stack and no
    member costs a turn of a Python loop. A walk visiting every member in Python cost
    ~3.6 µs a member on a slow host (~0.5 s for a 256 KiB array of zeros, ~1 s for one
    of empty arrays), all of it on the event loop: one agent's report of large results
    stalled every client of the replica for a minute.
    """
    level: list[Any] = [value]  # every value at ``depth`` levels of nesting
    depth = 0
    while level:
        kinds = set(map(type, level))
        if int in kinds:
            ints = level if kinds == _INT else [m for m in level if type(m) is int]
            if max(ints) > _MAX_INT or min(ints) < -_MAX_INT:
                # Cosmos stores numbers as doubles: larger integers would silently change.
                return "holds an integer beyond ±(2**53-1)"
        if float in kinds:
            floats = level if kinds == _FLOAT else [m for m in level if type(m) is float]
            if not all(map(math.isfinite, floats)):
                return "holds a non-finite number"  # JSON has none, and no store keeps them
        if kinds.isdisjoint(_CONTAINERS):
            return None
        if depth >= MAX_DEPTH:
            return f"nests objects and arrays deeper than {MAX_DEPTH} levels"
        if kinds == _DICT:
            level = list(chain.from_iterable(map(dict.values, filter(None, level))))
        elif kinds == _LIST:
            level = list(chain.from_iterable(level))
        else:
            dicts = [m for m in level if type(m) is dict]
            level = list(chain.from_iterable([m for m in level if type(m) is list]))
            level += chain.from_iterable(map(dict.values, filter(None, dicts)))
        depth += 1
    return None


_REFUSED_BY_ORJSON = {
    "Integer exceeds 64-bit range": "holds an integer beyond ±(2**53-1)",
    "Recursion limit reached": f"nests objects and arrays deeper than {MAX_DEPTH} levels",
}
"""Why orjson cannot encode a parsed body's value (past 64 bits, past 255 levels), as
``_unportable`` says it."""


_FLAT = frozenset({str, int, bool, type(None)})
"""The members of a flat object ``check_size`` checks in C alone (no float: NaN encodes)."""


def check_size(co: Coordinator, value: Any, what: str) -> None:
    """422 for values JSON cannot carry portably, 413 above ``max_payload_bytes``.

    The size is measured first, in C, so that a value over the limit is refused before
    any check that visits its members (a 50 MB result in a report costs its encoding,
    not seconds of the event loop); a value orjson cannot encode is unportable anyway.
    So a value both over the limit and unportable in a way orjson encodes (NaN, an
    integer between 2**53 and 2**64, 65 to 255 levels) is 413 where it was 422.
    """
    if type(value) is dict:
        # Most payloads, checked without ``_unportable``'s walk (2-4 µs a job for a
        # small object): the default ``{}`` (2 bytes; the limit is at least 1,024), and
        # a flat object of strings, integers, flags and nulls below the limit, whose
        # integers orjson's strict mode checks as it measures (±(2**53-1), as
        # ``_unportable``). Anything else, or an error to word, takes the long way.
        if not value:
            return
        if _FLAT.issuperset(map(type, value.values())):
            try:
                size = len(orjson.dumps(value, option=orjson.OPT_STRICT_INTEGER))
            except orjson.JSONEncodeError:
                pass
            else:
                if size <= co.settings.max_payload_bytes:
                    return
    _check_any_size(co, value, what)


def _check_any_size(co: Coordinator, value: Any, what: str) -> None:
    # Its compact UTF-8 JSON, as stored; orjson, not json.dumps: this runs for every
    # enqueue and every reported result (a few µs each with the standard library).
    try:
        size = len(orjson.dumps(value))
    except orjson.JSONEncodeError as exc:
        problem = _REFUSED_BY_ORJSON.get(str(exc)) or _unportable(value)
        if problem is not None:
            raise ValidationFailedError(f"{what} {problem}", field=what) from None
        raise  # a value no JSON parser makes: a defect, answered 500
    limit = co.settings.max_payload_bytes
    if size > limit:
        raise PayloadTooLargeError(f"{what} is {size} bytes; the limit is {limit}", limit=limit)
    problem = _unportable(value)
    if problem is not None:
        raise ValidationFailedError(f"{what} {problem}", field=what)


_INSTANT = TypeAdapter(AwareDatetime)
"""Dumps an aware time as ``model_dump`` dumps ``run_after`` (UTC as ``...Z``)."""


def _digest(dumped: dict[str, Any]) -> str:
    return hashlib.sha256(json.dumps(dumped, sort_keys=True).encode()).hexdigest()


def _new_job(co: Coordinator, body: JobCreate) -> NewJob:
    check_size(co, body.payload, "payload")
    digest = as_sent = ""
    if body.idempotency_key is not None:
        # What a replay under the same key must match (a random id never replays): the
        # validated body, so defaults spelt out or not, keys in any order and 30 for
        # 30.0 are one request. The trace context is left out: the same job enqueued
        # again from another request (a retry of the caller's own work) is a replay.
        dumped = body.model_dump(mode="json", exclude={"traceparent"})
        digest = _digest(dumped)
        if body.run_after is not None and body.run_after.utcoffset():
            # An instant, whatever offset names it: "01:00+01:00" retried as "00:00Z"
            # is the same job. UTC is what a "Z" or "+00:00" dumps to already, so only
            # other offsets pay a second hash; the hash as sent stays a replay of jobs
            # stored before instants were compared (``NewJob.also_replays``).
            as_sent = digest
            dumped["run_after"] = _INSTANT.dump_python(body.run_after.astimezone(UTC), mode="json")
            digest = _digest(dumped)
    # By position, in NewJob's order (its docstring says why): kind, payload,
    # traceparent, queue, priority, max_attempts, lease_seconds, timeout_seconds,
    # run_after, requires, idempotency_key, lock, schedule, request_hash, also_replays.
    return NewJob(
        body.kind,
        body.payload,
        body.traceparent,
        body.queue,
        body.priority,
        body.max_attempts,
        body.lease_seconds,
        body.timeout_seconds,
        None if body.run_after is None else from_datetime(body.run_after),
        body.requires,
        body.idempotency_key,
        body.lock,
        None,  # no schedule: a schedule's jobs are enqueued by the scheduler
        digest,
        as_sent,
    )


@router.post("/jobs", status_code=201, response_model=JobOut, responses={200: {"model": JobOut}})
async def create_job(body: JobCreate, co: Co) -> Response:
    """Enqueue a job; with a used idempotency key: 200 and the same job, or 409."""
    job, created = await enqueue(co, _new_job(co, body))
    return Answer(job_json(job), status_code=201 if created else 200)


def _batch_job(co: Coordinator, job: JobCreate, index: int) -> NewJob:
    """``_new_job`` for the batch's job at ``index``; its refusal names the job (``index``)."""
    try:
        return _new_job(co, job)
    except (ValidationFailedError, PayloadTooLargeError) as exc:
        # In a batch of a thousand, "payload holds a non-finite number" alone leaves the
        # caller to search for the job; pydantic's own errors carry their index already.
        exc.message = f"jobs[{index}]: {exc.message}"
        exc.details["index"] = index
        raise


@router.post("/jobs/batch", status_code=201, response_model=JobItems)
async def create_jobs(body: BatchCreate, co: Co) -> Response:
    """Enqueue 1..1000 jobs, all or nothing.

    An error about one job names it: pydantic's by its place in ``loc``, the payload's
    checks by ``details.index`` and a ``jobs[i]:`` prefix to the message.
    """
    new = [_batch_job(co, job, index) for index, job in enumerate(body.jobs)]
    first_with: dict[str, int] = {}
    for index, job in enumerate(new):
        if job.idempotency_key:
            earlier = first_with.setdefault(job.idempotency_key, index)
            if earlier != index:
                # Named by both places, as the payload checks name theirs: in a batch
                # of a thousand a bare "keys repeat" leaves the caller to search.
                raise ValidationFailedError(
                    f"jobs[{index}]: idempotency_key repeats that of jobs[{earlier}]",
                    field="idempotency_key",
                    index=index,
                )
    jobs = await enqueue_batch(co, new)
    return Answer({"items": job_jsons(jobs)}, status_code=201)


@router.get("/jobs")
async def list_all(
    co: Co,
    queue: Annotated[str | None, Query(max_length=64)] = None,
    status: JobStatus | None = None,
    kind: Annotated[str | None, Query(min_length=1, max_length=200)] = None,
    lock: Annotated[str | None, Query(min_length=1, max_length=255)] = None,
    limit: Annotated[int, Query(ge=1, le=1000), DECIMAL] = 100,
    cursor: Annotated[str | None, Query(max_length=4096)] = None,
) -> JobList:
    """A page of jobs, oldest first, each filter served by an index.

    Send ``next_cursor`` back as ``cursor`` for the next page, until it is null. A page
    may hold fewer than ``limit`` jobs, even none, before the last: a listing by
    ``lock``, or of leased jobs, with other filters reads ahead in bounded steps and
    answers what it found so far.
    """
    match = JobFilter(
        queue=queue, status=None if status is None else status.value, kind=kind, lock=lock
    )
    jobs, nxt = await list_jobs(co, match, limit=limit, cursor=cursor)
    return JobList(items=[job_out(j) for j in jobs], next_cursor=nxt)


@router.post("/jobs/retry")
async def retry_many(body: BulkRetryRequest, co: Co) -> JobItems:
    """Requeue the oldest matching failed or cancelled jobs, each as by its own retry."""
    match = JobFilter(queue=body.queue, kind=body.kind)
    jobs = await bulk_retry(co, match, JobStatus(body.status), body.limit)
    return JobItems(items=[job_out(j) for j in jobs])


@router.post("/jobs/cancel")
async def cancel_many(body: BulkCancelRequest, co: Co) -> JobItems:
    """Cancel the oldest matching non-terminal jobs, each as by its own cancel."""
    match = JobFilter(queue=body.queue, kind=body.kind, lock=body.lock)
    return JobItems(items=[job_out(j) for j in await bulk_cancel(co, match, body.limit)])


@router.get("/jobs/{job_id}")
async def read_job(job_id: str, co: Co) -> JobDetailOut:
    """One job with its runs: one per claim, the newest 20 (``runs_dropped`` counts the rest)."""
    return job_detail_out(await get_job(co, job_id))


@router.post("/jobs/{job_id}/cancel")
async def cancel(job_id: str, co: Co) -> JobOut:
    """Cancel a queued job, or ask the holder of a leased one to stop; 409 if terminal."""
    return job_out(await cancel_job(co, job_id))


@router.post("/jobs/{job_id}/retry")
async def retry(job_id: str, co: Co) -> JobOut:
    """Requeue a failed or cancelled job with a fresh attempt budget; 409 otherwise."""
    return job_out(await retry_job(co, job_id))
