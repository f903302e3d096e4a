"""``Container``: the public handle on one container, validating before any provider call."""

from __future__ import annotations

import asyncio
import heapq
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from .backend import Backend, PreparedOp
from .batch import (
    MAX_BATCH_BYTES,
    MAX_BATCH_OPERATIONS,
    BatchOp,
    CreateOp,
    DeleteOp,
    PatchOp,
    ReadOp,
    ReplaceOp,
    UpsertOp,
)
from .continuation import encode, position
from .documents import check_id, check_partition_key, prepare, validate_patch
from .errors import BatchTooLargeError, InvalidRequestError
from .model import ASC, ContainerSpec, Direction, Document, Patch, UpdateResult
from .query import Page, Query, QueryPlan, plan_query, plan_shape, split_plans

__all__ = ["Container"]


def _check_etag(etag: Any) -> str | None:
    if etag is not None and (not isinstance(etag, str) or not etag):
        raise InvalidRequestError("etag must be a non-empty string or None")
    return etag


@dataclass(slots=True)
class _Descending:
    """A sort value compared the other way round, for a descending sort key.

    The dataclass gives ``__eq__`` on the value (and, being mutable, no hash)."""

    v: Any

    def __lt__(self, other: _Descending) -> bool:
        return bool(other.v < self.v)


def _order_key(sort: tuple[tuple[str, Direction], ...]) -> Callable[[Document], tuple[Any, ...]]:
    """The key ordering documents as a query sorted by ``sort`` returns them."""
    directions = [d == ASC for _, d in sort]

    def key(doc: Document) -> tuple[Any, ...]:
        values = position(sort, doc.body)
        return tuple(v if up else _Descending(v) for v, up in zip(values, directions, strict=True))

    return key


class Container:
    """A container of JSON documents in one store. Methods follow the Azure SDK verbs."""

    def __init__(self, backend: Backend, spec: ContainerSpec) -> None:
        self._backend = backend
        self.spec = spec

    @property
    def name(self) -> str:
        """The container's name."""
        return self.spec.name

    async def create(self, body: Mapping[str, Any]) -> Document:
        """Insert a new document; AlreadyExistsError if its id exists in its partition."""
        return await self._backend.create(self.spec, prepare(self.spec, body))

    async def get(self, doc_id: str, partition_key: str) -> Document:
        """Read a document; NotFoundError if it does not exist."""
        check_id(doc_id)
        check_partition_key(partition_key)
        return await self._backend.get(self.spec, doc_id, partition_key)

    async def replace(self, body: Mapping[str, Any], *, etag: str | None = None) -> Document:
        """Overwrite an existing document, only if its etag still matches when ``etag`` is given."""
        return await self._backend.replace(self.spec, prepare(self.spec, body), _check_etag(etag))

    async def upsert(self, body: Mapping[str, Any]) -> Document:
        """Insert or overwrite a document."""
        return await self._backend.upsert(self.spec, prepare(self.spec, body))

    async def delete(self, doc_id: str, partition_key: str, *, etag: str | None = None) -> bool:
        """Remove a document; True if it existed. Idempotent without ``etag``."""
        check_id(doc_id)
        check_partition_key(partition_key)
        return await self._backend.delete(self.spec, doc_id, partition_key, _check_etag(etag))

    async def update_if_match(
        self, doc_id: str, partition_key: str, expected: Document, patch: Patch
    ) -> UpdateResult:
        """Apply ``patch`` only if the stored etag is still ``expected.etag``.

        Returns ok(document), conflict (someone else wrote first) or not_found.
        Exactly one of any number of racing callers holding the same etag wins.
        """
        check_id(doc_id)
        check_partition_key(partition_key)
        if not isinstance(expected, Document) or not expected.etag:
            raise InvalidRequestError("expected must be a Document with an etag")
        owned = validate_patch(self.spec, patch)
        return await self._backend.update_if_match(
            self.spec, doc_id, partition_key, expected, owned
        )

    async def batch(self, partition_key: str, ops: Sequence[BatchOp]) -> list[Document | None]:
        """Run up to 100 operations on one partition atomically: all take effect or none does.

        Returns one entry per operation: the document written or read, None for a delete.
        The documents it creates, replaces or upserts may hold ``MAX_BATCH_BYTES``
        together (``BatchTooLargeError``, nothing written).
        """
        prepared = self._prepared(partition_key, ops, True)
        return await self._backend.batch(self.spec, partition_key, prepared)

    async def batch_etags(self, partition_key: str, ops: Sequence[BatchOp]) -> list[str | None]:
        """``batch``, answering only each operation's etag (None for a delete).

        The same checks, errors and all-or-nothing write; what it saves is each
        written body read back into a document nobody reads (a batch enqueue's).
        """
        prepared = self._prepared(partition_key, ops, False)
        done = await self._backend.batch(self.spec, partition_key, prepared)
        return [None if doc is None else doc.etag for doc in done]

    def _prepared(
        self, partition_key: str, ops: Sequence[BatchOp], owned: bool
    ) -> list[PreparedOp]:
        """``ops`` checked and their bodies prepared (``owned``: see ``PreparedDocument``)."""
        check_partition_key(partition_key)
        if not isinstance(ops, Sequence) or not 1 <= len(ops) <= MAX_BATCH_OPERATIONS:
            raise InvalidRequestError(f"a batch holds 1..{MAX_BATCH_OPERATIONS} operations")
        prepared: list[PreparedOp] = []
        size = 0
        spec = self.spec
        for op in ops:
            # A create, all a batch enqueue holds, without the union's isinstance checks.
            if type(op) is CreateOp or isinstance(op, CreateOp | ReplaceOp | UpsertOp):
                doc = prepare(spec, op.body, owned)
                if doc.partition_key != partition_key:
                    raise InvalidRequestError("every batch document must be in the batch partition")
                size += doc.size
                if type(op) is not CreateOp and isinstance(op, ReplaceOp):
                    _check_etag(op.etag)
                prepared.append((op, doc))
            elif isinstance(op, DeleteOp | PatchOp | ReadOp):
                check_id(op.id)
                if isinstance(op, PatchOp):
                    op = PatchOp(op.id, validate_patch(self.spec, op.patch), op.etag)
                if isinstance(op, DeleteOp | PatchOp):
                    _check_etag(op.etag)
                prepared.append((op, None))
            else:
                raise InvalidRequestError(f"not a batch operation: {op!r}")
        if size > MAX_BATCH_BYTES:
            raise BatchTooLargeError(
                f"the batch's documents hold {size} bytes together; a batch may carry "
                f"{MAX_BATCH_BYTES}: split it"
            )
        return prepared

    async def query(self, query: Query) -> Page:
        """One page of matching documents and a continuation token for the next, if any."""
        plan = plan_query(self.spec, query)
        if plan.split is None:
            docs = await self._backend.query(self.spec, plan)
        else:
            docs = await self._merged(plan)
        if plan.limit is not None and len(docs) > plan.limit:
            docs = docs[: plan.limit]
            # The position now (bodies are the caller's to keep); the token if it is read.
            key = position(plan.sort, docs[-1].body)
            return Page(docs, make=lambda: encode(plan_shape(plan), key))
        return Page(docs, None)

    async def _merged(self, plan: QueryPlan) -> list[Document]:
        """``plan`` answered one value of its split ``in_`` at a time, merged in its order.

        Every value's query resumes from the same position and reads up to
        ``plan.fetch`` documents, so the first ``plan.fetch`` of the merge are the
        plan's. The values' queries are not one snapshot: a document that changed
        value between two of them is kept once.
        """
        plans = split_plans(plan)
        parts = await asyncio.gather(*(self._backend.query(self.spec, p) for p in plans))
        out: list[Document] = []
        seen: set[tuple[str, str]] = set()
        for doc in heapq.merge(*parts, key=_order_key(plan.sort)):
            ident = (doc.id, doc.partition_key)
            if ident in seen:
                continue
            seen.add(ident)
            out.append(doc)
            if plan.fetch is not None and len(out) >= plan.fetch:
                break
        return out

    async def count(self, query: Query | None = None) -> int:
        """How many documents match the query's filters (order, limit and continuation ignored)."""
        q = query or Query()
        plan = plan_query(
            self.spec, Query(where=q.where, partition_key=q.partition_key), counting=True
        )
        return await self._backend.count(self.spec, plan)
