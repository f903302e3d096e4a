"""Validation and preparation of document bodies and patches, shared by every provider.

Everything here runs before a provider is called, so a rejected request has
written nothing, on any provider.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from .errors import DocumentTooLargeError, InvalidRequestError
from .model import ContainerSpec, FieldType, Patch

__all__ = [
    "PreparedDocument",
    "apply_patch",
    "check_id",
    "check_partition_key",
    "dumps",
    "get_path",
    "prepare",
    "validate_patch",
]

MAX_ID_LENGTH = 255
_BAD_ID = re.compile(r"[/\\?#]")
MAX_SAFE_INT = 2**53 - 1  # Cosmos stores numbers as IEEE doubles


@dataclass(frozen=True, slots=True)
class PreparedDocument:
    """A validated body with its id, partition key and compact JSON text."""

    id: str
    partition_key: str
    body: dict[str, Any]
    raw: str


def dumps(body: Mapping[str, Any]) -> str:
    """Compact JSON text of a body; raises InvalidRequestError if it is not JSON."""
    try:
        return json.dumps(body, separators=(",", ":"), ensure_ascii=False, allow_nan=False)
    except (TypeError, ValueError, RecursionError) as exc:
        raise InvalidRequestError(f"document is not JSON-serialisable: {exc}") from exc


def check_id(doc_id: Any) -> str:
    """Return ``doc_id`` if Cosmos DB would accept it as an id, else raise."""
    if not isinstance(doc_id, str) or not doc_id:
        raise InvalidRequestError("id must be a non-empty string")
    if len(doc_id) > MAX_ID_LENGTH:
        raise InvalidRequestError(f"id is longer than {MAX_ID_LENGTH} characters")
    if _BAD_ID.search(doc_id):
        raise InvalidRequestError("id may not contain '/', '\\', '?' or '#'")
    if doc_id != doc_id.strip() or any(ord(ch) < 32 for ch in doc_id):
        raise InvalidRequestError("id may not have surrounding spaces or control characters")
    return doc_id


def check_partition_key(value: Any) -> str:
    """Return ``value`` if it is a valid partition key value, else raise."""
    if not isinstance(value, str) or not value:
        raise InvalidRequestError("partition key must be a non-empty string")
    if len(value) > 2048:
        raise InvalidRequestError("partition key is longer than 2048 characters")
    return value


def get_path(body: Mapping[str, Any], path: str) -> Any:
    """The value at a dotted path, or None when any step is missing."""
    if "." not in path:
        return body.get(path)
    node: Any = body
    for part in path.split("."):
        if not isinstance(node, dict):
            return None
        node = node.get(part)
    return node


def _has_path(body: Mapping[str, Any], path: str) -> bool:
    node: Any = body
    for part in path.split("."):
        if not isinstance(node, dict) or part not in node:
            return False
        node = node[part]
    return True


def _type_ok(kind: FieldType, value: Any) -> bool:
    if kind == "str":
        return isinstance(value, str)
    if kind == "bool":
        return isinstance(value, bool)
    if isinstance(value, bool):
        return False
    if kind == "int":
        return isinstance(value, int) and -MAX_SAFE_INT <= value <= MAX_SAFE_INT
    return isinstance(value, int | float)


def _check_declared(spec: ContainerSpec, body: Mapping[str, Any]) -> None:
    for path, kind in spec.fields.items():
        if _has_path(body, path):
            value = get_path(body, path)
            if not _type_ok(kind, value):
                raise InvalidRequestError(
                    f"field {path!r} is declared {kind} but holds {type(value).__name__}"
                )


def _check_keys(body: Mapping[str, Any]) -> None:
    for key in body:
        if not isinstance(key, str):
            raise InvalidRequestError("document keys must be strings")
        if key.startswith("_"):
            # Cosmos reserves _rid, _self, _etag, _ts, _attachments; one rule for all.
            raise InvalidRequestError(f"top-level field {key!r} may not start with '_'")


def prepare(spec: ContainerSpec, body: Any) -> PreparedDocument:
    """Validate a whole document body and serialise it; raises before anything is written."""
    if not isinstance(body, Mapping):
        raise InvalidRequestError("a document must be a JSON object")
    doc_id = check_id(body.get("id"))
    pk = check_partition_key(body.get(spec.partition_key))
    _check_keys(body)
    _check_declared(spec, body)
    raw = dumps(body)
    if len(raw.encode()) > spec.max_document_bytes:
        raise DocumentTooLargeError(
            f"document {doc_id!r} is larger than {spec.max_document_bytes} bytes"
        )
    return PreparedDocument(doc_id, pk, json.loads(raw), raw)


def validate_patch(spec: ContainerSpec, patch: Any) -> None:
    """Check a patch on its own: top-level names, no id or partition key, declared types."""
    if not isinstance(patch, Patch):
        raise InvalidRequestError("patch must be a Patch")
    if not isinstance(patch.set, Mapping) or not isinstance(patch.remove, tuple):
        raise InvalidRequestError("patch.set must be a mapping and patch.remove a tuple")
    if not patch.set and not patch.remove:
        raise InvalidRequestError("patch changes nothing")
    names = list(patch.set) + list(patch.remove)
    if len(set(names)) != len(names):
        raise InvalidRequestError("patch names a field twice")
    for name in names:
        if not isinstance(name, str) or not name or "." in name or "/" in name:
            raise InvalidRequestError(f"patch field {name!r} must be a top-level name")
        if name in ("id", spec.partition_key):
            raise InvalidRequestError(f"patch may not change {name!r}")
        if name.startswith("_"):
            raise InvalidRequestError(f"patch field {name!r} may not start with '_'")
    dumps(dict(patch.set))
    # A declared field inside a value the patch sets must keep its declared type,
    # so that no provider needs to re-read the document to validate it.
    _check_declared(spec, {k: v for k, v in patch.set.items() if _declares(spec, k)})


def _declares(spec: ContainerSpec, name: str) -> bool:
    return any(path == name or path.startswith(name + ".") for path in spec.fields)


def apply_patch(spec: ContainerSpec, body: Mapping[str, Any], patch: Patch) -> PreparedDocument:
    """The document ``body`` becomes under ``patch``, validated and serialised."""
    new = dict(body)
    for name in patch.remove:
        new.pop(name, None)
    new.update(patch.set)
    return prepare(spec, new)
