"""``python -m bench claim-loop``: CPU per job of the claim and its completions, no HTTP.

One coordinator on a fresh SQLite file, one agent of capacity ``--concurrency``;
``--jobs`` queued with batch enqueues, then drained by ``claim_jobs`` for the free
slots and the completions gathered, as a batched report applies them. Prints the
process CPU per drained job. Identical code repeats within about 1 % here, so a
change of 2 % in the service layer shows, which the HTTP drain (``bench drain``,
±7 %) cannot. For an A/B, run it alternately from two worktrees: it imports the
packages of the tree it is run from.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
import tempfile
import time
from pathlib import Path

__all__ = ["main"]

ROOT = Path(__file__).resolve().parent.parent
SOURCES = ("packages/datastore/src", "packages/wire/src", "services/coordinator/src")


async def _drain(jobs: int, concurrency: int) -> float:
    """CPU µs per job of claiming and completing ``jobs`` jobs."""
    from fleet_coordinator import Settings, create_app
    from fleet_coordinator.services import (
        NewJob,
        claim_jobs,
        complete_job,
        create_agent,
        enqueue_batch,
        read_agent,
    )

    with tempfile.TemporaryDirectory() as tmp:
        settings = Settings(
            store_url=f"sqlite:///{tmp}/bench.db", admin_token="bench", reaper_enabled=False
        )
        app = create_app(settings, tune_gc=True)
        async with app.router.lifespan_context(app):
            co = app.state.coordinator
            body, _ = await create_agent(
                co, name="bench", labels={}, capacity=concurrency, queues=[]
            )
            for start in range(0, jobs, 1000):
                size = min(1000, jobs - start)
                await enqueue_batch(co, [NewJob(kind="k", payload={}) for _ in range(size)])
            began, done = time.process_time(), 0
            while done < jobs:
                agent = await read_agent(co, body.id)
                assert agent is not None
                leased = await claim_jobs(co, agent, None, concurrency)
                if not leased:
                    break
                await asyncio.gather(
                    *(complete_job(co, agent.id, j.id, j.epoch, None) for j in leased)
                )
                done += len(leased)
            return (time.process_time() - began) / max(done, 1) * 1e6


def main(args: list[str]) -> None:
    """Run it ``--reps`` times and print each figure."""
    parser = argparse.ArgumentParser(prog="python -m bench claim-loop")
    parser.add_argument("--jobs", type=int, default=6000)
    parser.add_argument("--concurrency", type=int, default=10)
    parser.add_argument("--reps", type=int, default=1)
    parsed = parser.parse_args(args)
    import fleet_coordinator

    if not Path(fleet_coordinator.__file__ or "").is_relative_to(ROOT):
        # Another tree's packages are installed (an A/B from a second worktree): run
        # again, once, with this tree's sources first on the path.
        if os.environ.get("BENCH_CLAIM_LOOP_TREE") == str(ROOT):
            raise SystemExit(f"fleet_coordinator is not imported from {ROOT}")
        path = os.pathsep.join([str(ROOT), *(str(ROOT / s) for s in SOURCES)])
        env = {**os.environ, "PYTHONPATH": path, "BENCH_CLAIM_LOOP_TREE": str(ROOT)}
        os.execve(sys.executable, [sys.executable, "-m", "bench.claim_loop", *args], env)
    from fleet_coordinator.logs import configure_logging

    with open(os.devnull, "w") as sink:
        configure_logging(file=sink)  # as `serve` logs, to nowhere
        for rep in range(parsed.reps):
            cpu = asyncio.run(_drain(parsed.jobs, parsed.concurrency))
            print(f"rep {rep + 1} claim+complete {cpu:.1f} µs CPU/job ({ROOT.name})", flush=True)


if __name__ == "__main__":
    main(sys.argv[1:])
