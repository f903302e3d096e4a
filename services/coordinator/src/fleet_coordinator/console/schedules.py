"""The schedules the console lists, read from a ``schedules`` container if this store declares one.

Schedules are their own feature; until it lands no replica declares the
container and the console shows "no schedules". This is the one place that
reads them, so the feature can replace it with its own listing.
"""

from __future__ import annotations

from typing import Any

from fleet_datastore import Query, UnknownContainerError

from ..services import Coordinator
from ..services.boundary import GuardedContainer

__all__ = ["list_schedules"]

_SHOWN = 500


async def list_schedules(co: Coordinator) -> list[dict[str, Any]]:
    """Up to 500 schedule documents by name, or none when the store has no schedules."""
    try:
        container = co.containers.store.get_container("schedules")
    except UnknownContainerError:
        return []
    page = await GuardedContainer(container).query(Query(limit=_SHOWN))
    return sorted((d.body for d in page.items), key=lambda b: str(b.get("name", b.get("id"))))
