"""``Worker``: claim jobs for free slots, run handlers by kind, heartbeat, report once.

One claim loop long-polls for as many jobs as there are free slots. Each job gets
a task running its handler and a heartbeat loop renewing the lease every
``heartbeat_fraction`` of its length. By default (``batch_reports``) heartbeats and
reports go through a ``Reporter``: those ready within ``report_window`` seconds
share one ``POST /v1/reports``, which also claims the slots they free, and
heartbeats fall on a shared grid (multiples of their interval) so the renewals of
all of the agent's leases go out together; while reports are on their way the
claim loop leaves the free slots to them. When a heartbeat answers ``cancel_requested``
or ``lease_lost`` the handler is signalled (``job.cancelled``) and its task
cancelled. Each run ends in exactly one report (complete, fail or release) or, when
the lease is lost, none. ``stop()`` (SIGTERM / SIGINT under ``run(handle_signals=
True)``) stops claiming, gives running jobs ``grace_seconds`` to finish, then
cancels and releases the rest; jobs claimed after the stop are released unstarted.
"""

from __future__ import annotations

import asyncio
import contextlib
import inspect
import math
import signal
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import structlog
from fleet_wire import encode

from .client import AgentClient
from .errors import (
    AgentError,
    CoordinatorUnavailable,
    JobFailed,
    LeaseLost,
    RequestRejected,
    ServerError,
    Unauthorized,
)
from .job import CancelReason, Handler, Job
from .models import Claimed, HeartbeatAnswer, Report
from .reporter import Reporter, raise_for_report
from .threads import run_in_daemon_thread
from .tracing import run_in_span

__all__ = ["Worker"]

_MIN_BEAT = 0.05
MAX_CLAIM = 100
"""Jobs one claim may ask for (SPEC: ``max_jobs`` 1..100); more free slots take more claims."""
MAX_WAIT_SECONDS = 30.0
"""The longest claim long-poll (SPEC: ``wait_seconds`` 0..30)."""
_MAX_ERROR = 10_000
"""Characters of a failure's error the coordinator takes (longer is refused with 422)."""
_REPORTS_NONE = (CancelReason.LEASE_LOST, CancelReason.UNAUTHORIZED)
_SKEW_MARGIN = 10.0
"""Seconds a report is retried past its lease's ``expires_at`` as the agent last knew it:
that time is on the coordinator's clock, which the agent's may be behind by as much."""
_CANCELLED_BY_HANDLER = "CancelledError: the handler's task was cancelled, not by the worker"
_REPORT_PAUSE = 0.1
"""Seconds between a report's calls once one ran out of retries (it did wait between tries)."""


_STOP_SIGNALS = (signal.SIGTERM, signal.SIGINT)
"""What ``run(handle_signals=True)`` stops on."""


class Worker:
    """Runs handlers (by job kind) for claimed jobs, at most ``concurrency`` at a time."""

    def __init__(
        self,
        client: AgentClient,
        handlers: Mapping[str, Handler],
        *,
        queues: Sequence[str] | None = None,
        concurrency: int = 1,
        wait_seconds: float = 5.0,
        heartbeat_fraction: float = 1 / 3,
        grace_seconds: float = 10.0,
        startup_timeout: float = 5.0,
        batch_reports: bool = True,
        report_window: float = 0.005,
    ) -> None:
        if concurrency < 1:
            raise ValueError("concurrency must be at least 1")
        if not 0 < heartbeat_fraction < 1:
            raise ValueError("heartbeat_fraction must be between 0 and 1")
        if not 0 <= wait_seconds <= MAX_WAIT_SECONDS:  # NaN too
            raise ValueError(f"wait_seconds must be between 0 and {MAX_WAIT_SECONDS:g}")
        # NaN and infinities too: an infinite window would hold reports back for ever,
        # an infinite startup timeout would retry a wrong URL for ever.
        for name, seconds in (
            ("grace_seconds", grace_seconds),
            ("startup_timeout", startup_timeout),
            ("report_window", report_window),
        ):
            if not 0 <= seconds < math.inf:
                raise ValueError(f"{name} must be a finite number of seconds, not negative")
        self.client = client
        self.handlers = dict(handlers)
        self.queues = list(queues or [])
        self.concurrency = concurrency
        self.wait_seconds = wait_seconds
        self.heartbeat_fraction = heartbeat_fraction
        self.grace_seconds = grace_seconds
        self.startup_timeout = startup_timeout
        self.stats: Counter[str] = Counter()
        """Counts of ``claimed``, ``succeeded``, ``failed``, ``released``, ``lost`` …"""
        self.running: dict[str, Job] = {}
        """Jobs whose handlers run now, by job id."""
        self.log = structlog.get_logger("fleet_agent")
        self._tasks: dict[str, _Running] = {}
        self._stopping = asyncio.Event()
        self._hurry = asyncio.Event()
        self._grace_over = asyncio.Event()  # reports still retrying give up (stop())
        self._slot_freed = asyncio.Event()
        self._connected = asyncio.Event()
        self._busy = 0  # slots whose handler has not finished
        self._claiming = 0  # slots asked for by claims in flight
        self._unstarted: set[asyncio.Task[None]] = set()
        self._reporter = (
            Reporter(
                client,
                window=report_window,
                queues=self.queues,
                reserve_slots=self._reserve_slots,
                claimed=self._on_claimed,
                handlers_running=lambda: self._busy,
                abort=self._report_abort,
            )
            if batch_reports
            else None
        )

    @property
    def connected(self) -> asyncio.Event:
        """Set once the first claim reached the coordinator."""
        return self._connected

    def stop(self) -> None:
        """Stop claiming; running jobs get ``grace_seconds`` before they are released.

        A second call (a second Ctrl-C) ends the grace period at once and cuts a claim
        long-poll in flight.
        """
        if self._stopping.is_set():
            self._hurry.set()
            self._grace_over.set()
            return
        self.log.info("agent.stopping", running=len(self._tasks))
        self._stopping.set()

    async def run(self, *, handle_signals: bool = False) -> None:
        """Work until ``stop()`` (or SIGTERM/SIGINT); raise ``Unauthorized`` if refused.

        The first claim is retried for ``startup_timeout`` seconds only, so a wrong
        URL fails fast with ``CoordinatorUnavailable``; after that the worker keeps
        retrying through coordinator restarts.
        """
        loop = asyncio.get_running_loop()
        # The handlers that were there before are put back when the worker ends: the
        # loop's removal alone would leave SIGTERM at its default (a signal during the
        # caller's teardown would then kill the process, exit status -15).
        previous = {sig: signal.getsignal(sig) for sig in _STOP_SIGNALS} if handle_signals else {}
        for sig in previous:
            loop.add_signal_handler(sig, self.stop)
        claiming = asyncio.create_task(self._claim_loop())
        reporting = None if self._reporter is None else asyncio.create_task(self._reporter.run())
        try:
            await _first(claiming, self._stopping.wait())
            if claiming.done() and claiming.exception() is not None:
                raise _fatal(claiming)
            await self._drain()
            await self._end_claiming(claiming)
            await self._release_all_unstarted()
        except BaseException as exc:
            revoked = isinstance(exc, Unauthorized)
            reason = CancelReason.UNAUTHORIZED if revoked else CancelReason.SHUTDOWN
            self._stopping.set()
            self._grace_over.set()
            self._hurry.set()  # the worker is going away: releases get one try each
            claiming.cancel()
            await self._cancel_all(reason)
            await self._release_all_unstarted()
            raise
        finally:
            if reporting is not None:
                reporting.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await reporting
            for sig, handler in previous.items():
                loop.remove_signal_handler(sig)
                if handler is not None:  # None: set outside Python, nothing to put back
                    signal.signal(sig, handler)
            self.log.info("agent.stopped", **self.stats)

    # -- claiming ---------------------------------------------------------------

    async def _claim_loop(self) -> None:
        pause = 0.1
        while not self._stopping.is_set():
            free = self._free()
            if free <= 0 or (self._reporter is not None and self._reporter.busy):
                # Full, or reports on their way will claim the free slots themselves.
                self._slot_freed.clear()
                await _first(self._slot_freed.wait(), self._stopping.wait())
                continue
            first = not self._connected.is_set()
            # An agent may run more jobs than one claim can ask for (--concurrency 250, a
            # capacity up to 1000): the slots left over go to the next claim, at once.
            free = min(free, MAX_CLAIM)
            self._claiming += free
            try:
                claimed = await self.client.claim(
                    queues=self.queues,
                    max_jobs=free,
                    wait_seconds=self.wait_seconds,
                    retry_timeout=self.startup_timeout if first else None,
                    # A signal ends the retries at once: an agent stopping does not wait
                    # out an outage (30 s, or the start-up's budget) to exit.
                    abort=self._stopping,
                )
            except (CoordinatorUnavailable, ServerError) as exc:
                if self._stopping.is_set():
                    return  # stopped while the coordinator was unreachable: a clean stop
                # An outage, or a coordinator bug (500, not retried by the client): either
                # way this claim got nothing; pause and claim again rather than stop.
                if first:
                    raise
                self.log.warning("agent.coordinator.unavailable", error=exc.message)
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._stopping.wait(), pause)
                pause = min(pause * 2, 2.0)
                continue
            finally:
                self._claiming -= free
            if first:
                self._connected.set()
                self.log.info("agent.connected", url=self.client.display_url)
            pause = 0.1
            self._take(claimed)

    async def _end_claiming(self, claiming: asyncio.Task[None]) -> None:
        """Wait for the claim loop to end; a second ``stop()`` cuts a long-poll in flight.

        After one ``stop()`` a long-poll to a live coordinator is let finish (up to
        ``wait_seconds``): the jobs it brings back are released unstarted. A second one
        means now: the poll is cancelled and its connection closed; the coordinator
        then ends the poll (it watches for the disconnect), and a job it leased in
        that instant is a lost answer, leased until its lease expires (SPEC 3).
        """
        await _first(claiming, self._hurry.wait())
        if not claiming.done():
            claiming.cancel()
            await asyncio.wait({claiming})
        if not claiming.cancelled():
            claiming.result()  # the claim loop's own error, if it had one

    def _free(self) -> int:
        return self.concurrency - self._busy - self._claiming

    def _reserve_slots(self) -> int:
        """The slots a report request may claim now (none while stopping); counted as claiming."""
        free = 0 if self._stopping.is_set() else min(max(self._free(), 0), MAX_CLAIM)
        self._claiming += free
        return free

    def _on_claimed(self, slots: int, claimed: list[Claimed]) -> None:
        self._claiming -= slots
        self._take(claimed)
        self._slot_freed.set()  # the claim loop decides again: the queue may be empty now

    def _take(self, claimed: list[Claimed]) -> None:
        for item in claimed:
            self.stats["claimed"] += 1
            if self._stopping.is_set():
                task = asyncio.create_task(self._release_unstarted(item))
                self._unstarted.add(task)
                task.add_done_callback(self._unstarted.discard)
            else:
                self._start(item)

    async def _release_all_unstarted(self) -> None:
        while self._unstarted:
            await asyncio.gather(*self._unstarted, return_exceptions=True)

    async def _release_unstarted(self, item: Claimed) -> None:
        job = Job(item.job, item.lease)
        self.log.info("agent.job.not_started", job_id=job.id, epoch=job.epoch)
        await self._report(job, "release")

    def _start(self, item: Claimed) -> None:
        job = Job(item.job, item.lease)
        self.log.info("agent.job.claimed", job_id=job.id, kind=job.kind, epoch=job.epoch)
        run = run_in_span(job, self._call_handler)  # a child span of the enqueue's trace
        handler = asyncio.create_task(run, name=f"handler-{job.id}")
        task = asyncio.create_task(self._run_job(job, handler), name=f"job-{job.id}")
        self._tasks[job.id] = _Running(job, task, handler)
        self.running[job.id] = job
        self._busy += 1

    # -- one job ------------------------------------------------------------------

    async def _run_job(self, job: Job, handler_task: asyncio.Task[tuple[str, Any, bool]]) -> None:
        beating = asyncio.create_task(self._heartbeat_loop(job, handler_task))
        slot = True

        def free_slot() -> None:
            # Batched, the slot frees when the handler is done, before its report: the
            # report then claims the job that takes its place in the same request,
            # after the coordinator applied it. Unbatched, only once the report is
            # answered: a claim sent before it lands would find the agent full.
            nonlocal slot
            if slot:
                slot = False
                self._busy -= 1
                self._slot_freed.set()

        try:
            try:
                action, value, retryable = await handler_task
            except asyncio.CancelledError:
                task = asyncio.current_task()
                if task is not None and task.cancelling():
                    raise  # cancelled from outside: this task itself is going away
                if job.cancel_reason is None:
                    # Not the worker's doing: the handler cancelled its own task (it
                    # could end this run with no report, its lease held by nobody).
                    action, value, retryable = "fail", _CANCELLED_BY_HANDLER, True
                else:
                    action, value, retryable = "release", None, False
            beating.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await beating
            if self._reporter is not None:
                free_slot()
            if job.cancel_reason in _REPORTS_NONE:
                self.stats["lost"] += 1
                self.log.warning(
                    "agent.job.abandoned", job_id=job.id, epoch=job.epoch, reason=job.cancel_reason
                )
                return
            if job.cancel_reason is not None and action != "complete":
                action = "release"  # cancelled or shut down: give it back, uncounted
            await self._report(job, action, value, retryable)
        finally:
            beating.cancel()
            handler_task.cancel()
            self._tasks.pop(job.id, None)
            self.running.pop(job.id, None)
            free_slot()

    async def _call_handler(self, job: Job) -> tuple[str, Any, bool]:
        handler = self.handlers.get(job.kind)
        if handler is None:
            return "fail", f"no handler for kind {job.kind!r} on this agent", True
        try:
            if inspect.iscoroutinefunction(handler):
                result = await handler(job)
            else:
                # Not asyncio.to_thread: the executor's threads are joined at exit, so a
                # handler outliving the grace period would keep the agent up (threads.py).
                result = await run_in_daemon_thread(handler, job, name=f"handler-{job.id}")
                if inspect.isawaitable(result):
                    result = await result
        except JobFailed as exc:
            return "fail", exc.message, exc.retryable
        except asyncio.CancelledError as exc:
            task = asyncio.current_task()
            if task is not None and task.cancelling():
                raise  # the worker stops the handler (``_cancel``): ``_run_job`` reports it
            # Nobody cancelled this task: the handler awaited something cancelled (a sub-task
            # or a future a library cancelled) or raised it itself. Left to propagate, the
            # job task took it for its own cancellation and the run ended with no report,
            # its lease held by nobody until it expired; it is the handler's failure.
            return self._handler_raised(job, exc)
        except GeneratorExit:
            raise  # this coroutine being closed; not the handler's outcome
        except BaseException as exc:
            # SystemExit and KeyboardInterrupt too: raised by a handler (``sys.exit()`` in
            # a thread, ``raise SystemExit``) they are its failure, not the agent's. Left
            # to asyncio, they escape the event loop from the handler's task (the agent hung
            # with every lease expiring) or end the process silently with the job leased;
            # another BaseException ended the job task with no report.
            return self._handler_raised(job, exc)
        return "complete", result, False

    def _handler_raised(self, job: Job, exc: BaseException) -> tuple[str, Any, bool]:
        self.log.warning("agent.handler.raised", job_id=job.id, error_type=type(exc).__name__)
        return "fail", f"{type(exc).__name__}: {exc}", True

    async def _heartbeat_loop(self, job: Job, handler_task: asyncio.Task[Any]) -> None:
        beat = max(job.lease_seconds * self.heartbeat_fraction, _MIN_BEAT)
        interval = beat
        while True:
            await asyncio.sleep(self._until_beat(interval))
            interval = beat
            try:
                answer = await self._heartbeat(job, interval)
            except (CoordinatorUnavailable, ServerError):
                continue  # keep trying; a lease that expires meanwhile answers lease_lost
            except RequestRejected as exc:
                if exc.status == 413 and job.progress is not None:
                    self.log.warning("agent.job.progress_too_large", job_id=job.id)
                    job.progress = None  # the lease is fine; renew it without the progress
                    interval = _MIN_BEAT
                    continue
                self._cancel(job, CancelReason.LEASE_LOST, handler_task)
                return
            except LeaseLost:
                self._cancel(job, CancelReason.LEASE_LOST, handler_task)
                return
            except Unauthorized:
                self._cancel(job, CancelReason.UNAUTHORIZED, handler_task)
                return
            job.lease = answer.lease
            if answer.cancel_requested:
                self._cancel(job, CancelReason.CANCEL_REQUESTED, handler_task)
                return

    def _until_beat(self, interval: float) -> float:
        """Seconds to the next heartbeat: batched, the next point of a shared grid."""
        if self._reporter is None or interval <= _MIN_BEAT:
            return interval
        # Leases of one length renew at the same instants, so their heartbeats share a
        # request; a lease's first renewal may come up to one interval early.
        now = asyncio.get_running_loop().time()
        wait = interval - now % interval
        return wait if wait > interval / 4 else wait + interval

    async def _heartbeat(self, job: Job, retry_timeout: float) -> HeartbeatAnswer:
        if job.progress is not None:
            try:
                _check_json(job.progress)
            except RequestRejected:
                # Batched, it would sink every heartbeat of the request; alone, its own. Like
                # a progress too large, it is dropped and the lease renewed without it.
                self.log.warning("agent.job.progress_not_json", job_id=job.id)
                job.progress = None
        if self._reporter is None:
            return await self.client.heartbeat(
                job.id, job.epoch, progress=job.progress, retry_timeout=retry_timeout
            )
        report = Report(job_id=job.id, epoch=job.epoch, action="heartbeat", progress=job.progress)
        answer = await self._reporter.submit(report, retry_timeout=retry_timeout)
        raise_for_report(answer)
        assert answer.lease is not None  # an ok heartbeat always carries its lease
        return HeartbeatAnswer(lease=answer.lease, cancel_requested=answer.cancel_requested)

    async def _deliver(self, job: Job, action: str, value: Any, retryable: bool) -> None:
        """``_end``, retried while the lease may still be live; the shutdown ends the wait.

        A report that cannot reach the coordinator is not given up after one call's
        retry budget: dropped, its lease would expire and the job run again, though the
        coordinator, back in time, would have taken it (SPEC: no restart duplicates a
        job). Once the lease has surely expired (its ``expires_at`` as last renewed,
        plus ``_SKEW_MARGIN``) the report could only be refused, so it is given up.

        The end of the grace period (or a second ``stop()``) ends the wait: the retries
        of reports begun before it stop (a try in flight is their last); those begun
        after (the releases of jobs cancelled at its end) get one call's retries, ended
        the same way by a second ``stop()``; after that one, a single try each. The
        client stops the retries (``abort``), so the race costs no task per report.
        """
        loop = asyncio.get_running_loop()
        cut = self._report_abort()
        deadline: float | None = None  # known after a first failure: the hot path skips it
        while True:
            budget = self.client.retry_timeout if cut is not None else 0.0
            if deadline is not None:
                budget = min(budget, max(deadline - loop.time(), _REPORT_PAUSE))
            try:
                await self._end(job, action, value, retryable, budget, cut)
                return
            except CoordinatorUnavailable as exc:
                if cut is not self._grace_over or cut.is_set():
                    raise
                if deadline is None:
                    deadline = loop.time() + _seconds_until(job.lease.expires_at) + _SKEW_MARGIN
                if loop.time() >= deadline:
                    raise
                self.log.warning(
                    "agent.job.report_delayed",
                    job_id=job.id,
                    epoch=job.epoch,
                    action=action,
                    error=exc.message,
                )
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(cut.wait(), _REPORT_PAUSE)

    def _report_abort(self) -> asyncio.Event | None:
        """What ends a report's retries: the grace period's end, then a second ``stop()``."""
        if not self._grace_over.is_set():
            return self._grace_over
        if not self._hurry.is_set():
            return self._hurry
        return None

    async def _end(
        self,
        job: Job,
        action: str,
        value: Any,
        retryable: bool,
        retry_timeout: float,
        abort: asyncio.Event | None,
    ) -> None:
        """One complete, fail or release of ``job``: batched, or through its own endpoint."""
        error = str(value)[:_MAX_ERROR] if action == "fail" else None
        if action == "complete":
            _check_json(value)  # refused here: batched, it would sink the whole request
        if self._reporter is not None:
            report = Report(
                job_id=job.id,
                epoch=job.epoch,
                action=action,
                result=value if action == "complete" else None,
                error=error,
                retryable=retryable,
            )
            # Sent with the abort the reporter asks for then (``_report_abort``).
            raise_for_report(await self._reporter.submit(report, retry_timeout=retry_timeout))
        elif action == "complete":
            await self.client.complete(
                job.id, job.epoch, value, retry_timeout=retry_timeout, abort=abort
            )
        elif action == "fail":
            await self.client.fail(
                job.id,
                job.epoch,
                error or "",
                retryable=retryable,
                retry_timeout=retry_timeout,
                abort=abort,
            )
        else:
            await self.client.release(job.id, job.epoch, retry_timeout=retry_timeout, abort=abort)

    def _cancel(self, job: Job, reason: CancelReason, task: asyncio.Task[Any]) -> None:
        if job.cancel_reason is None:
            job.cancel_reason = reason
            self.log.info("agent.job.cancelling", job_id=job.id, epoch=job.epoch, reason=reason)
        job.cancelled.set()
        task.cancel()

    async def _report(
        self, job: Job, action: str, value: Any = None, retryable: bool = True
    ) -> None:
        """Send the run's one report; a rejection is logged, never retried as another report."""
        try:
            try:
                await self._deliver(job, action, value, retryable)
            except RequestRejected as exc:  # e.g. 413: the result is too large
                if action != "complete":
                    raise
                action, retryable = "fail", False
                await self._deliver(job, "fail", f"the result was rejected: {exc.message}", False)
        except AgentError as exc:
            self.stats["report_rejected"] += 1
            self.log.warning(
                "agent.job.report_rejected",
                job_id=job.id,
                epoch=job.epoch,
                action=action,
                error=exc.message,
            )
            return
        outcome = {"complete": "succeeded", "fail": "failed", "release": "released"}[action]
        self.stats[outcome] += 1
        self.log.info(
            f"agent.job.{outcome}", job_id=job.id, epoch=job.epoch, reason=job.cancel_reason
        )

    # -- stopping -----------------------------------------------------------------

    async def _drain(self) -> None:
        tasks = [entry.task for entry in self._tasks.values()]
        if tasks:
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(self.grace_seconds):
                    await _first(asyncio.wait(tasks), self._hurry.wait())
        self._grace_over.set()
        await self._cancel_all(CancelReason.SHUTDOWN)

    async def _cancel_all(self, reason: CancelReason) -> None:
        while self._tasks:
            entries = list(self._tasks.values())
            for entry in entries:
                # The job task then sees the handler cancelled and reports (release) itself.
                self._cancel(entry.job, reason, entry.handler)
            await asyncio.gather(*(entry.task for entry in entries), return_exceptions=True)


def _seconds_until(when: datetime) -> float:
    return (when - datetime.now(UTC)).total_seconds()


def _check_json(value: Any) -> None:
    """``RequestRejected`` for a result JSON cannot encode, as the coordinator would refuse it.

    With the encoder that sends it (NaN and ±∞ refused): ``json.dumps`` let a NaN
    through, and then the whole batched request failed to encode.
    """
    try:
        encode(value)
    except (TypeError, ValueError) as exc:
        raise RequestRejected(f"the result is not JSON: {exc}", status=422) from exc


@dataclass(frozen=True, slots=True)
class _Running:
    job: Job
    task: asyncio.Task[None]
    handler: asyncio.Task[tuple[str, Any, bool]]


def _fatal(task: asyncio.Task[None]) -> BaseException:
    exc = task.exception()
    assert exc is not None
    return exc


async def _first(*aws: Any) -> None:
    """Wait until the first of ``aws`` finishes; cancel the others (not tasks passed in)."""
    tasks = [a if isinstance(a, asyncio.Task) else asyncio.ensure_future(a) for a in aws]
    owned = [t for t, a in zip(tasks, aws, strict=True) if t is not a]
    try:
        await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for task in owned:
            task.cancel()
