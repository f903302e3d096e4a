"""A recorded history of acknowledged claims and writes, and the checker of its invariants.

The workload records what the coordinator *acknowledged* (and, separately, what
it may or may not have done: requests whose answer never came because a replica
or an agent died). ``check`` compares that with the final state of every job
and returns the violations it finds:

``duplicate_epoch``      two acknowledged claims of one job with the same epoch
``epoch_gap``            the epochs of a job are not exactly 1..k (acknowledged + run history)
``unknown_claim``        a run the history cannot explain (no acknowledged or in-doubt claim)
``overlapping_leases``   a claim acknowledged while an earlier lease was still live
``stale_write``          a write of an older epoch acknowledged after a newer claim
``double_completion``    two acknowledged completions of one job
``phantom_completion``   a succeeded job whose result no completion attempt sent
``terminal_changed``     an acknowledged terminal outcome that the final state does not show
``lost_job``             an acknowledged enqueue that is gone, or neither terminal nor claimable
``status_counts``        ``GET /v1/queues`` disagrees with the per-job statuses
``lock_overlap``         a job's claim acknowledged while another job of the same lock
                         held a lease that was still live by what was acknowledged
``double_retry``         two acknowledged bulk retries of one job with no claim of it
                         between them (it cannot have failed again: one failure was
                         retried twice)
``double_cancel``        one job in the answers of two acknowledged bulk cancels (a
                         cancelled or cancel-requested job is never matched again)
``claim_after_cancel``   a claim of a job stamped after an acknowledged bulk cancel
                         ended it (``cancelled``): cancel never clobbers

Two clock sources are used and never mixed in one comparison: server times (the
coordinator issues ``expires_at`` and ``updated_at``; all replicas of a run share
one host clock) and client times (when the harness sent a request and got its
answer). Times are epoch seconds.
"""

from __future__ import annotations

import heapq
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from datetime import datetime
from itertools import pairwise
from typing import Any

__all__ = [
    "Claim",
    "History",
    "Bulked",
    "Violation",
    "Write",
    "check",
    "parse_time",
]

TOLERANCE = 2e-6
"""Seconds of rounding slack: the API shows times with microsecond precision."""
TERMINAL = frozenset({"succeeded", "failed", "cancelled"})
STATUSES = ("queued", "leased", "succeeded", "failed", "cancelled")
MAX_RUNS = 20
"""Runs a job keeps in its history (older ones are dropped by the coordinator)."""


def parse_time(text: str) -> float:
    """An ISO-8601 time from the API as epoch seconds."""
    return datetime.fromisoformat(text).timestamp()


def _time(value: str | float) -> float:
    """A time of a job's run history: ISO-8601 from the API, epoch seconds in the tests."""
    return parse_time(value) if isinstance(value, str) else float(value)


@dataclass(frozen=True, slots=True)
class Claim:
    """An acknowledged claim: the lease as the coordinator issued it."""

    job: str
    epoch: int
    agent: str
    claimed_at: float
    """Server time of the claim (the job's ``updated_at`` in the claim answer)."""
    expires_at: float
    sent: float
    acked: float


@dataclass(frozen=True, slots=True)
class Write:
    """An acknowledged (2xx) heartbeat, complete, fail or release of one lease."""

    job: str
    epoch: int
    agent: str
    op: str
    at: float
    """Server time of the write (``updated_at``, or ``expires_at - lease`` for a heartbeat)."""
    sent: float
    acked: float
    expires_at: float | None = None
    """For a heartbeat: the renewed expiry."""
    status: str | None = None
    """For complete, fail and release: the job's status in the answer."""
    token: str | None = None
    """For complete: the unique result token sent."""


@dataclass(frozen=True, slots=True)
class Bulked:
    """A job in the answer of an acknowledged bulk call (``POST /v1/jobs/retry`` or
    ``/cancel``): changed by that call."""

    job: str
    at: float
    """Server time of the change (the job's ``updated_at`` in the answer)."""
    sent: float
    acked: float


@dataclass
class History:
    """Everything the workload saw, keyed by job id."""

    enqueued: dict[str, str] = field(default_factory=dict)
    """Acknowledged enqueues: job id → queue."""
    locks: dict[str, str] = field(default_factory=dict)
    """Job id → its lock, for the jobs enqueued with one."""
    claims: dict[str, list[Claim]] = field(default_factory=lambda: defaultdict(list))
    writes: dict[str, list[Write]] = field(default_factory=lambda: defaultdict(list))
    capacity: int | None = None
    """Every agent's capacity (SPEC 4), when the run gave them all one; None: unchecked."""
    doubtful_claims: Counter[str] = field(default_factory=Counter)
    """Agents with claims whose answer never came (the claim may have leased a job)."""
    claims_in_doubt: dict[str, float] = field(default_factory=dict)
    """Agent id → client send time of its earliest claim one try of which got no answer
    (a batched Worker's client retried it after a read timeout, or gave up): that try
    may have leased jobs the agent never heard of, from that send on. No crash is needed
    for that (a loaded machine is enough), so it explains a run in a strict run too."""
    doubtful_tokens: set[str] = field(default_factory=set)
    """Result tokens of completions whose answer never came."""
    doubtful_ends: dict[tuple[str, int], float] = field(default_factory=dict)
    """(job, epoch) → client send time of a complete/fail/release whose answer never came:
    the lease may have ended then (the server received it no earlier; one host clock)."""
    deleted_agents: dict[str, float] = field(default_factory=dict)
    """Agent id → client send time of the admin's delete of that agent: every lease it
    holds may have ended then (SPEC 4: the delete releases them). Kept per agent, not per
    lease: a claim acknowledged before the delete may be recorded after it, and the
    agent's own release of that lease, answered ``lease_lost``, says nothing of when
    the delete ended it."""
    retries: dict[str, list[Bulked]] = field(default_factory=lambda: defaultdict(list))
    """Acknowledged bulk retries, by job."""
    cancels: dict[str, list[Bulked]] = field(default_factory=lambda: defaultdict(list))
    """Acknowledged bulk cancels, by job."""
    cancelled_at: dict[str, float] = field(default_factory=dict)
    """Job → server time of the acknowledged bulk cancel that made it ``cancelled``."""
    retries_in_doubt: bool = False
    """A bulk retry of this round's queue got no answer: any failed job may have been
    requeued unseen, so a failure acknowledged here no longer has to be final."""

    def claim(self, claim: Claim) -> None:
        """Record an acknowledged claim."""
        self.claims[claim.job].append(claim)

    def write(self, write: Write) -> None:
        """Record an acknowledged write."""
        self.writes[write.job].append(write)

    def retry(self, retry: Bulked) -> None:
        """Record a job an acknowledged bulk retry requeued."""
        self.retries[retry.job].append(retry)

    def cancel(self, cancel: Bulked, status: str) -> None:
        """Record a job an acknowledged bulk cancel ended (``cancelled``) or asked to stop."""
        self.cancels[cancel.job].append(cancel)
        if status == "cancelled":
            self.cancelled_at[cancel.job] = cancel.at

    def forget(self, job_ids: list[str]) -> None:
        """Drop checked jobs (a long run checks and forgets round by round)."""
        for job_id in job_ids:
            self.enqueued.pop(job_id, None)
            self.locks.pop(job_id, None)
            self.claims.pop(job_id, None)
            self.writes.pop(job_id, None)
            self.retries.pop(job_id, None)
            self.cancels.pop(job_id, None)
            self.cancelled_at.pop(job_id, None)
        for key in [k for k in self.doubtful_ends if k[0] in set(job_ids)]:
            del self.doubtful_ends[key]

    @property
    def claim_count(self) -> int:
        """Acknowledged claims held right now."""
        return sum(len(c) for c in self.claims.values())


@dataclass(frozen=True, slots=True)
class Violation:
    """One broken invariant, with the job it concerns and what was seen."""

    kind: str
    job: str
    detail: str

    def __str__(self) -> str:
        return f"{self.kind} job={self.job}: {self.detail}"


def check(
    history: History,
    final: dict[str, dict[str, Any] | None],
    queue_counts: dict[str, dict[str, int]],
    *,
    strict: bool = True,
    unsettled: frozenset[str] = frozenset(),
) -> list[Violation]:
    """Every violation of the invariants in ``history`` against the jobs' final state.

    ``final`` maps each enqueued job id to ``GET /v1/jobs/{id}`` (None for 404);
    ``queue_counts`` maps queues to their ``GET /v1/queues`` entry, read while
    the jobs of those queues were quiet. ``strict`` (no crashes in the run)
    additionally demands that every run of every job was acknowledged, or leased by
    a claim a try of which got no answer (``History.claims_in_doubt``).

    ``unsettled``: jobs read while still queued or leased, their drain bound passed
    (the workload reports them ``not_terminal_in_bound``). Agents went on with them
    after that read, and the history kept recording: an outcome acknowledged after
    it is not compared with it (``terminal_changed``), nor are the counts read after
    it (``status_counts``). Compared, they reported a completion or final failure
    acknowledged "now leased" and counts one off, which looked like a stale read of
    the job and was not one (2026-12-07: the replicas' logs showed the job leased
    when read and ended after).
    """
    found: list[Violation] = []
    for job_id in history.enqueued:
        job = final.get(job_id)
        claims = sorted(history.claims.get(job_id, []), key=lambda c: c.epoch)
        writes = history.writes.get(job_id, [])
        if job is None:
            found.append(Violation("lost_job", job_id, "acknowledged enqueue, now 404"))
            continue
        found += _check_lost(job_id, job)
        found += _check_epochs(history, job_id, job, claims, strict)
        found += _check_overlaps(history, job_id, claims, writes)
        settled = [
            *_check_completion(history, job_id, job, writes),
            *_check_cancels(history, job_id, job, claims),
        ]
        moving = job_id in unsettled
        found += [v for v in settled if not (moving and v.kind == "terminal_changed")]
        found += _check_retries(history, job_id, job, claims)
    if unsettled.isdisjoint(history.enqueued):
        found += _check_counts(history, final, queue_counts)
    found += _check_locks(history)
    found += _check_capacity(history)
    return found


def _check_capacity(history: History) -> list[Violation]:
    """SPEC 4 on the server clock: no agent held more live leases than its capacity.

    As for locks, a lease counts from its claim to the earliest moment it may have
    ended by what was acknowledged (``_lease_end``): a lost answer can hide an excess
    but never invent one.
    """
    if history.capacity is None:
        return []
    found: list[Violation] = []
    by_agent: dict[str, list[tuple[float, float, Claim]]] = defaultdict(list)
    for job_id, claims in history.claims.items():
        writes = history.writes.get(job_id, [])
        for claim in claims:
            by_agent[claim.agent].append(
                (claim.claimed_at, _lease_end(history, claim, writes), claim)
            )
    for agent, leases in by_agent.items():
        leases.sort(key=lambda lease: lease[0])
        live: list[float] = []  # ends of the leases live at the current claim (a heap)
        for start, end, claim in leases:
            while live and live[0] <= start + TOLERANCE:
                heapq.heappop(live)
            heapq.heappush(live, end)
            if len(live) > history.capacity:
                found.append(
                    Violation(
                        "over_capacity",
                        claim.job,
                        f"agent {agent} held {len(live)} live leases at {start:.6f} "
                        f"(capacity {history.capacity})",
                    )
                )
    return found


def _check_locks(history: History) -> list[Violation]:
    """SPEC 9 on the server clock: no claim of a lock's job while another of its leases lived.

    A lease's end is the earliest moment it may have ended by what was acknowledged
    (``_lease_end``), so an unknown heartbeat or a lost answer can hide an overlap
    but never invent one.
    """
    found: list[Violation] = []
    by_lock: dict[str, list[Claim]] = defaultdict(list)
    for job_id, lock in history.locks.items():
        by_lock[lock].extend(history.claims.get(job_id, []))
    for lock, claims in by_lock.items():
        claims.sort(key=lambda c: c.claimed_at)
        for i, later in enumerate(claims):
            for earlier in claims[:i]:
                if earlier.job == later.job:
                    continue  # one job's own epochs: _check_overlaps
                end = _lease_end(history, earlier, history.writes.get(earlier.job, []))
                if later.claimed_at + TOLERANCE < end:
                    found.append(
                        Violation(
                            "lock_overlap",
                            later.job,
                            f"lock {lock!r}: claimed at {later.claimed_at:.6f} while job "
                            f"{earlier.job} epoch {earlier.epoch} was live until {end:.6f}",
                        )
                    )
    return found


def _check_lost(job_id: str, job: dict[str, Any]) -> list[Violation]:
    status = job["status"]
    if status in TERMINAL or status == "leased":
        return []
    if status == "queued" and job["attempts"] < job["max_attempts"]:
        return []
    return [Violation("lost_job", job_id, f"status {status} attempts {job['attempts']}")]


def _check_epochs(
    history: History, job_id: str, job: dict[str, Any], claims: list[Claim], strict: bool
) -> list[Violation]:
    found: list[Violation] = []
    acked = Counter(c.epoch for c in claims)
    for epoch, n in acked.items():
        if n > 1:
            found.append(Violation("duplicate_epoch", job_id, f"epoch {epoch} acknowledged {n}x"))
    runs = job.get("runs") or []
    run_epochs = [int(r["epoch"]) for r in runs]
    top = max([*run_epochs, *acked, 0])
    complete_runs = len(runs) < MAX_RUNS
    if run_epochs and run_epochs != list(range(run_epochs[0], run_epochs[-1] + 1)):
        found.append(Violation("epoch_gap", job_id, f"run epochs {run_epochs}"))
    if complete_runs and run_epochs and run_epochs[0] != 1:
        found.append(Violation("epoch_gap", job_id, f"run history starts at {run_epochs[0]}"))
    if complete_runs and set(acked) | set(run_epochs) != set(range(1, top + 1)):
        seen = sorted(set(acked) | set(run_epochs))
        found.append(Violation("epoch_gap", job_id, f"epochs {seen}, expected 1..{top}"))
    by_epoch = {c.epoch: c for c in claims}
    for run in runs:
        epoch, agent = int(run["epoch"]), run["agent_id"]
        claim = by_epoch.get(epoch)
        if claim is not None:
            if claim.agent != agent:
                found.append(
                    Violation(
                        "duplicate_epoch",
                        job_id,
                        f"epoch {epoch} acknowledged to {claim.agent}, run is {agent}'s",
                    )
                )
        elif not _claim_in_doubt(history, agent, _time(run["claimed_at"]), strict):
            found.append(
                Violation("unknown_claim", job_id, f"run of epoch {epoch} by {agent} never acked")
            )
    return found


def _claim_in_doubt(history: History, agent: str, at: float, strict: bool) -> bool:
    """Whether a claim of ``agent`` whose answer was lost may have leased a run at ``at``.

    One a try of which got no answer (``claims_in_doubt``) may have, from its send on
    (the server stamped the lease after it got the request; one host clock), in any
    run. One that never got an answer at all (``doubtful_claims``: a killed replica or
    agent) may have at any time, in a run with crashes only.
    """
    sent = history.claims_in_doubt.get(agent)
    if sent is not None and sent <= at + TOLERANCE:
        return True
    return not strict and history.doubtful_claims[agent] > 0


def _lease_end(history: History, claim: Claim, writes: list[Write]) -> float:
    """The earliest moment the lease of ``claim`` may have ended, by what was acknowledged."""
    mine = [w for w in writes if w.epoch == claim.epoch and w.agent == claim.agent]
    expiry = max([claim.expires_at, *(w.expires_at for w in mine if w.expires_at is not None)])
    ended = [w.at for w in mine if w.op != "heartbeat"]
    doubts = [
        history.doubtful_ends.get((claim.job, claim.epoch)),
        history.deleted_agents.get(claim.agent),
    ]
    return min([expiry, *ended, *(d for d in doubts if d is not None)])


def _check_overlaps(
    history: History, job_id: str, claims: list[Claim], writes: list[Write]
) -> list[Violation]:
    found: list[Violation] = []
    for later in claims:
        for earlier in claims:
            if earlier.epoch >= later.epoch:
                continue
            # Server clock: the new lease began before the old one's acknowledged end.
            end = _lease_end(history, earlier, writes)
            if later.claimed_at + TOLERANCE < end:
                found.append(
                    Violation(
                        "overlapping_leases",
                        job_id,
                        f"epoch {later.epoch} claimed at {later.claimed_at:.6f}, "
                        f"epoch {earlier.epoch} live until {end:.6f}",
                    )
                )
        for w in writes:
            if w.epoch >= later.epoch:
                continue
            # Server clock: the coordinator accepted an old epoch after the new claim.
            if w.at > later.claimed_at + TOLERANCE:
                found.append(
                    Violation(
                        "stale_write",
                        job_id,
                        f"{w.op} of epoch {w.epoch} at {w.at:.6f} after epoch "
                        f"{later.epoch} was claimed at {later.claimed_at:.6f}",
                    )
                )
            # Client clock: sent after the new claim was acknowledged, and still accepted.
            elif w.sent > later.acked:
                found.append(
                    Violation(
                        "stale_write",
                        job_id,
                        f"{w.op} of epoch {w.epoch} sent at {w.sent:.6f} was accepted; "
                        f"epoch {later.epoch} was acknowledged at {later.acked:.6f}",
                    )
                )
    return found


def _check_completion(
    history: History, job_id: str, job: dict[str, Any], writes: list[Write]
) -> list[Violation]:
    found: list[Violation] = []
    completes = [w for w in writes if w.op == "complete"]
    status = job["status"]
    if len(completes) > 1:
        epochs = [w.epoch for w in completes]
        found.append(Violation("double_completion", job_id, f"completed by epochs {epochs}"))
    token = (job.get("result") or {}).get("token") if isinstance(job.get("result"), dict) else None
    if completes:
        if status != "succeeded" or token != completes[-1].token:
            found.append(
                Violation(
                    "terminal_changed",
                    job_id,
                    f"completion of epoch {completes[-1].epoch} acknowledged; now {status}",
                )
            )
    elif status == "succeeded" and token not in history.doubtful_tokens:
        found.append(Violation("phantom_completion", job_id, f"result token {token!r}"))
    runs = job.get("runs") or []
    succeeded_runs = [r for r in runs if r["outcome"] == "succeeded"]
    if len(succeeded_runs) > 1:
        found.append(
            Violation("double_completion", job_id, f"{len(succeeded_runs)} runs succeeded")
        )
    for w in writes:
        if w.op in ("fail", "release") and w.status in TERMINAL and status != w.status:
            if _retried_since(history, job_id, w.at):
                continue  # SPEC: terminal states change only through retry, and it was
            found.append(
                Violation("terminal_changed", job_id, f"{w.op} answered {w.status}; now {status}")
            )
    return found


def _check_cancels(
    history: History, job_id: str, job: dict[str, Any], claims: list[Claim]
) -> list[Violation]:
    """Bulk cancels are single-winner and never clobbered (SPEC 6).

    A job a bulk cancel answered is ``cancelled`` or ``cancel_requested`` from then
    on until its lease ends, which makes it terminal: no later call may match it,
    and a job it ended is never claimed again (no bulk retry redrives cancelled jobs
    here) and stays ``cancelled``.
    """
    found: list[Violation] = []
    cancels = history.cancels.get(job_id, [])
    if len(cancels) > 1:
        times = ", ".join(f"{c.at:.6f}" for c in cancels)
        found.append(Violation("double_cancel", job_id, f"cancelled at {times}"))
    at = history.cancelled_at.get(job_id)
    if at is None:
        return found
    runs = job.get("runs") or []
    claimed = [c.claimed_at for c in claims] + [_time(r["claimed_at"]) for r in runs]
    late = [t for t in claimed if t > at + TOLERANCE]
    if late:
        found.append(
            Violation("claim_after_cancel", job_id, f"cancelled at {at:.6f}, claimed at {late}")
        )
    if job["status"] != "cancelled" and not _retried_since(history, job_id, at):
        found.append(
            Violation(
                "terminal_changed", job_id, f"bulk cancel answered cancelled; now {job['status']}"
            )
        )
    return found


def _retried_since(history: History, job_id: str, at: float) -> bool:
    """Whether a bulk retry may have requeued the job after server time ``at``."""
    if history.retries_in_doubt:
        return True
    return any(r.at >= at - TOLERANCE for r in history.retries.get(job_id, []))


def _check_retries(
    history: History, job_id: str, job: dict[str, Any], claims: list[Claim]
) -> list[Violation]:
    """Bulk retries are single-winner: one failure is requeued once, however many race.

    A requeued job is ``queued``, and only a run (a claim) can make it ``failed`` or
    ``cancelled`` again (no cancel is sent here); so between two acknowledged retries
    of one job there must be a claim of it, acknowledged or in its run history.
    """
    retries = sorted(history.retries.get(job_id, []), key=lambda r: r.at)
    if len(retries) < 2:
        return []
    runs = job.get("runs") or []
    if len(runs) >= MAX_RUNS:
        return []  # the oldest runs were dropped: a claim between may be among them
    claimed = [c.claimed_at for c in claims] + [_time(r["claimed_at"]) for r in runs]
    found: list[Violation] = []
    for first, second in pairwise(retries):
        if not any(first.at < t < second.at for t in claimed):
            detail = f"retried at {first.at:.6f} and {second.at:.6f}, no claim between"
            found.append(Violation("double_retry", job_id, detail))
    return found


def _check_counts(
    history: History,
    final: dict[str, dict[str, Any] | None],
    queue_counts: dict[str, dict[str, int]],
) -> list[Violation]:
    found: list[Violation] = []
    expected: dict[str, Counter[str]] = defaultdict(Counter)
    for job_id, queue in history.enqueued.items():
        job = final.get(job_id)
        expected[queue]["enqueued"] += 1
        if job is not None:
            expected[queue][job["status"]] += 1
    for queue, seen in queue_counts.items():
        want = expected.get(queue, Counter())
        got = {s: int(seen.get(s, 0)) for s in STATUSES}
        if any(got[s] != want[s] for s in STATUSES) or sum(got.values()) != want["enqueued"]:
            detail = f"queues says {got}, jobs say {dict(want)}"
            found.append(Violation("status_counts", queue, detail))
    return found
