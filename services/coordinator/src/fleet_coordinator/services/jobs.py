"""Admin job operations: enqueue (single and batch), read, list, cancel and retry."""

from __future__ import annotations

import asyncio
import contextlib
from collections import Counter, defaultdict
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from fleet_datastore import (
    AlreadyExistsError,
    BatchError,
    BatchTooLargeError,
    CreateOp,
    InvalidContinuationError,
    Query,
    in_,
)

from .. import domain
from ..domain import JobState
from ..errors import BadRequestError, ConflictError
from ..store import (
    QUEUES_PARTITION,
    job_from_doc,
    job_id_for_key,
    job_to_doc,
    new_id,
    new_ids,
)
from ..store.listing import JobFilter, list_page
from .context import Coordinator
from .throughput import Event
from .transitions import read_job, transition

__all__ = ["NewJob", "cancel_job", "enqueue", "enqueue_batch", "get_job", "list_jobs", "retry_job"]

_BATCH_CHUNK = 100


@dataclass(slots=True)
class NewJob:
    """A validated job to enqueue, and the hash of the request body that described it.

    Never changed once built, though not frozen: a frozen dataclass's ``__init__``
    stores each of these 15 fields with ``object.__setattr__``, ~2 µs of every job
    of a batch (a plain one assigns them). Not keyword-only either: the API's
    ``_new_job`` passes its 14 fields by position, where CPython's matching of as many
    keyword arguments cost another ~1.5 µs a job; every other caller names them.
    """

    kind: str
    payload: Mapping[str, Any]
    traceparent: str | None = None
    queue: str = "default"
    priority: int = 0
    max_attempts: int = 3
    lease_seconds: float | None = None
    timeout_seconds: float | None = None
    run_after: float | None = None
    requires: Mapping[str, str] = field(default_factory=dict)
    idempotency_key: str | None = None
    lock: str | None = None
    schedule: str | None = None
    request_hash: str = ""
    also_replays: str = ""
    """Another hash a stored job's may be for this request to replay it (empty: none):
    the body's as sent, where coordinators before this one did not hash it normalized."""


def _build(
    co: Coordinator, new: NewJob, now: float, order: int = 0, fresh_id: str = ""
) -> tuple[JobState, dict[str, Any]]:
    """The job ``new`` describes and its stored body; ``fresh_id`` (else a new one) if keyless."""
    # A keyed job's id derives from its key: the job is the key's record.
    key = new.idempotency_key
    job_id = job_id_for_key(key) if key else fresh_id or new_id()
    state = domain.enqueue(
        job_id=job_id,
        kind=new.kind,
        payload=new.payload,
        traceparent=new.traceparent,
        # A microsecond per position keeps a batch FIFO for claimers; run_after
        # stays ``now`` so no job of the batch is due later than the request.
        now=now + order * 1e-6,
        queue=new.queue,
        priority=new.priority,
        max_attempts=new.max_attempts,
        lease_seconds=new.lease_seconds or co.settings.default_lease_seconds,
        timeout_seconds=new.timeout_seconds,
        run_after=now if new.run_after is None else new.run_after,
        requires=new.requires,
        idempotency_key=new.idempotency_key,
        lock=new.lock,
        schedule=new.schedule,
    )
    return state, job_to_doc(state, co.shard(job_id), new.request_hash)


async def _remember_queue(co: Coordinator, queue: str, now: float) -> None:
    # One marker per queue lets GET /v1/queues list queues without scanning jobs; each
    # replica writes it at most once per queue, so it costs nothing per enqueue.
    if queue in co.known_queues:
        return
    body = {"id": f"q.{queue}", "pk": QUEUES_PARTITION, "kind": "queue", "name": queue}
    with contextlib.suppress(AlreadyExistsError):
        await co.agents.create({**body, "created_at": now})
    co.known_queues.add(queue)


def _replayed(state: JobState, stored: dict[str, Any], new: NewJob) -> JobState:
    # The id exists: it came from this idempotency key. Same body → the same job (200);
    # a different body under the same key → 409, and nothing is written.
    found = stored.get("request_hash", "")
    if found != new.request_hash and not (new.also_replays and found == new.also_replays):
        raise ConflictError(
            "idempotency_key was already used with a different body",
            code="idempotency_conflict",
            idempotency_key=state.idempotency_key,
        )
    return job_from_doc(stored)


async def _replay(co: Coordinator, state: JobState, new: NewJob) -> JobState:
    return _replayed(state, (await read_job(co, state.id)).body, new)


async def _create(
    co: Coordinator, new: NewJob, state: JobState, body: dict[str, Any]
) -> tuple[JobState, bool]:
    try:
        co.job_cache.put(await co.jobs.create(body))
    except AlreadyExistsError:
        return await _replay(co, state, new), False
    return state, True


async def enqueue(co: Coordinator, new: NewJob) -> tuple[JobState, bool]:
    """Enqueue one job (one store request); return it and whether it was created now."""
    now = co.clock.now()
    if new.idempotency_key is None:
        # Never refused: the marker first, so no job exists in a queue that is not listed.
        await _remember_queue(co, new.queue, now)
    state, created = await _create(co, new, *_build(co, new, now))
    if created:
        co.metrics.labelled(co.metrics.enqueued, state.queue).inc()
        co.throughput.add(Event.ENQUEUED, now)
        co.log.info("coordinator.job.enqueued", job_id=state.id, queue=state.queue)
        co.notifier.notify()
    if new.idempotency_key is not None:
        # After the create, which may be refused (409) and then writes nothing, the
        # marker included; after the job is counted and announced too. A replay writes
        # it as well: a retry after the marker's write failed (503, the job stored)
        # completes it.
        await _remember_queue(co, new.queue, now)
    return state, created


async def _stored(co: Coordinator, bodies: Sequence[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    """The stored documents among ``bodies``' ids: one query per shard and 100 ids."""
    by_shard: dict[str, list[str]] = defaultdict(list)
    for body in bodies:
        by_shard[body["pk"]].append(body["id"])
    pages = await asyncio.gather(
        *(
            co.jobs.query(
                Query(where=[in_("id", ids[start : start + _BATCH_CHUNK])], partition_key=shard)
            )
            for shard, ids in by_shard.items()
            for start in range(0, len(ids), _BATCH_CHUNK)
        )
    )
    return {doc.id: doc.body for page in pages for doc in page.items}


async def enqueue_batch(co: Coordinator, jobs: Sequence[NewJob]) -> list[JobState]:
    """Enqueue validated jobs, all or nothing: one transactional batch per shard and 100 jobs.

    1. Check: the ids of keyed jobs derive from their keys, so one query per shard
       finds those already stored. A key used with a different body is 409 before
       anything is written; one used with the same body is replayed, not written.
    2. Write the keyed jobs, then, once all of them are stored, the keyless ones.
       A failure midway (the store, or a concurrent request taking one of the keys
       since step 1) is 503 with only keyed jobs written: a retry replays those and
       creates the rest, so each job of the batch exists once.
    """
    now = co.clock.now()
    ids = new_ids(len(jobs))  # one clock read and one os.urandom for the batch
    built: list[tuple[JobState, dict[str, Any]]] = [
        _build(co, new, now, i, ids[i]) for i, new in enumerate(jobs)
    ]
    result: list[JobState] = [state for state, _ in built]
    created = [True] * len(built)
    landed = [False] * len(built)  # written (or found, replayed) in the store
    keyed = [i for i, new in enumerate(jobs) if new.idempotency_key]
    if keyed:
        # Only batches with keys pay this read; a keyless job's random id is new.
        stored = await _stored(co, [built[i][1] for i in keyed])
        for i in keyed:
            state = built[i][0]
            found = stored.get(state.id)
            if found is not None:
                result[i] = _replayed(state, found, jobs[i])
                created[i] = False
                landed[i] = True
    # After the check, so that a 409 writes nothing (no queue marker either).
    for queue in {j.queue for j in jobs}:
        await _remember_queue(co, queue, now)

    async def write(shard: str, chunk: list[int]) -> None:
        try:
            # Etags only: the documents written are not read back (``job_cache`` is the
            # one-call enqueue's).
            await co.jobs.batch_etags(shard, [CreateOp(built[i][1]) for i in chunk])
        except BatchTooLargeError:
            # Large payloads: more than one batch request may carry (2 MB on Cosmos DB).
            # Halves until they fit; a job too large for a batch alone is created alone.
            if len(chunk) > 1:
                half = len(chunk) // 2
                await write(shard, chunk[:half])
                await write(shard, chunk[half:])
                return
        except BatchError:
            pass  # the guarded container lets through only a batch that met existing ids
        else:
            for i in chunk:
                landed[i] = True
            return
        # A concurrent request stored one of these keys since the check, or one job
        # fills a batch alone: create them one by one.
        for i in chunk:
            try:
                result[i], created[i] = await _create(co, jobs[i], built[i][0], built[i][1])
            except ConflictError as exc:
                # Step 1 found the key free; a concurrent request used it since, with
                # another body. Still the 409 it is (not a 503: the store is fine), but
                # said to be late: keyed jobs of this batch may be stored already, and
                # none of its keyless ones. A corrected retry replays those and adds
                # the rest, so each job of the batch is stored once.
                raise ConflictError(
                    "idempotency_key was used with a different body by a concurrent request "
                    "while this batch was written; its other keyed jobs may be stored (a "
                    "corrected retry replays them), its jobs without a key are not",
                    code="idempotency_conflict",
                    idempotency_key=built[i][0].idempotency_key,
                ) from exc
            landed[i] = True

    try:
        for phase in (
            [i for i in keyed if created[i]],
            [i for i, new in enumerate(jobs) if not new.idempotency_key],
        ):
            if not phase:
                continue
            by_shard: dict[str, list[int]] = defaultdict(list)
            for i in phase:
                by_shard[built[i][1]["pk"]].append(i)
            # A phase's batches go out together: one round trip of latency on Cosmos,
            # one group commit on SQLite. All are waited for; then any failure fails
            # the request (503) before the next phase writes anything.
            outcomes = await asyncio.gather(
                *(
                    write(shard, indexes[start : start + _BATCH_CHUNK])
                    for shard, indexes in by_shard.items()
                    for start in range(0, len(indexes), _BATCH_CHUNK)
                ),
                return_exceptions=True,
            )
            for outcome in outcomes:
                if isinstance(outcome, BaseException):
                    raise outcome
    finally:
        # The jobs written before a failure are enqueued all the same: counted, logged
        # and announced now, since the retry that creates the rest only replays them.
        if any(landed):
            fresh = [
                s for s, new, done in zip(result, created, landed, strict=True) if new and done
            ]
            for queue, count in Counter(s.queue for s in fresh).items():
                co.metrics.enqueued.labels(queue).inc(count)  # once per queue, not per job
            co.throughput.add(Event.ENQUEUED, now, len(fresh))
            co.log.info("coordinator.job.batch_enqueued", count=sum(landed), created=len(fresh))
            co.notifier.notify()
    return result


async def get_job(co: Coordinator, job_id: str) -> JobState:
    """One job with its runs; 404 if unknown."""
    return job_from_doc((await read_job(co, job_id)).body)


async def list_jobs(
    co: Coordinator, match: JobFilter, *, limit: int, cursor: str | None
) -> tuple[list[JobState], str | None]:
    """A page of the jobs ``match`` selects, oldest first, from an index (``store/listing.py``)."""
    try:
        docs, nxt = await list_page(co.jobs, match, limit=limit, continuation=cursor)
    except InvalidContinuationError as exc:
        raise BadRequestError("cursor is not valid for this query", code="bad_cursor") from exc
    return [job_from_doc(d.body) for d in docs], nxt


async def cancel_job(co: Coordinator, job_id: str) -> JobState:
    """Cancel a queued job or request cancellation of a leased one; 409 if terminal."""
    old, new = await transition(co, job_id, domain.cancel, "cancel")
    if new is not old:
        co.log.info("coordinator.job.cancelled", job_id=job_id, status=new.status.value)
    return new


async def retry_job(co: Coordinator, job_id: str) -> JobState:
    """Requeue a failed or cancelled job with a fresh attempt budget; 409 otherwise."""
    _, new = await transition(co, job_id, domain.retry, "retry")
    co.log.info("coordinator.job.retried", job_id=job_id, epoch=new.epoch)
    co.notifier.notify()
    return new
