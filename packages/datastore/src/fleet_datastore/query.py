"""The portable query: filters, ordering, limit and continuation, checked against a spec.

Every provider evaluates a query the same way:

- filters and sort keys use declared fields only (and ``id``), so each has one type;
- a document lacking a filtered field never matches; a document lacking a sort
  field is left out of an ordered query;
- ``order_by`` is a suffix of a declared index (or the exact reverse of one), and
  ``id`` then the partition key break ties (ascending, or descending for a
  reversed index), so the order is total, pages are deterministic and
  continuations are keyset positions, not offsets.

A query may ask (``split_in``) for its ``in_`` filter on one field to be answered
as one query per value, each with an equality there, every one resuming from the
same keyset position and all merged in the query's order (``Container.query``).
Each is then a plain equality query a provider serves from an index, possibly a
partial one holding only that value, where the ``in_`` itself could not be: SQLite
sorts the matches of an ``in_`` on an index's middle field (a TEMP B-TREE), and
partial indexes of different values are different indexes.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field, replace
from typing import Any, Literal

from .continuation import decode, shape_of
from .documents import MAX_SAFE_INT
from .errors import InvalidRequestError
from .model import ASC, DESC, ContainerSpec, Direction, Document, FieldType, Scalar

__all__ = [
    "Filter",
    "Op",
    "Page",
    "Query",
    "QueryPlan",
    "Scalar",
    "eq",
    "ge",
    "gt",
    "in_",
    "le",
    "lt",
    "plan_query",
    "plan_shape",
    "split_plans",
    "MAX_IN_VALUES",
    "MAX_LIMIT",
]


Op = Literal["eq", "in", "lt", "le", "gt", "ge"]
MAX_IN_VALUES = 256
MAX_LIMIT = 10_000


@dataclass(frozen=True, slots=True)
class Filter:
    """One condition on a declared field."""

    field: str
    op: Op
    value: Scalar | tuple[Scalar, ...]


def eq(path: str, value: Scalar) -> Filter:
    """``path == value``."""
    return Filter(path, "eq", value)


def in_(path: str, values: Iterable[Scalar]) -> Filter:
    """``path`` equals one of ``values``."""
    return Filter(path, "in", tuple(values))


def lt(path: str, value: Scalar) -> Filter:
    """``path < value``."""
    return Filter(path, "lt", value)


def le(path: str, value: Scalar) -> Filter:
    """``path <= value``."""
    return Filter(path, "le", value)


def gt(path: str, value: Scalar) -> Filter:
    """``path > value``."""
    return Filter(path, "gt", value)


def ge(path: str, value: Scalar) -> Filter:
    """``path >= value``."""
    return Filter(path, "ge", value)


@dataclass(frozen=True, slots=True)
class Query:
    """A portable query: ``Query(where=[eq("status", "queued")], order_by=["-priority"])``.

    ``split_in`` names the field of one ``in_`` filter to answer as one query per
    value, merged in the query's order (see the module docstring): the same
    documents, pages and continuations as without it, each read from an equality's
    index.
    """

    where: Sequence[Filter] = ()
    order_by: Sequence[str] = ()
    limit: int | None = None
    partition_key: str | None = None
    continuation: str | None = None
    split_in: str | None = None


class Page:
    """One page of results; ``continuation`` is None when there are no more.

    The token is made when it is first read: a caller that only asks whether more
    exist (``more``), as every claim's candidate query does, never pays for the
    query's shape digest and the token's encoding (~10 µs a query).
    """

    __slots__ = ("_make", "_token", "items")

    def __init__(
        self,
        items: list[Document],
        continuation: str | None = None,
        *,
        make: Callable[[], str] | None = None,
    ) -> None:
        self.items = items
        self._token = continuation
        self._make = make

    @property
    def more(self) -> bool:
        """Whether another page exists."""
        return self._token is not None or self._make is not None

    @property
    def continuation(self) -> str | None:
        """The token that resumes the query after this page, or None at its end."""
        if self._make is not None:
            self._token, self._make = self._make(), None
        return self._token

    def __repr__(self) -> str:
        return f"Page(items={self.items!r}, more={self.more})"


@dataclass(frozen=True, slots=True)
class QueryPlan:
    """A validated query as providers receive it.

    ``sort`` is the full ordering ending with ``ties`` tie-breakers: ``id``, then
    the partition key unless the order already names it; ``after`` is the
    keyset position decoded from the continuation (values in ``sort`` order);
    ``fetch`` is how many documents to return at most (limit + 1, to learn whether
    another page exists), or None for all.
    """

    container: str
    where: tuple[Filter, ...]
    sort: tuple[tuple[str, Direction], ...]
    partition_key: str | None
    limit: int | None
    after: tuple[Any, ...] | None = None
    explicit_order: bool = False
    split: str | None = None
    """The field of the ``in_`` filter answered one value at a time (``split_plans``)."""
    shape: str = field(default="", compare=False)
    """The digest tokens carry (``continuation.shape_of``); "" until a token was read."""

    @property
    def ties(self) -> int:
        """How many trailing entries of ``sort`` are tie-breakers (1 or 2)."""
        names = [name for name, _ in self.sort]
        return len(names) - names.index("id")

    @property
    def fetch(self) -> int | None:
        """Documents to read: one more than the limit, to know if a next page exists."""
        return None if self.limit is None else self.limit + 1


def _check_value(path: str, kind: FieldType, value: Any) -> None:
    ok: bool
    if kind == "str":
        ok = isinstance(value, str)
    elif kind == "bool":
        ok = isinstance(value, bool)
    elif kind == "int":
        ok = isinstance(value, int) and not isinstance(value, bool)
    else:
        ok = isinstance(value, int | float) and not isinstance(value, bool)
        if ok and value != value:  # NaN compares unequal to itself and to everything
            ok = False
    if ok and type(value) is int and not -MAX_SAFE_INT <= value <= MAX_SAFE_INT:
        # No stored number is past it (documents refuse it), and SQLite cannot bind one
        # past 64 bits (an OverflowError, not a datastore error).
        raise InvalidRequestError(f"filter on {path!r}: integers must be within ±(2**53 - 1)")
    if not ok:
        raise InvalidRequestError(f"filter on {path!r} needs a {kind} value, got {value!r}")


_Sort = tuple[tuple[str, Direction], ...]
_SORTS: dict[tuple[int, tuple[str, ...]], tuple[ContainerSpec, _Sort]] = {}
"""``_sort_for``'s answers, by the spec's identity and the ``order_by`` strings.

Every claim plans the same ordering: resolving it against the indexes anew cost
~5 µs a claim. Keyed by identity as ``sqlite_sql._layout`` (a spec holds a dict,
so it is not hashable); the entry keeps its spec alive, so the id is not reused
while cached. Only answers are kept: a refused ``order_by`` raises every time.
"""


def _sort_for(spec: ContainerSpec, order_by: Sequence[str]) -> tuple[tuple[str, Direction], ...]:
    key = (id(spec), tuple(order_by))
    try:
        entry = _SORTS.get(key)
    except TypeError:  # an unhashable entry, which _resolve_sort refuses
        return _resolve_sort(spec, order_by)
    if entry is not None and entry[0] is spec:
        return entry[1]
    sort = _resolve_sort(spec, order_by)
    if len(_SORTS) >= 256:
        _SORTS.clear()
    _SORTS[key] = (spec, sort)
    return sort


def _resolve_sort(
    spec: ContainerSpec, order_by: Sequence[str]
) -> tuple[tuple[str, Direction], ...]:
    keys: list[tuple[str, Direction]] = []
    for item in order_by:
        if not isinstance(item, str) or not item.lstrip("-"):
            raise InvalidRequestError(f"bad order_by entry {item!r}")
        keys.append((item[1:], DESC) if item.startswith("-") else (item, ASC))
    for name, _ in keys:
        if spec.field_type(name) is None:
            raise InvalidRequestError(f"cannot order by undeclared field {name!r}")
    if len({name for name, _ in keys}) != len(keys):
        raise InvalidRequestError("order_by names a field twice")
    pk = spec.partition_key
    id_dir: Direction | None = None
    if keys and keys[-1][0] == "id":
        id_dir = keys.pop()[1]
    if not keys:
        return (("id", id_dir or ASC), (pk, id_dir or ASC))
    wanted = tuple(keys)
    flipped = tuple((n, DESC if d == ASC else ASC) for n, d in keys)
    # Cosmos serves ORDER BY a, b, id only from a composite index on exactly those
    # paths (or their exact reverse), so the portable rule is the same everywhere.
    for index in spec.indexes:
        for start in range(len(index.fields)):
            suffix = index.fields[start:]
            suffix_names = {name for name, _ in suffix}
            for order, tie in ((wanted, ASC), (flipped, DESC)):
                if suffix == order and id_dir in (None, tie):
                    ties = (("id", tie),) if pk in suffix_names else (("id", tie), (pk, tie))
                    return (*wanted, *ties)
    raise InvalidRequestError(
        f"order_by {list(order_by)} is not a suffix of a declared index of {spec.name!r}"
    )


def plan_query(spec: ContainerSpec, query: Query, *, counting: bool = False) -> QueryPlan:
    """Validate ``query`` against ``spec`` and resolve its ordering and continuation.

    ``counting``: the plan of a count, which has no order, so a container without
    ``id_order`` may count across partitions.
    """
    where = tuple(query.where)
    for f in where:
        if not isinstance(f, Filter):
            raise InvalidRequestError(f"not a filter: {f!r}")
        kind = spec.field_type(f.field)
        if kind is None:
            raise InvalidRequestError(f"cannot filter on undeclared field {f.field!r}")
        if f.op == "in":
            if not isinstance(f.value, tuple) or not 1 <= len(f.value) <= MAX_IN_VALUES:
                raise InvalidRequestError(f"'in' on {f.field!r} needs 1..{MAX_IN_VALUES} values")
            for v in f.value:
                _check_value(f.field, kind, v)
        elif f.op in ("eq", "lt", "le", "gt", "ge"):
            _check_value(f.field, kind, f.value)
        else:
            raise InvalidRequestError(f"unknown filter operator {f.op!r}")
    limit = query.limit
    if limit is not None and (
        isinstance(limit, bool) or not isinstance(limit, int) or not 1 <= limit <= MAX_LIMIT
    ):
        raise InvalidRequestError(f"limit must be 1..{MAX_LIMIT} or None")
    pk = query.partition_key
    if pk is not None and (not isinstance(pk, str) or not pk):
        raise InvalidRequestError("partition_key must be a non-empty string")
    split = query.split_in
    if split is not None and (
        not isinstance(split, str)
        or sum(1 for f in where if f.field == split and f.op == "in") != 1
    ):
        raise InvalidRequestError(f"split_in {split!r} needs exactly one 'in' filter on it")
    sort = _sort_for(spec, query.order_by)
    if not spec.id_order and pk is None and not counting and sort[0][0] == "id":
        raise InvalidRequestError(
            f"{spec.name!r} keeps no id order across partitions (ContainerSpec.id_order): "
            "give the query an order_by of a declared index, or a partition_key"
        )
    # The shape is only needed to resume or hand out a token: a digest costs ~5 µs, and
    # most queries (every claim's first page) read no token.
    shape = ""
    after = None
    if query.continuation is not None:
        shape = shape_of(spec.name, [(f.field, f.op, f.value) for f in where], sort, pk)
        after = decode(query.continuation, shape, spec, sort)
    return QueryPlan(
        container=spec.name,
        where=where,
        sort=sort,
        partition_key=pk,
        limit=limit,
        after=after,
        explicit_order=bool(query.order_by),
        split=split,
        shape=shape,
    )


def split_plans(plan: QueryPlan) -> list[QueryPlan]:
    """The plans answering ``plan``'s split ``in_`` filter, one equality per value.

    Each keeps the rest of ``plan``: its other filters, order, limit and keyset
    position, so every one resumes strictly after the same document, whichever
    value that document had then or has now. A continuation is read and made for
    ``plan`` (its shape holds the ``in_`` filter), never for one of these.
    """
    at = next(i for i, f in enumerate(plan.where) if f.field == plan.split and f.op == "in")
    split = plan.where[at]
    assert isinstance(split.value, tuple)
    return [
        replace(
            plan,
            where=(*plan.where[:at], Filter(split.field, "eq", value), *plan.where[at + 1 :]),
            split=None,
            shape="",
        )
        for value in dict.fromkeys(split.value)  # each value once, in the order given
    ]


def plan_shape(plan: QueryPlan) -> str:
    """The digest a continuation token of ``plan`` carries (computed when not yet known)."""
    if plan.shape:
        return plan.shape
    where = [(f.field, f.op, f.value) for f in plan.where]
    return shape_of(plan.container, where, plan.sort, plan.partition_key)
