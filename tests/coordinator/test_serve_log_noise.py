"""Clients without a token cannot write the coordinator's log at their request rate.

uvicorn logs a warning at every request asking to upgrade to anything but a
WebSocket (``Upgrade: h2c``, which curl sends with ``--http2``) and at every
request that is not HTTP/1.1. ``logs.ClientNoise`` lets one of each through per
minute, and the next says how many it stands for.
"""

from __future__ import annotations

import logging
import socket
import time
from pathlib import Path

import pytest
from fleet_coordinator.logs import ClientNoise

from tests.support.served import Served

REQUESTS = 30
UPGRADE = (
    b"GET /healthz HTTP/1.1\r\nHost: x\r\nConnection: Upgrade, HTTP2-Settings\r\n"
    b"Upgrade: h2c\r\nHTTP2-Settings: AAMAAABkAARAAAAAAAIAAAAA\r\n\r\n"
)
GARBAGE = b"\x16\x03\x01\x00\xa5\x01\x00\x00\xa1\x03\x03 not http\r\n\r\n"  # TLS to a plain port


def _exchange(port: int, request: bytes) -> bytes:
    with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
        sock.sendall(request)
        sock.shutdown(socket.SHUT_WR)
        answer = b""
        while chunk := sock.recv(65536):
            answer += chunk
        return answer


def test_many_upgrade_and_garbage_requests_log_one_line_each(tmp_path: Path) -> None:
    """30 ``Upgrade: h2c`` requests and 30 that are not HTTP: one log line of each kind."""
    with Served(cwd=tmp_path) as server:
        for _ in range(REQUESTS):
            assert _exchange(server.port, UPGRADE).startswith(b"HTTP/1.1 200 ")
            assert _exchange(server.port, GARBAGE).startswith(b"HTTP/1.1 400 ")
    text = server.log_path.read_text()
    assert text.count("Unsupported upgrade request.") == 1, text[-3000:]
    assert text.count("Invalid HTTP request received.") == 1, text[-3000:]


def test_the_next_line_of_a_kind_says_how_many_were_left_out(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """After the interval, one line again, with the count of those not logged."""
    now = [1000.0]
    monkeypatch.setattr(time, "monotonic", lambda: now[0])
    noise = ClientNoise(interval=60)

    def record(message: str) -> logging.LogRecord:
        return logging.LogRecord("uvicorn.error", logging.WARNING, "x", 1, message, None, None)

    first = record("Unsupported upgrade request.")
    assert noise.filter(first)
    assert first.getMessage() == "Unsupported upgrade request."
    assert not any(noise.filter(record("Unsupported upgrade request.")) for _ in range(4))
    assert noise.filter(record("Invalid HTTP request received."))  # its own count
    assert noise.filter(record("Exceeded concurrency limit."))  # not client noise
    now[0] += 61
    later = record("Unsupported upgrade request.")
    assert noise.filter(later)
    assert later.getMessage() == (
        "Unsupported upgrade request. (4 more since the last such line, not logged)"
    )
    assert not noise.filter(record("Unsupported upgrade request."))
