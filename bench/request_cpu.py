"""``python -m bench requests``: the server's CPU per request, in process, without sockets.

``serve``'s stack as it runs (uvicorn's config and ``GuardedHttpToolsProtocol``,
the app with its hot path and guard, SQLite inline), fed raw request bytes through
``data_received`` by a transport that only collects the answer. No client, no
loopback, no scheduler between the two: what is left is the coordinator's own CPU
per request, which repeats within a few percent where the served benchmarks swing
by ±15 % on a noisy machine. Two workloads:

* ``enqueue``: ``POST /v1/jobs`` with the admin token, one job a request;
* ``batch``: ``POST /v1/jobs/batch`` of 1,000 jobs (figures are per job);
* ``cycle``: one agent of capacity 1 drains queued jobs with ``POST /v1/reports``,
  each request completing its job and claiming the next, as ``fleet-agent run
  --concurrency 1`` does;
* ``cycle10``: the same at capacity 10, each request completing ten jobs and
  claiming ten (figures are per job), the shape of a busy ``--concurrency 10`` agent.

For an A/B, run it alternately from two worktrees: it imports the packages of the
tree it is run from. Where the machine is too noisy even for this, count
instructions instead: ``valgrind --tool=callgrind python -m bench requests enqueue
--requests 1000 --reps 1`` and again with 2,000; the difference over 1,000 is the
instructions a request, the same to a few in a million run after run
(``PYTHONHASHSEED=0``; docs/benchmarks.md, "Tenth session"). For the cycle workloads
pass both runs the larger one's ``--queued`` (2,001 jobs a unit of capacity for
2,000 requests), or the difference also holds the enqueue of the extra jobs.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import orjson

from tests.support.raw_http import Collector, connect

__all__ = ["main"]

ROOT = Path(__file__).resolve().parent.parent
ADMIN = "bench-admin-token"
BATCH = 1000  # jobs a request of the ``batch`` workload, as ``make bench-peers`` sends
WIDTHS = {"cycle": 1, "cycle10": 10}  # an agent's capacity in each report-cycle workload


def _request(path: str, token: str, body: Any) -> bytes:
    raw = orjson.dumps(body)
    head = (
        f"POST {path} HTTP/1.1\r\nhost: 127.0.0.1\r\ncontent-type: application/json\r\n"
        f"authorization: Bearer {token}\r\ncontent-length: {len(raw)}\r\n\r\n"
    )
    return head.encode() + raw


async def _exchange(protocol: Any, collector: Collector, request: bytes) -> dict[str, Any]:
    # Collector.answer's steps inline: this harness's work is inside the CPU measured.
    collector.whole = asyncio.get_running_loop().create_future()
    protocol.data_received(request)
    answer = await collector.whole
    status = int(answer.split(b" ", 2)[1])
    body: dict[str, Any] = orjson.loads(answer.partition(b"\r\n\r\n")[2])
    if status >= 300:
        raise SystemExit(f"requests: {status} {body}")
    return body


async def _run(workload: str, count: int, workdir: Path, queued: int = 0) -> float:
    """CPU µs per request of ``count`` requests of ``workload``."""
    from fleet_coordinator import Settings, create_app
    from fleet_coordinator.cli import KEEP_ALIVE_SECONDS, http_protocol

    settings = Settings(
        store_url=f"sqlite:///{workdir}/requests-{time.monotonic_ns()}.db",
        admin_token=ADMIN,
        reaper_enabled=False,
    )
    app = create_app(settings, tune_gc=True)
    async with app.router.lifespan_context(app):
        protocol, collector = connect(
            app, http_protocol(settings), timeout_keep_alive=KEEP_ALIVE_SECONDS
        )
        width = WIDTHS.get(workload, 1)
        admin = _request("/v1/agents", ADMIN, {"name": "bench", "capacity": width})
        token = (await _exchange(protocol, collector, admin))["token"]
        leases: list[dict[str, Any]] = []
        if workload in WIDTHS:
            total = max(queued, (count + 1) * width)
            for start in range(0, total, 1000):
                jobs = [{"kind": "noop"}] * min(1000, total - start)
                await _exchange(
                    protocol, collector, _request("/v1/jobs/batch", ADMIN, {"jobs": jobs})
                )
            claim = await _exchange(
                protocol, collector, _request("/v1/claims", token, {"max_jobs": width})
            )
            leases = claim["leases"]
        batch = _request("/v1/jobs/batch", ADMIN, {"jobs": [{"kind": "noop"}] * BATCH})
        began = time.process_time()
        for _ in range(count):
            if workload == "batch":
                await _exchange(protocol, collector, batch)
                continue
            if workload == "enqueue":
                await _exchange(protocol, collector, _request("/v1/jobs", ADMIN, {"kind": "noop"}))
                continue
            items = [
                {"job_id": held["job"]["id"], "epoch": held["lease"]["epoch"], "action": "complete"}
                for held in leases
            ]
            body = {"items": items, "claim": {"max_jobs": width}}
            answer = await _exchange(protocol, collector, _request("/v1/reports", token, body))
            leases = answer["leases"]
            if len(leases) != width:
                raise SystemExit(f"requests: {len(leases)} leases granted, not {width}")
        spent = time.process_time() - began
        protocol.connection_lost(None)
    return spent / count / (BATCH if workload == "batch" else width) * 1e6


def main(args: list[str]) -> None:
    """Print the CPU per request of each rep and their median."""
    parser = argparse.ArgumentParser(prog="python -m bench requests")
    parser.add_argument("workload", choices=("enqueue", "batch", *WIDTHS))
    parser.add_argument("--requests", type=int, default=4000)
    parser.add_argument("--reps", type=int, default=3)
    parser.add_argument(
        "--queued",
        type=int,
        default=0,
        help="jobs to queue before a cycle workload (default: as many as it drains); give "
        "the larger run's figure to both runs of an instruction count, so that the "
        "difference holds no enqueue",
    )
    opts = parser.parse_args(args)
    for source in ("packages/datastore/src", "services/coordinator/src"):
        sys.path.insert(0, str(ROOT / source))
    from fleet_coordinator.logs import configure_logging

    unit = "request" if opts.workload in ("enqueue", "cycle") else "job"
    runs = []
    with open(os.devnull, "w") as sink, tempfile.TemporaryDirectory() as tmp:
        configure_logging(file=sink)  # the coordinator logs every job: not into the numbers
        for rep in range(opts.reps):
            import uvloop

            runs.append(uvloop.run(_run(opts.workload, opts.requests, Path(tmp), opts.queued)))
            print(f"rep {rep + 1} {opts.workload} {runs[-1]:.1f} µs CPU/{unit} ({ROOT.name})")
    print(f"median {statistics.median(runs):.1f} µs CPU/{unit}")
