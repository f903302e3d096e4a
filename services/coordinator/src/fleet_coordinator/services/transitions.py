"""The one compare-and-swap loop every job transition goes through."""

from __future__ import annotations

from collections.abc import Callable

from fleet_datastore import Document, NotFoundError, Outcome

from ..domain import JobState, Rejected, Timestamp
from ..errors import ConflictError, UnavailableError, translate_store_errors
from ..errors import NotFoundError as JobNotFoundError
from ..store import is_valid_id, job_from_doc, job_to_doc, patch_between
from .context import MAX_CAS_ATTEMPTS, Coordinator

__all__ = ["Decide", "read_job", "transition"]

Decide = Callable[[JobState, Timestamp], JobState | Rejected]
"""A pure domain transition with its inputs bound: ``(job, now) -> new job or Rejected``."""


async def read_job(co: Coordinator, job_id: str) -> Document:
    """The stored job document; ``NotFoundError`` (404) for an unknown id."""
    if not is_valid_id(job_id):
        # Ids we never make cannot exist; the store would refuse some of them as invalid.
        raise JobNotFoundError(f"no job {job_id!r}", job_id=job_id)
    with translate_store_errors():
        try:
            return await co.containers.jobs.get(job_id, co.shard(job_id))
        except NotFoundError:
            raise JobNotFoundError(f"no job {job_id!r}", job_id=job_id) from None


async def transition(
    co: Coordinator, job_id: str, decide: Decide, op: str
) -> tuple[JobState, JobState]:
    """Apply ``decide`` to the stored job with one conditional write; return (before, after).

    A ``Rejected`` decision raises ``ConflictError`` with the rejection's reason as
    its code and writes nothing.
    """
    shard = co.shard(job_id)
    for _ in range(MAX_CAS_ATTEMPTS):
        # 1. Read the job and its etag.
        doc = await read_job(co, job_id)
        old = job_from_doc(doc.body)
        # 2. Decide with the coordinator's clock: liveness and expiry are judged here,
        #    never from a timestamp a client sent.
        new = decide(old, co.clock.now())
        if isinstance(new, Rejected):
            raise ConflictError(new.message, code=new.reason.value, job_id=job_id)
        if new is old:
            return old, old  # nothing changes (e.g. a repeated cancel request)
        # 3. Conditional write on the etag read in step 1: a writer that raced us in
        #    between makes this a conflict instead of a lost update.
        body = job_to_doc(new, shard, str(doc.body.get("request_hash", "")))
        patch = patch_between(doc.body, body)
        if not patch.set and not patch.remove:
            return old, new  # e.g. a heartbeat at the same instant: the read state stands
        with translate_store_errors():
            result = await co.containers.jobs.update_if_match(job_id, shard, doc, patch)
        if result.ok:
            return old, new
        if result.outcome is Outcome.NOT_FOUND:
            raise JobNotFoundError(f"no job {job_id!r}", job_id=job_id)
        # 4. Lost the race: re-read and decide again on the newer state (bounded).
        co.metrics.conflicts.labels(op).inc()
    raise UnavailableError("the job kept changing under this request; retry", job_id=job_id)
