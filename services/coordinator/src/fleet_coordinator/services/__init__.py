"""The coordinator's services: the domain joined to the store, with no HTTP in them."""

from .agents import (
    authenticate,
    create_agent,
    delete_agent,
    drain_agent,
    get_agent,
    list_agents,
    read_agent,
    remember_agents,
)
from .bulk import bulk_cancel, bulk_retry
from .claims import claim_jobs, claim_waiting, wait_and_claim
from .context import Coordinator, Notifier
from .departed import settle_departed, sweep_departed
from .jobs import NewJob, cancel_job, enqueue, enqueue_batch, get_job, list_jobs, retry_job
from .leases import (
    complete_job,
    fail_job,
    heartbeat_job,
    lease_ended,
    release_job,
)
from .pauses import refresh_paused, set_paused
from .queues import StatsSnapshot, queue_stats
from .reaper import reap_once, reaper_tick, run_reaper
from .retention import purge_once
from .schedules import (
    delete_schedule,
    fire_due,
    get_schedule,
    list_schedules,
    pause_schedule,
    put_schedule,
)

__all__ = [
    "Coordinator",
    "NewJob",
    "Notifier",
    "StatsSnapshot",
    "authenticate",
    "bulk_cancel",
    "bulk_retry",
    "cancel_job",
    "claim_jobs",
    "claim_waiting",
    "complete_job",
    "create_agent",
    "delete_agent",
    "delete_schedule",
    "drain_agent",
    "enqueue",
    "enqueue_batch",
    "fail_job",
    "fire_due",
    "get_agent",
    "get_job",
    "get_schedule",
    "heartbeat_job",
    "lease_ended",
    "list_agents",
    "list_jobs",
    "list_schedules",
    "pause_schedule",
    "purge_once",
    "put_schedule",
    "queue_stats",
    "read_agent",
    "remember_agents",
    "reap_once",
    "reaper_tick",
    "refresh_paused",
    "release_job",
    "retry_job",
    "run_reaper",
    "set_paused",
    "settle_departed",
    "sweep_departed",
    "wait_and_claim",
]
