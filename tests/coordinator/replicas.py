"""Several coordinator apps over one store of any provider, driven in-process on one clock."""

from __future__ import annotations

from contextlib import AsyncExitStack
from pathlib import Path
from typing import Any

import httpx
import pytest
from fleet_coordinator import Settings, create_app
from fleet_coordinator.domain import ManualClock
from fleet_datastore import DocumentStore, store_from_url

from .conftest import ADMIN, Api, store_settings

__all__ = ["PROVIDERS", "replicas"]

PROVIDERS = ("memory", "sqlite", "cosmos")


async def replicas(
    provider: str,
    tmp_path: Path,
    request: pytest.FixtureRequest,
    stack: AsyncExitStack,
    n: int = 3,
    **settings: Any,
) -> list[Api]:
    """``n`` apps (reaper tasks off) sharing one store and one manual clock."""
    store: DocumentStore | None = None
    shared: dict[str, Any]
    if provider == "memory":
        store = store_from_url("memory://")  # one process: the apps share the object
        shared = {"store_url": "memory://"}
    else:
        shared = store_settings(provider, tmp_path, request)
    clock = ManualClock()
    apps = []
    for _ in range(n):
        s = Settings(**shared, admin_token=ADMIN, reaper_enabled=False, **settings)
        app = create_app(s, clock=clock, store=store)
        await stack.enter_async_context(app.router.lifespan_context(app))
        transport = httpx.ASGITransport(app=app)
        client = await stack.enter_async_context(
            httpx.AsyncClient(transport=transport, base_url="http://test")
        )
        apps.append(Api(client, clock, app))
    return apps
