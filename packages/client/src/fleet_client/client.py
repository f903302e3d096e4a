"""``FleetClient``: the coordinator's admin API over async httpx.

Each method builds its request with ``calls`` (shared with ``SyncFleetClient``)
and sends it through ``_call``: one request, its answer or transport error
translated into the ``FleetError`` tree. Only calls that are safe to repeat are
retried, on ``CoordinatorUnavailable`` (refused or reset connections, timeouts,
429/502/503/504), with exponential backoff and jitter (stamina) for at most
``retry_timeout`` seconds (``calls`` says which are safe and why).
"""

from __future__ import annotations

import functools
import os
from collections.abc import AsyncIterator, Iterable, Mapping, Sequence
from types import TracebackType
from typing import Any, TypeVar, Unpack

import httpx
import stamina
from fleet_wire import inject_traceparent, transport_errors

from . import calls
from .calls import (
    BATCH_LIMIT,
    RETRY,
    Call,
    auth_headers,
    backoff,
    body_bytes,
    checked_url,
    job_spec,
    read_answer,
    shown_url,
)
from .errors import CoordinatorUnavailable, FleetError, NotFound, raise_for_answer
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

__all__ = ["BATCH_LIMIT", "DEFAULT_URL", "FleetClient"]

T = TypeVar("T")

DEFAULT_URL = "http://127.0.0.1:8787"


class FleetClient:
    """An admin's connection to one coordinator; use as ``async with FleetClient(...)``."""

    def __init__(
        self,
        base_url: str,
        token: str,
        *,
        transport: httpx.AsyncBaseTransport | None = None,
        timeout: float = 30.0,
        retry_timeout: float = 10.0,
        retry_wait_max: float = 2.0,
    ) -> None:
        self.base_url = checked_url(base_url)
        self._shown_url = shown_url(self.base_url)  # for messages: no credentials
        self.retry_timeout = retry_timeout
        self.retry_wait_max = retry_wait_max
        self._http = httpx.AsyncClient(
            base_url=self.base_url,
            transport=transport,
            headers=auth_headers(token),
            timeout=timeout,
        )

    @classmethod
    def from_env(cls, **options: Any) -> FleetClient:
        """A client of ``$FLEET_URL`` (or ``DEFAULT_URL``) with ``$FLEET_ADMIN_TOKEN``."""
        url, token = env_settings()
        return cls(url, token, **options)

    async def __aenter__(self) -> FleetClient:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        """Close the connection pool."""
        await self._http.aclose()

    # -- jobs ---------------------------------------------------------------------

    async def enqueue(
        self, kind: str, payload: Mapping[str, Any] | None = None, **options: Unpack[JobOptions]
    ) -> Job:
        """Enqueue one job; with an ``idempotency_key`` a repeat returns the same job."""
        return await self.enqueue_spec(job_spec(kind, payload, options))

    async def enqueue_spec(self, job: JobSpec | Mapping[str, Any]) -> Job:
        """Enqueue one job described by a ``JobSpec`` (or its JSON fields)."""
        return await self._call(calls.enqueue(job))

    async def enqueue_batch(self, jobs: Sequence[JobSpec | Mapping[str, Any]]) -> list[Job]:
        """Enqueue 1..1000 jobs in one request, all or nothing."""
        return await self._call(calls.enqueue_batch(jobs))

    async def enqueue_many(self, jobs: Iterable[JobSpec | Mapping[str, Any]]) -> list[Job]:
        """Enqueue any number of jobs, 1,000 per request (each request all or nothing)."""
        done: list[Job] = []
        for chunk in calls.batches(jobs):
            done += await self.enqueue_batch(chunk)
        return done

    async def get_job(self, job_id: str) -> JobDetail:
        """One job with its runs; ``NotFound`` if there is none."""
        return await self._call(calls.get_job(job_id))

    async def list_jobs_page(
        self,
        *,
        queue: str | None = None,
        status: str | None = None,
        kind: str | None = None,
        lock: str | None = None,
        limit: int | None = None,
        cursor: str | None = None,
        page_size: int | None = None,
    ) -> JobPage:
        """One page of jobs, oldest first; pass its ``next_cursor`` for the next.

        ``page_size`` (as ``list_jobs`` names it) or ``limit``: jobs on the page, 100 by default.
        """
        filters = {"queue": queue, "status": status, "kind": kind, "lock": lock}
        call = calls.list_jobs_page(**filters, limit=limit, cursor=cursor, page_size=page_size)
        return await self._call(call)

    async def list_jobs(
        self,
        *,
        queue: str | None = None,
        status: str | None = None,
        kind: str | None = None,
        lock: str | None = None,
        page_size: int = 100,
    ) -> AsyncIterator[Job]:
        """Every matching job, oldest first, fetched a page at a time as the loop goes."""
        cursor: str | None = None
        while True:
            page = await self.list_jobs_page(
                queue=queue, status=status, kind=kind, lock=lock, page_size=page_size, cursor=cursor
            )
            for job in page.items:
                yield job
            if page.next_cursor is None:
                return
            cursor = page.next_cursor

    async def cancel_job(self, job_id: str) -> Job:
        """Cancel a queued job, or ask the holder of a leased one to stop; ``Conflict`` if ended."""
        return await self._call(calls.cancel_job(job_id))

    async def retry_job(self, job_id: str) -> Job:
        """Requeue a failed or cancelled job with a fresh attempt budget; ``Conflict`` otherwise."""
        return await self._call(calls.retry_job(job_id))

    async def cancel_jobs(
        self,
        *,
        queue: str | None = None,
        kind: str | None = None,
        lock: str | None = None,
        limit: int = 100,
    ) -> list[Job]:
        """Cancel the oldest ``limit`` matching jobs that have not ended; the jobs it touched."""
        return await self._call(calls.cancel_jobs(queue=queue, kind=kind, lock=lock, limit=limit))

    async def retry_jobs(
        self,
        *,
        status: str = "failed",
        queue: str | None = None,
        kind: str | None = None,
        limit: int = 100,
    ) -> list[Job]:
        """Requeue the oldest ``limit`` failed (or cancelled) matching jobs; the jobs requeued."""
        call = calls.retry_jobs(status=status, queue=queue, kind=kind, limit=limit)
        return await self._call(call)

    # -- queues -------------------------------------------------------------------

    async def list_queues(self) -> list[QueueStats]:
        """Every known queue with its counts."""
        return await self._call(calls.list_queues())

    async def pause_queue(self, queue: str) -> QueueStats:
        """Stop claims from ``queue`` (enqueues still work); its entry."""
        return await self._call(calls.pause_queue(queue))

    async def resume_queue(self, queue: str) -> QueueStats:
        """Let agents claim from ``queue`` again; its entry."""
        return await self._call(calls.resume_queue(queue))

    # -- agents -------------------------------------------------------------------

    async def create_agent(
        self,
        name: str,
        *,
        labels: Mapping[str, str] | None = None,
        capacity: int = 1,
        queues: Sequence[str] | None = None,
    ) -> AgentCreated:
        """Register an agent; the answer carries its token, shown only this once."""
        call = calls.create_agent(name, labels=labels, capacity=capacity, queues=queues)
        return await self._call(call)

    async def list_agents(self) -> list[Agent]:
        """Every registered agent, with its live lease count and last-seen time."""
        return await self._call(calls.list_agents())

    async def get_agent(self, agent_id: str) -> Agent:
        """One agent; ``NotFound`` if there is none."""
        return await self._call(calls.get_agent(agent_id))

    async def drain_agent(self, agent_id: str) -> Agent:
        """Give the agent no new claims (its leases go on)."""
        return await self._call(calls.drain_agent(agent_id))

    async def delete_agent(self, agent_id: str) -> None:
        """Revoke the agent's token and release its leases; no error if it is already gone."""
        await self._call(calls.delete_agent(agent_id))

    # -- schedules ----------------------------------------------------------------

    async def set_schedule(
        self,
        name: str,
        cron: str,
        job: JobSpec | Mapping[str, Any],
        *,
        timezone: str = "UTC",
        paused: bool = False,
    ) -> Schedule:
        """Create or replace the schedule ``name`` (five-field ``cron`` in ``timezone``)."""
        call = calls.set_schedule(name, cron, job, timezone=timezone, paused=paused)
        return await self._call(call)

    async def list_schedules(self) -> list[Schedule]:
        """Every schedule, with its next and last run."""
        return await self._call(calls.list_schedules())

    async def get_schedule(self, name: str) -> Schedule:
        """One schedule; ``NotFound`` if there is none."""
        return await self._call(calls.get_schedule(name))

    async def pause_schedule(self, name: str) -> Schedule:
        """Stop enqueuing the schedule's occurrences (missed ones are not made up)."""
        return await self._call(calls.pause_schedule(name))

    async def resume_schedule(self, name: str) -> Schedule:
        """Enqueue the schedule's occurrences again, from the next one."""
        return await self._call(calls.resume_schedule(name))

    async def delete_schedule(self, name: str) -> None:
        """Delete the schedule; no error if it is already gone."""
        await self._call(calls.delete_schedule(name))

    # -- one request --------------------------------------------------------------

    async def _call(self, call: Call[T]) -> T:
        """Send ``call`` (retried when safe) and read its answer."""
        try:
            if not call.safe:
                response = await self._once(call)
            else:
                response = await self._retried(call)
        except NotFound:
            if call.gone_is_done:
                return call.read(None)
            raise
        return read_answer(call, response)

    async def _retried(self, call: Call[Any]) -> httpx.Response:
        async for attempt in stamina.retry_context(
            on=functools.partial(backoff, wait_max=self.retry_wait_max),
            timeout=self.retry_timeout,
            wait_max=self.retry_wait_max,
            **RETRY,
        ):
            with attempt:
                return await self._once(call)
        raise AssertionError("unreachable: stamina re-raises the last error")  # pragma: no cover

    async def _once(self, call: Call[Any]) -> httpx.Response:
        headers: dict[str, str] = {}
        if call.trace is None:
            inject_traceparent(headers)  # the coordinator's server span joins the caller's trace
        else:
            headers.update(call.trace)  # taken once, as the call was built (same task)
        # The encoder both clients and the agent share: the same bytes, and the
        # same refusals (NaN, ±∞, a lone surrogate), whichever client sends.
        content = body_bytes(call)
        if content is not None:
            headers["Content-Type"] = "application/json"
        with transport_errors(self._shown_url, CoordinatorUnavailable):
            response = await self._http.request(
                call.method, call.path, content=content, params=call.params, headers=headers
            )
        raise_for_answer(response)
        return response


def env_settings() -> tuple[str, str]:
    """``$FLEET_URL`` (or ``DEFAULT_URL``) and ``$FLEET_ADMIN_TOKEN``; ``FleetError`` if unset."""
    token = os.environ.get("FLEET_ADMIN_TOKEN")
    if not token:
        raise FleetError("FLEET_ADMIN_TOKEN is not set")
    return os.environ.get("FLEET_URL") or DEFAULT_URL, token
