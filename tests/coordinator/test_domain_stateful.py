"""Random sequences of every transition across several agents keep the SPEC invariants.

The machine keeps its own small model of who holds which lease until when, built
only from the calls it made and the times it made them, and checks the domain's
answers against it: a fenced call is accepted exactly when the model says the
caller holds a live lease at that epoch. After every step it checks that each
job has at most one live lease among all the (agent, epoch) pairs ever handed
out, that epochs count claims, and that the run history agrees with the lease.
"""

from __future__ import annotations

from dataclasses import dataclass

from fleet_coordinator.domain import (
    MAX_RUNS,
    BackoffPolicy,
    JobState,
    JobStatus,
    ManualClock,
    Rejected,
    Rejection,
    RunOutcome,
    can_transition,
    cancel,
    claim,
    complete,
    enqueue,
    fail,
    heartbeat,
    labels_satisfy,
    reap,
    release,
    retry,
)
from hypothesis import HealthCheck, event, settings
from hypothesis import strategies as st
from hypothesis.stateful import (
    RuleBasedStateMachine,
    initialize,
    invariant,
    precondition,
    rule,
)

from tests.coordinator.domain_support import T0

AGENTS: dict[str, dict[str, str]] = {
    "agent-1": {"gpu": "a100", "zone": "eu"},
    "agent-2": {},
    "agent-3": {"gpu": "t4"},
}
MAX_JOBS = 4
BACKOFF = BackoffPolicy(base_seconds=1, factor=2, max_seconds=20, jitter=0.5)

agents = st.sampled_from(sorted(AGENTS))
job_slots = st.integers(min_value=0, max_value=MAX_JOBS - 1)


@dataclass
class ModelLease:
    """What the test itself believes about a job's current lease."""

    agent_id: str
    epoch: int
    expires_at: float
    deadline: float | None

    def live(self, now: float) -> bool:
        """Whether the model considers this lease live at ``now``."""
        return now < self.expires_at and (self.deadline is None or now < self.deadline)


class JobLifecycle(RuleBasedStateMachine):
    """Drives jobs through random transitions and checks invariants after each step."""

    def __init__(self) -> None:
        super().__init__()
        self.clock = ManualClock(T0)
        self.jobs: dict[str, JobState] = {}
        self.model: dict[str, ModelLease | None] = {}
        self.claims: dict[str, int] = {}
        # Every (agent, epoch) ever handed out per job: stale ones stay, to be replayed.
        self.handed_out: dict[str, list[tuple[str, int]]] = {}
        self.runs_made = 0

    # -- helpers -----------------------------------------------------------

    def pick(self, slot: int) -> str:
        """The id of an existing job chosen by ``slot``."""
        ids = sorted(self.jobs)
        return ids[slot % len(ids)]

    def pick_for_agent(self, data: st.DataObject) -> str:
        """A job for a fenced agent call: usually a leased one, sometimes any."""
        held = sorted(job_id for job_id, job in self.jobs.items() if job.lease is not None)
        everything = st.sampled_from(sorted(self.jobs))
        return data.draw(st.sampled_from(held) | everything if held else everything)

    def store(
        self, job_id: str, before: JobState, result: JobState | Rejected, *, via_retry: bool = False
    ) -> None:
        """Record an accepted transition after checking it against the table."""
        if isinstance(result, Rejected):
            assert self.jobs[job_id] is before
            event(f"rejected: {result.reason.value}")
            return
        # Terminal jobs never change, except through retry (SPEC 6 and the status table).
        assert via_retry or not before.is_terminal
        event(f"{before.status.value} -> {result.status.value}")
        assert result.id == before.id
        assert result.status is before.status or can_transition(before.status, result.status)
        assert result.epoch >= before.epoch
        self.jobs[job_id] = result

    def expected_holder(self, job_id: str, agent: str, epoch: int) -> bool:
        """Whether the model says ``agent`` holds a live lease on the job at ``epoch``."""
        lease = self.model[job_id]
        now = self.clock.now()
        return (
            lease is not None
            and (lease.agent_id, lease.epoch) == (agent, epoch)
            and lease.live(now)
        )

    def caller(self, data: st.DataObject, job_id: str) -> tuple[str, int]:
        """An (agent, epoch) pair: usually one handed out for this job, sometimes a guess."""
        known = self.handed_out[job_id]
        guess = st.tuples(agents, st.integers(min_value=0, max_value=self.claims[job_id] + 1))
        if not known:
            return data.draw(guess)
        # Mostly the newest pair (the likely holder), so accepted calls are common too.
        return data.draw(st.just(known[-1]) | st.just(known[-1]) | st.sampled_from(known) | guess)

    def fenced_outcome(
        self, job_id: str, before: JobState, agent: str, epoch: int, result: JobState | Rejected
    ) -> bool:
        """Check a fenced call's acceptance against the model; return whether it was accepted."""
        expected = self.expected_holder(job_id, agent, epoch)
        if before.is_terminal:
            assert not expected
        if not expected:
            assert isinstance(result, Rejected)
            assert result.reason is Rejection.LEASE_LOST
            return False
        assert isinstance(result, JobState), result
        return True

    # -- rules ---------------------------------------------------------------

    @initialize()
    def start_with_two_jobs(self) -> None:
        """Begin with two plain jobs so every rule has something to act on."""
        self.enqueue_job(3, {}, 0.0, 10.0, None, 0)
        self.enqueue_job(2, {}, 0.0, 30.0, 15.0, 1)

    @precondition(lambda self: len(self.jobs) < MAX_JOBS)
    @rule(
        max_attempts=st.integers(min_value=1, max_value=3),
        requires=st.sampled_from([{}, {}, {"gpu": "a100"}, {"gpu": "t4"}]),
        delay=st.sampled_from([0.0, 0.0, 3.0]),
        lease_seconds=st.sampled_from([10.0, 30.0]),
        timeout_seconds=st.sampled_from([None, None, 15.0, 45.0]),
        priority=st.integers(min_value=-1, max_value=1),
    )
    def enqueue_job(
        self,
        max_attempts: int,
        requires: dict[str, str],
        delay: float,
        lease_seconds: float,
        timeout_seconds: float | None,
        priority: int,
    ) -> None:
        """An admin enqueues a job."""
        now = self.clock.now()
        job_id = f"job-{len(self.jobs)}"
        job = enqueue(
            job_id=job_id,
            kind="k",
            payload={"i": len(self.jobs)},
            now=now,
            priority=priority,
            max_attempts=max_attempts,
            lease_seconds=lease_seconds,
            timeout_seconds=timeout_seconds,
            run_after=now + delay,
            requires=requires,
        )
        assert job.status is JobStatus.QUEUED
        self.jobs[job_id] = job
        self.model[job_id] = None
        self.claims[job_id] = 0
        self.handed_out[job_id] = []

    @precondition(lambda self: self.jobs)
    @rule(slot=job_slots, agent=agents)
    def claim_job(self, slot: int, agent: str) -> None:
        """An agent tries to claim a job."""
        job_id = self.pick(slot)
        before = self.jobs[job_id]
        now = self.clock.now()
        self.runs_made += 1
        result = claim(before, agent, f"run-{self.runs_made}", now, labels=AGENTS[agent])
        claimable = (
            before.status is JobStatus.QUEUED
            and before.run_after <= now
            and labels_satisfy(before.requires, AGENTS[agent])
        )
        # A live lease in the model must always block a claim (single winner).
        lease = self.model[job_id]
        if lease is not None:
            assert not claimable
        if not claimable:
            assert isinstance(result, Rejected)
            self.store(job_id, before, result)
            return
        assert isinstance(result, JobState), result
        assert result.epoch == before.epoch + 1
        assert result.attempts == before.attempts + 1
        self.claims[job_id] += 1
        assert result.epoch == self.claims[job_id]
        if result.epoch >= 4:
            event("a job was claimed four or more times")
        deadline = None if before.timeout_seconds is None else now + before.timeout_seconds
        self.model[job_id] = ModelLease(agent, result.epoch, now + before.lease_seconds, deadline)
        self.handed_out[job_id].append((agent, result.epoch))
        self.store(job_id, before, result)

    @rule(agent=agents)
    def claim_next(self, agent: str) -> None:
        """An agent claims the first job it may (as the claim query would offer it)."""
        now = self.clock.now()
        for job_id in sorted(self.jobs):
            job = self.jobs[job_id]
            due = job.status is JobStatus.QUEUED and job.run_after <= now
            if due and labels_satisfy(job.requires, AGENTS[agent]):
                self.claim_job(sorted(self.jobs).index(job_id), agent)
                return

    @precondition(lambda self: self.jobs)
    @rule(data=st.data())
    def heartbeat_job(self, data: st.DataObject) -> None:
        """An agent (maybe stale) heartbeats."""
        job_id = self.pick_for_agent(data)
        before = self.jobs[job_id]
        agent, epoch = self.caller(data, job_id)
        result = heartbeat(before, agent, epoch, self.clock.now())
        if self.fenced_outcome(job_id, before, agent, epoch, result):
            lease = self.model[job_id]
            assert lease is not None
            lease.expires_at = self.clock.now() + before.lease_seconds
            assert isinstance(result, JobState)
            assert result.status is JobStatus.LEASED
        self.store(job_id, before, result)

    @precondition(lambda self: self.jobs)
    @rule(data=st.data())
    def complete_job(self, data: st.DataObject) -> None:
        """An agent (maybe stale) completes."""
        job_id = self.pick_for_agent(data)
        before = self.jobs[job_id]
        agent, epoch = self.caller(data, job_id)
        result = complete(before, agent, epoch, self.clock.now(), result={"by": agent})
        if self.fenced_outcome(job_id, before, agent, epoch, result):
            assert isinstance(result, JobState)
            assert result.status is JobStatus.SUCCEEDED
            self.model[job_id] = None
        self.store(job_id, before, result)

    @precondition(lambda self: self.jobs)
    @rule(data=st.data(), retryable=st.booleans())
    def fail_job(self, data: st.DataObject, retryable: bool) -> None:
        """An agent (maybe stale) reports a failure."""
        job_id = self.pick_for_agent(data)
        before = self.jobs[job_id]
        agent, epoch = self.caller(data, job_id)
        now = self.clock.now()
        result = fail(
            before,
            agent,
            epoch,
            now,
            error="e",
            retryable=retryable,
            backoff=BACKOFF,
            rng=lambda: 0.5,
        )
        if self.fenced_outcome(job_id, before, agent, epoch, result):
            assert isinstance(result, JobState)
            if before.cancel_requested:
                assert result.status is JobStatus.CANCELLED
            elif retryable and before.attempts < before.max_attempts:
                assert result.status is JobStatus.QUEUED
                assert result.run_after > now
            else:
                assert result.status is JobStatus.FAILED
            assert result.attempts == before.attempts
            self.model[job_id] = None
        self.store(job_id, before, result)

    @precondition(lambda self: self.jobs)
    @rule(data=st.data())
    def release_job(self, data: st.DataObject) -> None:
        """An agent (maybe stale) releases."""
        job_id = self.pick_for_agent(data)
        before = self.jobs[job_id]
        agent, epoch = self.caller(data, job_id)
        result = release(before, agent, epoch, self.clock.now())
        if self.fenced_outcome(job_id, before, agent, epoch, result):
            assert isinstance(result, JobState)
            expected = JobStatus.CANCELLED if before.cancel_requested else JobStatus.QUEUED
            assert result.status is expected
            assert result.attempts == before.attempts - 1
            event("release accepted")
            self.model[job_id] = None
        self.store(job_id, before, result)

    @precondition(lambda self: self.jobs)
    @rule(slot=job_slots)
    def cancel_job(self, slot: int) -> None:
        """An admin cancels a job."""
        job_id = self.pick(slot)
        before = self.jobs[job_id]
        result = cancel(before, self.clock.now())
        if before.is_terminal:
            assert isinstance(result, Rejected)
            assert result.reason is Rejection.ALREADY_TERMINAL
        elif before.status is JobStatus.QUEUED:
            assert isinstance(result, JobState)
            assert result.status is JobStatus.CANCELLED
        else:
            assert isinstance(result, JobState)
            assert result.status is JobStatus.LEASED
            assert result.cancel_requested
            assert result.lease == before.lease
        self.store(job_id, before, result)

    @precondition(lambda self: self.jobs)
    @rule(slot=job_slots)
    def retry_job(self, slot: int) -> None:
        """An admin retries a job."""
        job_id = self.pick(slot)
        before = self.jobs[job_id]
        result = retry(before, self.clock.now())
        if before.status in (JobStatus.FAILED, JobStatus.CANCELLED):
            assert isinstance(result, JobState)
            assert result.status is JobStatus.QUEUED
            assert result.attempts == 0
            assert result.epoch == before.epoch
        else:
            assert isinstance(result, Rejected)
            assert result.reason is Rejection.INVALID_TRANSITION
        self.store(job_id, before, result, via_retry=True)

    @rule(seconds=st.sampled_from([0.5, 1.0, 5.0, 10.0, 16.0, 31.0]))
    def advance_clock(self, seconds: float) -> None:
        """Time passes."""
        self.clock.advance(seconds)

    @precondition(lambda self: any(lease is not None for lease in self.model.values()))
    @rule(data=st.data(), offset=st.sampled_from([-0.001, 0.0, 0.001]))
    def advance_to_a_lease_edge(self, data: st.DataObject, offset: float) -> None:
        """Time passes to just before, exactly at or just after some lease's expiry or deadline."""
        edges = sorted(
            edge
            for lease in self.model.values()
            if lease is not None
            for edge in (lease.expires_at, lease.deadline)
            if edge is not None and edge + offset > self.clock.now()
        )
        if edges:
            self.clock.set(data.draw(st.sampled_from(edges)) + offset)

    @precondition(lambda self: self.jobs)
    @rule(slot=job_slots)
    def reap_job(self, slot: int) -> None:
        """A reaper looks at one job."""
        self.reap_one(self.pick(slot))

    @precondition(lambda self: self.jobs)
    @rule()
    def reap_sweep(self) -> None:
        """A reaper sweeps every job."""
        for job_id in sorted(self.jobs):
            self.reap_one(job_id)

    def reap_one(self, job_id: str) -> None:
        """Reap one job and check the outcome against the model."""
        before = self.jobs[job_id]
        now = self.clock.now()
        result = reap(before, now, backoff=BACKOFF, rng=lambda: 0.5)
        lease = self.model[job_id]
        if lease is None or lease.live(now):
            assert isinstance(result, Rejected)
        else:
            assert isinstance(result, JobState), result
            assert result.runs[-1].outcome in (RunOutcome.LEASE_EXPIRED, RunOutcome.TIMED_OUT)
            event(f"reaped: {result.runs[-1].outcome.value}")
            assert result.attempts == before.attempts
            if before.cancel_requested:
                assert result.status is JobStatus.CANCELLED
            elif before.attempts >= before.max_attempts:
                assert result.status is JobStatus.FAILED
            else:
                assert result.status is JobStatus.QUEUED
            self.model[job_id] = None
        self.store(job_id, before, result)

    # -- invariants ------------------------------------------------------------

    @invariant()
    def at_most_one_live_lease_per_job(self) -> None:
        """Of all (agent, epoch) pairs ever handed out, at most one is accepted now, as modelled."""
        now = self.clock.now()
        for job_id, job in self.jobs.items():
            accepted = [
                pair
                for pair in self.handed_out[job_id]
                if isinstance(heartbeat(job, pair[0], pair[1], now), JobState)
            ]
            assert len(accepted) <= 1
            lease = self.model[job_id]
            modelled = (
                [] if lease is None or not lease.live(now) else [(lease.agent_id, lease.epoch)]
            )
            assert accepted == modelled

    @invariant()
    def epochs_count_claims(self) -> None:
        """A job's epoch is the number of claims ever made on it."""
        for job_id, job in self.jobs.items():
            assert job.epoch == self.claims[job_id] == len(job.runs) + job.runs_dropped

    @invariant()
    def lease_and_run_history_agree(self) -> None:
        """Exactly one running run iff leased, and it is the lease's run."""
        for job in self.jobs.values():
            running = [r for r in job.runs if r.outcome is RunOutcome.RUNNING]
            assert len(job.runs) <= MAX_RUNS
            assert [r.epoch for r in job.runs] == list(
                range(job.epoch - len(job.runs) + 1, job.epoch + 1)
            )
            for run in job.runs:
                assert (run.ended_at is None) == (run.outcome is RunOutcome.RUNNING)
                assert run.ended_at is None or run.ended_at >= run.claimed_at
            if job.status is JobStatus.LEASED:
                assert job.lease is not None
                assert len(running) == 1
                assert running[0] is job.runs[-1]
                run, lease = running[0], job.lease
                assert (run.run_id, run.epoch, run.agent_id, run.claimed_at) == (
                    lease.run_id,
                    lease.epoch,
                    lease.agent_id,
                    lease.claimed_at,
                )
                assert lease.epoch == job.epoch
            else:
                assert job.lease is None
                assert running == []

    @invariant()
    def attempts_stay_within_budget(self) -> None:
        """Attempts never exceed max_attempts, and a queued job always has one left."""
        for job in self.jobs.values():
            assert 0 <= job.attempts <= job.max_attempts
            if job.status is JobStatus.QUEUED:
                assert job.attempts < job.max_attempts
                assert not job.cancel_requested


JobLifecycle.TestCase.settings = settings(
    max_examples=100,
    stateful_step_count=50,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
)
test_job_lifecycle = JobLifecycle.TestCase
