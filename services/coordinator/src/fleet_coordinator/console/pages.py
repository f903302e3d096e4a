"""The console's pages (GET): overview, queues, jobs, a job, failed jobs, agents, schedules.

Every page reads only what indexes serve: the queue snapshot (``StatsSnapshot``),
one page of an indexed job listing, one job by id, the agents, the per-minute
counters held in memory. None walks the jobs.
"""

from __future__ import annotations

from typing import Annotated, Any
from urllib.parse import quote

from fastapi import APIRouter, Depends, Query, Request
from fastapi.responses import HTMLResponse, Response

from ..api.convert import agent_out
from ..api.deps import Co
from ..api.queries import DECIMAL
from ..domain import JobStatus
from ..errors import BadRequestError, NotFoundError
from ..services import get_job, list_agents, list_jobs, queue_stats
from ..services.context import Coordinator
from ..store.listing import JobFilter
from .charts import STATUSES, queue_bars, throughput_chart
from .schedules import list_schedules
from .sessions import Session
from .web import console_of, page, redirect, require_session

__all__ = ["router"]

router = APIRouter(prefix="/ui", include_in_schema=False)

SessionDep = Annotated[Session, Depends(require_session)]
Text = Annotated[str | None, Query(max_length=255)]
PAGE_SIZE = 50


async def snapshot(request: Request, co: Coordinator) -> list[dict[str, Any]]:
    """The queue summaries, at most one recomputation per snapshot age (``StatsSnapshot``)."""
    items: list[dict[str, Any]] = await console_of(request).stats.get(lambda: queue_stats(co))
    return items


@router.get("/", response_class=HTMLResponse)
async def overview(request: Request, co: Co, session: SessionDep) -> Response:
    """Queues as bars, the last hour's throughput, and the fleet at a glance."""
    items = await snapshot(request, co)
    agents = [agent_out(b, co.ledger.live_leases(b)) for b in await list_agents(co)]
    totals = {s: sum(int(i[s]) for i in items) for s in STATUSES}
    return page(
        request,
        "overview.html",
        session=session,
        bars=queue_bars(items),
        chart=throughput_chart(co.throughput.last_hour(co.clock.now())),
        totals=totals,
        paused=[i["queue"] for i in items if i["paused"]],
        agents=agents,
        statuses=STATUSES,
    )


@router.get("/queues", response_class=HTMLResponse)
async def queues(request: Request, co: Co, session: SessionDep) -> Response:
    """Every queue: counts by status, oldest queued age, paused, pause and resume."""
    items = await snapshot(request, co)
    bars = {b.queue: b for b in queue_bars(items)}
    return page(request, "queues.html", session=session, items=items, bars=bars, statuses=STATUSES)


def _filter(queue: str | None, status: str | None, kind: str | None, lock: str | None) -> JobFilter:
    valid = {s.value for s in JobStatus}
    return JobFilter(
        queue=queue or None,
        status=status if status in valid else None,
        kind=kind or None,
        lock=lock or None,
    )


async def _listing_page(
    request: Request,
    template: str,
    co: Coordinator,
    session: Session,
    match: JobFilter,
    cursor: str | None,
    **context: Any,
) -> Response:
    """A page of jobs matching ``match`` from ``cursor``, rendered with ``template``."""
    notice = None
    try:
        jobs, nxt = await list_jobs(co, match, limit=PAGE_SIZE, cursor=cursor or None)
    except BadRequestError:
        # A cursor from other filters (edited by hand): show the first page and say so.
        jobs, nxt = await list_jobs(co, match, limit=PAGE_SIZE, cursor=None)
        notice = "That page link no longer matches the filters; showing the first page."
    return page(
        request,
        template,
        session=session,
        jobs=jobs,
        match=match,
        next_cursor=nxt,
        cursor=cursor or "",
        notice=notice,
        **context,
    )


@router.get("/jobs", response_class=HTMLResponse)
async def jobs(
    request: Request,
    co: Co,
    session: SessionDep,
    queue: Text = None,
    status: Text = None,
    kind: Text = None,
    lock: Text = None,
    cursor: Annotated[str | None, Query(max_length=4096)] = None,
) -> Response:
    """Jobs filtered by queue, status, kind and lock, oldest first, a page at a time."""
    match = _filter(queue, status, kind, lock)
    return await _listing_page(request, "jobs.html", co, session, match, cursor, statuses=STATUSES)


@router.get("/jobs/open", response_class=HTMLResponse)
async def open_job(
    request: Request, session: SessionDep, id: Annotated[str, Query(max_length=255)] = ""
) -> Response:
    """Open a job by id (the form on the jobs page; the id goes in the path, escaped)."""
    job_id = id.strip()
    if not job_id:
        return redirect("/ui/jobs")
    return redirect(f"/ui/jobs/{quote(job_id, safe='')}")


@router.get("/jobs/{job_id}", response_class=HTMLResponse)
async def job(
    request: Request, job_id: str, co: Co, session: SessionDep, refused: Text = None
) -> Response:
    """One job: payload, result, the runs as a timeline; cancel and retry."""
    try:
        state = await get_job(co, job_id)
    except NotFoundError:
        return page(request, "missing.html", session=session, status=404, job_id=job_id)
    return page(request, "job.html", session=session, job=state, refused=refused)


@router.get("/failed", response_class=HTMLResponse)
async def failed(
    request: Request,
    co: Co,
    session: SessionDep,
    queue: Text = None,
    kind: Text = None,
    status: Text = None,
    cursor: Annotated[str | None, Query(max_length=4096)] = None,
    retried: Annotated[int | None, Query(ge=0), DECIMAL] = None,
) -> Response:
    """Failed (or cancelled) jobs, oldest first, with a bulk retry of the same filter."""
    which = "cancelled" if status == "cancelled" else "failed"
    match = _filter(queue, which, kind, None)
    return await _listing_page(request, "failed.html", co, session, match, cursor, retried=retried)


@router.get("/agents", response_class=HTMLResponse)
async def agents(request: Request, co: Co, session: SessionDep) -> Response:
    """Agents: labels, capacity, live leases, last seen; drain and delete."""
    items = [agent_out(b, co.ledger.live_leases(b)) for b in await list_agents(co)]
    return page(request, "agents.html", session=session, agents=items)


@router.get("/schedules", response_class=HTMLResponse)
async def schedules(request: Request, co: Co, session: SessionDep) -> Response:
    """Schedules, read-only."""
    return page(request, "schedules.html", session=session, schedules=await list_schedules(co))
