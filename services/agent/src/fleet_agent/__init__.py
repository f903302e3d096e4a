"""Fleet agent: a client for the coordinator's agent API, a ``Worker`` and ``fleet-agent run``.

A worker in a few lines::

    async with AgentClient(url, token) as client:
        await Worker(client, {"resize": resize}, concurrency=4).run(handle_signals=True)

The package does not import ``fleet_coordinator``: agents install only this.
"""

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
from .handlers import ENTRY_POINT_GROUP, load_handlers
from .job import CancelReason, Handler, Job
from .models import Claimed, HeartbeatAnswer, JobInfo, Lease, Report, ReportAnswer, Reported
from .shell import run_shell
from .worker import Worker

__all__ = [
    "ENTRY_POINT_GROUP",
    "AgentClient",
    "AgentError",
    "CancelReason",
    "Claimed",
    "CoordinatorUnavailable",
    "Handler",
    "HeartbeatAnswer",
    "Job",
    "JobFailed",
    "JobInfo",
    "Lease",
    "LeaseLost",
    "Report",
    "ReportAnswer",
    "Reported",
    "RequestRejected",
    "ServerError",
    "Unauthorized",
    "Worker",
    "load_handlers",
    "run_shell",
]
