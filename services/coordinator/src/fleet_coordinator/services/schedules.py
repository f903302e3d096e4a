"""Schedules (SPEC semantics 11): periodic jobs, each occurrence enqueued exactly once.

A schedule is one document in ``schedules`` (its own partition). Every replica
runs ``fire_due`` on each reaper tick: for each active schedule it finds the
latest occurrence in ``(max(anchor, last_run_at), now]`` and enqueues it with the
idempotency key ``schedule:<name>:<occurrence>``. The job id is derived from that
key, so however many replicas fire the same occurrence, one create succeeds and
the others replay it (exactly once), then ``last_run_at`` moves forward with a
conditional write. Taking only the *latest* due occurrence is what makes a
downtime enqueue just the newest missed one (the others count as skipped), and
``anchor`` (set on create, replace and resume) is what keeps a resumed or
replaced schedule from making up occurrences from before it.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any

from fleet_datastore import (
    AlreadyExistsError,
    Document,
    NotFoundError,
    Patch,
    PreconditionFailedError,
    Query,
    eq,
)

from ..domain import Timestamp
from ..domain.cron import CronError, CronSchedule
from ..errors import CoordinatorError, UnavailableError, ValidationFailedError
from ..errors import NotFoundError as ScheduleNotFoundError
from ..store import OCCURRENCE_KEY_PREFIX, schedule_id
from .boundary import MAX_CAS_ATTEMPTS
from .context import Coordinator
from .jobs import NewJob, enqueue

__all__ = [
    "delete_schedule",
    "fire_due",
    "get_schedule",
    "list_schedules",
    "next_run_at",
    "pause_schedule",
    "put_schedule",
]

TEMPLATE_FIELDS = (
    "queue",
    "kind",
    "payload",
    "priority",
    "max_attempts",
    "lease_seconds",
    "timeout_seconds",
    "requires",
    "lock",
)
"""The job fields a schedule's template carries: those of ``api.models.ScheduledJob``.

No idempotency key, run_after or traceparent: each occurrence has its own.
"""


def _cron(body: Mapping[str, Any]) -> CronSchedule:
    return CronSchedule.parse(str(body["cron"]), str(body["timezone"]))


def next_run_at(body: Mapping[str, Any], now: Timestamp) -> Timestamp | None:
    """When the schedule fires next: its first occurrence not yet enqueued (after now if paused)."""
    start = float(body["anchor"])
    if body.get("last_run_at") is not None:
        start = max(start, float(body["last_run_at"]))
    if body.get("paused"):
        start = max(start, now)
    return _cron(body).next_after(start)


async def _read(co: Coordinator, name: str) -> Document | None:
    key = schedule_id(name)
    try:
        return await co.schedules.get(key, key)
    except NotFoundError:
        return None


async def get_schedule(co: Coordinator, name: str) -> dict[str, Any]:
    """One schedule's document; 404 if unknown."""
    doc = await _read(co, name)
    if doc is None:
        raise ScheduleNotFoundError(f"no schedule {name!r}", name=name)
    return doc.body


async def list_schedules(co: Coordinator) -> list[dict[str, Any]]:
    """Every schedule, by name."""
    items: list[dict[str, Any]] = []
    cont: str | None = None
    while True:
        query = Query(
            where=[eq("kind", "schedule")], order_by=["name"], limit=1000, continuation=cont
        )
        page = await co.schedules.query(query)
        items.extend(d.body for d in page.items)
        cont = page.continuation
        if cont is None:
            return items


async def put_schedule(
    co: Coordinator,
    name: str,
    *,
    cron: str,
    timezone: str,
    job: Mapping[str, Any],
    paused: bool,
) -> tuple[dict[str, Any], bool]:
    """Create or replace a schedule; return it and whether it was created."""
    try:
        CronSchedule.parse(cron, timezone)
    except CronError as exc:
        raise ValidationFailedError(str(exc), field=exc.field) from exc
    key = schedule_id(name)
    # Writers of one schedule here take turns (``keyed_locks.py``): ten PUTs at once
    # would otherwise race one another past MAX_CAS_ATTEMPTS into a 503.
    async with co.writers.lock(key):
        for _ in range(MAX_CAS_ATTEMPTS):
            now = co.clock.now()
            existing = await _read(co, name)
            body: dict[str, Any] = {
                "id": key,
                "pk": key,
                "kind": "schedule",
                "name": name,
                "cron": " ".join(cron.split()),
                "timezone": timezone,
                "job": {k: v for k, v in job.items() if k in TEMPLATE_FIELDS},
                "paused": paused,
                # Occurrences at or before the anchor are never enqueued: a new or replaced
                # schedule does not fire for times before it existed in this form.
                "anchor": now,
                "last_run_at": None if existing is None else existing.body.get("last_run_at"),
                "created_at": now if existing is None else existing.body["created_at"],
                "updated_at": now,
            }
            try:
                if existing is None:
                    doc = await co.schedules.create(body)
                else:
                    doc = await co.schedules.replace(body, etag=existing.etag)
            except (AlreadyExistsError, PreconditionFailedError, NotFoundError):
                continue  # a concurrent PUT, delete or firing: decide again on a fresh read
            co.log.info("coordinator.schedule.put", name=name, created=existing is None)
            return doc.body, existing is None
        raise UnavailableError("the schedule kept changing under this request; retry")


async def pause_schedule(co: Coordinator, name: str, paused: bool) -> dict[str, Any]:
    """Pause or resume; resuming moves the anchor to now, so missed occurrences stay missed."""
    async with co.writers.lock(schedule_id(name)):
        return await _write_paused(co, name, paused)


async def _write_paused(co: Coordinator, name: str, paused: bool) -> dict[str, Any]:
    """``pause_schedule``'s write loop."""
    for _ in range(MAX_CAS_ATTEMPTS):
        doc = await _read(co, name)
        if doc is None:
            raise ScheduleNotFoundError(f"no schedule {name!r}", name=name)
        if bool(doc.body.get("paused")) == paused:
            return doc.body
        now = co.clock.now()
        changes: dict[str, Any] = {"paused": paused, "updated_at": now}
        if not paused:
            changes["anchor"] = now
        result = await co.schedules.update_if_match(
            doc.id, doc.partition_key, doc, Patch(set=changes)
        )
        if result.ok and result.document is not None:
            co.log.info("coordinator.schedule.paused", name=name, paused=paused)
            return result.document.body
    raise UnavailableError("the schedule kept changing under this request; retry")


async def delete_schedule(co: Coordinator, name: str) -> None:
    """Delete a schedule; 404 if unknown. Jobs it enqueued stay."""
    key = schedule_id(name)
    gone = await co.schedules.delete(key, key)
    if not gone:
        raise ScheduleNotFoundError(f"no schedule {name!r}", name=name)
    co.log.info("coordinator.schedule.deleted", name=name)


def _occurrence_key(name: str, at: Timestamp) -> str:
    return f"{OCCURRENCE_KEY_PREFIX}{name}:{datetime.fromtimestamp(at, UTC).isoformat()}"


async def fire_due(co: Coordinator) -> int:
    """Enqueue every active schedule's latest due occurrence; return how many this replica made."""
    now = co.clock.now()
    fired = 0
    cont: str | None = None
    while True:
        query = Query(
            where=[eq("kind", "schedule")], order_by=["name"], limit=200, continuation=cont
        )
        page = await co.schedules.query(query)
        for doc in page.items:
            if doc.body.get("paused"):
                continue
            try:
                if await _fire(co, doc, now):
                    fired += 1
            except UnavailableError:
                raise  # the store is failing, not this schedule: the next tick tries them all
            except CoordinatorError as exc:
                # One schedule that cannot fire (its occurrence's key taken by a job with
                # another body, stored before such keys were refused) must not keep the
                # schedules after it from firing.
                co.log.warning(
                    "coordinator.schedule.fire_failed",
                    name=doc.body.get("name"),
                    code=exc.code,
                    error=exc.message,
                )
        cont = page.continuation
        if cont is None:
            return fired


async def _fire(co: Coordinator, doc: Document, now: Timestamp) -> bool:
    body = doc.body
    name = str(body["name"])
    after = float(body["anchor"])
    if body.get("last_run_at") is not None:
        after = max(after, float(body["last_run_at"]))
    cron = _cron(body)
    # 1. Decide: only the latest occurrence due by now; older missed ones are skipped.
    due = cron.latest(now, after)
    if due is None:
        return False
    # 2. Enqueue under the occurrence's key: across replicas one create wins, the others
    #    replay the same job, so the occurrence exists exactly once.
    key = _occurrence_key(name, due)
    template = dict(body.get("job") or {})
    new = NewJob(
        **template,
        idempotency_key=key,
        schedule=name,
        request_hash=hashlib.sha256(key.encode()).hexdigest(),
    )
    job, created = await enqueue(co, new)
    if created:
        skipped = cron.count_between(after, due) if body.get("last_run_at") is not None else 0
        co.metrics.occurrences.labels("fired").inc()
        if skipped:
            co.metrics.occurrences.labels("skipped").inc(skipped)
        co.log.info("coordinator.schedule.fired", name=name, job_id=job.id, at=due, skipped=skipped)
    # 3. Record it on the etag read: a PUT, pause or another replica's record since
    #    makes this a conflict, and the newer document stands.
    await co.schedules.update_if_match(
        doc.id, doc.partition_key, doc, Patch(set={"last_run_at": due})
    )
    return created
