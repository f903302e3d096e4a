"""This coordinator: the no-op handler for ``fleet-agent run --handlers fleet_app:HANDLERS``,
and a producer through the project's own ``SyncFleetClient`` (runs in the project's
environment), as RQ's goes through redis-py and Celery's through kombu."""

from __future__ import annotations

from typing import TYPE_CHECKING

from common import record_done
from fleet_agent import Job

if TYPE_CHECKING:
    from fleet_client import SyncFleetClient

KIND = "noop"


async def noop(job: Job) -> None:
    """Record the job's id; nothing else."""
    record_done(job.id)


HANDLERS = {KIND: noop}


class FleetBackend:
    """``enqueue``, ``enqueue_batch`` and ``list_queues`` of one ``SyncFleetClient``."""

    packages = ("fleet-coordinator", "fleet-agent", "fleet-client")

    def __init__(self) -> None:
        # Imported here, in the producer only: the agents import this module for its
        # handler, and a handler module has no use for the producer's client (its
        # import, httpx and models, cost each agent process 0.15 s of CPU at start).
        from fleet_client import SyncFleetClient

        self.fleet: SyncFleetClient = SyncFleetClient.from_env()  # $FLEET_URL, $FLEET_ADMIN_TOKEN

    def setup(self) -> None:
        """Nothing: the coordinator creates its store on start."""

    def reset(self) -> None:
        """Nothing: the bench starts a fresh coordinator for every trial."""

    def enqueue_one(self) -> str:
        """``POST /v1/jobs``."""
        return self.fleet.enqueue(KIND).id

    def enqueue_batch(self, count: int) -> list[str]:
        """``POST /v1/jobs/batch``."""
        return [job.id for job in self.fleet.enqueue_batch([{"kind": KIND}] * count)]

    def finished(self) -> tuple[int, int]:
        """Summed over ``GET /v1/queues``."""
        queues = self.fleet.list_queues()
        return sum(q.succeeded for q in queues), sum(q.failed for q in queues)


def backend() -> FleetBackend:
    """The driver's producer and poll."""
    return FleetBackend()
