"""Durability: a coordinator SIGKILLed mid-traffic keeps every acknowledged enqueue and completion.

The SQLite store runs in WAL mode with ``synchronous=NORMAL`` (the default URL):
a commit is in the OS's hands before the answer is sent, so killing the process
loses nothing acknowledged. (Only an OS crash or power loss could drop the last
commits; ``?synchronous=full`` covers that, at an fsync per commit.)
"""

from __future__ import annotations

import asyncio
import itertools
import uuid
from pathlib import Path

import httpx
import pytest

from tests.support.served import Served

KILLS = 3
ACKS_BEFORE_KILL = 60
"""Acknowledged enqueues (and completions) in each life of the process before it is killed."""


async def _traffic(
    http: httpx.AsyncClient,
    admin: dict[str, str],
    agent: dict[str, str],
    enqueued: set[str],
    completed: dict[str, str],
    enough: asyncio.Event,
) -> None:
    """Enqueue and complete as fast as possible until the server dies (or a bound)."""
    start = len(enqueued)
    serial = itertools.count()

    async def enqueuer() -> None:
        for _ in range(1000):
            body = {"kind": "durable", "idempotency_key": uuid.uuid4().hex}
            r = await http.post("/v1/jobs", json=body, headers=admin)
            if r.status_code == 201:
                enqueued.add(r.json()["id"])
                if len(enqueued) - start >= ACKS_BEFORE_KILL:
                    enough.set()

    async def completer() -> None:
        for _ in range(1000):
            r = await http.post("/v1/claims", json={"max_jobs": 5}, headers=agent)
            for item in r.json()["leases"]:
                job_id, epoch = item["job"]["id"], item["lease"]["epoch"]
                token = f"t{next(serial)}-{uuid.uuid4().hex[:6]}"
                done = await http.post(
                    f"/v1/jobs/{job_id}/complete",
                    json={"epoch": epoch, "result": {"token": token}},
                    headers=agent,
                )
                if done.status_code == 200:
                    completed[job_id] = token

    workers = [enqueuer() for _ in range(4)] + [completer() for _ in range(4)]
    results = await asyncio.gather(*workers, return_exceptions=True)
    for result in results:
        # The kill ends them with transport errors; anything else is a bug in the test.
        if isinstance(result, BaseException) and not isinstance(result, httpx.TransportError):
            raise result


@pytest.mark.parametrize("url", ["sqlite:///var/fleet.db"], ids=["synchronous-normal"])
async def test_acknowledged_enqueues_and_completions_survive_sigkill(
    tmp_path: Path, url: str
) -> None:
    """Kill the coordinator during traffic, three times: every acknowledged write is there."""
    enqueued: set[str] = set()
    completed: dict[str, str] = {}
    server = Served(cwd=tmp_path, store_url=url)
    try:
        server.start()
        async with httpx.AsyncClient(base_url=server.base_url, timeout=30) as http:
            created = await http.post(
                "/v1/agents", json={"name": "d", "capacity": 100}, headers=server.admin_headers
            )
            agent = {"Authorization": f"Bearer {created.json()['token']}"}
            for _ in range(KILLS):
                enough = asyncio.Event()
                traffic = asyncio.create_task(
                    _traffic(http, server.admin_headers, agent, enqueued, completed, enough)
                )
                await asyncio.wait_for(enough.wait(), 60)
                server.kill()  # SIGKILL while requests are in flight
                await asyncio.wait_for(traffic, 60)
                await asyncio.to_thread(server.start)
            assert len(enqueued) >= KILLS * ACKS_BEFORE_KILL
            assert completed, "some completions must have been acknowledged"
            for job_id in enqueued:
                r = await http.get(f"/v1/jobs/{job_id}", headers=server.admin_headers)
                assert r.status_code == 200, f"acknowledged job {job_id} lost: {r.text}"
                job = r.json()
                if job_id in completed:
                    assert job["status"] == "succeeded"
                    assert job["result"] == {"token": completed[job_id]}
    finally:
        server.stop()
