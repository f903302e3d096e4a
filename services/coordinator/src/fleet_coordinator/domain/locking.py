"""Locks (SPEC semantics 9), the pure part: who holds a lock, judged from its holder job.

A lock document names its holder ``(job_id, epoch, at)``: the claim of that job at
that epoch took it. Whether the holder still holds it is judged from the holder
job as read, by the coordinator's clock, never trusted from the lock document
alone, because a lease can end without the release reaching the lock (a crash,
a store outage) and the lock must not stay taken for ever:

* the holder job is leased at exactly that epoch and its lease is live: **held**;
* that lease has expired (the reaper has not written the job yet): free once
  **fenced**. A write of the holder's lease decided while it was live (a heartbeat,
  a complete) may still be on its way to the store on the etag the claimer read,
  and would renew a lease whose lock is someone else's by then; so the next owner
  first fences the holder job (one conditional write on the etag it judged, which
  makes that write fail, and which fails itself if one landed since the read);
* the holder job is queued one epoch earlier: its claim is **in flight** (the lock
  is taken just before the lease write). Held for ``grace`` seconds after ``at``;
  after that the claimer is presumed dead, but its lease write might still land,
  so the next owner must first **fence** the holder job likewise;
* anything else (ended, requeued, retried, deleted): **free**. Nothing written
  before can renew a lease that is no longer the job's: its etag changed since.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum

from .clock import Timestamp
from .job import JobState
from .statuses import JobStatus

__all__ = ["Holder", "HolderState", "judge_holder"]


@dataclass(frozen=True, slots=True)
class Holder:
    """The claim that took a lock: the job, its lease's epoch and run id, and when."""

    job_id: str
    epoch: int
    at: Timestamp
    run_id: str = ""
    """The run (lease) the claim writes; unique per claim, where (job, epoch) is not:
    a claim that died in flight and the one that takes over share both."""

    def is_lease(self, job_id: str, epoch: int, run_id: str) -> bool:
        """Whether this holder is the lease ``run_id`` of ``job_id`` at ``epoch``."""
        same_run = not self.run_id or self.run_id == run_id
        return self.job_id == job_id and self.epoch == epoch and same_run


class HolderState(StrEnum):
    """What a lock's recorded holder means for a claimer that wants the lock."""

    HELD = "held"
    FREE = "free"
    FENCE = "fence"
    """Free once the holder job has been fenced: no write of it in flight (a claim's
    lease write, a late holder's heartbeat) can land after that."""


def judge_holder(
    holder: Holder, job: JobState | None, now: Timestamp, *, grace: float
) -> HolderState:
    """Whether ``holder`` still holds its lock, given its job as read (None: deleted)."""
    if job is None:
        return HolderState.FREE
    lease = job.lease
    if (
        job.status is JobStatus.LEASED
        and lease is not None
        and holder.is_lease(job.id, lease.epoch, lease.run_id)
    ):
        # An expired lease is no longer live (SPEC 3): its lock is free even before
        # the reaper writes the job, once a heartbeat or report the holder's replica
        # decided before the expiry can no longer land (the fence); its late calls
        # are then decided again and all fail.
        return HolderState.HELD if lease.is_live(now) else HolderState.FENCE
    if job.status is JobStatus.QUEUED and job.epoch == holder.epoch - 1:
        return HolderState.HELD if now - holder.at < grace else HolderState.FENCE
    return HolderState.FREE
