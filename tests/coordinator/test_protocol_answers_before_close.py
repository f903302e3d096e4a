"""Answers owed on a connection leave before ``serve``'s protocol closes it.

Over real sockets against a real ``fleet-coordinator serve``: a client that shuts
down its write side after a complete request, a request refused (431, 400) behind
a pipelined one still being answered, and a header deadline that runs out behind
one. Each read runs until the server closes; its timeout only guards a hang.
"""

from __future__ import annotations

import json
import socket
from collections.abc import Iterator

import httpx
import pytest
from fleet_coordinator.protocol import MAX_HEADER_BYTES

from tests.support.served import Served

HEADER_TIMEOUT = 0.5
GUARD = 10.0
"""Seconds a read may wait before the test fails as hung."""


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Served]:
    """A coordinator with a short header deadline, shared by the module's tests."""
    env = {"FLEET_HEADER_TIMEOUT_SECONDS": str(HEADER_TIMEOUT)}
    with Served(cwd=tmp_path_factory.mktemp("served"), env=env) as served:
        yield served


def _long_poll(server: Served, wait_seconds: float) -> bytes:
    """A claim that is answered 200 with no lease once ``wait_seconds`` pass.

    A new agent's, on a queue of its own: one test's long-polls never share a claim
    query with another's.
    """
    made = httpx.post(
        f"{server.base_url}/v1/agents", json={"name": "a"}, headers=server.admin_headers
    )
    assert made.status_code == 201, made.text
    token, queue = made.json()["token"], made.json()["agent"]["id"]
    body = json.dumps({"queues": [queue], "wait_seconds": wait_seconds}).encode()
    return (
        b"POST /v1/claims HTTP/1.1\r\nhost: x\r\nauthorization: Bearer %s\r\n"
        b"content-type: application/json\r\ncontent-length: %d\r\n\r\n%s"
        % (token.encode(), len(body), body)
    )


def _until_closed(sock: socket.socket) -> bytes:
    """Everything the server sends until it closes the connection."""
    sock.settimeout(GUARD)
    received = b""
    while True:
        try:
            chunk = sock.recv(65536)
        except ConnectionResetError:
            return received
        if not chunk:
            return received
        received += chunk


def _answers(data: bytes) -> list[tuple[int, dict[bytes, bytes], bytes]]:
    """The answers in ``data``, in order: status, headers and body (all have a length)."""
    answers = []
    while data:
        head, sep, rest = data.partition(b"\r\n\r\n")
        assert sep, data
        status_line, *lines = head.split(b"\r\n")
        headers = {}
        for line in lines:
            name, _, value = line.partition(b":")
            headers[name.strip().lower()] = value.strip()
        length = int(headers[b"content-length"])
        answers.append((int(status_line.split(b" ")[1]), headers, rest[:length]))
        data = rest[length:]
    return answers


@pytest.mark.parametrize("version", [b"1.1", b"1.0"])
def test_a_client_that_shuts_down_its_write_side_gets_its_answer_then_the_close(
    server: Served, version: bytes
) -> None:
    """``shutdown(SHUT_WR)`` after a whole request (``nc -N``): the answer, then EOF."""
    for _ in range(5):  # each time, not by luck of the timing
        with socket.create_connection(("127.0.0.1", server.port), timeout=GUARD) as sock:
            sock.sendall(b"GET /healthz HTTP/%s\r\nhost: x\r\n\r\n" % version)
            sock.shutdown(socket.SHUT_WR)
            [(status, _, body)] = _answers(_until_closed(sock))
            assert (status, json.loads(body)["status"]) == (200, "ok")


def test_a_long_poll_whose_client_shuts_down_its_write_side_ends_at_once(
    server: Served,
) -> None:
    """The end of a client's data is a hang-up, as in uvicorn (the server cannot tell it
    from a close): a long-poll still waiting then ends, unanswered, and frees its slot."""
    with socket.create_connection(("127.0.0.1", server.port), timeout=GUARD) as sock:
        sock.sendall(_long_poll(server, 30))
        sock.shutdown(socket.SHUT_WR)
        assert _until_closed(sock) == b""  # closed long before the 30 s (GUARD is 10)


@pytest.mark.parametrize(
    ("refused", "status"),
    [
        pytest.param(
            b"GET /healthz HTTP/1.1\r\nx-big: %s\r\n\r\n" % (b"a" * MAX_HEADER_BYTES),
            431,
            id="431-headers-that-end",
        ),
        pytest.param(
            # Counted from the read after the one they began in (behind another
            # request): past the limit whatever the reads, up to 256 KiB each.
            b"GET /healthz HTTP/1.1\r\nx-big: %s" % (b"a" * (6 * MAX_HEADER_BYTES)),
            431,
            id="431-headers-that-never-end",
        ),
        pytest.param(b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03", 400, id="400-tls-hello"),
    ],
)
def test_a_pipelined_request_refused_behind_another_is_refused_after_that_ones_answer(
    server: Served, refused: bytes, status: int
) -> None:
    """The request before the refused one is answered first (its answer takes a while),
    then the refusal in the error shape, then the close."""
    with socket.create_connection(("127.0.0.1", server.port), timeout=GUARD) as sock:
        sock.sendall(_long_poll(server, 0.3) + refused)
        answers = _answers(_until_closed(sock))
    assert [answer[0] for answer in answers] == [200, status]
    assert json.loads(answers[0][2]) == {"leases": []}
    assert answers[1][1][b"connection"] == b"close"
    assert json.loads(answers[1][2])["error"]["code"] in ("headers_too_large", "bad_request")


def test_headers_late_behind_a_request_being_answered_close_after_its_answer(
    server: Served,
) -> None:
    """The next request's headers outlive the header deadline while the one before it
    is still being answered: that answer is sent, then the connection is closed."""
    with socket.create_connection(("127.0.0.1", server.port), timeout=GUARD) as sock:
        sock.sendall(_long_poll(server, 3 * HEADER_TIMEOUT) + b"GET /healthz HTTP/1.1\r\n")
        answers = _answers(_until_closed(sock))
    assert [(answer[0], json.loads(answer[2])) for answer in answers] == [(200, {"leases": []})]
