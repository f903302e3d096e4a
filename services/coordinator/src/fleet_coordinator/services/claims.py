"""Claims: an indexed candidate query, a capacity reservation, one conditional write per job.

The steps of one claim (``claim_jobs``):

1. The agent document (read by authentication) says whether it may claim at
   all (not draining), which queues and labels apply, and how many slots its
   held-lease ledger leaves free.
2. One query over the claim index ``(queue, status, -priority, created_at)`` with
   ``run_after <= now`` returns candidates in the order SPEC 5 requires;
   label matching and claimability are checked on each by the domain.
3. The picked jobs are reserved in the agent's ledger with a conditional write,
   so two concurrent claims of one agent (on any replicas) cannot exceed its
   capacity.
4. Each job is leased with ``domain.claim`` and ``update_if_match`` on the etag
   of step 2: of any number of racing claimers exactly one wins a job; the
   others move on to the next candidate, and their reservations are returned.
"""

from __future__ import annotations

import asyncio
from typing import Any

from fleet_datastore import Document, Filter, NotFoundError, Patch, Query, eq, in_, le

from .. import domain
from ..domain import JobState, JobStatus
from ..errors import TooManyRequestsError, translate_store_errors
from ..store import job_from_doc, new_id
from .agents import read_agent, update_agent
from .context import Coordinator
from .ledger import held_after_release, settle, without_released
from .locks import acquire, candidates_past_held_locks, undo
from .transitions import write_job

__all__ = ["claim_jobs", "wait_and_claim"]

_ROUNDS = 4
"""Rounds of query → reserve → lease before a claim gives up on a contended queue."""
_PAGES = 3
"""Candidate pages one round reads past jobs this agent cannot take (labels)."""
_SEEN_EVERY = 10.0
"""Seconds between last-seen updates from claims that lease nothing."""
_RESERVATION_GRACE = 30.0
"""Seconds a reservation whose job is still queued counts as an in-flight claim."""


async def _candidates(
    co: Coordinator, queues: list[str] | None, labels: dict[str, str], need: int, skip: set[str]
) -> list[Document]:
    now = co.clock.now()
    where: list[Filter] = [eq("status", JobStatus.QUEUED.value), le("run_after", now)]
    if queues:
        where.insert(0, eq("queue", queues[0]) if len(queues) == 1 else in_("queue", queues))
    found: list[Document] = []
    cont: str | None = None
    for _ in range(_PAGES):
        query = Query(
            where=where,
            order_by=["-priority", "created_at"],
            limit=min(need + len(skip) + co.settings.claim_candidates, 1000),
            continuation=cont,
        )
        with translate_store_errors():
            page = await co.containers.jobs.query(query)
        for doc in page.items:
            if doc.id not in skip and domain.is_claimable(job_from_doc(doc.body), now, labels):
                found.append(doc)
        cont = page.continuation
        if len(found) >= need or cont is None:
            break
    return found


async def _prune(co: Coordinator, agent: Document) -> Document | None:
    """Drop ledger entries whose lease is no longer live (ended, expired, or never taken)."""
    now = co.clock.now()
    stale: list[str] = []
    for job_id, entry in (agent.body.get("held") or {}).items():
        with translate_store_errors():
            try:
                job = job_from_doc((await co.containers.jobs.get(job_id, co.shard(job_id))).body)
            except NotFoundError:
                stale.append(job_id)
                continue
        lease = job.lease
        if lease is not None and lease.is_held_by(agent.id, int(entry["epoch"])):
            if lease.is_live(now):
                continue
        # A claim in flight on another replica reserved this job and has not leased
        # it yet; a crashed one is forgotten after the grace period.
        elif (
            job.status is JobStatus.QUEUED
            and job.epoch + 1 == int(entry["epoch"])
            and now - float(entry["at"]) < _RESERVATION_GRACE
        ):
            continue
        stale.append(job_id)
    if not stale:
        return agent

    def change(body: dict[str, Any]) -> Patch | None:
        held = {k: v for k, v in (body.get("held") or {}).items() if k not in stale}
        return Patch(set={"held": held})

    return await update_agent(co, agent, change, "agent.prune")


async def _reserve(
    co: Coordinator, agent: Document, picks: list[Document]
) -> tuple[Document | None, list[Document]]:
    now = co.clock.now()
    granted: list[Document] = []

    released: dict[str, int] = {}

    def change(body: dict[str, Any]) -> Patch | None:
        # Re-decided on every re-read: another claim may have taken the free slots.
        # Leases that ended in this replica leave the ledger in this same write.
        released.clear()
        released.update(co.released.get(agent.id, {}))
        held = without_released(dict(body.get("held") or {}), released)
        free = int(body.get("capacity", 1)) - len(held)
        granted.clear()
        if body.get("draining") or free <= 0:
            return None
        for doc in picks[:free]:
            held[doc.id] = {"epoch": int(doc.body.get("epoch", 0)) + 1, "at": now}
            granted.append(doc)
        return Patch(set={"held": held, "last_seen": now})

    written = await update_agent(co, agent, change, "agent.reserve")
    if written is not None and granted:
        settle(co, agent.id, released)
    return written, granted


async def _unreserve(co: Coordinator, agent: Document, lost: set[str]) -> Document | None:
    def change(body: dict[str, Any]) -> Patch | None:
        held = {k: v for k, v in (body.get("held") or {}).items() if k not in lost}
        return Patch(set={"held": held})

    return await update_agent(co, agent, change, "agent.unreserve")


async def _lease(
    co: Coordinator, agent: Document, doc: Document, held: set[str]
) -> JobState | None:
    job = job_from_doc(doc.body)
    labels = agent.body.get("labels") or {}
    # --- locks (SPEC 9): take the job's lock for the next epoch before the lease is
    # decided, so the lease starts no earlier than the moment the lock was judged free.
    run_id = new_id()
    taken = None
    if job.lock is not None:
        if domain.claim_rejection(job, co.clock.now(), labels) is not None:
            return None  # not claimable anyway: do not touch its lock
        taken = await acquire(co, job, job.epoch + 1, run_id)
        if taken is None:
            held.add(job.lock)
            return None
        if taken.fenced is not None:
            doc = taken.fenced  # a dead claim of this job was fenced: write on the new etag
    # --- end locks
    now = co.clock.now()
    new = domain.claim(job, agent.id, run_id, now, labels=labels)
    if isinstance(new, domain.Rejected):
        if taken is not None:
            await undo(co, taken)  # locks: nothing was leased, so the lock goes back
        return None
    if await write_job(co, doc, new, "claim") is None:
        if taken is not None:
            await undo(co, taken)  # locks: the lease write lost, so the lock goes back
        return None
    co.metrics.claims.labels(new.queue).inc()
    co.log.info("coordinator.job.claimed", job_id=new.id, agent_id=agent.id, epoch=new.epoch)
    return new


async def claim_jobs(
    co: Coordinator, agent: Document, queues: list[str] | None, max_jobs: int
) -> list[JobState]:
    """Lease up to ``max_jobs`` claimable jobs to ``agent`` (possibly none)."""
    lock = co.agent_lock(agent.id)
    contended = lock.locked()
    async with lock:
        if contended:
            # Another claim of this agent ran meanwhile and changed its ledger: re-read.
            # (Uncontended, the document authentication read is fresh enough; a stale
            # one only costs a conflict and a re-read in the ledger write.)
            fresh = await read_agent(co, agent.id, fresh=True)
            if fresh is None:
                return []
            agent = fresh
        return await _claim_locked(co, agent, queues, max_jobs)


async def _claim_locked(
    co: Coordinator, agent: Document, queues: list[str] | None, max_jobs: int
) -> list[JobState]:
    body = agent.body
    if body.get("draining"):
        return []  # SPEC 4: a draining agent gets no new claims.
    allowed = list(body.get("queues") or [])
    if allowed:
        queues = [q for q in queues if q in allowed] if queues else allowed
        if not queues:
            return []
    labels: dict[str, str] = dict(body.get("labels") or {})
    capacity = int(body.get("capacity", 1))
    current: Document | None = agent
    if capacity - len(held_after_release(co, agent)) <= 0:
        # Entries normally leave the ledger when a lease ends (agents' calls, the
        # reaper); only a full ledger is worth checking for leftovers, one read each.
        current = await _prune(co, agent)
    won: list[JobState] = []
    tried: set[str] = set()
    held: set[str] = set()  # locks: those this claim found held
    for _ in range(_ROUNDS):
        if current is None:
            break
        free = capacity - len(held_after_release(co, current))
        need = min(max_jobs - len(won), free)
        if need <= 0:
            break
        skip = tried | set(held_after_release(co, current))
        picks, more = await co.candidates.take(co, queues, labels, need, skip)
        try:
            if not picks and more:
                # The shared page held nothing this agent may take (labels): read further.
                skip |= co.candidates.pending
                picks = await co.candidates.take_further(
                    co, _candidates(co, queues, labels, need, skip), labels, need, skip
                )
            # --- locks: drop picks whose lock is held (or picked twice), then reach past them.
            picks, blocked = _without_held_locks(picks, held)
            co.candidates.settle([doc.id for doc in blocked])
            if not picks and held:
                skip |= co.candidates.pending
                picks = await co.candidates.take_further(
                    co,
                    candidates_past_held_locks(co, queues, labels, need, skip, held),
                    labels,
                    need,
                    skip,
                )
            # --- end locks
            if not picks:
                break
            current, granted = await _reserve(co, current, picks)
            if current is None or not granted:
                break
            lost: list[str] = []
            for doc in granted:
                tried.add(doc.id)
                job = await _lease(co, current, doc, held)
                if job is None:
                    lost.append(doc.id)
                else:
                    won.append(job)
        finally:
            co.candidates.settle([doc.id for doc in picks])
        if lost:
            current = await _unreserve(co, current, set(lost))
    if not won and current is not None:
        await _touch(co, current)
    return won


def _without_held_locks(
    picks: list[Document], held: set[str]
) -> tuple[list[Document], list[Document]]:
    """Locks: the picks a claim may try, and those it may not (lock held or picked already)."""
    kept: list[Document] = []
    blocked: list[Document] = []
    taking: set[str] = set()
    for doc in picks:
        lock = doc.body.get("lock") or None
        if lock is not None and (lock in held or lock in taking):
            blocked.append(doc)
            continue
        if lock is not None:
            taking.add(lock)
        kept.append(doc)
    return kept, blocked


async def _touch(co: Coordinator, agent: Document) -> None:
    # A claim that leased nothing still shows the agent is alive; written at most
    # every _SEEN_EVERY seconds so idle polling costs almost no writes.
    now = co.clock.now()
    last = agent.body.get("last_seen")
    if last is not None and now - float(last) < _SEEN_EVERY:
        return
    with translate_store_errors():
        result = await co.containers.agents.update_if_match(
            agent.id, agent.id, agent, Patch(set={"last_seen": now})
        )
    if result.ok and result.document is not None:
        co.agent_cache.put(result.document)


async def wait_and_claim(
    co: Coordinator, agent: Document, queues: list[str] | None, max_jobs: int, wait_seconds: float
) -> list[JobState]:
    """Claim, long-polling up to ``wait_seconds`` until at least one job is leased.

    An agent may have ``FLEET_MAX_LONG_POLLS_PER_AGENT`` long-polls waiting on this
    replica; one more is refused at once (429): each waiter re-polls on every wake-up,
    so one greedy agent could otherwise multiply the store's load at will.
    """
    if wait_seconds <= 0:
        return await claim_jobs(co, agent, queues, max_jobs)
    waiting = co.long_polls.get(agent.id, 0)
    if waiting >= co.settings.max_long_polls_per_agent:
        raise TooManyRequestsError(
            f"this agent already has {waiting} long-polls waiting on this replica",
            code="too_many_long_polls",
            limit=co.settings.max_long_polls_per_agent,
        )
    co.long_polls[agent.id] = waiting + 1
    try:
        return await _wait_and_claim(co, agent, queues, max_jobs, wait_seconds)
    finally:
        left = co.long_polls[agent.id] - 1
        if left:
            co.long_polls[agent.id] = left
        else:
            del co.long_polls[agent.id]


async def _wait_and_claim(
    co: Coordinator, agent: Document, queues: list[str] | None, max_jobs: int, wait_seconds: float
) -> list[JobState]:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + wait_seconds
    while True:
        generation = co.notifier.generation
        won = await claim_jobs(co, agent, queues, max_jobs)
        remaining = deadline - loop.time()
        if won or remaining <= 0:
            return won
        # Woken at once by an enqueue in this replica (even one that came while we
        # were claiming), else on the replica's shared re-poll tick, together with
        # every other waiter, for jobs enqueued on other replicas.
        # Waking only at its own deadline, a waiter answers "nothing" at once: the
        # last shared tick re-polled at most one interval ago, and a claim of its own
        # now would be one query per waiter, all at different moments.
        interval = co.settings.long_poll_interval_seconds
        if not await co.notifier.wait(remaining, generation, interval):
            return []
        fresh = await read_agent(co, agent.id)
        if fresh is None:
            return []
        agent = fresh
