"""Documents, container specs, patches and write results: the nouns of the store."""

from __future__ import annotations

import enum
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any, Literal, NamedTuple

__all__ = [
    "ASC",
    "DESC",
    "Condition",
    "Direction",
    "Document",
    "FieldType",
    "Index",
    "ContainerSpec",
    "Not",
    "Outcome",
    "admits",
    "allowed",
    "Patch",
    "UpdateResult",
    "MAX_DOCUMENT_BYTES",
    "of_type",
]

Direction = Literal["asc", "desc"]
ASC: Direction = "asc"
DESC: Direction = "desc"

Scalar = str | int | float | bool
"""A declared field's value."""


@dataclass(frozen=True, slots=True)
class Not:
    """A partial index's condition on one field: present and any value but this one.

    ``Index.of("lock", "created_at", where={"lock": Not("")})`` leaves out the
    documents whose ``lock`` is ``""`` (or absent); a query uses the index only with
    an ``eq`` filter on ``lock`` to another value.
    """

    value: Scalar


Condition = Scalar | tuple[Scalar, ...] | Not
"""A partial index's condition on one field: that value, any one of several, or ``Not`` one."""

FieldType = Literal["str", "int", "float", "bool"]
"""The type a declared field holds; ``float`` fields accept any JSON number."""

MAX_DOCUMENT_BYTES = 2 * 1024 * 1024
"""Cosmos DB's item size limit, applied by every provider for portability."""

_FIELD_PATH = re.compile(r"^[A-Za-z][A-Za-z0-9_]*(\.[A-Za-z][A-Za-z0-9_]*)*$")
_CONTAINER_NAME = re.compile(r"^[A-Za-z][A-Za-z0-9_-]{0,62}$")


class Document(NamedTuple):
    """One stored JSON document: its body (which holds ``id`` and the partition key) and etag.

    A named tuple rather than a frozen dataclass: as immutable, and half the cost
    to build on the compare-and-swap hot path.
    """

    id: str
    partition_key: str
    etag: str
    body: dict[str, Any]


def allowed(condition: Condition) -> tuple[Scalar, ...]:
    """The values an equality condition on a field lets in (``Not`` lets in all but one)."""
    if isinstance(condition, Not):
        raise TypeError("a Not condition lets in every value but one")
    return condition if isinstance(condition, tuple) else (condition,)


def admits(condition: Condition, value: object) -> bool:
    """Whether a field holding ``value`` (None: absent) meets a partial index's condition."""
    if isinstance(condition, Not):
        return value is not None and value != condition.value
    return value in allowed(condition)


def _condition(value: Scalar | Iterable[Scalar] | Not) -> Condition:
    """One value as is; several as a sorted tuple, so equal conditions compare (and name) equal."""
    if isinstance(value, str | int | float | bool | Not):
        return value
    values = tuple(sorted(set(value), key=repr))
    return values[0] if len(values) == 1 else values  # () is refused by ContainerSpec


def _parse_key(spec: str) -> tuple[str, Direction]:
    if spec.startswith("-"):
        return spec[1:], DESC
    return spec, ASC


@dataclass(frozen=True, slots=True)
class Index:
    """An ordered composite index: ``Index.of("queue", "-priority", "created_at")``.

    Equality filters on a prefix of the fields followed by an ``order_by`` on the
    rest is the query shape an index serves without scanning.
    """

    fields: tuple[tuple[str, Direction], ...]
    per_partition: bool = True
    """Also serve the order inside one partition (``Query.partition_key``) without a
    scan. Physical only: SQLite keeps a second, partition-led copy of the index for
    it (one more index to update per write that changes one of its fields); memory
    and Cosmos ignore it. Declare
    ``False`` for indexes only cross-partition queries use."""
    where: tuple[tuple[str, Condition], ...] = ()
    """A partial index: only documents whose fields equal these values (or one of a
    field's several values, or, for a ``Not`` condition, hold any value but that one)
    are in it, and only queries with ``eq`` filters on such values use it (others use
    another index or, failing that, scan). A write that
    moves a document neither into nor out of it nor within it leaves it alone.
    Memory and SQLite; Cosmos DB indexes every document anyway and ignores it."""
    sparse: bool = False
    """Only documents holding every field of the index are in it. Every query the
    index fits filters or sorts on all its fields, which leaves such documents out
    anyway, so no query loses a match; only a count on a shorter prefix cannot use
    it. Memory and SQLite; Cosmos DB ignores it."""

    @classmethod
    def of(
        cls,
        *specs: str,
        per_partition: bool = True,
        where: Mapping[str, Scalar | Iterable[Scalar] | Not] | None = None,
        sparse: bool = False,
    ) -> Index:
        """Build an index from field names, ``-name`` meaning descending.

        ``where={"status": "queued"}`` makes it partial (see ``Index.where``), and
        ``where={"status": ("queued", "failed")}`` lets in either value and
        ``where={"lock": Not("")}`` every value but ``""``;
        ``sparse=True`` keeps out documents lacking one of its fields.
        """
        only = tuple(sorted((name, _condition(v)) for name, v in (where or {}).items()))
        return cls(tuple(_parse_key(s) for s in specs), per_partition, only, sparse)

    @property
    def partial(self) -> bool:
        """True when some documents are left out of the index (``where`` or ``sparse``)."""
        return bool(self.where) or self.sparse

    @property
    def names(self) -> tuple[str, ...]:
        """The field paths of the index, in order."""
        return tuple(name for name, _ in self.fields)


@dataclass(frozen=True, slots=True)
class ContainerSpec:
    """Declares a container: its partition key field, the typed fields queries use, its indexes.

    Only declared fields (and ``id``) may be filtered or sorted on, and a declared
    field, when present in a document, must hold a value of its declared type:
    that is what lets every provider evaluate a query identically.
    """

    name: str
    partition_key: str = "pk"
    fields: Mapping[str, FieldType] = field(default_factory=dict)
    indexes: tuple[Index, ...] = ()
    max_document_bytes: int = MAX_DOCUMENT_BYTES
    default_ttl: int | None = None
    """Cosmos DB only: the container's default time to live in seconds (-1: on, and a
    document expires only if its own ``ttl`` field says so; None: off). Memory and
    SQLite keep every document until it is deleted (``DocumentStore.expires_documents``)."""
    id_order: bool = True
    """Serve a query without ``order_by`` (the default order, by ``id``) across the
    partitions. SQLite keeps an ``(id, pk)`` index for it, one more B-tree each
    insert and delete updates. False: no such index, and ``plan_query`` refuses such
    a query unless it names a partition (the primary key serves the order inside
    one); a count is never ordered, so it is allowed either way. Every provider
    applies the same rule."""
    declared_roots: frozenset[str] = field(init=False, repr=False, compare=False)
    top_fields: Mapping[str, FieldType] = field(init=False, repr=False, compare=False)
    """The declared fields that are top-level names (validated by a key look-up)."""
    nested_fields: Mapping[str, FieldType] = field(init=False, repr=False, compare=False)
    """The declared fields inside objects (``"a.b"``; validated by walking the path)."""

    def __post_init__(self) -> None:
        from .errors import InvalidRequestError

        roots = frozenset(path.split(".", 1)[0] for path in self.fields)
        object.__setattr__(self, "declared_roots", roots)
        top = {path: kind for path, kind in self.fields.items() if "." not in path}
        object.__setattr__(self, "top_fields", top)
        nested = {path: kind for path, kind in self.fields.items() if "." in path}
        object.__setattr__(self, "nested_fields", nested)
        if not _CONTAINER_NAME.match(self.name):
            raise InvalidRequestError(f"invalid container name {self.name!r}")
        if not _FIELD_PATH.match(self.partition_key) or "." in self.partition_key:
            raise InvalidRequestError("partition_key must be a top-level field name")
        if self.partition_key == "id":
            raise InvalidRequestError("partition_key cannot be 'id'")
        for path, kind in self.fields.items():
            if not _FIELD_PATH.match(path):
                raise InvalidRequestError(f"invalid field path {path!r}")
            if kind not in ("str", "int", "float", "bool"):
                raise InvalidRequestError(f"field {path!r}: unknown type {kind!r}")
            if path in ("id", self.partition_key) and kind != "str":
                raise InvalidRequestError(f"field {path!r} is always a string")
        for index in self.indexes:
            if not index.fields:
                raise InvalidRequestError("an index needs at least one field")
            for name, direction in index.fields:
                if self.field_type(name) is None:
                    raise InvalidRequestError(f"index field {name!r} is not declared")
                if direction not in (ASC, DESC):
                    raise InvalidRequestError(f"index field {name!r}: bad direction")
            if len(set(index.names)) != len(index.names):
                raise InvalidRequestError("an index names a field twice")
            for name, value in index.where:
                declared = self.field_type(name)
                if declared is None:
                    raise InvalidRequestError(f"index condition field {name!r} is not declared")
                values = (value.value,) if isinstance(value, Not) else allowed(value)
                if not values or not all(of_type(v, declared) for v in values):
                    raise InvalidRequestError(f"index condition {name!r}: not a {declared}")
        if self.default_ttl is not None and (self.default_ttl == 0 or self.default_ttl < -1):
            raise InvalidRequestError("default_ttl must be -1 or a positive number of seconds")

    def field_type(self, path: str) -> FieldType | None:
        """The declared type of a field path, or None when it is not declared."""
        if path == "id" or path == self.partition_key:
            return "str"
        return self.fields.get(path)


def of_type(value: object, kind: FieldType) -> bool:
    """Whether ``value`` is a JSON value of declared type ``kind`` (a bool is no number)."""
    if kind == "bool":
        return isinstance(value, bool)
    if isinstance(value, bool):
        return False
    if kind == "int":
        return isinstance(value, int)
    if kind == "float":
        return isinstance(value, int | float)
    return isinstance(value, str)


@dataclass(frozen=True, slots=True)
class Patch:
    """A partial update: top-level fields to set and to remove; nothing else changes."""

    set: Mapping[str, Any] = field(default_factory=dict)
    remove: tuple[str, ...] = ()


class Outcome(enum.Enum):
    """What a conditional update did."""

    OK = "ok"
    CONFLICT = "conflict"
    NOT_FOUND = "not_found"


class UpdateResult(NamedTuple):
    """The result of ``update_if_match``: ok with the new document, conflict, or not_found."""

    outcome: Outcome
    document: Document | None = None

    @property
    def ok(self) -> bool:
        """True when this writer won and ``document`` holds the stored result."""
        return self.outcome is Outcome.OK

    @classmethod
    def won(cls, document: Document) -> UpdateResult:
        """The write happened."""
        return cls(Outcome.OK, document)


CONFLICT = UpdateResult(Outcome.CONFLICT)
NOT_FOUND = UpdateResult(Outcome.NOT_FOUND)
