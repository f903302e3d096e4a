"""Bodies Python's JSON parser reads differently from JSON: NaN and infinities, huge integers.

FastAPI parses a body with ``json.loads``, which takes three literals RFC 8259 does
not have (``NaN``, ``Infinity``, ``-Infinity``) and refuses integers of more than
4,300 digits (a guard against slow conversions). The first made a body that is not
JSON a 422 about its value ("payload holds a non-finite number"; ``lease_seconds:
NaN`` even "should be less than or equal to 86400"), where SPEC answers a malformed
body with 400; the second was a 400 that did not say where the integer was.

- ``constant_problem``: a body holding one of the three literals as a value, not
  inside a string, is 400 ``bad_request`` with its location in FastAPI's error
  layout. Only bodies FastAPI is about to parse are searched, right in front of it
  (``middleware.RefuseJsonConstants``): those the hot path serves were parsed by
  orjson, which refuses the literals (and its ``json.loads`` fallback is told to),
  so they cost nothing more. A body without the bytes ``NaN`` or ``Infinity`` costs
  two byte searches (~1 µs for a small body); one with them, a parse.
- ``long_integer_at``: where such an integer is, for the 400 FastAPI's parser
  causes (``api/errors.py``), computed only for that answer.
"""

from __future__ import annotations

import json
from typing import Any

__all__ = [
    "LONG_DIGITS",
    "NOT_JSON_VALUES",
    "constant_problem",
    "long_integer_at",
    "refuse_constant",
]

LONG_DIGITS = 4300
"""Python's default limit on the digits of an integer it converts from text."""
NOT_JSON_VALUES = "the body is not valid JSON (NaN and infinities are not JSON values)"


class _Marked:
    """A value the parser met where the body's check looks for it (its text kept)."""

    __slots__ = ("text",)

    def __init__(self, text: str) -> None:
        self.text = text


def refuse_constant(name: str) -> Any:
    """A ``parse_constant`` for ``json.loads`` that refuses NaN and the infinities."""
    raise ValueError(f"{name} is not a JSON value")


def _marked_at(value: Any) -> tuple[list[str], str] | None:
    """The location and text of the first ``_Marked`` in ``value``, else None (iterative)."""
    stack: list[tuple[Any, list[str]]] = [(value, [])]
    while stack:
        item, loc = stack.pop()
        if isinstance(item, _Marked):
            return loc, item.text
        if isinstance(item, tuple):  # an object's pairs (JSON arrays are lists)
            stack.extend((child, [*loc, key]) for key, child in reversed(item))
        elif isinstance(item, list):
            stack.extend((child, [*loc, str(i)]) for i, child in reversed(list(enumerate(item))))
    return None


def _is_json(content_type: bytes | None) -> bool:
    # As FastAPI decides: no content type at all, or application/json or any +json.
    if content_type is None:
        return True
    media = content_type.split(b";")[0].strip().lower()
    return media in (b"application/json", b"") or media.endswith(b"+json")


def constant_problem(body: bytes, content_type: bytes | None) -> dict[str, Any] | None:
    """The error details for a JSON ``body`` holding NaN, Infinity or -Infinity, else None."""
    if b"NaN" not in body and b"Infinity" not in body:
        return None  # nearly every body: two searches in C
    if not _is_json(content_type):
        return None
    try:
        # Each object as its pairs, as ``unicode.py`` reads them: a repeated key's
        # earlier values were sent too.
        value = json.loads(body, parse_constant=_Marked, object_pairs_hook=tuple)
    except (ValueError, RecursionError):
        return None  # not JSON at all (or not readable): the route answers it
    found = _marked_at(value)
    if found is None:
        return None  # the bytes were inside strings
    loc, name = found
    error = {"loc": ["body", *loc], "msg": f"{name} is not a JSON value", "type": "json_invalid"}
    return {"errors": [error]}


def _int_or_marked(text: str) -> Any:
    digits = len(text) - text.startswith("-")
    return _Marked(text) if digits > LONG_DIGITS else int(text)


def long_integer_at(body: bytes) -> dict[str, Any]:
    """The error details for a body whose integer has over ``LONG_DIGITS`` digits.

    ``{"errors": [{"loc": ["body", ...], "msg", "type"}]}``, FastAPI's layout; empty if
    the body holds none after all (then something else made the parser refuse it).
    """
    try:
        value = json.loads(body, parse_int=_int_or_marked, object_pairs_hook=tuple)
    except (ValueError, RecursionError):
        return {}
    found = _marked_at(value)
    if found is None:
        return {}
    loc, text = found
    digits = len(text) - text.startswith("-")
    msg = f"an integer of {digits} digits: integers must be within ±(2**53-1)"
    return {"errors": [{"loc": ["body", *loc], "msg": msg, "type": "int_too_long"}]}
