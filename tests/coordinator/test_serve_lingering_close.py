"""A refusal answered while the client is still sending reaches it (a lingering close).

The guard answers 401/403 before it reads a body and 413 as soon as a declared
length or the body read so far passes the route's limit, then closes the connection.
Closed while the client was still sending, the socket held unread bytes and the kernel
reset the connection, dropping the answer from the client's buffer: both clients raised
``CoordinatorUnavailable`` ("connection reset") and, with an idempotency key, retried
for ~10 s. ``serve``'s protocol now drains what still comes for a bounded time and a
bounded number of bytes (``LINGER_SECONDS``, ``LINGER_BYTES``) before it closes; a
client that sends forever, or trickles, is still cut at those bounds.
"""

from __future__ import annotations

import asyncio
import re
import socket
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from fleet_client import FleetClient, FleetError, RequestRejected, SyncFleetClient, Unauthorized
from fleet_coordinator.protocol import LINGER_BYTES, LINGER_SECONDS

from tests.support.served import Served

BIG = 8 * 1024 * 1024
"""A payload past ``POST /v1/jobs``'s limit (~0.6 MB) and past what loopback's socket
buffers take in before the server reads (a few MB): without the drain, it was reset."""
MARGIN = 2.0
"""Seconds a cut may come after its bound: a loaded test host."""


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Served]:
    with Served(cwd=tmp_path_factory.mktemp("linger"), store_url="memory://") as server:
        yield server


def _enqueues_seen(served: Served) -> float:
    """How many ``POST /v1/jobs`` requests the coordinator has answered (its latency count)."""
    text = httpx.get(f"{served.base_url}/metrics", headers=served.admin_headers).text
    found = re.search(r'fleet_request_seconds_count\{method="POST",route="/v1/jobs"\} (\S+)', text)
    return 0.0 if found is None else float(found.group(1))


def _enqueue_big(served: Served, token: str, *, sync: bool) -> FleetError:
    """What enqueueing a ``BIG`` payload with an idempotency key raises, by either client."""
    payload = {"blob": "x" * BIG}
    if sync:
        with SyncFleetClient(served.base_url, token) as fleet:
            try:
                fleet.enqueue("big", payload, idempotency_key="linger-sync")
            except FleetError as exc:
                return exc
    else:

        async def enqueue() -> FleetError:
            async with FleetClient(served.base_url, token) as fleet:
                try:
                    await fleet.enqueue("big", payload, idempotency_key="linger-async")
                except FleetError as exc:
                    return exc
            raise AssertionError("enqueued")

        return asyncio.run(enqueue())
    raise AssertionError("enqueued")


@pytest.mark.parametrize("sync", [True, False], ids=["sync", "async"])
def test_both_clients_get_the_413_of_a_body_over_the_limit_at_once(
    served: Served, sync: bool
) -> None:
    """The coordinator's 413 and its message, on the first try: no reset, no retries."""
    before = _enqueues_seen(served)
    error = _enqueue_big(served, served.admin_token, sync=sync)
    assert type(error) is RequestRejected, repr(error)
    assert (error.status, error.code) == (413, "payload_too_large")
    assert error.message.endswith("the request body is too large")
    assert _enqueues_seen(served) - before == 1  # one request: no retry (they took ~10 s)


@pytest.mark.parametrize("sync", [True, False], ids=["sync", "async"])
def test_both_clients_get_the_401_answered_before_their_body_is_read(
    served: Served, sync: bool
) -> None:
    """A token refused before the body is read is also answered, not reset."""
    error = _enqueue_big(served, "not-a-token-0123456789", sync=sync)
    assert type(error) is Unauthorized, repr(error)
    assert error.status == 401


def test_a_chunked_body_refused_while_it_streams_gets_its_413(served: Served) -> None:
    """No declared length: the 413 comes once the body read passes the limit, mid-body."""

    def chunks() -> Iterator[bytes]:
        yield b'{"kind": "big", "payload": {"blob": "'
        for _ in range(BIG // 65536):
            yield b"x" * 65536
        yield b'"}}'

    with httpx.Client(base_url=served.base_url, headers=served.admin_headers) as client:
        r = client.post("/v1/jobs", content=chunks(), headers={"content-type": "application/json"})
    assert r.status_code == 413
    assert r.json()["error"]["code"] == "payload_too_large"


def _refused_connection(served: Served) -> tuple[socket.socket, float]:
    """A connection whose 1 GB body was refused (413) at once; the time of the answer."""
    sock = socket.create_connection(("127.0.0.1", served.port))
    sock.sendall(
        b"POST /v1/jobs HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
        b"Authorization: Bearer %s\r\nContent-Length: %d\r\n\r\n"
        % (served.admin_token.encode(), 1 << 30)
    )
    sock.settimeout(LINGER_SECONDS + MARGIN)
    answer = b""
    while b"\r\n\r\n" not in answer:
        answer += sock.recv(65536)
    assert answer.startswith(b"HTTP/1.1 413 "), answer
    return sock, time.monotonic()


def _cut(sock: socket.socket, piece: bytes, pace: float) -> tuple[float, int]:
    """Send ``piece`` every ``pace`` seconds until the server cuts the connection.

    Returns when it was cut and how many bytes went before.
    """
    sent = 0
    deadline = time.monotonic() + LINGER_SECONDS + MARGIN
    try:
        while time.monotonic() < deadline:
            sent += sock.send(piece)
            if pace:
                time.sleep(pace)  # the hostile client's pace, not a wait for the server
    except (ConnectionResetError, BrokenPipeError):
        return time.monotonic(), sent
    finally:
        sock.close()
    raise AssertionError(f"still open after {LINGER_SECONDS + MARGIN} s, {sent} B sent")


def test_a_client_trickling_its_refused_body_is_cut_at_the_time_bound(served: Served) -> None:
    """A byte every 10 ms never stops: the connection is cut ``LINGER_SECONDS`` after the
    answer (an idle timeout between reads would never fire on it)."""
    sock, answered = _refused_connection(served)
    cut, _ = _cut(sock, b"x", 0.01)
    assert LINGER_SECONDS - 0.5 < cut - answered < LINGER_SECONDS + MARGIN


def test_a_client_flooding_its_refused_body_is_cut_at_the_byte_bound(served: Served) -> None:
    """Sent as fast as it goes, the rest of a refused body is cut after ``LINGER_BYTES``
    (plus what the socket buffers hold), well before the time bound."""
    sock, answered = _refused_connection(served)
    cut, sent = _cut(sock, b"x" * 65536, 0)
    assert LINGER_BYTES < sent < LINGER_BYTES + 16 * 1024 * 1024
    assert cut - answered < LINGER_SECONDS


def test_the_coordinator_serves_on_after_lingering_clients(served: Served) -> None:
    r = httpx.post(f"{served.base_url}/v1/jobs", json={"kind": "k"}, headers=served.admin_headers)
    assert r.status_code == 201, r.text


def test_bounds_are_those_documented() -> None:
    """docs/operations.md names the drain's bounds."""
    text = (Path(__file__).parents[2] / "docs" / "operations.md").read_text()
    assert f"at most {LINGER_SECONDS:g} s and {LINGER_BYTES // (1024 * 1024)} MiB" in text
