"""Validation and preparation of document bodies and patches, shared by every provider.

Everything here runs before a provider is called, so a rejected request has
written nothing, on any provider.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping
from typing import Any, NamedTuple

import orjson

from .errors import DocumentTooLargeError, InvalidRequestError
from .model import ContainerSpec, FieldType, Patch

__all__ = [
    "PreparedDocument",
    "apply_patch",
    "check_id",
    "check_partition_key",
    "dumps",
    "get_path",
    "loads",
    "prepare",
    "validate_patch",
]

MAX_ID_LENGTH = 255
_BAD_ID = re.compile(r"[/\\?#\x00-\x1f]")
MAX_SAFE_INT = 2**53 - 1  # Cosmos stores numbers as IEEE doubles


class PreparedDocument(NamedTuple):
    """A validated body with its id, partition key and compact JSON text."""

    id: str
    partition_key: str
    body: dict[str, Any]
    raw: str
    size: int  # bytes of ``raw`` as UTF-8
    owned: bool = True
    """``body`` is the store's own, ``raw`` read back. False (``prepare(..., owned=False)``,
    for a write whose answer is dropped): a shallow copy of the caller's body, its
    top-level values (every declared field's, none of them nested) taken when it was
    prepared, its objects and arrays the caller's; a provider that keeps the body or
    hands it on asks ``own_body()``."""

    def own_body(self) -> dict[str, Any]:
        """``body`` as the store's own: itself if owned, else ``raw`` read back."""
        return self.body if self.owned else orjson.loads(self.raw)


def _encode(value: Any) -> bytes:
    try:
        raw = orjson.dumps(value, option=orjson.OPT_STRICT_INTEGER)
    except (TypeError, orjson.JSONEncodeError) as exc:
        raise InvalidRequestError(f"document is not JSON-serialisable: {exc}") from exc
    # orjson writes NaN and infinities as null; only then look for a float that is one.
    # Every None writes one "null" too: when the top-level ones account for them all
    # (a job's enqueue), no other null, hence no NaN, can be anywhere in the document.
    if b"null" in raw and not _nulls_are_nones(raw, value) and not _all_finite(value):
        raise InvalidRequestError("document is not JSON-serialisable: numbers must be finite")
    return raw


def _nulls_are_nones(raw: bytes, value: Any) -> bool:
    """Whether each ``null`` in ``raw`` is a None value at the top of ``value`` (a dict).

    A None deeper down, a NaN or the text ``null`` inside a string each adds one more,
    so equal counts leave room for none of them; unequal ones prove nothing either way.
    """
    if type(value) is not dict:
        return False
    nones = sum(1 for item in value.values() if item is None)
    return raw.count(b"null") == nones


def _all_finite(value: Any) -> bool:
    """False when a float anywhere in ``value`` is NaN or infinite (orjson wrote null)."""
    isfinite = math.isfinite
    stack = [value]
    while stack:
        node = stack.pop()
        kind = type(node)
        if kind is dict or isinstance(node, Mapping):
            children = node.values()
        elif kind is list or kind is tuple or isinstance(node, list | tuple):
            children = node
        elif isinstance(node, float):
            if not isfinite(node):
                return False
            continue
        else:
            continue
        for child in children:
            kind = type(child)
            if kind is str or kind is int or kind is bool or child is None:
                continue
            if kind is float:
                if not isfinite(child):
                    return False
            else:
                stack.append(child)
    return True


def dumps(body: Mapping[str, Any]) -> str:
    """Compact JSON text of a body; raises InvalidRequestError if it is not strict JSON.

    Strict means: string keys, finite numbers, integers within ±(2**53 - 1) (Cosmos
    stores numbers as doubles), and only JSON types (dict, list, str, int, float,
    bool, None).
    """
    return _encode(dict(body)).decode()


def loads(raw: str | bytes) -> Any:
    """Parse JSON text produced by ``dumps`` into fresh objects."""
    return orjson.loads(raw)


def check_id(doc_id: Any) -> str:
    """Return ``doc_id`` if Cosmos DB would accept it as an id, else raise."""
    # Letters and digits only (a job's id: 32 hex digits), accepted in one call: no such
    # character is a control character, a space or one of the four refused below.
    if type(doc_id) is str and len(doc_id) <= MAX_ID_LENGTH and doc_id.isalnum():
        return doc_id
    if not isinstance(doc_id, str) or not doc_id:
        raise InvalidRequestError("id must be a non-empty string")
    if len(doc_id) > MAX_ID_LENGTH:
        raise InvalidRequestError(f"id is longer than {MAX_ID_LENGTH} characters")
    bad = _BAD_ID.search(doc_id)
    if bad is not None:
        if bad.group() in "/\\?#":
            raise InvalidRequestError("id may not contain '/', '\\', '?' or '#'")
        raise InvalidRequestError("id may not contain control characters")
    if doc_id != doc_id.strip():
        raise InvalidRequestError("id may not have surrounding spaces")
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
    for name, kind in spec.top_fields.items():
        if name in body:
            value = body[name]
            # A string or a float declared as such, the common case, without a call:
            # a job's create checks nine fields and each of its writes a few.
            kind_of = type(value)
            if (kind_of is str and kind == "str") or (kind_of is float and kind == "float"):
                continue
            if not _type_ok(kind, value):
                raise _wrong_type(name, kind, value)
    for path, kind in spec.nested_fields.items():
        if _has_path(body, path):
            value = get_path(body, path)
            if not _type_ok(kind, value):
                raise _wrong_type(path, kind, value)


def _wrong_type(path: str, kind: FieldType, value: Any) -> InvalidRequestError:
    held = type(value).__name__
    return InvalidRequestError(f"field {path!r} is declared {kind} but holds {held}")


def _check_keys(body: Mapping[str, Any]) -> None:
    # One join instead of a check per key (a job has 26; every create pays it): the
    # join refuses a key that is not a string, and a '_' can only start a key at the
    # start or after a separator. A key holding "\n_" itself only sends it to the loop.
    try:
        joined = "\n".join(body)
    except TypeError:
        raise InvalidRequestError("document keys must be strings") from None
    if joined.startswith("_") or "\n_" in joined:
        for key in body:
            if key.startswith("_"):
                # Cosmos reserves _rid, _self, _etag, _ts, _attachments; one rule for all.
                raise InvalidRequestError(f"top-level field {key!r} may not start with '_'")


def prepare(spec: ContainerSpec, body: Any, owned: bool = True) -> PreparedDocument:
    """Validate a whole document body and serialise it; raises before anything is written.

    ``owned=False`` (a write whose answer is dropped) skips reading the JSON back for
    a spec without nested declared fields: see ``PreparedDocument.owned``.
    """
    if type(body) is not dict:
        # Any other mapping is checked and encoded as a plain copy; a dict, what every
        # caller passes, needs no copy to encode (nor the ABC's isinstance check).
        if not isinstance(body, Mapping):
            raise InvalidRequestError("a document must be a JSON object")
        body = dict(body)
    doc_id = check_id(body.get("id"))
    pk = check_partition_key(body.get(spec.partition_key))
    _check_keys(body)
    _check_declared(spec, body)
    raw = _encode(body)
    if len(raw) > spec.max_document_bytes:
        raise DocumentTooLargeError(
            f"document {doc_id!r} is larger than {spec.max_document_bytes} bytes"
        )
    if owned or spec.nested_fields:
        return PreparedDocument(doc_id, pk, orjson.loads(raw), raw.decode(), len(raw))
    # Reading the JSON back was ~14k instructions of a batch-enqueued job's ~300k.
    return PreparedDocument(doc_id, pk, body.copy(), raw.decode(), len(raw), False)


def _plain_scalar(value: Any) -> bool:
    """True for a JSON scalar that needs no serialisation to validate (the common case)."""
    kind = type(value)
    if kind is str or kind is bool or value is None:
        return True
    if kind is int:
        if not -MAX_SAFE_INT <= value <= MAX_SAFE_INT:
            raise InvalidRequestError("integers must be within ±(2**53 - 1)")
        return True
    if kind is float:
        if value != value or value in (math.inf, -math.inf):
            raise InvalidRequestError("numbers must be finite")
        return True
    return False


def _check_patch_name(spec: ContainerSpec, name: Any) -> None:
    if not isinstance(name, str) or not name or "." in name or "/" in name:
        raise InvalidRequestError(f"patch field {name!r} must be a top-level name")
    if name == "id" or name == spec.partition_key:
        raise InvalidRequestError(f"patch may not change {name!r}")
    if name[0] == "_":
        raise InvalidRequestError(f"patch field {name!r} may not start with '_'")


def validate_patch(spec: ContainerSpec, patch: Any) -> Patch:
    """Check a patch on its own: top-level names, no id or partition key, declared types.

    Returns the patch the store applies: its values are the store's own (an object
    or array set is a copy, as read back from its JSON), so a caller that changes
    its own values later changes nothing stored. ``apply_patch`` takes only these.
    """
    if not isinstance(patch, Patch):
        raise InvalidRequestError("patch must be a Patch")
    sets, removes = patch.set, patch.remove
    # A dict, as nearly every patch holds, without the ABC's isinstance check.
    if (type(sets) is not dict and not isinstance(sets, Mapping)) or not isinstance(removes, tuple):
        raise InvalidRequestError("patch.set must be a mapping and patch.remove a tuple")
    if not sets and not removes:
        raise InvalidRequestError("patch changes nothing")
    nested = False
    pk, isfinite = spec.partition_key, math.isfinite
    for name, value in sets.items():
        # The usual name and value are passed inline, a call less each (a C=1 job's
        # three patches set 15 fields); anything else takes the checks that say
        # what is wrong with it, or that it is nested.
        if (
            type(name) is not str
            or not name
            or name[0] == "_"
            or "." in name
            or "/" in name
            or name == "id"
            or name == pk
        ):
            _check_patch_name(spec, name)
        kind = type(value)
        if (
            kind is str
            or value is None
            or kind is bool
            or (kind is float and isfinite(value))
            or (kind is int and -MAX_SAFE_INT <= value <= MAX_SAFE_INT)
        ):
            continue
        nested = nested or not _plain_scalar(value)
    for name in removes:
        _check_patch_name(spec, name)
        if name in sets:
            raise InvalidRequestError(f"patch both sets and removes {name!r}")
    if len(set(removes)) != len(removes):
        raise InvalidRequestError("patch removes a field twice")
    owned: dict[str, Any] = dict(sets)
    if nested:
        # One serialisation checks every value, and read back gives the copies: a
        # dumps and a loads per object or array set was ~3 % of a claimed job.
        owned = orjson.loads(_encode(owned))
    # A declared field inside a value the patch sets must keep its declared type,
    # so that no provider needs to re-read the document to validate it.
    if not spec.declared_roots.isdisjoint(owned):
        _check_declared(spec, owned)
    return Patch(set=owned, remove=removes)


def apply_patch(spec: ContainerSpec, body: Mapping[str, Any], patch: Patch) -> PreparedDocument:
    """The document a stored ``body`` becomes under ``patch``, serialised.

    ``patch`` is one ``validate_patch`` returned (its values are the store's own);
    the stored body was validated when written, so only the size of the result is
    left to check. The result shares nested values with ``body`` and ``patch``:
    stores never mutate a stored body in place.
    """
    new = dict(body)
    for name in patch.remove:
        new.pop(name, None)
    new.update(patch.set)
    try:
        raw = orjson.dumps(new, option=orjson.OPT_STRICT_INTEGER)
    except (TypeError, orjson.JSONEncodeError) as exc:
        raise InvalidRequestError(f"document is not JSON-serialisable: {exc}") from exc
    doc_id, pk = new["id"], new[spec.partition_key]
    if len(raw) > spec.max_document_bytes:
        raise DocumentTooLargeError(
            f"document {doc_id!r} is larger than {spec.max_document_bytes} bytes"
        )
    return PreparedDocument(doc_id, pk, new, raw.decode(), len(raw))
