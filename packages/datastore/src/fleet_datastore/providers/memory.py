"""The memory provider (``memory://``): a product, not a test double.

- Every operation runs under one ``threading.Lock`` and contains no ``await``, so a
  compare-and-set is atomic across coroutines and threads alike.
- Documents are stored as private parsed bodies plus their JSON text; callers get
  fresh copies (``json.loads``), so nothing they hold can change stored state.
- Each declared index is a ``SortedList`` of entry tuples (see ``memory_index``), so a
  query whose equality filters cover an index prefix and whose order is the rest
  bisects to its first match instead of scanning the container.
"""

from __future__ import annotations

import heapq
import itertools
import threading
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from operator import itemgetter
from typing import Any

from sortedcontainers import SortedList

from ..backend import PreparedOp
from ..batch import CreateOp, DeleteOp, PatchOp, ReadOp, ReplaceOp, UpsertOp
from ..documents import PreparedDocument, apply_patch, get_path, loads
from ..errors import (
    AlreadyExistsError,
    BatchError,
    DatastoreError,
    NotFoundError,
    PreconditionFailedError,
    UnknownContainerError,
)
from ..model import (
    ASC,
    CONFLICT,
    NOT_FOUND,
    ContainerSpec,
    Direction,
    Document,
    Index,
    Patch,
    UpdateResult,
    admits,
)
from ..query import Filter, QueryPlan
from .memory_index import (
    MISSING,
    MISSING_LAST,
    TOP,
    entry_key,
    field_key,
    has_fields,
    matches,
    prefix_keys,
)

__all__ = ["MemoryBackend"]

_etags = itertools.count(1)


@dataclass(slots=True)
class _Stored:
    body: dict[str, Any]
    raw: str
    etag: str
    keys: list[tuple[Any, ...] | None] | None = None  # its entry in each index, once indexed


@dataclass(slots=True)
class _Table:
    spec: ContainerSpec
    docs: dict[tuple[str, str], _Stored] = field(default_factory=dict)
    by_id: SortedList = field(default_factory=SortedList)  # (id, pk)
    indexes: list[tuple[Index, SortedList]] = field(default_factory=list)

    def index(
        self,
        key: tuple[str, str],
        old: _Stored | None,
        new: _Stored | None,
        touched: frozenset[str] | None = None,
    ) -> None:
        """Move the document's index entries from its old body to its new one.

        ``touched`` (the top-level fields a patch changed) skips the indexes whose
        fields (and partial-index conditions) it leaves alone, since their entries
        cannot have moved. A partial index holds no entry (None) for a document
        it leaves out.
        """
        pk, doc_id = key
        if old is None and new is not None:
            self.by_id.add((doc_id, pk))
        elif old is not None and new is None:
            self.by_id.remove((doc_id, pk))
        known = old.keys if old is not None else None
        keys: list[tuple[Any, ...] | None] = []
        for i, (index, entries) in enumerate(self.indexes):
            before = None
            if old is not None:
                before = known[i] if known is not None else _entry(index, old.body, doc_id, pk)
            if new is None:
                after = None
            elif old is not None and touched is not None and touched.isdisjoint(_roots(index)):
                after = before
            else:
                after = _entry(index, new.body, doc_id, pk)
            keys.append(after)
            if before == after:
                continue
            if before is not None:
                entries.remove(before)
            if after is not None:
                entries.add(after)
        if new is not None:
            new.keys = keys


def _named_ids(where: tuple[Filter, ...]) -> set[str] | None:
    """The ids an ``eq`` or ``in`` filter on ``id`` allows, or None when none is given."""
    for f in where:
        if f.field == "id" and f.op in ("eq", "in"):
            values = f.value if isinstance(f.value, tuple) else (f.value,)
            return {v for v in values if isinstance(v, str)}
    return None


_ROOTS: dict[Index, frozenset[str]] = {}


def _roots(index: Index) -> frozenset[str]:
    """The top-level names an index's fields and conditions live under (memoised per index)."""
    roots = _ROOTS.get(index)
    if roots is None:
        names = (*index.names, *(name for name, _ in index.where))
        roots = _ROOTS[index] = frozenset(name.split(".")[0] for name in names)
    return roots


def _entry(index: Index, body: dict[str, Any], doc_id: str, pk: str) -> tuple[Any, ...] | None:
    """The document's entry in ``index``, or None when a partial index leaves it out."""
    for name, condition in index.where:
        if not admits(condition, get_path(body, name)):
            return None
    key = entry_key(index.fields, body, doc_id, pk)
    if index.sparse and any(k is MISSING or k is MISSING_LAST for k in key):
        return None
    return key


def _serves(index: Index, equal: dict[str, Filter]) -> bool:
    """True when the equality filters imply a partial index's conditions (as SQLite judges).

    A ``Not("v")`` condition is implied by an ``eq`` filter to another value.
    """
    for name, condition in index.where:
        f = equal.get(name)
        if f is None or f.op != "eq" or not admits(condition, f.value):
            return False
    return True


def _op_id(op: object) -> str:
    """The id a body-less batch operation (delete, patch, read) names."""
    assert isinstance(op, DeleteOp | PatchOp | ReadOp), op
    return op.id


def _touches_index(spec: ContainerSpec, patch: Patch) -> bool:
    roots = spec.declared_roots
    return not (roots.isdisjoint(patch.set) and roots.isdisjoint(patch.remove))


def _out(key: tuple[str, str], stored: _Stored) -> Document:
    return Document(key[1], key[0], stored.etag, loads(stored.raw))


def _stored(doc: PreparedDocument) -> _Stored:
    return _Stored(doc.own_body(), doc.raw, f'"m{next(_etags):x}"')


class MemoryBackend:
    """Process-local containers; atomic across coroutines and threads."""

    expires_documents = False
    """Documents stay until deleted; ``ContainerSpec.default_ttl`` is a Cosmos DB setting."""
    local = True
    """Calls run in this process: the time they take is its CPU's."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._tables: dict[str, _Table] = {}

    async def open(self) -> None:
        """Nothing to connect to."""

    async def close(self) -> None:
        """Nothing to release; the data lives as long as this object."""

    async def ping(self) -> None:
        """Always answers."""

    async def ensure_container(self, spec: ContainerSpec) -> None:
        """Create the container and its indexes if missing."""
        with self._lock:
            if spec.name in self._tables:
                return
            table = _Table(spec)
            for index in spec.indexes:
                table.indexes.append((index, SortedList()))
            self._tables[spec.name] = table

    def _table(self, spec: ContainerSpec) -> _Table:
        try:
            return self._tables[spec.name]
        except KeyError:
            raise UnknownContainerError(f"container {spec.name!r} does not exist") from None

    # -- single-document operations; each one body under the lock, no await ------

    def _create(self, table: _Table, doc: PreparedDocument) -> Document:
        key = (doc.partition_key, doc.id)
        if key in table.docs:
            raise AlreadyExistsError(f"document {doc.id!r} already exists")
        new = table.docs[key] = _stored(doc)
        table.index(key, None, new)
        return _out(key, new)

    def _read(self, table: _Table, doc_id: str, pk: str) -> Document:
        key = (pk, doc_id)
        stored = table.docs.get(key)
        if stored is None:
            raise NotFoundError(f"document {doc_id!r} not found")
        return _out(key, stored)

    def _replace(self, table: _Table, doc: PreparedDocument, etag: str | None) -> Document:
        key = (doc.partition_key, doc.id)
        old = table.docs.get(key)
        if old is None:
            raise NotFoundError(f"document {doc.id!r} not found")
        if etag is not None and etag != old.etag:
            raise PreconditionFailedError(f"document {doc.id!r} changed since etag {etag}")
        new = table.docs[key] = _stored(doc)
        table.index(key, old, new)
        return _out(key, new)

    def _upsert(self, table: _Table, doc: PreparedDocument) -> Document:
        key = (doc.partition_key, doc.id)
        old = table.docs.get(key)
        new = table.docs[key] = _stored(doc)
        table.index(key, old, new)
        return _out(key, new)

    def _delete(self, table: _Table, doc_id: str, pk: str, etag: str | None) -> bool:
        key = (pk, doc_id)
        old = table.docs.get(key)
        if old is None:
            return False
        if etag is not None and etag != old.etag:
            raise PreconditionFailedError(f"document {doc_id!r} changed since etag {etag}")
        del table.docs[key]
        table.index(key, old, None)
        return True

    def _patch(
        self, table: _Table, doc_id: str, pk: str, etag: str | None, patch: Patch
    ) -> Document:
        key = (pk, doc_id)
        old = table.docs.get(key)
        if old is None:
            raise NotFoundError(f"document {doc_id!r} not found")
        if etag is not None and etag != old.etag:
            raise PreconditionFailedError(f"document {doc_id!r} changed since etag {etag}")
        new = table.docs[key] = _stored(apply_patch(table.spec, old.body, patch))
        table.index(key, old, new)
        return _out(key, new)

    async def create(self, spec: ContainerSpec, doc: PreparedDocument) -> Document:
        """Insert; AlreadyExistsError if the id exists in that partition."""
        with self._lock:
            return self._create(self._table(spec), doc)

    async def get(self, spec: ContainerSpec, doc_id: str, partition_key: str) -> Document:
        """Read; NotFoundError if missing."""
        with self._lock:
            return self._read(self._table(spec), doc_id, partition_key)

    async def replace(
        self, spec: ContainerSpec, doc: PreparedDocument, etag: str | None
    ) -> Document:
        """Overwrite; NotFoundError if missing, PreconditionFailedError on etag mismatch."""
        with self._lock:
            return self._replace(self._table(spec), doc, etag)

    async def upsert(self, spec: ContainerSpec, doc: PreparedDocument) -> Document:
        """Insert or overwrite."""
        with self._lock:
            return self._upsert(self._table(spec), doc)

    async def delete(
        self, spec: ContainerSpec, doc_id: str, partition_key: str, etag: str | None
    ) -> bool:
        """Remove; False if it was missing."""
        with self._lock:
            return self._delete(self._table(spec), doc_id, partition_key, etag)

    async def update_if_match(
        self,
        spec: ContainerSpec,
        doc_id: str,
        partition_key: str,
        expected: Document,
        patch: Patch,
    ) -> UpdateResult:
        """Compare and set under the lock: the etag check and the write are one step."""
        with self._lock:
            table = self._table(spec)
            key = (partition_key, doc_id)
            old = table.docs.get(key)
            if old is None:
                return NOT_FOUND
            if old.etag != expected.etag:
                return CONFLICT
            new = table.docs[key] = _stored(apply_patch(spec, old.body, patch))
            if table.indexes and _touches_index(spec, patch):
                table.index(key, old, new, frozenset(patch.set).union(patch.remove))
            else:
                new.keys = old.keys  # no indexed field changed: the same entries
        return UpdateResult.won(_out(key, new))

    async def batch(
        self, spec: ContainerSpec, partition_key: str, ops: Sequence[PreparedOp]
    ) -> list[Document | None]:
        """Run every operation, undoing the applied ones if any fails."""
        with self._lock:
            table = self._table(spec)
            undo: list[tuple[tuple[str, str], _Stored | None]] = []
            results: list[Document | None] = []
            for i, (op, doc) in enumerate(ops):
                key = (partition_key, doc.id if doc is not None else _op_id(op))
                before = table.docs.get(key)
                try:
                    results.append(self._apply(table, partition_key, op, doc))
                except DatastoreError as exc:
                    for k, prior in reversed(undo):
                        current = table.docs.get(k)
                        if prior is None:
                            table.docs.pop(k, None)
                        else:
                            table.docs[k] = prior
                        table.index(k, current, prior)
                    raise BatchError(i, exc) from exc
                if not isinstance(op, ReadOp):
                    undo.append((key, before))
            return results

    def _apply(
        self, table: _Table, pk: str, op: Any, doc: PreparedDocument | None
    ) -> Document | None:
        if isinstance(op, CreateOp) and doc:
            return self._create(table, doc)
        if isinstance(op, ReplaceOp) and doc:
            return self._replace(table, doc, op.etag)
        if isinstance(op, UpsertOp) and doc:
            return self._upsert(table, doc)
        if isinstance(op, DeleteOp):
            if not self._delete(table, op.id, pk, op.etag):
                raise NotFoundError(f"document {op.id!r} not found")
            return None
        if isinstance(op, PatchOp):
            return self._patch(table, op.id, pk, op.etag, op.patch)
        if isinstance(op, ReadOp):
            return self._read(table, op.id, pk)
        raise AssertionError(f"unprepared batch operation {op!r}")

    # -- queries -----------------------------------------------------------------

    async def query(self, spec: ContainerSpec, plan: QueryPlan) -> list[Document]:
        """Walk the best index (or scan and sort when none fits), keeping the first matches."""
        with self._lock:
            table = self._table(spec)
            out: list[Document] = []
            for key in self._candidates(table, plan):
                if plan.fetch is not None and len(out) >= plan.fetch:
                    break
                out.append(_out(key, table.docs[key]))
            return out

    async def count(self, spec: ContainerSpec, plan: QueryPlan) -> int:
        """Count matches; bisects when equality filters alone cover an index prefix."""
        with self._lock:
            table = self._table(spec)
            fast = self._count_by_bisect(table, plan)
            if fast is not None:
                return fast
            return sum(1 for _ in self._candidates(table, plan))

    def _keep(self, table: _Table, plan: QueryPlan, key: tuple[str, str]) -> bool:
        if plan.partition_key is not None and key[0] != plan.partition_key:
            return False
        body = table.docs[key].body
        if plan.explicit_order and not has_fields(body, tuple(n for n, _ in plan.sort)):
            return False
        return matches(body, plan.where)

    def _candidates(self, table: _Table, plan: QueryPlan) -> Iterator[tuple[str, str]]:
        """Matching (pk, id) keys in plan order, after the keyset position."""
        if len(plan.sort) == plan.ties:  # nothing but the tie-breakers
            rows = self._walk_ids(table, plan)
        else:
            walked = self._walk_index(table, plan)
            rows = walked if walked is not None else self._scan_sorted(table, plan)
        return (key for key in rows if self._keep(table, plan, key))

    def _walk_ids(self, table: _Table, plan: QueryPlan) -> Iterator[tuple[str, str]]:
        reverse = plan.sort[0][1] != ASC
        lo: tuple[Any, ...] | None = None
        hi: tuple[Any, ...] | None = None
        if plan.after is not None:
            if reverse:
                hi = tuple(plan.after)
            else:
                lo = tuple(plan.after)
        named = _named_ids(plan.where)
        if named is not None:
            # An id filter names its documents (a batch's keyed ids, checked before
            # they are written): look each one up instead of walking every id.
            for doc_id in sorted(named, reverse=reverse):
                for entry in table.by_id.irange(
                    (doc_id,), (doc_id + "\x00",), (True, False), reverse=reverse
                ):
                    if (lo is None or entry > lo) and (hi is None or entry < hi):
                        yield entry[1], entry[0]
            return
        for doc_id, pk in table.by_id.irange(lo, hi, (False, False), reverse=reverse):
            yield pk, doc_id

    def _walk_index(self, table: _Table, plan: QueryPlan) -> Iterator[tuple[str, str]] | None:
        wanted = plan.sort[: -plan.ties]
        flipped = tuple((n, ASC if d != ASC else "desc") for n, d in wanted)
        equal = {f.field: f for f in plan.where if f.op in ("eq", "in")}
        for index, entries in table.indexes:
            fields = index.fields
            if index.where and not _serves(index, equal):
                continue
            # A sparse index fits only queries that filter on its prefix and sort on
            # the rest, which leave out every document it leaves out: it is complete.
            start = len(fields) - len(wanted)
            if start < 0 or fields[start:] not in (wanted, flipped):
                continue
            prefix_fields = fields[:start]
            if not all(name in equal for name, _ in prefix_fields):
                continue
            reverse = fields[start:] != wanted
            if reverse != (plan.sort[-1][1] != ASC):
                continue  # this orientation would break id ties the other way
            return self._walk_prefixes(plan, fields, start, entries, equal, reverse)
        return None

    def _walk_prefixes(
        self,
        plan: QueryPlan,
        fields: tuple[tuple[str, Direction], ...],
        start: int,
        entries: SortedList,
        equal: dict[str, Any],
        reverse: bool,
    ) -> Iterator[tuple[str, str]]:
        """Each equality prefix's range of ``entries``, merged in the query's order.

        An ``in`` filter on a prefix field gives one range per value. Within a range
        the entries share the prefix, so index order is the query's order; across
        ranges the merge must compare only what follows the prefix (the sort values,
        then id and partition key, the tie-breakers every provider uses), or the
        results would come prefix by prefix (a claim over two queues would take
        the first queue's jobs, by name, before the other's higher priorities).
        """
        ranges = []
        for prefix in prefix_keys(fields[:start], equal):
            lo, hi, inclusive = self._bounds(plan, fields, start, prefix, reverse)
            ranges.append(entries.irange(lo, hi, inclusive, reverse=reverse))
        if len(ranges) == 1:
            merged: Iterator[tuple[Any, ...]] = ranges[0]
        else:
            merged = heapq.merge(*ranges, key=itemgetter(slice(start, None)), reverse=reverse)
        for entry in merged:
            yield entry[-1], entry[-2]

    def _bounds(
        self,
        plan: QueryPlan,
        fields: tuple[tuple[str, Direction], ...],
        start: int,
        prefix: tuple[Any, ...],
        reverse: bool,
    ) -> tuple[tuple[Any, ...], tuple[Any, ...], tuple[bool, bool]]:
        """Index-order bounds: the equality prefix, narrowed by the keyset position.

        Range filters are left to ``matches``; the keyset bound is what keeps paging
        through a large result from re-reading earlier pages. An entry is
        ``(*prefix, *sort values, id, pk)``; a keyset position has that shape, or
        stops at the id when the order already holds the partition key.
        """
        if plan.after is None:
            return prefix, (*prefix, TOP), (True, True)
        names = fields[start:]
        values = plan.after[: -plan.ties]
        position = (
            *prefix,
            *(field_key(v, d) for v, (_, d) in zip(values, names, strict=True)),
            *plan.after[-plan.ties :],
        )
        if reverse:
            return prefix, position, (True, False)
        # TOP also skips the entry when the order names the partition key, so the
        # position stops at the id and is a strict prefix of the entry it names.
        return (*position, TOP), (*prefix, TOP), (True, True)

    def _scan_sorted(self, table: _Table, plan: QueryPlan) -> Iterator[tuple[str, str]]:
        """No index fits: sort the matching documents (O(n log n)); documented as a scan."""
        keys = [k for k in table.docs if self._keep(table, plan, k)]

        def order(k: tuple[str, str]) -> tuple[Any, ...]:
            body = table.docs[k].body
            return tuple(field_key(get_path(body, n), d) for n, d in plan.sort)

        keys.sort(key=order)
        if plan.after is not None:
            after = tuple(field_key(v, d) for v, (_, d) in zip(plan.after, plan.sort, strict=True))
            keys = [k for k in keys if order(k) > after]
        return iter(keys)

    def _count_by_bisect(self, table: _Table, plan: QueryPlan) -> int | None:
        if plan.partition_key is not None or not plan.where:
            return len(table.docs) if plan.partition_key is None and not plan.where else None
        if any(f.op not in ("eq", "in") for f in plan.where):
            return None
        by_field = {f.field: f for f in plan.where}
        if len(by_field) != len(plan.where):
            return None
        for index, entries in table.indexes:
            fields = index.fields
            names = [n for n, _ in fields[: len(by_field)]]
            if set(names) != set(by_field):
                continue
            if not _serves(index, by_field) or (index.sparse and len(fields) > len(by_field)):
                continue  # a partial index would miss documents this count matches
            return int(
                sum(
                    entries.bisect_left((*prefix, TOP)) - entries.bisect_left(prefix)
                    for prefix in prefix_keys(fields[: len(by_field)], by_field)
                )
            )
        return self._count_by_walk(table, plan, by_field)

    def _count_by_walk(
        self, table: _Table, plan: QueryPlan, by_field: dict[str, Filter]
    ) -> int | None:
        """Walk the fewest index entries the equalities narrow to, checking the rest on each.

        For a count no index answers by bisection alone: ``queue = q AND status =
        'leased'`` walks the leased jobs (a partial index) rather than every job.
        """
        best: tuple[int, list[tuple[int, int]], SortedList] | None = None
        for index, entries in table.indexes:
            if not _serves(index, by_field) or index.sparse:
                continue  # a sparse index would miss documents lacking a later field
            lead = 0
            while lead < len(index.fields) and index.fields[lead][0] in by_field:
                lead += 1
            if not lead:
                continue
            spans = [
                (entries.bisect_left(prefix), entries.bisect_left((*prefix, TOP)))
                for prefix in prefix_keys(index.fields[:lead], by_field)
            ]
            size = sum(hi - lo for lo, hi in spans)
            if best is None or size < best[0]:
                best = (size, spans, entries)
        if best is None:
            return None
        _, spans, entries = best
        return sum(
            1
            for lo, hi in spans
            for entry in entries.islice(lo, hi)
            if self._keep(table, plan, (entry[-1], entry[-2]))
        )
