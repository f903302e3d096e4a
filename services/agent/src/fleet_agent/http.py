"""The agent's HTTP: one JSON ``POST`` at a time, and its answer as an ``Answer``.

Two ways to send it, behind one small interface (``Poster``):

- ``connections.ConnectionPool``, the default: keep-alive connections of its own,
  answers parsed by httptools. A request costs its agent about a third of the
  CPU it did through aiohttp, and a tenth of httpx's (docs/benchmarks.md); an
  agent running one job at a time makes one request per job, so that is most of
  its CPU per job.
- ``HttpxPoster``, when the caller hands ``AgentClient`` an httpx transport: the
  tests run agents in process against the coordinator's ASGI app
  (``httpx.ASGITransport``) and inject faults at that level.

Transport failures (refused, reset, timed out) surface as the standard library's
``OSError``s or httpx's own exceptions; ``errors.translate_transport_errors`` turns
both kinds into ``CoordinatorUnavailable`` at the client's one boundary.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Protocol

from fleet_wire import Answer, encode

if TYPE_CHECKING:  # imported by HttpxPoster when used: an agent process never needs it
    import httpx

__all__ = ["Answer", "HttpxPoster", "Poster", "encode"]

_JSON = {"Content-Type": "application/json"}


class Poster(Protocol):
    """Sends one JSON ``POST`` to a path of the coordinator."""

    async def post(self, path: str, body: bytes, time_limit: float) -> Answer:
        """The answer to ``POST path`` with ``body``; the library's exception if none came."""
        ...

    async def aclose(self) -> None:
        """Close the connections."""
        ...


class HttpxPoster:
    """The same over an ``httpx.AsyncClient`` with the given transport (tests, ASGI)."""

    def __init__(
        self, base_url: str, headers: Mapping[str, str], transport: httpx.AsyncBaseTransport
    ) -> None:
        import httpx

        self._http = httpx.AsyncClient(
            base_url=base_url, transport=transport, headers={**headers, **_JSON}
        )

    async def post(self, path: str, body: bytes, time_limit: float) -> Answer:
        """One request through the transport."""
        response = await self._http.post(path, content=body, timeout=time_limit)
        return Answer(
            response.status_code, response.reason_phrase, response.headers, response.content
        )

    async def aclose(self) -> None:
        """Close the client."""
        await self._http.aclose()
