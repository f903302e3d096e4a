"""Retention soak: push jobs through their whole life on SQLite and watch the file size.

``python -m bench soak [--jobs N] [--retention S]`` runs the services in process
(no HTTP) on a fresh SQLite file with a manual clock: each round enqueues 1,000
jobs, claims and completes them, moves the clock ``--step`` seconds on and runs
one reaper tick's retention sweep (``purge_once``), as every replica's reaper
does. With a retention of ``S`` seconds about ``S / step`` rounds of jobs are
alive at any time, so the database (file + WAL) must level off, not grow with
the number of jobs pushed through. Prints the size every ``--every`` jobs and
the ratio of the last size to the size at the first quarter.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import tempfile
import time
from pathlib import Path

from fleet_coordinator import Settings, create_app
from fleet_coordinator.domain import ManualClock
from fleet_coordinator.logs import configure_logging
from fleet_coordinator.services import (
    Coordinator,
    NewJob,
    claim_jobs,
    complete_job,
    create_agent,
    enqueue_batch,
    purge_once,
    read_agent,
)

__all__ = ["main"]

_ROUND = 1_000


def _size(path: Path) -> int:
    return sum(p.stat().st_size for p in (path, Path(f"{path}-wal")) if p.exists())


async def soak(jobs: int, retention: int, step: float, every: int) -> list[tuple[int, int]]:
    """Run the soak; return (jobs done, database bytes) samples."""
    samples: list[tuple[int, int]] = []
    with tempfile.TemporaryDirectory() as tmp:
        db = Path(tmp) / "soak.db"
        settings = Settings(
            store_url=f"sqlite:///{db}",
            admin_token="bench",
            reaper_enabled=False,
            retain_succeeded_seconds=retention,
            retain_failed_seconds=retention,
        )
        clock = ManualClock()
        app = create_app(settings, clock=clock, tune_gc=True)
        async with app.router.lifespan_context(app):
            co: Coordinator = app.state.coordinator
            state, _ = await create_agent(co, name="soak", labels={}, capacity=100, queues=[])
            done = deleted = 0
            began = time.perf_counter()
            while done < jobs:
                await enqueue_batch(co, [NewJob(kind="soak", payload={"n": done})] * _ROUND)
                finished = 0
                while finished < _ROUND:
                    agent = await read_agent(co, state.id, fresh=True)
                    assert agent is not None
                    leased = await claim_jobs(co, agent, None, 100)
                    for job in leased:
                        await complete_job(co, agent.id, job.id, job.epoch, {"ok": True})
                    finished += len(leased)
                done += finished
                clock.advance(step)
                deleted += await purge_once(co)
                if done % every == 0:
                    size = _size(db)
                    samples.append((done, size))
                    rate = done / (time.perf_counter() - began)
                    wal = _size(db) - db.stat().st_size
                    print(
                        f"jobs={done:>9,} deleted={deleted:>9,} db={size / 1e6:8.2f} MB"
                        f" (WAL {wal / 1e6:.2f} MB, {rate:,.0f} jobs/s)",
                        flush=True,
                    )
    return samples


def main(argv: list[str]) -> None:
    """Run the soak with command-line options and print the sizes and the verdict."""
    parser = argparse.ArgumentParser(prog="python -m bench soak")
    parser.add_argument("--jobs", type=int, default=1_000_000)
    parser.add_argument("--retention", type=int, default=60, help="seconds (simulated)")
    parser.add_argument("--step", type=float, default=5.0, help="simulated seconds per round")
    parser.add_argument("--every", type=int, default=50_000)
    args = parser.parse_args(argv)
    with open(os.devnull, "w") as sink:
        configure_logging(file=sink)
        samples = asyncio.run(soak(args.jobs, args.retention, args.step, args.every))
    if len(samples) >= 4:
        quarter = samples[len(samples) // 4][1]
        print(f"last / first-quarter size: {samples[-1][1] / quarter:.2f}")
