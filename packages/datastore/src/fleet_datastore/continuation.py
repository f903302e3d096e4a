"""Continuation tokens: opaque keyset positions bound to the query that made them.

A token is base64url(JSON ``{"s": shape, "k": [sort values of the last item]}``).
Keyset positions, unlike offsets, stay correct while documents are written
between pages, and every provider can resume from one with a plain range filter.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
from collections.abc import Iterable, Sequence
from typing import Any

import orjson

from .documents import get_path
from .errors import InvalidContinuationError
from .model import Direction, FieldType, of_type

__all__ = ["decode", "encode", "position", "shape_of"]

_MAX_TOKEN = 16_384


def shape_of(
    container: str,
    where: Iterable[tuple[str, str, Any]],
    sort: Sequence[tuple[str, Direction]],
    partition_key: str | None,
) -> str:
    """A short digest of what a token may resume: container, filters, order, partition.

    It takes the plan's parts (filters as ``(field, op, value)``) rather than the
    plan, so that this module does not import ``query``, which imports it.
    """
    text = json.dumps(
        [
            container,
            [
                [name, op, list(value) if isinstance(value, tuple) else value]
                for name, op, value in where
            ],
            sort,
            partition_key,
        ],
        sort_keys=True,
        default=str,
    )
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def position(sort: Sequence[tuple[str, Direction]], body: dict[str, Any]) -> list[Any]:
    """The keyset position of ``body`` in a query ordered by ``sort``: its sort values."""
    return [get_path(body, name) for name, _ in sort]


def encode(shape: str, key: list[Any]) -> str:
    """The token that resumes the query of ``shape`` after the keyset position ``key``."""
    raw = orjson.dumps({"s": shape, "k": key})  # what json.dumps writes, compact; 4x faster
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def decode(token: str, shape: str, kinds: Sequence[FieldType]) -> tuple[Any, ...]:
    """The keyset position in ``token``; raises when it is malformed or from another query."""
    if not isinstance(token, str) or not token or len(token) > _MAX_TOKEN:
        raise InvalidContinuationError("continuation token is empty or too long")
    try:
        raw = base64.urlsafe_b64decode(token + "=" * (-len(token) % 4))
        data = json.loads(raw)
    except (binascii.Error, ValueError, UnicodeDecodeError) as exc:
        raise InvalidContinuationError("continuation token is malformed") from exc
    if not isinstance(data, dict) or set(data) != {"s", "k"}:
        raise InvalidContinuationError("continuation token is malformed")
    if data["s"] != shape:
        raise InvalidContinuationError("continuation token belongs to another query")
    key = data["k"]
    if not isinstance(key, list) or len(key) != len(kinds):
        raise InvalidContinuationError("continuation token is malformed")
    for kind, value in zip(kinds, key, strict=True):
        if not of_type(value, kind):
            raise InvalidContinuationError("continuation token is malformed")
    return tuple(key)
