"""The protocol, the same for every system.

A trial: an empty system; one producer enqueues N no-op jobs one call per job
(jobs/s); a poller in the system's own environment starts and says ready; W
workers are launched and the clock starts; it stops when the system itself reports
all N finished. Machine CPU (``/proc/stat``) and the servers' CPU
(``/proc/<pid>/stat``) are read at both ends. Then the workers are stopped and
the ids the job bodies appended are counted. A batch trial enqueues N with the
system's batch API and only times that.
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Sequence
from dataclasses import dataclass

from .context import INSIDE, Bench
from .cpu import CpuSnapshot, tree_cpu_seconds
from .ids import IdCount, count_ids
from .progress import say
from .system import System

__all__ = ["DrainTrial", "batch_trial", "drain_trial", "median"]


@dataclass(frozen=True)
class DrainTrial:
    """One trial's figures; ``drain_jps`` is None when the system did not finish in time."""

    enqueue_jps: float
    drain_jps: float | None
    busy: float
    server_ms_per_job: float
    worker_ms_per_job: float
    failed: int
    """Jobs the system itself reports failed (a job body that raised)."""
    ids: IdCount


def _timeout(jobs: int) -> float:
    return 60.0 + jobs / 50


def batch_trial(bench: Bench, system: System, jobs: int, name: str) -> float:
    """Jobs/s enqueued with the system's batch API (batches of 1,000)."""
    system.fresh()
    folder = bench.trial_dir(name)
    answer = system.driver().call("enqueue", "batch", str(jobs), str(folder / "enqueued.txt"))
    return float(answer["count"]) / float(answer["seconds"])


def drain_trial(bench: Bench, system: System, jobs: int, workers: int, name: str) -> DrainTrial:
    """Enqueue ``jobs`` one call per job, then time ``workers`` draining them."""
    system.fresh()
    folder = bench.trial_dir(name)
    enqueued, done = folder / "enqueued.txt", folder / "done.txt"
    driver = system.driver()
    answer = driver.call("enqueue", "single", str(jobs), str(enqueued), timeout=_timeout(jobs))
    enqueue_jps = float(answer["count"]) / float(answer["seconds"])
    say(f"  enqueued {jobs:,} one call per job: {enqueue_jps:,.0f} jobs/s")

    poller = bench.processes.spawn(
        driver.argv("wait", str(jobs), str(_timeout(jobs))),
        env=driver.environ(),
        cwd=INSIDE,
        log=folder / "poller.log",
        stdout_pipe=True,
    )
    assert poller.stdout is not None
    if poller.stdout.readline().strip() != b"ready":
        raise RuntimeError(f"the poller did not start; see {folder / 'poller.log'}")
    commands = system.workers(workers)
    servers = system.server_pids()
    before = CpuSnapshot.take(servers)
    launched = time.monotonic()
    running = [
        bench.processes.spawn(
            command.argv,
            env={
                **os.environ,
                **command.env,
                "PEERS_DONE_FILE": str(done),
                "PYTHONPATH": str(INSIDE),
            },
            cwd=INSIDE,
            log=folder / f"worker-{index}.log",
        )
        for index, command in enumerate(commands)
    ]
    try:
        line = poller.stdout.readline()
        after = CpuSnapshot.take(servers)
        worker_seconds = tree_cpu_seconds(p.pid for p in running)
    finally:
        bench.processes.stop_many(running)
        bench.processes.stop(poller)
    result = json.loads(line) if line.strip() else {"timed_out": True}
    drain_jps = None
    if not result["timed_out"]:
        drain_jps = jobs / (float(result["done_at"]) - launched)
    return DrainTrial(
        enqueue_jps=enqueue_jps,
        drain_jps=drain_jps,
        busy=after.busy_share_since(before),
        server_ms_per_job=(after.server_seconds - before.server_seconds) * 1000 / jobs,
        worker_ms_per_job=worker_seconds * 1000 / jobs,
        failed=int(result.get("failed", 0)),
        ids=count_ids(enqueued, done),
    )


def median(values: Sequence[float]) -> float | None:
    """The median, or None for no values."""
    ordered = sorted(values)
    if not ordered:
        return None
    mid = len(ordered) // 2
    return ordered[mid] if len(ordered) % 2 else (ordered[mid - 1] + ordered[mid]) / 2
