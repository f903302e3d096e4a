"""The ``cosmos://`` provider: Azure Cosmos DB for NoSQL through the official async SDK.

Conditional writes use ``etag=`` with ``MatchConditions.IfNotModified``, so the
service itself decides the single winner of a race (HTTP 412 for the others).
Throttling (429) is retried by the SDK honouring the server's
``x-ms-retry-after-ms``, bounded by ``retry_total`` attempts and
``retry_backoff_max`` seconds of cumulative wait. Driver errors are translated
in ``cosmos_errors.translated`` only.
"""

from __future__ import annotations

import base64
import contextlib
from collections.abc import Sequence
from typing import Any, cast

from azure.core import MatchConditions
from azure.cosmos import PartitionKey
from azure.cosmos.aio import ContainerProxy, CosmosClient, DatabaseProxy

from ..backend import PreparedOp
from ..batch import DeleteOp
from ..cosmos_config import CosmosConfig
from ..documents import PreparedDocument, apply_patch
from ..errors import (
    DatastoreError,
    DocumentTooLargeError,
    InvalidRequestError,
    NotFoundError,
    PreconditionFailedError,
    StoreUnavailableError,
)
from ..model import CONFLICT, NOT_FOUND, ContainerSpec, Document, Patch, UpdateResult
from ..query import QueryPlan
from .cosmos_batch import plan_batch
from .cosmos_errors import translated
from .cosmos_ops import (
    MAX_PATCH_OPERATIONS,
    check_exact_numbers,
    patch_operations,
    to_document,
)
from .cosmos_sql import compile_count, compile_query, indexing_policy

__all__ = ["CosmosBackend", "indexing_policy"]

_IF_MATCH = MatchConditions.IfNotModified
_MAX_PAGE = 1000


def _condition(etag: str | None) -> dict[str, Any]:
    return {} if etag is None else {"etag": etag, "match_condition": _IF_MATCH}


def _composites(policy: dict[str, Any]) -> set[tuple[tuple[str, str], ...]]:
    return {
        tuple((p["path"], p.get("order", "ascending")) for p in index)
        for index in policy.get("compositeIndexes") or []
    }


class CosmosBackend:
    """Stores documents in one Cosmos DB database; one Cosmos container per ``ContainerSpec``."""

    expires_documents = True
    """Containers declared with ``default_ttl`` delete documents whose ``ttl`` has passed."""
    local = False
    """Every call is a request to a server; the time goes to the network."""

    def __init__(
        self,
        config: CosmosConfig,
        *,
        retry_total: int = 9,
        retry_backoff_max: int = 30,
        connection_timeout: int = 5,
        read_timeout: int = 30,
    ) -> None:
        self._config = config
        # retry_total / retry_backoff_max bound the SDK's throttling retry (attempts,
        # cumulative seconds waited as the server's retry-after asks) and its
        # connection retries; the timeouts bound each attempt.
        self._options: dict[str, Any] = {
            "retry_total": retry_total,
            "retry_backoff_max": retry_backoff_max,
            "connection_timeout": connection_timeout,
            "read_timeout": read_timeout,
        }
        self._client: CosmosClient | None = None
        self._database: DatabaseProxy | None = None
        self._containers: dict[str, ContainerProxy] = {}

    # -- lifecycle -------------------------------------------------------------

    async def open(self) -> None:
        """Create the client and the database if it does not exist."""
        try:
            base64.b64decode(self._config.key, validate=True)
        except ValueError:
            # The SDK would raise binascii.Error while signing the first request.
            raise InvalidRequestError("the Cosmos DB key is not a base64 account key") from None
        client = CosmosClient(self._config.endpoint, credential=self._config.key, **self._options)
        try:
            with translated():
                await client.__aenter__()
                database = await client.create_database_if_not_exists(self._config.database)
        except BaseException:
            with contextlib.suppress(Exception):
                await client.close()
            raise
        self._client, self._database = client, database

    async def close(self) -> None:
        """Close the client and its connection pool."""
        client, self._client, self._database = self._client, None, None
        self._containers.clear()
        if client is not None:
            with translated():
                await client.close()

    async def ping(self) -> None:
        """Read the database; StoreUnavailableError unless Cosmos answers."""
        try:
            with translated():
                await self._db().read()
        except StoreUnavailableError:
            raise
        except DatastoreError as exc:
            raise StoreUnavailableError(f"Cosmos DB ping failed: {exc}") from exc

    def _db(self) -> DatabaseProxy:
        if self._database is None:
            raise StoreUnavailableError("the Cosmos store is not open")
        return self._database

    async def ensure_container(self, spec: ContainerSpec) -> None:
        """Create the container with its partition key and composite indexes, idempotently."""
        db = self._db()
        pk = PartitionKey(path=f"/{spec.partition_key}")
        policy = indexing_policy(spec)
        ttl: dict[str, Any] = {} if spec.default_ttl is None else {"default_ttl": spec.default_ttl}
        with translated():
            container, props = await db.create_container_if_not_exists(
                id=spec.name,
                partition_key=pk,
                indexing_policy=policy,
                return_properties=True,
                **ttl,
            )
        paths = (props.get("partitionKey") or {}).get("paths")
        if paths != [f"/{spec.partition_key}"]:
            raise InvalidRequestError(
                f"container {spec.name!r} exists with partition key {paths},"
                f" not /{spec.partition_key}"
            )
        existing = props.get("indexingPolicy") or {}
        ttl_changed = spec.default_ttl is not None and props.get("defaultTtl") != spec.default_ttl
        if not _composites(policy) <= _composites(existing) or ttl_changed:
            # An index or a time to live declared after the container was created:
            # add it, keep the other composite indexes.
            extra = [
                index
                for index in existing.get("compositeIndexes") or []
                if not {tuple((p["path"], p.get("order", "ascending")) for p in index)}
                <= _composites(policy)
            ]
            merged = {**policy, "compositeIndexes": policy["compositeIndexes"] + extra}
            with translated():
                container = await db.replace_container(container, pk, indexing_policy=merged, **ttl)
        self._containers[spec.name] = container

    def _container(self, spec: ContainerSpec) -> ContainerProxy:
        container = self._containers.get(spec.name)
        if container is None:
            container = self._db().get_container_client(spec.name)
            self._containers[spec.name] = container
        return container

    # -- single documents ------------------------------------------------------

    async def create(self, spec: ContainerSpec, doc: PreparedDocument) -> Document:
        """Insert; AlreadyExistsError (409) if the id exists in that partition."""
        check_exact_numbers(doc.body, doc.raw)
        with translated():
            raw = await self._container(spec).create_item(body=doc.body)
        return to_document(spec, raw)

    async def get(self, spec: ContainerSpec, doc_id: str, partition_key: str) -> Document:
        """Read; NotFoundError (404) if missing."""
        with translated():
            raw = await self._container(spec).read_item(item=doc_id, partition_key=partition_key)
        return to_document(spec, raw)

    async def replace(
        self, spec: ContainerSpec, doc: PreparedDocument, etag: str | None
    ) -> Document:
        """Overwrite; NotFoundError (404), PreconditionFailedError (412) on etag mismatch."""
        check_exact_numbers(doc.body, doc.raw)
        with translated():
            raw = await self._container(spec).replace_item(
                item=doc.id, body=doc.body, **_condition(etag)
            )
        return to_document(spec, raw)

    async def upsert(self, spec: ContainerSpec, doc: PreparedDocument) -> Document:
        """Insert or overwrite."""
        check_exact_numbers(doc.body, doc.raw)
        with translated():
            raw = await self._container(spec).upsert_item(body=doc.body)
        return to_document(spec, raw)

    async def delete(
        self, spec: ContainerSpec, doc_id: str, partition_key: str, etag: str | None
    ) -> bool:
        """Remove; False if missing, PreconditionFailedError (412) on etag mismatch."""
        try:
            with translated():
                await self._container(spec).delete_item(
                    item=doc_id, partition_key=partition_key, **_condition(etag)
                )
        except NotFoundError:
            return False
        return True

    # -- compare and swap ------------------------------------------------------

    async def update_if_match(
        self,
        spec: ContainerSpec,
        doc_id: str,
        partition_key: str,
        expected: Document,
        patch: Patch,
    ) -> UpdateResult:
        """Apply ``patch`` only if the stored etag is ``expected.etag``: one patch round trip.

        Cosmos checks the If-Match etag and applies the patch atomically, so of any
        number of racers holding one etag exactly one gets 200 and the rest 412.
        """
        # If the etag still matches, the stored body is expected.body, so this is
        # the body the write would store: too large means nothing is sent.
        apply_patch(spec, expected.body, patch)
        check_exact_numbers(dict(patch.set))
        ops = patch_operations(patch, present=expected.body)
        if 0 < len(ops) <= MAX_PATCH_OPERATIONS:
            try:
                with translated():
                    raw = await self._container(spec).patch_item(
                        item=doc_id,
                        partition_key=partition_key,
                        patch_operations=ops,
                        etag=expected.etag,
                        match_condition=_IF_MATCH,
                    )
                return UpdateResult.won(to_document(spec, raw))
            except PreconditionFailedError:
                return CONFLICT
            except NotFoundError:
                return NOT_FOUND
            except DocumentTooLargeError:
                raise
            except InvalidRequestError:
                pass  # Cosmos refused the patch itself (400): the replace path below decides
        return await self._replace_patched(spec, doc_id, partition_key, expected, patch)

    async def _replace_patched(
        self,
        spec: ContainerSpec,
        doc_id: str,
        partition_key: str,
        expected: Document,
        patch: Patch,
    ) -> UpdateResult:
        container = self._container(spec)
        # 1. Read the current document.
        try:
            with translated():
                raw = await container.read_item(item=doc_id, partition_key=partition_key)
        except NotFoundError:
            return NOT_FOUND
        current = to_document(spec, raw)
        # 2. Decide: another writer got there since the caller read.
        if current.etag != expected.etag:
            return CONFLICT
        # 3. Conditional write: a racer between steps 1 and 3 makes this a 412.
        new = apply_patch(spec, current.body, patch)
        try:
            with translated():
                raw = await container.replace_item(
                    item=doc_id, body=new.body, etag=current.etag, match_condition=_IF_MATCH
                )
        except PreconditionFailedError:
            return CONFLICT
        except NotFoundError:
            return NOT_FOUND
        return UpdateResult.won(to_document(spec, raw))

    # -- transactional batch ---------------------------------------------------

    async def batch(
        self, spec: ContainerSpec, partition_key: str, ops: Sequence[PreparedOp]
    ) -> list[Document | None]:
        """All operations atomically in one partition (``execute_item_batch``), or none."""
        plan = await plan_batch(spec, ops, lambda doc_id: self.get(spec, doc_id, partition_key))
        with translated():
            results = await self._container(spec).execute_item_batch(
                batch_operations=plan, partition_key=partition_key
            )
        return [
            None if isinstance(op, DeleteOp) else to_document(spec, result["resourceBody"])
            for (op, _), result in zip(ops, results, strict=True)
        ]

    # -- queries ---------------------------------------------------------------

    async def query(self, spec: ContainerSpec, plan: QueryPlan) -> list[Document]:
        """Up to ``plan.fetch`` matches after ``plan.after``, in ``plan.sort`` order."""
        sql, params = compile_query(plan)
        scope: dict[str, Any] = {}
        if plan.partition_key is not None:
            scope["partition_key"] = plan.partition_key
        if plan.fetch is not None:
            # One page when it fits; larger answers follow the server's continuations.
            scope["max_item_count"] = min(plan.fetch, _MAX_PAGE)
        out: list[Document] = []
        with translated():
            items = self._container(spec).query_items(query=sql, parameters=params, **scope)
            async for raw in items:
                out.append(to_document(spec, raw))
                if plan.fetch is not None and len(out) >= plan.fetch:
                    break
        return out

    async def count(self, spec: ContainerSpec, plan: QueryPlan) -> int:
        """How many documents match ``plan.where`` (and partition)."""
        sql, params = compile_count(plan)
        scope: dict[str, Any] = {}
        if plan.partition_key is not None:
            scope["partition_key"] = plan.partition_key
        total = 0
        with translated():
            items = self._container(spec).query_items(query=sql, parameters=params, **scope)
            async for value in items:
                # One value per answering partition range; the SDK usually merges them.
                total += int(cast(Any, value))
        return total
