"""Cosmos-specific behaviour of the ``cosmos://`` provider, over the real protocol.

Each test runs against a local Cosmos-protocol server of its own module
(``infra/cosmos-local``), so the fault knobs (429 with retry-after, delays) and
stopping the server cannot disturb other tests; every test uses a fresh database.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator, Iterator

import pytest
from fleet_datastore import (
    BatchError,
    BatchOp,
    Container,
    ContainerSpec,
    CreateOp,
    DocumentStore,
    DocumentTooLargeError,
    Index,
    InvalidRequestError,
    NotFoundError,
    Outcome,
    Patch,
    PatchOp,
    PreconditionFailedError,
    Query,
    ReplaceOp,
    StoreUnavailableError,
    UpsertOp,
    store_from_url,
)
from fleet_datastore.providers.cosmos import CosmosBackend, indexing_policy

from tests.support.cosmos_local import LocalCosmos, local_cosmos

from .conftest import job, job_spec, snapshot


@pytest.fixture(scope="module")
def server() -> Iterator[LocalCosmos]:
    """A local server for this module only."""
    with local_cosmos() as running:
        yield running


@pytest.fixture
async def store(server: LocalCosmos) -> AsyncIterator[DocumentStore]:
    """An open store on a fresh database of the module's server; faults cleared after."""
    config = server.config(f"t{uuid.uuid4().hex[:16]}")
    opened = store_from_url("cosmos://", cosmos=config)
    await opened.open()
    try:
        yield opened
    finally:
        server.reset_faults()
        await opened.close()


@pytest.fixture
async def jobs(store: DocumentStore) -> Container:
    """The contract suite's ``jobs`` container."""
    return await store.create_container_if_not_exists(job_spec())


async def test_throttled_requests_are_retried_after_the_servers_retry_after(
    server: LocalCosmos, jobs: Container
) -> None:
    """Three 429s with x-ms-retry-after-ms are retried by the SDK and the read succeeds."""
    await jobs.create(job("j1"))
    before = server.fault_counters()["throttled"]
    server.faults(throttle=3, retry_after_ms=100, match="/docs/j1")
    started = asyncio.get_running_loop().time()
    doc = await jobs.get("j1", "q1")
    elapsed = asyncio.get_running_loop().time() - started
    assert doc.id == "j1"
    assert server.fault_counters()["throttled"] - before == 3
    assert elapsed >= 0.3  # the SDK waited as the server asked, three times


async def test_throttling_past_the_retry_budget_is_store_unavailable(
    server: LocalCosmos,
) -> None:
    """A request still throttled after the bounded retries raises StoreUnavailableError."""
    backend = CosmosBackend(server.config(f"t{uuid.uuid4().hex[:16]}"), retry_total=2)
    await backend.open()
    try:
        spec = job_spec()
        await backend.ensure_container(spec)
        before = server.fault_counters()["throttled"]
        server.faults(throttle=100, retry_after_ms=10, match="/docs/")
        with pytest.raises(StoreUnavailableError):
            await backend.get(spec, "j1", "q1")
        # The first try and two retries: bounded, not the 100 the server would send.
        assert server.fault_counters()["throttled"] - before == 3
    finally:
        server.reset_faults()
        await backend.close()


async def test_a_stopped_server_is_store_unavailable() -> None:
    """Once the server is gone, reads, writes and ping raise StoreUnavailableError."""
    with local_cosmos() as doomed:
        store = store_from_url("cosmos://", cosmos=doomed.config("gone"))
        await store.open()
        try:
            jobs = await store.create_container_if_not_exists(job_spec())
            await jobs.create(job("j1"))
            doomed.stop()
            with pytest.raises(StoreUnavailableError):
                await jobs.get("j1", "q1")
            with pytest.raises(StoreUnavailableError):
                await jobs.create(job("j2"))
            with pytest.raises(StoreUnavailableError):
                await store.ping()
        finally:
            await store.close()


async def test_opening_an_unreachable_endpoint_is_store_unavailable() -> None:
    """open() against a port nobody listens on raises StoreUnavailableError, not a driver error."""
    with local_cosmos() as doomed:
        config = doomed.config("x")
    store = store_from_url("cosmos://", cosmos=config)
    with pytest.raises(StoreUnavailableError):
        await store.open()


async def test_a_slow_answer_past_the_read_timeout_is_store_unavailable(
    server: LocalCosmos,
) -> None:
    """A response slower than read_timeout (on every retry) raises StoreUnavailableError."""
    backend = CosmosBackend(
        server.config(f"t{uuid.uuid4().hex[:16]}"), retry_total=1, read_timeout=1
    )
    await backend.open()
    try:
        spec = job_spec()
        await backend.ensure_container(spec)
        server.faults(delay_ms=3000, delay_count=10)
        with pytest.raises(StoreUnavailableError):
            await backend.get(spec, "j1", "q1")
    finally:
        server.reset_faults()
        await backend.close()


async def test_a_patch_of_more_than_ten_operations_uses_a_conditional_replace(
    jobs: Container,
) -> None:
    """Twelve field changes (over Cosmos's 10-operation patch limit) apply atomically."""
    first = await jobs.create({**job("j1"), **{f"f{i}": i for i in range(6)}})
    patch = Patch(set={f"g{i}": i for i in range(8)}, remove=tuple(f"f{i}" for i in range(4)))
    result = await jobs.update_if_match("j1", "q1", first, patch)
    assert result.outcome is Outcome.OK
    assert result.document is not None
    body = (await jobs.get("j1", "q1")).body
    assert body == {**job("j1", f4=4, f5=5), **{f"g{i}": i for i in range(8)}}
    assert result.document.body == body
    # The etag the long patch was based on is now stale: a second writer loses.
    stale = await jobs.update_if_match("j1", "q1", first, patch)
    assert stale.outcome is Outcome.CONFLICT


async def test_a_long_patch_racing_a_write_is_a_conflict(jobs: Container) -> None:
    """A >10-operation patch whose etag was overtaken is a conflict and changes nothing."""
    first = await jobs.create(job("j1"))
    await jobs.replace(job("j1", status="leased"))
    before = await snapshot(jobs)
    patch = Patch(set={f"g{i}": i for i in range(11)})
    assert (await jobs.update_if_match("j1", "q1", first, patch)).outcome is Outcome.CONFLICT
    assert await snapshot(jobs) == before


async def test_removing_an_absent_field_is_a_no_op_in_one_patch(jobs: Container) -> None:
    """Cosmos fails a remove of an absent path; the provider sends only present removals."""
    first = await jobs.create(job("j1", a=1))
    result = await jobs.update_if_match("j1", "q1", first, Patch(set={"b": 2}, remove=("a", "z")))
    assert result.ok
    assert (await jobs.get("j1", "q1")).body == job("j1", b=2)


async def test_a_patch_growing_past_two_megabytes_writes_nothing(jobs: Container) -> None:
    """update_if_match to a body over the limit raises DocumentTooLargeError before sending."""
    first = await jobs.create(job("j1", blob="x" * 1_500_000))
    before = await snapshot(jobs)
    with pytest.raises(DocumentTooLargeError):
        await jobs.update_if_match("j1", "q1", first, Patch(set={"more": "y" * 700_000}))
    assert await snapshot(jobs) == before


async def test_the_container_is_created_with_the_composite_indexes_queries_need(
    store: DocumentStore, server: LocalCosmos
) -> None:
    """The created container's indexing policy holds one composite per declared-index suffix."""
    spec = job_spec()
    await store.create_container_if_not_exists(spec)
    backend = store.backend
    assert isinstance(backend, CosmosBackend)
    properties = await backend._container(spec).read()
    stored = [
        [(p["path"], p.get("order", "ascending")) for p in index]
        for index in properties["indexingPolicy"]["compositeIndexes"]
    ]
    assert [("/queue", "ascending"), ("/priority", "descending"), ("/created_at", "ascending"),
            ("/id", "ascending")] in stored  # fmt: skip
    assert [("/priority", "descending"), ("/created_at", "ascending"), ("/id", "ascending"),
            ("/queue", "ascending")] in stored  # fmt: skip
    assert [("/id", "ascending"), ("/queue", "ascending")] in stored
    assert [("/lease/expires_at", "ascending"), ("/id", "ascending"),
            ("/queue", "ascending")] in stored  # fmt: skip
    expected = indexing_policy(spec)["compositeIndexes"]
    assert len(stored) == len(expected) == 9


async def test_an_index_declared_later_is_added_to_the_existing_container(
    server: LocalCosmos,
) -> None:
    """Re-declaring a container with a new index replaces its indexing policy to include it."""
    config = server.config(f"t{uuid.uuid4().hex[:16]}")
    small = ContainerSpec("items", fields={"a": "int", "b": "int"}, indexes=(Index.of("a"),))
    grown = ContainerSpec("items", fields={"a": "int", "b": "int"}, indexes=(Index.of("b"),))
    async with store_from_url("cosmos://", cosmos=config) as first:
        await first.create_container_if_not_exists(small)
    async with store_from_url("cosmos://", cosmos=config) as second:
        items = await second.create_container_if_not_exists(grown)
        await items.create({"id": "x", "pk": "p", "a": 1, "b": 2})
        page = await items.query(Query(order_by=["-b"]))
        assert [d.id for d in page.items] == ["x"]
        backend = second.backend
        assert isinstance(backend, CosmosBackend)
        props = await backend._container(grown).read()
        paths = [
            [p["path"] for p in index] for index in props["indexingPolicy"]["compositeIndexes"]
        ]
        assert ["/a", "/id", "/pk"] in paths
        assert ["/b", "/id", "/pk"] in paths


async def test_a_batch_with_a_failing_operation_is_rolled_back(jobs: Container) -> None:
    """The server undoes the operations before the failing one: nothing is written."""
    await jobs.create(job("j1"))
    stale = await jobs.get("j1", "q1")
    await jobs.replace(job("j1", status="leased"))
    before = await snapshot(jobs)
    ops: list[BatchOp] = [
        CreateOp(job("j2")),
        UpsertOp(job("j1", status="done")),
        PatchOp("j1", Patch(set={"x": 1})),
        ReplaceOp(job("j1", status="again"), etag=stale.etag),
    ]
    with pytest.raises(BatchError) as failure:
        await jobs.batch("q1", ops)
    assert failure.value.index == 3
    assert isinstance(failure.value.cause, PreconditionFailedError)
    assert await snapshot(jobs) == before


async def test_a_long_patch_inside_a_batch_is_atomic_too(jobs: Container) -> None:
    """A batch PatchOp over 10 operations becomes a conditional replace inside the batch."""
    await jobs.create(job("j1"))
    patch = Patch(set={f"g{i}": i for i in range(11)}, remove=("status",))
    results = await jobs.batch("q1", [PatchOp("j1", patch), CreateOp(job("j2"))])
    assert results[0] is not None
    assert "status" not in results[0].body
    assert (await jobs.get("j1", "q1")).body["g10"] == 10
    with pytest.raises(BatchError) as failure:
        await jobs.batch("q1", [PatchOp("nope", patch)])
    assert failure.value.index == 0
    assert isinstance(failure.value.cause, NotFoundError)


async def test_64_racers_with_one_etag_have_exactly_one_winner(
    server: LocalCosmos, jobs: Container
) -> None:
    """64 concurrent update_if_match calls with the same etag: 1 ok, 63 conflicts."""
    first = await jobs.create(job("j1", n=0))
    results = await asyncio.gather(
        *(jobs.update_if_match("j1", "q1", first, Patch(set={"n": i})) for i in range(64))
    )
    winners = [r for r in results if r.ok]
    assert len(winners) == 1
    assert sum(r.outcome is Outcome.CONFLICT for r in results) == 63
    assert winners[0].document is not None
    assert (await jobs.get("j1", "q1")).body == winners[0].document.body


async def test_a_key_that_is_not_base64_is_an_invalid_request(server: LocalCosmos) -> None:
    """A malformed account key fails open() with InvalidRequestError, not binascii.Error."""
    config = server.config("x")
    store = store_from_url("cosmos://", cosmos=type(config)(config.endpoint, "not a key", "x"))
    with pytest.raises(InvalidRequestError):
        await store.open()


async def test_connections_are_kept_alive(server: LocalCosmos, jobs: Container) -> None:
    """Sequential requests reuse one connection (the stock server closed every one)."""
    await jobs.create(job("j1"))
    before = server.fault_counters()["connections"]
    for _ in range(20):
        await jobs.get("j1", "q1")
    assert server.fault_counters()["connections"] - before <= 1
