"""``FleetClient`` (httpx) and ``SyncFleetClient`` (its own pool) behave alike on a real socket.

Both talk to one scripted HTTP/1.1 server in a thread: the same calls must send
the same requests, and the same answers must give the same results, the same
exceptions and the same retries — only safe calls retried.
"""

from __future__ import annotations

import asyncio
import base64
import socket
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlsplit

import orjson
import pytest
from fleet_client import (
    Conflict,
    CoordinatorUnavailable,
    FleetClient,
    FleetError,
    JobDetail,
    NotFound,
    ServerError,
    SyncFleetClient,
)

Reply = tuple[int, dict[str, str], bytes]
"""(status, headers, body)."""
Answer = Reply | str | float
"""A reply; "drop" closes the connection unanswered; a float answers late."""

JOB = {
    "id": "j1",
    "queue": "default",
    "kind": "k",
    "payload": {},
    "status": "queued",
    "priority": 0,
    "attempts": 0,
    "max_attempts": 3,
    "created_at": "2026-12-05T00:00:00Z",
    "updated_at": "2026-12-05T00:00:00Z",
    "run_after": "2026-12-05T00:00:00Z",
}


@dataclass
class Scripted:
    """A server answering each request with the next scripted answer."""

    url: str = ""
    answers: list[Answer] = field(default_factory=list)
    seen: list[tuple[str, str, dict[str, str], bytes]] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)
    closed: threading.Event = field(default_factory=threading.Event)
    ports: list[int] = field(default_factory=list)
    """The client port of each request: one per connection."""


def ok(body: Any, status: int = 200) -> Reply:
    return status, {}, orjson.dumps(body)


def error(status: int, code: str, headers: dict[str, str] | None = None) -> Reply:
    body = {"error": {"code": code, "message": code, "details": {}}}
    return status, headers or {}, orjson.dumps(body)


@pytest.fixture
def scripted() -> Iterator[Scripted]:
    """The scripted server on 127.0.0.1, in a thread."""
    state = Scripted()

    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, format: str, *args: Any) -> None:
            pass

        def _any(self) -> None:
            size = int(self.headers.get("Content-Length") or 0)
            body = self.rfile.read(size) if size else b""
            headers = {k.lower(): v for k, v in self.headers.items()}
            with state.lock:
                state.seen.append((self.command, self.path, headers, body))
                state.ports.append(self.client_address[1])
                answer = state.answers.pop(0)
            if answer == "drop":
                self.close_connection = True
                self.connection.shutdown(socket.SHUT_RDWR)
                return
            if isinstance(answer, float):
                threading.Event().wait(answer)  # answer late: the client has timed out
            status, extra, content = answer if isinstance(answer, tuple) else ok({"items": []})
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(content)))
            for name, value in extra.items():
                self.send_header(name, value)
            self.end_headers()
            self.wfile.write(content)
            if "x-then-close" in extra:  # as an idle keep-alive timeout does, unannounced
                self.wfile.flush()
                self.close_connection = True
                self.connection.shutdown(socket.SHUT_RDWR)
                state.closed.set()

    for method in ("GET", "POST", "PUT", "DELETE"):  # http.server calls do_<METHOD>
        setattr(Handler, f"do_{method}", Handler._any)
    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    server.daemon_threads = True
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    state.url = f"http://127.0.0.1:{server.server_address[1]}"
    try:
        yield state
    finally:
        server.shutdown()
        server.server_close()


Run = Callable[[str, Callable[[Any], Any], dict[str, Any]], Any]


def run_sync(url: str, use: Callable[[Any], Any], options: dict[str, Any]) -> Any:
    with SyncFleetClient(url, "admin-token", **options) as client:
        return use(client)


def run_async(url: str, use: Callable[[Any], Any], options: dict[str, Any]) -> Any:
    async def main() -> Any:
        async with FleetClient(url, "admin-token", **options) as client:
            return await use(client)

    return asyncio.run(main())


def call(kind: str, scripted: Scripted, use: Callable[[Any], Any], **options: Any) -> Any:
    """``use(client)`` with the kind of client asked for (awaited for the async one)."""
    options.setdefault("retry_timeout", 5)
    runner = run_sync if kind == "sync" else run_async
    return runner(options.pop("url", scripted.url), use, options)


KINDS = ["sync", "async"]


def test_the_same_calls_send_the_same_requests(scripted: Scripted) -> None:
    """Method, path, query, body bytes and the headers that matter: identical."""

    def script(client: Any) -> list[Any]:
        return [
            client.enqueue("k", {"n": "é"}, priority=3),
            client.list_jobs_page(status="queued", cursor="a+b/c= d", limit=5),
            client.set_schedule("nightly", "0 3 * * *", {"kind": "k"}),
            client.delete_agent("a/1"),
        ]

    async def ascript(client: Any) -> list[Any]:
        return [
            await client.enqueue("k", {"n": "é"}, priority=3),
            await client.list_jobs_page(status="queued", cursor="a+b/c= d", limit=5),
            await client.set_schedule("nightly", "0 3 * * *", {"kind": "k"}),
            await client.delete_agent("a/1"),
        ]

    schedule = {
        "name": "nightly",
        "cron": "0 3 * * *",
        "timezone": "UTC",
        "job": {"kind": "k"},
        "paused": False,
        "next_run_at": None,
        "last_run_at": None,
    }
    requests = []
    for kind in KINDS:
        scripted.seen.clear()
        scripted.answers = [
            ok(JOB, 201),
            ok({"items": [JOB], "next_cursor": None}),
            ok(schedule),
            (204, {}, b""),
        ]
        results = call(kind, scripted, script if kind == "sync" else ascript)
        assert [results[0].id, results[1].items[0].id] == ["j1", "j1"]
        assert [results[2].name, results[3]] == ["nightly", None]
        requests.append(
            [
                (
                    method,
                    urlsplit(path).path,
                    parse_qs(urlsplit(path).query),
                    headers.get("authorization"),
                    headers.get("content-type"),
                    body,
                )
                for method, path, headers, body in scripted.seen
            ]
        )
    assert requests[0] == requests[1]
    method, path, _, auth, ctype, body = requests[0][0]
    assert (method, path, auth, ctype) == (
        "POST",
        "/v1/jobs",
        "Bearer admin-token",
        "application/json",
    )
    assert orjson.loads(body) == {"kind": "k", "payload": {"n": "é"}, "priority": 3}
    assert requests[0][1][2] == {"status": ["queued"], "cursor": ["a+b/c= d"], "limit": ["5"]}
    assert requests[0][3][:2] == ("DELETE", "/v1/agents/a%2F1")


@pytest.mark.parametrize("kind", KINDS)
def test_a_safe_call_is_retried_after_503_and_a_dropped_connection(
    scripted: Scripted, kind: str
) -> None:
    """A read answered 503 (``Retry-After: 0``), then dropped, then answered: three requests."""
    scripted.answers = [
        error(503, "store_unavailable", {"Retry-After": "0"}),
        "drop",
        ok({"items": []}),
    ]
    assert call(kind, scripted, lambda c: c.list_agents()) == []
    assert [path for _, path, _, _ in scripted.seen] == ["/v1/agents"] * 3


@pytest.mark.parametrize("kind", KINDS)
def test_an_unsafe_call_is_sent_once(scripted: Scripted, kind: str) -> None:
    """An enqueue without an idempotency key is not repeated after a dropped connection."""
    scripted.answers = ["drop", ok(JOB, 201)]
    with pytest.raises(CoordinatorUnavailable):
        call(kind, scripted, lambda c: c.enqueue("k"))
    assert len(scripted.seen) == 1


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize(
    ("answer", "raised"),
    [(error(500, "internal_error"), ServerError), (error(409, "already_terminal"), Conflict)],
)
def test_a_500_and_a_409_raise_at_once(
    scripted: Scripted, kind: str, answer: Answer, raised: type[Exception]
) -> None:
    """A defect and a conflict are not retried, even on a safe call."""
    scripted.answers = [answer]
    with pytest.raises(raised):
        call(kind, scripted, lambda c: c.get_agent("a1"))
    assert len(scripted.seen) == 1


@pytest.mark.parametrize("kind", KINDS)
def test_a_missing_job_is_not_found_and_a_missing_agent_deleted_is_done(
    scripted: Scripted, kind: str
) -> None:
    """404 raises ``NotFound`` for a read; a delete of what is gone returns quietly."""
    scripted.answers = [error(404, "not_found")]
    with pytest.raises(NotFound):
        call(kind, scripted, lambda c: c.get_job("j9"))
    scripted.answers = [error(404, "not_found")]
    assert call(kind, scripted, lambda c: c.delete_schedule("gone")) is None


@pytest.mark.parametrize("kind", KINDS)
def test_an_answer_too_late_is_unavailable(scripted: Scripted, kind: str) -> None:
    """No answer within ``timeout``: ``CoordinatorUnavailable`` once the retries are spent."""
    scripted.answers = [0.5, 0.5, 0.5, 0.5, 0.5, 0.5]
    with pytest.raises(CoordinatorUnavailable):
        call(kind, scripted, lambda c: c.list_queues(), timeout=0.1, retry_timeout=0.15)


@pytest.mark.parametrize("kind", KINDS)
def test_a_coordinator_behind_a_path_prefix(scripted: Scripted, kind: str) -> None:
    """A base URL with a path keeps it in front of every request's path."""
    scripted.answers = [ok({"items": []})]
    assert call(kind, scripted, lambda c: c.list_queues(), url=scripted.url + "/fleet/") == []
    assert scripted.seen[0][1] == "/fleet/v1/queues"


@pytest.mark.parametrize("kind", KINDS)
def test_a_connection_the_server_closed_while_idle_is_not_reused(
    scripted: Scripted, kind: str
) -> None:
    """An enqueue (sent once, never retried) after the server closed the idle connection."""
    closing = (200, {"x-then-close": "1"}, orjson.dumps({"items": []}))
    scripted.answers = [closing, ok(JOB, 201)]

    def script(client: Any) -> Any:
        client.list_queues()
        assert scripted.closed.wait(5)  # the server closed the connection the client keeps
        return client.enqueue("k")

    async def ascript(client: Any) -> Any:
        await client.list_queues()
        assert await asyncio.to_thread(scripted.closed.wait, 5)
        return await client.enqueue("k")

    job = call(kind, scripted, script if kind == "sync" else ascript)
    assert job.id == "j1"
    assert [path for _, path, _, _ in scripted.seen] == ["/v1/queues", "/v1/jobs"]


_PROXY_VARIABLES = ("HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY", "NO_PROXY")


@pytest.fixture
def no_proxy_settings(monkeypatch: pytest.MonkeyPatch) -> pytest.MonkeyPatch:
    """No proxy variable from the machine running the tests, in either case."""
    for name in _PROXY_VARIABLES:
        monkeypatch.delenv(name, raising=False)
        monkeypatch.delenv(name.lower(), raising=False)
    return monkeypatch


@pytest.mark.parametrize("kind", KINDS)
def test_both_clients_go_through_the_http_proxy_the_environment_names(
    scripted: Scripted, kind: str, no_proxy_settings: pytest.MonkeyPatch
) -> None:
    """``HTTP_PROXY`` as httpx takes it: the absolute URL as the request target, the
    URL's credentials as ``Proxy-Authorization: Basic``. The scripted server is the proxy."""
    no_proxy_settings.setenv("HTTP_PROXY", scripted.url.replace("://", "://fleet:s%40cret@"))
    scripted.answers = [ok(JOB)]
    job = call(kind, scripted, lambda c: c.get_job("j1"), url="http://coordinator.invalid:8787")
    assert job.id == "j1"
    [(method, target, headers, _)] = scripted.seen
    assert (method, target) == ("GET", "http://coordinator.invalid:8787/v1/jobs/j1")
    assert headers["proxy-authorization"] == "Basic " + base64.b64encode(b"fleet:s@cret").decode()
    assert headers["authorization"] == "Bearer admin-token"


@pytest.mark.parametrize("kind", KINDS)
def test_no_proxy_sends_straight_to_the_coordinator(
    scripted: Scripted, kind: str, no_proxy_settings: pytest.MonkeyPatch
) -> None:
    """A host ``NO_PROXY`` names is reached directly, the proxy untouched."""
    no_proxy_settings.setenv("HTTP_PROXY", "http://127.0.0.1:9")  # nothing listens there
    no_proxy_settings.setenv("NO_PROXY", "127.0.0.1")
    scripted.answers = [ok(JOB)]
    assert call(kind, scripted, lambda c: c.get_job("j1")).id == "j1"
    assert [target for _, target, _, _ in scripted.seen] == ["/v1/jobs/j1"]


def test_the_sync_client_refuses_an_https_proxy_at_once(
    no_proxy_settings: pytest.MonkeyPatch,
) -> None:
    """It tunnels through ``http://`` proxies only; an ``https://`` one is a clear error."""
    no_proxy_settings.setenv("HTTPS_PROXY", "https://proxy.invalid:3128")
    with pytest.raises(FleetError, match="only http:// proxies"):
        SyncFleetClient("https://coordinator.invalid", "admin-token")


@pytest.mark.parametrize("kind", ["sync", "async"])
def test_calls_one_after_another_share_one_connection(scripted: Scripted, kind: str) -> None:
    """Keep-alive: five calls in a row, one connection (the sync client reads the answer
    off the socket itself, and must give the connection back for the next call)."""
    scripted.answers += [ok(JOB)] * 5

    def script(client: Any) -> list[Any]:
        return [client.get_job("j1") for _ in range(5)]

    async def ascript(client: Any) -> list[Any]:
        return [await client.get_job("j1") for _ in range(5)]

    jobs = call(kind, scripted, script if kind == "sync" else ascript)
    assert [job.id for job in jobs] == ["j1"] * 5
    assert len(set(scripted.ports)) == 1


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize(
    "body", [b"<!doctype html><p>a web server</p>", b'{"unrelated": true}', b"\xff\xfe"]
)
def test_an_answer_that_is_not_the_coordinators_is_a_fleet_error(
    scripted: Scripted, kind: str, body: bytes
) -> None:
    """A 200 in HTML (``--url`` names another server), or JSON of another shape: FleetError."""
    scripted.answers = [(200, {"Content-Type": "text/html"}, body)]
    with pytest.raises(FleetError) as caught:
        call(kind, scripted, lambda c: c.get_job("j1"))
    assert type(caught.value) is FleetError
    assert caught.value.code == "unexpected_answer"


@pytest.mark.parametrize("kind", KINDS)
def test_list_jobs_page_takes_page_size_as_list_jobs_does_and_limit_still(
    scripted: Scripted, kind: str
) -> None:
    """client.md: ``list_jobs_page(..., page_size=, cursor=)``; it raised TypeError before."""
    scripted.answers = [ok({"items": [], "next_cursor": None})] * 2

    def script(client: Any) -> Any:
        return [client.list_jobs_page(queue="q", page_size=7), client.list_jobs_page(limit=3)]

    async def ascript(client: Any) -> Any:
        return [
            await client.list_jobs_page(queue="q", page_size=7),
            await client.list_jobs_page(limit=3),
        ]

    pages = call(kind, scripted, script if kind == "sync" else ascript)
    assert [page.items for page in pages] == [[], []]
    queries = [parse_qs(urlsplit(path).query) for _, path, _, _ in scripted.seen]
    assert queries == [{"queue": ["q"], "limit": ["7"]}, {"limit": ["3"]}]


def test_one_connection_reads_answer_after_answer_each_whole(scripted: Scripted) -> None:
    """The sync client's parser serves its connection's every answer: each read anew (no
    body, status or header of the one before), errors and all, over one connection."""
    later = {**JOB, "id": "j2", "payload": {"n": 1}}
    scripted.answers += [
        ok(JOB),
        error(404, "not_found"),
        ok(later),
        error(409, "conflict", {"X-Extra": "1"}),
        ok({"items": [JOB, later]}),
        ok(JOB),
    ]
    with SyncFleetClient(scripted.url, "admin-token") as client:
        assert client.get_job("j1").id == "j1"
        with pytest.raises(NotFound, match="404 not_found"):
            client.get_job("j0")
        assert client.get_job("j2") == JobDetail.model_validate(later)
        with pytest.raises(Conflict, match="409 conflict"):
            client.cancel_job("j1")
        assert [job.id for job in client.cancel_jobs(queue="q")] == ["j1", "j2"]
        assert client.get_job("j1") == JobDetail.model_validate(JOB)
    assert len(set(scripted.ports)) == 1
