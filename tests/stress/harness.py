"""Real coordinator replicas for the stress workload, and the chaos that kills them.

``replicas(...)`` starts ``count`` ``fleet-coordinator serve`` processes on
127.0.0.1 over one SQLite file or one Cosmos-protocol server (started here too)
and stops every one of them on exit, even when the run fails. ``stress(...)``
runs the workload against them, optionally while ``Chaos`` SIGKILLs and
restarts a random replica or cancels a random agent every few seconds. The
bounded tests and ``python -m tests.stress`` (``make stress``) both call it.
"""

from __future__ import annotations

import asyncio
import itertools
import random
from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from pathlib import Path

from tests.support.cosmos_local import local_cosmos
from tests.support.served import Served

from .workload import Plan, Stats, Workload

__all__ = ["Chaos", "replica_env", "replicas", "stress"]

STORES = ("sqlite", "cosmos")


def replica_env(lease_seconds: float, reaper_interval: float) -> dict[str, str]:
    """Settings that make leases short and the reaper quick."""
    return {
        "FLEET_DEFAULT_LEASE_SECONDS": str(lease_seconds),
        "FLEET_REAPER_INTERVAL_SECONDS": str(reaper_interval),
        "FLEET_LONG_POLL_INTERVAL_SECONDS": "0.1",
    }


@contextmanager
def replicas(
    store: str,
    workdir: Path,
    count: int = 3,
    env: dict[str, str] | None = None,
    *,
    keep_logs: bool = True,
) -> Iterator[list[Served]]:
    """``count`` replicas over one ``store`` (``sqlite`` or ``cosmos``); all stopped on exit."""
    if store not in STORES:
        raise ValueError(f"store must be one of {STORES}, not {store!r}")
    with ExitStack() as stack:
        settings = dict(env or {})
        if store == "sqlite":
            url = f"sqlite:///{workdir}/stress.db"
        else:
            server = stack.enter_context(local_cosmos())
            cfg = server.config(database="stress")
            url = "cosmos://"
            settings.update(
                FLEET_COSMOS_ENDPOINT=cfg.endpoint,
                FLEET_COSMOS_KEY=cfg.key,
                FLEET_COSMOS_DATABASE=cfg.database,
            )
        started = []
        for index in range(count):
            log = f"replica-{index}.log" if keep_logs else "/dev/null"
            replica = Served(cwd=workdir, store_url=url, env=settings, log_name=log)
            stack.callback(replica.stop)  # registered first: a start that fails is stopped too
            started.append(replica.start())
        yield started


@dataclass
class Chaos:
    """Every ``every`` seconds (±50 %), alternately cancel an agent or SIGKILL a replica.

    A killed replica is restarted at once (on the same port and store); a cancelled
    agent dies mid-request with its leases, and a newly registered agent replaces it;
    every other cancelled agent is also deleted through the admin API.
    """

    every: float = 3.0
    seed: int = 7

    async def run(self, servers: list[Served], work: Workload) -> None:
        """Kill until the workload stops enqueuing; returns with every replica running."""
        rng = random.Random(self.seed)
        for kill in itertools.count():
            pause = rng.uniform(0.5 * self.every, 1.5 * self.every)
            try:
                await asyncio.wait_for(work.enqueue_stopped.wait(), pause)
                return
            except TimeoutError:
                pass
            if kill % 2 == 0:
                # Half the dead agents are also deleted: their leases end by the delete
                # (or the next reaper tick, when the delete is cut short by a kill).
                work.kill_agent(delete=kill % 4 == 0)
                continue
            victim = rng.choice(servers)
            victim.kill()
            work.stats.replicas_killed += 1
            # start() blocks while the process comes up; the other replicas serve meanwhile.
            await asyncio.to_thread(victim.start)


async def stress(
    store: str,
    workdir: Path,
    plan: Plan,
    *,
    replica_count: int = 3,
    chaos: Chaos | None = None,
    reaper_interval: float = 0.2,
    progress: Callable[[Stats], None] | None = None,
    every: float = 10.0,
    keep_logs: bool = True,
) -> Stats:
    """Run ``plan`` against fresh replicas over ``store``, with ``chaos`` if given."""
    env = replica_env(plan.lease_seconds, reaper_interval)
    with replicas(store, workdir, replica_count, env, keep_logs=keep_logs) as servers:
        urls = [s.base_url for s in servers]
        async with Workload(urls, servers[0].admin_token, plan) as work:
            killer = asyncio.create_task(chaos.run(servers, work)) if chaos else None
            try:
                stats = await work.run(progress, every)
            finally:
                if killer is not None:
                    work.stop_enqueue()
                    await killer
        return stats
