"""Fixtures of the datastore contract suite: one ``store`` per provider, never skipped.

Every test that takes ``store`` (or ``jobs``) runs once per provider in
``PROVIDERS``. A provider that cannot run here is a failing test, not a skip:
the Cosmos parametrisation starts the project's local Cosmos-protocol server
(or uses a real account when ``FLEET_COSMOS_ENDPOINT`` and ``FLEET_COSMOS_KEY``
are set) and fails loudly if it cannot.
"""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from fleet_datastore import (
    Container,
    ContainerSpec,
    CosmosConfig,
    DocumentStore,
    Index,
    Query,
    store_from_url,
)

PROVIDERS = ("memory", "sqlite", "cosmos")

JOB_FIELDS: dict[str, Any] = {
    "queue": "str",
    "status": "str",
    "priority": "int",
    "created_at": "float",
    "score": "float",
    "flag": "bool",
    "lease.expires_at": "float",
}
JOB_INDEXES = (
    Index.of("queue", "-priority", "created_at"),
    Index.of("status", "lease.expires_at"),
    Index.of("score"),
    Index.of("flag", "-score"),
)


def job_spec(name: str = "jobs") -> ContainerSpec:
    """A realistic container: jobs partitioned by queue, with the indexes a claimer needs."""
    return ContainerSpec(name=name, partition_key="queue", fields=JOB_FIELDS, indexes=JOB_INDEXES)


def job(
    doc_id: str,
    queue: str = "q1",
    *,
    status: str = "queued",
    priority: int = 0,
    created_at: float = 0.0,
    **extra: Any,
) -> dict[str, Any]:
    """A job document body with sensible defaults."""
    return {
        "id": doc_id,
        "queue": queue,
        "status": status,
        "priority": priority,
        "created_at": created_at,
        **extra,
    }


StoreOpener = Callable[[str], Awaitable[DocumentStore]]


@pytest.fixture(params=PROVIDERS)
def provider(request: pytest.FixtureRequest) -> str:
    """The name of the provider under test."""
    return str(request.param)


@pytest.fixture(scope="session")
def cosmos_server() -> Iterator[CosmosConfig]:
    """The local Cosmos-protocol server (or a real account), started once per session."""
    from tests.support.cosmos_local import cosmos_endpoint

    with cosmos_endpoint() as cfg:
        yield cfg


@pytest.fixture(scope="session")
def cosmos_config(request: pytest.FixtureRequest) -> Callable[[], CosmosConfig]:
    """Returns the Cosmos endpoint, starting the server on first use only."""

    def get() -> CosmosConfig:
        config: CosmosConfig = request.getfixturevalue("cosmos_server")
        return config

    return get


async def open_provider(
    name: str, *, directory: Path, cosmos: Callable[[], CosmosConfig]
) -> DocumentStore:
    """Open a fresh, empty store of provider ``name``: a new SQLite file, a new Cosmos database."""
    if name == "memory":
        store = store_from_url("memory://")
    elif name == "sqlite":
        assert directory.is_absolute()
        store = store_from_url(f"sqlite:///{directory}/{uuid.uuid4().hex}.db")
    elif name == "cosmos":
        cfg = cosmos()
        database = f"t{uuid.uuid4().hex[:16]}"
        store = store_from_url(
            "cosmos://", cosmos=CosmosConfig(cfg.endpoint, cfg.key, database=database)
        )
    else:
        raise AssertionError(f"unknown provider {name!r}")
    await store.open()
    return store


@pytest.fixture
async def open_store(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[StoreOpener]:
    """A function opening a fresh, empty store of a provider; every store is closed afterwards."""
    opened: list[DocumentStore] = []
    # The fixture's value (a lazy getter), not the fixture function itself.
    cosmos: Callable[[], CosmosConfig] = request.getfixturevalue("cosmos_config")

    async def _open(name: str) -> DocumentStore:
        store = await open_provider(name, directory=tmp_path, cosmos=cosmos)
        opened.append(store)
        return store

    try:
        yield _open
    finally:
        for store in reversed(opened):
            await store.close()


@pytest.fixture
async def store(provider: str, open_store: StoreOpener) -> DocumentStore:
    """An open, empty store of the provider under test."""
    return await open_store(provider)


@pytest.fixture
async def jobs(store: DocumentStore) -> Container:
    """The ``jobs`` container (see ``job_spec``) declared on the store under test."""
    return await store.create_container_if_not_exists(job_spec())


async def snapshot(container: Container) -> list[tuple[str, str, str, dict[str, Any]]]:
    """Every stored document as (partition key, id, etag, body), in a stable order."""
    page = await container.query(Query())
    assert page.continuation is None
    return sorted(
        ((d.partition_key, d.id, d.etag, d.body) for d in page.items), key=lambda t: t[:2]
    )
