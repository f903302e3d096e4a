"""Contract: of any number of writers racing with the same etag, exactly one wins.

Every racer first reads the document itself, then waits at a barrier until all
racers hold the same etag, and only then writes: the writes truly overlap, so a
read-check-write implementation (an ``await`` between the etag check and the
write) lets several racers win and fails these tests. No test sleeps.
"""

from __future__ import annotations

import asyncio
import threading
from collections import Counter

import pytest
from fleet_datastore import (
    Container,
    ContainerSpec,
    Document,
    Outcome,
    Patch,
    PreconditionFailedError,
    UpdateResult,
    store_from_url,
)

from .conftest import job, job_spec


async def _race_update_if_match(
    jobs: Container, doc_id: str, racers: int
) -> tuple[Document, list[UpdateResult]]:
    base = await jobs.create(job(doc_id, status="queued"))
    barrier = asyncio.Barrier(racers)

    async def racer(i: int) -> UpdateResult:
        mine = await jobs.get(doc_id, "q1")
        await barrier.wait()  # nobody writes before every racer holds the etag
        assert mine.etag == base.etag
        patch = Patch(set={"status": "leased", "winner": f"racer-{i}", f"mark{i}": i})
        return await jobs.update_if_match(doc_id, "q1", mine, patch)

    results = await asyncio.gather(*(racer(i) for i in range(racers)))
    return base, list(results)


@pytest.mark.parametrize("racers", [64, 256])
async def test_concurrent_update_if_match_with_one_etag_has_exactly_one_winner(
    jobs: Container, racers: int
) -> None:
    """N racers holding one etag: one ok, N-1 conflicts, and the winner's write is stored."""
    base, results = await _race_update_if_match(jobs, "contended", racers)
    outcomes = Counter(r.outcome for r in results)
    assert outcomes == {Outcome.OK: 1, Outcome.CONFLICT: racers - 1}
    (winner_index,) = [i for i, r in enumerate(results) if r.ok]
    won = results[winner_index].document
    assert won is not None
    stored = await jobs.get("contended", "q1")
    assert stored == won
    assert stored.etag != base.etag
    assert stored.body["winner"] == f"racer-{winner_index}"
    assert stored.body[f"mark{winner_index}"] == winner_index
    # No loser's marker leaked into the stored document.
    assert [k for k in stored.body if k.startswith("mark")] == [f"mark{winner_index}"]
    assert all(r.document is None for r in results if not r.ok)


async def test_racing_rounds_on_many_documents_each_have_one_winner(jobs: Container) -> None:
    """Races on several documents at once each produce exactly one winner per document."""
    rounds = await asyncio.gather(*(_race_update_if_match(jobs, f"doc{i}", 16) for i in range(8)))
    for i, (_, results) in enumerate(rounds):
        assert sum(r.ok for r in results) == 1
        (winner,) = [n for n, r in enumerate(results) if r.ok]
        assert (await jobs.get(f"doc{i}", "q1")).body["winner"] == f"racer-{winner}"


async def test_compare_and_swap_loops_lose_no_increment(jobs: Container) -> None:
    """32 racers each incrementing a counter with a read/update_if_match loop add exactly 32."""
    racers = 32
    await jobs.create(job("counter", priority=0))
    barrier = asyncio.Barrier(racers)

    async def increment(i: int) -> int:
        attempts = 0
        await barrier.wait()
        while True:
            attempts += 1
            assert attempts <= racers, "every round has a winner, so no racer needs more tries"
            current = await jobs.get("counter", "q1")
            patch = Patch(set={"priority": current.body["priority"] + 1, f"by{i}": True})
            result = await jobs.update_if_match("counter", "q1", current, patch)
            if result.ok:
                return attempts
            assert result.outcome is Outcome.CONFLICT

    attempts = await asyncio.gather(*(increment(i) for i in range(racers)))
    stored = await jobs.get("counter", "q1")
    assert stored.body["priority"] == racers
    assert all(stored.body[f"by{i}"] for i in range(racers))
    assert sum(attempts) >= racers


async def test_concurrent_conditional_replaces_have_exactly_one_winner(jobs: Container) -> None:
    """64 replace(etag=...) calls with one etag: one succeeds, 63 raise PreconditionFailedError."""
    racers = 64
    base = await jobs.create(job("contended"))
    barrier = asyncio.Barrier(racers)

    async def racer(i: int) -> Document | Exception:
        mine = await jobs.get("contended", "q1")
        await barrier.wait()
        try:
            return await jobs.replace(job("contended", winner=f"racer-{i}"), etag=mine.etag)
        except PreconditionFailedError as exc:
            return exc

    results = await asyncio.gather(*(racer(i) for i in range(racers)))
    wins = [(i, r) for i, r in enumerate(results) if isinstance(r, Document)]
    assert len(wins) == 1
    assert sum(isinstance(r, PreconditionFailedError) for r in results) == racers - 1
    (winner, doc) = wins[0]
    stored = await jobs.get("contended", "q1")
    assert stored == doc
    assert stored.etag != base.etag
    assert stored.body["winner"] == f"racer-{winner}"


async def test_concurrent_conditional_deletes_delete_once(jobs: Container) -> None:
    """64 delete(etag=...) calls with one etag: exactly one reports the deletion."""
    racers = 64
    await jobs.create(job("contended"))
    barrier = asyncio.Barrier(racers)

    async def racer() -> bool | Exception:
        mine = await jobs.get("contended", "q1")
        await barrier.wait()
        try:
            return await jobs.delete("contended", "q1", etag=mine.etag)
        except PreconditionFailedError as exc:
            return exc

    results = await asyncio.gather(*(racer() for _ in range(racers)))
    assert sum(r is True for r in results) == 1
    assert await jobs.count() == 0


async def test_update_racing_a_delete_never_resurrects_the_document(jobs: Container) -> None:
    """Updates racing a delete with the same etag either win before it or find nothing to update."""
    racers = 32
    await jobs.create(job("contended"))
    barrier = asyncio.Barrier(racers + 1)

    async def updater(i: int) -> UpdateResult:
        mine = await jobs.get("contended", "q1")
        await barrier.wait()
        return await jobs.update_if_match("contended", "q1", mine, Patch(set={"w": i}))

    async def deleter() -> bool | Exception:
        mine = await jobs.get("contended", "q1")
        await barrier.wait()
        try:
            return await jobs.delete("contended", "q1", etag=mine.etag)
        except PreconditionFailedError as exc:
            return exc

    *updates, deleted = await asyncio.gather(*(updater(i) for i in range(racers)), deleter())
    winners = sum(isinstance(u, UpdateResult) and u.ok for u in updates) + (deleted is True)
    assert winners == 1
    if deleted is True:
        assert await jobs.count() == 0
    else:
        assert isinstance(deleted, PreconditionFailedError)
        assert await jobs.count() == 1


async def test_concurrent_creates_of_one_id_create_it_once(jobs: Container) -> None:
    """64 racers creating the same id: exactly one succeeds and its body is stored."""
    from fleet_datastore import AlreadyExistsError

    racers = 64
    barrier = asyncio.Barrier(racers)

    async def racer(i: int) -> Document | Exception:
        await barrier.wait()
        try:
            return await jobs.create(job("once", winner=f"racer-{i}"))
        except AlreadyExistsError as exc:
            return exc

    results = await asyncio.gather(*(racer(i) for i in range(racers)))
    wins = [r for r in results if isinstance(r, Document)]
    assert len(wins) == 1
    assert sum(isinstance(r, AlreadyExistsError) for r in results) == racers - 1
    assert await jobs.get("once", "q1") == wins[0]


# -- threads on the memory provider -----------------------------------------------------

THREADS = 8
COROUTINES_PER_THREAD = 4
ROUNDS = 200


def test_threads_racing_on_one_memory_store_have_exactly_one_winner_per_round() -> None:
    """Threads with their own event loops racing on one memory store: one winner per round."""
    store = store_from_url("memory://")
    spec: ContainerSpec = job_spec()

    async def setup() -> Container:
        await store.open()
        jobs = await store.create_container_if_not_exists(spec)
        for r in range(ROUNDS):
            await jobs.create(job(f"round{r}"))
        return jobs

    jobs = asyncio.run(setup())
    barrier = threading.Barrier(THREADS, timeout=60)
    results: dict[tuple[int, int, int], UpdateResult] = {}
    errors: list[BaseException] = []
    results_lock = threading.Lock()

    async def read(r: int) -> list[Document]:
        return [await jobs.get(f"round{r}", "q1") for _ in range(COROUTINES_PER_THREAD)]

    async def write(t: int, r: int, mine: list[Document]) -> None:
        outcomes = await asyncio.gather(
            *(
                jobs.update_if_match(f"round{r}", "q1", mine[c], Patch(set={"winner": f"t{t}c{c}"}))
                for c in range(COROUTINES_PER_THREAD)
            )
        )
        with results_lock:
            for c, outcome in enumerate(outcomes):
                results[(r, t, c)] = outcome

    def worker(t: int) -> None:
        try:
            with asyncio.Runner() as runner:
                for r in range(ROUNDS):
                    mine = runner.run(read(r))
                    # Every thread holds the round's etag before any thread writes it.
                    barrier.wait()
                    runner.run(write(t, r, mine))
        except BaseException as exc:
            errors.append(exc)
            barrier.abort()

    threads = [threading.Thread(target=worker, args=(t,)) for t in range(THREADS)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []

    async def check() -> None:
        for r in range(ROUNDS):
            round_results = {
                (t, c): results[(r, t, c)]
                for t in range(THREADS)
                for c in range(COROUTINES_PER_THREAD)
            }
            winners = [key for key, res in round_results.items() if res.ok]
            assert len(winners) == 1, f"round {r}: winners {winners}"
            conflicts = [res for res in round_results.values() if res.outcome is Outcome.CONFLICT]
            assert len(conflicts) == THREADS * COROUTINES_PER_THREAD - 1
            t, c = winners[0]
            stored = await jobs.get(f"round{r}", "q1")
            assert stored.body["winner"] == f"t{t}c{c}"
            assert stored == round_results[(t, c)].document
        await store.close()

    asyncio.run(check())
