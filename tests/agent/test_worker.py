"""The Worker against the coordinator app in-process: runs, reports, cancels, stops."""

from __future__ import annotations

import asyncio
import signal
import subprocess
import sys
import threading
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import pytest
from fleet_agent import (
    AgentClient,
    CancelReason,
    CoordinatorUnavailable,
    Job,
    JobFailed,
    Report,
    Unauthorized,
    Worker,
)
from fleet_agent.reporter import Reporter

from tests.support.served import free_port

from .conftest import Fleet, eventually


@pytest.fixture(autouse=True, params=[True, False], ids=["batched", "single"])
def batched(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> bool:
    """Every worker test runs with batched reports (the default) and with single endpoints."""
    defaults = Worker.__init__.__kwdefaults__
    assert defaults is not None
    monkeypatch.setitem(defaults, "batch_reports", request.param)
    return bool(request.param)


@asynccontextmanager
async def working(worker: Worker) -> AsyncIterator[asyncio.Task[None]]:
    """Run ``worker`` in a task; stop it and wait for it on exit."""
    task = asyncio.create_task(worker.run())
    try:
        await asyncio.wait_for(_connected_or_done(worker, task), 10)
        yield task
    finally:
        worker.stop()
        await asyncio.wait_for(asyncio.gather(task, return_exceptions=True), 20)


async def _connected_or_done(worker: Worker, task: asyncio.Task[None]) -> None:
    connected = asyncio.ensure_future(worker.connected.wait())
    await asyncio.wait({connected, task}, return_when=asyncio.FIRST_COMPLETED)
    connected.cancel()


class Blocking:
    """A handler that runs until it is cancelled, recording the job's cancel reason."""

    def __init__(self) -> None:
        self.started = asyncio.Event()
        self.reasons: list[CancelReason | None] = []

    async def __call__(self, job: Job) -> None:
        self.started.set()
        try:
            await asyncio.Event().wait()  # never set: only cancellation ends it
        finally:
            self.reasons.append(job.cancel_reason)


def outcomes(job: dict[str, Any]) -> list[str]:
    """The outcomes of a job's runs, oldest first."""
    return [run["outcome"] for run in job["runs"]]


async def test_worker_runs_every_job_with_at_most_concurrency_at_once(fleet: Fleet) -> None:
    """Twelve jobs all succeed with their handler's result, never more than three at once."""
    _, token = await fleet.register(capacity=5)
    ids = [await fleet.enqueue(payload={"n": n}) for n in range(12)]
    now = peak = 0

    async def handler(job: Job) -> dict[str, int]:
        nonlocal now, peak
        now += 1
        peak = max(peak, now)
        await asyncio.sleep(0.02)  # the work itself: jobs overlap only if they take time
        now -= 1
        return {"double": job.payload["n"] * 2}

    client, _ = fleet.client(token)
    async with client:
        worker = Worker(client, {"test": handler}, concurrency=3, wait_seconds=0.5)
        async with working(worker):
            await eventually(lambda: worker.stats["succeeded"] == 12)
    for n, job_id in enumerate(ids):
        job = await fleet.job(job_id)
        assert (job["status"], job["result"], outcomes(job)) == (
            "succeeded",
            {"double": n * 2},
            ["succeeded"],
        )
    assert peak == 3


async def test_handler_errors_fail_the_job_retryable_unless_said_otherwise(fleet: Fleet) -> None:
    """An exception requeues the job with its message; JobFailed(retryable=False) fails it."""
    _, token = await fleet.register(capacity=2)
    flaky = await fleet.enqueue(kind="flaky")
    broken = await fleet.enqueue(kind="broken")

    async def raise_value_error(job: Job) -> None:
        raise ValueError("disk full")

    async def give_up(job: Job) -> None:
        raise JobFailed("input is corrupt", retryable=False)

    client, _ = fleet.client(token)
    async with client:
        handlers = {"flaky": raise_value_error, "broken": give_up}
        worker = Worker(client, handlers, concurrency=2, wait_seconds=0.2)
        async with working(worker):
            await eventually(lambda: worker.stats["failed"] >= 2)
    first = await fleet.job(flaky)
    assert first["status"] == "queued"  # requeued with backoff
    assert first["last_error"] == "ValueError: disk full"
    second = await fleet.job(broken)
    assert (second["status"], second["last_error"]) == ("failed", "input is corrupt")


@pytest.mark.parametrize("exit_type", [SystemExit, KeyboardInterrupt])
async def test_a_handler_raising_an_exit_fails_its_attempt_and_the_worker_goes_on(
    fleet: Fleet, exit_type: type[BaseException]
) -> None:
    """SystemExit / KeyboardInterrupt from a handler (async or in a thread) is its failure.

    Before, an async handler's ``raise SystemExit(3)`` escaped the event loop (the agent
    hung, its leases expiring), and ``sys.exit(0)`` in a thread ended the process.
    """
    _, token = await fleet.register(capacity=2)
    in_task = await fleet.enqueue(kind="exits", max_attempts=1)
    in_thread = await fleet.enqueue(kind="exits_in_thread", max_attempts=1)

    async def exits(job: Job) -> None:
        raise exit_type(3)

    def exits_in_thread(job: Job) -> None:
        raise exit_type(0)  # as sys.exit(0) does

    client, _ = fleet.client(token)
    async with client:
        handlers = {"exits": exits, "exits_in_thread": exits_in_thread, "test": lambda job: "ok"}
        worker = Worker(client, handlers, concurrency=2, wait_seconds=0.2)
        async with working(worker) as task:
            await eventually(lambda: worker.stats["failed"] == 2)
            after = await fleet.enqueue()  # the worker goes on claiming and running
            await eventually(lambda: worker.stats["succeeded"] == 1)
            assert not task.done()
    name = exit_type.__name__
    for job_id, code in ((in_task, 3), (in_thread, 0)):
        job = await fleet.job(job_id)
        assert (job["status"], job["last_error"]) == ("failed", f"{name}: {code}")
    assert await fleet.status(after) == "succeeded"


_NOT_BY_THE_WORKER = "the handler's task was cancelled, not by the worker"


class _Stray(BaseException):
    """A BaseException outside Exception, SystemExit and KeyboardInterrupt."""


async def _awaits_a_cancelled_subtask(job: Job) -> None:
    inner = asyncio.ensure_future(asyncio.sleep(60))  # e.g. a library's sub-task
    await asyncio.sleep(0)
    inner.cancel()
    await inner


async def _raises_cancelled(job: Job) -> None:
    raise asyncio.CancelledError("gave up")


async def _cancels_its_own_task(job: Job) -> None:
    task = asyncio.current_task()
    assert task is not None
    task.cancel()
    await asyncio.sleep(60)


async def _raises_stray(job: Job) -> None:
    raise _Stray("odd")


def _raises_stray_in_thread(job: Job) -> None:
    raise _Stray("odd in a thread")


@pytest.mark.parametrize(
    ("handler", "error"),
    [
        (_awaits_a_cancelled_subtask, "CancelledError: "),
        (_raises_cancelled, "CancelledError: gave up"),
        (_cancels_its_own_task, f"CancelledError: {_NOT_BY_THE_WORKER}"),
        (_raises_stray, "_Stray: odd"),
        (_raises_stray_in_thread, "_Stray: odd in a thread"),
    ],
    ids=["subtask", "raised", "own-task", "base-exception", "base-exception-thread"],
)
async def test_a_handler_ending_cancelled_or_with_a_base_exception_fails_its_attempt(
    fleet: Fleet, handler: Any, error: str
) -> None:
    """A CancelledError the worker did not cause, or any BaseException, fails the attempt.

    Before, the run ended with no report at all: no heartbeat, not released at stop, the
    job leased until its lease expired (the attempt burnt as lease_expired).
    """
    _, token = await fleet.register(capacity=2)
    # A lease far longer than the test: only a report can end the run in time.
    odd = await fleet.enqueue(kind="odd", max_attempts=1, lease_seconds=300)
    client, _ = fleet.client(token)
    async with client:
        worker = Worker(client, {"odd": handler, "test": lambda job: "ok"}, wait_seconds=0.2)
        async with working(worker) as task:
            await eventually(lambda: worker.stats["failed"] == 1)
            after = await fleet.enqueue()  # the slot is free and the worker goes on
            await eventually(lambda: worker.stats["succeeded"] == 1)
            assert not task.done()
    job = await fleet.job(odd)
    assert (job["status"], job["last_error"]) == ("failed", error)
    assert outcomes(job) == ["failed"]
    assert await fleet.status(after) == "succeeded"


async def test_concurrency_above_one_claims_limit_is_filled_by_more_claims(fleet: Fleet) -> None:
    """--concurrency 105: no claim asks for more than 100 jobs (SPEC), and all 105 run at once.

    Before, the first claim asked for 105 and the coordinator refused it (422): run() raised.
    """
    _, token = await fleet.register(capacity=105)
    r = await fleet.admin.post(
        "/v1/jobs/batch", json={"jobs": [{"kind": "test", "lease_seconds": 30}] * 105}
    )
    assert r.status_code == 201, r.text
    all_started = asyncio.Event()
    started = 0

    async def handler(job: Job) -> str:
        nonlocal started
        started += 1
        if started == 105:
            all_started.set()
        await all_started.wait()  # returns only once all 105 run at the same time
        return "ok"

    client, _ = fleet.client(token)
    async with client:
        worker = Worker(client, {"test": handler}, concurrency=105, wait_seconds=0.2)
        async with working(worker) as task:
            await eventually(lambda: worker.stats["succeeded"] == 105 or task.done())
            assert not task.done()
    assert worker.stats["succeeded"] == 105


async def test_a_job_of_an_unknown_kind_fails_with_a_clear_error(fleet: Fleet) -> None:
    """No handler for the kind: the attempt fails naming the kind, the worker keeps going."""
    _, token = await fleet.register()
    job_id = await fleet.enqueue(kind="mystery", max_attempts=1)
    client, _ = fleet.client(token)
    async with client:
        worker = Worker(client, {}, wait_seconds=0.2)
        async with working(worker):
            await eventually(lambda: worker.stats["failed"] == 1)
    job = await fleet.job(job_id)
    assert job["status"] == "failed"
    assert "no handler for kind 'mystery'" in job["last_error"]


async def test_sync_handlers_run_in_a_thread(fleet: Fleet) -> None:
    """A plain ``def`` handler works and its return value is the result."""
    _, token = await fleet.register()
    job_id = await fleet.enqueue(payload={"word": "hi"})
    client, _ = fleet.client(token)
    async with client:
        worker = Worker(client, {"test": lambda job: job.payload["word"].upper()}, wait_seconds=0.2)
        async with working(worker):
            await eventually(lambda: worker.stats["succeeded"] == 1)
    assert (await fleet.job(job_id))["result"] == "HI"


async def test_cancel_request_reaches_the_handler_and_the_job_ends_cancelled(
    fleet: Fleet,
) -> None:
    """An admin cancel stops the running handler at the next heartbeat; one run, cancelled."""
    _, token = await fleet.register()
    job_id = await fleet.enqueue(lease_seconds=0.6)
    started = asyncio.Event()
    seen: list[CancelReason | None] = []

    async def forever(job: Job) -> None:
        started.set()
        try:
            await asyncio.Event().wait()
        finally:
            seen.append(job.cancel_reason)

    client, _ = fleet.client(token)
    async with client:
        worker = Worker(client, {"test": forever}, wait_seconds=0.2)
        async with working(worker):
            await asyncio.wait_for(started.wait(), 5)
            r = await fleet.admin.post(f"/v1/jobs/{job_id}/cancel")
            assert r.json()["cancel_requested"] is True
            await eventually(lambda: worker.stats["released"] == 1, within=2)
    job = await fleet.job(job_id)
    assert seen == [CancelReason.CANCEL_REQUESTED]
    assert (job["status"], outcomes(job)) == ("cancelled", ["cancelled"])


async def test_a_lost_lease_stops_the_handler_and_nothing_is_reported(fleet: Fleet) -> None:
    """Heartbeats cut off until the lease is reaped: the handler is cancelled, no report sent."""
    _, token = await fleet.register()
    job_id = await fleet.enqueue(lease_seconds=0.5, max_attempts=1)
    slow = Blocking()

    client, transport = fleet.client(token, retry_timeout=0.05)
    transport.failing["heartbeat"] = -1
    async with client:
        worker = Worker(client, {"test": slow}, wait_seconds=0.2)
        async with working(worker):
            await asyncio.wait_for(slow.started.wait(), 5)
            await eventually(lambda: _status_is(fleet, job_id, "failed"))
            transport.failing.clear()  # the next heartbeat reaches the coordinator: 409
            await eventually(lambda: worker.stats["lost"] == 1)
            reports = sum(transport.seen.get(op, 0) for op in ("complete", "fail", "release"))
    assert slow.reasons == [CancelReason.LEASE_LOST]
    assert reports == 0
    assert outcomes(await fleet.job(job_id)) == ["lease_expired"]


async def _status_is(fleet: Fleet, job_id: str, status: str) -> bool:
    return await fleet.status(job_id) == status


async def test_stop_finishes_running_jobs_and_releases_jobs_claimed_meanwhile(
    fleet: Fleet,
) -> None:
    """After stop(): the running job completes in the grace period; a job claimed by the
    long-poll already in flight is released unstarted (attempt not counted)."""
    _, token = await fleet.register(capacity=2)
    running = await fleet.enqueue()
    started, finish = asyncio.Event(), asyncio.Event()
    calls: list[str] = []

    async def handler(job: Job) -> str:
        calls.append(job.id)
        started.set()
        await finish.wait()
        return "done"

    client, transport = fleet.client(token)
    async with client:
        worker = Worker(client, {"test": handler}, concurrency=2, wait_seconds=3)
        task = asyncio.create_task(worker.run())
        await asyncio.wait_for(started.wait(), 5)
        await transport.wait_seen("claims", 2)  # the long-poll for the free slot is in flight
        worker.stop()
        late = await fleet.enqueue()
        await eventually(lambda: worker.stats["released"] == 1)
        finish.set()
        await asyncio.wait_for(task, 10)
    assert calls == [running]
    assert (await fleet.job(running))["status"] == "succeeded"
    job = await fleet.job(late)
    assert (job["status"], job["attempts"], outcomes(job)) == ("queued", 0, ["released"])


async def _stop_while_running(
    fleet: Fleet, grace_seconds: float, stops: int
) -> tuple[Blocking, str]:
    """Run a worker on one never-ending job, call stop() ``stops`` times once it started."""
    _, token = await fleet.register()
    job_id = await fleet.enqueue()
    stubborn = Blocking()
    client, _ = fleet.client(token)
    async with client:
        worker = Worker(client, {"test": stubborn}, wait_seconds=0.2, grace_seconds=grace_seconds)
        task = asyncio.create_task(worker.run())
        await asyncio.wait_for(stubborn.started.wait(), 5)
        for _ in range(stops):
            worker.stop()
        await asyncio.wait_for(task, 5)
    return stubborn, job_id


async def test_jobs_still_running_after_the_grace_period_are_cancelled_and_released(
    fleet: Fleet,
) -> None:
    """A handler that outlives the grace period is cancelled (reason shutdown) and released."""
    stubborn, job_id = await _stop_while_running(fleet, grace_seconds=0.1, stops=1)
    assert stubborn.reasons == [CancelReason.SHUTDOWN]
    job = await fleet.job(job_id)
    assert (job["status"], job["attempts"], outcomes(job)) == ("queued", 0, ["released"])


async def test_a_thread_handler_outliving_the_grace_period_is_released_and_left_behind(
    fleet: Fleet,
) -> None:
    """A sync handler still running when the grace period ends: run() returns with its job
    released; the handler's thread, a daemon the process will not wait for, runs on and
    what it returns later is dropped (the job stays released, nothing more is reported).

    Before, the thread was the default executor's, which the process waits for at exit.
    """
    _, token = await fleet.register()
    job_id = await fleet.enqueue(lease_seconds=30)
    started, proceed, returned = threading.Event(), threading.Event(), threading.Event()
    threads: list[threading.Thread] = []

    def stuck(job: Job) -> str:
        threads.append(threading.current_thread())
        started.set()
        try:
            proceed.wait(10)  # until the test lets it go (10 s: a guard, not a wait)
            return "too late"
        finally:
            returned.set()

    client, transport = fleet.client(token)
    try:
        async with client:
            worker = Worker(client, {"test": stuck}, wait_seconds=0.2, grace_seconds=0.1)
            task = asyncio.create_task(worker.run())
            assert await asyncio.to_thread(started.wait, 5)
            worker.stop()
            await asyncio.wait_for(task, 5)
            [thread] = threads
            assert thread.is_alive()
            assert thread.daemon
            proceed.set()
            assert await asyncio.to_thread(returned.wait, 5)
    finally:
        proceed.set()
    assert (worker.stats["released"], worker.stats["succeeded"]) == (1, 0)
    assert transport.seen.get("complete", 0) == 0
    job = await fleet.job(job_id)
    assert (job["status"], job["attempts"], outcomes(job)) == ("queued", 0, ["released"])


async def test_a_report_that_cannot_connect_is_retried_and_lands_once(fleet: Fleet) -> None:
    """Two refused connections on complete are retried; the job succeeds with one run."""
    _, token = await fleet.register()
    job_id = await fleet.enqueue()
    client, transport = fleet.client(token)
    transport.failing["complete"] = 2
    async with client:
        worker = Worker(client, {"test": lambda job: "ok"}, wait_seconds=0.2)
        async with working(worker):
            await eventually(lambda: worker.stats["succeeded"] == 1)
    assert transport.seen["complete"] == 3
    job = await fleet.job(job_id)
    assert (job["status"], outcomes(job)) == ("succeeded", ["succeeded"])


async def test_a_report_outlasting_its_retry_budget_is_retried_while_the_lease_lives(
    fleet: Fleet,
) -> None:
    """An outage longer than a call's retry budget does not drop the completion.

    Before, the report was given up after ``retry_timeout`` (30 s by default; 0.3 s
    here) and the job ran again once its lease expired, though the coordinator was
    back long before.
    """
    _, token = await fleet.register()
    job_id = await fleet.enqueue(lease_seconds=10.0)
    client, transport = fleet.client(token, retry_timeout=0.3, retry_wait_max=0.05)
    transport.failing["complete"] = -1  # down until cleared
    async with client:
        worker = Worker(client, {"test": lambda job: "ok"}, wait_seconds=0.2)
        async with working(worker):
            # Tries well past the 0.3 s budget (each waits ≥ 0.05 s): still trying.
            await transport.wait_seen("complete", 20)
            assert worker.stats["report_rejected"] == 0
            transport.failing.pop("complete")  # the coordinator is back
            await eventually(lambda: worker.stats["succeeded"] == 1)
    job = await fleet.job(job_id)
    assert (job["status"], job["result"], outcomes(job)) == ("succeeded", "ok", ["succeeded"])


async def test_the_end_of_the_grace_period_ends_a_report_still_retrying(fleet: Fleet) -> None:
    """stop() while a report retries: run() returns once the grace period is over."""
    _, token = await fleet.register()
    job_id = await fleet.enqueue(lease_seconds=30.0)
    client, transport = fleet.client(token, retry_timeout=30.0, retry_wait_max=0.05)
    transport.failing["complete"] = -1
    async with client:
        worker = Worker(client, {"test": lambda job: "ok"}, wait_seconds=0.2, grace_seconds=0.2)
        task = asyncio.create_task(worker.run())
        await transport.wait_seen("complete", 2)
        worker.stop()
        await asyncio.wait_for(task, 5)  # not the 30 s budget, nor the lease's 30 s
    assert worker.stats["report_rejected"] == 1
    assert await fleet.status(job_id) == "leased"  # its lease expires: the job is not lost


async def test_a_revoked_agent_stops_with_unauthorized(fleet: Fleet) -> None:
    """Deleting the agent makes run() raise Unauthorized; its running handler is cancelled."""
    agent_id, token = await fleet.register()
    await fleet.enqueue()
    forever = Blocking()

    client, _ = fleet.client(token)
    async with client:
        worker = Worker(client, {"test": forever}, wait_seconds=0.1)
        task = asyncio.create_task(worker.run())
        await asyncio.wait_for(forever.started.wait(), 5)
        assert (await fleet.admin.delete(f"/v1/agents/{agent_id}")).status_code == 204
        with pytest.raises(Unauthorized):
            await asyncio.wait_for(task, 10)
    assert forever.reasons == [CancelReason.UNAUTHORIZED]


async def test_an_unreachable_coordinator_fails_the_first_claim_fast() -> None:
    """Nothing listens at the URL: run() raises CoordinatorUnavailable after the start-up budget."""
    async with AgentClient(f"http://127.0.0.1:{free_port()}", "fa.x.y") as client:
        worker = Worker(client, {}, startup_timeout=0.3)
        with pytest.raises(CoordinatorUnavailable, match="cannot reach the coordinator"):
            await asyncio.wait_for(worker.run(), 10)


async def test_stop_ends_the_start_up_claims_retries_at_once(fleet: Fleet) -> None:
    """stop() while the first claim retries (20 s budget): run() returns at once, no error.

    Before, it waited out the start-up budget, then raised CoordinatorUnavailable (exit 1).
    """
    _, token = await fleet.register()
    client, transport = fleet.client(token, retry_wait_max=10.0)
    transport.failing["claims"] = -1  # unreachable from the start
    async with client:
        worker = Worker(client, {}, startup_timeout=20.0)
        task = asyncio.create_task(worker.run())
        await transport.wait_seen("claims", 6)  # retrying, the waits grown to ~1.6 s
        worker.stop()
        await asyncio.wait_for(task, 1.5)
    assert not worker.connected.is_set()


async def test_stop_ends_an_idle_agents_claim_retries_at_once(fleet: Fleet) -> None:
    """Connected, then the coordinator goes away: stop() does not wait out the 30 s retries."""
    _, token = await fleet.register()
    client, transport = fleet.client(token, retry_timeout=30.0, retry_wait_max=10.0)
    async with client:
        worker = Worker(client, {}, wait_seconds=0.1)
        task = asyncio.create_task(worker.run())
        await asyncio.wait_for(worker.connected.wait(), 5)
        transport.failing["claims"] = -1
        seen = transport.seen["claims"]
        await transport.wait_seen("claims", seen + 6)
        worker.stop()
        await asyncio.wait_for(task, 1.5)


async def test_progress_too_large_is_dropped_and_the_lease_kept(fleet: Fleet) -> None:
    """A 413 on a heartbeat's progress renews the lease without it; the job still succeeds."""
    _, token = await fleet.register()
    job_id = await fleet.enqueue(lease_seconds=0.6)
    client, transport = fleet.client(token)

    async def chatty(job: Job) -> str:
        job.progress = "x" * 300_000
        await transport.wait_seen("heartbeat", 3)
        return "done"

    async with client:
        worker = Worker(client, {"test": chatty}, wait_seconds=0.2)
        async with working(worker):
            await eventually(lambda: worker.stats["succeeded"] == 1)
    job = await fleet.job(job_id)
    assert (job["status"], outcomes(job)) == ("succeeded", ["succeeded"])


async def test_a_progress_json_cannot_carry_is_dropped_and_no_lease_is_lost(fleet: Fleet) -> None:
    """A NaN progress renews its lease without it and sinks none of the heartbeats it
    would share a request with: both jobs outlive several lease lengths and succeed."""
    _, token = await fleet.register(capacity=2)
    ids = [await fleet.enqueue(lease_seconds=0.6, payload={"n": n}) for n in range(2)]
    client, transport = fleet.client(token)

    async def handler(job: Job) -> str:
        job.progress = {"ratio": float("nan")} if job.payload["n"] == 0 else {"ratio": 0.5}
        await transport.wait_seen("heartbeat", 6)
        return "done"

    async with client:
        worker = Worker(client, {"test": handler}, concurrency=2, wait_seconds=0.2)
        async with working(worker):
            await eventually(lambda: worker.stats["succeeded"] == 2)
    for job_id in ids:
        job = await fleet.job(job_id)
        assert (job["status"], outcomes(job)) == ("succeeded", ["succeeded"])


async def test_a_second_stop_ends_the_grace_period_at_once(fleet: Fleet) -> None:
    """stop() twice (Ctrl-C twice): the running job is released without waiting out grace."""
    _, job_id = await _stop_while_running(fleet, grace_seconds=60, stops=2)
    assert (await fleet.job(job_id))["status"] == "queued"


async def test_a_second_stop_cuts_a_long_poll_in_flight(fleet: Fleet) -> None:
    """stop() twice while a 30 s claim long-poll is in flight: run() returns at once.

    Before, the first stop() let the poll finish (as documented) and the second did not
    cut it: the agent stayed up until the coordinator answered, up to ``wait_seconds``.
    """
    _, token = await fleet.register()
    job_id = await fleet.enqueue()
    client, transport = fleet.client(token)
    async with client:
        worker = Worker(client, {"test": lambda job: "ok"}, wait_seconds=30)
        task = asyncio.create_task(worker.run())
        await eventually(lambda: worker.stats["succeeded"] == 1)
        await transport.wait_seen("claims", 2)  # the next claim, long-polling an empty queue
        worker.stop()
        worker.stop()
        await asyncio.wait_for(task, 2)  # not the poll's 30 s
    assert await fleet.status(job_id) == "succeeded"


def test_the_agent_package_does_not_import_the_coordinator() -> None:
    """Agents install only fleet-agent: importing it (CLI included) loads no fleet_coordinator."""
    code = "import sys, fleet_agent.cli; sys.exit('fleet_coordinator' in sys.modules)"
    assert subprocess.run([sys.executable, "-c", code], check=False).returncode == 0


async def test_batched_reports_carry_the_next_claim(fleet: Fleet, batched: bool) -> None:
    """Batched, a job's completion claims its successor: few claims of their own, all succeed."""
    _, token = await fleet.register(capacity=3)
    for n in range(30):
        await fleet.enqueue(payload={"n": n})
    client, transport = fleet.client(token)
    async with client:
        worker = Worker(client, {"test": lambda job: job.payload["n"]}, concurrency=3)
        async with working(worker):
            await eventually(lambda: worker.stats["succeeded"] == 30)
    assert transport.seen["complete"] == 30
    if batched:
        # The first claim, and one whenever the queue looked empty to a batch's claim.
        assert transport.seen.get("claims", 0) <= 6, transport.seen
        assert transport.seen["reports"] <= 30
    else:
        assert transport.seen.get("reports", 0) == 0
        assert transport.seen["claims"] >= 10  # at most three jobs per claim


async def test_heartbeats_of_all_leases_share_requests(fleet: Fleet, batched: bool) -> None:
    """Four leases of one length renew on the same grid: several heartbeats per request."""
    _, token = await fleet.register(capacity=4)
    for _ in range(4):
        await fleet.enqueue(lease_seconds=0.6)
    slow = [Blocking() for _ in range(4)]
    started = 0

    async def handler(job: Job) -> None:
        nonlocal started
        started += 1
        await slow[started - 1](job)

    client, transport = fleet.client(token)
    async with client:
        worker = Worker(client, {"test": handler}, concurrency=4, grace_seconds=0)
        async with working(worker):
            await eventually(lambda: started == 4)
            await transport.wait_seen("heartbeat", 16)
    if batched:
        beat_requests = transport.seen["reports"] - 1  # the last one releases the four jobs
        assert beat_requests * 2 <= transport.seen["heartbeat"], transport.seen
    else:
        assert transport.seen.get("reports", 0) == 0


async def test_a_job_reported_twice_in_one_window_goes_out_in_two_requests(
    fleet: Fleet,
) -> None:
    """A heartbeat and the completion of one job, ready together, never share a request.

    One request naming a job twice is refused whole (422); the reporter sends the
    later report in the next request, and drops reports whose caller stopped waiting.
    """
    _, token = await fleet.register()
    await fleet.enqueue(lease_seconds=5)
    client, transport = fleet.client(token)
    async with client:
        [claimed] = await client.claim()
        job_id, epoch = claimed.job.id, claimed.lease.epoch
        reporter = Reporter(
            client, window=0.001, queues=[], reserve_slots=lambda: 0, claimed=lambda n, c: None
        )
        running = asyncio.create_task(reporter.run())
        try:
            dropped = reporter.submit(Report(job_id=job_id, epoch=epoch, action="heartbeat"))
            dropped.cancel()
            beat = reporter.submit(Report(job_id=job_id, epoch=epoch, action="heartbeat"))
            done = reporter.submit(Report(job_id=job_id, epoch=epoch, action="complete"))
            beat_answer, done_answer = await asyncio.wait_for(asyncio.gather(beat, done), 10)
        finally:
            running.cancel()
    assert (beat_answer.ok, beat_answer.status) == (True, "leased")
    assert (done_answer.ok, done_answer.status) == (True, "succeeded")
    assert transport.seen["reports"] == 2
    assert transport.seen["heartbeat"] == 1
    assert await fleet.status(job_id) == "succeeded"


async def test_with_no_handler_running_a_report_does_not_wait_the_window(fleet: Fleet) -> None:
    """No report can join the window when no handler runs, so the reporter sends at once.

    The window here is an hour: the answer arriving proves it was skipped.
    """
    _, token = await fleet.register()
    await fleet.enqueue()
    client, transport = fleet.client(token)
    async with client:
        [claimed] = await client.claim()
        reporter = Reporter(
            client,
            window=3600,
            queues=[],
            reserve_slots=lambda: 0,
            claimed=lambda n, c: None,
            handlers_running=lambda: 0,
        )
        running = asyncio.create_task(reporter.run())
        try:
            report = Report(job_id=claimed.job.id, epoch=claimed.lease.epoch, action="complete")
            answer = await asyncio.wait_for(reporter.submit(report), 10)
        finally:
            running.cancel()
    assert (answer.ok, answer.status) == (True, "succeeded")
    assert transport.seen["reports"] == 1
    assert await fleet.status(claimed.job.id) == "succeeded"


async def test_a_bad_result_or_a_long_error_fails_only_its_own_job(fleet: Fleet) -> None:
    """A result JSON cannot encode (an object, a NaN) and a 20,000-character error end
    only their own jobs: none of them sinks the batched request the others ride in."""
    _, token = await fleet.register(capacity=4)
    ids = [await fleet.enqueue(payload={"n": n}) for n in range(4)]

    together = asyncio.Barrier(4)  # the four finish together, in one report window

    async def handler(job: Job) -> Any:
        await together.wait()
        if job.payload["n"] == 0:
            return {"not json": object()}
        if job.payload["n"] == 1:
            raise JobFailed("x" * 20_000, retryable=False)
        if job.payload["n"] == 2:
            return {"ratio": float("nan")}
        return "fine"

    client, _ = fleet.client(token)
    async with client:
        worker = Worker(client, {"test": handler}, concurrency=4, wait_seconds=0.2)
        async with working(worker):
            await eventually(lambda: worker.stats["failed"] + worker.stats["succeeded"] == 4)
    bad, long, nan, fine = [await fleet.job(job_id) for job_id in ids]
    assert bad["status"] == "failed"
    assert "not JSON" in bad["last_error"]
    assert (long["status"], len(long["last_error"])) == ("failed", 10_000)
    assert nan["status"] == "failed"
    assert "not JSON" in nan["last_error"]
    assert (fine["status"], fine["result"]) == ("succeeded", "fine")


async def test_other_leases_keep_their_heartbeats_while_a_report_is_retried(
    fleet: Fleet,
) -> None:
    """A completion that cannot land is retried without holding up the other leases'
    heartbeats: the job still running keeps its lease and succeeds with one run.

    Before, batched, the retried request held the reporter (one request at a time) for
    its whole retry budget: the other job's heartbeats waited behind it and its lease
    expired while its handler ran on.
    """
    _, token = await fleet.register(capacity=2)
    quick = await fleet.enqueue(kind="quick", lease_seconds=30.0)
    slow_id = await fleet.enqueue(kind="slow", lease_seconds=0.6, max_attempts=1)
    slow_started, finish = asyncio.Event(), asyncio.Event()

    async def quick_handler(job: Job) -> str:
        await slow_started.wait()  # ends while the slow one runs
        return "quick"

    async def slow_handler(job: Job) -> str:
        slow_started.set()
        await finish.wait()
        return "slow"

    client, transport = fleet.client(token, retry_timeout=30.0, retry_wait_max=0.05)
    transport.failing["complete"] = -1  # every request carrying a completion is refused
    async with client:
        handlers = {"quick": quick_handler, "slow": slow_handler}
        worker = Worker(client, handlers, concurrency=2, wait_seconds=0.2)
        async with working(worker):
            await asyncio.wait_for(slow_started.wait(), 5)
            # Each retry waits at least 0.05 s: 24 tries outlast the 0.6 s lease twice over.
            await transport.wait_seen("complete", 24)
            assert (await fleet.job(slow_id))["lease"] is not None
            transport.failing.pop("complete")
            finish.set()
            await eventually(lambda: worker.stats["succeeded"] == 2)
    assert worker.stats["lost"] == 0
    for job_id, result in ((quick, "quick"), (slow_id, "slow")):
        job = await fleet.job(job_id)
        assert (job["status"], job["result"], outcomes(job)) == ("succeeded", result, ["succeeded"])


async def test_run_with_signals_puts_back_the_handlers_it_found(fleet: Fleet) -> None:
    """``run(handle_signals=True)`` answers SIGTERM and SIGINT while it runs, then puts back
    the handlers that were there before, here "ignore" as ``fleet-agent`` sets them.

    Before, it left both at their defaults: a second SIGTERM landing as ``fleet-agent``
    finished (after the worker, before the process's end) killed it, exit status -15.
    """
    _, token = await fleet.register()
    before = {sig: signal.getsignal(sig) for sig in (signal.SIGTERM, signal.SIGINT)}
    try:
        for sig in before:
            signal.signal(sig, signal.SIG_IGN)
        client, _ = fleet.client(token)
        async with client:
            worker = Worker(client, {}, wait_seconds=0.1)
            task = asyncio.create_task(worker.run(handle_signals=True))
            await asyncio.wait_for(worker.connected.wait(), 10)
            signal.raise_signal(signal.SIGTERM)  # the loop's handler: stop()
            await asyncio.wait_for(task, 10)
        assert signal.getsignal(signal.SIGTERM) == signal.SIG_IGN
        assert signal.getsignal(signal.SIGINT) == signal.SIG_IGN
    finally:
        for sig, handler in before.items():
            signal.signal(sig, handler)
