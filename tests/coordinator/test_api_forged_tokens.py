"""Tokens with made-up agent ids cost the store a bounded number of reads per replica.

Any client can send ``fa.<an id>.<anything>`` with no secret; each unknown id is
one point read of the agents container, and on Cosmos DB those spend request
units every replica shares. ``UnknownAgents`` gives each replica a budget for
ids it has never found (``services/agent_docs.py``); ids it found are free. Past
the budget, one shared query at most once an interval (a catch-up) learns the
agents registered elsewhere meanwhile; other ids get 429 unread.
"""

from __future__ import annotations

import asyncio
from contextlib import AsyncExitStack
from pathlib import Path
from typing import Any

import httpx
import pytest
from fleet_coordinator import Settings, create_app
from fleet_coordinator.domain import ManualClock
from fleet_coordinator.services.agent_docs import UnknownAgents
from fleet_coordinator.store import new_id

from .conftest import ADMIN, Api, CallCounter, store_settings

BURST = 5


def _forged() -> dict[str, str]:
    return {"Authorization": f"Bearer fa.{new_id()}.not-the-secret"}


def _budget(api: Api, burst: int = BURST, catch_up_seconds: float = 3600.0) -> UnknownAgents:
    unknown = UnknownAgents(
        enabled=True, burst=burst, per_second=0.0, catch_up_seconds=catch_up_seconds
    )
    api.co.agent_docs.unknown = unknown
    return unknown


async def test_the_budget_is_on_where_the_store_is_remote(api: Api) -> None:
    """On Cosmos DB a read costs request units; on SQLite or in memory less than the request."""
    remote = not api.co.containers.store.local
    assert api.co.agent_docs.unknown.enabled is remote


async def test_forged_tokens_past_the_budget_read_nothing_and_get_429(
    api: Api, monkeypatch: pytest.MonkeyPatch
) -> None:
    """5 unknown ids are read (401 each); the next 20 are 429 with Retry-After, unread.

    Past the budget the replica catches up once (one query, shared); within the
    interval every further made-up id costs the store nothing at all.
    """
    _budget(api)
    reads = CallCounter(monkeypatch, api.co.agents, "get")
    queries = CallCounter(monkeypatch, api.co.agents, "query")
    for _ in range(BURST):
        r = await api.client.post("/v1/claims", json={}, headers=_forged())
        assert r.status_code == 401, r.text
    assert reads.calls == BURST
    assert queries.calls == 0
    for i in range(20):
        path = "/v1/claims" if i % 2 else "/v1/claims?via=plain"  # the hot path and FastAPI's
        r = await api.client.post(path, json={}, headers=_forged())
        assert r.status_code == 429, r.text
        assert r.json()["error"]["code"] == "too_many_requests"
        assert r.headers["retry-after"]
    assert reads.calls == BURST
    assert queries.calls == 1


async def test_made_up_ids_at_once_share_one_catch_up(
    api: Api, monkeypatch: pytest.MonkeyPatch
) -> None:
    """30 forged requests at the same moment, past the budget, wait for one query together."""
    _budget(api, burst=0)
    queries = CallCounter(monkeypatch, api.co.agents, "query")
    answers = await asyncio.gather(
        *(api.client.post("/v1/claims", json={}, headers=_forged()) for _ in range(30))
    )
    assert [r.status_code for r in answers] == [429] * 30
    assert queries.calls == 1


async def test_agents_found_here_are_served_while_the_budget_is_spent(api: Api) -> None:
    """A registered agent claims, even uncached, with no budget left; so does a new one."""
    unknown = _budget(api, burst=0, catch_up_seconds=0.0)
    agent_id, headers = await api.agent()
    await api.enqueue()
    api.co.agent_cache.evict(agent_id)  # read again, as after the cache's few seconds
    assert len(await api.claim(headers)) == 1
    for _ in range(3):
        r = await api.client.post("/v1/claims", json={}, headers=_forged())
        assert r.status_code == 429, r.text
    # An agent registered on another replica is unknown to this one: the next
    # catch-up finds it, and it is free from then on.
    other_id, other = await api.agent()
    unknown.gone(other_id)
    api.co.agent_cache.evict(other_id)
    assert not unknown.knows(other_id)
    r = await api.client.post("/v1/claims", json={}, headers=other)
    assert r.status_code == 200, r.text
    assert unknown.knows(other_id)


async def test_within_the_interval_a_new_agent_waits_for_the_next_catch_up(api: Api) -> None:
    """An agent registered elsewhere just after a catch-up gets 429 until the next one."""
    unknown = _budget(api, burst=0)
    r = await api.client.post("/v1/claims", json={}, headers=_forged())
    assert r.status_code == 429, r.text  # this caught up
    other_id, other = await api.agent()
    unknown.gone(other_id)
    api.co.agent_cache.evict(other_id)
    r = await api.client.post("/v1/claims", json={}, headers=other)
    assert r.status_code == 429, r.text  # no catch-up within the interval
    unknown.catch_up_seconds = 0.0  # as if the interval had passed (the agent's retry)
    r = await api.client.post("/v1/claims", json={}, headers=other)
    assert r.status_code == 200, r.text


async def test_a_deleted_agent_is_forgotten(api: Api) -> None:
    """A known id whose agent is gone spends the budget again, like any unknown one."""
    unknown = _budget(api, burst=1)
    agent_id, headers = await api.agent()
    r = await api.client.delete(f"/v1/agents/{agent_id}", headers=api.admin)
    assert r.status_code in (200, 204), r.text
    api.co.agent_cache.evict(agent_id)
    for _ in range(2):  # known until read as gone, then the budget's one read
        r = await api.client.post("/v1/claims", json={}, headers=headers)
        assert r.status_code == 401, r.text
    r = await api.client.post("/v1/claims", json={}, headers=headers)
    assert r.status_code == 429, r.text  # forgotten: unknown again, nothing left
    assert unknown.burst == 1


async def _started(stack: AsyncExitStack, shared: dict[str, Any]) -> Api:
    settings = Settings(**shared, admin_token=ADMIN, reaper_enabled=False)
    app = create_app(settings, clock=ManualClock())
    await stack.enter_async_context(app.router.lifespan_context(app))
    client = await stack.enter_async_context(
        httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://test")
    )
    return Api(client, ManualClock(), app)


async def test_a_restarted_replica_knows_the_registered_agents(
    tmp_path: Path, request: pytest.FixtureRequest
) -> None:
    """Agents registered before a replica started spend nothing of its budget."""
    shared = store_settings("cosmos", tmp_path, request)
    async with AsyncExitStack() as stack:
        first = await _started(stack, shared)
        agents = [await first.agent(name=f"a{i}") for i in range(3)]
        later = await _started(stack, shared)  # a replica started (or restarted) after them
        unknown = later.co.agent_docs.unknown
        assert unknown.enabled
        unknown.burst, unknown.per_second = 0, 0.0
        for _, headers in agents:
            r = await later.client.post("/v1/claims", json={}, headers=headers)
            assert r.status_code == 200, r.text
        r = await later.client.post("/v1/claims", json={}, headers=_forged())
        assert r.status_code == 429, r.text


async def test_an_agent_registered_on_another_replica_is_served_while_the_budget_is_spent(
    tmp_path: Path, request: pytest.FixtureRequest
) -> None:
    """On Cosmos DB: replica B registers an agent after A started; A serves it at once.

    A's budget is spent (someone forging tokens): the agent's first request makes
    A catch up, and it claims.
    """
    shared = store_settings("cosmos", tmp_path, request)
    async with AsyncExitStack() as stack:
        a = await _started(stack, shared)
        b = await _started(stack, shared)
        unknown = a.co.agent_docs.unknown
        unknown.burst, unknown.per_second = 0, 0.0
        r = await a.client.post("/v1/claims", json={}, headers=_forged())
        assert r.status_code == 429, r.text  # A caught up here, before the agent existed
        unknown.catch_up_seconds = 0.0  # the agent's request comes after the interval
        _, headers = await b.agent(name="late")
        r = await a.client.post("/v1/claims", json={}, headers=headers)
        assert r.status_code == 200, r.text
