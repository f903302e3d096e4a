"""The pure domain core of the coordinator: the job state machine, with no I/O.

Statuses and allowed transitions, the job value with its lease and bounded run
history, lease and backoff maths against an injected ``Clock``, and pure
transition functions that return a new ``JobState`` or a ``Rejected``. The
service layer joins these to the datastore with conditional writes; see
docs/domain.md for the state machine and the attempt rules.
"""

from ._replace import constructor
from .agent import RESERVATION_GRACE, AgentState, Holding, is_stale
from .backoff import DEFAULT_BACKOFF, BackoffPolicy, RandomSource
from .clock import Clock, ManualClock, SystemClock, Timestamp, from_datetime, to_datetime
from .job import MAX_RUNS, JobState, Lease, Run
from .leasing import claim, complete, fail, heartbeat, release
from .lifecycle import cancel, enqueue, retry
from .locking import Holder, HolderState, judge_holder
from .matching import claim_rejection, is_claimable, labels_satisfy
from .reaping import reap, reap_due_at
from .rejections import Rejected, Rejection
from .statuses import (
    ALLOWED_TRANSITIONS,
    TERMINAL_STATUSES,
    JobStatus,
    RunOutcome,
    can_transition,
    is_terminal,
)

__all__ = [
    "ALLOWED_TRANSITIONS",
    "DEFAULT_BACKOFF",
    "MAX_RUNS",
    "RESERVATION_GRACE",
    "AgentState",
    "TERMINAL_STATUSES",
    "BackoffPolicy",
    "Holder",
    "HolderState",
    "Clock",
    "Holding",
    "JobState",
    "JobStatus",
    "Lease",
    "ManualClock",
    "RandomSource",
    "Rejected",
    "Rejection",
    "Run",
    "RunOutcome",
    "SystemClock",
    "Timestamp",
    "can_transition",
    "cancel",
    "claim",
    "claim_rejection",
    "constructor",
    "complete",
    "enqueue",
    "fail",
    "from_datetime",
    "heartbeat",
    "is_claimable",
    "is_stale",
    "is_terminal",
    "judge_holder",
    "labels_satisfy",
    "reap",
    "reap_due_at",
    "release",
    "retry",
    "to_datetime",
]
