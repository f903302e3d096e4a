"""SIGTERM ends the waiting long-polls of ``serve`` at once, with nothing, and the process exits."""

from __future__ import annotations

import json
import select
import signal
import socket
import time
from pathlib import Path

import httpx
import pytest

from tests.support.served import Served, post_and_hold

WAIT = 30.0
"""The long-poll's wait: the longest an agent may ask for (SPEC)."""
PROMPT = 10.0
"""Seconds after SIGTERM by which the answer and the exit must come: a third of the wait."""


def _answer(sock: socket.socket, timeout: float) -> tuple[bytes, dict[str, object]]:
    """The status line and JSON body of the one answer on ``sock``, read until it closes."""
    sock.settimeout(timeout)
    data = b""
    while chunk := sock.recv(65536):
        data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    answer: dict[str, object] = json.loads(body)
    return head.split(b"\r\n")[0], answer


@pytest.mark.parametrize(
    ("path", "body", "empty"),
    [
        pytest.param(
            "/v1/claims",
            {"queues": ["idle"], "wait_seconds": WAIT},
            {"leases": []},
            id="claim",
        ),
        pytest.param(
            "/v1/reports",
            {"items": [], "claim": {"queues": ["idle"], "wait_seconds": WAIT}},
            {"items": [], "leases": []},
            id="report",
        ),
    ],
)
def test_sigterm_answers_waiting_long_polls_with_nothing_and_exits_promptly(
    tmp_path: Path, path: str, body: dict[str, object], empty: dict[str, object]
) -> None:
    """A 30 s long-poll in flight when SIGTERM comes is answered 200 with no leases, and the
    process exits, both well before the wait would have ended."""
    # One long-poll slot: the agent's next long-poll answered 429 shows the first one waiting.
    one_slot = {"FLEET_MAX_LONG_POLLS_PER_AGENT": "1"}
    served = Served(cwd=tmp_path, store_url="memory://", env=one_slot)
    with served, httpx.Client(base_url=served.base_url, timeout=10) as client:
        made = client.post("/v1/agents", json={"name": "a"}, headers=served.admin_headers)
        token = made.json()["token"]
        raw = json.dumps(body).encode()
        sock = post_and_hold(served.port, token, path, raw)
        deadline = time.monotonic() + 10
        while True:
            assert time.monotonic() < deadline, "the long-poll never started waiting"
            if select.select([sock], [], [], 0)[0]:
                # The probe below held the slot when this arrived (429): send it again.
                sock.close()
                sock = post_and_hold(served.port, token, path, raw)
                continue
            probe = client.post(
                "/v1/claims",
                json={"queues": ["idle"], "wait_seconds": 0.01},
                headers={"Authorization": f"Bearer {token}"},
            )
            if probe.status_code == 429:
                break
        assert served.process is not None
        began = time.monotonic()
        served.process.send_signal(signal.SIGTERM)
        try:
            status, answer = _answer(sock, PROMPT)
        finally:
            sock.close()
        answered = time.monotonic() - began
        code = served.process.wait(PROMPT)
        exited = time.monotonic() - began
    assert status == b"HTTP/1.1 200 OK"
    assert answer == empty
    assert answered < PROMPT
    assert exited < PROMPT
    # uvicorn re-raises the signal it caught once it has shut down (from 0.29 on), so
    # whoever sent it sees the process ended by it: not a crash, not a SIGKILL.
    assert code in (0, -signal.SIGTERM)
