"""``FleetClient``: the coordinator's admin API over async httpx.

Every call goes through ``_send``: one request, its answer or transport error
translated into the ``FleetError`` tree. Only requests that are safe to repeat are
retried, on ``CoordinatorUnavailable`` (refused or reset connections, timeouts,
429/502/503/504), with exponential backoff and jitter (stamina) for at most
``retry_timeout`` seconds: reads, pause/resume, drain, deletes, ``PUT`` of a
schedule, and enqueues whose every job carries an idempotency key. Anything else
(an enqueue without a key, cancel, retry, registering an agent) is sent once: a
lost answer could hide a write that landed, and a second send would repeat it.
"""

from __future__ import annotations

import os
from collections.abc import AsyncIterator, Iterable, Mapping, Sequence
from types import TracebackType
from typing import Any, Unpack
from urllib.parse import quote

import httpx
import stamina
from fleet_wire import (
    TRACING,
    current_traceparent,
    inject_traceparent,
    retry_wait,
    transport_errors,
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

DEFAULT_URL = "http://127.0.0.1:8787"
BATCH_LIMIT = 1000
"""Most jobs one ``POST /v1/jobs/batch`` takes."""


def _segment(value: str) -> str:
    # Ids and names go into paths: an odd character must not change the route.
    return quote(value, safe="")


def _with_trace(spec: JobSpec) -> JobSpec:
    if spec.traceparent is not None or not TRACING:
        return spec
    traceparent = current_traceparent()
    return spec if traceparent is None else spec.model_copy(update={"traceparent": traceparent})


def _spec_of(job: JobSpec | Mapping[str, Any]) -> JobSpec:
    return job if isinstance(job, JobSpec) else JobSpec.model_validate(job)


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
        self.base_url = base_url.rstrip("/")
        self.retry_timeout = retry_timeout
        self.retry_wait_max = retry_wait_max
        self._http = httpx.AsyncClient(
            base_url=self.base_url,
            transport=transport,
            headers={"Authorization": f"Bearer {token}"},
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
        spec = JobSpec(kind=kind, payload=dict(payload or {}), **options)
        return await self.enqueue_spec(spec)

    async def enqueue_spec(self, job: JobSpec | Mapping[str, Any]) -> Job:
        """Enqueue one job described by a ``JobSpec`` (or its JSON fields)."""
        spec = _with_trace(_spec_of(job))
        safe = spec.idempotency_key is not None
        return Job.model_validate(await self._json("POST", "/v1/jobs", body=spec.body(), safe=safe))

    async def enqueue_batch(self, jobs: Sequence[JobSpec | Mapping[str, Any]]) -> list[Job]:
        """Enqueue 1..1000 jobs in one request, all or nothing."""
        specs = [_with_trace(_spec_of(job)) for job in jobs]
        safe = all(spec.idempotency_key is not None for spec in specs)
        body = {"jobs": [spec.body() for spec in specs]}
        data = await self._json("POST", "/v1/jobs/batch", body=body, safe=safe)
        return [Job.model_validate(item) for item in data["items"]]

    async def enqueue_many(self, jobs: Iterable[JobSpec | Mapping[str, Any]]) -> list[Job]:
        """Enqueue any number of jobs, 1,000 per request (each request all or nothing)."""
        done: list[Job] = []
        chunk: list[JobSpec | Mapping[str, Any]] = []
        for job in jobs:
            chunk.append(job)
            if len(chunk) == BATCH_LIMIT:
                done += await self.enqueue_batch(chunk)
                chunk = []
        if chunk:
            done += await self.enqueue_batch(chunk)
        return done

    async def get_job(self, job_id: str) -> JobDetail:
        """One job with its runs; ``NotFound`` if there is none."""
        return JobDetail.model_validate(await self._json("GET", f"/v1/jobs/{_segment(job_id)}"))

    async def list_jobs_page(
        self,
        *,
        queue: str | None = None,
        status: str | None = None,
        kind: str | None = None,
        lock: str | None = None,
        limit: int = 100,
        cursor: str | None = None,
    ) -> JobPage:
        """One page of jobs, oldest first; pass its ``next_cursor`` for the next."""
        filters = {"queue": queue, "status": status, "kind": kind, "lock": lock, "cursor": cursor}
        params: dict[str, str | int] = {k: v for k, v in filters.items() if v is not None}
        params["limit"] = limit
        return JobPage.model_validate(await self._json("GET", "/v1/jobs", params=params))

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
                queue=queue, status=status, kind=kind, lock=lock, limit=page_size, cursor=cursor
            )
            for job in page.items:
                yield job
            if page.next_cursor is None:
                return
            cursor = page.next_cursor

    async def cancel_job(self, job_id: str) -> Job:
        """Cancel a queued job, or ask the holder of a leased one to stop; ``Conflict`` if ended."""
        path = f"/v1/jobs/{_segment(job_id)}/cancel"
        return Job.model_validate(await self._json("POST", path, safe=False))

    async def retry_job(self, job_id: str) -> Job:
        """Requeue a failed or cancelled job with a fresh attempt budget; ``Conflict`` otherwise."""
        path = f"/v1/jobs/{_segment(job_id)}/retry"
        return Job.model_validate(await self._json("POST", path, safe=False))

    async def cancel_jobs(
        self,
        *,
        queue: str | None = None,
        kind: str | None = None,
        lock: str | None = None,
        limit: int = 100,
    ) -> list[Job]:
        """Cancel the oldest ``limit`` matching jobs that have not ended; the jobs it touched."""
        body = _present(queue=queue, kind=kind, lock=lock, limit=limit)
        data = await self._json("POST", "/v1/jobs/cancel", body=body, safe=False)
        return [Job.model_validate(item) for item in data["items"]]

    async def retry_jobs(
        self,
        *,
        status: str = "failed",
        queue: str | None = None,
        kind: str | None = None,
        limit: int = 100,
    ) -> list[Job]:
        """Requeue the oldest ``limit`` failed (or cancelled) matching jobs; the jobs requeued."""
        body = _present(status=status, queue=queue, kind=kind, limit=limit)
        data = await self._json("POST", "/v1/jobs/retry", body=body, safe=False)
        return [Job.model_validate(item) for item in data["items"]]

    # -- queues -------------------------------------------------------------------

    async def list_queues(self) -> list[QueueStats]:
        """Every known queue with its counts."""
        data = await self._json("GET", "/v1/queues")
        return [QueueStats.model_validate(item) for item in data["items"]]

    async def pause_queue(self, queue: str) -> QueueStats:
        """Stop claims from ``queue`` (enqueues still work); its entry."""
        path = f"/v1/queues/{_segment(queue)}/pause"
        return QueueStats.model_validate(await self._json("POST", path))

    async def resume_queue(self, queue: str) -> QueueStats:
        """Let agents claim from ``queue`` again; its entry."""
        path = f"/v1/queues/{_segment(queue)}/resume"
        return QueueStats.model_validate(await self._json("POST", path))

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
        body = {"name": name, "labels": dict(labels or {}), "capacity": capacity}
        if queues:
            body["queues"] = list(queues)
        data = await self._json("POST", "/v1/agents", body=body, safe=False)
        return AgentCreated.model_validate(data)

    async def list_agents(self) -> list[Agent]:
        """Every registered agent, with its live lease count and last-seen time."""
        data = await self._json("GET", "/v1/agents")
        return [Agent.model_validate(item) for item in data["items"]]

    async def get_agent(self, agent_id: str) -> Agent:
        """One agent; ``NotFound`` if there is none."""
        return Agent.model_validate(await self._json("GET", f"/v1/agents/{_segment(agent_id)}"))

    async def drain_agent(self, agent_id: str) -> Agent:
        """Give the agent no new claims (its leases go on)."""
        path = f"/v1/agents/{_segment(agent_id)}/drain"
        return Agent.model_validate(await self._json("POST", path))

    async def delete_agent(self, agent_id: str) -> None:
        """Revoke the agent's token and release its leases; no error if it is already gone."""
        await self._delete(f"/v1/agents/{_segment(agent_id)}")

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
        spec = _spec_of(job)
        body = {"cron": cron, "timezone": timezone, "job": spec.body(), "paused": paused}
        data = await self._json("PUT", f"/v1/schedules/{_segment(name)}", body=body)
        return Schedule.model_validate(data)

    async def list_schedules(self) -> list[Schedule]:
        """Every schedule, with its next and last run."""
        data = await self._json("GET", "/v1/schedules")
        return [Schedule.model_validate(item) for item in data["items"]]

    async def get_schedule(self, name: str) -> Schedule:
        """One schedule; ``NotFound`` if there is none."""
        return Schedule.model_validate(await self._json("GET", f"/v1/schedules/{_segment(name)}"))

    async def pause_schedule(self, name: str) -> Schedule:
        """Stop enqueuing the schedule's occurrences (missed ones are not made up)."""
        path = f"/v1/schedules/{_segment(name)}/pause"
        return Schedule.model_validate(await self._json("POST", path))

    async def resume_schedule(self, name: str) -> Schedule:
        """Enqueue the schedule's occurrences again, from the next one."""
        path = f"/v1/schedules/{_segment(name)}/resume"
        return Schedule.model_validate(await self._json("POST", path))

    async def delete_schedule(self, name: str) -> None:
        """Delete the schedule; no error if it is already gone."""
        await self._delete(f"/v1/schedules/{_segment(name)}")

    # -- one request --------------------------------------------------------------

    async def _delete(self, path: str) -> None:
        try:
            await self._send("DELETE", path, body=None, params=None, safe=True)
        except NotFound:
            return  # deletes are idempotent: gone is what was asked

    async def _json(
        self,
        method: str,
        path: str,
        *,
        body: Mapping[str, Any] | None = None,
        params: Mapping[str, str | int] | None = None,
        safe: bool = True,
    ) -> dict[str, Any]:
        response = await self._send(method, path, body=body, params=params, safe=safe)
        data: dict[str, Any] = response.json()
        return data

    async def _send(
        self,
        method: str,
        path: str,
        *,
        body: Mapping[str, Any] | None,
        params: Mapping[str, str | int] | None,
        safe: bool,
    ) -> httpx.Response:
        if not safe:
            return await self._once(method, path, body, params)
        async for attempt in stamina.retry_context(
            on=_backoff,
            attempts=None,
            timeout=self.retry_timeout,
            wait_initial=0.05,
            wait_max=self.retry_wait_max,
            wait_jitter=0.1,
        ):
            with attempt:
                return await self._once(method, path, body, params)
        raise AssertionError("unreachable: stamina re-raises the last error")  # pragma: no cover

    async def _once(
        self,
        method: str,
        path: str,
        body: Mapping[str, Any] | None,
        params: Mapping[str, str | int] | None,
    ) -> httpx.Response:
        headers: dict[str, str] = {}
        inject_traceparent(headers)  # the coordinator's server span joins the caller's trace
        with transport_errors(self.base_url, CoordinatorUnavailable):
            response = await self._http.request(
                method, path, json=body, params=params, headers=headers
            )
        raise_for_answer(response)
        return response


def _backoff(exc: Exception) -> bool | float:
    """Retry ``CoordinatorUnavailable``: after its ``Retry-After`` when it has one."""
    return retry_wait(exc, CoordinatorUnavailable)


def _present(**fields: Any) -> dict[str, Any]:
    return {k: v for k, v in fields.items() if v is not None}


def env_settings() -> tuple[str, str]:
    """``$FLEET_URL`` (or ``DEFAULT_URL``) and ``$FLEET_ADMIN_TOKEN``; ``FleetError`` if unset."""
    token = os.environ.get("FLEET_ADMIN_TOKEN")
    if not token:
        raise FleetError("FLEET_ADMIN_TOKEN is not set")
    return os.environ.get("FLEET_URL") or DEFAULT_URL, token
