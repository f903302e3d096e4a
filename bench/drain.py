"""``python -m bench drain``: a drain by ``fleet_agent.Worker``s, server CPU per job, A/B.

The protocol of issue 11's drain, scaled down: N no-op jobs are queued (batch
enqueue, not measured), then W agents (``Worker``, ``concurrency`` C, in this
process) drain them from a coordinator served on 127.0.0.1 over SQLite. Per run:
drain jobs/s (first claim → last completion seen by the workers) and the
coordinator process's CPU (user + system, from ``/proc``) per job during the
drain. Variants run alternately, one after the other, ``--reps`` times; the
medians and the ratio to the first variant are printed.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import signal
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx
import structlog
from fleet_agent import AgentClient, Job, Worker

from tests.support.served import Served

__all__ = ["main"]

ADMIN = "bench-admin-token"
ROOT = Path(__file__).resolve().parents[1]
VARIANTS: dict[str, dict[str, Any]] = {
    "batched": {"batch": True, "hot": True},
    "single": {"batch": False, "hot": True},
    "batched-no-hot-path": {"batch": True, "hot": False},
    # SQLite A/Bs of the batched drain (bench/drain_server.py reads the knobs)
    "sqlite-before": {  # worker threads only, 4096-byte pages: the provider before inline
        "batch": True,
        "hot": True,
        "env": {"BENCH_SQLITE_INLINE": "0", "BENCH_SQLITE_PAGE_SIZE": "4096"},
    },
    "sqlite-threads": {"batch": True, "hot": True, "env": {"BENCH_SQLITE_INLINE": "0"}},
    "sqlite-inline": {"batch": True, "hot": True, "env": {"BENCH_SQLITE_INLINE": "1"}},
    "page-1024": {"batch": True, "hot": True, "env": {"BENCH_SQLITE_PAGE_SIZE": "1024"}},
    "page-2048": {"batch": True, "hot": True, "env": {"BENCH_SQLITE_PAGE_SIZE": "2048"}},
    "page-4096": {"batch": True, "hot": True, "env": {"BENCH_SQLITE_PAGE_SIZE": "4096"}},
    "candidates-2": {"batch": True, "hot": True, "env": {"BENCH_CLAIM_CANDIDATES": "2"}},
}
"""The first three by default (``--variants`` picks others)."""
DEFAULT_VARIANTS = ("batched", "single", "batched-no-hot-path")


class _Server(Served):
    def command(self) -> list[str]:
        return [sys.executable, "-m", "bench.drain_server", "--host", "127.0.0.1"]


def _cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


async def _noop(job: Job) -> None:
    return None


async def _drain(
    url: str, pid: int, jobs: int, agents: int, concurrency: int, batch: bool
) -> tuple[float, float, float]:
    """Queue ``jobs``, drain them; jobs/s, the server's and the agents' CPU ms per job."""
    admin = {"Authorization": f"Bearer {ADMIN}"}
    async with httpx.AsyncClient(base_url=url, headers=admin, timeout=60) as http:
        tokens = []
        for i in range(agents):
            r = await http.post("/v1/agents", json={"name": f"d{i}", "capacity": concurrency})
            tokens.append(r.json()["token"])
        for start in range(0, jobs, 1000):
            body = {"jobs": [{"kind": "noop"} for _ in range(min(1000, jobs - start))]}
            assert (await http.post("/v1/jobs/batch", json=body)).status_code == 201
    clients = [AgentClient(url, token) for token in tokens]
    workers = [
        Worker(c, {"noop": _noop}, concurrency=concurrency, wait_seconds=1, batch_reports=batch)
        for c in clients
    ]
    cpu_before = _cpu_seconds(pid)
    agents_before = time.process_time()
    began = time.perf_counter()
    tasks = [asyncio.create_task(w.run()) for w in workers]
    while sum(w.stats["succeeded"] for w in workers) < jobs:  # noqa: ASYNC110
        await asyncio.sleep(0.01)  # the workers expose counters, not events: poll them
    elapsed = time.perf_counter() - began
    cpu = _cpu_seconds(pid) - cpu_before
    agent_cpu = time.process_time() - agents_before
    if os.environ.get("BENCH_PROFILE"):
        os.kill(pid, signal.SIGUSR1)
    for w in workers:
        w.stop()
    await asyncio.gather(*tasks)
    for c in clients:
        await c.aclose()
    return jobs / elapsed, cpu / jobs * 1000, agent_cpu / jobs * 1000


def _run(
    variant: str, jobs: int, agents: int, concurrency: int, workdir: Path
) -> tuple[float, float, float]:
    spec = VARIANTS[variant]
    env = {"BENCH_HOT_PATH": "1" if spec["hot"] else "0", "PYTHONPATH": str(ROOT)}
    env.update(spec.get("env", {}))
    if os.environ.get("BENCH_PROFILE"):
        env["BENCH_PROFILE"] = os.environ["BENCH_PROFILE"]
    store = f"sqlite:///{workdir}/{variant}-{time.monotonic_ns()}.db"
    server = _Server(cwd=workdir, store_url=store, env=env, admin_token=ADMIN, log_name="/dev/null")
    with server:
        assert server.process is not None
        pid = server.process.pid
        drain = _drain(server.base_url, pid, jobs, agents, concurrency, spec["batch"])
        if os.environ.get("BENCH_AGENT_UVLOOP") == "1":
            import uvloop

            return uvloop.run(drain)
        return asyncio.run(drain)


def main(args: list[str]) -> None:
    """Run the variants alternately and print medians and ratios."""
    parser = argparse.ArgumentParser(prog="python -m bench drain")
    parser.add_argument("--jobs", type=int, default=3000)
    parser.add_argument("--agents", type=int, default=2)
    parser.add_argument("--concurrency", type=int, default=10)
    parser.add_argument("--reps", type=int, default=3)
    parser.add_argument("--variants", default=",".join(DEFAULT_VARIANTS))
    opts = parser.parse_args(args)
    variants = opts.variants.split(",")
    if os.environ.get("BENCH_AGENT_LOGS") == "1":
        # the agents log as ``fleet-agent run`` does (JSON lines at info), into /dev/null
        from fleet_agent.cli import _configure_logging

        sys.stderr = open(os.devnull, "w")  # noqa: SIM115 - for the whole run
        _configure_logging(20)
    else:  # the workers log every job; the benchmark reads their counters instead
        structlog.configure(wrapper_class=structlog.make_filtering_bound_logger(40))
    results: dict[str, list[tuple[float, float, float]]] = {v: [] for v in variants}
    with tempfile.TemporaryDirectory() as tmp:
        for rep in range(opts.reps):
            for variant in variants:
                rate, cpu, acpu = _run(variant, opts.jobs, opts.agents, opts.concurrency, Path(tmp))
                results[variant].append((rate, cpu, acpu))
                print(
                    f"rep {rep + 1} {variant:<22} drain {rate:7.0f} jobs/s  "
                    f"server CPU {cpu:.3f} ms/job  agents' CPU {acpu:.3f} ms/job",
                    flush=True,
                )
    base = variants[0]
    base_rate = statistics.median(r for r, _, _ in results[base])
    base_cpu = statistics.median(c for _, c, _ in results[base])
    base_acpu = statistics.median(a for _, _, a in results[base])
    print(f"\nW={opts.agents} C={opts.concurrency} N={opts.jobs}, medians of {opts.reps}:")
    for variant in variants:
        rate = statistics.median(r for r, _, _ in results[variant])
        cpu = statistics.median(c for _, c, _ in results[variant])
        acpu = statistics.median(a for _, _, a in results[variant])
        print(
            f"  {variant:<22} {rate:7.0f} jobs/s ({rate / base_rate:.2f}x)  "
            f"server {cpu:.3f} ms CPU/job ({cpu / base_cpu:.2f}x)  "
            f"agents {acpu:.3f} ms CPU/job ({acpu / base_acpu:.2f}x)"
        )
