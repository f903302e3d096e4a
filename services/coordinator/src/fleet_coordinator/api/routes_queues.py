"""Admin queue endpoints: the queue summaries, pause and resume."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Path

from ..errors import NotFoundError
from ..services import queue_stats, set_paused
from ..services.context import Coordinator
from .deps import AdminAuth, Co
from .models import QueueList, QueueStatsOut

__all__ = ["router"]

router = APIRouter(prefix="/v1/queues", dependencies=[AdminAuth], tags=["admin"])

QueuePath = Annotated[str, Path(pattern=r"^[A-Za-z0-9_.:-]{1,64}$")]


@router.get("")
async def queues(co: Co) -> QueueList:
    """Counts per status, the oldest queued age and the paused flag of every queue."""
    return QueueList.model_validate({"items": await queue_stats(co)})


async def _entry(co: Coordinator, queue: str) -> QueueStatsOut:
    for item in await queue_stats(co, only=queue):
        return QueueStatsOut.model_validate(item)
    raise NotFoundError(f"no queue {queue!r}", queue=queue)  # its marker was just written


@router.post("/{queue}/pause")
async def pause(queue: QueuePath, co: Co) -> QueueStatsOut:
    """Hand out no new leases from the queue, on every replica within one reaper interval."""
    await set_paused(co, queue, True)
    return await _entry(co, queue)


@router.post("/{queue}/resume")
async def resume(queue: QueuePath, co: Co) -> QueueStatsOut:
    """Make the queue's jobs claimable again; long-polls already waiting receive them."""
    await set_paused(co, queue, False)
    return await _entry(co, queue)
