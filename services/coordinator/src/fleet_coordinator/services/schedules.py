"""Schedules (SPEC semantics 11): periodic jobs, each occurrence enqueued exactly once.

A schedule is one document in ``schedules`` (its own partition). Every replica
runs ``fire_due`` on each reaper tick: for each active schedule it finds the
latest occurrence in ``(max(anchor, last_run_at), now]`` (or, if there is none, the
occurrence a pause left owed) and enqueues it with the idempotency key
``schedule:<name>:<occurrence>``. The job id is derived from that key, so however
many replicas fire the same occurrence, one create succeeds and the others replay
it (exactly once), then ``last_run_at`` moves forward with a conditional write.
Taking only the *latest* due occurrence is what makes a downtime enqueue just the
newest missed one (the others count as skipped).

Which occurrences a write gives up:

* ``anchor`` (occurrences at or before it are never enqueued) is set on create, by a
  PUT that changes ``cron`` or ``timezone`` (the schedule starts again from now, in
  its new form, owing the old form's occurrence already due), and on resume
  (occurrences that fell due while paused are not made up). A PUT that keeps
  ``cron`` and ``timezone`` keeps the anchor: re-applying a schedule unchanged (a
  deploy doing it every time) must not drop an occurrence that is due but not yet
  swept.
* ``owed_at``: a pause, or a PUT that changes ``cron`` or ``timezone``, records the
  occurrence already due and not yet enqueued at that moment; it fell due while the
  schedule was active in its old form, so it is neither "missed while paused" nor
  before the new form's start, and the first sweep that may fire enqueues it
  (unless a later occurrence is due by then: only the latest).
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


def _after(body: Mapping[str, Any]) -> Timestamp:
    """Occurrences at or before this were enqueued or given up: the anchor or the last run."""
    start = float(body["anchor"])
    if body.get("last_run_at") is not None:
        start = max(start, float(body["last_run_at"]))
    return start


def _owed(body: Mapping[str, Any]) -> Timestamp | None:
    """The occurrence a pause left due, while it is not enqueued yet."""
    owed = body.get("owed_at")
    if owed is None:
        return None
    last = body.get("last_run_at")
    if last is not None and float(last) >= float(owed):
        return None
    return float(owed)


def _due(body: Mapping[str, Any], now: Timestamp) -> Timestamp | None:
    """The occurrence an active schedule enqueues at ``now``, if one is due.

    The latest in ``(max(anchor, last_run_at), now]``; failing that, the one a pause
    left owed.
    """
    latest = _cron(body).latest(now, _after(body))
    if latest is not None:
        return latest
    owed = _owed(body)
    return owed if owed is not None and owed <= now else None


def next_run_at(body: Mapping[str, Any], now: Timestamp) -> Timestamp | None:
    """When the schedule fires next: its first occurrence not yet enqueued (after now if paused)."""
    if body.get("paused"):
        return _cron(body).next_after(max(_after(body), now))
    owed = _owed(body)
    if owed is not None:
        return owed  # due already: the next sweep enqueues it
    return _cron(body).next_after(_after(body))


def _pausing(body: Mapping[str, Any], paused: bool, now: Timestamp) -> dict[str, Any]:
    """What pausing or resuming ``body`` at ``now`` changes besides ``paused``."""
    if paused:
        # An occurrence already due fell due while the schedule was active: a pause
        # (even one resumed at once) must not drop it, so it stays owed.
        return {"owed_at": _due(body, now)}
    # Occurrences that fell due while paused are not made up: start again after now.
    return {"anchor": now}


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
    """Create or replace a schedule; return it and whether it was created.

    A replacement that keeps ``cron`` and ``timezone`` keeps the occurrences already
    due (only its job template, ``paused`` and ``updated_at`` change, and a change of
    ``paused`` is a pause or a resume); one that changes either starts from now,
    owing the occurrence already due in the old form.
    """
    try:
        CronSchedule.parse_new(cron, timezone)
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
                # Occurrences at or before the anchor are never enqueued: a new schedule,
                # or one put in another form, does not fire for times before it existed so.
                "anchor": now,
                "owed_at": None,
                "last_run_at": None if existing is None else existing.body.get("last_run_at"),
                "created_at": now if existing is None else existing.body["created_at"],
                "updated_at": now,
            }
            if existing is not None and not _same_times(existing.body, body):
                # The new form starts from now, but the old form's occurrence already
                # due and not yet swept fell due while it was in force: it stays owed,
                # as a pause keeps it (SPEC 11: each occurrence enqueued once).
                old = existing.body
                body["owed_at"] = _owed(old) if old.get("paused") else _due(old, now)
            elif existing is not None:
                # The same occurrences as before: keep those due and not yet enqueued (a
                # sweep may be firing one right now; its idempotency key and its record
                # on a fresh read keep that single).
                old = existing.body
                body["anchor"] = old["anchor"]
                body["owed_at"] = old.get("owed_at")
                if bool(old.get("paused")) != paused:
                    body |= _pausing(old, paused, now)
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


def _same_times(old: Mapping[str, Any], new: Mapping[str, Any]) -> bool:
    """Whether a replacement keeps the occurrences: the same cron (spacing aside) and zone."""
    return bool(old["cron"] == new["cron"] and old["timezone"] == new["timezone"])


async def pause_schedule(co: Coordinator, name: str, paused: bool) -> dict[str, Any]:
    """Pause or resume; the occurrence due at the pause is kept, those missed while paused not."""
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
        changes |= _pausing(doc.body, paused, now)
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
    # 1. Decide: only the latest occurrence due by now; older missed ones are skipped.
    due = _due(body, now)
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
        after = _after(body)
        skipped = 0
        if body.get("last_run_at") is not None:
            skipped = _cron(body).count_between(after, due)
        owed = _owed(body)
        if owed is not None and owed < due:
            skipped += 1  # a later occurrence fell due after the resume: only the latest
        co.metrics.occurrences.labels("fired").inc()
        if skipped:
            co.metrics.occurrences.labels("skipped").inc(skipped)
        co.log.info("coordinator.schedule.fired", name=name, job_id=job.id, at=due, skipped=skipped)
    await _record(co, doc, due)
    return created


async def _record(co: Coordinator, doc: Document, due: Timestamp) -> None:
    """3. Record ``due`` as enqueued, on the etag read, and on a fresh read after a conflict.

    A PUT or pause since the sweep's read keeps the occurrences already due, so
    leaving the record to the next sweep would have that one re-fire the
    occurrence (a replay while its job exists) or, after a pause, keep it owed
    until the resume. Another replica's record of the same or a later occurrence
    ends the loop.
    """
    for _ in range(MAX_CAS_ATTEMPTS):
        last = doc.body.get("last_run_at")
        if last is not None and float(last) >= due:
            return
        changes: dict[str, Any] = {"last_run_at": due}
        owed = doc.body.get("owed_at")
        if owed is not None and float(owed) <= due:
            changes["owed_at"] = None
        result = await co.schedules.update_if_match(
            doc.id, doc.partition_key, doc, Patch(set=changes)
        )
        if result.ok:
            return
        fresh = await _read(co, str(doc.body["name"]))
        if fresh is None or fresh.body["created_at"] != doc.body["created_at"]:
            return  # deleted meanwhile (and perhaps created anew): not its occurrence
        doc = fresh
    # Still contended: the next sweep finds the occurrence due again and replays it.
