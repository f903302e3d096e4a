"""``python -m tests.stress`` (``make stress``): the long stress run, with progress lines.

Runs the recorded-history workload against 3 real replicas over SQLite (or the
local Cosmos-protocol server) with chaos, until ``--claims`` acknowledged claims
were checked or ``--duration`` seconds passed, then prints a summary and exits
non-zero on any violation.
"""

from __future__ import annotations

import argparse
import asyncio
import signal
import sys
import tempfile
import time
from collections.abc import Coroutine
from pathlib import Path
from typing import Any

from .harness import STORES, Chaos, stress
from .workload import Plan, Stats


async def _until_signalled(run: Coroutine[Any, Any, Stats]) -> Stats:
    """Run, but on SIGINT or SIGTERM cancel it so every replica it started is stopped."""
    task = asyncio.ensure_future(run)
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, task.cancel)
    return await task


def main(argv: list[str] | None = None) -> int:
    """Parse the command line, run, print the summary; 1 on any violation."""
    parser = argparse.ArgumentParser(prog="python -m tests.stress", description=__doc__)
    parser.add_argument("--duration", type=float, default=43_200.0, help="seconds (max)")
    parser.add_argument("--claims", type=int, default=1_000_000, help="claims to check (max)")
    parser.add_argument("--store", choices=STORES, default="sqlite")
    parser.add_argument("--replicas", type=int, default=3)
    parser.add_argument("--agents", type=int, default=32)
    parser.add_argument("--jobs-per-round", type=int, default=2_000)
    parser.add_argument("--lease", type=float, default=2.0, help="lease seconds")
    parser.add_argument("--kill-every", type=float, default=3.0, help="seconds; 0: no chaos")
    parser.add_argument("--progress-every", type=float, default=10.0, help="seconds")
    parser.add_argument("--seed", type=int, default=1)
    args = parser.parse_args(argv)
    chaos = Chaos(every=args.kill_every, seed=args.seed) if args.kill_every > 0 else None
    plan = Plan(
        agents=args.agents,
        lease_seconds=args.lease,
        jobs_per_round=args.jobs_per_round,
        duration=args.duration,
        max_claims=args.claims,
        drain_bound=120.0,
        strict=chaos is None,
        seed=args.seed,
    )

    def progress(stats: Stats) -> None:
        print(stats.line(), flush=True)

    print(
        f"stress: store={args.store} replicas={args.replicas} agents={args.agents} "
        f"lease={args.lease}s kill_every={args.kill_every}s "
        f"until {args.claims} claims or {args.duration:.0f}s",
        flush=True,
    )
    began = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="fleet-stress-") as tmp:
        run = stress(
            args.store,
            Path(tmp),
            plan,
            replica_count=args.replicas,
            chaos=chaos,
            progress=progress,
            every=args.progress_every,
            keep_logs=False,
        )
        try:
            stats = asyncio.run(_until_signalled(run))
        except asyncio.CancelledError:
            print("stress: interrupted; every replica was stopped", flush=True)
            return 130
    took = time.monotonic() - began
    print(stats.line(), flush=True)
    print(
        f"summary: store={args.store} replicas={args.replicas} duration={took:.0f}s "
        f"claims_checked={stats.claims_checked} ({stats.claims_checked / took:.0f}/s) "
        f"jobs={stats.jobs_checked} rounds={stats.rounds} writes_acked={stats.writes_acked} "
        f"replicas_killed={stats.replicas_killed} agents_killed={stats.agents_killed} "
        f"in_doubt={stats.in_doubt} drain_after_chaos={stats.drain_seconds:.1f}s "
        f"violations={len(stats.violations)}",
        flush=True,
    )
    for violation in stats.violations[:50]:
        print(f"violation: {violation}", flush=True)
    return 1 if stats.violations else 0


if __name__ == "__main__":
    sys.exit(main())
