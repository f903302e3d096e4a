"""Coalesced candidate queries: concurrent claims of a replica share one query.

Many claimers asking at once would all read the same head of the queue and
fight over it, one conditional write winning per job. Instead, claims arriving
in the same event-loop tick join one ``CandidateBatch``: its leader waits one
tick for the others, runs a single query sized for all of them, and each
claimer then takes *distinct* jobs from the shared result. Taking happens with
no ``await`` between the check and the mark, so within a replica two claimers
never pick the same job; across replicas the conditional write still decides.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field

from fleet_datastore import Document, Filter, Query, eq, in_, le

from ..domain import JobStatus, is_claimable
from ..errors import translate_store_errors
from ..store import job_from_doc
from .context import Coordinator

__all__ = ["CandidatePool"]

_MAX_QUERY = 1000


@dataclass
class _Batch:
    needs: int = 0
    taken: set[str] = field(default_factory=set)
    result: asyncio.Future[tuple[list[Document], bool]] = field(
        default_factory=lambda: asyncio.get_running_loop().create_future()
    )


class CandidatePool:
    """Hands out distinct claim candidates to the concurrent claims of one replica."""

    def __init__(self) -> None:
        self._open: dict[tuple[str, ...] | None, _Batch] = {}

    async def take(
        self,
        co: Coordinator,
        queues: list[str] | None,
        labels: dict[str, str],
        need: int,
        skip: set[str],
    ) -> tuple[list[Document], bool]:
        """Up to ``need`` claimable jobs for an agent with ``labels``, none handed out twice.

        The flag says whether the query may have left matching jobs unread (its
        page was full), so a caller that got nothing knows to look further.
        """
        key = tuple(sorted(queues)) if queues else None
        batch = self._open.get(key)
        leader = batch is None
        if batch is None:
            batch = _Batch()
            self._open[key] = batch
        batch.needs += need + len(skip)
        if leader:
            # One tick for the claims that arrived together to join this query.
            await asyncio.sleep(0)
            del self._open[key]
            try:
                batch.result.set_result(await _query(co, queues, batch.needs))
            except Exception as exc:
                batch.result.set_exception(exc)
        docs, more = await batch.result
        now = co.clock.now()
        picked: list[Document] = []
        for doc in docs:
            if len(picked) >= need:
                break
            if doc.id in batch.taken or doc.id in skip:
                continue
            if not is_claimable(job_from_doc(doc.body), now, labels):
                continue
            batch.taken.add(doc.id)
            picked.append(doc)
        return picked, more


async def _query(
    co: Coordinator, queues: list[str] | None, needs: int
) -> tuple[list[Document], bool]:
    where: list[Filter] = [eq("status", JobStatus.QUEUED.value), le("run_after", co.clock.now())]
    if queues:
        where.insert(0, eq("queue", queues[0]) if len(queues) == 1 else in_("queue", queues))
    limit = min(needs + co.settings.claim_candidates, _MAX_QUERY)
    query = Query(where=where, order_by=["-priority", "created_at"], limit=limit)
    with translate_store_errors():
        page = await co.containers.jobs.query(query)
    return page.items, page.continuation is not None
