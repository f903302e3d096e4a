"""Reading the coordinator's answers: the SPEC error shape and transport failures."""

from __future__ import annotations

import json
import sys
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any, Protocol

__all__ = [
    "UNAVAILABLE_STATUSES",
    "Answer",
    "Answered",
    "ErrorAnswer",
    "encode",
    "error_answer",
    "transport_errors",
]

UNAVAILABLE_STATUSES = frozenset({429, 502, 503, 504})
"""Statuses that mean "not now", the request not applied: worth a retry after a pause.

503 is the store (or a proxy in front: 502, 504); 429 a per-agent limit of long-polls
waiting on one replica."""


class Answered(Protocol):
    """What these functions read of an answer: ``httpx.Response`` or the agent's ``Answer``."""

    @property
    def status_code(self) -> int: ...

    @property
    def reason_phrase(self) -> str: ...

    @property
    def headers(self) -> Mapping[str, str]: ...

    def json(self) -> Any: ...


def encode(body: Any) -> bytes:
    """``body`` as JSON bytes, exactly as httpx's ``json=`` encodes it (NaN and ∞ refused)."""
    return json.dumps(body, ensure_ascii=False, separators=(",", ":"), allow_nan=False).encode()


@dataclass(frozen=True, slots=True)
class Answer:
    """An HTTP answer, whichever library fetched it (aiohttp, urllib3, httpx)."""

    status_code: int
    reason_phrase: str
    headers: Mapping[str, str]
    """Case-insensitive lookup (``Retry-After``)."""
    content: bytes

    @property
    def is_success(self) -> bool:
        """A 2xx status."""
        return 200 <= self.status_code < 300

    def json(self) -> Any:
        """The body, decoded."""
        return json.loads(self.content)


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
    """The transport errors of the HTTP libraries this process has loaded.

    Looked up, not imported: an agent sends over aiohttp and need not load httpx
    (≈ 0.1 s of CPU at every start), a ``SyncFleetClient`` sends over urllib3 and
    a ``FleetClient`` over httpx; what is not loaded cannot have raised.
    """
    errors: list[type[Exception]] = []
    httpx = sys.modules.get("httpx")
    if httpx is not None:
        errors.append(httpx.TransportError)
    urllib3 = sys.modules.get("urllib3.exceptions")
    if urllib3 is not None:
        errors.append(urllib3.HTTPError)  # refused, reset, timed out (retries=False)
    return tuple(errors)


@contextmanager
def transport_errors(url: str, unavailable: Callable[[str], Exception]) -> Iterator[None]:
    """Turn httpx's or urllib3's transport errors (refused, reset, timeout) into ``unavailable``."""
    try:
        yield
    except _loaded_transport_errors() as exc:
        reason = str(exc) or type(exc).__name__
        raise unavailable(f"cannot reach the coordinator at {url}: {reason}") from exc
