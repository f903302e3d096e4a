"""Operations of a transactional batch: all run in one partition, or none does."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from .model import Patch

__all__ = [
    "BatchOp",
    "CreateOp",
    "DeleteOp",
    "MAX_BATCH_BYTES",
    "MAX_BATCH_OPERATIONS",
    "PatchOp",
    "ReadOp",
    "ReplaceOp",
    "UpsertOp",
]

MAX_BATCH_OPERATIONS = 100
"""Cosmos DB's limit on operations in one transactional batch."""

MAX_BATCH_BYTES = 2 * 1024 * 1024 - 64 * 1024
"""The documents one batch may carry together, as compact JSON (``BatchTooLargeError``).

Cosmos DB refuses a transactional batch request over 2 MB; the rest of the bound
is left for the operations' own framing. Every provider applies it, as it does
the operation count, so that a caller that fits SQLite also fits Cosmos DB.
"""


@dataclass(frozen=True, slots=True)
class CreateOp:
    """Create a document; fails the batch if the id exists."""

    body: Mapping[str, Any]


@dataclass(frozen=True, slots=True)
class ReplaceOp:
    """Replace a document, optionally only if its etag matches; fails the batch if missing."""

    body: Mapping[str, Any]
    etag: str | None = None


@dataclass(frozen=True, slots=True)
class UpsertOp:
    """Create or replace a document."""

    body: Mapping[str, Any]


@dataclass(frozen=True, slots=True)
class DeleteOp:
    """Delete a document, optionally only if its etag matches; fails the batch if missing."""

    id: str
    etag: str | None = None


@dataclass(frozen=True, slots=True)
class PatchOp:
    """Patch a document, optionally only if its etag matches; fails the batch if missing."""

    id: str
    patch: Patch
    etag: str | None = None


@dataclass(frozen=True, slots=True)
class ReadOp:
    """Read a document inside the batch; fails the batch if missing."""

    id: str


BatchOp = CreateOp | ReplaceOp | UpsertOp | DeleteOp | PatchOp | ReadOp
