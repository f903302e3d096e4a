"""``CandidateSource``: the one candidate query, shared by the concurrent claims of a replica.

Every claim finds its jobs here, through ``_query``, the one place the claim
query is built: ``status = queued AND queue IN (…) AND run_after <= now ORDER
BY -priority, created_at`` over the claim index, a few rows more than asked
for (``_SHARED_SLACK``), at most 1,000; a claim whose shared page held nothing it
may take reads further pages on its own with ``claim_candidates`` rows to spare.
(The one exception: a claim whose candidates all wait on held locks reaches past
them with queries of its own over the lock index, ``locks.candidates_past_held_locks``.)

Many claimers asking at once would all read the same head of the queue and
fight over it, one conditional write winning per job. Instead, claims arriving
in the same event-loop tick join one batch (``_Batch``): its leader waits one
tick for the others, runs a single query sized for all of them, and each
claimer then takes *distinct* jobs from the shared result. Taking happens with
no ``await`` between the check and the mark, so within a replica two claimers
never pick the same job; across replicas the conditional write still decides.

A job handed out stays *pending* until its claimer settles it (leased, lost or
not reserved), and later batches skip pending jobs: on a store whose writes
take a while (SQLite, Cosmos) the next batch's query still sees a job whose
lease write is in flight, and would otherwise hand it out again, only for the
second claimer to lose the conditional write and its round. A settled job is
also skipped in pages of queries that started before it settled (they may
predate its lease write). Both are hints that save a lost round: the
conditional write alone decides who leases a job.

While a job with a ``lock`` is pending, no other job of that lock is handed out
here: the second claim would either find the lock held (a lost round) or, taking
it first, lease the lock's younger job before its older one (SPEC 9). It gets
other work instead. Across replicas the claim's head check decides
(``locks.is_head``, services/claims.py step 5).
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field

from fleet_datastore import Document, Filter, Page, Query, eq, in_, le

from ..domain import Clock, JobStatus, is_claimable
from ..settings import Settings
from .boundary import GuardedContainer
from .cache import JobStates

__all__ = ["MAX_QUERY", "CandidateSource", "claim_filters"]

MAX_QUERY = 1000
"""Rows one candidate query reads at most."""
_PAGES = 3
"""Pages a claim reads on its own past jobs it cannot take (labels) before giving up."""
_SHARED_SLACK = 2
"""Rows the shared query reads past what its claims ask for.

Each row read is decoded, and most claims take the head of the queue: 2 spare
rows instead of 16 brought the coordinator's CPU per job in a drain of one job
per claim to 0.94x (docs/benchmarks.md). A claim that finds nothing it may take in the shared page
(labels, ``requires``) reads further pages with ``claim_candidates`` to spare.
"""


class _LeaderGoneError(Exception):
    """The claim running a batch's query was cancelled before it answered."""


@dataclass(eq=False)
class _Batch:
    """One query's page and the claims taking from it (one claimer alone: ``_take_further``).

    ``needs`` sums what its claims ask for (their skip sets included), which sizes
    the query; ``seq`` numbers the query among this replica's, so that ``_pick``
    skips a job settled after it started; ``users`` counts the claims still taking
    from the page; ``taken`` holds the jobs handed out from it; ``result`` is the
    page, or the query's error.
    """

    needs: int = 0
    seq: int = 0
    users: int = 0
    taken: set[str] = field(default_factory=set)
    result: asyncio.Future[tuple[list[Document], bool]] = field(
        default_factory=lambda: asyncio.get_running_loop().create_future()
    )


def claim_filters(queues: Sequence[str] | None, now: float) -> list[Filter]:
    """The claim query's filters (SPEC 5): queued, due by ``now``, in ``queues`` (None: any).

    The one definition: the shared candidate query below and the claims reaching
    past held locks (``locks.candidates_past_held_locks``) both start from it.
    """
    where: list[Filter] = [eq("status", JobStatus.QUEUED.value), le("run_after", now)]
    if queues:
        where.insert(0, eq("queue", queues[0]) if len(queues) == 1 else in_("queue", queues))
    return where


class CandidateSource:
    """Hands out distinct claim candidates to the concurrent claims of one replica."""

    def __init__(
        self, jobs: GuardedContainer, states: JobStates, clock: Clock, settings: Settings
    ) -> None:
        self.jobs = jobs
        self.states = states
        self.clock = clock
        self.settings = settings
        self._open: dict[tuple[str, ...] | None, _Batch] = {}
        self._pending: set[str] = set()
        # The pending jobs that have a lock (job id -> lock), and those locks: at most
        # one pending job per lock. Empty unless locked jobs are being claimed.
        self._pending_locks: dict[str, str] = {}
        self._busy_locks: set[str] = set()
        self._seq = 0  # queries started so far
        self._settled: dict[str, int] = {}  # job id -> queries started when it settled
        self._live: list[_Batch] = []  # batches whose page is still being taken from

    def settle(self, job_ids: list[str]) -> None:
        """The claims of ``job_ids`` are decided (leased, lost or not reserved)."""
        self._unpend(job_ids)
        if self._live:
            for job_id in job_ids:
                self._settled[job_id] = self._seq

    def _unpend(self, job_ids: Iterable[str]) -> None:
        """``job_ids`` are no longer pending, nor their locks busy."""
        if not self._pending_locks:
            self._pending.difference_update(job_ids)
            return
        for job_id in job_ids:
            self._pending.discard(job_id)
            lock = self._pending_locks.pop(job_id, None)
            if lock is not None:
                self._busy_locks.discard(lock)

    def _done(self, batch: _Batch) -> None:
        batch.users -= 1
        if batch.users > 0:
            return
        self._live.remove(batch)
        oldest = min((b.seq for b in self._live), default=self._seq + 1)
        self._settled = {k: v for k, v in self._settled.items() if v >= oldest}

    async def take(
        self,
        queues: Sequence[str] | None,
        labels: Mapping[str, str],
        need: int,
        skip: set[str],
    ) -> list[Document]:
        """Up to ``need`` claimable jobs for an agent with ``labels``, none handed out twice.

        The jobs returned are pending until the caller passes them to ``settle``
        (in a ``finally``). When the shared page holds nothing this agent may take
        (labels) and more may match, the claimer reads further pages on its own.
        """
        while True:
            try:
                picks, more = await self._take_shared(queues, labels, need, skip)
                break
            except _LeaderGoneError:
                continue  # its leader was cancelled before its query answered: ask again
        if picks or not more:
            return picks
        return await self._take_further(queues, labels, need, skip | self._pending)

    async def _take_shared(
        self,
        queues: Sequence[str] | None,
        labels: Mapping[str, str],
        need: int,
        skip: set[str],
    ) -> tuple[list[Document], bool]:
        key = tuple(sorted(queues)) if queues else None
        batch = self._open.get(key)
        leader = batch is None
        if batch is None:
            batch = _Batch()
            self._open[key] = batch
        batch.needs += need + len(skip)
        batch.users += 1
        try:
            if leader:
                await self._lead(key, batch, queues)
            # A claimer that stops waiting (its long-poll's client left) must not cancel
            # the shared result under the others: each waits through a shield.
            result = batch.result
            docs, more = result.result() if result.done() else await asyncio.shield(result)
            return self._pick(batch, docs, labels, need, skip), more
        finally:
            if batch in self._live:
                self._done(batch)

    async def _lead(
        self, key: tuple[str, ...] | None, batch: _Batch, queues: Sequence[str] | None
    ) -> None:
        """Run the batch's one query and give every claimer in it the page (or the error)."""
        try:
            # One tick for the claims that arrived together to join this query.
            await asyncio.sleep(0)
            del self._open[key]
            self._seq += 1
            batch.seq = self._seq
            self._live.append(batch)
            # Jobs handed out to claims still in flight are still queued in the
            # store and sort first: read past them, or the page holds nothing new.
            reach = batch.needs + len(self._pending)
            page = await self._query(queues, reach, _SHARED_SLACK)
        except Exception as exc:
            batch.result.set_exception(exc)
        except BaseException:
            # The leader itself was cancelled (its long-poll's client left): the others
            # ask again, and a batch left open would have every later claim of these
            # queues wait for a query nobody runs.
            if self._open.get(key) is batch:
                del self._open[key]
            batch.result.set_exception(_LeaderGoneError())
            batch.result.exception()  # read here: with no claimer joined, nobody else will
            raise
        else:
            batch.result.set_result((page.items, page.more))

    async def _take_further(
        self,
        queues: Sequence[str] | None,
        labels: Mapping[str, str],
        need: int,
        skip: set[str],
    ) -> list[Document]:
        """Like ``take``, from pages this claimer reads on its own, past jobs it cannot take."""
        self._seq += 1
        batch = _Batch(seq=self._seq, users=1)
        self._live.append(batch)
        # One instant for every page: the continuation of a page is only valid for
        # the same query, and ``run_after <= now`` is part of it.
        now = self.clock.now()
        picked: list[Document] = []
        try:
            cont: str | None = None
            for _ in range(_PAGES):
                slack = self.settings.claim_candidates
                page = await self._query(queues, need + len(skip), slack, cont, now)
                picked += self._pick(batch, page.items, labels, need - len(picked), skip)
                cont = page.continuation
                if len(picked) >= need or cont is None:
                    break
            return picked
        except BaseException:
            # The caller never sees these picks, so it cannot settle them: left
            # pending, every later claim of this replica would skip them for good.
            self._unpend([doc.id for doc in picked])
            raise
        finally:
            self._done(batch)

    def _pick(
        self,
        batch: _Batch,
        docs: list[Document],
        labels: Mapping[str, str],
        need: int,
        skip: set[str],
    ) -> list[Document]:
        now = self.clock.now()
        settled = self._settled
        busy = self._busy_locks
        picked: list[Document] = []
        for doc in docs:
            if len(picked) >= need:
                break
            job_id = doc.id
            if job_id in batch.taken or job_id in skip or job_id in self._pending:
                continue
            if settled.get(job_id, -1) >= batch.seq:
                continue  # settled after this query started: its page may predate the lease
            lock = doc.body.get("lock") or None
            if lock is not None and lock in busy:
                continue  # a claim here is taking this lock for another of its jobs
            if not is_claimable(self.states.of(doc), now, labels):
                continue
            batch.taken.add(job_id)
            self._pending.add(job_id)
            if lock is not None:
                self._pending_locks[job_id] = str(lock)
                busy.add(str(lock))
            picked.append(doc)
        return picked

    async def _query(
        self,
        queues: Sequence[str] | None,
        needs: int,
        slack: int,
        continuation: str | None = None,
        now: float | None = None,
    ) -> Page:
        """The claim query: ``needs + slack`` rows (``now``: page 1's instant)."""
        limit = min(needs + slack, MAX_QUERY)
        query = Query(
            where=claim_filters(queues, self.clock.now() if now is None else now),
            order_by=["-priority", "created_at"],
            limit=limit,
            continuation=continuation,
        )
        return await self.jobs.query(query)
