"""``SyncFleetClient``: ``FleetClient`` for code without an event loop.

It runs one ``FleetClient`` on an event loop in a background thread (an anyio
blocking portal) and waits for each call, so both clients share one
implementation of every request, retry and error; this class only blocks.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping, Sequence
from contextlib import ExitStack
from types import TracebackType
from typing import Any, Unpack

from anyio.from_thread import start_blocking_portal

from .client import FleetClient, env_settings
from .models import (
    Agent,
    AgentCreated,
    Job,
    JobDetail,
    JobOptions,
    JobPage,
    JobSpec,
    QueueStats,
    Schedule,
)

__all__ = ["SyncFleetClient"]


class SyncFleetClient:
    """A blocking admin client; use as ``with SyncFleetClient(url, token) as fleet``."""

    def __init__(self, base_url: str, token: str, **options: Any) -> None:
        self._stack = ExitStack()
        self._portal = self._stack.enter_context(start_blocking_portal())
        self._client = FleetClient(base_url, token, **options)
        self.base_url = self._client.base_url

    @classmethod
    def from_env(cls, **options: Any) -> SyncFleetClient:
        """A client of ``$FLEET_URL`` (or ``DEFAULT_URL``) with ``$FLEET_ADMIN_TOKEN``."""
        url, token = env_settings()
        return cls(url, token, **options)

    def __enter__(self) -> SyncFleetClient:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def close(self) -> None:
        """Close the connection pool and stop the background loop."""
        try:
            self._portal.call(self._client.aclose)
        finally:
            self._stack.close()

    def enqueue(
        self, kind: str, payload: Mapping[str, Any] | None = None, **options: Unpack[JobOptions]
    ) -> Job:
        """Enqueue one job; with an ``idempotency_key`` a repeat returns the same job."""
        return self.enqueue_spec(JobSpec(kind=kind, payload=dict(payload or {}), **options))

    def enqueue_spec(self, job: JobSpec | Mapping[str, Any]) -> Job:
        """Enqueue one job described by a ``JobSpec`` (or its JSON fields)."""
        return self._portal.call(lambda: self._client.enqueue_spec(job))

    def enqueue_batch(self, jobs: Sequence[JobSpec | Mapping[str, Any]]) -> list[Job]:
        """Enqueue 1..1000 jobs in one request, all or nothing."""
        return self._portal.call(self._client.enqueue_batch, jobs)

    def enqueue_many(self, jobs: Iterable[JobSpec | Mapping[str, Any]]) -> list[Job]:
        """Enqueue any number of jobs, 1,000 per request (each request all or nothing)."""
        return self._portal.call(self._client.enqueue_many, jobs)

    def get_job(self, job_id: str) -> JobDetail:
        """One job with its runs; ``NotFound`` if there is none."""
        return self._portal.call(self._client.get_job, job_id)

    def list_jobs_page(self, **filters: Any) -> JobPage:
        """One page of jobs (``queue``, ``status``, ``kind``, ``lock``, ``limit``, ``cursor``)."""
        return self._portal.call(lambda: self._client.list_jobs_page(**filters))

    def list_jobs(self, *, page_size: int = 100, **filters: str | None) -> Iterator[Job]:
        """Every matching job, oldest first, fetched a page at a time as the loop goes."""
        cursor: str | None = None
        while True:
            page = self.list_jobs_page(limit=page_size, cursor=cursor, **filters)
            yield from page.items
            if page.next_cursor is None:
                return
            cursor = page.next_cursor

    def cancel_job(self, job_id: str) -> Job:
        """Cancel a queued job, or ask the holder of a leased one to stop."""
        return self._portal.call(self._client.cancel_job, job_id)

    def retry_job(self, job_id: str) -> Job:
        """Requeue a failed or cancelled job with a fresh attempt budget."""
        return self._portal.call(self._client.retry_job, job_id)

    def cancel_jobs(self, **filters: Any) -> list[Job]:
        """Bulk cancel (``queue``, ``kind``, ``lock``, ``limit``); the jobs it touched."""
        return self._portal.call(lambda: self._client.cancel_jobs(**filters))

    def retry_jobs(self, **filters: Any) -> list[Job]:
        """Bulk retry (``status``, ``queue``, ``kind``, ``limit``); the jobs requeued."""
        return self._portal.call(lambda: self._client.retry_jobs(**filters))

    def list_queues(self) -> list[QueueStats]:
        """Every known queue with its counts."""
        return self._portal.call(self._client.list_queues)

    def pause_queue(self, queue: str) -> QueueStats:
        """Stop claims from ``queue``."""
        return self._portal.call(self._client.pause_queue, queue)

    def resume_queue(self, queue: str) -> QueueStats:
        """Let agents claim from ``queue`` again."""
        return self._portal.call(self._client.resume_queue, queue)

    def create_agent(self, name: str, **fields: Any) -> AgentCreated:
        """Register an agent (``labels``, ``capacity``, ``queues``); its token is in the answer."""
        return self._portal.call(lambda: self._client.create_agent(name, **fields))

    def list_agents(self) -> list[Agent]:
        """Every registered agent."""
        return self._portal.call(self._client.list_agents)

    def get_agent(self, agent_id: str) -> Agent:
        """One agent; ``NotFound`` if there is none."""
        return self._portal.call(self._client.get_agent, agent_id)

    def drain_agent(self, agent_id: str) -> Agent:
        """Give the agent no new claims."""
        return self._portal.call(self._client.drain_agent, agent_id)

    def delete_agent(self, agent_id: str) -> None:
        """Revoke the agent's token and release its leases."""
        self._portal.call(self._client.delete_agent, agent_id)

    def set_schedule(
        self, name: str, cron: str, job: JobSpec | Mapping[str, Any], **fields: Any
    ) -> Schedule:
        """Create or replace a schedule (``timezone``, ``paused``)."""
        return self._portal.call(lambda: self._client.set_schedule(name, cron, job, **fields))

    def list_schedules(self) -> list[Schedule]:
        """Every schedule."""
        return self._portal.call(self._client.list_schedules)

    def get_schedule(self, name: str) -> Schedule:
        """One schedule; ``NotFound`` if there is none."""
        return self._portal.call(self._client.get_schedule, name)

    def pause_schedule(self, name: str) -> Schedule:
        """Stop enqueuing the schedule's occurrences."""
        return self._portal.call(self._client.pause_schedule, name)

    def resume_schedule(self, name: str) -> Schedule:
        """Enqueue the schedule's occurrences again."""
        return self._portal.call(self._client.resume_schedule, name)

    def delete_schedule(self, name: str) -> None:
        """Delete the schedule; no error if it is already gone."""
        self._portal.call(self._client.delete_schedule, name)
