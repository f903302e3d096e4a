"""The one boundary between the services and the store: ``GuardedContainer``.

The services reach their containers only through this wrapper, so a store error
becomes a ``CoordinatorError`` in exactly one place (``errors.store_error``)
instead of at every call. The outcomes the datastore contract defines for its
verbs pass through unchanged, for the caller to decide what they mean: a ``get``
of a missing document (``NotFoundError``), a ``create`` of an existing one
(``AlreadyExistsError``, also as a batch's cause), a conditional ``delete`` that
lost (``PreconditionFailedError``), a continuation of another query
(``InvalidContinuationError``), a batch too large to go as one
(``BatchTooLargeError``: the caller splits it). Anything else means the store could not do its
part: 503, or 413 for a document over the store's size limit.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from fleet_datastore import (
    AlreadyExistsError,
    BatchError,
    BatchOp,
    BatchTooLargeError,
    Container,
    DatastoreError,
    Document,
    InvalidContinuationError,
    NotFoundError,
    Page,
    Patch,
    PreconditionFailedError,
    Query,
    UpdateResult,
)

from ..errors import CoordinatorError, store_error

__all__ = ["MAX_CAS_ATTEMPTS", "GuardedContainer"]

MAX_CAS_ATTEMPTS = 8
"""How often a compare-and-swap loop re-reads after losing a race before giving up (503).

Every conditional write of the services is one such loop over this boundary.
"""

_OUTCOMES = (
    NotFoundError,
    AlreadyExistsError,
    PreconditionFailedError,
    InvalidContinuationError,
    BatchTooLargeError,
)


def _failure(exc: DatastoreError) -> CoordinatorError | None:
    """The ``CoordinatorError`` a store error raises here (413, 503), or None: as it is.

    None for an outcome of the contract, and for a defect (answered 500 by the
    API's guard); both propagate unchanged.
    """
    if _is_outcome(exc):
        return None
    return store_error(exc)


def _is_outcome(exc: DatastoreError) -> bool:
    if isinstance(exc, BatchError):
        return isinstance(exc.cause, AlreadyExistsError)
    return isinstance(exc, _OUTCOMES)


class GuardedContainer:
    """A container whose store failures arrive as ``CoordinatorError``s (outcomes aside).

    Each call looks the inner method up when it runs, so a test that replaces one
    on the raw container (``monkeypatch``) is seen here too. Each translates in
    ``try``/``except``, which costs nothing while nothing is raised: a context
    manager's ``__enter__`` and ``__exit__`` were two Python calls more on every
    store request (docs/benchmarks.md, "Twenty-third session").
    """

    def __init__(self, inner: Container) -> None:
        self.inner = inner

    @property
    def name(self) -> str:
        """The container's name."""
        return self.inner.name

    async def create(self, body: Mapping[str, Any]) -> Document:
        """``Container.create``."""
        try:
            return await self.inner.create(body)
        except DatastoreError as exc:
            error = _failure(exc)
            if error is None:
                raise
            raise error from exc

    async def get(self, doc_id: str, partition_key: str) -> Document:
        """``Container.get``."""
        try:
            return await self.inner.get(doc_id, partition_key)
        except DatastoreError as exc:
            error = _failure(exc)
            if error is None:
                raise
            raise error from exc

    async def replace(self, body: Mapping[str, Any], *, etag: str | None = None) -> Document:
        """``Container.replace``."""
        try:
            return await self.inner.replace(body, etag=etag)
        except DatastoreError as exc:
            error = _failure(exc)
            if error is None:
                raise
            raise error from exc

    async def delete(self, doc_id: str, partition_key: str, *, etag: str | None = None) -> bool:
        """``Container.delete``."""
        try:
            return await self.inner.delete(doc_id, partition_key, etag=etag)
        except DatastoreError as exc:
            error = _failure(exc)
            if error is None:
                raise
            raise error from exc

    async def update_if_match(
        self, doc_id: str, partition_key: str, expected: Document, patch: Patch
    ) -> UpdateResult:
        """``Container.update_if_match``."""
        try:
            return await self.inner.update_if_match(doc_id, partition_key, expected, patch)
        except DatastoreError as exc:
            error = _failure(exc)
            if error is None:
                raise
            raise error from exc

    async def batch(self, partition_key: str, ops: Sequence[BatchOp]) -> list[Document | None]:
        """``Container.batch``."""
        try:
            return await self.inner.batch(partition_key, ops)
        except DatastoreError as exc:
            error = _failure(exc)
            if error is None:
                raise
            raise error from exc

    async def batch_etags(self, partition_key: str, ops: Sequence[BatchOp]) -> list[str | None]:
        """``Container.batch_etags``."""
        try:
            return await self.inner.batch_etags(partition_key, ops)
        except DatastoreError as exc:
            error = _failure(exc)
            if error is None:
                raise
            raise error from exc

    async def query(self, query: Query) -> Page:
        """``Container.query``."""
        try:
            return await self.inner.query(query)
        except DatastoreError as exc:
            error = _failure(exc)
            if error is None:
                raise
            raise error from exc

    async def count(self, query: Query | None = None) -> int:
        """``Container.count``."""
        try:
            return await self.inner.count(query)
        except DatastoreError as exc:
            error = _failure(exc)
            if error is None:
                raise
            raise error from exc
