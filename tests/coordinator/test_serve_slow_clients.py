"""Slow and greedy clients against a real ``fleet-coordinator serve``.

Many connections that never finish their headers, one that sends endless headers,
one whose body trickles, and clients that never read their answers: each is cut
or answered by the server's limits (docs/operations.md, "Slow and greedy clients"),
and an honest admin and agent are served normally all the while.
"""

from __future__ import annotations

import asyncio
import select
import socket
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.support.served import Served

HEADER_TIMEOUT = 1.0
BODY_TIMEOUT = 1.0
SLOW_CONNECTIONS = 200


@pytest.fixture
def server(tmp_path: Path) -> Iterator[Served]:
    """A coordinator with short header and body deadlines."""
    env = {
        "FLEET_HEADER_TIMEOUT_SECONDS": str(HEADER_TIMEOUT),
        "FLEET_BODY_TIMEOUT_SECONDS": str(BODY_TIMEOUT),
    }
    with Served(cwd=tmp_path, env=env) as served:
        yield served


async def _open(port: int, data: bytes) -> socket.socket:
    """A connection that has sent ``data`` and nothing more."""
    sock = socket.create_connection(("127.0.0.1", port))
    sock.setblocking(False)
    await asyncio.get_running_loop().sock_sendall(sock, data)
    return sock


async def _closed_by_server(sock: socket.socket) -> bytes:
    """Everything the server sends until it closes the connection."""
    loop = asyncio.get_running_loop()
    received = b""
    while True:
        try:
            chunk = await loop.sock_recv(sock, 65536)
        except ConnectionResetError:
            return received
        if not chunk:
            return received
        received += chunk


async def _honest_round(client: httpx.AsyncClient, server: Served, agent: dict[str, str]) -> None:
    r = await client.post("/v1/jobs", json={"kind": "k"}, headers=server.admin_headers)
    assert r.status_code == 201, r.text
    r = await client.post("/v1/claims", json={"max_jobs": 1}, headers=agent)
    assert r.status_code == 200, r.text
    [lease] = r.json()["leases"]
    r = await client.post(
        f"/v1/jobs/{lease['job']['id']}/complete",
        json={"epoch": lease["lease"]["epoch"]},
        headers=agent,
    )
    assert r.status_code == 200, r.text


async def test_slow_and_greedy_clients_are_cut_while_honest_ones_are_served(
    server: Served,
) -> None:
    """200 connections stuck in their headers are closed after the header deadline, endless
    headers get 431, a trickling body 408, clients that never read their answers hold
    nothing up, and an honest admin and agent are served throughout."""
    async with httpx.AsyncClient(base_url=server.base_url, timeout=10) as client:
        r = await client.post("/v1/agents", json={"name": "honest"}, headers=server.admin_headers)
        agent = {"Authorization": f"Bearer {r.json()['token']}"}
        for _ in range(20):
            await _honest_round(client, server, agent)  # jobs for the readers below

        begin = time.monotonic()
        slow = [
            await _open(server.port, b"POST /v1/jobs HTTP/1.1\r\nHost: x\r\nAuthor")
            for _ in range(SLOW_CONNECTIONS)
        ]
        silent = [await _open(server.port, b"") for _ in range(20)]
        auth = f"Authorization: Bearer {server.admin_token}\r\n".encode()
        trickle = await _open(
            server.port,
            b"POST /v1/jobs HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\n"
            + b"Content-Type: application/json\r\n"
            + auth
            + b"\r\n{",
        )
        bomb = await _open(server.port, b"GET /healthz HTTP/1.1\r\n" + b"X-Pad: " + b"a" * 70_000)
        list_jobs = b"GET /v1/jobs?limit=1000 HTTP/1.1\r\nHost: x\r\n" + auth + b"\r\n"
        non_readers = [await _open(server.port, list_jobs * 50) for _ in range(20)]

        # While all of that is open, honest calls are answered at once.
        for _ in range(5):
            started = time.monotonic()
            await _honest_round(client, server, agent)
            assert time.monotonic() - started < 1.0

        assert (await _closed_by_server(bomb)).startswith(b"HTTP/1.1 431 ")
        answer = await _closed_by_server(trickle)
        assert answer.startswith(b"HTTP/1.1 408 "), answer[:200]
        assert b'"request_timeout"' in answer
        for sock in slow + silent:
            assert await _closed_by_server(sock) == b""  # cut, nothing answered
        cut_after = time.monotonic() - begin
        assert cut_after < HEADER_TIMEOUT + 5.0, cut_after

        await _honest_round(client, server, agent)
    for sock in [*slow, *silent, trickle, bomb, *non_readers]:
        sock.close()


PIPELINE_CAP = 32 * 1024 * 1024
"""Bytes a client that never reads may get the server to take before the test fails.

The kernel's socket buffers hold ~10 MB here (the client's send, the server's receive);
the protocol queues at most the requests of one read beyond them.
"""


def _rss_mib(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) // 1024
    raise AssertionError("no VmRSS")


def test_pipelined_requests_are_read_no_faster_than_answered(server: Served) -> None:
    """A client that pipelines requests and never reads the answers is stopped by its
    socket buffers (or cut by the header deadline, when a request was left half read):
    the server reads on only once every request it queued is answered.

    uvicorn resumed reading after each answer while requests were still queued, so
    each answer let in another read of them: unauthenticated ``GET /healthz`` sent this
    way took 45 MB in 20 s and grew the coordinator to 2.8 GiB (docs/operations.md).
    """
    assert server.process is not None
    before = _rss_mib(server.process.pid)
    sock = socket.create_connection(("127.0.0.1", server.port))
    sock.setblocking(False)
    chunk = b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n" * 2000
    sent = 0
    try:
        while sent < PIPELINE_CAP:
            try:
                sent += sock.send(chunk[sent % len(chunk) :])
            except BlockingIOError:
                # Full: the server stopped reading, unless it frees room within a while.
                _, writable, _ = select.select([], [sock], [], 2.0)
                if not writable:
                    break
            except (ConnectionResetError, BrokenPipeError):
                # Cut: a request left half read while reading waits past the header deadline.
                break
        assert sent < PIPELINE_CAP, "the server kept reading requests it had not answered"
        assert _rss_mib(server.process.pid) < before + 200
        assert httpx.get(f"{server.base_url}/healthz", timeout=5).status_code == 200
    finally:
        sock.close()


LOW_SOFT_LIMIT = 256
IDLE_CONNECTIONS = 400


class _LowSoftLimit(Served):
    """``serve`` started with a soft limit of ``LOW_SOFT_LIMIT`` open files (hard unchanged)."""

    def command(self) -> list[str]:
        lower = (
            "import os, resource, sys; "
            "hard = resource.getrlimit(resource.RLIMIT_NOFILE)[1]; "
            f"resource.setrlimit(resource.RLIMIT_NOFILE, ({LOW_SOFT_LIMIT}, hard)); "
            "os.execv(sys.argv[1], sys.argv[1:])"
        )
        return [sys.executable, "-c", lower, *super().command()]


def test_idle_connections_past_a_low_soft_limit_of_open_files_lock_nobody_out(
    tmp_path: Path,
) -> None:
    """Started with a soft limit of 256 files, ``serve`` raises it to the hard limit: 400
    idle connections (no token, held until the header deadline) leave room for others.
    Before, the 257th file could not be opened and every new connection was reset."""
    import resource  # Unix: as every test here of a served process

    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    # Fails loudly, not skips: a host whose processes may not open this many files could
    # not run a coordinator for a fleet either.
    assert hard >= IDLE_CONNECTIONS * 2, f"the hard limit of open files here is {hard}"
    if soft < IDLE_CONNECTIONS * 2:  # this test's own sockets
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    with _LowSoftLimit(cwd=tmp_path) as server:
        assert server.process is not None
        limits = Path(f"/proc/{server.process.pid}/limits")
        if limits.exists():
            [line] = [row for row in limits.read_text().splitlines() if "open files" in row]
            assert int(line.split()[3]) == min(hard, 1 << 20), line
        idle = [
            socket.create_connection(("127.0.0.1", server.port)) for _ in range(IDLE_CONNECTIONS)
        ]
        try:
            # Behind the idle ones in the accept queue: answered only if they were accepted.
            r = httpx.get(f"{server.base_url}/healthz", timeout=5)
            assert r.status_code == 200
            assert "coordinator.open_files" in server.log_path.read_text()
        finally:
            for sock in idle:
                sock.close()
