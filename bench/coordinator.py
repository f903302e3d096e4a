"""Coordinator benchmarks: claim+complete in process and over in-process HTTP.

Every figure is printed beside a ratio measured in the same run: the HTTP
lifecycle against a bare FastAPI endpoint driven the same way (the ceiling).

Logging is configured as ``fleet-coordinator serve`` does it (JSON lines, one
event per state change), written to ``os.devnull`` so the figures are not
printed among thousands of events.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import tempfile
import time
from collections.abc import AsyncIterator

import httpx
from fastapi import FastAPI
from fleet_coordinator import Settings, create_app
from fleet_coordinator.logs import configure_logging
from fleet_coordinator.services import (
    Coordinator,
    NewJob,
    claim_jobs,
    complete_job,
    create_agent,
    enqueue_batch,
    read_agent,
)

__all__ = ["main"]


@contextlib.asynccontextmanager
async def _app(url: str) -> AsyncIterator[tuple[FastAPI, httpx.AsyncClient]]:
    settings = Settings(store_url=url, admin_token="bench", reaper_enabled=False)
    app = create_app(settings)
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://bench") as client:
            yield app, client


async def in_process(url: str, jobs: int) -> float:
    """Jobs per second through the services (no HTTP): batch claims of 100, then completes."""
    async with _app(url) as (app, _):
        co: Coordinator = app.state.coordinator
        body, _ = await create_agent(co, name="bench", labels={}, capacity=100, queues=[])
        for start in range(0, jobs, 1000):
            await enqueue_batch(
                co, [NewJob(kind="k", payload={}) for _ in range(min(1000, jobs - start))]
            )
        began = time.perf_counter()
        done = 0
        while done < jobs:
            agent = await read_agent(co, body["id"])
            assert agent is not None
            leased = await claim_jobs(co, agent, None, 100)
            if not leased:
                break
            for job in leased:
                await complete_job(co, agent.id, job.id, job.epoch, None)
            done += len(leased)
        return done / (time.perf_counter() - began)


async def over_http(url: str, jobs: int, agents: int) -> float:
    """Jobs per second for enqueue → claim → complete with ``agents`` concurrent agents."""
    async with _app(url) as (_, client):
        admin = {"Authorization": "Bearer bench"}
        tokens = []
        for i in range(agents):
            r = await client.post("/v1/agents", json={"name": f"a{i}"}, headers=admin)
            tokens.append({"Authorization": f"Bearer {r.json()['token']}"})

        completed = 0

        async def worker(headers: dict[str, str], count: int) -> None:
            nonlocal completed
            for _ in range(count):
                await client.post("/v1/jobs", json={"kind": "k"}, headers=admin)
                r = await client.post("/v1/claims", json={}, headers=headers)
                for lease in r.json()["leases"]:
                    done = await client.post(
                        f"/v1/jobs/{lease['job']['id']}/complete",
                        json={"epoch": lease["lease"]["epoch"]},
                        headers=headers,
                    )
                    completed += done.status_code == 200

        began = time.perf_counter()
        await asyncio.gather(*(worker(t, jobs // agents) for t in tokens))
        # Jobs completed, not enqueued: a claim that comes back empty leaves its job queued.
        return completed / (time.perf_counter() - began)


async def bare(requests: int, concurrency: int) -> float:
    """Requests per second of a bare FastAPI endpoint over the same transport."""
    app = FastAPI()

    @app.post("/echo")
    async def echo() -> dict[str, bool]:
        return {"ok": True}

    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://bench") as client:

        async def worker(count: int) -> None:
            for _ in range(count):
                await client.post("/echo", json={})

        began = time.perf_counter()
        await asyncio.gather(*(worker(requests // concurrency) for _ in range(concurrency)))
        return requests / (time.perf_counter() - began)


async def _run() -> None:
    with tempfile.TemporaryDirectory() as tmp:
        sqlite = f"sqlite:///{tmp}/bench.db"
        mem = await in_process("memory://", 5000)
        print(f"in-process claim+complete, memory:  {mem:10.0f} jobs/s")
        ceiling = await bare(3000, 32)
        print(f"bare FastAPI endpoint (ASGI):        {ceiling:10.0f} req/s")
        for name, url in (("memory", "memory://"), ("sqlite", sqlite)):
            rate = await over_http(url, 1600, 32)
            ratio = rate * 3 / ceiling  # three requests per job
            print(
                f"HTTP enqueue→claim→complete, {name:6}: {rate:8.0f} jobs/s"
                f"  ({ratio:.2f} of the bare endpoint's request rate)"
            )


def main(args: list[str]) -> None:
    """Run the coordinator benchmarks."""
    with open(os.devnull, "w") as sink:
        configure_logging(file=sink)
        asyncio.run(_run())
