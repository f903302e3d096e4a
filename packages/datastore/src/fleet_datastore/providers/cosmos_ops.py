"""Patches and batch operations in the shapes the Cosmos SDK takes, and documents back.

Pure functions, no I/O; ``cosmos.py`` decides which shape to send.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

from ..errors import InvalidRequestError
from ..model import ContainerSpec, Document, Patch

__all__ = [
    "MAX_PATCH_OPERATIONS",
    "check_exact_numbers",
    "if_match",
    "patch_operations",
    "to_document",
]

MAX_PATCH_OPERATIONS = 10
"""Cosmos DB's limit on operations in one patch request (also inside a batch)."""


def _pointer(name: str) -> str:
    # JSON Pointer (RFC 6901) escaping; patch names are top-level and never hold '/'.
    return "/" + name.replace("~", "~0").replace("/", "~1")


def patch_operations(patch: Patch, present: Mapping[str, Any] | None) -> list[dict[str, Any]]:
    """Cosmos patch operations for ``patch``.

    Cosmos fails a ``remove`` of an absent path, while the portable patch treats it
    as a no-op. With ``present`` (the body the write is conditional on) only fields
    it holds are removed; without it each removal is ``set`` null then ``remove``,
    which succeeds whether or not the field exists.
    """
    ops: list[dict[str, Any]] = [
        {"op": "set", "path": _pointer(name), "value": value} for name, value in patch.set.items()
    ]
    for name in patch.remove:
        if present is None:
            ops.append({"op": "set", "path": _pointer(name), "value": None})
        elif name not in present:
            continue
        ops.append({"op": "remove", "path": _pointer(name)})
    return ops


def if_match(etag: str | None) -> dict[str, Any]:
    """The per-operation keyword of a batch operation conditional on ``etag`` (if any)."""
    return {} if etag is None else {"if_match_etag": etag}


def to_document(spec: ContainerSpec, raw: Mapping[str, Any]) -> Document:
    """A ``Document`` from a Cosmos item: system properties (``_rid``, ``_etag``…) stripped."""
    # The core rejects user fields starting with '_', so every such key is Cosmos's.
    body = {key: value for key, value in raw.items() if not key.startswith("_")}
    return Document(
        id=body["id"],
        partition_key=body[spec.partition_key],
        etag=raw["_etag"],
        body=body,
    )


MAX_EXACT_INT = 2**53 - 1
_LONG_DIGITS = re.compile(r"\d{16,}")  # every |n| > 2**53 - 1 has at least 16 digits


def _has_inexact_int(value: Any) -> bool:
    if isinstance(value, bool):
        return False
    if isinstance(value, int):
        return not -MAX_EXACT_INT <= value <= MAX_EXACT_INT
    if isinstance(value, dict):
        return any(_has_inexact_int(v) for v in value.values())
    if isinstance(value, list | tuple):
        return any(_has_inexact_int(v) for v in value)
    return False


def check_exact_numbers(value: Any, raw: str | None = None) -> None:
    """Refuse integers Cosmos DB would round: it holds numbers as IEEE doubles.

    ``raw``, the JSON text of ``value`` when known, skips the walk for the common
    document with no long digit run.
    """
    if raw is not None and not _LONG_DIGITS.search(raw):
        return
    if _has_inexact_int(value):
        raise InvalidRequestError(
            f"an integer beyond ±{MAX_EXACT_INT} cannot be stored exactly in Cosmos DB"
        )
