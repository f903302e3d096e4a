"""Claims over HTTP: single winner, capacity, drain, labels, queues, order and long-polling."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from fleet_coordinator.domain import RESERVATION_GRACE
from fleet_datastore import Page, Query

from .conftest import Api


@pytest.mark.parametrize("claimers", [10, 64])
async def test_racing_claims_for_one_job_have_exactly_one_winner(api: Api, claimers: int) -> None:
    """Many agents claiming one job at once: one lease, with epoch 1."""
    agents = [await api.agent(name=f"a{i}") for i in range(claimers)]
    job = await api.enqueue()
    results = await asyncio.gather(*(api.claim(headers) for _, headers in agents))
    leases = [lease for result in results for lease in result]
    assert len(leases) == 1
    assert leases[0]["lease"]["epoch"] == 1
    stored = await api.job(job["id"])
    assert stored["lease"]["epoch"] == 1
    assert len(stored["runs"]) == 1


async def test_racing_claims_of_one_agent_respect_its_capacity(api: Api) -> None:
    """Concurrent claims by one agent never hold more leases than its capacity."""
    _, headers = await api.agent(capacity=3)
    for _ in range(10):
        await api.enqueue()
    results = await asyncio.gather(*(api.claim(headers, max_jobs=2) for _ in range(8)))
    assert sum(len(r) for r in results) == 3
    r = await api.client.get("/v1/queues", headers=api.admin)
    assert r.json()["items"][0]["leased"] == 3


async def test_capacity_frees_up_when_a_lease_ends(api: Api) -> None:
    """An agent at capacity gets nothing until it completes a job."""
    _, headers = await api.agent(capacity=1)
    first = await api.enqueue()
    api.clock.advance(0.01)
    await api.enqueue()
    await api.claim(headers)
    assert await api.claim(headers) == []
    await api.client.post(f"/v1/jobs/{first['id']}/complete", json={"epoch": 1}, headers=headers)
    assert len(await api.claim(headers)) == 1


async def test_expired_leases_stop_counting_against_capacity(api: Api) -> None:
    """A lease that expired (even before the reaper ran) frees the agent's slot."""
    _, headers = await api.agent(capacity=1)
    await api.enqueue(lease_seconds=10)
    api.clock.advance(0.01)
    await api.enqueue()
    await api.claim(headers)
    api.clock.advance(11)
    assert len(await api.claim(headers)) == 1


async def test_jobs_are_offered_only_to_agents_whose_labels_match(api: Api) -> None:
    """A job that requires a label goes to the agent that has it."""
    _, plain = await api.agent(name="plain")
    gpu_id, gpu = await api.agent(name="gpu", labels={"gpu": "a100"})
    job = await api.enqueue(requires={"gpu": "a100"})
    assert await api.claim(plain) == []
    [lease] = await api.claim(gpu)
    assert lease["job"]["id"] == job["id"]
    assert lease["lease"]["agent_id"] == gpu_id


async def test_claims_follow_the_requested_and_allowed_queues(api: Api) -> None:
    """An agent restricted to queues, or asking for some, gets only jobs of those queues."""
    _, only_b = await api.agent(queues=["b"])
    _, anyq = await api.agent()
    a = await api.enqueue(queue="a")
    b = await api.enqueue(queue="b")
    assert await api.claim(only_b, queues=["a"]) == []
    [lease] = await api.claim(only_b)
    assert lease["job"]["id"] == b["id"]
    [lease] = await api.claim(anyq, queues=["a", "c"])
    assert lease["job"]["id"] == a["id"]


async def test_claims_take_higher_priority_first_then_older(api: Api) -> None:
    """Among claimable jobs: higher priority first, then older first."""
    _, headers = await api.agent(capacity=10)
    order = []
    for name, priority in (("low-old", 0), ("high-old", 5), ("low-new", 0), ("high-new", 5)):
        await api.enqueue(kind=name, priority=priority)
        api.clock.advance(0.01)
        order.append(name)
    leases = await api.claim(headers, max_jobs=4)
    assert [lease["job"]["kind"] for lease in leases] == [
        "high-old",
        "high-new",
        "low-old",
        "low-new",
    ]


@pytest.mark.parametrize(("low_queue", "high_queue"), [("aaa", "zzz"), ("zzz", "aaa")])
async def test_a_claim_over_two_queues_takes_the_higher_priority_whatever_their_names(
    api: Api, low_queue: str, high_queue: str
) -> None:
    """Priority then age decide across the queues a claim names, not the queues' name order."""
    _, headers = await api.agent(capacity=3)
    low = await api.enqueue(queue=low_queue, priority=-100)
    api.clock.advance(0.01)
    high = await api.enqueue(queue=high_queue, priority=100)
    api.clock.advance(0.01)
    newer = await api.enqueue(queue=low_queue, priority=100)
    [first] = await api.claim(headers, queues=["aaa", "zzz"])
    assert first["job"]["id"] == high["id"]
    rest = await api.claim(headers, queues=["zzz", "aaa"], max_jobs=2)
    assert [lease["job"]["id"] for lease in rest] == [newer["id"], low["id"]]


async def test_jobs_of_one_lock_in_two_queues_are_claimed_in_priority_then_age_order(
    api: Api,
) -> None:
    """Locks are global (SPEC 9): their order 5 holds across the queues a claim names."""
    _, headers = await api.agent()
    oldest = await api.enqueue(queue="aaa", lock="L", priority=0)
    api.clock.advance(0.01)
    newest = await api.enqueue(queue="zzz", lock="L", priority=0)
    api.clock.advance(0.01)
    urgent = await api.enqueue(queue="zzz", lock="L", priority=1)
    got = []
    for _ in range(3):
        [lease] = await api.claim(headers, queues=["aaa", "zzz"])
        got.append(lease["job"]["id"])
        done = await api.client.post(
            f"/v1/jobs/{got[-1]}/complete", json={"epoch": 1}, headers=headers
        )
        assert done.status_code == 200, done.text
    assert got == [urgent["id"], oldest["id"], newest["id"]]


async def test_a_claim_naming_no_queue_keeps_priority_order_while_another_queue_is_paused(
    api: Api,
) -> None:
    """With a queue paused, a claim over every other queue still takes the highest priority."""
    _, headers = await api.agent()
    await api.enqueue(queue="aaa", priority=-100)
    high = await api.enqueue(queue="zzz", priority=100)
    r = await api.client.post("/v1/queues/mmm/pause", headers=api.admin)
    assert r.status_code == 200, r.text
    [lease] = await api.claim(headers)
    assert lease["job"]["id"] == high["id"]


async def test_future_run_after_is_not_claimable_until_due(api: Api) -> None:
    """A job with run_after in the future is claimed only once the time has come."""
    _, headers = await api.agent()
    await api.enqueue(run_after="2023-11-14T22:15:00Z")  # 100 s after the test clock's start
    assert await api.claim(headers) == []
    api.clock.advance(100)
    assert len(await api.claim(headers)) == 1


async def test_long_poll_is_woken_by_an_enqueue(api: Api) -> None:
    """A waiting claim returns the job enqueued while it waits."""
    _, headers = await api.agent()
    waiter = asyncio.create_task(api.claim(headers, wait_seconds=10))
    await asyncio.sleep(0)  # let the claim start waiting (scheduling, not synchronisation)
    job = await api.enqueue()
    leases = await asyncio.wait_for(waiter, 5)
    assert [lease["job"]["id"] for lease in leases] == [job["id"]]


async def test_long_poll_returns_empty_when_the_wait_ends(api: Api) -> None:
    """A waiting claim with nothing to claim answers an empty list."""
    _, headers = await api.agent()
    assert await api.claim(headers, wait_seconds=0.1) == []


async def test_long_polls_answer_nothing_at_once_when_the_server_begins_to_shut_down(
    api: Api, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Shutting down (serve's protocol, ``test_serve_shutdown.py``) ends waiting long-polls."""
    _, headers = await api.agent()
    waiting = asyncio.Event()
    wait = api.co.notifier.wait

    async def entered(seconds: float, since: int, interval: float) -> bool:
        waiting.set()
        return await wait(seconds, since, interval)

    monkeypatch.setattr(api.co.notifier, "wait", entered)
    waiter = asyncio.create_task(api.claim(headers, wait_seconds=30))
    await asyncio.wait_for(waiting.wait(), 5)
    api.co.notifier.shut()  # what the app's begin_shutdown does
    assert await asyncio.wait_for(waiter, 5) == []
    assert await asyncio.wait_for(api.claim(headers, wait_seconds=30), 5) == []
    r = await api.client.post(
        "/v1/reports", json={"items": [], "claim": {"wait_seconds": 30}}, headers=headers
    )
    assert r.json() == {"items": [], "leases": []}
    job = await api.enqueue()  # a claim still leases what it finds
    [lease] = await asyncio.wait_for(api.claim(headers, wait_seconds=30), 5)
    assert lease["job"]["id"] == job["id"]


async def test_many_concurrent_claimers_drain_as_many_jobs(api: Api) -> None:
    """32 agents claiming 32 queued jobs at once each get a distinct job."""
    agents = [await api.agent(name=f"a{i}") for i in range(32)]
    for i in range(32):
        await api.enqueue(payload={"i": i})
        api.clock.advance(0.001)
    results = await asyncio.gather(*(api.claim(headers) for _, headers in agents))
    ids = [lease["job"]["id"] for result in results for lease in result]
    assert len(ids) == 32
    assert len(set(ids)) == 32


async def test_jobs_handed_to_a_claim_in_flight_are_not_handed_out_again(api: Api) -> None:
    """Until its claim settles, a job taken from the pool is skipped by later batches."""
    a = (await api.enqueue())["id"]
    api.clock.advance(0.001)
    b = (await api.enqueue())["id"]
    pool = api.co.candidates
    first = await pool.take(None, {}, 1, set())
    second = await pool.take(None, {}, 1, set())
    assert [d.id for d in first] == [a]
    assert [d.id for d in second] == [b]
    pool.settle([a, b])
    again = await pool.take(None, {}, 2, set())
    assert sorted(d.id for d in again) == sorted([a, b])
    pool.settle([a, b])


async def test_a_job_settled_while_a_query_ran_is_skipped_in_its_page(
    api: Api, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A page read before a job's claim settled may predate its lease: the job is skipped."""
    a = (await api.enqueue())["id"]
    api.clock.advance(0.001)
    b = (await api.enqueue())["id"]
    pool = api.co.candidates
    first = await pool.take(None, {}, 1, set())
    assert [d.id for d in first] == [a]
    query = pool.jobs.query

    async def page_then_settle(q: Query) -> Page:
        page = await query(q)
        pool.settle([a])  # the claim of ``a`` settles while this page is in hand
        return page

    monkeypatch.setattr(pool.jobs, "query", page_then_settle)
    later = await pool.take(None, {}, 2, set())
    assert [d.id for d in later] == [b]
    pool.settle([b])


async def _labelled_then_plain(api: Api, labelled: int, plain: int) -> list[str]:
    """``labelled`` jobs only a gpu agent may take, then ``plain`` ones; the plain ids."""
    for _ in range(labelled):
        await api.enqueue(requires={"gpu": "a100"})
        api.clock.advance(0.001)
    ids = []
    for _ in range(plain):
        ids.append((await api.enqueue())["id"])
        api.clock.advance(0.001)
    return ids


async def test_a_claim_reads_further_pages_while_the_clock_moves(
    api: Api, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Past a page of jobs the agent may not take, later pages are the same query.

    Time passes between the pages (``run_after <= now`` is part of the query); a
    continuation read with a later ``now`` was another query's, refused as a defect.
    """
    [plain_job] = await _labelled_then_plain(api, labelled=40, plain=1)
    _, plain = await api.agent(name="plain")
    query = api.co.candidates.jobs.query

    async def time_passes(q: Query) -> Page:
        page = await query(q)
        api.clock.advance(0.5)
        return page

    monkeypatch.setattr(api.co.candidates.jobs, "query", time_passes)
    [lease] = await api.claim(plain)
    assert lease["job"]["id"] == plain_job


async def test_picks_of_a_claim_that_fails_on_a_later_page_are_offered_again(
    api: Api, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A store failure on page two leaves no job of page one held back from later claims."""
    from fleet_datastore import StoreUnavailableError

    first = await _labelled_then_plain(api, labelled=20, plain=1)
    second = await _labelled_then_plain(api, labelled=20, plain=1)
    _, plain = await api.agent(name="plain", capacity=2)
    pool = api.co.candidates
    store = pool.jobs.inner  # below the boundary that translates store errors
    query = store.query
    later_pages = 0

    async def a_later_page_fails(q: Query) -> Page:
        nonlocal later_pages
        if q.continuation is not None:
            later_pages += 1
            if later_pages == 2:  # page two picked the first plain job; page three fails
                raise StoreUnavailableError("the store went away")
        return await query(q)

    monkeypatch.setattr(store, "query", a_later_page_fails)
    r = await api.client.post("/v1/claims", json={"max_jobs": 2}, headers=plain)
    assert r.status_code == 503, r.text
    assert not pool._pending  # nothing left held back
    monkeypatch.setattr(store, "query", query)
    leases = await api.claim(plain, max_jobs=2)
    assert sorted(lease["job"]["id"] for lease in leases) == sorted(first + second)


async def test_a_failed_lease_write_leaves_no_lease_of_the_claim_unanswered(
    api: Api, monkeypatch: pytest.MonkeyPatch
) -> None:
    """One of three lease writes fails (503): the two the others won are answered.

    The writes go out together. Before, the first failure answered 503 at once
    while the other writes ran on unawaited: the jobs they leased were leased to
    the agent in the store, but it was never told, so they sat until their
    leases expired and were reaped (an attempt spent for nothing).
    """
    from fleet_datastore import StoreUnavailableError

    ids = []
    for _ in range(3):
        ids.append((await api.enqueue())["id"])
        api.clock.advance(0.01)
    _, headers = await api.agent(capacity=3)
    store = api.co.jobs.inner  # below the boundary that translates store errors
    update = store.update_if_match

    async def the_second_fails(doc_id: str, *args: Any) -> Any:
        if doc_id == ids[1]:
            raise StoreUnavailableError("the store went away")
        return await update(doc_id, *args)

    monkeypatch.setattr(store, "update_if_match", the_second_fails)
    r = await api.client.post("/v1/claims", json={"max_jobs": 3}, headers=headers)
    monkeypatch.setattr(store, "update_if_match", update)
    assert r.status_code == 200, r.text
    answered = sorted(lease["job"]["id"] for lease in r.json()["leases"])
    assert answered == sorted([ids[0], ids[2]])
    assert (await api.job(ids[1]))["status"] == "queued"
    # Its slot, held while its write's outcome is unknown, is freed once the
    # reservation's grace has passed: the next claim's prune reads the job.
    assert await api.claim(headers) == []
    api.clock.advance(RESERVATION_GRACE + 1)
    assert [lease["job"]["id"] for lease in await api.claim(headers)] == [ids[1]]


async def test_a_store_failure_in_a_later_round_keeps_the_jobs_won_before_it(
    api: Api, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A claim's second round fails (503): the job its first round leased is answered."""
    from fleet_datastore import StoreUnavailableError

    first = (await api.enqueue())["id"]
    api.clock.advance(0.01)
    second = (await api.enqueue())["id"]
    api.clock.advance(0.01)
    await api.enqueue()  # a third, for the second round to look for
    _, headers = await api.agent(capacity=2)
    store = api.co.jobs.inner
    update = store.update_if_match

    async def a_rival_wins_then_the_store_fails(doc_id: str, *args: Any) -> Any:
        if doc_id == second:
            # The job is cancelled first: this claim's write loses and it goes again,
            # and its second round's query fails.
            monkeypatch.setattr(store, "update_if_match", update)
            cancelled = await api.client.post(f"/v1/jobs/{second}/cancel", headers=api.admin)
            assert cancelled.status_code == 200, cancelled.text
            monkeypatch.setattr(api.co.candidates.jobs.inner, "query", no_query)
        return await update(doc_id, *args)

    async def no_query(*args: Any) -> Any:
        raise StoreUnavailableError("the store went away")

    monkeypatch.setattr(store, "update_if_match", a_rival_wins_then_the_store_fails)
    r = await api.client.post("/v1/claims", json={"max_jobs": 2}, headers=headers)
    assert r.status_code == 200, r.text
    assert [lease["job"]["id"] for lease in r.json()["leases"]] == [first]
