"""Fixtures of the client tests: the coordinator app in-process, and a served one."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator

import httpx
import pytest
from fastapi import FastAPI
from fleet_client import FleetClient
from fleet_coordinator import Settings, create_app

from tests.support.served import Served

ADMIN = "admin-token-for-client-tests"


class CountingTransport(httpx.AsyncBaseTransport):
    """Wraps a transport: counts requests, and refuses the first ``refuse`` connections."""

    def __init__(self, inner: httpx.AsyncBaseTransport, refuse: int = 0) -> None:
        self.inner = inner
        self.refuse = refuse
        self.requests: list[httpx.Request] = []

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        self.requests.append(request)
        if self.refuse:
            self.refuse -= 1
            raise httpx.ConnectError("connection refused (injected)", request=request)
        return await self.inner.handle_async_request(request)


@pytest.fixture
async def app() -> AsyncIterator[FastAPI]:
    """The coordinator app on the memory store, its lifespan running."""
    settings = Settings(store_url="memory://", admin_token=ADMIN, reaper_enabled=False)
    application = create_app(settings)
    async with application.router.lifespan_context(application):
        yield application


@pytest.fixture
async def fleet(app: FastAPI) -> AsyncIterator[FleetClient]:
    """A ``FleetClient`` talking to ``app`` in-process."""
    transport = httpx.ASGITransport(app=app)
    async with FleetClient("http://coordinator", ADMIN, transport=transport) as client:
        yield client


def client_of(
    app: FastAPI, token: str = ADMIN, refuse: int = 0
) -> tuple[FleetClient, CountingTransport]:
    """A client of ``app`` whose transport counts requests and may refuse the first ones."""
    transport = CountingTransport(httpx.ASGITransport(app=app), refuse)
    client = FleetClient(
        "http://coordinator", token, transport=transport, retry_timeout=5.0, retry_wait_max=0.05
    )
    return client, transport


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Served]:
    """A real ``fleet-coordinator serve`` on SQLite, shared by the module's tests."""
    with Served(cwd=tmp_path_factory.mktemp("coordinator")) as server:
        yield server
