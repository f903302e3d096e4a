"""``AgentClient``: the coordinator's agent API over HTTP (own connections; httpx when given).

Every call goes through ``_call``: one request, the answer or transport error
translated into the ``AgentError`` tree, and ``CoordinatorUnavailable`` retried
(after the answer's ``Retry-After`` when it has one, else with exponential backoff
and jitter; stamina) for at most ``retry_timeout`` seconds; a 500 is a bug and is
not retried. A retried write is safe because every write is fenced by its epoch: if
the first try landed and only the answer was lost, the retry gets ``LeaseLost``.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Sequence
from types import TracebackType
from typing import TYPE_CHECKING, Any

from .connections import ConnectionPool
from .errors import (
    CoordinatorUnavailable,
    raise_for_answer,
    redact_url,
    retry_unavailable,
    translate_transport_errors,
)
from .http import HttpxPoster, Poster, encode
from .models import Claimed, HeartbeatAnswer, JobInfo, Report, Reported

if TYPE_CHECKING:
    import httpx

__all__ = ["AgentClient"]

_REQUEST_TIMEOUT = 10.0


class AgentClient:
    """An agent's connection to one coordinator; use as ``async with AgentClient(...)``."""

    def __init__(
        self,
        base_url: str,
        token: str,
        *,
        transport: httpx.AsyncBaseTransport | None = None,
        retry_timeout: float = 30.0,
        retry_wait_max: float = 2.0,
    ) -> None:
        self.base_url = base_url.rstrip("/")
        self.display_url = redact_url(self.base_url)
        """``base_url`` without its credentials, if any: what messages and logs show."""
        self.retry_timeout = retry_timeout
        self.retry_wait_max = retry_wait_max
        headers = {"Authorization": f"Bearer {token}"}
        # A transport is the tests' way in (the ASGI app in process, injected faults).
        self._http: Poster = (
            ConnectionPool(self.base_url, headers)
            if transport is None
            else HttpxPoster(self.base_url, headers, transport)
        )

    async def __aenter__(self) -> AgentClient:
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

    async def claim(
        self,
        *,
        queues: Sequence[str] | None = None,
        max_jobs: int = 1,
        wait_seconds: float = 0,
        retry_timeout: float | None = None,
        abort: asyncio.Event | None = None,
    ) -> list[Claimed]:
        """Lease up to ``max_jobs`` jobs, long-polling up to ``wait_seconds``.

        Once ``abort`` is set, an unreachable coordinator is not retried any more: the
        wait between tries ends at once, and a try in flight is the last (every call
        that retries takes ``abort``).
        """
        body: dict[str, Any] = {"max_jobs": max_jobs, "wait_seconds": wait_seconds}
        if queues:
            body["queues"] = list(queues)
        data = await self._call(
            "/v1/claims",
            body,
            request_timeout=_REQUEST_TIMEOUT + wait_seconds,
            retry_timeout=retry_timeout,
            abort=abort,
        )
        return [Claimed.from_json(item) for item in data["leases"]]

    async def heartbeat(
        self, job_id: str, epoch: int, *, progress: Any = None, retry_timeout: float | None = None
    ) -> HeartbeatAnswer:
        """Renew the lease; ``LeaseLost`` if this agent no longer holds ``epoch``."""
        body: dict[str, Any] = {"epoch": epoch}
        if progress is not None:
            body["progress"] = progress
        data = await self._call(f"/v1/jobs/{job_id}/heartbeat", body, retry_timeout=retry_timeout)
        return HeartbeatAnswer.from_json(data)

    async def complete(
        self,
        job_id: str,
        epoch: int,
        result: Any = None,
        *,
        retry_timeout: float | None = None,
        abort: asyncio.Event | None = None,
    ) -> JobInfo:
        """Mark the job succeeded with ``result``."""
        data = await self._call(
            f"/v1/jobs/{job_id}/complete",
            {"epoch": epoch, "result": result},
            retry_timeout=retry_timeout,
            abort=abort,
        )
        return JobInfo.from_json(data)

    async def fail(
        self,
        job_id: str,
        epoch: int,
        error: str,
        *,
        retryable: bool = True,
        retry_timeout: float | None = None,
        abort: asyncio.Event | None = None,
    ) -> JobInfo:
        """End the attempt as failed (requeued with backoff while attempts remain)."""
        body = {"epoch": epoch, "error": error, "retryable": retryable}
        data = await self._call(
            f"/v1/jobs/{job_id}/fail", body, retry_timeout=retry_timeout, abort=abort
        )
        return JobInfo.from_json(data)

    async def release(
        self,
        job_id: str,
        epoch: int,
        *,
        retry_timeout: float | None = None,
        abort: asyncio.Event | None = None,
    ) -> JobInfo:
        """Give the job back to the queue without counting the attempt."""
        data = await self._call(
            f"/v1/jobs/{job_id}/release",
            {"epoch": epoch},
            retry_timeout=retry_timeout,
            abort=abort,
        )
        return JobInfo.from_json(data)

    async def report(
        self,
        reports: Sequence[Report],
        *,
        queues: Sequence[str] | None = None,
        max_jobs: int = 0,
        wait_seconds: float = 0,
        retry_timeout: float | None = None,
        abort: asyncio.Event | None = None,
        on_retry: Callable[[], None] | None = None,
    ) -> Reported:
        """Send up to 100 reports in one request, then claim up to ``max_jobs`` (0: no claim).

        Each report is fenced on its own and answered in its place; a failed one
        (``lease_lost`` …) changes nothing for the others. A retry after a lost
        answer is safe: a report that landed the first time answers ``lease_lost``.
        ``on_retry`` is called once the first try failed and the retries begin.
        """
        body: dict[str, Any] = {"items": [r.to_json() for r in reports]}
        if max_jobs > 0:
            claim: dict[str, Any] = {"max_jobs": max_jobs, "wait_seconds": wait_seconds}
            if queues:
                claim["queues"] = list(queues)
            body["claim"] = claim
        data = await self._call(
            "/v1/reports",
            body,
            request_timeout=_REQUEST_TIMEOUT + wait_seconds,
            retry_timeout=retry_timeout,
            abort=abort,
            on_retry=on_retry,
        )
        return Reported.from_json(data)

    async def _call(
        self,
        path: str,
        body: dict[str, Any],
        *,
        request_timeout: float = _REQUEST_TIMEOUT,
        retry_timeout: float | None = None,
        abort: asyncio.Event | None = None,
        on_retry: Callable[[], None] | None = None,
    ) -> dict[str, Any]:
        budget = self.retry_timeout if retry_timeout is None else retry_timeout
        content = encode(body)  # once, whatever the number of tries
        # The first try goes out without stamina: nearly every call succeeds at once,
        # and a retry context (tenacity's state, a wait strategy, an async iterator)
        # cost an agent ~13 % of its CPU per job. A failure of that try is handed to
        # the retry loop as its first attempt, so the waits and the budget are the same.
        loop = asyncio.get_running_loop()
        started = loop.time()
        try:
            return await self._once(path, content, request_timeout)
        except CoordinatorUnavailable as exc:
            left = budget - (loop.time() - started)
            if left <= 0 or (abort is not None and abort.is_set()):
                raise  # no budget left for retries (stamina warns at a timeout of 0)
            first = exc
        if on_retry is not None:
            on_retry()
        if abort is None:
            return await self._retry(path, content, request_timeout, left, first, None)
        # ``abort`` (the worker stopping) ends the retries: at once while waiting between
        # tries; a try in flight is let finish (a claim's answer may hold leases, which
        # the worker then releases) and, failing, is not retried.
        trying = [False]
        retrying = asyncio.ensure_future(
            self._retry(path, content, request_timeout, left, first, abort, trying)
        )
        waiting = asyncio.ensure_future(abort.wait())
        try:
            await asyncio.wait({retrying, waiting}, return_when=asyncio.FIRST_COMPLETED)
            if not retrying.done() and not trying[0]:
                retrying.cancel()
                raise first  # the outage, as it looked when the retries began
            return await retrying
        finally:
            waiting.cancel()
            retrying.cancel()

    async def _retry(
        self,
        path: str,
        content: bytes,
        request_timeout: float,
        budget: float,
        first: CoordinatorUnavailable,
        abort: asyncio.Event | None,
        trying: list[bool] | None = None,
    ) -> dict[str, Any]:
        """Retry after ``first`` (the first try's failure) for ``budget`` seconds, or ``abort``."""

        def retry(exc: Exception) -> bool | float:
            if abort is not None and abort.is_set():
                return False  # stopping: the failure is final
            # After Retry-After when 429/503 sends one, at most the backoff's longest wait.
            return retry_unavailable(exc, self.retry_wait_max)

        # Imported at the first outage, not at start: stamina and tenacity cost ~13 ms of
        # CPU (~5 % of an agent's start-up), paid by every agent a fleet starts.
        import stamina

        pending: CoordinatorUnavailable | None = first
        async for attempt in stamina.retry_context(
            on=retry,
            attempts=None,
            timeout=budget,
            wait_initial=0.05,
            wait_max=self.retry_wait_max,
            wait_jitter=0.1,  # stamina's default (1 s) would outlast short leases
        ):
            with attempt:
                if pending is not None:
                    failed, pending = pending, None
                    raise failed  # the first try's failure: stamina waits, then retries
                if trying is not None:
                    trying[0] = True
                try:
                    return await self._once(path, content, request_timeout)
                finally:
                    if trying is not None:
                        trying[0] = False
        raise AssertionError("unreachable: stamina re-raises the last error")  # pragma: no cover

    async def _once(self, path: str, content: bytes, request_timeout: float) -> dict[str, Any]:
        """One try: the answer's JSON, or the ``AgentError`` it (or the transport) stands for."""
        with translate_transport_errors(self.display_url):
            response = await self._http.post(path, content, request_timeout)
        raise_for_answer(response)
        data: dict[str, Any] = response.json()
        return data
