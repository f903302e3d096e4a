"""Reading the coordinator's answers: the SPEC error shape and transport failures."""

from __future__ import annotations

import json
import math
import sys
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any, Protocol

import orjson

__all__ = [
    "UNAVAILABLE_STATUSES",
    "Answer",
    "Answered",
    "ErrorAnswer",
    "all_finite",
    "encode",
    "error_answer",
    "transport_errors",
]

UNAVAILABLE_STATUSES = frozenset({429, 502, 503, 504})
"""Statuses that mean "not now", the request not applied: worth a retry after a pause.

503 is the store (or a proxy in front: 502, 504); 429 a per-agent limit of long-polls
waiting on one replica, or a replica's budget of store reads for agents it does not
know yet (someone is sending made-up tokens; a real agent is found by its next catch-up)."""


class Answered(Protocol):
    """What these functions read of an answer: ``httpx.Response`` or the agent's ``Answer``."""

    @property
    def status_code(self) -> int: ...

    @property
    def reason_phrase(self) -> str: ...

    @property
    def headers(self) -> Mapping[str, str]: ...

    def json(self) -> Any: ...


_OPTIONS = (
    orjson.OPT_NON_STR_KEYS | orjson.OPT_PASSTHROUGH_DATACLASS | orjson.OPT_PASSTHROUGH_DATETIME
)


def encode(body: Any) -> bytes:
    """``body`` as compact UTF-8 JSON bytes, as httpx's ``json=`` encodes it.

    NaN and ±∞ have no JSON form and raise ``ValueError``; so does a lone surrogate
    (``UnicodeEncodeError``), which no UTF-8 can hold.

    orjson: a report request of 10 completions costs 5.8 µs instead of 10.2 with
    ``json.dumps`` (1.7 instead of 9.1 without a ``null`` to look into). Where orjson
    differs, ``json.dumps`` encodes instead, so the errors are the standard library's:
    orjson writes NaN and ±∞ as ``null`` (so they are looked for, by ``all_finite``,
    only when the output holds a ``null``) and refuses integers beyond 64 bits.
    """
    try:
        # Dataclasses and datetimes go to json.dumps too, which refuses them as before.
        raw = orjson.dumps(body, option=_OPTIONS)
    except (TypeError, orjson.JSONEncodeError):
        raw = None
    if raw is None or (b"null" in raw and not all_finite(body)):
        return json.dumps(body, ensure_ascii=False, separators=(",", ":"), allow_nan=False).encode()
    return raw


def all_finite(value: Any) -> bool:
    """False when a float anywhere in ``value`` (mappings, lists, tuples) is NaN or ±∞."""
    stack = [value]
    while stack:
        node = stack.pop()
        kind = type(node)  # exact types first: isinstance against Mapping is slow
        if kind is str or kind is int or kind is bool or node is None:
            continue
        if kind is dict:
            stack.extend(node.values())
        elif kind is list or kind is tuple:
            stack.extend(node)
        elif isinstance(node, float):
            if not math.isfinite(node):
                return False
        elif isinstance(node, Mapping):
            stack.extend(node.values())
        elif isinstance(node, list | tuple):
            stack.extend(node)
    return True


@dataclass(frozen=True, slots=True)
class Answer:
    """An HTTP answer, whichever way it came (the agent's connections, ``http.client``, httpx)."""

    status_code: int
    reason_phrase: str
    headers: Mapping[str, str]
    """Looked up by lower-case names (``retry-after``): case-insensitive, or lower-cased."""
    content: bytes

    @property
    def is_success(self) -> bool:
        """A 2xx status."""
        return 200 <= self.status_code < 300

    def json(self) -> Any:
        """The body, decoded (``ValueError`` if it is not JSON)."""
        return orjson.loads(self.content)


@dataclass(frozen=True, slots=True)
class ErrorAnswer:
    """A refused request: ``{"error": {"code", "message", "details"}}`` and its status."""

    status: int
    code: str
    message: str
    details: dict[str, Any] = field(default_factory=dict)

    @property
    def text(self) -> str:
        """``"404 not_found: …"``, the message every exception of the clients carries."""
        return f"{self.status} {self.code}: {self.message}"


def error_answer(response: Answered) -> ErrorAnswer:
    """The error of a non-2xx answer; a body not in the SPEC shape becomes ``http_error``."""
    try:
        error = response.json()["error"]
        code, message = str(error["code"]), str(error["message"])
        details = dict(error.get("details") or {})
    except (ValueError, KeyError, TypeError):
        code, message, details = "http_error", response.reason_phrase or "unexpected answer", {}
    return ErrorAnswer(response.status_code, code, message, details)


def _loaded_transport_errors() -> tuple[type[Exception], ...]:
    """``ConnectionError``, and httpx's ``TransportError`` if httpx is loaded.

    Looked up, not imported: an agent sends over its own connections and need not
    load httpx (≈ 0.1 s of CPU at every start); a ``FleetClient`` sends over httpx, a
    ``SyncFleetClient`` over ``http.client`` (which raises ``ConnectionError``).
    """
    httpx = sys.modules.get("httpx")
    return (ConnectionError,) if httpx is None else (ConnectionError, httpx.TransportError)


def _is_local_protocol_error(exc: Exception) -> bool:
    httpx = sys.modules.get("httpx")
    return httpx is not None and isinstance(exc, httpx.LocalProtocolError)


@contextmanager
def transport_errors(url: str, unavailable: Callable[[str], Exception]) -> Iterator[None]:
    """Turn transport errors (refused, reset, timed out) into ``unavailable(message)``."""
    try:
        yield
    except _loaded_transport_errors() as exc:
        reason = str(exc) or type(exc).__name__
        if _is_local_protocol_error(exc):
            # h11 names the offending header with its value ("Illegal header value
            # b'Bearer …'"): that value may be a token, and no message may show one.
            reason = f"the request could not be written ({type(exc).__name__})"
        raise unavailable(f"cannot reach the coordinator at {url}: {reason}") from exc
