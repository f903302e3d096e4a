"""The provider protocol: what memory, SQLite and Cosmos each implement.

A backend receives only validated input (``PreparedDocument``, ``QueryPlan``,
checked patches and batches) from ``Container``, and translates its own driver's
errors into ``DatastoreError`` subclasses at one boundary.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol

from .batch import BatchOp
from .documents import PreparedDocument
from .model import ContainerSpec, Document, Patch, UpdateResult
from .query import QueryPlan

__all__ = ["Backend", "PreparedOp"]

PreparedOp = tuple[BatchOp, PreparedDocument | None]
"""A batch operation with its body prepared (None for delete, patch and read)."""


class Backend(Protocol):
    """One storage provider."""

    expires_documents: bool
    """Whether the provider deletes documents whose time to live passed (Cosmos DB)."""
    local: bool
    """Whether calls are served by this machine's CPU (memory, SQLite) rather than by a
    server over the network (Cosmos DB): what the caller's own CPU time buys."""

    async def open(self) -> None:
        """Connect; called once before any other method."""

    async def close(self) -> None:
        """Release connections; the backend is not used afterwards."""

    async def ping(self) -> None:
        """Raise StoreUnavailableError unless the store answers."""

    async def ensure_container(self, spec: ContainerSpec) -> None:
        """Create the container and its indexes if missing; idempotent."""

    async def create(self, spec: ContainerSpec, doc: PreparedDocument) -> Document:
        """Insert; AlreadyExistsError if the id exists in that partition."""

    async def get(self, spec: ContainerSpec, doc_id: str, partition_key: str) -> Document:
        """Read; NotFoundError if missing."""

    async def replace(
        self, spec: ContainerSpec, doc: PreparedDocument, etag: str | None
    ) -> Document:
        """Overwrite; NotFoundError if missing, PreconditionFailedError on etag mismatch."""

    async def upsert(self, spec: ContainerSpec, doc: PreparedDocument) -> Document:
        """Insert or overwrite."""

    async def delete(
        self, spec: ContainerSpec, doc_id: str, partition_key: str, etag: str | None
    ) -> bool:
        """Remove; False if it was missing, PreconditionFailedError on etag mismatch."""

    async def update_if_match(
        self,
        spec: ContainerSpec,
        doc_id: str,
        partition_key: str,
        expected: Document,
        patch: Patch,
    ) -> UpdateResult:
        """Apply ``patch`` only if the stored etag equals ``expected.etag``, atomically."""

    async def batch(
        self, spec: ContainerSpec, partition_key: str, ops: Sequence[PreparedOp]
    ) -> list[Document | None]:
        """Run all operations atomically in one partition; BatchError and no write on failure."""

    async def query(self, spec: ContainerSpec, plan: QueryPlan) -> list[Document]:
        """Up to ``plan.fetch`` matches after ``plan.after``, in ``plan.sort`` order."""

    async def count(self, spec: ContainerSpec, plan: QueryPlan) -> int:
        """How many documents match ``plan.where`` (and partition), ignoring order and limit."""
