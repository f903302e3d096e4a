"""Batch reports (SPEC semantics 13): many lease calls of one agent in one request.

Each report is applied exactly as its single endpoint would apply it — the
same service function, so the same fencing (one conditional write judged
against the stored holder and epoch) — and its failure is caught and answered
in its place, so one stale epoch or missing job changes nothing for the
others. Reports name distinct jobs (the API refuses a repeated job id before
anything runs), so they are independent and go to the store together: one
round trip of latency on Cosmos, one group commit on SQLite.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from dataclasses import dataclass
from enum import StrEnum
from typing import Any, cast

from ..domain import JobState
from ..errors import CoordinatorError
from .context import Coordinator
from .leases import complete_job, fail_job, heartbeat_job, release_job

__all__ = ["Action", "Report", "ReportOutcome", "apply_report", "apply_reports"]


class Action(StrEnum):
    """What a report does to its lease; each is one of the single agent endpoints."""

    HEARTBEAT = "heartbeat"
    COMPLETE = "complete"
    FAIL = "fail"
    RELEASE = "release"


@dataclass(frozen=True, slots=True, kw_only=True)
class Report:
    """One validated report of the calling agent on one of its leases."""

    job_id: str
    epoch: int
    action: Action
    result: Any = None
    error: str = ""
    retryable: bool = True
    progress: Any = None


@dataclass(frozen=True, slots=True)
class ReportOutcome:
    """What one report did: the job after it, or the error its single endpoint would answer."""

    job_id: str
    job: JobState | None = None
    error: CoordinatorError | None = None


async def apply_report(co: Coordinator, agent_id: str, report: Report) -> JobState:
    """Apply one report as its single endpoint does; raise its ``CoordinatorError``."""
    if report.action is Action.HEARTBEAT:
        return await heartbeat_job(co, agent_id, report.job_id, report.epoch, report.progress)
    if report.action is Action.COMPLETE:
        return await complete_job(co, agent_id, report.job_id, report.epoch, report.result)
    if report.action is Action.FAIL:
        return await fail_job(
            co, agent_id, report.job_id, report.epoch, report.error, report.retryable
        )
    return await release_job(co, agent_id, report.job_id, report.epoch)


async def _outcome(co: Coordinator, agent_id: str, report: Report) -> ReportOutcome:
    try:
        return ReportOutcome(report.job_id, job=await apply_report(co, agent_id, report))
    except CoordinatorError as exc:
        # Answered in its place (lease_lost, not_found, store_unavailable …): the
        # other reports of the batch are unaffected.
        return ReportOutcome(report.job_id, error=exc)


async def apply_reports(
    co: Coordinator, agent_id: str, reports: Sequence[Report]
) -> list[ReportOutcome]:
    """Apply each report on its own; the outcomes in request order."""
    if len(reports) == 1:
        return [await _outcome(co, agent_id, reports[0])]
    outcomes = await asyncio.gather(
        *(_outcome(co, agent_id, r) for r in reports), return_exceptions=True
    )
    for outcome in outcomes:
        if isinstance(outcome, BaseException):
            # A defect (a store error is answered in its place): a 500, raised once
            # every other report has settled rather than left running unawaited.
            raise outcome
    return cast("list[ReportOutcome]", outcomes)
