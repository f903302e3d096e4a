"""Fixtures of the coordinator API tests: one app per store provider, driven in-process."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
from fastapi import FastAPI
from fleet_coordinator import Settings, create_app
from fleet_coordinator.domain import JobState, ManualClock
from fleet_coordinator.services import Coordinator
from fleet_coordinator.services.cache import JobStates
from fleet_coordinator.store import Retention, job_from_doc, job_to_doc
from fleet_datastore import CosmosConfig, Document

ADMIN = "admin-token-for-tests"
API_PROVIDERS = ("memory", "sqlite", "cosmos")
"""Providers every API test runs on (a module may narrow them with ``PROVIDERS = (...)``).

Cosmos runs against the local Cosmos-protocol server; failing to start it fails the tests.
"""


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    """Run each test taking ``api`` once per provider its module asks for."""
    if "api" in metafunc.fixturenames:
        providers = getattr(metafunc.module, "PROVIDERS", API_PROVIDERS)
        metafunc.parametrize("api", providers, indirect=True)


class CheckedJobStates(JobStates):
    """``JobStates`` that checks every state a write remembers against the stored body.

    The coordinator remembers the ``JobState`` it wrote instead of decoding the
    stored body again, which is right only while ``job_from_doc(job_to_doc(s))``
    gives back ``s``; and its next write takes its patch from that state
    (``store.job_patch``), which is right only while the stored body is exactly
    ``job_to_doc(s)`` (the store's own "_" keys aside). Every API test on every
    provider checks both.
    """

    def __init__(self, ttl: Retention | None) -> None:
        super().__init__()
        self.ttl = ttl

    def remember(self, doc: Document, state: JobState) -> None:
        assert job_from_doc(doc.body) == state, (doc.body, state)
        own = {key: value for key, value in doc.body.items() if not key.startswith("_")}
        request_hash = str(doc.body.get("request_hash", ""))
        assert own == job_to_doc(state, doc.partition_key, request_hash, self.ttl), own
        super().remember(doc, state)


class CallCounter:
    """Counts the calls of one async method of ``owner``, patched for the test."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch, owner: Any, name: str) -> None:
        self.calls = 0
        original = getattr(owner, name)

        async def counted(*args: Any, **kwargs: Any) -> Any:
            self.calls += 1
            return await original(*args, **kwargs)

        monkeypatch.setattr(owner, name, counted)


@dataclass
class Api:
    """An app under test: its client, manual clock and coordinator, plus small helpers."""

    client: httpx.AsyncClient
    clock: ManualClock
    app: FastAPI

    @property
    def co(self) -> Coordinator:
        """The app's service context (for reaper ticks and stored-state checks)."""
        co: Coordinator = self.app.state.coordinator
        return co

    @property
    def admin(self) -> dict[str, str]:
        """Headers carrying the admin token."""
        return {"Authorization": f"Bearer {ADMIN}"}

    async def agent(self, **fields: Any) -> tuple[str, dict[str, str]]:
        """Register an agent; return its id and auth headers."""
        body = {"name": "worker", **fields}
        r = await self.client.post("/v1/agents", json=body, headers=self.admin)
        assert r.status_code == 201, r.text
        data = r.json()
        return data["agent"]["id"], {"Authorization": f"Bearer {data['token']}"}

    async def enqueue(self, **fields: Any) -> dict[str, Any]:
        """Enqueue a job and return it."""
        body = {"kind": "build", "payload": {"n": 1}, **fields}
        r = await self.client.post("/v1/jobs", json=body, headers=self.admin)
        assert r.status_code == 201, r.text
        data: dict[str, Any] = r.json()
        return data

    async def claim(self, headers: dict[str, str], **fields: Any) -> list[dict[str, Any]]:
        """Claim and return the leases."""
        r = await self.client.post("/v1/claims", json=fields, headers=headers)
        assert r.status_code == 200, r.text
        leases: list[dict[str, Any]] = r.json()["leases"]
        return leases

    async def job(self, job_id: str) -> dict[str, Any]:
        """Read a job with its runs."""
        r = await self.client.get(f"/v1/jobs/{job_id}", headers=self.admin)
        assert r.status_code == 200, r.text
        data: dict[str, Any] = r.json()
        return data


@pytest.fixture(scope="session")
def cosmos_server() -> Iterator[CosmosConfig]:
    """The local Cosmos-protocol server (or a real account), started once per session."""
    from tests.support.cosmos_local import cosmos_endpoint

    with cosmos_endpoint() as cfg:
        yield cfg


def store_settings(provider: str, tmp_path: Path, request: pytest.FixtureRequest) -> dict[str, Any]:
    """The ``Settings`` fields of a fresh store on ``provider`` (memory, sqlite, cosmos)."""
    if provider == "memory":
        return {"store_url": "memory://"}
    if provider == "sqlite":
        return {"store_url": f"sqlite:///{tmp_path}/fleet.db"}
    cfg: CosmosConfig = request.getfixturevalue("cosmos_server")
    return {
        "store_url": "cosmos://",
        "cosmos_endpoint": cfg.endpoint,
        "cosmos_key": cfg.key,
        "cosmos_database": f"t{uuid.uuid4().hex[:16]}",
    }


@pytest.fixture
async def api(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Api]:
    """A running app on each provider, with a manual clock and the reaper task off."""
    settings = Settings(
        **store_settings(str(request.param), tmp_path, request),
        admin_token=ADMIN,
        reaper_enabled=False,
        max_payload_bytes=4096,
        long_poll_interval_seconds=0.05,
    )
    clock = ManualClock()
    app = create_app(settings, clock=clock)
    async with app.router.lifespan_context(app):
        co: Coordinator = app.state.coordinator
        co.job_states = co.candidates.states = CheckedJobStates(co.ttl)
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:
            yield Api(client, clock, app)
