"""Locks (SPEC semantics 9): at most one live lease among the jobs that share a lock.

One document per held lock in the ``locks`` container (id and partition key
``lock_id(name)``, so each lock is its own partition), holding its holder
``{job_id, epoch, run_id, at}``. The claim path (step 5 of ``services/claims.py``,
``_lease``) calls three functions, the lease-ending paths (``services/leases.py:
lease_ended``) one:

* ``acquire(co, job, epoch, run_id)`` — just before the job's lease write: take
  the lock for that claim with a conditional write, or None if it is held;
* ``is_head(co, job, queues, labels)`` — once it is taken: whether the job is
  still the first of its lock that this claim could take (SPEC 9: order 5 within
  a lock); if not, the claim gives the lock back with ``undo``;
* ``undo(co, taken)`` — when that lease write then loses its race;
* ``release(co, lock, job_id, epoch, run_id)`` — where a lease ends (complete,
  fail, release, the reaper's expiry, an agent's deletion): delete the lock
  document on the etag read, only if that lease is still its holder.

Whether a recorded holder still holds the lock is decided by
``domain.judge_holder`` from the holder job as read, so a release that never
happened (a crash) cannot keep a lock taken beyond its holder's lease. A holder
whose lease expired (or whose claim died in flight) is first fenced: one
conditional write on the holder job's etag as judged, so that a heartbeat its
replica decided while the lease was live cannot land after the takeover and
renew it. The lock write is conditional on the etag read (or a create that fails
if the document exists): of any number of claimers racing for a free lock across
replicas exactly one takes it.

The head check is why the lock's jobs go in order under concurrent claims: a
claim's candidates were read before it took the lock, so the lock's older job
may have been handed to a concurrent claim (on another replica, or requeued
since the read) that has not reached the lock yet. Holding the lock, the claim
knows no other claim can lease a job of it, so the queued jobs it reads then are
all the lock's candidates; if one it could take comes first, it leaves the lock
to that one. Only the claim of a job that is not the head gives the lock back,
and the head's own claim never does, so claims cannot keep undoing each other.
Jobs this agent cannot take (``requires``, a queue it does not claim from, a
``run_after`` still ahead) do not count: a job no agent can take never blocks
the lock's other jobs, and order holds among the jobs each agent may take.

``candidates_past_held_locks`` (step 3 of the claim, when every candidate waits
on a held lock) finds claimable jobs behind jobs whose lock is held without
reading through them (a queue whose head is 10,000 jobs of one held lock): the
lockless jobs in claim order, and the head of each next lock, a bounded number
of locks per claim.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from fleet_datastore import (
    AlreadyExistsError,
    Document,
    NotFoundError,
    Patch,
    PreconditionFailedError,
    Query,
    eq,
    gt,
)

from ..domain import Holder, HolderState, JobState, is_claimable, judge_holder
from ..store import job_from_doc, lock_id
from .boundary import MAX_CAS_ATTEMPTS
from .candidates import MAX_QUERY, claim_filters
from .context import Coordinator

__all__ = [
    "IN_FLIGHT_GRACE",
    "Taken",
    "acquire",
    "candidates_past_held_locks",
    "head_query",
    "holder_state",
    "is_head",
    "release",
    "undo",
]

IN_FLIGHT_GRACE = 30.0
"""Seconds a lock taken for a claim whose lease write has not landed yet stays taken.

Far longer than a lease write takes (the Cosmos SDK's throttling retries are
bounded at 30 s); after it the holder job is fenced before the lock is taken over.
"""
_LOCK_SCAN = 8
"""Locks one claim looks past held ones at most (each is one query and one point read)."""
_HEAD_SCAN = 8
"""Jobs of its lock the head check reads at most: jobs this agent cannot take are read
past, and a job behind more of them than this is leased without a verdict."""


@dataclass(frozen=True, slots=True)
class Taken:
    """A lock taken for one claim: what ``undo`` needs to give it back."""

    name: str
    job_id: str
    epoch: int
    run_id: str
    fenced: Document | None = None
    """The claimed job itself, when taking the lock fenced off a dead claim of that
    same job: the lease write must go on this newer document."""


def _holder(body: dict[str, Any]) -> Holder:
    h = body["holder"]
    return Holder(
        job_id=str(h["job_id"]),
        epoch=int(h["epoch"]),
        at=float(h["at"]),
        run_id=str(h.get("run_id", "")),
    )


async def _read_lock(co: Coordinator, name: str) -> Document | None:
    key = lock_id(name)
    try:
        return await co.locks.get(key, key)
    except NotFoundError:
        return None


async def _read_holder_job(co: Coordinator, job_id: str) -> Document | None:
    try:
        return await co.jobs.get(job_id, co.shard(job_id))
    except NotFoundError:
        return None


async def _fence(co: Coordinator, doc: Document) -> Document | None:
    """Change the holder job's etag so that its in-flight lease write can never land."""
    # Only a queued or leased job is fenced, whose one field holding ``updated_at`` is
    # that one (a terminal job's ``ended_at`` is another): the body stays exactly the
    # codec's encoding of its state, as its stamp says (``JobStates.written``), and the
    # claim's lease write over it may take its patch from the two states.
    result = await co.jobs.update_if_match(
        doc.id, doc.partition_key, doc, Patch(set={"updated_at": co.clock.now()})
    )
    co.job_cache.evict(doc.id)
    return result.document if result.ok else None


async def holder_state(
    co: Coordinator, lock: Document, *, fence: bool = True
) -> tuple[HolderState, Document | None]:
    """Whether the recorded holder of ``lock`` still holds it, and the job fenced if any.

    A holder whose lease expired, or a dead in-flight claim, is fenced here (``FENCE``
    becomes ``FREE``): the judgement was made on the holder job as read, and a write
    of it decided earlier (a heartbeat while the lease was live, the claim's lease
    write) may land after that read. The fence is conditional on the etag judged, so
    losing it means such a write landed (or the job changed otherwise): held. Without
    ``fence`` (a claim only looking for candidates) ``FENCE`` is answered as is, and
    the claim that then takes the lock fences.
    """
    holder = _holder(lock.body)
    job_doc = await _read_holder_job(co, holder.job_id)
    job = None if job_doc is None else job_from_doc(job_doc.body)
    state = judge_holder(holder, job, co.clock.now(), grace=IN_FLIGHT_GRACE)
    if state is HolderState.FENCE and fence and job_doc is not None:
        fenced = await _fence(co, job_doc)
        return (HolderState.HELD, None) if fenced is None else (HolderState.FREE, fenced)
    return state, None


async def acquire(co: Coordinator, job: JobState, epoch: int, run_id: str) -> Taken | None:
    """Take ``job.lock`` for the claim (run ``run_id``) of ``job`` at ``epoch``; None if held."""
    name = job.lock
    if name is None:
        raise ValueError("acquire needs a job with a lock")
    key = lock_id(name)
    body = {
        "id": key,
        "pk": key,
        "name": name,
        "holder": {"job_id": job.id, "epoch": epoch, "run_id": run_id, "at": co.clock.now()},
    }
    for _ in range(MAX_CAS_ATTEMPTS):
        # 1. Read the lock: no document means nobody holds it.
        lock = await _read_lock(co, name)
        if lock is None:
            # 2a. Create it: exactly one of the claimers racing for a free lock succeeds.
            try:
                await co.locks.create(body)
            except AlreadyExistsError:
                co.metrics.conflicts.labels("lock.acquire").inc()
                continue
            return Taken(name, job.id, epoch, run_id)
        # 2b. Decide from the holder job (coordinator clock) whether it still holds it.
        state, fenced = await holder_state(co, lock)
        if state is HolderState.HELD:
            return None
        # 3. Take it over on the etag read: a release or another taker in between wins.
        try:
            await co.locks.replace(body, etag=lock.etag)
        except (PreconditionFailedError, NotFoundError):
            co.metrics.conflicts.labels("lock.acquire").inc()
            continue
        return Taken(name, job.id, epoch, run_id, _own(co, fenced, job))
    return None  # too contended: this claim moves on; the lock is someone's or free later


def _own(co: Coordinator, fenced: Document | None, job: JobState) -> Document | None:
    """The fenced holder job, if it is the claimed job as the claim picked it.

    Only then may the lease write go on the fenced document: ``domain.claim`` decided
    from the picked state, and written over any other (the holder's expired lease, a
    newer epoch) it would lease the job again at an epoch already used.
    """
    if fenced is None or fenced.id != job.id:
        return None
    current = co.job_states.of(fenced)
    same = current.status is job.status and current.epoch == job.epoch
    return fenced if same else None


async def release(co: Coordinator, lock: str | None, job_id: str, epoch: int, run_id: str) -> None:
    """Free ``lock`` if the lease ``run_id`` of ``job_id`` at ``epoch`` still holds it."""
    if lock is None:
        return
    for _ in range(MAX_CAS_ATTEMPTS):
        doc = await _read_lock(co, lock)
        if doc is None:
            return
        if not _holder(doc.body).is_lease(job_id, epoch, run_id):
            return  # taken over since (after an expiry): not ours to free
        try:
            await co.locks.delete(doc.id, doc.partition_key, etag=doc.etag)
        except PreconditionFailedError:
            continue
        co.log.info("coordinator.lock.released", lock=lock, job_id=job_id, epoch=epoch)
        return
    # Left to ``holder_state``: the next claimer finds the lease ended and takes it over.


async def undo(co: Coordinator, taken: Taken) -> None:
    """Give back a lock taken for a claim whose lease write lost."""
    await release(co, taken.name, taken.job_id, taken.epoch, taken.run_id)


def head_query(name: str, queues: Sequence[str] | None, now: float) -> Query:
    """The first queued jobs of lock ``name`` a claim of ``queues`` could take at ``now``.

    Ordered by ``lock`` first (one value here, so order 5 all the same): only the lock
    index serves that order, where a queue's claim index would read the queue's
    queued jobs of every lock to find this one's (the memory provider picks the
    first index that serves the sort).
    """
    return Query(
        where=[*claim_filters(queues, now), eq("lock", name)],
        order_by=["lock", "-priority", "created_at"],
        limit=_HEAD_SCAN,
    )


async def is_head(
    co: Coordinator, job: JobState, queues: Sequence[str] | None, labels: Mapping[str, str]
) -> bool:
    """Whether no queued job of ``job.lock`` that this claim could take comes before ``job``.

    Called with the lock held (SPEC 9: order 5 within a lock). One query on the
    lock index (``status, lock, -priority, created_at``) with the claim's filters.
    """
    name = job.lock
    if name is None:
        raise ValueError("is_head needs a job with a lock")
    now = co.clock.now()
    key = (-job.priority, job.created_at)
    for doc in (await co.jobs.query(head_query(name, queues, now))).items:
        if doc.id == job.id:
            return True
        other = co.job_states.of(doc)
        if (-other.priority, other.created_at) >= key:
            return True  # the rest come after ``job`` (an equal key: either may go first)
        if is_claimable(other, now, labels):
            return False
    return True


async def _is_held(co: Coordinator, name: str) -> bool:
    # Not fenced here: the claim that tries the lock's job fences when it takes the
    # lock, one write rather than two (a fence now, and another before the takeover).
    lock = await _read_lock(co, name)
    return lock is not None and (await holder_state(co, lock, fence=False))[0] is HolderState.HELD


async def candidates_past_held_locks(
    co: Coordinator,
    queues: Sequence[str] | None,
    labels: Mapping[str, str],
    need: int,
    skip: set[str],
    held: set[str],
) -> list[Document]:
    """Claimable jobs that jobs of the ``held`` locks hide at the head of the claim order.

    Per queue (or over all queues): the first lockless jobs by index (``lock = ""``),
    then a skip scan over lock names — the head of the next lock after the last one
    seen — for at most ``_LOCK_SCAN`` locks, reading each lock to skip held ones
    (their names join ``held``). Bounded in queries whatever the queue holds.
    """
    now = co.clock.now()
    found: list[Document] = []
    scopes: list[str | None] = list(queues) if queues else [None]
    for queue in scopes:
        where = claim_filters(None if queue is None else [queue], now)
        lockless = Query(
            where=[*where, eq("lock", "")],
            order_by=["-priority", "created_at"],
            limit=min(need + len(skip) + co.settings.claim_candidates, MAX_QUERY),
        )
        page = await co.jobs.query(lockless)
        found += [
            d
            for d in page.items
            if d.id not in skip and is_claimable(co.job_states.of(d), now, labels)
        ]
        after = ""
        for _ in range(_LOCK_SCAN):
            head_query = Query(
                where=[*where, gt("lock", after)],
                order_by=["lock", "-priority", "created_at"],
                limit=1,
            )
            heads = (await co.jobs.query(head_query)).items
            if not heads:
                break
            head = heads[0]
            after = str(head.body["lock"])
            if after in held or head.id in skip:
                continue
            if not is_claimable(co.job_states.of(head), now, labels):
                continue
            if await _is_held(co, after):
                held.add(after)
                continue
            found.append(head)
    # SPEC 5 across what was found: higher priority first, then older.
    found.sort(key=lambda d: (-int(d.body.get("priority", 0)), float(d.body["created_at"])))
    return found[:need]
