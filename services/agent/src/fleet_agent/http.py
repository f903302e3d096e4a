"""The agent's HTTP: one JSON ``POST`` at a time, and its answer as an ``Answer``.

Two ways to send it, behind one small interface (``Poster``):

- ``AiohttpPoster``, the default: aiohttp costs about a third of httpx's CPU per
  request (≈ 0.19 against ≈ 0.63 ms for a report on this project's 2-core machine,
  docs/benchmarks.md). An agent running one job at a time makes one request per
  job, so that is most of its CPU per job.
- ``HttpxPoster``, when the caller hands ``AgentClient`` an httpx transport: the
  tests run agents in process against the coordinator's ASGI app
  (``httpx.ASGITransport``) and inject faults at that level.

Transport failures (refused, reset, timed out) surface as the library's own
exceptions; ``errors.translate_transport_errors`` turns both kinds into
``CoordinatorUnavailable`` at the client's one boundary.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Protocol

import aiohttp
from fleet_wire import Answer, encode

if TYPE_CHECKING:  # imported by HttpxPoster when used: an agent process never needs it
    import httpx

__all__ = ["AiohttpPoster", "Answer", "HttpxPoster", "Poster", "encode"]

_JSON = {"Content-Type": "application/json"}


class Poster(Protocol):
    """Sends one JSON ``POST`` to a path of the coordinator."""

    async def post(self, path: str, body: bytes, time_limit: float) -> Answer:
        """The answer to ``POST path`` with ``body``; the library's exception if none came."""
        ...

    async def aclose(self) -> None:
        """Close the connections."""
        ...


class AiohttpPoster:
    """Keep-alive connections through one ``aiohttp.ClientSession``, made on first use.

    The session is made lazily because aiohttp binds it to the running event loop,
    and an ``AgentClient`` may be built before the loop runs.
    """

    def __init__(self, base_url: str, headers: Mapping[str, str]) -> None:
        self.base_url = base_url
        self.headers = {**headers, **_JSON}
        self._session: aiohttp.ClientSession | None = None

    def _open(self) -> aiohttp.ClientSession:
        if self._session is None:
            self._session = aiohttp.ClientSession(
                headers=self.headers,
                cookie_jar=aiohttp.DummyCookieJar(),  # the API sets no cookies
                auto_decompress=False,  # the coordinator does not compress
            )
        return self._session

    async def post(self, path: str, body: bytes, time_limit: float) -> Answer:
        """One request on a pooled connection; no redirects are followed."""
        session = self._open()
        async with session.post(
            self.base_url + path,
            data=body,
            allow_redirects=False,
            timeout=aiohttp.ClientTimeout(total=time_limit),
        ) as response:
            content = await response.read()
            return Answer(response.status, response.reason or "", response.headers, content)

    async def aclose(self) -> None:
        """Close the session, if one was made."""
        if self._session is not None:
            await self._session.close()
            self._session = None


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
