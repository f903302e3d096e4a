"""Fleet client: enqueue and administer jobs on a Fleet Coordinator from an application.

Enqueue from your app::

    async with FleetClient.from_env() as fleet:
        job = await fleet.enqueue("resize", {"width": 640}, idempotency_key="img-42")

``SyncFleetClient`` is the same client for code without an event loop, and
``fleet`` (``fleet_client.cli``) the admin command line built on it. The package
does not import ``fleet_coordinator`` or ``fleet_agent``.
"""

from .client import BATCH_LIMIT, DEFAULT_URL, FleetClient
from .errors import (
    Conflict,
    CoordinatorUnavailable,
    FleetError,
    NotFound,
    RequestRejected,
    ServerError,
    Unauthorized,
)
from .models import (
    TERMINAL,
    Agent,
    AgentCreated,
    Job,
    JobDetail,
    JobOptions,
    JobPage,
    JobSpec,
    JobStatus,
    Lease,
    QueueStats,
    Run,
    Schedule,
)
from .sync import SyncFleetClient

__all__ = [
    "BATCH_LIMIT",
    "DEFAULT_URL",
    "TERMINAL",
    "Agent",
    "AgentCreated",
    "Conflict",
    "CoordinatorUnavailable",
    "FleetClient",
    "FleetError",
    "Job",
    "JobDetail",
    "JobOptions",
    "JobPage",
    "JobSpec",
    "JobStatus",
    "Lease",
    "NotFound",
    "QueueStats",
    "RequestRejected",
    "Run",
    "Schedule",
    "ServerError",
    "SyncFleetClient",
    "Unauthorized",
]
