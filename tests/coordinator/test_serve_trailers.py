"""Trailer fields (after a chunked body) against a real ``fleet-coordinator serve``.

httptools reports trailers through the header callback, and uvicorn appended them to
the request's headers with no bound: a client with no token grew a replica by
hundreds of MB with one ``GET /healthz`` and endless trailers, and a token sent as a
trailer, after the body, authenticated its request. Trailers are now counted against
the header cap (431 past it) and never become headers.
"""

from __future__ import annotations

import socket
import time
from collections.abc import Iterator

import httpx
import pytest
from fleet_coordinator.protocol import MAX_HEADER_BYTES

from tests.support.served import Served

TRAILER = b"x-filler: " + b"a" * 1000 + b"\r\n"


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Served]:
    with Served(cwd=tmp_path_factory.mktemp("trailers"), store_url="memory://") as served:
        yield served


def _answer_to_endless_trailers(port: int, limit: int) -> tuple[bytes, int]:
    """``GET /healthz`` with a chunked body and up to ``limit`` bytes of trailers.

    Sends until the server answers or closes; returns what it answered and how many
    trailer bytes were sent by then.
    """
    sock = socket.create_connection(("127.0.0.1", port))
    sock.settimeout(10)
    sock.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n")
    sent = 0
    sock.setblocking(False)
    try:
        while sent < limit:
            try:
                sent += sock.send(TRAILER * 16)
            except BlockingIOError:
                time.sleep(0.01)  # the server reads no faster than it parses: let it
            except OSError:
                break  # closed under us: its answer, if any, is in the receive buffer
            try:
                if sock.recv(1, socket.MSG_PEEK):
                    break
            except BlockingIOError:
                continue
        sock.setblocking(True)
        sock.settimeout(10)
        received = b""
        while True:
            try:
                data = sock.recv(65536)
            except (TimeoutError, ConnectionResetError):
                break
            if not data:
                break
            received += data
        return received, sent
    finally:
        sock.close()


def test_endless_trailers_get_431_once_past_the_header_limit(server: Served) -> None:
    answer, sent = _answer_to_endless_trailers(server.port, 512 * MAX_HEADER_BYTES)
    assert answer.startswith(b"HTTP/1.1 431 "), answer[:200]
    assert b'"code":"headers_too_large"' in answer
    # Refused as soon as the trailers passed the limit: what was sent meanwhile is what
    # the kernel's socket buffers held (a few MB on loopback), not the 32 MiB offered.
    assert sent < 256 * MAX_HEADER_BYTES, sent
    r = httpx.get(f"{server.base_url}/healthz")
    assert r.status_code == 200


def test_a_token_sent_as_a_trailer_does_not_authenticate(server: Served) -> None:
    r = httpx.post(f"{server.base_url}/v1/agents", json={"name": "a"}, headers=server.admin_headers)
    token = r.json()["token"]
    with socket.create_connection(("127.0.0.1", server.port)) as sock:
        sock.settimeout(10)
        sock.sendall(
            b"POST /v1/claims HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
            b"Transfer-Encoding: chunked\r\nConnection: close\r\n\r\n"
            b"2\r\n{}\r\n0\r\nAuthorization: Bearer %s\r\n\r\n" % token.encode()
        )
        answer = b""
        while data := sock.recv(65536):
            answer += data
    assert answer.startswith(b"HTTP/1.1 401 "), answer[:200]


def test_trailers_within_the_limit_are_ignored(server: Served) -> None:
    with socket.create_connection(("127.0.0.1", server.port)) as sock:
        sock.settimeout(10)
        sock.sendall(
            b"POST /v1/jobs HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
            b"Authorization: Bearer %s\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n"
            b'\r\nc\r\n{"kind":"k"}\r\n0\r\nX-Trailer: yes\r\n'
            b"Authorization: Bearer other\r\n\r\n" % server.admin_token.encode()
        )
        answer = b""
        while data := sock.recv(65536):
            answer += data
    # A second Authorization only as a trailer is not a second header (400): ignored.
    assert answer.startswith(b"HTTP/1.1 201 "), answer[:300]
