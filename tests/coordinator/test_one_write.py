"""Each answer leaves in one write: ``OneWriteTransport`` under ``serve``'s protocol."""

from __future__ import annotations

import asyncio
import socket
from collections.abc import Iterator
from pathlib import Path

import pytest
from fleet_coordinator.protocol import OneWriteTransport

from tests.support.served import Served


class _Recording(asyncio.Transport):
    """A transport that records its writes and whether it was closed."""

    def __init__(self) -> None:
        super().__init__()
        self.writes: list[bytes] = []
        self.closed = False

    def write(self, data: bytes | bytearray | memoryview) -> None:
        self.writes.append(bytes(data))

    def close(self) -> None:
        self.closed = True

    def is_closing(self) -> bool:
        return self.closed

    def get_extra_info(self, name: str, default: object = None) -> object:
        return ("127.0.0.1", 1) if name == "peername" else default


async def test_writes_of_one_loop_turn_leave_together_in_order() -> None:
    """Headers and body written in one turn reach the transport as one write, in order."""
    real = _Recording()
    one = OneWriteTransport(real, asyncio.get_running_loop())
    one.write(b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\n")
    one.write(b"{}")
    assert real.writes == []  # held until the end of this turn
    await asyncio.sleep(0)  # one loop turn
    assert real.writes == [b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\n{}"]
    one.write(b"next")
    await asyncio.sleep(0)
    assert real.writes[1:] == [b"next"]
    assert one.get_extra_info("peername") == ("127.0.0.1", 1)  # the rest is the real one's


async def test_close_sends_what_is_held_first_and_nothing_after() -> None:
    """``close`` flushes before closing; a write after the close is dropped, not raised."""
    real = _Recording()
    one = OneWriteTransport(real, asyncio.get_running_loop())
    one.write(b"answer")
    one.close()
    assert real.writes == [b"answer"]
    assert real.closed
    one.write(b"late")
    await asyncio.sleep(0)
    assert real.writes == [b"answer"]


@pytest.fixture
def server(tmp_path: Path) -> Iterator[Served]:
    """A real ``fleet-coordinator serve``."""
    with Served(cwd=tmp_path) as served:
        yield served


def test_a_served_answer_arrives_in_one_read(server: Served) -> None:
    """A small answer's status line, headers and body come in one segment."""
    port = int(server.base_url.rsplit(":", 1)[1])
    with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
        auth = f"Authorization: Bearer {server.admin_token}"
        request = f"GET /v1/queues HTTP/1.1\r\nHost: x\r\n{auth}\r\n\r\n"
        for _ in range(5):  # on one keep-alive connection, every time
            sock.sendall(request.encode())
            first = sock.recv(65536)
            head, _, body = first.partition(b"\r\n\r\n")
            assert head.startswith(b"HTTP/1.1 200")
            length = int(
                next(
                    line.split(b":")[1]
                    for line in head.split(b"\r\n")
                    if line.lower().startswith(b"content-length")
                )
            )
            assert len(body) == length, first
