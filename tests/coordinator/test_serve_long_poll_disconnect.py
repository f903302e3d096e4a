"""A long-poll whose caller hangs up frees its agent's long-poll slot at once."""

from __future__ import annotations

import json
import select
import socket
import time
from collections.abc import Callable
from pathlib import Path

import httpx

from tests.support.served import Served


def _long_poll(port: int, token: str, wait_seconds: float) -> socket.socket:
    """Send a waiting ``POST /v1/claims`` on a raw connection and leave it open."""
    body = json.dumps({"queues": ["idle"], "wait_seconds": wait_seconds}).encode()
    head = (
        f"POST /v1/claims HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n"
        f"Authorization: Bearer {token}\r\nContent-Type: application/json\r\n"
        f"Content-Length: {len(body)}\r\n\r\n"
    ).encode()
    sock = socket.create_connection(("127.0.0.1", port))
    sock.sendall(head + body)
    return sock


def _claim_status(client: httpx.Client, token: str) -> int:
    answer = client.post(
        "/v1/claims",
        json={"queues": ["idle"], "wait_seconds": 0.01},
        headers={"Authorization": f"Bearer {token}"},
    )
    return answer.status_code


def _until(condition: Callable[[], bool], what: str, timeout: float = 10.0) -> None:
    """Retry ``condition()`` (each try is a real request) until true, or fail."""
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"


def test_a_disconnected_long_poll_frees_its_slot_before_its_wait_ends(tmp_path: Path) -> None:
    """With one long-poll allowed, a 30 s long-poll whose client hangs up stops holding
    the slot: the agent's next long-poll is served well before the 30 s are over."""
    env = {"FLEET_MAX_LONG_POLLS_PER_AGENT": "1"}
    with (
        Served(cwd=tmp_path, store_url="memory://", env=env) as served,
        httpx.Client(base_url=served.base_url, timeout=10) as client,
    ):
        made = client.post("/v1/agents", json={"name": "a"}, headers=served.admin_headers)
        token = made.json()["token"]
        began = time.monotonic()
        sock = _long_poll(served.port, token, 30)

        def waiting() -> bool:
            # The slot is taken once the server answers this agent's next long-poll 429.
            # A probe (itself a long-poll of 10 ms) read first may have taken the slot and
            # got the 30 s one answered 429 instead: then send that one again.
            nonlocal sock
            if select.select([sock], [], [], 0)[0]:
                sock.close()
                sock = _long_poll(served.port, token, 30)
                return False
            return _claim_status(client, token) == 429

        _until(waiting, "the long-poll to wait")
        sock.close()
        _until(lambda: _claim_status(client, token) == 200, "the slot to be freed")
        assert time.monotonic() - began < 15, "the slot was held for the whole wait"
