"""Store requests per job lifecycle, counted on the containers the app uses."""

from __future__ import annotations

from collections import Counter
from collections.abc import Awaitable, Callable
from typing import Any

import pytest

from .conftest import Api

_METHODS = ("create", "get", "update_if_match", "query", "count", "batch", "delete")


def count_requests(api: Api, monkeypatch: pytest.MonkeyPatch) -> Counter[str]:
    """Wrap every container method of the app so each call is counted by name."""
    calls: Counter[str] = Counter()
    for container in (api.co.containers.jobs, api.co.containers.agents):
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
