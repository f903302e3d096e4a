"""The agent's own HTTP connections (``fleet_agent.connections``), against raw sockets.

A server written with ``asyncio.start_server`` answers with bytes chosen per test,
so each case controls what a general HTTP server would hide: when connections
close, chunked bodies, late answers, answers that are not HTTP at all.
"""

from __future__ import annotations

import asyncio
import ssl
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from fleet_agent import connections
from fleet_agent.connections import ConnectionPool

Reply = Callable[[bytes], bytes | None]
"""The request's bytes → the answer's bytes, or None to close the connection unanswered."""


def _answer(body: bytes, *extra: str, status: str = "200 OK") -> bytes:
    head = [f"HTTP/1.1 {status}", f"Content-Length: {len(body)}", *extra]
    return ("\r\n".join(head) + "\r\n\r\n").encode() + body


@dataclass
class Raw:
    """A server on 127.0.0.1 answering request after request with ``reply``."""

    reply: Reply = lambda request: _answer(b"{}")
    hold: asyncio.Event | None = None
    """When set: every answer waits for it (set by the test, or at ``release_at`` requests)."""
    release_at: int = 0
    connections: int = 0
    requests: list[bytes] = field(default_factory=list)
    port: int = 0

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"


async def _read_request(reader: asyncio.StreamReader) -> bytes:
    head = await reader.readuntil(b"\r\n\r\n")
    length = next(
        int(line.split(b":", 1)[1])
        for line in head.split(b"\r\n")
        if line.lower().startswith(b"content-length:")
    )
    return head + await reader.readexactly(length)


@asynccontextmanager
async def _served(state: Raw, tls: ssl.SSLContext | None = None) -> AsyncIterator[Raw]:
    """``state``'s server on 127.0.0.1 (over TLS with ``tls``) while the block runs."""

    async def serve(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        state.connections += 1
        try:
            while True:
                try:
                    request = await _read_request(reader)
                except (asyncio.IncompleteReadError, ConnectionError):
                    return
                state.requests.append(request)
                if state.hold is not None:
                    if len(state.requests) == state.release_at:
                        state.hold.set()
                    await state.hold.wait()
                answer = state.reply(request)
                if answer is None:
                    return
                writer.write(answer)
                await writer.drain()
        finally:
            writer.close()

    server = await asyncio.start_server(serve, "127.0.0.1", 0, ssl=tls)
    state.port = server.sockets[0].getsockname()[1]
    try:
        yield state
    finally:
        server.close()
        await server.wait_closed()


@pytest.fixture
async def raw() -> AsyncIterator[Raw]:
    async with _served(Raw()) as state:
        yield state


def _echo(request: bytes) -> bytes:
    """An answer whose body is the request's."""
    return _answer(request.rpartition(b"\r\n\r\n")[2])


def _pool(url: str) -> ConnectionPool:
    return ConnectionPool(url, {"Authorization": "Bearer fa.token"})


async def test_the_request_and_its_answer(raw: Raw) -> None:
    """Target under the URL's path, Host, headers and body; status, reason, headers, body."""
    raw.reply = lambda request: _answer(
        b'{"ok":1}', "Retry-After: 3", status="503 Service Unavailable"
    )
    pool = ConnectionPool(f"{raw.url}/fleet/", {"Authorization": "Bearer fa.token"})
    answer = await pool.post("/v1/claims", b'{"max_jobs":1}', 5)
    await pool.aclose()
    assert (answer.status_code, answer.reason_phrase) == (503, "Service Unavailable")
    assert answer.headers["retry-after"] == "3"
    assert answer.json() == {"ok": 1}
    [request] = raw.requests
    head, _, body = request.partition(b"\r\n\r\n")
    lines = head.decode().split("\r\n")
    assert lines[0] == "POST /fleet/v1/claims HTTP/1.1"
    assert {f"Host: 127.0.0.1:{raw.port}", "Authorization: Bearer fa.token"} <= set(lines)
    assert {"Content-Type: application/json", "Content-Length: 14"} <= set(lines)
    assert body == b'{"max_jobs":1}'


async def test_a_path_with_spaces_or_line_breaks_is_quoted(raw: Raw) -> None:
    """A job id is the caller's string: it never ends the request line or adds a header."""
    pool = _pool(raw.url)
    await pool.post("/v1/jobs/a b\r\nX-Injected: 1/é", b"{}", 5)
    await pool.aclose()
    [request] = raw.requests
    lines = request.partition(b"\r\n\r\n")[0].split(b"\r\n")
    assert lines[0] == b"POST /v1/jobs/a%20b%0D%0AX-Injected:%201/%C3%A9 HTTP/1.1"
    assert not any(line.lower().startswith(b"x-injected") for line in lines)


async def test_one_connection_serves_request_after_request(raw: Raw) -> None:
    pool = _pool(raw.url)
    for _ in range(5):
        assert (await pool.post("/v1/reports", b"{}", 5)).status_code == 200
    await pool.aclose()
    assert raw.connections == 1


async def test_requests_at_once_get_their_own_connections_and_answers(raw: Raw) -> None:
    """Each answer goes to its own request, never to another one in flight."""
    raw.hold, raw.release_at = asyncio.Event(), 6  # no answer until all six are in flight
    raw.reply = _echo
    pool = _pool(raw.url)
    answers = await asyncio.gather(*(pool.post("/x", b"%d" % i, 5) for i in range(6)))
    await pool.aclose()
    assert [a.content for a in answers] == [b"%d" % i for i in range(6)]
    assert raw.connections == 6


async def test_a_connection_the_server_closes_is_not_reused(raw: Raw) -> None:
    raw.reply = lambda request: _answer(b"{}", "Connection: close")
    pool = _pool(raw.url)
    for _ in range(3):
        assert (await pool.post("/x", b"{}", 5)).content == b"{}"
    await pool.aclose()
    assert raw.connections == 3


async def test_an_idle_connection_past_its_time_is_not_reused(
    raw: Raw, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A server closes idle connections (uvicorn after 5 s): the pool gives them up first."""
    monkeypatch.setattr(connections, "IDLE_SECONDS", 0.0)
    pool = _pool(raw.url)
    for _ in range(3):
        await pool.post("/x", b"{}", 5)
    await pool.aclose()
    assert raw.connections == 3


async def test_a_chunked_answer_is_joined() -> None:
    async def serve(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await _read_request(reader)
        writer.write(
            b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n"
            b'3\r\n{"a\r\n5\r\n":12}\r\n0\r\n\r\n'
        )
        await writer.drain()
        writer.close()

    server = await asyncio.start_server(serve, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    async with server:
        pool = _pool(f"http://127.0.0.1:{port}")
        answer = await pool.post("/x", b"{}", 5)
        await pool.aclose()
    assert answer.json() == {"a": 12}


async def test_a_late_answer_is_never_read_as_the_next_one(raw: Raw) -> None:
    """A request that timed out gives up its connection: its answer cannot reach another."""
    raw.reply = _echo
    raw.hold = asyncio.Event()  # the first answer waits until its request has timed out
    pool = _pool(raw.url)
    with pytest.raises(TimeoutError):
        await pool.post("/x", b'"late"', 0.05)
    raw.hold.set()
    answer = await pool.post("/x", b'"next"', 5)
    await pool.aclose()
    assert answer.json() == "next"
    assert raw.connections == 2


async def test_a_connection_closed_unanswered_is_a_connection_error(raw: Raw) -> None:
    raw.reply = lambda request: None
    pool = _pool(raw.url)
    with pytest.raises(ConnectionError):
        await pool.post("/x", b"{}", 5)
    await pool.aclose()


async def test_an_answer_that_is_not_http_is_a_connection_error(raw: Raw) -> None:
    raw.reply = lambda request: b"SSH-2.0-OpenSSH_9.2\r\n"
    pool = _pool(raw.url)
    with pytest.raises(ConnectionError, match="not HTTP"):
        await pool.post("/x", b"{}", 5)
    await pool.aclose()


async def test_a_refused_connection_is_an_os_error() -> None:
    server = await asyncio.start_server(lambda r, w: None, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    server.close()
    await server.wait_closed()
    with pytest.raises(ConnectionRefusedError):
        await _pool(f"http://127.0.0.1:{port}").post("/x", b"{}", 5)


@pytest.mark.parametrize(
    ("url", "headers", "error"),
    [
        ("ftp://h", {}, "not an http"),
        ("http://", {}, "not an http"),
        ("http://h", {"Authorization": "Bearer a\r\nX-Injected: 1"}, "line break"),
    ],
)
def test_a_bad_url_or_a_header_with_a_line_break_is_refused(
    url: str, headers: dict[str, str], error: str
) -> None:
    with pytest.raises(ValueError, match=error):
        ConnectionPool(url, headers)


async def test_https_is_verified_and_kept_alive(monkeypatch: pytest.MonkeyPatch) -> None:
    """TLS with the default context: a certificate for the host is accepted and its
    connection reused; the same certificate for another name is refused."""
    tls = Path(__file__).parent / "tls"  # a self-signed certificate for localhost, tests only
    monkeypatch.setenv("SSL_CERT_FILE", str(tls / "localhost-cert.pem"))  # trusted, for once
    served = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    served.load_cert_chain(tls / "localhost-cert.pem", tls / "localhost-key.pem")
    async with _served(Raw(reply=_echo), served) as raw:
        pool = _pool(f"https://localhost:{raw.port}")
        answers = [await pool.post("/x", b'"%d"' % i, 5) for i in range(3)]
        await pool.aclose()
        with pytest.raises(ssl.SSLCertVerificationError):
            await _pool(f"https://127.0.0.1:{raw.port}").post("/x", b"{}", 5)
    assert [a.json() for a in answers] == ["0", "1", "2"]
    assert raw.connections == 1  # the refused handshake never reached the handler
