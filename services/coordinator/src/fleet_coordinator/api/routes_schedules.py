"""Admin schedule endpoints: put, list, read, delete, pause, resume (SPEC semantics 11)."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Path, Response
from pydantic import AfterValidator

from ..domain import to_datetime
from ..services import (
    delete_schedule,
    get_schedule,
    list_schedules,
    pause_schedule,
    put_schedule,
)
from ..services.context import Coordinator
from ..services.schedules import next_run_at
from .deps import AdminAuth, Co
from .models import ScheduleCreate, ScheduleList, ScheduleOut, not_a_dot_segment
from .routes_jobs import check_size

__all__ = ["router"]

router = APIRouter(prefix="/v1/schedules", dependencies=[AdminAuth], tags=["admin"])

Name = Annotated[str, Path(pattern=r"^[A-Za-z0-9_.:-]{1,128}$")]
# Only a new name is refused: a "." or ".." schedule stored before stays readable and
# deletable by a client that sends the segment encoded (%2E%2E, as fleet_client does).
NewName = Annotated[Name, AfterValidator(not_a_dot_segment)]


def _out(co: Coordinator, body: dict[str, Any]) -> ScheduleOut:
    nxt = next_run_at(body, co.clock.now())
    last = body.get("last_run_at")
    return ScheduleOut(
        name=body["name"],
        cron=body["cron"],
        timezone=body["timezone"],
        job=body["job"],
        paused=bool(body["paused"]),
        next_run_at=None if nxt is None else to_datetime(nxt),
        last_run_at=None if last is None else to_datetime(float(last)),
        created_at=to_datetime(float(body["created_at"])),
        updated_at=to_datetime(float(body["updated_at"])),
    )


@router.put("/{name}", status_code=201, responses={200: {"model": ScheduleOut}})
async def put(name: NewName, body: ScheduleCreate, co: Co, response: Response) -> ScheduleOut:
    """Create (201) or replace (200) a schedule; 422 for a bad cron, time zone or name.

    A replacement with the same `cron` and `timezone` keeps its occurrences: one already
    due and not yet enqueued still is, so putting a schedule again unchanged (as a deploy
    may, every time) drops nothing; `paused` changed is a pause or a resume. Another
    `cron` or `timezone` starts the schedule from now: an occurrence of the old form due
    and not yet enqueued is dropped.

    The names `.` and `..` are refused: ordinary HTTP clients drop them from a URL path,
    so such a schedule could not be read, paused or deleted with them.
    """
    check_size(co, body.job.payload, "payload")
    doc, created = await put_schedule(
        co,
        name,
        cron=body.cron,
        timezone=body.timezone,
        job=body.job.model_dump(mode="json"),
        paused=body.paused,
    )
    if not created:
        response.status_code = 200
    return _out(co, doc)


@router.get("")
async def list_all(co: Co) -> ScheduleList:
    """Every schedule with its next and last run."""
    return ScheduleList(items=[_out(co, b) for b in await list_schedules(co)])


@router.get("/{name}")
async def read(name: Name, co: Co) -> ScheduleOut:
    """One schedule."""
    return _out(co, await get_schedule(co, name))


@router.delete("/{name}", status_code=204)
async def delete(name: Name, co: Co) -> Response:
    """Delete a schedule; the jobs it enqueued stay."""
    await delete_schedule(co, name)
    return Response(status_code=204)


@router.post("/{name}/pause")
async def pause(name: Name, co: Co) -> ScheduleOut:
    """Stop enqueueing; ``next_run_at`` still shows when it would fire.

    An occurrence already due and not yet enqueued is kept for the resume.
    """
    return _out(co, await pause_schedule(co, name, True))


@router.post("/{name}/resume")
async def resume(name: Name, co: Co) -> ScheduleOut:
    """Enqueue again; the occurrences that fell due while paused are not made up.

    One that was due and not yet enqueued when the schedule was paused is enqueued at the
    next sweep (unless a later one is due by then: as after a downtime, only the latest).
    """
    return _out(co, await pause_schedule(co, name, False))
