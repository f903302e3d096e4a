"""``serve``'s protocol answers plain hot requests itself (``api/direct.py``), and only those.

In process, with raw bytes into ``GuardedHttpToolsProtocol`` around the real app
(``tests/support/raw_http.py``). What the answers hold is the parity test's
(``test_api_hot_path.py``, which drives one app through this protocol); here, the
connection around them: keep-alive and ``Connection: close``, pipelining, bodies
that are not whole, a refusal behind a direct answer, a defect, a client that
leaves, a shutdown, and which requests are handed to the ASGI app.
"""

from __future__ import annotations

import asyncio
import json
import socket
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from fleet_coordinator import Settings, create_app, services
from fleet_coordinator.api import direct as direct_module
from fleet_coordinator.api import routes_jobs
from fleet_coordinator.protocol import GuardedHttpToolsProtocol
from fleet_coordinator.store import new_id
from structlog.testing import capture_logs

from tests.support.raw_http import Collector, connect
from tests.support.served import Served

from .conftest import CallCounter

ADMIN = "admin-token-for-direct-answer-tests"


class _Counted:
    """The app's direct answers, noting which requests they answered."""

    def __init__(self, direct: Any) -> None:
        self.direct = direct
        self.answered = 0
        self.handed_on = 0

    async def __call__(self, scope: dict[str, Any], body: bytes) -> Any:
        answer = await self.direct(scope, body)
        if answer is None:
            self.handed_on += 1
        else:
            self.answered += 1
        return answer


@dataclass
class Conn:
    app: Any
    protocol: Any
    wire: Collector
    direct: _Counted

    async def ask(self, request: bytes) -> tuple[int, dict[bytes, bytes], Any]:
        return _parse(await asyncio.wait_for(self.wire.answer(self.protocol, request), 5))


def _parse(raw: bytes) -> tuple[int, dict[bytes, bytes], Any]:
    head, _, body = raw.partition(b"\r\n\r\n")
    status_line, *lines = head.split(b"\r\n")
    headers = {}
    for line in lines:
        name, _, value = line.partition(b":")
        headers[name.strip().lower()] = value.strip()
    return int(status_line.split(b" ")[1]), headers, json.loads(body) if body else None


def _post(path: str, body: Any, token: str = ADMIN, extra: bytes = b"") -> bytes:
    raw = body if isinstance(body, bytes) else json.dumps(body).encode()
    return (
        b"POST %s HTTP/1.1\r\nhost: x\r\ncontent-type: application/json\r\n"
        b"authorization: Bearer %s\r\ncontent-length: %d\r\n%s\r\n%s"
        % (path.encode(), token.encode(), len(raw), extra, raw)
    )


@pytest.fixture
async def conn() -> AsyncIterator[Conn]:
    settings = Settings(store_url="memory://", admin_token=ADMIN, reaper_enabled=False)
    app: Any = create_app(settings)
    counted = app.direct_answers = _Counted(app.direct_answers)
    async with app.router.lifespan_context(app):
        protocol, wire = connect(app)
        yield Conn(app, protocol, wire, counted)
        protocol.connection_lost(None)


async def test_plain_requests_are_answered_directly_on_a_kept_alive_connection(
    conn: Conn,
) -> None:
    status, headers, job = await conn.ask(_post("/v1/jobs", {"kind": "k"}))
    assert (status, job["status"]) == (201, "queued")
    assert headers[b"content-type"] == b"application/json"
    assert b"connection" not in headers
    status, _, batch = await conn.ask(_post("/v1/jobs/batch", {"jobs": [{"kind": "k"}]}))
    assert (status, len(batch)) == (201, 1), batch
    assert conn.direct.answered == 2
    assert not conn.wire.closed
    # The guard's latency metric counts them under the route's template.
    sample = conn.app.state.coordinator.metrics.registry.get_sample_value
    for route in ("/v1/jobs", "/v1/jobs/batch"):
        assert sample("fleet_request_seconds_count", {"method": "POST", "route": route}) == 1


async def test_connection_close_and_http_1_0_close_after_a_direct_answer(conn: Conn) -> None:
    status, headers, _ = await conn.ask(
        _post("/v1/jobs", {"kind": "k"}, extra=b"connection: close\r\n")
    )
    assert (status, headers[b"connection"]) == (201, b"close")
    assert conn.direct.answered == 1
    assert conn.wire.closed


async def test_pipelined_requests_are_answered_in_order(conn: Conn) -> None:
    """Three in one read: the second waits for the first's answer, as in uvicorn."""
    requests = [_post("/v1/jobs", {"kind": f"k{n}"}) for n in range(3)]
    first = await conn.ask(b"".join(requests))
    # Each answer starts the next request's task: wait for them all, then read the wire.
    while conn.protocol.tasks or conn.protocol.pipeline:
        await asyncio.wait_for(asyncio.gather(*list(conn.protocol.tasks)), 5)
    conn.protocol._one_write.flush()  # written at the end of the loop turn otherwise
    rest = [b"HTTP/1.1 " + answer for answer in conn.wire.data.split(b"HTTP/1.1 ")[1:]]
    kinds = [answer[2]["kind"] for answer in (first, *(_parse(r) for r in rest))]
    assert kinds == ["k0", "k1", "k2"]
    assert conn.direct.answered == 3


async def test_a_refusal_pipelined_behind_a_direct_answer_comes_after_it(conn: Conn) -> None:
    data = _post("/v1/jobs", {"kind": "k"}) + b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03"
    status, _, job = await conn.ask(data)
    assert (status, job["kind"]) == (201, "k")
    # Written with the answer, in its own callback (``on_response``): here already.
    refusal = _parse(conn.wire.data)
    assert refusal[0] == 400
    assert refusal[1][b"connection"] == b"close"
    assert conn.wire.closed


@pytest.mark.parametrize(
    ("request_bytes", "status"),
    [
        pytest.param(_post("/v1/jobs", {"kind": "k"}, token="nope"), 401, id="unknown-token"),
        pytest.param(_post("/v1/claims", {}, token=ADMIN), 403, id="wrong-role"),
        pytest.param(_post("/v1/jobs", {"kind": 1}), 422, id="invalid-body"),
        pytest.param(_post("/v1/jobs", b'{"kind": "\\ud800"}'), 422, id="lone-surrogate"),
        pytest.param(
            _post("/v1/jobs", b'{"kind": "\\ud800", "kind": "k"}'),
            422,
            id="lone-surrogate-under-a-repeated-key",
        ),
        pytest.param(_post("/v1/jobs", b'{"kind": "\xff"}'), 400, id="not-utf-8"),
        pytest.param(_post("/v1/jobs?x=1", {"kind": "k"}), 201, id="query-string"),
        pytest.param(
            _post("/v1/jobs", {"kind": "k"}, extra=b"content-encoding: gzip\r\n"),
            415,
            id="content-coding",
        ),
        pytest.param(
            _post("/v1/jobs", {"kind": "k"}, extra=b"authorization: Bearer nope\r\n"),
            400,
            id="two-authorization-headers",
        ),
        pytest.param(_post("/v1/job%73", {"kind": "k"}), 201, id="percent-escape"),
        pytest.param(_post("/v1/jobs/x/cancel", {}), 404, id="not-hot"),
        pytest.param(_post("/v1/jobs", b'{"kind": "k", "payload": [NaN]}'), 400, id="nan"),
        pytest.param(
            # A run of 19 digits sends the body to json.loads, which would read the NaN.
            _post("/v1/jobs", b'{"kind": "k", "payload": {"s": "1234567890123456789", "n": NaN}}'),
            400,
            id="nan-beside-a-long-number",
        ),
        pytest.param(
            _post("/v1/jobs", {"kind": "k", "payload": "x" * 3_000_000}), 413, id="too-large"
        ),
        pytest.param(
            b"POST /v1/jobs HTTP/1.1\r\nhost: x\r\nauthorization: Bearer %s\r\n"
            b"content-type: application/json\r\ntransfer-encoding: chunked\r\n\r\n"
            b'd\r\n{"kind": "k"}\r\n0\r\n\r\n' % ADMIN.encode(),
            201,
            id="chunked",
        ),
        pytest.param(
            b"POST /v1/jobs HTTP/1.1\r\nhost: x\r\nauthorization: Bearer %s\r\n"
            b"content-type: application/json\r\ntransfer-encoding: chunked\r\n"
            b'content-encoding: gzip\r\n\r\nd\r\n{"kind": "k"}\r\n0\r\n\r\n' % ADMIN.encode(),
            415,
            id="chunked-content-coding",
        ),
        pytest.param(
            b"POST /v1/jobs HTTP/1.1\r\nhost: x\r\nauthorization: Bearer %s\r\n"
            b'content-length: 13\r\n\r\n{"kind": "k"}' % ADMIN.encode(),
            415,  # a JSON route's body without a content type: the guard refuses it
            id="no-content-type",
        ),
    ],
)
async def test_what_is_not_plain_goes_to_the_asgi_app(
    conn: Conn, request_bytes: bytes, status: int
) -> None:
    """Handed on before anything ran: the guard and FastAPI answer it as they always did."""
    answer = await conn.ask(request_bytes)
    assert answer[0] == status, answer
    assert conn.direct.answered == 0


async def test_a_body_labelled_identity_is_answered_directly(conn: Conn) -> None:
    """``Content-Encoding: identity`` names no coding: the request stays plain."""
    status, _, job = await conn.ask(
        _post("/v1/jobs", {"kind": "k"}, extra=b"content-encoding: identity\r\n")
    )
    assert (status, job["kind"], conn.direct.answered) == (201, "k", 1)


async def test_a_body_not_whole_when_the_request_starts_goes_to_the_asgi_app(
    conn: Conn, monkeypatch: pytest.MonkeyPatch
) -> None:
    started = asyncio.Event()
    answer_or_hand_on = GuardedHttpToolsProtocol._answer

    async def noted(self: Any, *args: Any) -> None:
        started.set()  # what follows, up to its first await, runs before the test resumes
        await answer_or_hand_on(self, *args)

    monkeypatch.setattr(GuardedHttpToolsProtocol, "_answer", noted)
    data = _post("/v1/jobs", {"kind": "k"})
    conn.protocol.data_received(data[:-3])
    await asyncio.wait_for(started.wait(), 5)  # the request's task started on what came
    answer = await conn.ask(data[-3:])
    assert answer[0] == 201
    assert (conn.direct.answered, conn.direct.handed_on) == (0, 0)  # not even offered


async def test_a_long_poll_goes_to_the_asgi_app_which_watches_its_caller(conn: Conn) -> None:
    made = await conn.ask(_post("/v1/agents", {"name": "a"}))
    token = made[2]["token"]
    answer = await conn.ask(_post("/v1/claims", {"wait_seconds": 0.01}, token=token))
    assert answer[:1] == (200,)
    assert answer[2] == {"leases": []}
    assert (conn.direct.answered, conn.direct.handed_on) == (1, 1)


async def test_a_traced_request_goes_to_the_asgi_app(
    conn: Conn, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(direct_module, "requests_traced", lambda: True)
    assert (await conn.ask(_post("/v1/jobs", {"kind": "k"})))[0] == 201
    assert (conn.direct.answered, conn.direct.handed_on) == (0, 1)


async def test_a_defect_is_logged_and_answered_500_with_its_error_id(
    conn: Conn, monkeypatch: pytest.MonkeyPatch
) -> None:
    """As the guard answers one: the log line carries the id, neither payload nor token."""

    async def broken(*args: Any, **kwargs: Any) -> Any:
        raise RuntimeError("a defect")

    monkeypatch.setattr(routes_jobs, "enqueue", broken)
    with capture_logs() as logs:
        request = _post("/v1/jobs", {"kind": "k", "payload": {"s": "secret-x"}})
        status, headers, body = await conn.ask(request)
    assert status == 500
    assert body["error"]["code"] == "internal_error"
    assert b"retry-after" not in headers
    [entry] = logs
    assert entry["event"] == "coordinator.request.crashed"
    assert entry["error_id"] == body["error"]["details"]["error_id"]
    assert (entry["path"], entry["exc_info"]) == ("/v1/jobs", True)
    assert "secret-x" not in repr(logs)
    assert ADMIN not in repr(logs)
    assert conn.direct.answered == 1


@dataclass
class Held:
    """The enqueue endpoint's service, held until ``go_on`` is set (``started``: it began)."""

    started: asyncio.Event
    go_on: asyncio.Event


@pytest.fixture
def held(monkeypatch: pytest.MonkeyPatch) -> Held:
    hold = Held(asyncio.Event(), asyncio.Event())
    real = services.enqueue

    async def slow(*args: Any, **kwargs: Any) -> Any:
        hold.started.set()
        await hold.go_on.wait()
        return await real(*args, **kwargs)

    monkeypatch.setattr(routes_jobs, "enqueue", slow)
    return hold


async def test_a_client_that_leaves_before_its_answer_gets_nothing_written(
    conn: Conn, held: Held
) -> None:
    conn.protocol.data_received(_post("/v1/jobs", {"kind": "k"}))
    await asyncio.wait_for(held.started.wait(), 5)
    conn.protocol.connection_lost(None)
    held.go_on.set()
    await asyncio.wait_for(asyncio.gather(*conn.protocol.tasks), 5)
    assert conn.wire.data == b""
    # The job was enqueued all the same: a lost answer, not a lost write.
    assert await conn.app.state.coordinator.jobs.count() == 1


async def test_a_shutdown_during_a_direct_answer_closes_after_it(conn: Conn, held: Held) -> None:
    request = _post("/v1/jobs", {"kind": "k"})
    answered = asyncio.ensure_future(conn.wire.answer(conn.protocol, request))
    await asyncio.wait_for(held.started.wait(), 5)
    conn.protocol.shutdown()
    assert not conn.wire.closed
    held.go_on.set()
    status, headers, _ = _parse(await asyncio.wait_for(answered, 5))
    assert headers[b"connection"] == b"close"
    assert conn.wire.closed
    assert status == 201


def test_serve_answers_pipelined_requests_over_a_socket_in_order(tmp_path: Path) -> None:
    """Over a real socket against ``fleet-coordinator serve``: two enqueues (answered
    directly) and a probe (answered by ASGI) in one write, answered in order with
    uvicorn's own headers; the last asks for the close."""
    with Served(cwd=tmp_path) as server:
        token = server.admin_token
        data = b"".join(
            [
                _post("/v1/jobs", {"kind": "first"}, token=token),
                _post("/v1/jobs", {"kind": "second"}, token=token),
                b"GET /healthz HTTP/1.1\r\nhost: x\r\nconnection: close\r\n\r\n",
            ]
        )
        with socket.create_connection(("127.0.0.1", server.port), timeout=10) as sock:
            sock.sendall(data)
            received = b""
            while chunk := sock.recv(65536):
                received += chunk
    answers = [_parse(b"HTTP/1.1 " + a) for a in received.split(b"HTTP/1.1 ")[1:]]
    assert [a[0] for a in answers] == [201, 201, 200]
    assert [a[2].get("kind") for a in answers[:2]] == ["first", "second"]
    for _, headers, _ in answers:
        assert headers[b"server"] == b"uvicorn"
        assert b"date" in headers
    assert answers[2][1][b"connection"] == b"close"


async def test_past_uvicorns_concurrency_limit_its_503_answers_not_the_direct_path(
    conn: Conn,
) -> None:
    """``serve`` sets no ``limit_concurrency``; a server that does gets uvicorn's refusal."""
    protocol, wire = connect(conn.app, limit_concurrency=1)  # this connection is the one
    try:
        answer = await asyncio.wait_for(wire.answer(protocol, _post("/v1/jobs", {"kind": "k"})), 5)
    finally:
        protocol.connection_lost(None)
    assert answer.startswith(b"HTTP/1.1 503 ")
    assert conn.direct.answered == 0


async def test_a_refused_caller_is_authorized_once(
    conn: Conn, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A token the direct path refused is answered by the guard without a second store read."""
    reads = CallCounter(monkeypatch, conn.app.state.coordinator.agents, "get")
    forged = f"fa.{new_id()}.not-the-secret"
    status, headers, body = await conn.ask(_post("/v1/claims", {}, token=forged))
    assert (status, body["error"]["code"]) == (401, "unauthorized")
    assert headers[b"www-authenticate"] == b"Bearer"
    assert conn.direct.handed_on == 1
    assert reads.calls == 1
