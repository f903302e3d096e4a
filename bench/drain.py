"""``python -m bench drain``: a drain by ``fleet_agent.Worker``s, server CPU per job, A/B.

The protocol of issue 11's drain, scaled down: N no-op jobs are queued (batch
enqueue, not measured), then W agents (``Worker``, ``concurrency`` C, in this
process) drain them from a coordinator served on 127.0.0.1 over SQLite. Per run:
drain jobs/s (first claim → last completion seen by the workers) and the
coordinator process's CPU (user + system, from ``/proc``) per job during the
drain. Variants run alternately, one after the other, ``--reps`` times; the
medians and the ratio to the first variant are printed.

``--processes`` runs each agent as ``fleet-agent run`` in its own process instead,
with the peer benchmark's no-op handler (``bench/peers/inside/fleet_app.py``): the
drain ends when the handlers have recorded N ids, and the agents' CPU is read from
``/proc`` like the server's. That is the layout ``make bench-peers`` times, where
the server shares the cores with W interpreters instead of one; its server CPU per
job is higher than with the workers in this process.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx
import structlog
from fleet_agent import AgentClient, Job, Worker

from tests.support.served import Served, tool_path

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


async def _prepare(url: str, jobs: int, agents: int, concurrency: int) -> list[str]:
    """Register the agents and queue ``jobs`` (untimed); the agents' tokens."""
    admin = {"Authorization": f"Bearer {ADMIN}"}
    async with httpx.AsyncClient(base_url=url, headers=admin, timeout=60) as http:
        tokens = []
        for i in range(agents):
            r = await http.post("/v1/agents", json={"name": f"d{i}", "capacity": concurrency})
            tokens.append(r.json()["token"])
        for start in range(0, jobs, 1000):
            body = {"jobs": [{"kind": "noop"} for _ in range(min(1000, jobs - start))]}
            assert (await http.post("/v1/jobs/batch", json=body)).status_code == 201
    return tokens


async def _drain(
    url: str, pid: int, jobs: int, agents: int, concurrency: int, batch: bool
) -> tuple[float, float, float]:
    """Queue ``jobs``, drain them; jobs/s, the server's and the agents' CPU ms per job."""
    tokens = await _prepare(url, jobs, agents, concurrency)
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


def _lines(path: Path) -> int:
    try:
        with path.open("rb") as file:
            return sum(1 for _ in file)
    except FileNotFoundError:
        return 0


def _drain_processes(
    url: str, pid: int, jobs: int, agents: int, concurrency: int, workdir: Path
) -> tuple[float, float, float]:
    """As ``_drain``, with each agent a ``fleet-agent run`` process (``--processes``)."""
    tokens = asyncio.run(_prepare(url, jobs, agents, concurrency))
    done = workdir / f"done-{time.monotonic_ns()}.txt"
    env = {k: v for k, v in os.environ.items() if not k.startswith("FLEET_")}
    env.update(PYTHONPATH=str(ROOT / "bench" / "peers" / "inside"), PEERS_DONE_FILE=str(done))
    argv = [tool_path("fleet-agent"), "run", "--url", url, "--concurrency", str(concurrency)]
    argv += ["--handlers", "fleet_app:HANDLERS"]
    cpu_before = _cpu_seconds(pid)
    began = time.perf_counter()
    procs = [
        subprocess.Popen(
            argv,
            env={**env, "FLEET_AGENT_TOKEN": token},
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        for token in tokens
    ]
    agent_cpu: dict[int, float] = {}
    try:
        while _lines(done) < jobs:
            for proc in procs:  # read while they run: an exited process has no /proc entry
                agent_cpu[proc.pid] = _cpu_seconds(proc.pid)
            if any(proc.poll() is not None for proc in procs):
                raise SystemExit("drain: an agent exited before the drain ended")
            time.sleep(0.02)  # the agents are other processes: poll their done file
        elapsed = time.perf_counter() - began
        cpu = _cpu_seconds(pid) - cpu_before
    finally:
        for proc in procs:
            proc.terminate()
        for proc in procs:
            proc.wait()
    return jobs / elapsed, cpu / jobs * 1000, sum(agent_cpu.values()) / jobs * 1000


def _run(
    variant: str, jobs: int, agents: int, concurrency: int, workdir: Path, processes: bool = False
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
        if processes:
            if not spec["batch"]:
                raise SystemExit(
                    f"drain: --processes runs `fleet-agent run` at its defaults, not {variant}"
                )
            return _drain_processes(server.base_url, pid, jobs, agents, concurrency, workdir)
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
    parser.add_argument(
        "--processes", action="store_true", help="agents as `fleet-agent run` processes"
    )
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
                rate, cpu, acpu = _run(
                    variant, opts.jobs, opts.agents, opts.concurrency, Path(tmp), opts.processes
                )
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
