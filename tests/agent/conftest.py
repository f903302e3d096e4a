"""Fixtures of the agent tests: an in-process coordinator on the real clock, and helpers."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

import httpx
import pytest
from fastapi import FastAPI
from fleet_agent import AgentClient
from fleet_coordinator import Settings, create_app

ADMIN = "admin-token-for-agent-tests"


async def eventually(
    check: Callable[[], Awaitable[bool]] | Callable[[], bool], within: float = 10.0
) -> None:
    """Poll ``check`` until true (state held by another process or service), else fail."""
    deadline = time.monotonic() + within
    while True:
        outcome = check()
        if not isinstance(outcome, bool):
            outcome = await outcome
        if outcome:
            return
        assert time.monotonic() < deadline, "condition not met in time"
        await asyncio.sleep(0.02)


class FaultyTransport(httpx.AsyncBaseTransport):
    """Wraps a transport; fails requests whose path matches ``failing`` with a refused connection.

    ``failing`` maps a path suffix to how many more requests to fail (``-1``: until cleared).
    ``seen`` counts requests per path suffix of interest, and ``changed`` is notified on each.
    A ``POST /v1/reports`` counts as ``reports`` and as each of its items' actions
    (``heartbeat``, ``complete`` …), and fails when any of them is failing, so a test
    reads the same whether the worker batches its reports or not.
    """

    def __init__(self, inner: httpx.AsyncBaseTransport) -> None:
        self.inner = inner
        self.failing: dict[str, int] = {}
        self.seen: dict[str, int] = {}
        self.changed = asyncio.Condition()

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        path = request.url.path
        suffixes = [path.rsplit("/", 1)[-1]]
        if path == "/v1/reports":
            await request.aread()
            suffixes += [item["action"] for item in json.loads(request.content)["items"]]
        async with self.changed:
            for suffix in suffixes:
                self.seen[suffix] = self.seen.get(suffix, 0) + 1
            self.changed.notify_all()
        for suffix in suffixes:
            left = self.failing.get(suffix, 0)
            if left:
                self.failing[suffix] = left - 1 if left > 0 else left
                raise httpx.ConnectError("connection refused (injected)", request=request)
        return await self.inner.handle_async_request(request)

    async def wait_seen(self, suffix: str, count: int) -> None:
        """Wait until ``count`` requests to ``…/suffix`` have started."""
        async with self.changed:
            await asyncio.wait_for(
                self.changed.wait_for(lambda: self.seen.get(suffix, 0) >= count), 10
            )


@dataclass
class Fleet:
    """An in-process coordinator (memory store, system clock, fast reaper) and an admin client."""

    app: FastAPI
    admin: httpx.AsyncClient
    transports: list[FaultyTransport] = field(default_factory=list)

    async def register(self, **fields: Any) -> tuple[str, str]:
        """Register an agent; return its id and token."""
        r = await self.admin.post("/v1/agents", json={"name": "worker", **fields})
        assert r.status_code == 201, r.text
        data = r.json()
        return data["agent"]["id"], data["token"]

    def client(self, token: str, **options: Any) -> tuple[AgentClient, FaultyTransport]:
        """An ``AgentClient`` talking to the app in-process through a ``FaultyTransport``."""
        transport = FaultyTransport(httpx.ASGITransport(app=self.app))
        self.transports.append(transport)
        options.setdefault("retry_timeout", 5.0)
        return AgentClient("http://coordinator", token, transport=transport, **options), transport

    async def enqueue(self, **fields: Any) -> str:
        """Enqueue a job; return its id."""
        body = {"kind": "test", "payload": {}, "lease_seconds": 1.0, **fields}
        r = await self.admin.post("/v1/jobs", json=body)
        assert r.status_code == 201, r.text
        job_id: str = r.json()["id"]
        return job_id

    async def job(self, job_id: str) -> dict[str, Any]:
        """A job with its runs."""
        r = await self.admin.get(f"/v1/jobs/{job_id}")
        assert r.status_code == 200, r.text
        data: dict[str, Any] = r.json()
        return data

    async def status(self, job_id: str) -> str:
        """A job's status."""
        return str((await self.job(job_id))["status"])


@pytest.fixture
async def fleet() -> AsyncIterator[Fleet]:
    """A running coordinator app on the memory store with a 0.1 s reaper."""
    settings = Settings(
        store_url="memory://",
        admin_token=ADMIN,
        reaper_interval_seconds=0.1,
        long_poll_interval_seconds=0.05,
        agent_cache_seconds=0,
    )
    app = create_app(settings)
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        headers = {"Authorization": f"Bearer {ADMIN}"}
        async with httpx.AsyncClient(
            transport=transport, base_url="http://coordinator", headers=headers
        ) as admin:
            yield Fleet(app, admin)
