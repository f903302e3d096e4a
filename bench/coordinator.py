"""Coordinator benchmarks: the service layer in process, then real HTTP on loopback.

In process (no HTTP): claim+complete on memory and SQLite, bulk enqueue, and the
claim p50 with 1,000 vs 1,000,000 queued jobs (samples interleaved). Over HTTP
(``bench/loopback.py``): real ``fleet-coordinator serve`` processes against a bare
FastAPI endpoint under the same uvicorn, the ceiling, measured in the same run.

Logging is configured as ``fleet-coordinator serve`` does it (JSON lines, one
event per state change), written to ``os.devnull`` so the figures are not
printed among thousands of events.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import statistics
import sys
import tempfile
import time
from collections.abc import AsyncIterator

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
    release_job,
)

from bench.loopback import report, run_loopback

__all__ = ["main"]


@contextlib.asynccontextmanager
async def _app(url: str) -> AsyncIterator[FastAPI]:
    settings = Settings(store_url=url, admin_token="bench", reaper_enabled=False)
    # Collector tuned as `serve` tunes it (a process running one coordinator).
    app = create_app(settings, tune_gc=True)
    async with app.router.lifespan_context(app):
        yield app


async def in_process(url: str, jobs: int) -> float:
    """Jobs per second through the services (no HTTP): batch claims of 100, then completes."""
    async with _app(url) as app:
        co: Coordinator = app.state.coordinator
        body, _ = await create_agent(co, name="bench", labels={}, capacity=100, queues=[])
        for start in range(0, jobs, 1000):
            await enqueue_batch(
                co, [NewJob(kind="k", payload={}) for _ in range(min(1000, jobs - start))]
            )
        began = time.perf_counter()
        done = 0
        while done < jobs:
            agent = await read_agent(co, body.id)
            assert agent is not None
            leased = await claim_jobs(co, agent, None, 100)
            if not leased:
                break
            for job in leased:
                await complete_job(co, agent.id, job.id, job.epoch, None)
            done += len(leased)
        return done / (time.perf_counter() - began)


async def bulk_in_process(url: str, jobs: int) -> float:
    """Jobs per second through ``enqueue_batch`` in batches of 1,000 (no HTTP)."""
    async with _app(url) as app:
        co: Coordinator = app.state.coordinator
        began = time.perf_counter()
        for start in range(0, jobs, 1000):
            await enqueue_batch(
                co, [NewJob(kind="k", payload={}) for _ in range(min(1000, jobs - start))]
            )
        return jobs / (time.perf_counter() - began)


async def _seed(co: Coordinator, jobs: int, label: str) -> None:
    began = time.perf_counter()
    for start in range(0, jobs, 1000):
        await enqueue_batch(
            co, [NewJob(kind="k", payload={}) for _ in range(min(1000, jobs - start))]
        )
        if (start // 1000) % 100 == 99:
            rate = (start + 1000) / (time.perf_counter() - began)
            log(f"{label}: {start + 1000:,} of {jobs:,} queued ({rate:,.0f} jobs/s)")


async def claim_scale(
    url_small: str, url_large: str, small: int, large: int, samples: int
) -> tuple[float, float]:
    """p50 of one claim (ms) with ``small`` and ``large`` jobs queued, samples interleaved.

    Each sample claims one job and releases it again, so the queue keeps its size;
    only the claim is timed. Both coordinators run in this process and take turns,
    so they see the same machine noise.
    """
    async with _app(url_small) as app_s, _app(url_large) as app_l:
        cos: list[Coordinator] = [app_s.state.coordinator, app_l.state.coordinator]
        await _seed(cos[0], small, "small queue")
        await _seed(cos[1], large, "large queue")
        agents = []
        for co in cos:
            body, _ = await create_agent(co, name="bench", labels={}, capacity=1, queues=[])
            agents.append(body.id)
        times: list[list[float]] = [[], []]
        for i in range(samples * 2):
            which = i % 2
            co = cos[which]
            agent = await read_agent(co, agents[which])
            assert agent is not None
            began = time.perf_counter()
            [job] = await claim_jobs(co, agent, None, 1)
            times[which].append(time.perf_counter() - began)
            await release_job(co, agent.id, job.id, job.epoch)
        return statistics.median(times[0]) * 1000, statistics.median(times[1]) * 1000


def log(message: str) -> None:
    print(f"  … {message}", file=sys.stderr, flush=True)


async def _run(large: int) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        mem = await in_process("memory://", 5000)
        print(f"in-process claim+complete, memory:           {mem:8.0f} jobs/s")
        sqlite = await in_process(f"sqlite:///{tmp}/inproc.db", 2000)
        print(f"in-process claim+complete, SQLite:           {sqlite:8.0f} jobs/s")
        bulk_mem = await bulk_in_process("memory://", 20_000)
        bulk_sql = await bulk_in_process(f"sqlite:///{tmp}/bulk.db", 20_000)
        print(
            f"in-process bulk enqueue, memory / SQLite:    {bulk_mem:8.0f} / {bulk_sql:.0f} jobs/s"
        )
        p_small, p_large = await claim_scale(
            f"sqlite:///{tmp}/small.db", f"sqlite:///{tmp}/large.db", 1000, large, 300
        )
        print(
            f"claim p50, SQLite, 1,000 vs {large:,} queued:  {p_small:.2f} ms vs {p_large:.2f} ms"
            f"  ({p_large / p_small:.2f}x)"
        )


def main(args: list[str]) -> None:
    """Run the coordinator benchmarks."""
    parser = argparse.ArgumentParser(prog="python -m bench coordinator")
    parser.add_argument(
        "--queued", type=int, default=1_000_000, help="jobs queued for the large claim-p50 run"
    )
    parser.add_argument(
        "--scale", type=float, default=1.0, help="multiplies the HTTP benchmarks' request counts"
    )
    options = parser.parse_args(args)
    with open(os.devnull, "w") as sink:
        configure_logging(file=sink)
        asyncio.run(_run(options.queued))
        report(run_loopback(options.scale))
