"""Bulk retry and bulk cancel, and the kind and lock filters of GET /v1/jobs, on every provider."""

from __future__ import annotations

import asyncio
import contextlib
import re
import sqlite3
from collections import Counter
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from fleet_coordinator import create_app
from fleet_coordinator.domain import JobStatus
from fleet_coordinator.store import JOBS_SPEC
from fleet_coordinator.store.listing import JobFilter, listing_query
from fleet_datastore import Patch, Query
from fleet_datastore.continuation import encode, position
from fleet_datastore.model import admits
from fleet_datastore.providers.memory import MemoryBackend
from fleet_datastore.providers.sqlite_sql import query_branches, schema_sql
from fleet_datastore.query import QueryPlan, plan_query, plan_shape, split_plans
from structlog.testing import capture_logs

from .conftest import Api


@contextlib.asynccontextmanager
async def two_replicas(api: Api) -> AsyncIterator[tuple[Api, Api]]:
    """``api`` and a second coordinator app over the same store (same file, database or object)."""
    settings = api.co.settings
    shared = api.co.containers.store if settings.store_url.startswith("memory") else None
    app = create_app(settings, clock=api.clock, store=shared)
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:
            yield api, Api(client, api.clock, app)


async def _cancelled_jobs(api: Api, count: int, **fields: Any) -> list[str]:
    ids = [(await api.enqueue(**fields))["id"] for _ in range(count)]
    for job_id in ids:
        r = await api.client.post(f"/v1/jobs/{job_id}/cancel", headers=api.admin)
        assert r.json()["status"] == "cancelled"
    return ids


async def _bulk(api: Api, action: str, **body: Any) -> list[dict[str, Any]]:
    r = await api.client.post(f"/v1/jobs/{action}", json=body, headers=api.admin)
    assert r.status_code == 200, r.text
    items: list[dict[str, Any]] = r.json()["items"]
    return items


async def test_bulk_retry_requeues_the_oldest_matching_jobs_up_to_the_limit(api: Api) -> None:
    """Bulk retry takes the oldest cancelled jobs of the filter first, up to the limit."""
    ids = []
    for _ in range(4):
        ids += await _cancelled_jobs(api, 1, queue="q", kind="resize")
        api.clock.advance(1)
    other_kind = await _cancelled_jobs(api, 1, queue="q", kind="other")
    retried = await _bulk(api, "retry", queue="q", kind="resize", status="cancelled", limit=3)
    assert [j["id"] for j in retried] == ids[:3]
    assert all(j["status"] == "queued" and j["attempts"] == 0 for j in retried)
    assert (await api.job(ids[3]))["status"] == "cancelled"
    assert (await api.job(other_kind[0]))["status"] == "cancelled"
    assert await _bulk(api, "retry", status="failed") == []
    bad = await api.client.post("/v1/jobs/retry", json={"status": "queued"}, headers=api.admin)
    assert bad.status_code == 422


async def test_bulk_retry_of_failed_jobs_gives_a_fresh_attempt_budget(api: Api) -> None:
    """A failed job retried in bulk is queued with zero attempts, and claimable with epoch 2."""
    _, headers = await api.agent()
    job = await api.enqueue(max_attempts=1)
    await api.claim(headers)
    await api.client.post(
        f"/v1/jobs/{job['id']}/fail", json={"epoch": 1, "error": "boom"}, headers=headers
    )
    [retried] = await _bulk(api, "retry", status="failed")
    assert retried["id"] == job["id"]
    assert retried["attempts"] == 0
    [lease] = await api.claim(headers)
    assert lease["lease"]["epoch"] == 2


def _networked_memory(monkeypatch: pytest.MonkeyPatch) -> None:
    # The memory provider never suspends, so one call would run its whole loop before
    # the other started; a suspension before each store call, as a networked store
    # has, lets the calls interleave between a read and a write.
    for name in ("get", "query", "update_if_match", "replace"):
        original = getattr(MemoryBackend, name)

        async def suspended(*args: Any, __original: Any = original) -> Any:
            await asyncio.sleep(0)
            return await __original(*args)

        monkeypatch.setattr(MemoryBackend, name, suspended)


async def _racing(
    a: Api, b: Api, action: str, **body: Any
) -> tuple[Counter[str], list[list[dict[str, Any]]]]:
    """Four calls of ``action`` at once, two on each replica: how often each job was
    answered, and each call's answer."""
    answers = await asyncio.gather(*(_bulk(replica, action, **body) for replica in (a, b, a, b)))
    return Counter(j["id"] for items in answers for j in items), answers


async def test_concurrent_bulk_retries_on_two_replicas_retry_each_job_once(
    api: Api, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Two replicas running one bulk retry at once requeue every job exactly once between them."""
    ids = await _cancelled_jobs(api, 30, queue="race")
    if api.co.settings.store_url.startswith("memory"):
        _networked_memory(monkeypatch)
    async with two_replicas(api) as (a, b):
        retried, _ = await _racing(a, b, "retry", queue="race", status="cancelled", limit=1000)
    assert sorted(retried) == sorted(ids)
    assert set(retried.values()) == {1}, "a job was retried by two calls"
    for job_id in ids:
        stored = await api.job(job_id)
        assert stored["status"] == "queued"
        assert stored["attempts"] == 0


async def test_bulk_calls_that_lose_jobs_to_racing_ones_reach_the_jobs_behind_them(
    api: Api, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Four calls of 20 on two replicas over 60 jobs: between them they retry (then cancel)
    all 60, each once. Listing only once, calls that lost the 20 oldest to another call
    answered with nothing while 40 still matched (on Cosmos DB: 42 of 60 retried)."""
    ids = await _cancelled_jobs(api, 60, queue="reach")
    if api.co.settings.store_url.startswith("memory"):
        _networked_memory(monkeypatch)
    async with two_replicas(api) as (a, b):
        retried, answers = await _racing(a, b, "retry", queue="reach", status="cancelled", limit=20)
        assert sorted(retried) == sorted(ids), [len(items) for items in answers]
        assert set(retried.values()) == {1}, "a job was retried by two calls"
        cancelled, answers = await _racing(a, b, "cancel", queue="reach", limit=20)
    assert sorted(cancelled) == sorted(ids), [len(items) for items in answers]
    assert set(cancelled.values()) == {1}, "a job was cancelled by two calls"
    for job_id in ids:
        assert (await api.job(job_id))["status"] == "cancelled"


async def test_bulk_cancel_cancels_queued_and_requests_leased_jobs_once(api: Api) -> None:
    """Bulk cancel ends queued jobs, requests leased ones, and does not match those again."""
    _, headers = await api.agent()
    leased = await api.enqueue(queue="q")
    await api.claim(headers)
    api.clock.advance(1)
    queued = await api.enqueue(queue="q")
    untouched = await api.enqueue(queue="elsewhere")
    first = await _bulk(api, "cancel", queue="q")
    assert [(j["id"], j["status"], j["cancel_requested"]) for j in first] == [
        (leased["id"], "leased", True),
        (queued["id"], "cancelled", False),
    ]
    assert await _bulk(api, "cancel", queue="q") == []
    assert (await api.job(untouched["id"]))["status"] == "queued"
    r = await api.client.post("/v1/jobs/cancel", json={"limit": 0}, headers=api.admin)
    assert r.status_code == 422


async def test_bulk_cancel_reaches_leased_jobs_behind_many_of_other_queues(api: Api) -> None:
    """The leased listing checks the queue on each leased job; bulk cancel walks them all."""
    _, headers = await api.agent(capacity=60)
    for _ in range(55):
        await api.enqueue(queue="other")
        api.clock.advance(0.001)
    target = await api.enqueue(queue="q")
    claimed = await api.claim(headers, max_jobs=56)
    assert len(claimed) == 56
    [cancelled] = await _bulk(api, "cancel", queue="q", limit=1)
    assert (cancelled["id"], cancelled["cancel_requested"]) == (target["id"], True)


async def _set_lock(api: Api, job_id: str, lock: str) -> None:
    # The lock field arrives with the locks feature; until then the store is written directly.
    jobs = api.co.containers.jobs
    doc = await jobs.get(job_id, api.co.shard(job_id))
    assert (
        await jobs.update_if_match(job_id, doc.partition_key, doc, Patch(set={"lock": lock}))
    ).ok
    api.co.job_cache.evict(job_id)


async def test_jobs_are_listed_by_kind_and_lock_and_cancelled_by_lock(api: Api) -> None:
    """GET /v1/jobs filters by kind and lock (with queue and status), and bulk cancel by lock."""
    a = await api.enqueue(queue="q", kind="resize")
    api.clock.advance(1)
    b = await api.enqueue(queue="q", kind="encode")
    api.clock.advance(1)
    c = await api.enqueue(queue="r", kind="resize")
    await _set_lock(api, b["id"], "host-1")
    await _set_lock(api, c["id"], "host-1")

    async def listed(query: str) -> list[str]:
        r = await api.client.get(f"/v1/jobs?{query}", headers=api.admin)
        assert r.status_code == 200, r.text
        return [j["id"] for j in r.json()["items"]]

    assert await listed("kind=resize") == [a["id"], c["id"]]
    assert await listed("kind=resize&queue=q") == [a["id"]]
    assert await listed("kind=resize&queue=r&status=queued") == [c["id"]]
    assert await listed("kind=resize&status=leased") == []
    assert await listed("lock=host-1") == [b["id"], c["id"]]
    assert await listed("lock=host-1&queue=r") == [c["id"]]
    assert await listed("lock=nobody") == []
    page = (await api.client.get("/v1/jobs?kind=resize&limit=1", headers=api.admin)).json()
    nxt = await listed(f"kind=resize&limit=1&cursor={page['next_cursor']}")
    assert nxt == [c["id"]]
    cancelled = await _bulk(api, "cancel", lock="host-1")
    assert [j["id"] for j in cancelled] == [b["id"], c["id"]]
    assert (await api.job(a["id"]))["status"] == "queued"


async def test_a_lock_listing_pages_through_its_jobs_among_lockless_ones(api: Api) -> None:
    """GET /v1/jobs?lock= pages a lock's jobs (with queue and status too), oldest first.

    The lock listing index holds only jobs with a lock (``store/specs.py``): the
    lockless jobs enqueued between them are in no page, and the other locks' neither.
    """
    locked: dict[str, list[str]] = {"L": [], "M": []}
    for i in range(9):
        api.clock.advance(1)
        lock = ("L", None, "M")[i % 3]
        job = await api.enqueue(queue=("q", "r")[i % 2], **({"lock": lock} if lock else {}))
        if lock:
            locked[lock].append(job["id"])

    async def listed(query: str) -> list[str]:
        """The ids of every page, two a page, following the cursor to the end."""
        ids: list[str] = []
        cursor = ""
        while True:
            r = await api.client.get(f"/v1/jobs?{query}&limit=2{cursor}", headers=api.admin)
            assert r.status_code == 200, r.text
            items, nxt = [j["id"] for j in r.json()["items"]], r.json()["next_cursor"]
            assert len(items) <= 2
            ids += items
            if nxt is None:
                return ids
            cursor = f"&cursor={nxt}"

    assert await listed("lock=L") == locked["L"]
    assert await listed("lock=M&queue=q") == locked["M"][::2]
    assert await listed("lock=L&status=queued&queue=r") == locked["L"][1::2]
    assert await listed("lock=L&status=failed") == []


async def test_leased_jobs_are_listed_and_counted_with_every_other_filter(api: Api) -> None:
    """Leased jobs have an index of their own; queue and kind are checked on them (listing.py)."""
    _, headers = await api.agent(capacity=4)
    ids = []
    for queue, kind in [("q", "resize"), ("q", "encode"), ("r", "resize"), ("q", "resize")]:
        ids.append((await api.enqueue(queue=queue, kind=kind))["id"])
        api.clock.advance(1)
    claimed = await api.claim(headers, max_jobs=3)
    assert sorted(c["job"]["id"] for c in claimed) == sorted(ids[:3])

    async def listed(query: str) -> list[str]:
        r = await api.client.get(f"/v1/jobs?{query}", headers=api.admin)
        assert r.status_code == 200, r.text
        return [j["id"] for j in r.json()["items"]]

    assert await listed("status=leased") == ids[:3]
    assert await listed("status=leased&queue=q") == ids[:2]
    assert await listed("status=leased&queue=q&kind=resize") == [ids[0]]
    assert await listed("status=leased&kind=resize") == [ids[0], ids[2]]
    assert await listed("status=queued&queue=q") == [ids[3]]
    assert await listed("queue=q") == [ids[0], ids[1], ids[3]]
    page = (await api.client.get("/v1/jobs?status=leased&limit=2", headers=api.admin)).json()
    assert await listed(f"status=leased&limit=2&cursor={page['next_cursor']}") == [ids[2]]
    r = await api.client.get("/v1/queues", headers=api.admin)
    stats = {s["queue"]: s for s in r.json()["items"]}
    assert (stats["q"]["leased"], stats["q"]["queued"], stats["r"]["leased"]) == (2, 1, 1)
    r = await api.client.post(
        f"/v1/jobs/{ids[0]}/complete",
        json={"epoch": next(c["lease"]["epoch"] for c in claimed if c["job"]["id"] == ids[0])},
        headers=headers,
    )
    assert r.status_code == 200, r.text
    assert await listed("status=leased&queue=q") == [ids[1]]
    assert await listed("status=succeeded") == [ids[0]]


def eq_fields(plan: QueryPlan) -> list[str]:
    """The fields a store query compares for equality."""
    return [f.field for f in plan.where if f.op == "eq"]


def store_plans(query: Query) -> list[QueryPlan]:
    """The plans a listing query reaches the provider as: one per status when split."""
    plan = plan_query(JOBS_SPEC, query)
    return split_plans(plan) if plan.split is not None else [plan]


def sought(plan: QueryPlan) -> set[str]:
    """The equalities an index serving ``plan`` leads with.

    Leased jobs have an index of their own (``status, created_at`` over them only):
    a query for them seeks the status alone, queue and kind checked on its few jobs.
    """
    values = {f.field: f.value for f in plan.where if f.op == "eq"}
    if values.get("status") == "leased":
        return {"status"}
    return set(values)


STATUSES = [None, "queued", "leased", "failed"]
"""Listed statuses: none, one the claim moves a job out of, the leased one, a terminal one."""


def test_a_listing_without_a_status_is_one_store_query_per_status() -> None:
    """Each status's query is an equality a partial listing index serves, merged by the store."""
    query = listing_query(JobFilter(queue="q"), 50)
    assert query.split_in == "status"
    plans = store_plans(query)
    assert [dict((f.field, f.value) for f in p.where)["status"] for p in plans] == [
        s.value for s in JobStatus
    ]
    assert all(f.op == "eq" for p in plans for f in p.where)


@pytest.mark.parametrize("queue", [None, "q"])
@pytest.mark.parametrize("status", STATUSES)
@pytest.mark.parametrize("kind", [None, "resize"])
@pytest.mark.parametrize("lock", [None, "host-1"])
def test_the_memory_provider_walks_an_index_led_by_exactly_the_listing_filters(
    queue: str | None, status: str | None, kind: str | None, lock: str | None
) -> None:
    """The first index whose leading fields the equalities cover (memory's choice) has no others."""
    query = listing_query(JobFilter(queue=queue, status=status, kind=kind, lock=lock), 50)
    for plan in store_plans(query):
        wanted = set(eq_fields(plan))
        values = {f.field: f.value for f in plan.where}
        for index in JOBS_SPEC.indexes:
            names = [name for name, _ in index.fields]
            if names[-1] != "created_at":
                continue
            if not all(admits(cond, values.get(name)) for name, cond in index.where):
                continue  # a partial index without this listing's jobs: memory skips it too
            if set(names[:-1]) <= wanted:
                assert set(names[:-1]) == sought(plan), (names, wanted)
                break
        else:
            raise AssertionError(f"no index serves {wanted}")


@pytest.mark.parametrize("queue", [None, "q"])
@pytest.mark.parametrize("status", STATUSES)
@pytest.mark.parametrize("kind", [None, "resize"])
@pytest.mark.parametrize("lock", [None, "host-1"])
def test_every_listing_filter_combination_is_an_index_seek_on_sqlite(
    tmp_path: Path, queue: str | None, status: str | None, kind: str | None, lock: str | None
) -> None:
    """Every combination of GET /v1/jobs filters, first page or later, seeks an index: no sort.

    A listing without a status is one query per status (``split_in``): each seeks
    the index of its status, the leased one the leased jobs' own.
    """
    spec = JOBS_SPEC
    match = JobFilter(queue=queue, status=status, kind=kind, lock=lock)
    first = listing_query(match, 50)
    plan = plan_query(spec, first)
    after = encode(
        plan_shape(plan), position(plan.sort, {"created_at": 1.0, "id": "x", "pk": "s00"})
    )
    db = tmp_path / "plan.db"
    with sqlite3.connect(db) as conn:
        for statement in schema_sql(spec):
            conn.execute(statement)
        for query in (first, listing_query(match, 50, after)):
            for each in store_plans(query):
                for branch in query_branches(spec, each):
                    rows = conn.execute(
                        f"EXPLAIN QUERY PLAN {branch.sql}", branch.params
                    ).fetchall()
                    text = " | ".join(str(row[3]) for row in rows)
                    assert "USING INDEX" in text or "USING COVERING INDEX" in text, text
                    assert "TEMP B-TREE" not in text, text
                    # The index seeks on exactly the listing's equalities (the lock alone
                    # for a lock, the status alone for leased jobs).
                    found = set(re.findall(r"f_(\w+)=\?", text)) - {"created__at"}
                    assert found == sought(each), text


async def test_a_bulk_call_cut_short_by_the_store_wakes_and_logs_for_the_jobs_it_changed(
    api: Api, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The store fails on each call's second job (503): the first, changed, is summed up.

    The bulk retry wakes the long-polls for the job it requeued. Before, the
    failure skipped that wake-up (claimers waiting here learnt of the job only on
    the next re-poll tick) and the summary event of both calls.
    """
    from fleet_datastore import StoreUnavailableError

    retried, cancelled = [], []
    for _ in range(2):
        retried += await _cancelled_jobs(api, 1, queue="r")
        cancelled.append((await api.enqueue(queue="c"))["id"])
        api.clock.advance(1)  # oldest first: the second of each call fails
    store = api.co.jobs.inner
    update = store.update_if_match

    async def the_second_fails(doc_id: str, *args: Any) -> Any:
        if doc_id in (retried[1], cancelled[1]):
            raise StoreUnavailableError("the store went away")
        return await update(doc_id, *args)

    monkeypatch.setattr(store, "update_if_match", the_second_fails)
    generation = api.co.notifier.generation
    with capture_logs() as logs:
        body = {"status": "cancelled", "queue": "r"}
        r = await api.client.post("/v1/jobs/retry", json=body, headers=api.admin)
        assert r.status_code == 503, r.text
        assert api.co.notifier.generation > generation
        r = await api.client.post("/v1/jobs/cancel", json={"queue": "c"}, headers=api.admin)
        assert r.status_code == 503, r.text
    summaries = [
        (e["event"], e["count"]) for e in logs if e["event"].startswith("coordinator.jobs")
    ]
    assert summaries == [
        ("coordinator.jobs.bulk_retried", 1),
        ("coordinator.jobs.bulk_cancelled", 1),
    ]
    monkeypatch.undo()
    assert [(await api.job(i))["status"] for i in retried] == ["queued", "cancelled"]
    assert [(await api.job(i))["status"] for i in cancelled] == ["cancelled", "queued"]
