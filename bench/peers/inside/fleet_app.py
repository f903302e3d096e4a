"""This coordinator: the no-op handler for ``fleet-agent run --handlers fleet_app:HANDLERS``,
and a producer over the REST API with httpx (runs in the project's environment)."""

from __future__ import annotations

import os
from typing import Any

import httpx
from common import record_done
from fleet_agent import Job

KIND = "noop"


async def noop(job: Job) -> None:
    """Record the job's id; nothing else."""
    record_done(job.id)


HANDLERS = {KIND: noop}


class FleetBackend:
    """``POST /v1/jobs``, ``POST /v1/jobs/batch`` and ``GET /v1/queues`` with one httpx client."""

    packages = ("fleet-coordinator", "fleet-agent", "httpx")

    def __init__(self) -> None:
        token = os.environ["FLEET_ADMIN_TOKEN"]
        self.http = httpx.Client(
            base_url=os.environ["FLEET_URL"], headers={"Authorization": f"Bearer {token}"}
        )

    def setup(self) -> None:
        """Nothing: the coordinator creates its store on start."""

    def reset(self) -> None:
        """Nothing: the bench starts a fresh coordinator for every trial."""

    def enqueue_one(self) -> str:
        """``POST /v1/jobs``."""
        answer = self.http.post("/v1/jobs", json={"kind": KIND})
        answer.raise_for_status()
        return str(answer.json()["id"])

    def enqueue_batch(self, count: int) -> list[str]:
        """``POST /v1/jobs/batch``."""
        answer = self.http.post("/v1/jobs/batch", json={"jobs": [{"kind": KIND}] * count})
        answer.raise_for_status()
        items: list[dict[str, Any]] = answer.json()["items"]
        return [str(item["id"]) for item in items]

    def finished(self) -> tuple[int, int]:
        """Summed over ``GET /v1/queues``."""
        answer = self.http.get("/v1/queues")
        answer.raise_for_status()
        items = answer.json()["items"]
        return sum(q["succeeded"] for q in items), sum(q["failed"] for q in items)


def backend() -> FleetBackend:
    """The driver's producer and poll."""
    return FleetBackend()
