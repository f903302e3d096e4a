"""Hostile bodies against a real ``fleet-coordinator serve``: refused early, memory flat.

Each hostile client streams a 1 GB body (generated lazily, 64 KiB at a time, chunked
or with a declared Content-Length) and stops sending as soon as it is answered.
The answers must come within a second: 401 without a token, 403 with an agent token
on an admin route, 413 with the admin token once the route's limit is passed. The
coordinator's peak resident size (``VmHWM`` from /proc) may grow by less than 50 MB,
and an honest admin and agent are served normally all the while.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

from tests.support.served import Served

GIB = 1 << 30
CHUNK = b"x" * 65536
ANSWER_WITHIN = 1.0
RSS_GROWTH_LIMIT = 50 * 1024 * 1024


@dataclass
class Answer:
    """What a hostile client got: the status, after how long, having sent how much."""

    status: int
    seconds: float
    sent: int


def _memory_kib(pid: int, field: str) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(f"{field}:"):
            return int(line.split()[1])
    raise AssertionError(f"no {field} for {pid}")


async def stream_huge_body(
    port: int, path: str, token: str | None, *, chunked: bool, total: int = GIB
) -> Answer:
    """POST ``total`` bytes to ``path``, stop sending when answered, return the answer.

    A raw socket: the server may close the connection while the body is still being
    sent, and the answer it sent first must still be read from the socket.
    """
    loop = asyncio.get_running_loop()
    sock = socket.create_connection(("127.0.0.1", port))
    sock.setblocking(False)
    head = [f"POST {path} HTTP/1.1", "Host: 127.0.0.1", "Content-Type: application/json"]
    if token is not None:
        head.append(f"Authorization: Bearer {token}")
    head.append("Transfer-Encoding: chunked" if chunked else f"Content-Length: {total}")
    frame = b"%x\r\n%s\r\n" % (len(CHUNK), CHUNK) if chunked else CHUNK
    sent = 0

    async def send_body() -> None:
        nonlocal sent
        await loop.sock_sendall(sock, ("\r\n".join(head) + "\r\n\r\n").encode())
        while sent < total:
            await loop.sock_sendall(sock, frame)
            sent += len(CHUNK)

    begin = time.monotonic()
    sender = asyncio.create_task(send_body())
    try:
        received = await asyncio.wait_for(loop.sock_recv(sock, 65536), timeout=30)
        seconds = time.monotonic() - begin
    finally:
        sender.cancel()
        # Cancelled once answered, or the server closed the connection under it.
        with contextlib.suppress(asyncio.CancelledError, ConnectionError):
            await sender
        sock.close()
    assert received.startswith(b"HTTP/1.1 "), received
    return Answer(int(received.split()[1]), seconds, sent)


@pytest.fixture(params=["sqlite", "memory"])
def server(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Served]:
    """One coordinator on each store the black-box probes use."""
    store = "sqlite:///var/fleet.db" if request.param == "sqlite" else "memory://"
    with Served(cwd=tmp_path, store_url=store) as served:
        yield served


async def _honest_traffic(
    server: Served, agent_headers: dict[str, str], done: asyncio.Event
) -> int:
    """Enqueue, claim and complete until ``done``; every call must succeed. Returns rounds."""
    rounds = 0
    async with httpx.AsyncClient(base_url=server.base_url, timeout=10) as client:
        while not done.is_set() or rounds < 3:
            job = {"kind": "k", "payload": {"n": rounds}}
            r = await client.post("/v1/jobs", json=job, headers=server.admin_headers)
            assert r.status_code == 201, r.text
            r = await client.post("/v1/claims", json={"max_jobs": 1}, headers=agent_headers)
            assert r.status_code == 200, r.text
            for lease in r.json()["leases"]:
                job_id, epoch = lease["job"]["id"], lease["lease"]["epoch"]
                r = await client.post(
                    f"/v1/jobs/{job_id}/complete", json={"epoch": epoch}, headers=agent_headers
                )
                assert r.status_code == 200, r.text
            rounds += 1
    return rounds


@pytest.mark.parametrize("chunked", [True, False], ids=["chunked", "content-length"])
async def test_huge_bodies_are_refused_within_a_second_while_honest_clients_are_served(
    server: Served, chunked: bool
) -> None:
    """1 GB bodies: no token 401, agent token on an admin route 403, admin token 413 —
    each within a second, peak RSS up by < 50 MB, honest calls answered meanwhile."""
    async with httpx.AsyncClient(base_url=server.base_url) as client:
        r = await client.post(
            "/v1/agents", json={"name": "honest", "capacity": 4}, headers=server.admin_headers
        )
    agent_token = r.json()["token"]
    agent_headers = {"Authorization": f"Bearer {agent_token}"}
    assert server.process is not None
    pid = server.process.pid
    before = _memory_kib(pid, "VmRSS")

    done = asyncio.Event()
    honest = asyncio.create_task(_honest_traffic(server, agent_headers, done))
    cases = [
        ("/v1/jobs/batch", None, 401),
        ("/v1/jobs", None, 401),
        ("/v1/jobs/batch", agent_token, 403),
        ("/v1/agents", agent_token, 403),
        ("/v1/jobs", server.admin_token, 413),
        ("/v1/claims", agent_token, 413),
        ("/v1/jobs/x/complete", agent_token, 413),
    ]
    try:
        answers = await asyncio.gather(
            *(stream_huge_body(server.port, path, tok, chunked=chunked) for path, tok, _ in cases)
        )
    finally:
        done.set()
    rounds = await honest
    peak = _memory_kib(pid, "VmHWM")

    print(f"peak RSS growth {(peak - before) / 1024:.1f} MB, honest rounds {rounds}")
    for (path, _, expected), answer in zip(cases, answers, strict=True):
        print(f"{path}: {answer.status} after {answer.seconds * 1000:.0f} ms, {answer.sent} B sent")
        assert answer.status == expected, (path, answer)
        assert answer.seconds < ANSWER_WITHIN, (path, answer)
        assert answer.sent < GIB, (path, answer)
    assert (peak - before) * 1024 < RSS_GROWTH_LIMIT, f"peak RSS grew {(peak - before) / 1024} MB"
    assert rounds >= 1
    # The coordinator still answers everyone afterwards.
    async with httpx.AsyncClient(base_url=server.base_url) as client:
        r = await client.get("/v1/queues", headers=server.admin_headers)
    assert r.status_code == 200


async def test_a_body_over_the_batch_limit_is_refused_once_it_passes_the_limit(
    tmp_path: Path,
) -> None:
    """The batch route's limit (1,000 jobs) is enforced while streaming too, with the
    admin token; a small payload limit keeps that limit (and the test) small."""
    env = {"FLEET_MAX_PAYLOAD_BYTES": "1024"}
    with Served(cwd=tmp_path, store_url="memory://", env=env) as server:
        answer = await stream_huge_body(
            server.port, "/v1/jobs/batch", server.admin_token, chunked=True, total=GIB
        )
    assert answer.status == 413
    assert answer.sent < 200 * 1024 * 1024
