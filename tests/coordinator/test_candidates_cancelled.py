"""Claims that share one candidate query, when one of them is cancelled.

A long-poll whose client hangs up is cancelled wherever it is waiting, also while
it leads the shared candidate query of the claims that arrived with it
(``services/candidates.py``). None of that may leave the others, or any later
claim of the same queues, waiting for a query nobody runs, nor hand them the
cancellation as if it were their own (a 500). Each test fails on the code before
the fix: the first two hang (the ``asyncio.timeout`` guards fail them), the third
gives the other claimers a ``CancelledError``.
"""

from __future__ import annotations

import asyncio

import pytest

from tests.support.held import GUARD, Held

from .conftest import Api


async def _take(api: Api, queue: str) -> list[str]:
    picks = await api.co.candidates.take([queue], {}, 1, set())
    api.co.candidates.settle([doc.id for doc in picks])
    return [doc.id for doc in picks]


async def test_a_leader_cancelled_before_its_query_leaves_no_claim_waiting(api: Api) -> None:
    job = await api.enqueue(queue="q")
    leader = asyncio.create_task(_take(api, "q"))
    follower = asyncio.create_task(_take(api, "q"))
    await asyncio.sleep(0)  # the leader waits its tick for others; the follower joined
    leader.cancel()
    async with asyncio.timeout(GUARD):
        assert await follower == [job["id"]]
        assert await _take(api, "q") == [job["id"]]  # and a later claim is answered
    assert leader.cancelled()


async def test_a_leader_cancelled_during_its_query_leaves_no_claim_waiting(
    api: Api, monkeypatch: pytest.MonkeyPatch
) -> None:
    job = await api.enqueue(queue="q")
    held = Held(api.co.candidates.jobs, "query")
    monkeypatch.setattr(api.co.candidates, "jobs", held)
    leader = asyncio.create_task(_take(api, "q"))
    follower = asyncio.create_task(_take(api, "q"))
    async with asyncio.timeout(GUARD):
        await held.entered.wait()  # the leader's query is in flight, the follower waits
    leader.cancel()
    held.release.set()
    async with asyncio.timeout(GUARD):
        assert await follower == [job["id"]]
        assert await _take(api, "q") == [job["id"]]
    assert leader.cancelled()


async def test_a_cancelled_claimer_leaves_the_shared_page_to_the_others(
    api: Api, monkeypatch: pytest.MonkeyPatch
) -> None:
    jobs = [await api.enqueue(queue="q") for _ in range(2)]
    held = Held(api.co.candidates.jobs, "query")
    monkeypatch.setattr(api.co.candidates, "jobs", held)
    leader = asyncio.create_task(_take(api, "q"))
    leaving = asyncio.create_task(_take(api, "q"))
    staying = asyncio.create_task(_take(api, "q"))
    async with asyncio.timeout(GUARD):
        await held.entered.wait()
    leaving.cancel()
    with pytest.raises(asyncio.CancelledError):
        async with asyncio.timeout(GUARD):
            await leaving  # gone before the query answers
    held.release.set()
    async with asyncio.timeout(GUARD):
        got = [*await leader, *await staying]
    assert sorted(got) == sorted(j["id"] for j in jobs)
