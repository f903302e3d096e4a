"""Coordinator benchmarks over real HTTP on 127.0.0.1.

Starts ``fleet-coordinator serve`` on SQLite (a temp dir) and a bare FastAPI
endpoint under the same uvicorn (``bench/bare.py``), each in its own process,
and drives both with the same aiohttp client from this process, so every
figure has a ceiling measured in the same run.

* bare endpoint: requests/s with 32 concurrent connections (the ceiling);
* claim endpoint: claims/s with 32 agents each claiming one job from a full queue and
  completing it (2 requests a claim);
* lifecycle: 32 agents each looping enqueue → claim → complete; jobs/s;
* batched lifecycle: the admin enqueues batches of 1,000 while 32 agents of
  capacity 10 each claim up to 10 jobs per long-poll and complete each, as
  ``fleet_agent.Worker`` does; jobs/s;
* bulk enqueue: ``POST /v1/jobs/batch`` of 1,000 jobs; jobs/s;
* long-poll delivery: an agent parked in ``POST /v1/claims`` with ``wait_seconds``;
  time from sending the enqueue to the claim's answer; p50 / p99, on one replica
  and across two replicas (woken by the replica's re-query interval).
"""

from __future__ import annotations

import asyncio
import os
import statistics
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable
from contextlib import ExitStack
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp
import orjson

from tests.support.served import Served

__all__ = ["LoopbackResults", "run_loopback"]

ROOT = Path(__file__).resolve().parents[1]
ADMIN = "bench-admin-token"


class BareServed(Served):
    """``uvicorn bench.bare:app`` instead of the coordinator."""

    def command(self) -> list[str]:
        uvicorn = [sys.executable, "-m", "uvicorn", "bench.bare:app"]
        return [*uvicorn, "--host", "127.0.0.1", "--log-level", "warning", "--no-access-log"]


@dataclass
class LoopbackResults:
    bare_rps: float
    claim_rps: float
    lifecycle_jps: float
    batched_jps: float
    bulk_jps: float
    poll_same: tuple[float, float]
    poll_cross: tuple[float, float]


def _log(message: str) -> None:
    print(f"  … {message}", file=sys.stderr, flush=True)


async def _rate(concurrency: int, per_worker: int, step: Callable[[int], Awaitable[int]]) -> float:
    """Run ``concurrency`` workers, each calling ``step(worker)`` ``per_worker`` times."""
    done = 0

    async def worker(index: int) -> None:
        nonlocal done
        for _ in range(per_worker):
            got = await step(index)  # not `done += await …`: that reads `done` before awaiting
            done += got

    began = time.perf_counter()
    await asyncio.gather(*(worker(i) for i in range(concurrency)))
    return done / (time.perf_counter() - began)


class Client:
    """aiohttp against one server; returns (status, JSON) and raises on 5xx."""

    def __init__(self, session: aiohttp.ClientSession, base: str) -> None:
        self.session = session
        self.base = base

    async def post(self, path: str, body: Any, token: str) -> tuple[int, Any]:
        # orjson both ways: the client shares the two cores with the server, and the
        # standard library's json on a 1,000-job batch and its answer cost as much
        # as a good part of the server's work on it.
        headers = {"Authorization": f"Bearer {token}", "Content-Type": "application/json"}
        async with self.session.post(
            self.base + path, data=orjson.dumps(body), headers=headers
        ) as r:
            data = orjson.loads(await r.read()) if r.status != 204 else None
            if r.status >= 500:
                raise RuntimeError(f"{path}: {r.status} {data}")
            return r.status, data

    async def agents(self, count: int, capacity: int = 1) -> list[str]:
        tokens = []
        for i in range(count):
            _, body = await self.post("/v1/agents", {"name": f"a{i}", "capacity": capacity}, ADMIN)
            tokens.append(body["token"])
        return tokens

    async def enqueue_many(self, count: int, queue: str) -> None:
        for start in range(0, count, 1000):
            jobs = [{"kind": "k", "queue": queue} for _ in range(min(1000, count - start))]
            status, _ = await self.post("/v1/jobs/batch", {"jobs": jobs}, ADMIN)
            assert status == 201, status


async def bare_rate(client: Client, concurrency: int, requests: int) -> float:
    async def step(i: int) -> int:
        status, _ = await client.post("/echo", {"kind": "k"}, "x")
        return int(status == 200)

    return await _rate(concurrency, requests // concurrency, step)


async def claim_rate(client: Client, concurrency: int, claims: int) -> float:
    """Claims/s from a full queue: each agent (capacity 1) claims one job, then completes it."""
    await client.enqueue_many(claims, "claims")
    tokens = await client.agents(concurrency)

    async def step(i: int) -> int:
        _, body = await client.post("/v1/claims", {"queues": ["claims"]}, tokens[i])
        for lease in body["leases"]:
            await client.post(
                f"/v1/jobs/{lease['job']['id']}/complete",
                {"epoch": lease["lease"]["epoch"]},
                tokens[i],
            )
        return len(body["leases"])

    return await _rate(concurrency, claims // concurrency, step)


async def lifecycle_rate(client: Client, concurrency: int, jobs: int) -> float:
    """Jobs/s completed by agents each looping enqueue → claim → complete."""
    tokens = await client.agents(concurrency)

    async def step(i: int) -> int:
        await client.post("/v1/jobs", {"kind": "k", "queue": "life"}, ADMIN)
        _, body = await client.post("/v1/claims", {"queues": ["life"]}, tokens[i])
        done = 0
        for lease in body["leases"]:
            status, _ = await client.post(
                f"/v1/jobs/{lease['job']['id']}/complete",
                {"epoch": lease["lease"]["epoch"]},
                tokens[i],
            )
            done += status == 200
        return done

    return await _rate(concurrency, jobs // concurrency, step)


async def batched_rate(client: Client, concurrency: int, capacity: int, jobs: int) -> float:
    """Jobs/s enqueued in batches of 1,000 and worked by agents claiming ``capacity`` at a time.

    The way ``fleet_agent.Worker`` runs: each agent of capacity C claims up to C
    jobs in one long-poll and completes each (its own request), so a job costs
    one request plus 1/C of a claim and 1/1,000 of an enqueue. The clock stops
    when the last job's completion is answered.
    """
    tokens = await client.agents(concurrency, capacity)
    done = 0
    finished: asyncio.Future[float] = asyncio.get_running_loop().create_future()

    async def produce() -> None:
        await client.enqueue_many(jobs, "batched")

    async def complete(lease: dict[str, Any], token: str) -> int:
        status, _ = await client.post(
            f"/v1/jobs/{lease['job']['id']}/complete", {"epoch": lease["lease"]["epoch"]}, token
        )
        return int(status == 200)

    async def agent(token: str) -> None:
        nonlocal done
        while not finished.done():
            body = {"queues": ["batched"], "max_jobs": capacity, "wait_seconds": 1}
            _, answer = await client.post("/v1/claims", body, token)
            got = await asyncio.gather(*(complete(lease, token) for lease in answer["leases"]))
            done += sum(got)
            if done >= jobs and not finished.done():
                finished.set_result(time.perf_counter())

    began = time.perf_counter()
    workers = [asyncio.ensure_future(agent(t)) for t in tokens]
    await produce()
    ended = await finished
    await asyncio.gather(*workers)
    return jobs / (ended - began)


async def bulk_rate(client: Client, batches: int) -> float:
    began = time.perf_counter()
    await client.enqueue_many(batches * 1000, "bulk")
    return batches * 1000 / (time.perf_counter() - began)


async def poll_latency(enqueue_to: Client, poll_at: Client, samples: int) -> tuple[float, float]:
    """p50 and p99 (ms) from sending an enqueue to a parked long-poll's answer."""
    [token] = await poll_at.agents(1)
    latencies = []
    for _ in range(samples):
        claim = asyncio.ensure_future(
            poll_at.post("/v1/claims", {"queues": ["poll"], "wait_seconds": 5}, token)
        )
        # Let the claim reach the server and park (a benchmark, not a test: a short pause).
        await asyncio.sleep(0.02)
        began = time.perf_counter()
        await enqueue_to.post("/v1/jobs", {"kind": "k", "queue": "poll"}, ADMIN)
        _, body = await claim
        latencies.append((time.perf_counter() - began) * 1000)
        [lease] = body["leases"]
        await poll_at.post(
            f"/v1/jobs/{lease['job']['id']}/complete", {"epoch": lease["lease"]["epoch"]}, token
        )
    latencies.sort()
    return statistics.median(latencies), latencies[int(len(latencies) * 0.99) - 1]


async def _drive(servers: list[Served], bare: Served, scale: float) -> LoopbackResults:
    # Idle connections are closed before uvicorn's 5 s keep-alive timeout closes them under us.
    connector = aiohttp.TCPConnector(limit=0, keepalive_timeout=3)
    async with aiohttp.ClientSession(connector=connector) as session:
        one, two = (Client(session, s.base_url) for s in servers)
        ceiling = Client(session, bare.base_url)
        n = max(320, int(6400 * scale))
        _log("bare endpoint warm-up")
        await bare_rate(ceiling, 32, 640)
        _log("claim endpoint")
        claims = await claim_rate(one, 32, n)
        _log("bare endpoint")
        bare_rps = await bare_rate(ceiling, 32, n)
        _log("lifecycle")
        life = await lifecycle_rate(one, 32, n)
        _log("batched lifecycle (agents of capacity 10)")
        batched = await batched_rate(one, 32, 10, n)
        _log("bulk enqueue")
        bulk = await bulk_rate(one, max(2, int(20 * scale)))
        samples = max(50, int(300 * scale))
        _log("long-poll delivery, one replica")
        same = await poll_latency(one, one, samples)
        _log("long-poll delivery, across replicas")
        cross = await poll_latency(two, one, max(20, samples // 5))
        return LoopbackResults(bare_rps, claims, life, batched, bulk, same, cross)


def run_loopback(scale: float = 1.0) -> LoopbackResults:
    """Start the servers, measure, stop them; ``scale`` multiplies the request counts."""
    with tempfile.TemporaryDirectory() as tmp, ExitStack() as stack:
        store = f"sqlite:///{tmp}/bench.db"
        env = {"FLEET_REAPER_INTERVAL_SECONDS": "1"}
        servers = [
            stack.enter_context(
                Served(
                    cwd=Path(tmp),
                    store_url=store,
                    env=env,
                    admin_token=ADMIN,
                    log_name=f"replica-{i}.log",
                )
            )
            for i in range(2)
        ]
        bare = stack.enter_context(
            BareServed(cwd=Path(tmp), env={"PYTHONPATH": str(ROOT)}, log_name="bare.log")
        )
        try:
            return asyncio.run(_drive(servers, bare, scale))
        except BaseException:
            for server in [*servers, bare]:
                print(f"--- {server.log_name}:\n{server.log_tail()}", file=sys.stderr)
            raise


def report(r: LoopbackResults) -> None:
    print(f"bare FastAPI endpoint (uvicorn, loopback):   {r.bare_rps:8.0f} req/s   (ceiling)")
    print(
        f"claim + complete, SQLite, 32 agents:        {r.claim_rps:8.0f} claims/s"
        f"  ({2 * r.claim_rps / r.bare_rps:.2f} x bare in requests; 2 a claim)"
    )
    print(
        f"enqueue → claim → complete, SQLite, 32:      {r.lifecycle_jps:8.0f} jobs/s"
        f"  ({3 * r.lifecycle_jps / r.bare_rps:.2f} x bare in requests; 3 a job)"
    )
    print(
        f"batch enqueue → claim 10 → complete, 32:     {r.batched_jps:8.0f} jobs/s"
        f"  ({r.batched_jps * 1.1 / r.bare_rps:.2f} x bare in requests; ~1.1 a job)"
    )
    print(f"bulk enqueue (batches of 1,000), SQLite:     {r.bulk_jps:8.0f} jobs/s")
    print(
        f"enqueue → parked long-poll, same replica:    p50 {r.poll_same[0]:6.2f} ms"
        f"   p99 {r.poll_same[1]:6.2f} ms"
    )
    print(
        f"enqueue → parked long-poll, other replica:   p50 {r.poll_cross[0]:6.2f} ms"
        f"   p99 {r.poll_cross[1]:6.2f} ms"
    )


if __name__ == "__main__":
    report(run_loopback(float(os.environ.get("BENCH_SCALE", "1"))))
