"""A queue whose head is 10,000 jobs of one held lock: claims still get what is behind."""

from __future__ import annotations

import pytest

from .conftest import Api
from .test_api_costs import count_requests

PROVIDERS = ("memory", "sqlite")
"""Enqueueing 10,000 jobs into the local Cosmos-protocol server takes minutes; the
1,500-job version of this test runs there (``test_api_locks.py``)."""


async def test_ten_thousand_held_lock_jobs_cost_a_claim_a_bounded_number_of_requests(
    api: Api, monkeypatch: pytest.MonkeyPatch
) -> None:
    """One claim gets the lockless and other-lock jobs behind them: 17 store requests."""
    _, holder = await api.agent()
    _, other = await api.agent(capacity=2)
    head = await api.enqueue(lock="hot", priority=10)
    [lease] = await api.claim(holder)
    assert lease["job"]["id"] == head["id"]
    for _ in range(10):
        jobs = [{"kind": "k", "lock": "hot", "priority": 10} for _ in range(1000)]
        r = await api.client.post("/v1/jobs/batch", json={"jobs": jobs}, headers=api.admin)
        assert r.status_code == 201
    api.clock.advance(1)
    lockless = await api.enqueue()
    cold = await api.enqueue(lock="cold")
    calls = count_requests(api, monkeypatch)
    got = [x["job"]["id"] for x in await api.claim(other, max_jobs=2)]
    assert sorted(got) == sorted([lockless["id"], cold["id"]])
    assert sum(calls.values()) <= 20, calls
