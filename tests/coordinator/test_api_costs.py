"""Store requests per job lifecycle, counted on the containers the app uses."""

from __future__ import annotations

import asyncio
from collections import Counter
from collections.abc import Awaitable, Callable
from typing import Any

import pytest

from .conftest import Api

_METHODS = (
    "create",
    "get",
    "update_if_match",
    "query",
    "count",
    "batch",
    "batch_etags",
    "delete",
    "replace",
    "upsert",
)


def count_requests(api: Api, monkeypatch: pytest.MonkeyPatch) -> Counter[str]:
    """Wrap every container method of the app so each call is counted by name."""
    calls: Counter[str] = Counter()
    c = api.co.containers
    for container in (c.jobs, c.agents, c.locks, c.schedules):
        for name in _METHODS:
            original: Callable[..., Awaitable[Any]] = getattr(container, name)

            async def counted(
                *args: Any, _key: str = f"{container.name}.{name}", _orig: Any = original, **kw: Any
            ) -> Any:
                calls[_key] += 1
                return await _orig(*args, **kw)

            monkeypatch.setattr(container, name, counted)
    return calls


async def test_enqueue_claim_complete_costs_five_store_requests(
    api: Api, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Enqueue 1, claim 3 (query, ledger, job) and complete 1 (job) request.

    The ledger release of the completed lease is written later, with the agent's
    next claim or by the replica's flush.
    """
    _, headers = await api.agent()
    await api.enqueue()  # the first job of a queue also writes the queue's marker
    calls = count_requests(api, monkeypatch)
    job = await api.enqueue()
    assert sum(calls.values()) == 1
    calls.clear()
    [lease] = await api.claim(headers)
    assert lease["job"]["id"] is not None
    assert sum(calls.values()) == 3, calls
    calls.clear()
    r = await api.client.post(
        f"/v1/jobs/{lease['job']['id']}/complete", json={"epoch": 1}, headers=headers
    )
    assert r.status_code == 200
    assert sum(calls.values()) == 1, calls
    assert job["id"]


async def test_batched_lifecycle_costs_at_most_three_and_a_half_requests_per_job(
    api: Api, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Batch enqueue, claims of 10 and completes cost ≤ 3.5 store requests per job."""
    _, headers = await api.agent(capacity=10)
    await api.enqueue()  # the queue marker, and a job for the count below
    calls = count_requests(api, monkeypatch)
    jobs = [{"kind": "k"} for _ in range(99)]
    r = await api.client.post("/v1/jobs/batch", json={"jobs": jobs}, headers=api.admin)
    assert r.status_code == 201
    done = 0
    while done < 100:
        leases = await api.claim(headers, max_jobs=10)
        assert leases
        for lease in leases:
            r = await api.client.post(
                f"/v1/jobs/{lease['job']['id']}/complete",
                json={"epoch": lease["lease"]["epoch"]},
                headers=headers,
            )
            assert r.status_code == 200
        done += len(leases)
    assert sum(calls.values()) / 100 <= 3.5, calls


async def test_a_batch_checks_its_keys_with_one_query_a_shard_and_keyless_jobs_with_none(
    api: Api, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A keyless batch is its transactional batches alone; a keyed one adds a query per shard."""
    await api.enqueue()  # the queue marker
    calls = count_requests(api, monkeypatch)
    jobs: list[dict[str, Any]] = [{"kind": "k"} for _ in range(1000)]
    r = await api.client.post("/v1/jobs/batch", json={"jobs": jobs}, headers=api.admin)
    assert r.status_code == 201
    shards = api.co.settings.job_shards
    assert set(calls) == {"jobs.batch_etags"}, calls
    assert shards <= calls["jobs.batch_etags"] <= 2 * shards
    calls.clear()
    keyed = [{"kind": "k", "idempotency_key": f"c-{i}"} for i in range(100)]
    r = await api.client.post("/v1/jobs/batch", json={"jobs": keyed}, headers=api.admin)
    assert r.status_code == 201
    assert set(calls) == {"jobs.query", "jobs.batch_etags"}, calls
    assert calls["jobs.query"] == calls["jobs.batch_etags"] <= shards


async def test_idle_long_polls_of_a_replica_share_their_re_queries(
    api: Api, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Twenty agents long-polling an empty queue re-query together, not each on its own.

    Every waiter wakes on the replica's shared tick, so their claims coalesce into
    one candidate query per tick: about wait / interval queries, not twenty times that.
    """
    agents = [(await api.agent(name=f"idle-{i}"))[1] for i in range(20)]
    api.co.settings.long_poll_interval_seconds = 0.1
    calls = count_requests(api, monkeypatch)
    answers = await asyncio.gather(
        *(
            api.client.post("/v1/claims", json={"wait_seconds": 0.55}, headers=headers)
            for headers in agents
        )
    )
    assert all(r.status_code == 200 and r.json()["leases"] == [] for r in answers)
    # The first claims (1 query), about five ticks, and slack for a straggler or two;
    # waiters on their own timers would need some 20 x 6 = 120.
    assert calls["jobs.query"] <= 12, calls


async def test_lifecycle_with_batched_reports_costs_at_most_two_and_a_half_requests_per_job(
    api: Api, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Batch enqueue, then reports of 10 completions each carrying the next claim of 10.

    Counted: every call the app makes on its two containers (create, get,
    update_if_match, query, count, batch, delete), from the batch enqueue to the
    last completion, divided by the jobs: ≤ 2.5. The floor is the two job writes
    (claim, complete); the rest is one query and one ledger write per claim of 10
    and about one transactional batch per shard per enqueue of 100.
    """
    _, headers = await api.agent(capacity=10)
    await api.enqueue()  # the queue marker, and a job for the count below
    calls = count_requests(api, monkeypatch)
    jobs = [{"kind": "k"} for _ in range(199)]
    for start in (0, 100):
        r = await api.client.post(
            "/v1/jobs/batch", json={"jobs": jobs[start : start + 100]}, headers=api.admin
        )
        assert r.status_code == 201
    leases = await api.claim(headers, max_jobs=10)
    done = 0
    while leases:
        items = [
            {"job_id": le["job"]["id"], "epoch": le["lease"]["epoch"], "action": "complete"}
            for le in leases
        ]
        r = await api.client.post(
            "/v1/reports", json={"items": items, "claim": {"max_jobs": 10}}, headers=headers
        )
        assert r.status_code == 200
        assert all(item["ok"] for item in r.json()["items"])
        done += len(leases)
        leases = r.json()["leases"]
    assert done == 200
    per_job = sum(calls.values()) / done
    assert per_job <= 2.5, (per_job, calls)


async def test_a_locked_lifecycle_costs_five_more_store_requests(
    api: Api, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A free lock: claim +3 (lock read, lock create, the head check's query of the lock's
    jobs), complete +2 (lock read, lock delete)."""
    _, headers = await api.agent()
    await api.enqueue(lock="L")
    calls = count_requests(api, monkeypatch)
    [lease] = await api.claim(headers)
    assert sum(calls.values()) == 6, calls
    assert calls["locks.get"] == 1
    assert calls["locks.create"] == 1
    assert calls["jobs.query"] == 2
    calls.clear()
    body = {"epoch": lease["lease"]["epoch"]}
    r = await api.client.post(f"/v1/jobs/{lease['job']['id']}/complete", json=body, headers=headers)
    assert r.status_code == 200
    assert sum(calls.values()) == 3, calls
    assert calls["locks.delete"] == 1


async def test_a_schedule_sweep_costs_one_query_and_three_requests_per_occurrence(
    api: Api, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Per replica and tick: one schedules query; a due occurrence adds create and record."""
    from fleet_coordinator.services import fire_due

    api.clock.set(1_800_000_000.0)  # a whole minute
    body = {"cron": "* * * * *", "job": {"kind": "k"}}
    r = await api.client.put("/v1/schedules/m", json=body, headers=api.admin)
    assert r.status_code == 201
    await api.enqueue()  # the default queue's marker exists, as it would after the first run
    calls = count_requests(api, monkeypatch)
    assert await fire_due(api.co) == 0
    assert sum(calls.values()) == 1, calls
    calls.clear()
    api.clock.advance(60)
    assert await fire_due(api.co) == 1
    assert sum(calls.values()) == 3, calls
