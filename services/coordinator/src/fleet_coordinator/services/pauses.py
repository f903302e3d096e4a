"""Paused queues: the stored flag, and each replica's copy of the set (SPEC semantics 10).

A queue's ``paused`` flag lives on its marker document (``agents`` container,
partition ``queues``, id ``q.<queue>``), written with a conditional write so
two admins pausing and resuming at once cannot lose one another's change.
Claims never read it: each replica keeps the set of paused queues in memory
(``PausedQueues``, ``paused_set.py``), refreshed from the markers on every reaper tick (one
single-partition query) and at once on the replica that paused or resumed.
So no replica hands out a lease from a paused queue later than one reaper
interval after the pause; leases already held go on, enqueues are accepted.
"""

from __future__ import annotations

from fleet_datastore import AlreadyExistsError, NotFoundError, Patch, Query, eq

from ..errors import UnavailableError
from ..store import QUEUES_PARTITION
from .boundary import MAX_CAS_ATTEMPTS
from .context import Coordinator

__all__ = ["marker_id", "refresh_paused", "set_paused"]


def marker_id(queue: str) -> str:
    """The id of a queue's marker document."""
    return f"q.{queue}"


async def refresh_paused(co: Coordinator) -> None:
    """Re-read the markers; wake long-polls here when a queue was resumed elsewhere."""
    page = await co.agents.query(Query(where=[eq("kind", "queue")], partition_key=QUEUES_PARTITION))
    if co.pauses.update(page.items):
        co.notifier.notify()


async def set_paused(co: Coordinator, queue: str, paused: bool) -> None:
    """Pause or resume ``queue`` (any name; its marker is created if missing)."""
    # Pauses and resumes of one queue here take turns (``keyed_locks.py``), so only
    # writers on other replicas can make the loop below lose.
    async with co.writers.lock(marker_id(queue)):
        await _write_marker(co, queue, paused)
    # The change landed: this replica honours it, logs it and wakes its waiters now, even
    # if the refresh below fails (a 503 whose retry finds the marker already so).
    co.known_queues.add(queue)
    co.pauses.mark(queue, paused)
    co.log.info("coordinator.queue.paused" if paused else "coordinator.queue.resumed", queue=queue)
    if not paused:
        co.notifier.notify()  # long-polls waiting here get the queue's jobs now
    await refresh_paused(co)  # and every other marker's change, as a reaper tick would


async def _write_marker(co: Coordinator, queue: str, paused: bool) -> None:
    """``set_paused``'s write loop: the marker created in the wanted state, or changed."""
    agents = co.agents
    for _ in range(MAX_CAS_ATTEMPTS):
        # 1. Read the marker (or create it already in the wanted state).
        try:
            doc = await agents.get(marker_id(queue), QUEUES_PARTITION)
        except NotFoundError:
            body = {
                "id": marker_id(queue),
                "pk": QUEUES_PARTITION,
                "kind": "queue",
                "name": queue,
                "created_at": co.clock.now(),
                "paused": paused,
            }
            try:
                await agents.create(body)
            except AlreadyExistsError:
                continue  # an enqueue created it meanwhile: read it
            break
        # 2. Decide: nothing to write when it is already so.
        if bool(doc.body.get("paused")) == paused:
            break
        # 3. Conditional write on the read etag; 4. on conflict, re-read.
        result = await agents.update_if_match(
            doc.id, QUEUES_PARTITION, doc, Patch(set={"paused": paused})
        )
        if result.ok:
            break
    else:
        raise UnavailableError("the queue kept changing under this request; retry", queue=queue)
