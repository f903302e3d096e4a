"""Job writes: ``transition``, the CAS loop of the agent and admin calls, and ``write_job``.

``transition`` reads, decides, writes on the etag read and re-reads on a conflict
(bounded). ``write_job`` is one conditional write with no retry, for the callers
that hold a document already and move on to the next one when they lose: the
claim (step 5 of ``services/claims.py``) and the reaper. Enqueue's creates and
retention's deletes aside, the one job write outside this module is
``locks._fence``, which only changes a job's etag.
"""

from __future__ import annotations

from collections.abc import Callable

from fleet_datastore import Document, NotFoundError, Outcome, Patch

from ..domain import JobState, Rejected, Timestamp
from ..errors import ConflictError, UnavailableError
from ..errors import NotFoundError as JobNotFoundError
from ..store import is_valid_id, job_patch
from .boundary import MAX_CAS_ATTEMPTS
from .context import Coordinator

__all__ = ["Decide", "read_job", "transition", "write_job"]


def _patch(co: Coordinator, doc: Document, new: JobState) -> Patch:
    # From the two states when this replica wrote ``doc`` (its body is then exactly
    # the old state's encoding), else by encoding ``new`` and comparing the bodies.
    return job_patch(doc.body, new, co.ttl, co.job_states.written(doc))


Decide = Callable[[JobState, Timestamp], JobState | Rejected]
"""A pure domain transition with its inputs bound: ``(job, now) -> new job or Rejected``."""


async def read_job(co: Coordinator, job_id: str) -> Document:
    """The stored job document; ``NotFoundError`` (404) for an unknown id."""
    if not is_valid_id(job_id):
        # Ids we never make cannot exist; the store would refuse some of them as invalid.
        raise JobNotFoundError(f"no job {job_id!r}", job_id=job_id)
    try:
        doc = await co.jobs.get(job_id, co.shard(job_id))
    except NotFoundError:
        co.job_cache.evict(job_id)
        raise JobNotFoundError(f"no job {job_id!r}", job_id=job_id) from None
    co.job_cache.put(doc)
    return doc


async def write_job(co: Coordinator, doc: Document, new: JobState, op: str) -> Document | None:
    """Write ``new`` over ``doc`` if its etag is unchanged (claims, the reaper).

    The stored document, or None when another writer got there first (counted as
    a conflict of ``op``); callers then move on rather than re-read.
    """
    result = await co.jobs.update_if_match(doc.id, doc.partition_key, doc, _patch(co, doc, new))
    if result.outcome is not Outcome.OK or result.document is None:
        co.metrics.conflicts.labels(op).inc()
        return None
    co.job_cache.put(result.document)
    co.job_states.remember(result.document, new)
    return result.document


async def transition(
    co: Coordinator, job_id: str, decide: Decide, op: str
) -> tuple[JobState, JobState]:
    """Apply ``decide`` to the stored job with one conditional write; return (before, after).

    A ``Rejected`` decision raises ``ConflictError`` with the rejection's reason as
    its code and writes nothing.
    """
    shard = co.shard(job_id)
    cached = co.job_cache.get(job_id) if is_valid_id(job_id) else None
    for _ in range(MAX_CAS_ATTEMPTS):
        # 1. Read the job and its etag; the first pass may start from this replica's
        #    cached copy, which step 3's condition makes safe.
        doc = cached or await read_job(co, job_id)
        from_cache, cached = cached is not None, None
        old = co.job_states.of(doc)
        # 2. Decide with the coordinator's clock: liveness and expiry are judged here,
        #    never from a timestamp a client sent.
        new = decide(old, co.clock.now())
        patch = None if isinstance(new, Rejected) else _patch(co, doc, new)
        writes = patch is not None and bool(patch.set or patch.remove)
        if not writes and from_cache:
            continue  # answers that write nothing are given only from a fresh read
        if isinstance(new, Rejected):
            raise ConflictError(new.message, code=new.reason.value, job_id=job_id)
        if patch is None or not writes:
            return old, new  # nothing changes (a repeated cancel, a same-instant heartbeat)
        # 3. Conditional write on the etag read in step 1: a writer that raced us in
        #    between makes this a conflict instead of a lost update.
        result = await co.jobs.update_if_match(job_id, shard, doc, patch)
        if result.ok and result.document is not None:
            co.job_cache.put(result.document)
            co.job_states.remember(result.document, new)
            return old, new
        co.job_cache.evict(job_id)
        if result.outcome is Outcome.NOT_FOUND:
            raise JobNotFoundError(f"no job {job_id!r}", job_id=job_id)
        # 4. Lost the race: re-read and decide again on the newer state (bounded).
        if not from_cache:
            co.metrics.conflicts.labels(op).inc()
    raise UnavailableError("the job kept changing under this request; retry", job_id=job_id)
