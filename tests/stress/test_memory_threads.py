"""Replicas on separate threads over one memory store: the store's lock alone picks one winner.

Within one event loop a memory-store claim never yields between its read and its
write, so coroutines alone cannot tell a conditional write from a read-check-write
there; threads (one event loop each) can.
"""

from __future__ import annotations

import asyncio
import contextlib
import sys
import threading
from typing import Any

import httpx
from fastapi import FastAPI
from fleet_coordinator import create_app

from .conftest import Api
from .test_service_races import LEASE, _agents, _claim

PROVIDERS = ("memory",)


ROUNDS = 40
_FIRST_CLAIM = threading.Lock()
"""Taken for each app's first claim: FastAPI and the hot path set a route up at its
first request, which is not meant to run on several threads at once (pydantic
warned about aliases when it did)."""


def _replica_thread(
    api: Api,
    app: FastAPI,
    ready: threading.Barrier,
    go: threading.Barrier,
    done: threading.Barrier,
    headers: list[dict[str, str]],
    won: list[list[Any]],
) -> None:
    """A replica with its own event loop in this thread, over ``api``'s memory store."""

    async def serve() -> None:
        async with app.router.lifespan_context(app):
            transport = httpx.ASGITransport(app=app)
            async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:
                replica = Api(client, api.clock, app)
                with _FIRST_CLAIM:  # no job is queued yet: it leases nothing
                    assert await _claim(replica, headers[0]) == []
                ready.wait()  # the first job is enqueued once every replica is set up
                for round_ in range(ROUNDS):
                    go.wait()  # every thread starts claiming at once
                    results = await asyncio.gather(*(_claim(replica, h) for h in headers))
                    won[round_].extend(lease for result in results for lease in result)
                    done.wait()

    with contextlib.suppress(threading.BrokenBarrierError):  # the test failed and aborted
        asyncio.run(serve())


async def test_claims_from_replicas_in_threads_over_one_memory_store_have_one_winner(
    api: Api,
) -> None:
    """Three replicas on three threads share a memory store; each fresh job has one winner."""
    agents = await _agents(api, 24)
    ready = threading.Barrier(4, timeout=60)
    go, done = threading.Barrier(4, timeout=60), threading.Barrier(4, timeout=60)
    won: list[list[Any]] = [[] for _ in range(ROUNDS)]
    # Apps are built here, one after another, and each one's first claim is made alone
    # (_FIRST_CLAIM): FastAPI's route set-up is not meant to run on several threads at once.
    apps = [
        create_app(api.co.settings.model_copy(), clock=api.clock, store=api.co.containers.store)
        for _ in range(3)
    ]
    threads = [
        threading.Thread(
            target=_replica_thread,
            args=(api, apps[i], ready, go, done, [h for _, h in agents[i::3]], won),
        )
        for i in range(3)
    ]
    previous = sys.getswitchinterval()
    sys.setswitchinterval(1e-6)  # switch threads often, so reads and writes interleave
    try:
        for thread in threads:
            thread.start()
        await asyncio.to_thread(ready.wait)
        for round_ in range(ROUNDS):
            job = await api.enqueue(lease_seconds=LEASE)
            await asyncio.to_thread(go.wait)
            await asyncio.to_thread(done.wait)
            assert [lease["job"]["id"] for lease in won[round_]] == [job["id"]]
            winner = dict(agents)[won[round_][0]["lease"]["agent_id"]]
            r = await api.client.post(
                f"/v1/jobs/{job['id']}/complete", json={"epoch": 1}, headers=winner
            )
            assert r.status_code == 200, r.text
    finally:
        sys.setswitchinterval(previous)
        ready.abort()  # a failed round releases the threads instead of leaving them waiting
        go.abort()
        done.abort()
        for thread in threads:
            await asyncio.to_thread(thread.join, 60)
