"""Turning a prepared transactional batch into ``execute_item_batch`` operations."""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence
from typing import Any

from ..backend import PreparedOp
from ..batch import CreateOp, DeleteOp, PatchOp, ReadOp, ReplaceOp, UpsertOp
from ..documents import apply_patch
from ..errors import BatchError, DatastoreError, NotFoundError, PreconditionFailedError
from ..model import MAX_DOCUMENT_BYTES, ContainerSpec, Document
from .cosmos_ops import MAX_PATCH_OPERATIONS, check_exact_numbers, if_match, patch_operations

__all__ = ["BatchPlanItem", "plan_batch"]

BatchPlanItem = tuple[str, tuple[Any, ...], dict[str, Any]]
"""One operation as ``execute_item_batch`` takes it: (type, args, keyword options)."""

Reader = Callable[[str], Awaitable[Document]]


async def plan_batch(
    spec: ContainerSpec, ops: Sequence[PreparedOp], read: Reader
) -> list[BatchPlanItem]:
    """The SDK operations for ``ops``; ``read`` fetches a document a patch must be based on."""
    plan: list[BatchPlanItem] = []
    # The body each id has after the earlier operations of this batch (None: deleted).
    written: dict[str, dict[str, Any] | None] = {}
    for index, (op, doc) in enumerate(ops):
        try:
            if doc is not None:
                check_exact_numbers(doc.body, doc.raw)
            elif isinstance(op, PatchOp):
                check_exact_numbers(dict(op.patch.set))
        except DatastoreError as exc:
            raise BatchError(index, exc) from None
        if isinstance(op, CreateOp | UpsertOp | ReplaceOp):
            assert doc is not None  # Container prepares every body
            body = doc.own_body()  # the SDK writes it after this call's awaits
            if isinstance(op, CreateOp):
                plan.append(("create", (body,), {}))
            elif isinstance(op, UpsertOp):
                plan.append(("upsert", (body,), {}))
            else:
                plan.append(("replace", (doc.id, body), if_match(op.etag)))
            written[doc.id] = body
        elif isinstance(op, DeleteOp):
            plan.append(("delete", (op.id,), if_match(op.etag)))
            written[op.id] = None
        elif isinstance(op, ReadOp):
            plan.append(("read", (op.id,), {}))
        elif isinstance(op, PatchOp):
            plan.append(await _patch(spec, index, op, written, read))
    return plan


async def _patch(
    spec: ContainerSpec,
    index: int,
    op: PatchOp,
    written: dict[str, dict[str, Any] | None],
    read: Reader,
) -> BatchPlanItem:
    native = patch_operations(op.patch, present=None)
    if len(native) <= MAX_PATCH_OPERATIONS and spec.max_document_bytes >= MAX_DOCUMENT_BYTES:
        return ("patch", (op.id, native), if_match(op.etag))
    # Too many operations for one Cosmos patch, or a size limit below Cosmos's own:
    # compute the new body here and send a replace, conditional on the etag the
    # body was read with, so the batch stays atomic against concurrent writers.
    # A failure found here is raised before anything is sent, so nothing is
    # written; it is reported at this index even if an earlier operation would
    # also have failed on the server.
    etag: str | None = None
    if op.id in written:
        base = written[op.id]
        if base is None:
            raise BatchError(index, NotFoundError())
        if op.etag is not None:
            # An earlier operation rewrote it: its etag is new, the caller's is stale.
            raise BatchError(index, PreconditionFailedError())
    else:
        try:
            current = await read(op.id)
        except NotFoundError as exc:
            raise BatchError(index, exc) from None
        if op.etag is not None and current.etag != op.etag:
            raise BatchError(index, PreconditionFailedError())
        base, etag = current.body, current.etag
    try:
        new = apply_patch(spec, base, op.patch)
    except DatastoreError as exc:
        raise BatchError(index, exc) from None
    written[op.id] = new.body
    return ("replace", (op.id, new.body), if_match(etag))
