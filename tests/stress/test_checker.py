"""The history checker passes a good history and fails each kind of fabricated bad one."""

from __future__ import annotations

import asyncio
import time
from typing import Any

import httpx
import pytest
from fleet_agent import CoordinatorUnavailable, Report

from .history import Bulked, Claim, History, Violation, Write, check
from .workload import Plan, Workload, _Agent, _CountingTransport, _RecordingClient

LEASE = 2.0


def _run(epoch: int, agent: str, at: float, outcome: str, ended: float | None) -> dict[str, Any]:
    return {"epoch": epoch, "agent_id": agent, "claimed_at": at, "outcome": outcome, "ended": ended}


def _claim(job: str, epoch: int, agent: str, at: float) -> Claim:
    return Claim(job, epoch, agent, at, at + LEASE, sent=at - 0.01, acked=at + 0.01)


def _good() -> tuple[History, dict[str, dict[str, Any] | None], dict[str, dict[str, int]]]:
    """Job j1: epoch 1 by a expires, epoch 2 by b heartbeats then completes. j2: queued."""
    h = History()
    h.enqueued.update(j1="q", j2="q")
    h.claim(_claim("j1", 1, "a", 100.0))
    h.claim(_claim("j1", 2, "b", 102.5))
    h.write(Write("j1", 2, "b", "heartbeat", 103.0, 103.0, 103.1, expires_at=105.0))
    h.write(Write("j1", 2, "b", "complete", 104.0, 104.0, 104.1, status="succeeded", token="t2"))
    final: dict[str, dict[str, Any] | None] = {
        "j1": {
            "status": "succeeded",
            "attempts": 2,
            "max_attempts": 3,
            "result": {"token": "t2"},
            "runs": [
                _run(1, "a", 100.0, "lease_expired", 102.2),
                _run(2, "b", 102.5, "succeeded", 104.0),
            ],
        },
        "j2": {"status": "queued", "attempts": 0, "max_attempts": 3, "result": None, "runs": []},
    }
    counts = {"q": {"queued": 1, "leased": 0, "succeeded": 1, "failed": 0, "cancelled": 0}}
    return h, final, counts


def _kinds(found: list[Violation]) -> set[str]:
    return {v.kind for v in found}


def test_a_consistent_history_has_no_violation() -> None:
    """Expiry, a new claim after it, heartbeat and one completion: nothing is reported."""
    h, final, counts = _good()
    assert check(h, final, counts) == []


def test_a_duplicate_epoch_is_reported() -> None:
    """Two acknowledged claims of one job with one epoch fail the check."""
    h, final, counts = _good()
    h.claim(_claim("j1", 2, "c", 103.5))
    assert "duplicate_epoch" in _kinds(check(h, final, counts))


def test_overlapping_leases_are_reported() -> None:
    """A claim acknowledged while the previous lease was still live fails the check."""
    h, final, counts = _good()
    h.claims["j1"][1] = _claim("j1", 2, "b", 101.0)  # epoch 1 lives until 102.0
    assert "overlapping_leases" in _kinds(check(h, final, counts))


def test_a_lease_whose_ending_write_was_in_doubt_may_have_ended_when_it_was_sent() -> None:
    """An unanswered release sent before the next claim explains an early next claim."""
    h, final, counts = _good()
    h.claims["j1"][1] = _claim("j1", 2, "b", 101.0)  # epoch 1 was acknowledged until 102.0
    assert "overlapping_leases" in _kinds(check(h, final, counts))
    h.doubtful_ends[("j1", 1)] = 100.5  # a release of epoch 1 was sent then, never answered
    assert check(h, final, counts) == []
    h.doubtful_ends[("j1", 1)] = 101.5  # ... but sent after the new claim: still an overlap
    assert "overlapping_leases" in _kinds(check(h, final, counts))


def test_a_lease_of_a_deleted_agent_may_have_ended_when_the_delete_was_sent() -> None:
    """Deleting an agent releases its leases: a next claim after the delete was sent is no
    overlap, whatever the agent's own late release of that lease was answered."""
    h, final, counts = _good()
    h.claims["j1"][1] = _claim("j1", 2, "b", 101.0)  # epoch 1 (agent "a") acked until 102.0
    # The killed agent's release of epoch 1, answered lease_lost: settled, no doubt left.
    h.doubtful_ends.pop(("j1", 1), None)
    assert "overlapping_leases" in _kinds(check(h, final, counts))
    h.deleted_agents["a"] = 100.5  # the admin's delete of "a" was sent then
    assert check(h, final, counts) == []
    h.deleted_agents["a"] = 101.5  # ... but sent after the new claim: still an overlap
    assert "overlapping_leases" in _kinds(check(h, final, counts))


def test_a_heartbeat_that_outlives_the_next_claim_is_an_overlap() -> None:
    """A renewal acknowledged to the old holder past the new claim's time fails the check."""
    h, final, counts = _good()
    h.write(Write("j1", 1, "a", "heartbeat", 101.5, 101.5, 101.6, expires_at=103.5))
    kinds = _kinds(check(h, final, counts))
    assert "overlapping_leases" in kinds


def test_a_stale_write_accepted_after_a_new_claim_is_reported() -> None:
    """An old epoch's write acknowledged after the new claim (either clock) fails the check."""
    h, final, counts = _good()
    h.write(Write("j1", 1, "a", "release", 102.6, 102.6, 102.7, status="queued"))
    assert "stale_write" in _kinds(check(h, final, counts))
    h, final, counts = _good()
    # Server time looks fine, but it was sent after the new claim was acknowledged.
    h.write(Write("j1", 1, "a", "heartbeat", 102.0, 102.6, 102.7, expires_at=102.4))
    assert "stale_write" in _kinds(check(h, final, counts))


def test_a_double_completion_is_reported() -> None:
    """Two acknowledged completions of one job fail the check."""
    h, final, counts = _good()
    h.write(Write("j1", 1, "a", "complete", 101.0, 101.0, 101.1, status="succeeded", token="t1"))
    assert "double_completion" in _kinds(check(h, final, counts))


def test_a_completion_no_agent_sent_is_reported() -> None:
    """A succeeded job whose result matches no completion attempt fails the check."""
    h, final, counts = _good()
    h.writes["j1"] = [w for w in h.writes["j1"] if w.op != "complete"]
    assert "phantom_completion" in _kinds(check(h, final, counts))
    h.doubtful_tokens.add("t2")  # a completion whose answer was lost explains it
    assert check(h, final, counts) == []


def test_a_lost_job_is_reported() -> None:
    """An acknowledged enqueue that is gone, or stuck unclaimable, fails the check."""
    h, final, counts = _good()
    final["j2"] = None
    assert "lost_job" in _kinds(check(h, final, counts))
    h, final, counts = _good()
    final["j2"] = {"status": "queued", "attempts": 3, "max_attempts": 3, "runs": []}
    assert "lost_job" in _kinds(check(h, final, counts))


def test_a_downgraded_terminal_job_is_reported() -> None:
    """A job whose acknowledged completion is not its final state fails the check."""
    h, final, counts = _good()
    job = final["j1"]
    assert job is not None
    job["status"] = "queued"
    counts["q"]["queued"], counts["q"]["succeeded"] = 2, 0
    assert "terminal_changed" in _kinds(check(h, final, counts))


@pytest.mark.parametrize(
    "runs",
    [
        [_run(1, "a", 100.0, "lease_expired", 102.2), _run(3, "b", 102.5, "succeeded", 104.0)],
        [_run(2, "b", 102.5, "succeeded", 104.0)],
    ],
    ids=["gap", "missing-first"],
)
def test_epochs_that_are_not_one_to_k_are_reported(runs: list[dict[str, Any]]) -> None:
    """Run epochs with a gap, or not starting at 1, fail the check."""
    h, final, counts = _good()
    job = final["j1"]
    assert job is not None
    job["runs"] = runs
    assert "epoch_gap" in _kinds(check(h, final, counts))


def test_a_run_nobody_acknowledged_is_reported_unless_a_claim_was_in_doubt() -> None:
    """An extra run is a violation, unless its agent had a claim whose answer was lost."""
    h, final, counts = _good()
    job = final["j1"]
    assert job is not None
    job["runs"].append(_run(3, "z", 105.0, "lease_expired", 107.0))
    assert "unknown_claim" in _kinds(check(h, final, counts, strict=False))
    h.doubtful_claims["z"] += 1
    assert check(h, final, counts, strict=False) == []
    assert "unknown_claim" in _kinds(check(h, final, counts, strict=True))


def test_an_outcome_acknowledged_after_a_late_jobs_final_read_is_not_compared_with_it() -> None:
    """j1 was read still leased when its drain bound passed (the workload reports that), and
    its completion was acknowledged after the read, the counts read after that: unsettled,
    neither is compared with the read. Settled, both are reported, and so is any other
    violation of an unsettled job."""
    h, final, counts = _good()
    job = final["j1"]
    assert job is not None
    job.update(status="leased", result=None)
    job["runs"][-1] = _run(2, "b", 102.5, "running", None)
    assert _kinds(check(h, final, counts)) == {"terminal_changed", "status_counts"}
    assert check(h, final, counts, unsettled=frozenset({"j1"})) == []
    h.claim(_claim("j1", 2, "c", 103.5))
    assert _kinds(check(h, final, counts, unsettled=frozenset({"j1"}))) == {"duplicate_epoch"}


def test_status_counts_that_do_not_add_up_are_reported() -> None:
    """GET /v1/queues disagreeing with the per-job statuses fails the check."""
    h, final, counts = _good()
    counts["q"]["queued"] = 0
    assert "status_counts" in _kinds(check(h, final, counts))


def test_two_jobs_of_one_lock_leased_at_once_are_reported() -> None:
    """A claim of a lock's job while another job of that lock held a live lease fails."""
    h, final, counts = _good()
    h.locks.update(j1="L", j2="L")
    h.claim(_claim("j2", 1, "c", 103.0))  # j1's epoch 2 lives until its completion at 104
    final["j2"] = {
        "status": "leased",
        "attempts": 1,
        "max_attempts": 3,
        "result": None,
        "runs": [_run(1, "c", 103.0, "running", None)],
    }
    counts["q"] = {"queued": 0, "leased": 1, "succeeded": 1, "failed": 0, "cancelled": 0}
    assert _kinds(check(h, final, counts)) == {"lock_overlap"}


def test_a_lock_passed_on_after_the_holders_end_is_clean() -> None:
    """The next job of a lock claimed after the holder completed is no violation."""
    h, final, counts = _good()
    h.locks.update(j1="L", j2="L")
    h.claim(_claim("j2", 1, "c", 104.5))
    final["j2"] = {
        "status": "leased",
        "attempts": 1,
        "max_attempts": 3,
        "result": None,
        "runs": [_run(1, "c", 104.5, "running", None)],
    }
    counts["q"] = {"queued": 0, "leased": 1, "succeeded": 1, "failed": 0, "cancelled": 0}
    assert check(h, final, counts) == []


def test_an_agent_over_its_capacity_is_reported() -> None:
    """Agent b holding a third lease while two of its leases live fails at capacity 2."""
    h, final, counts = _good()
    h.capacity = 2
    h.enqueued.update(j3="q")
    h.claim(_claim("j3", 1, "b", 102.6))
    assert check(h, final | _leased("j3", "b", 102.6), _counts(counts, 1)) == []
    h.enqueued.update(j4="q")
    h.claim(_claim("j4", 1, "b", 103.5))  # j1 (until 104) and j3 (until 104.6) still live
    final = final | _leased("j3", "b", 102.6) | _leased("j4", "b", 103.5)
    assert _kinds(check(h, final, _counts(counts, 2))) == {"over_capacity"}


def test_a_slot_freed_by_a_completion_is_no_excess() -> None:
    """A third lease claimed just after one of two ended is within capacity 2."""
    h, final, counts = _good()
    h.capacity = 2
    h.enqueued.update(j3="q", j4="q")
    h.claim(_claim("j3", 1, "b", 102.6))
    h.claim(_claim("j4", 1, "b", 104.0))  # the instant j1's epoch 2 completed
    final = final | _leased("j3", "b", 102.6) | _leased("j4", "b", 104.0)
    assert check(h, final, _counts(counts, 2)) == []


def _leased(job: str, agent: str, at: float) -> dict[str, dict[str, Any] | None]:
    run = _run(1, agent, at, "running", None)
    return {
        job: {"status": "leased", "attempts": 1, "max_attempts": 3, "result": None, "runs": [run]}
    }


def _counts(counts: dict[str, dict[str, int]], leased: int) -> dict[str, dict[str, int]]:
    return {"q": {**counts["q"], "leased": leased}}


def _failed_then_retried() -> tuple[
    History, dict[str, dict[str, Any] | None], dict[str, dict[str, int]]
]:
    """j1 fails for good at epoch 1 (acknowledged), a bulk retry requeues it at 101.0, and
    epoch 2 completes it; j2 as in ``_good``."""
    h, final, counts = _good()
    h.claims["j1"] = [_claim("j1", 1, "a", 100.0), _claim("j1", 2, "b", 102.5)]
    h.write(Write("j1", 1, "a", "fail", 100.5, 100.5, 100.6, status="failed"))
    h.retry(Bulked("j1", 101.0, sent=100.9, acked=101.1))
    job = final["j1"]
    assert job is not None
    job["runs"] = [_run(1, "a", 100.0, "failed", 100.5), _run(2, "b", 102.5, "succeeded", 104.0)]
    return h, final, counts


def test_a_failure_requeued_by_an_acknowledged_retry_may_end_otherwise() -> None:
    """SPEC: a terminal job changes only through retry. Failed, retried, then completed: no
    violation; without the retry (acknowledged or in doubt) it is ``terminal_changed``."""
    h, final, counts = _failed_then_retried()
    assert check(h, final, counts) == []
    h.retries.clear()
    assert "terminal_changed" in _kinds(check(h, final, counts))
    h.retries_in_doubt = True  # a bulk retry of this round went unanswered
    assert check(h, final, counts) == []


def test_one_failure_retried_twice_is_reported() -> None:
    """Two acknowledged retries of a job with no claim between them: one failure was
    requeued by two racing bulk calls. With a run claimed between them, it is clean."""
    h, final, counts = _failed_then_retried()
    h.retry(Bulked("j1", 101.5, sent=101.4, acked=101.6))  # before epoch 2's claim at 102.5
    assert "double_retry" in _kinds(check(h, final, counts))
    h.retries["j1"][-1] = Bulked("j1", 103.0, sent=102.9, acked=103.1)  # after it
    assert "double_retry" not in _kinds(check(h, final, counts))


def test_a_job_in_two_bulk_cancels_or_claimed_after_one_ended_it_is_reported() -> None:
    """j2 (queued) cancelled by a bulk call at 101.0: clean. The same job in a second
    call's answer is ``double_cancel``; a claim of it stamped after the cancel is
    ``claim_after_cancel``."""
    h, final, counts = _good()
    job = final["j2"]
    assert job is not None
    job["status"] = "cancelled"
    counts["q"]["queued"], counts["q"]["cancelled"] = 0, 1
    h.cancel(Bulked("j2", 101.0, sent=100.9, acked=101.1), "cancelled")
    assert check(h, final, counts) == []
    h.cancel(Bulked("j2", 101.2, sent=101.1, acked=101.3), "cancelled")
    assert _kinds(check(h, final, counts)) == {"double_cancel"}
    h.cancels["j2"].pop()
    h.claim(_claim("j2", 1, "a", 102.0))
    job["runs"] = [_run(1, "a", 102.0, "cancelled", 102.5)]
    assert "claim_after_cancel" in _kinds(check(h, final, counts))


async def test_a_worker_end_sent_again_after_a_lost_answer_stays_in_doubt() -> None:
    """A batched Worker's complete gets no answer (a read timeout under load) and the Worker
    sends it again in a new call, answered ``lease_lost``: the first call completed the job.
    The recorder keeps that end in doubt from the first send, so the lock's next job claimed
    after it is no overlap and the result no phantom (before: the second call's first-try
    ``lease_lost`` settled the end, and the checker reported ``lock_overlap`` and
    ``phantom_completion`` for a lease that had ended)."""
    work = Workload(["http://coordinator"], "admin", Plan())
    h = History(doubtful_tokens=work.doubtful_tokens)
    h.enqueued.update(j1="q", j2="q")
    h.locks.update(j1="L", j2="L")
    work.round_of.update(j1=h, j2=h)
    calls: list[int] = []

    def answer(request: httpx.Request) -> httpx.Response:
        calls.append(1)
        if len(calls) == 1:
            raise httpx.ReadTimeout("the answer was lost", request=request)
        lost = {"code": "lease_lost", "message": "job is succeeded; there is no lease"}
        return httpx.Response(
            200, json={"items": [{"job_id": "j1", "ok": False, "error": lost}], "leases": []}
        )

    transport = _CountingTransport(httpx.MockTransport(answer))
    client = _RecordingClient(
        work, _Agent("a", {}, 0), transport, "http://coordinator", "token", retry_timeout=0
    )
    token = "a:1:t"
    work.doubtful_tokens.add(token)
    report = Report(job_id="j1", epoch=1, action="complete", result={"token": token})
    try:
        with pytest.raises(CoordinatorUnavailable):
            await client.report([report])
        first = h.doubtful_ends[("j1", 1)]
        reported = await client.report([report])
    finally:
        await client.aclose()
        await work.http.aclose()
    assert [item.code for item in reported.items] == ["lease_lost"]
    assert h.doubtful_ends == {("j1", 1): first}
    assert token in work.doubtful_tokens
    # j1's lease would be live until first + 1.5; j2 is claimed after the first send.
    h.claim(_claim("j1", 1, "a", first - 0.5))
    h.claim(_claim("j2", 1, "c", first + 0.1))
    final: dict[str, dict[str, Any] | None] = {
        "j1": {
            "status": "succeeded",
            "attempts": 1,
            "max_attempts": 3,
            "result": {"token": token},
            "runs": [_run(1, "a", first - 0.5, "succeeded", first + 0.05)],
        },
        "j2": {
            "status": "leased",
            "attempts": 1,
            "max_attempts": 3,
            "result": None,
            "runs": [_run(1, "c", first + 0.1, "running", None)],
        },
    }
    counts = {"q": {"queued": 0, "leased": 1, "succeeded": 1, "failed": 0, "cancelled": 0}}
    assert check(h, final, counts) == []


def _lost_then(answers: list[httpx.Response]) -> httpx.MockTransport:
    """A coordinator whose first answer is lost (a read timeout), then answers ``answers``."""
    calls: list[httpx.Request] = []

    def answer(request: httpx.Request) -> httpx.Response:
        calls.append(request)
        if len(calls) == 1:
            raise httpx.ReadTimeout("the answer was lost", request=request)
        return answers[len(calls) - 2]

    return httpx.MockTransport(answer)


def _leased_run(job: str, agent: str, at: float) -> dict[str, dict[str, Any] | None]:
    """``job`` leased to ``agent`` at ``at`` by a claim the agent never heard of."""
    run = _run(1, agent, at, "lease_expired", at + LEASE)
    return {job: {"status": "queued", "attempts": 1, "max_attempts": 3, "runs": [run]}}


async def test_a_worker_claim_retried_after_a_lost_answer_stays_in_doubt_in_a_strict_run() -> None:
    """A batched Worker's claim gets no answer (a read timeout under load: no crash) and its
    client retries it, answered with nothing: the lost try may have leased j2. The recorder
    keeps the claim in doubt from its send, so the run of j2 it explains is no
    ``unknown_claim``, in a strict run too (before: strict runs under load reported it). A
    run of that agent claimed before the send, or of another agent, still is."""
    work = Workload(["http://coordinator"], "admin", Plan())
    h = History(doubtful_claims=work.doubtful_claims, claims_in_doubt=work.claims_in_doubt)
    transport = _CountingTransport(_lost_then([httpx.Response(200, json={"leases": []})]))
    client = _RecordingClient(
        work, _Agent("a", {}, 0), transport, "http://coordinator", "token", retry_timeout=5.0
    )
    before = time.time()
    try:
        assert await client.claim(max_jobs=1) == []
    finally:
        await client.aclose()
        await work.http.aclose()
    after = time.time()  # the lost try's lease was stamped between the two
    h, final, counts = _with(h, _leased_run("j2", "a", after))
    assert check(h, final, counts, strict=True) == []
    h, final, counts = _with(h, _leased_run("j2", "a", before - 0.5))
    assert _kinds(check(h, final, counts, strict=True)) == {"unknown_claim"}
    h, final, counts = _with(h, _leased_run("j2", "z", after))
    assert _kinds(check(h, final, counts, strict=True)) == {"unknown_claim"}


def _with(
    doubt: History, job: dict[str, dict[str, Any] | None]
) -> tuple[History, dict[str, dict[str, Any] | None], dict[str, dict[str, int]]]:
    """``_good`` with the claims in doubt of ``doubt`` and job j2 as ``job`` has it."""
    h, final, counts = _good()
    h.doubtful_claims, h.claims_in_doubt = doubt.doubtful_claims, doubt.claims_in_doubt
    return h, final | job, counts


async def test_a_worker_claim_answered_on_its_first_try_is_settled_beside_retried_calls() -> None:
    """A Worker's claim answered on its first try is settled, though a report (with no
    claim) of the same client is retried meanwhile (its tries are the report's): an
    unacknowledged run of that agent is still ``unknown_claim`` in a strict run and in one
    with crashes (before: every try of the client counted, the claim stayed in doubt and
    the agent's unknown runs were excused)."""
    work = Workload(["http://coordinator"], "admin", Plan())
    retrying, claimed = asyncio.Event(), asyncio.Event()
    reports: list[httpx.Request] = []

    async def answer(request: httpx.Request) -> httpx.Response:
        if request.url.path == "/v1/claims":
            await retrying.wait()  # the report's retry goes out while this claim is under way
            claimed.set()
            return httpx.Response(200, json={"leases": []})
        reports.append(request)
        if len(reports) == 1:
            raise httpx.ReadTimeout("the answer was lost", request=request)
        retrying.set()
        await claimed.wait()
        return httpx.Response(200, json={"items": [], "leases": []})

    transport = _CountingTransport(httpx.MockTransport(answer))
    client = _RecordingClient(
        work, _Agent("a", {}, 0), transport, "http://coordinator", "token", retry_timeout=5.0
    )
    try:
        report = asyncio.ensure_future(client.report([]))
        assert await client.claim(max_jobs=1) == []
        await report
    finally:
        await client.aclose()
        await work.http.aclose()
    assert len(reports) == 2
    assert work.doubtful_claims["a"] == 0  # settled
    h = History(doubtful_claims=work.doubtful_claims, claims_in_doubt=work.claims_in_doubt)
    h, final, counts = _with(h, _leased_run("j2", "a", time.time()))
    assert _kinds(check(h, final, counts, strict=True)) == {"unknown_claim"}
    assert _kinds(check(h, final, counts, strict=False)) == {"unknown_claim"}
