"""Refuse request bodies that hold text which is not valid Unicode, before any route sees them.

JSON lets a body carry two kinds of text no store can keep: bytes that are not
UTF-8 (``json.loads`` even decodes UTF-8-encoded surrogates, ``\\xed\\xa0\\x80``, with
``surrogatepass``), and ``\\ud800``-style escapes of a lone surrogate, which Python
decodes into a ``str`` that cannot be encoded again. Either would reach the store
(SQLite fails to encode it, the memory store keeps it and every later answer fails),
so the guard checks every JSON body once, here, for every route:

- the bytes must be UTF-8 (RFC 8259), else 400 ``bad_request``;
- if the text holds an escape of a surrogate (``\\uD800``-``\\uDFFF``; a cheap byte
  search, so ordinary bodies pay one scan), it is parsed and every string and key is
  checked, a repeated key's every value too (the route keeps only the last one):
  a surrogate that no pair absorbed is 422 ``validation_error`` with the location
  of the string, in FastAPI's error layout.

A body that is not JSON at all is left to the route, whose answer (400) is the one
clients already get.

The path and the query string are text too: their raw bytes are ASCII (httptools
refuses others), but a percent-escape may stand for a byte that is not UTF-8
(``%ff``, or ``%ed%a0%80``, a surrogate), which Starlette would decode as U+FFFD and
a route would then look up, list by or echo. ``escapes_problem`` refuses those with
400 before the route runs.
"""

from __future__ import annotations

import codecs
import json
import re
import urllib.parse
from typing import Any

__all__ = ["UnicodeProblem", "escapes_problem", "unicode_problem"]

_SURROGATE_ESCAPE = re.compile(rb"\\u[dD][89a-fA-F]")
_SLICE = 1 << 20
_JSON_TYPES = (b"application/json", b"")


class UnicodeProblem:
    """Why a body was refused: the HTTP status, code, message and details to answer."""

    __slots__ = ("code", "details", "message", "status")

    def __init__(self, status: int, code: str, message: str, details: dict[str, Any]) -> None:
        self.status = status
        self.code = code
        self.message = message
        self.details = details


def _is_json(content_type: bytes | None) -> bool:
    # FastAPI parses a body without a content type as JSON; so do we (and +json types).
    if content_type is None:
        return True
    media = content_type.split(b";")[0].strip().lower()
    return media in _JSON_TYPES or media.endswith(b"+json")


def escapes_problem(raw_path: bytes, query: bytes) -> UnicodeProblem | None:
    """Why the path's or the query's percent-escapes are not UTF-8, or None when they are."""
    for part, raw in (("path", raw_path), ("query string", query)):
        if b"%" in raw:
            try:
                urllib.parse.unquote_to_bytes(raw).decode("utf-8")
            except UnicodeDecodeError:
                message = f"the {part} is not UTF-8 once its percent-escapes are decoded"
                return UnicodeProblem(400, "bad_request", message, {})
    return None


def unicode_problem(body: bytes, content_type: bytes | None) -> UnicodeProblem | None:
    """Why ``body`` holds invalid Unicode, or None when it is fine (or not JSON)."""
    if not body or not _is_json(content_type):
        return None
    # json.detect_encoding's answer without its call: a first byte ASCII but not NUL
    # (no byte order mark starts so) and a second byte not NUL can only be UTF-8.
    if not (0 < body[0] < 0x80 and body[1:2] != b"\0") and json.detect_encoding(body) not in (
        "utf-8",
        "utf-8-sig",
    ):
        # json.loads would decode UTF-16/32 too (surrogatepass); RFC 8259 says UTF-8.
        return UnicodeProblem(400, "bad_request", "a JSON body must be UTF-8", {})
    position = _utf8_error(body)
    if position is not None:
        return UnicodeProblem(
            400, "bad_request", "the body is not valid UTF-8", {"position": position}
        )
    if _SURROGATE_ESCAPE.search(body) is None:
        return None
    try:
        # Each object as its (key, value) pairs: a dict keeps only a repeated key's last
        # value, and the route's parse drops the others, but they were sent all the same.
        value = json.loads(body, object_pairs_hook=tuple)
    except (ValueError, RecursionError):
        return None  # not JSON: the route answers 400 as for any malformed body
    loc = _lone_surrogate(value)
    if loc is None:
        return None  # every escape was half of a pair (or an escaped backslash)
    error = {
        "loc": ["body", *loc],
        "msg": "string is not valid Unicode (a lone surrogate)",
        "type": "string_unicode",
    }
    return UnicodeProblem(422, "validation_error", "the request is invalid", {"errors": [error]})


def _utf8_error(body: bytes) -> int | None:
    """Where ``body`` stops being UTF-8, else None; checked in slices, never decoded whole."""
    if body.isascii():
        return None
    decoder = codecs.getincrementaldecoder("utf-8")()
    view = memoryview(body)
    for start in range(0, len(body), _SLICE):
        pending = len(decoder.getstate()[0])  # bytes of a character split by the last slice
        try:
            decoder.decode(view[start : start + _SLICE], final=start + _SLICE >= len(body))
        except UnicodeDecodeError as exc:
            return start - pending + exc.start
    return None


def _valid(text: str) -> bool:
    if text.isascii():
        return True
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def _lone_surrogate(value: Any) -> list[str] | None:
    """The location of the first string or key holding a lone surrogate, else None.

    Iterative, so no nesting can exhaust the interpreter's stack.
    """
    stack: list[tuple[Any, list[str]]] = [(value, [])]
    while stack:
        item, loc = stack.pop()
        if isinstance(item, str):
            if not _valid(item):
                return loc
        elif isinstance(item, tuple):  # an object's pairs (JSON arrays are lists)
            for key, child in item:
                if not _valid(key):
                    return [*loc, key.encode("utf-8", "backslashreplace").decode()]
                stack.append((child, [*loc, key]))
        elif isinstance(item, list):
            stack.extend((child, [*loc, str(index)]) for index, child in enumerate(item))
    return None
