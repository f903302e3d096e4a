"""``Reporter``: a worker's reports that become ready together go out in one request.

Heartbeats, completions, failures and releases are queued here; the first one
opens a window of ``window`` seconds (a few milliseconds), then everything
queued by then — up to 100 reports — goes out as one ``POST /v1/reports``,
with a claim for the worker's free slots riding along. One request then ends a
job and fetches the next, and the heartbeats of all of an agent's leases share
a request. Requests go out one at a time: reports that arrive while one is in
flight wait for the next, which batches them further under load. A request whose
first try failed retries on its own, though, and the next goes out meanwhile:
a completion retried through an outage must not hold up the heartbeats of the
worker's other leases, which would expire behind it (each request retries for
its own budget, as the single endpoints do). When no handler is running, no
report can join the window, so it is skipped: an agent with one job in flight
(``--concurrency 1``) does not wait the window after every job.

Each report's caller gets its own answer (``ReportAnswer``), or the exception
of the whole request (unreachable coordinator, revoked token).
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from .client import AgentClient
from .errors import CoordinatorUnavailable, LeaseLost, RequestRejected
from .models import Claimed, Report, ReportAnswer

__all__ = ["MAX_REPORTS", "Reporter", "raise_for_report"]

MAX_REPORTS = 100
"""Reports one request may carry (SPEC)."""

_STATUS = {"not_found": 404, "payload_too_large": 413, "validation_error": 422}


def raise_for_report(answer: ReportAnswer) -> None:
    """Raise what the single endpoint would have raised for a failed report."""
    if answer.ok:
        return
    code = answer.code or "unknown"
    text = f"{code}: {answer.message}"
    if code == "lease_lost":
        raise LeaseLost(text, status=409, code=code)
    if code == "store_unavailable":
        raise CoordinatorUnavailable(text, status=503, code=code)
    raise RequestRejected(text, status=_STATUS.get(code, 409), code=code)


@dataclass(slots=True)
class _Queued:
    report: Report
    answer: asyncio.Future[ReportAnswer]
    retry_timeout: float | None


class Reporter:
    """Batches a worker's reports, each with its own answer, plus a claim for free slots."""

    def __init__(
        self,
        client: AgentClient,
        *,
        window: float,
        queues: Sequence[str],
        reserve_slots: Callable[[], int],
        claimed: Callable[[int, list[Claimed]], None],
        handlers_running: Callable[[], int] = lambda: 1,
        abort: Callable[[], asyncio.Event | None] = lambda: None,
    ) -> None:
        self.client = client
        self._abort = abort  # what ends a request's retries, asked when it is sent
        self._handlers_running = handlers_running
        self.window = window
        self.queues = list(queues)
        self._reserve_slots = reserve_slots
        self._claimed = claimed
        self._queue: list[_Queued] = []
        self._ready = asyncio.Event()
        self._in_flight = False
        self._sending: set[asyncio.Task[None]] = set()  # requests, retrying ones included

    @property
    def busy(self) -> bool:
        """Whether reports are queued or a request is in flight (it will claim free slots).

        A request retrying on its own is not counted: it claims only the slots it
        reserved when it was sent, and may retry for as long as a lease lives.
        """
        return bool(self._queue) or self._in_flight

    def submit(
        self, report: Report, *, retry_timeout: float | None = None
    ) -> asyncio.Future[ReportAnswer]:
        """Queue ``report``; the future is its answer."""
        answer: asyncio.Future[ReportAnswer] = asyncio.get_running_loop().create_future()
        self._queue.append(_Queued(report, answer, retry_timeout))
        self._ready.set()
        return answer

    async def run(self) -> None:
        """Send queued reports until cancelled (requests still retrying are then cancelled)."""
        try:
            while True:
                await self._ready.wait()
                self._in_flight = True
                try:
                    if self.window > 0 and self._handlers_running() > 0:
                        await asyncio.sleep(self.window)  # the window: let ready reports join
                    batch = self._take_batch()
                    if batch:
                        await self._dispatch(batch)
                finally:
                    self._in_flight = False
        finally:
            for task in self._sending:
                task.cancel()
            await asyncio.gather(*self._sending, return_exceptions=True)

    async def _dispatch(self, batch: list[_Queued]) -> None:
        """Send ``batch``; wait for its answer, or until its first try failed.

        After a failed first try the request goes on retrying in its own task, and
        the next one may leave: a report retried through an outage (up to the
        client's ``retry_timeout``, again and again while its lease may live) would
        otherwise hold up every heartbeat of the worker's other leases behind it.
        """
        gate = asyncio.get_running_loop().create_future()

        def open_gate(*_: object) -> None:
            if not gate.done():
                gate.set_result(None)

        task = asyncio.create_task(self._send(batch, open_gate))
        self._sending.add(task)
        task.add_done_callback(self._sending.discard)
        task.add_done_callback(open_gate)
        await gate

    def _take_batch(self) -> list[_Queued]:
        """Up to 100 queued reports, one per job: a request naming a job twice is refused."""
        batch: list[_Queued] = []
        rest: list[_Queued] = []
        jobs: set[str] = set()
        for queued in self._queue:
            if queued.answer.done():
                continue  # its caller stopped waiting (a heartbeat cancelled as its job ended)
            if len(batch) < MAX_REPORTS and queued.report.job_id not in jobs:
                batch.append(queued)
                jobs.add(queued.report.job_id)
            else:
                rest.append(queued)  # the next request: a job's later report after its earlier
        self._queue = rest
        if not rest:
            self._ready.clear()
        return batch

    async def _send(self, batch: list[_Queued], on_retry: Callable[[], None]) -> None:
        budgets = [q.retry_timeout for q in batch if q.retry_timeout is not None]
        slots = self._reserve_slots()
        try:
            answer = await self.client.report(
                [q.report for q in batch],
                queues=self.queues,
                max_jobs=slots,
                retry_timeout=min(budgets) if budgets else None,
                abort=self._abort(),
                on_retry=on_retry,
            )
        except BaseException as exc:
            self._claimed(slots, [])
            for queued in batch:
                if queued.answer.done():
                    continue
                if isinstance(exc, Exception):
                    queued.answer.set_exception(exc)
                else:
                    queued.answer.cancel()
            if not isinstance(exc, Exception):
                raise
            return
        for queued, item in zip(batch, answer.items, strict=True):
            if not queued.answer.done():
                queued.answer.set_result(item)
        self._claimed(slots, answer.leases)
