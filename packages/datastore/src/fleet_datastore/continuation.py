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

from .documents import MAX_SAFE_INT, check_id, check_partition_key, get_path
from .errors import InvalidContinuationError, InvalidRequestError
from .model import ContainerSpec, Direction, of_type

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


def decode(
    token: str, shape: str, spec: ContainerSpec, sort: Sequence[tuple[str, Direction]]
) -> tuple[Any, ...]:
    """The keyset position in ``token`` for a query on ``spec`` ordered by ``sort``.

    Raises when the token is malformed, from another query, or holds a position no
    stored document could have: ``encode`` only ever writes a stored body's sort
    values, so anything else is forged, and must not reach a provider (SQLite
    cannot bind a lone surrogate or an integer past 64 bits; Cosmos DB's query
    text cannot carry NaN).
    """
    if not isinstance(token, str) or not token or len(token) > _MAX_TOKEN:
        raise InvalidContinuationError("continuation token is empty or too long")
    try:
        raw = base64.urlsafe_b64decode(token + "=" * (-len(token) % 4))
        # orjson, not json: it refuses what a stored body cannot hold and json takes
        # (lone surrogates, NaN, Infinity, 1e400 read as infinity, invalid UTF-8).
        data = orjson.loads(raw)
    except (binascii.Error, ValueError) as exc:
        raise InvalidContinuationError("continuation token is malformed") from exc
    if not isinstance(data, dict) or set(data) != {"s", "k"}:
        raise InvalidContinuationError("continuation token is malformed")
    if data["s"] != shape:
        raise InvalidContinuationError("continuation token belongs to another query")
    key = data["k"]
    if not isinstance(key, list) or len(key) != len(sort):
        raise InvalidContinuationError("continuation token is malformed")
    for (name, _), value in zip(sort, key, strict=True):
        if not _storable(spec, name, value):
            raise InvalidContinuationError("continuation token is malformed")
    return tuple(key)


def _storable(spec: ContainerSpec, name: str, value: object) -> bool:
    """Whether a document ``prepare`` accepted could hold ``value`` at sort field ``name``."""
    try:
        if name == "id":
            check_id(value)
        if name == spec.partition_key:
            check_partition_key(value)
    except InvalidRequestError:
        return False
    kind = spec.field_type(name)
    if kind is None or not of_type(value, kind):
        return False
    # Floats are finite (orjson reads no other); integers are bounded as stored ones are.
    return type(value) is not int or -MAX_SAFE_INT <= value <= MAX_SAFE_INT
