"""Sorted index keys for the memory provider: direction wrappers, sentinels and matching.

An index entry is the tuple ``(k1, …, kn, id, pk)`` where ``ki`` is a field's value
(``field_key``: negated or wrapped in ``Rev`` for a descending field, a sentinel
when the document lacks it). Tuples compare element-wise, so
one ``SortedList`` of entries serves equality prefixes, ranges on the next field
and keyset continuations with plain bisection.
"""

from __future__ import annotations

import itertools
from typing import Any

from ..documents import get_path
from ..model import DESC, Direction
from ..query import Filter

__all__ = [
    "MISSING",
    "MISSING_LAST",
    "TOP",
    "Rev",
    "entry_key",
    "field_key",
    "has_fields",
    "matches",
    "prefix_keys",
]


class _Sentinel:
    """A value below (MISSING) or above (MISSING_LAST, then TOP) every stored value."""

    __slots__ = ("name", "rank")

    def __init__(self, rank: int, name: str) -> None:
        self.rank = rank
        self.name = name

    def __repr__(self) -> str:
        return self.name

    def __hash__(self) -> int:
        return hash(self.name)

    def __eq__(self, other: object) -> bool:
        return other is self

    def __lt__(self, other: object) -> bool:
        if isinstance(other, _Sentinel):
            return self.rank < other.rank
        return self.rank < 0

    def __gt__(self, other: object) -> bool:
        if isinstance(other, _Sentinel):
            return self.rank > other.rank
        return self.rank > 0

    def __le__(self, other: object) -> bool:
        return self == other or self < other

    def __ge__(self, other: object) -> bool:
        return self == other or self > other


MISSING = _Sentinel(-2, "MISSING")
MISSING_LAST = _Sentinel(1, "MISSING_LAST")
TOP = _Sentinel(2, "TOP")


class Rev:
    """Reverses the order of a value, for descending index fields."""

    __slots__ = ("v",)

    def __init__(self, v: Any) -> None:
        self.v = v

    def __repr__(self) -> str:
        return f"Rev({self.v!r})"

    def __hash__(self) -> int:
        return hash(("rev", self.v))

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Rev) and bool(self.v == other.v)

    def __lt__(self, other: object) -> bool:
        if isinstance(other, Rev):
            return bool(other.v < self.v)
        return isinstance(other, _Sentinel) and other.rank > 0

    def __gt__(self, other: object) -> bool:
        if isinstance(other, Rev):
            return bool(other.v > self.v)
        return isinstance(other, _Sentinel) and other.rank < 0

    def __le__(self, other: object) -> bool:
        return self == other or self < other

    def __ge__(self, other: object) -> bool:
        return self == other or self > other


_NUMBERS = (int, float, bool)


def field_key(value: Any, direction: Direction) -> Any:
    """The index form of one field value (None meaning absent).

    Descending numbers are negated rather than wrapped, so that tuples of them
    compare in C; a field holds one declared type, so a position never mixes the
    two forms. An absent value sorts below every value: first ascending, last
    descending.
    """
    if direction != DESC:
        return MISSING if value is None else value
    if value is None:
        return MISSING_LAST
    if type(value) in _NUMBERS:
        return -value
    return Rev(value)


def entry_key(
    fields: tuple[tuple[str, Direction], ...], body: dict[str, Any], doc_id: str, pk: str
) -> tuple[Any, ...]:
    """The index entry of a document."""
    key: list[Any] = []
    for name, direction in fields:
        value = body.get(name) if "." not in name else get_path(body, name)
        if direction != DESC:
            key.append(MISSING if value is None else value)
        elif value is not None and type(value) in _NUMBERS:
            key.append(-value)
        else:
            key.append(field_key(value, direction))
    key.append(doc_id)
    key.append(pk)
    return tuple(key)


def prefix_keys(
    fields: tuple[tuple[str, Direction], ...], filters: dict[str, Filter]
) -> list[tuple[Any, ...]]:
    """Every index prefix an ``eq``/``in`` filter on each of ``fields`` allows."""
    choices = []
    for name, direction in fields:
        f = filters[name]
        values = f.value if isinstance(f.value, tuple) else (f.value,)
        choices.append([field_key(v, direction) for v in dict.fromkeys(values)])
    return list(itertools.product(*choices))


def has_fields(body: dict[str, Any], names: tuple[str, ...]) -> bool:
    """True when the document holds every named field (ordered queries need them)."""
    return all(get_path(body, name) is not None for name in names)


def matches(body: dict[str, Any], where: tuple[Filter, ...]) -> bool:
    """The portable filter semantics: an absent field never matches."""
    for f in where:
        value = get_path(body, f.field)
        if value is None:
            return False
        target = f.value
        if f.op == "eq":
            ok = value == target
        elif f.op == "in":
            ok = isinstance(target, tuple) and value in target
        elif f.op == "lt":
            ok = value < target
        elif f.op == "le":
            ok = value <= target
        elif f.op == "gt":
            ok = value > target
        else:
            ok = value >= target
        if not ok:
            return False
    return True
