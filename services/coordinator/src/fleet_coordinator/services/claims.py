"""A claim, as numbered steps: read the agent, find candidates, reserve, lease.

``claim_jobs`` is the whole claim; the steps below are the ones
``docs/architecture.md`` walks through. Every write is conditional, so any
number of claimers on any number of replicas may run these steps at once:

0. One claim of an agent at a time in this replica (``Ledger.lock``): claims
   of one agent coalesce instead of racing on its ledger. A claim that waited
   re-reads the agent, whose ledger the previous one changed.
1. Read the agent (``AgentState``, ``domain/agent.py``): a draining agent gets
   nothing; its queues narrow the ones asked for, and paused queues (SPEC 10)
   are left out; its labels filter jobs.
2. Its ledger, minus leases that ended in this replica, gives the free slots
   (``Ledger.free_slots``). A ledger with fewer free slots than asked for may
   hold leftovers: leases that ended on another replica, which writes their
   release with its next claim (or ``ledger_flush_seconds`` later), or of a
   replica that died before writing them. Prune the entries whose lease is no
   longer live (``Ledger.prune``, judged by ``domain.is_stale``; one read each,
   oldest first, until the shortfall is covered).
3. Find candidates (``CandidateSource.take``, ``services/candidates.py``): the
   one candidate query, shared with the claims arriving at the same moment in
   this replica, in SPEC 5 order, claimable and matching the agent's labels,
   none handed to two claimers here, nor two jobs of one lock at once.
   Jobs of a lock this claim found held, or already picked, are dropped; when
   nothing is left the claim reaches past them through the lock index
   (``locks.candidates_past_held_locks``), so held locks never block other jobs.
4. Reserve them in the agent's ledger with one conditional write
   (``Ledger.reserve``, deciding with ``AgentState.reserve``), which also drops
   the leases that ended here: two claims of one agent on different replicas
   cannot both take its last slot.
5. Lease each reserved job (``_lease``): a job with a ``lock`` first takes its
   lock document with a conditional write (``locks.acquire``; SPEC 9: a held
   lock leaves the job queued) and checks, holding it, that the job is still the
   first of its lock this claim could take (``locks.is_head``: a concurrent claim
   may hold the lock's older job, or it was requeued since step 3's read); if not,
   it gives the lock back and treats it as held, leaving the lock to the older
   job. Then ``domain.claim`` (epoch + 1, a new run) and
   one conditional write on the etag the query returned (``transitions.write_job``,
   the store's ``update_if_match``; the writes go out together); a lease write
   that loses gives its lock back (``locks.undo``).
   Of any number of racing claimers exactly one wins a job; a loser takes the next
   candidate. Every write is awaited, a failed one too; when the store fails
   (503) after some jobs were leased, the claim stops and answers those.
6. Give back the reservations of the jobs lost in step 5 (``Ledger.unreserve``),
   and go again (``_ROUNDS``) while slots and ``max_jobs`` allow, and, once
   something is leased, while less than a tenth of its lease has passed
   (``_ANSWER_WITHIN``): leases run from their write, not from the answer.
7. A claim that leased nothing still shows the agent alive (``Ledger.touch``,
   written rarely).

The long-poll (``wait_and_claim``, ``claim_waiting``) follows: it repeats the
whole claim until a job is leased or its wait ends. A caller that hangs up
cancels it; a claim under way then runs to its end and releases what it leased
(``_claim_to_the_end``), since nobody is left to answer.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from fleet_datastore import Document

from .. import domain
from ..domain import JobState
from ..errors import CoordinatorError
from ..store import new_id
from ..tracing import job_span
from .agent_docs import StoredAgent
from .context import Coordinator
from .leases import release_job
from .locks import Taken, acquire, candidates_past_held_locks, is_head, undo
from .transitions import write_job

__all__ = ["claim_jobs", "claim_waiting", "wait_and_claim"]

_ROUNDS = 4
"""Rounds of find → reserve → lease before a claim gives up on a contended queue."""

_ANSWER_WITHIN = 0.1
"""Once a claim holds leases, it starts no further round past this share of the shortest.

Its leases run from their write, not from the answer: on a loaded store a round
takes seconds, and a claim that went on filling its slots for ~10 s (seen under
load in the stress history, with 2 s leases) answered leases already expired, an
attempt spent on each without the job ever running.
"""


async def claim_jobs(
    co: Coordinator, agent: Document, asked: Sequence[str] | None, max_jobs: int
) -> list[JobState]:
    """Lease up to ``max_jobs`` claimable jobs to ``agent`` (possibly none)."""
    # 0. One claim of this agent at a time here; a claim that waited re-reads it.
    lock = co.ledger.lock(agent.id)
    contended = lock.locked()
    async with lock:
        if contended:
            fresh = await co.agent_docs.read(agent.id, fresh=True)
            if fresh is None:
                return []
            agent = fresh
        return await _claim(co, co.agent_docs.stored(agent), asked, max_jobs)


async def _claim(
    co: Coordinator, agent: StoredAgent, asked: Sequence[str] | None, max_jobs: int
) -> list[JobState]:
    """Steps 1-7 of the module docstring, inside step 0's per-agent lock."""
    # 1. The agent: draining gets nothing (SPEC 4); its queues narrow the ones asked for.
    state = agent.state
    if state.draining:
        return []
    # SPEC 10: no leases from a paused queue; the replica's paused set is refreshed
    # every reaper tick (services/pauses.py), so the candidate query leaves them out.
    queues = co.pauses.unpaused(state.claim_queues(asked), co.known_queues)
    if queues is not None and not queues:
        return []
    # 2. Fewer free slots than asked for: the ledger may hold leftovers (a read each).
    current: StoredAgent | None = agent
    shortfall = min(max_jobs, state.capacity) - co.ledger.free_slots(agent)
    if shortfall > 0:
        current = await co.ledger.prune(agent, enough=shortfall)
    won: list[JobState] = []
    answer_by: float | None = None  # set by the first lease: see _ANSWER_WITHIN
    tried: set[str] = set()
    held: set[str] = set()  # locks this claim found held (SPEC 9)
    try:
        for _ in range(_ROUNDS):
            if current is None:
                break  # deleted meanwhile
            if answer_by is not None and co.clock.now() >= answer_by:
                break  # leases in hand and time passing: answer with them
            need = min(max_jobs - len(won), co.ledger.free_slots(current))
            if need <= 0:
                break
            # 3. Candidates from the one shared query, distinct from other claims' here;
            #    a job this claim tried, or one already in the agent's ledger, is skipped:
            #    reserving it again would take a second slot for one job.
            skip = tried | co.ledger.held(current)
            picks = await co.candidates.take(queues, state.labels, need, skip)
            lost: list[Document] = []
            try:
                #    A job whose lock is held waits; reach past such jobs rather than stop.
                picks, blocked = _without_held_locks(picks, held)
                co.candidates.settle([doc.id for doc in blocked])
                if not picks and held:
                    further = await candidates_past_held_locks(
                        co, queues, state.labels, need, skip, held
                    )
                    picks, _ = _without_held_locks(further, held)
                if not picks:
                    break
                # 4. Reserve them with one conditional write of the agent's ledger.
                current, granted = await co.ledger.reserve(current, picks)
                tried.update(doc.id for doc in picks)
                if current is None or current.state.draining:
                    break
                if not granted:
                    # Full, or this agent's claim on another replica reserved these
                    # picks meanwhile: the next round reads past them in the fresh ledger.
                    continue
                # 5. Lease each with one conditional write on the etag the query returned;
                #    the writes go out together (distinct jobs: one group commit on SQLite)
                #    and all are awaited, a failed one too (``_lease_all``).
                leased, lost, failure = await _lease_all(
                    co, agent.id, _Scope(queues, state.labels), granted, held
                )
                won += leased
                if leased and answer_by is None:
                    shortest = min(job.lease_seconds for job in leased)
                    answer_by = co.clock.now() + _ANSWER_WITHIN * shortest
                if failure is not None:
                    raise failure  # after the jobs leased beside it were counted as won
            finally:
                # Picks stay pending (skipped by every other claim here) until settled,
                # whatever became of them: leased, lost, not reserved or a failure.
                co.candidates.settle([doc.id for doc in picks])
            # 6. Another claimer leased these first: give their slots back.
            if lost:
                current = await co.ledger.unreserve(current, lost)
    except CoordinatorError as exc:
        # The store failed part-way (503). The jobs leased before it are answered:
        # leased in the store but never told to the agent, each would sit until its
        # lease expired and the reaper took it back, an attempt spent for nothing.
        if not won:
            raise
        co.log.warning(
            "coordinator.claim.cut_short", agent_id=agent.id, leased=len(won), error=exc.code
        )
        return won
    # 7. Nothing leased: still show the agent is alive.
    if not won and current is not None:
        await co.ledger.touch(current)
    return won


@dataclass(frozen=True, slots=True)
class _Scope:
    """What a claim may take: its queues (None: every queue) and the agent's labels."""

    queues: Sequence[str] | None
    labels: Mapping[str, str]


async def _lease_all(
    co: Coordinator,
    agent_id: str,
    scope: _Scope,
    granted: list[Document],
    held: set[str],
) -> tuple[list[JobState], list[Document], CoordinatorError | None]:
    """Step 5 for each reserved job: the jobs leased, the jobs lost, and the store's failure.

    Every write is awaited before a failure is returned: raised at once, it would
    leave the others running unawaited, and a lease one of them won would be
    answered to nobody. A failed job is neither leased nor lost: its write may
    have landed, so its slot stays reserved until a later claim's prune (step 2)
    reads the job. One job (an agent of capacity 1) is awaited as is, with no
    task for it.
    """
    if len(granted) == 1:
        try:
            job = await _lease(co, agent_id, scope, granted[0], held)
        except CoordinatorError as exc:
            return [], [], exc
        return ([], granted, None) if job is None else ([job], [], None)
    outcomes = await asyncio.gather(
        *(_lease(co, agent_id, scope, doc, held) for doc in granted),
        return_exceptions=True,
    )
    leased: list[JobState] = []
    lost: list[Document] = []
    failure: CoordinatorError | None = None
    for doc, outcome in zip(granted, outcomes, strict=True):
        if isinstance(outcome, CoordinatorError):
            failure = failure or outcome
        elif isinstance(outcome, BaseException):
            raise outcome  # a defect: a 500, once every write has settled
        elif outcome is None:
            lost.append(doc)
        else:
            leased.append(outcome)
    return leased, lost, failure


async def _lease(
    co: Coordinator, agent_id: str, scope: _Scope, doc: Document, held: set[str]
) -> JobState | None:
    """Lease one reserved job; None when it is no longer claimable or another claimer won."""
    labels = scope.labels
    job = co.job_states.of(doc)
    run_id = new_id()
    taken: Taken | None = None
    if job.lock is not None:
        # The lock is taken for this claim's epoch before the lease is decided, so the
        # lease starts no earlier than the moment the lock was judged free.
        if domain.claim_rejection(job, co.clock.now(), labels) is not None:
            return None  # not claimable anyway: leave its lock alone
        taken = await acquire(co, job, job.epoch + 1, run_id)
        if taken is None:
            held.add(job.lock)
            return None
        if taken.fenced is not None:
            doc = taken.fenced  # a dead claim of this job was fenced: write on the new etag
        # SPEC 9, order 5 within the lock: this job was picked before the lock was
        # taken, when the lock's older job was with a concurrent claim or not yet
        # requeued. Holding the lock, no claim can lease another of its jobs, so an
        # earlier one queued now goes first: give the lock back and leave it to the
        # claim that picks that job (treated as held for the rest of this claim, so
        # this claim does not contend for it again).
        try:
            first = await is_head(co, job, scope.queues, labels)
        except CoordinatorError:
            # Nothing was leased: give the lock back if the store lets us, rather than
            # leave it taken by a claim in flight (held IN_FLIGHT_GRACE, then fenced).
            with contextlib.suppress(CoordinatorError):
                await undo(co, taken)
            raise
        if not first:
            await undo(co, taken)
            held.add(job.lock)
            co.log.info("coordinator.lock.not_head", lock=job.lock, job_id=job.id)
            return None
    new = domain.claim(job, agent_id, run_id, co.clock.now(), labels=labels)
    if isinstance(new, domain.Rejected) or await write_job(co, doc, new, "claim") is None:
        if taken is not None:
            await undo(co, taken)  # nothing was leased: the lock goes back
        return None
    co.metrics.labelled(co.metrics.claims, new.queue).inc()
    co.log.info("coordinator.job.claimed", job_id=new.id, agent_id=agent_id, epoch=new.epoch)
    job_span("coordinator.job.claimed", new, agent_id, new.epoch)
    return new


def _without_held_locks(
    picks: list[Document], held: set[str]
) -> tuple[list[Document], list[Document]]:
    """The picks a claim may try, and those it may not (their lock is held or picked already)."""
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


async def wait_and_claim(
    co: Coordinator,
    agent: Document,
    queues: Sequence[str] | None,
    max_jobs: int,
    wait_seconds: float,
) -> list[JobState]:
    """Claim, long-polling up to ``wait_seconds`` until at least one job is leased.

    A claim that may wait takes one of the agent's long-poll slots first
    (``co.long_polls.slot``: 429 when none is free, ``services/long_polls.py``).
    """
    if wait_seconds <= 0:
        return await claim_jobs(co, agent, queues, max_jobs)
    with co.long_polls.slot(agent.id):
        return await claim_waiting(co, agent, queues, max_jobs, wait_seconds)


async def claim_waiting(
    co: Coordinator,
    agent: Document,
    queues: Sequence[str] | None,
    max_jobs: int,
    wait_seconds: float,
) -> list[JobState]:
    """Claim until at least one job is leased or ``wait_seconds`` pass.

    The caller holds one of the agent's long-poll slots around it (``wait_and_claim``,
    or a batch report, which takes it before applying its items).
    """
    loop = asyncio.get_running_loop()
    deadline = loop.time() + wait_seconds
    while True:
        generation = co.notifier.generation
        won = await _claim_to_the_end(co, agent, queues, max_jobs)
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
        fresh = await co.agent_docs.read(agent.id)
        if fresh is None:
            return []
        agent = fresh


async def _claim_to_the_end(
    co: Coordinator, agent: Document, queues: Sequence[str] | None, max_jobs: int
) -> list[JobState]:
    """One claim of a long-poll, run to its end even when the long-poll is cancelled.

    A long-poll is cancelled when its caller hangs up (``api/disconnects.py``),
    possibly with one lease written and another in flight. Those leases would be
    answered to nobody: each would wait out its lease and spend an attempt (with
    one attempt allowed, the job would fail without having run). So the claim
    finishes beside the cancellation, and the jobs it leased are released:
    requeued at once, the attempt not counted. A claim that never waits (no
    ``wait_seconds``) is never cancelled by its caller, and runs without a task.
    """
    claim = asyncio.ensure_future(claim_jobs(co, agent, queues, max_jobs))
    try:
        return await asyncio.shield(claim)
    except asyncio.CancelledError:
        if not claim.cancelled():  # only this wait for it was: it runs on
            await _give_back(co, agent.id, claim)
        raise


async def _give_back(co: Coordinator, agent_id: str, claim: asyncio.Task[list[JobState]]) -> None:
    """Release the jobs ``claim`` leases, once it ends: nobody is left to answer them to."""
    try:
        won = await claim
    except CoordinatorError:
        return  # it leased nothing it knows of (a failed write is a lost answer anyway)
    for job in won:
        assert job.lease is not None
        try:
            await release_job(co, agent_id, job.id, job.lease.epoch)
        except CoordinatorError:
            # The store is failing: this lease expires as any unanswered one does.
            co.log.warning("coordinator.claim.release_failed", job_id=job.id)
