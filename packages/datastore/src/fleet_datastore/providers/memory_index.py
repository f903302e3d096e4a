"""Sorted index keys for the memory provider: direction wrappers, sentinels and matching.

An index entry is the tuple ``(k1, …, kn, id, pk)`` where ``ki`` is a field's value,
wrapped in ``Rev`` for a descending field, or ``MISSING`` when the document lacks
it (sorting first, like Cosmos's ``undefined``). Tuples compare element-wise, so
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
    "TOP",
    "Rev",
    "entry_key",
    "field_key",
    "has_fields",
    "matches",
    "prefix_keys",
]


class _Sentinel:
    """A value below (MISSING) or above (TOP) every stored value."""

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


MISSING = _Sentinel(-1, "MISSING")
TOP = _Sentinel(1, "TOP")


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
        return other is TOP

    def __gt__(self, other: object) -> bool:
        if isinstance(other, Rev):
            return bool(other.v > self.v)
        return False

    def __le__(self, other: object) -> bool:
        return self == other or self < other

    def __ge__(self, other: object) -> bool:
        return self == other or self > other


def field_key(value: Any, direction: Direction) -> Any:
    """The index form of one field value (None meaning absent)."""
    v = MISSING if value is None else value
    return Rev(v) if direction == DESC else v


def entry_key(
    fields: tuple[tuple[str, Direction], ...], body: dict[str, Any], doc_id: str, pk: str
) -> tuple[Any, ...]:
    """The index entry of a document."""
    return (*(field_key(get_path(body, name), d) for name, d in fields), doc_id, pk)


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
            ok = value in target  # type: ignore[operator]
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
