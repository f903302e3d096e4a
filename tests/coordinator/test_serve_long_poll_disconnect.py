"""A long-poll whose caller hangs up frees its agent's long-poll slot at once."""

from __future__ import annotations

import json
import select
import socket
import time
from collections.abc import Callable
from pathlib import Path

import httpx
import pytest
from fleet_coordinator.api.disconnects import may_long_poll

from tests.support.served import Served, post_and_hold


def _long_poll(port: int, token: str, wait_seconds: float) -> socket.socket:
    """Send a waiting ``POST /v1/claims`` on a raw connection and leave it open."""
    body = json.dumps({"queues": ["idle"], "wait_seconds": wait_seconds}).encode()
    return post_and_hold(port, token, "/v1/claims", body)


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


@pytest.mark.parametrize(
    ("path", "body", "watched"),
    [
        ("/v1/claims", b'{"wait_seconds": 2}', True),
        ("/v1/reports", b'{"items": [], "claim": {"max_jobs": 1, "wait_seconds": 0.5}}', True),
        ("/v1/claims", b'{"wait_seconds":0}', False),
        ("/v1/reports", b'{"items": [], "claim": {"max_jobs": 1, "wait_seconds": 0.0 }}', False),
        ("/v1/claims", b'{"max_jobs": 3}', False),
        # A payload naming the key does not hide a claim that waits.
        (
            "/v1/reports",
            b'{"items":[{"result":{"wait_seconds":0}}],"claim":{"wait_seconds":5}}',
            True,
        ),
        ("/v1/claims", b'{"wait_seconds": 00}', True),  # not JSON: the route answers 422
        ("/v1/jobs", b'{"kind": "k", "payload": {"wait_seconds": 9}}', False),
    ],
)
def test_only_a_claim_that_may_wait_is_watched_for_its_caller_hanging_up(
    path: str, body: bytes, watched: bool
) -> None:
    """A batched report's claim says ``"wait_seconds": 0``: it never waits, so the guard
    skips the watch (two tasks per request, one request per job at ``--concurrency 1``)."""
    assert may_long_poll({"path": path}, body) is watched
