"""The hot path (``api/hot.py``) and the direct answers (``api/direct.py``) answer as FastAPI.

Three apps, each on its own memory store and on identical manual clocks, receive
the same script of requests: well-formed ones, and every kind of bad one the hot
path hands back to FastAPI. One is driven through ``serve``'s protocol (its
direct answers first), one through ASGI with the hot path, one without it. Their
answers must match: status, headers that matter and body, ids aside (each app
mints its own).
"""

from __future__ import annotations

import json
import re
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

import httpx
import pytest
from fastapi import APIRouter, Request
from fleet_coordinator import Settings, create_app
from fleet_coordinator.api.deps import AgentAuth, Co, Role
from fleet_coordinator.api.hot import HotPath, _post_routes
from fleet_coordinator.api.limits import REMEMBERED_PATH
from fleet_coordinator.api.middleware import ADMITTED, Admitted, GuardMiddleware
from fleet_coordinator.api.models import ClaimOut, ClaimRequest
from fleet_coordinator.domain import ManualClock
from fleet_coordinator.metrics import Metrics
from starlette.types import Message, Receive, Scope, Send

from tests.support.protocol_transport import ProtocolTransport

ADMIN = "admin-token-for-hot-path-tests"
_ID = re.compile(r"\b[0-9a-f]{32}\b")


class _Counted:
    """The app's direct answers, counting the requests answered and those handed on."""

    def __init__(self, direct: Any) -> None:
        self.direct = direct
        self.answered: list[str] = []
        self.handed_on: list[str] = []

    async def __call__(self, scope: dict[str, Any], body: bytes) -> Any:
        answer = await self.direct(scope, body)
        (self.handed_on if answer is None else self.answered).append(scope["path"])
        return answer


@dataclass
class Side:
    client: httpx.AsyncClient
    clock: ManualClock
    direct: _Counted | None = None  # the protocol's direct answers, on the side that has them
    names: dict[str, str] = field(default_factory=dict)  # placeholder -> this app's value
    hot: int = 0


@pytest.fixture
async def sides() -> AsyncIterator[list[Side]]:
    made: list[Side] = []
    async with contextlib_stack() as stack:
        for how in ("direct", "hot", "plain"):
            settings = Settings(
                store_url="memory://",
                admin_token=ADMIN,
                reaper_enabled=False,
                max_payload_bytes=4096,
                long_poll_interval_seconds=0.05,
            )
            clock = ManualClock()
            app: Any = create_app(settings, clock=clock, hot_path=how != "plain")
            direct = None
            if how == "direct":
                direct = app.direct_answers = _Counted(app.direct_answers)
            await stack.enter_async_context(app.router.lifespan_context(app))
            transport: httpx.AsyncBaseTransport = (
                ProtocolTransport(app) if how == "direct" else httpx.ASGITransport(app=app)
            )
            client = await stack.enter_async_context(
                httpx.AsyncClient(transport=transport, base_url="http://test")
            )
            made.append(Side(client, clock, direct))
        yield made


def contextlib_stack() -> Any:
    import contextlib

    return contextlib.AsyncExitStack()


def _fill(text: str, names: dict[str, str]) -> str:
    for key, value in names.items():
        text = text.replace("{" + key + "}", value)
    return text


def _normal(body: Any) -> Any:
    """The body with ids and tokens replaced, so the two apps' answers compare."""
    text = json.dumps(body, sort_keys=True)
    text = re.sub(r'"token": "[^"]+"', '"token": "T"', text)
    return json.loads(_ID.sub("ID", text))


async def _send(
    side: Side, method: str, path: str, token: str | None, body: Any = None, **kw: Any
) -> httpx.Response:
    headers = dict(kw.pop("headers", {}))
    if token is not None:
        headers["Authorization"] = _fill(f"Bearer {token}", side.names)
    if body is not None:
        kw["content"] = _fill(body if isinstance(body, str) else json.dumps(body), side.names)
        headers.setdefault("content-type", "application/json")
    if headers.get("content-type") == "":
        del headers["content-type"]  # none at all (httpx adds none for bytes content)
    return await side.client.request(method, _fill(path, side.names), headers=headers, **kw)


async def _both(
    sides: list[Side], method: str, path: str, token: str | None, body: Any = None, **kw: Any
) -> list[httpx.Response]:
    answers = [await _send(s, method, path, token, body, **kw) for s in sides]
    plain = answers[-1]
    for hot in answers[:-1]:
        assert hot.status_code == plain.status_code, (path, body, hot.text, plain.text)
        assert hot.headers.get("content-type") == plain.headers.get("content-type")
        assert hot.headers.get("www-authenticate") == plain.headers.get("www-authenticate")
        assert hot.headers.get("retry-after") == plain.headers.get("retry-after")
        if hot.status_code == 307:  # FastAPI's trailing-slash redirect, from every path
            assert hot.headers["location"] == plain.headers["location"]
            continue
        assert _normal(hot.json()) == _normal(plain.json()), (path, body)
    return answers


async def _agent(sides: list[Side], name: str, **fields: Any) -> None:
    answers = await _both(sides, "POST", "/v1/agents", "{admin}", {"name": name, **fields})
    for side, r in zip(sides, answers, strict=True):
        side.names[name] = r.json()["token"]
        side.names[f"{name}_id"] = r.json()["agent"]["id"]


async def _job(sides: list[Side], name: str, **fields: Any) -> None:
    answers = await _both(sides, "POST", "/v1/jobs", "{admin}", {"kind": "k", **fields})
    for side, r in zip(sides, answers, strict=True):
        side.names[name] = r.json()["id"]


BAD_BODIES: list[Any] = [
    "",
    "{",
    "[]",
    "null",
    '{"epoch": "one"}',
    '{"epoch": 1, "extra": true}',
    '{"epoch": NaN}',
    '{"epoch": 1e400}',
    '{"epoch": 123456789012345678901234567890}',
    '{"epoch": 1, "result": {"x": NaN}}',
    '{"epoch": 1, "result": {"x": 123456789012345678901234567890}}',
    '{"epoch": 1, "result": "' + "x" * 5000 + '"}',
    '{"epoch": 1, "error": {"message": 5}}',
    '{"max_jobs": 0}',
    '{"max_jobs": 101}',
    '{"wait_seconds": -1}',
    '{"queues": "q"}',
    '"\\ud800"',
    "[" * 5000 + "]" * 5000,
    '{"kind": "k", "epoch": 1, "payload": ' + "[" * 900 + "]" * 900 + "}",
    '{"kind": "k", "epoch": 1, "payload": ' + '{"a":' * 65 + "1" + "}" * 65 + "}",
    '{"epoch": 1, "result": ' + "[" * 900 + "]" * 900 + "}",
    '{"epoch": 1, "progress": ' + '{"a":' * 65 + "1" + "}" * 65 + "}",
]


async def test_hot_and_plain_paths_answer_alike(sides: list[Side]) -> None:
    for side in sides:
        side.names["admin"] = ADMIN
    await _agent(sides, "a", capacity=2)
    await _agent(sides, "b")
    for n in range(3):
        await _job(sides, f"j{n}", queue="q", priority=n, payload={"n": n})
    # Enqueue: bad bodies, roles and tokens, idempotency replays and conflicts.
    for body in [*BAD_BODIES, {"kind": ""}, {"kind": "k", "priority": 10**6}]:
        await _both(sides, "POST", "/v1/jobs", "{admin}", body)
    for token in (None, "{a}", "nope", "{admin}x"):
        await _both(sides, "POST", "/v1/jobs", token, {"kind": "k"})
    await _both(sides, "POST", "/v1/jobs", "{admin}", {"kind": "k", "idempotency_key": "i"})
    await _both(sides, "POST", "/v1/jobs", "{admin}", {"kind": "k", "idempotency_key": "i"})
    await _both(sides, "POST", "/v1/jobs", "{admin}", {"kind": "j", "idempotency_key": "i"})
    # Content types: FastAPI parses only JSON ones, and no content type at all is not JSON
    # (its strict_content_type, a CSRF guard); the hot path must agree with it on each.
    for ctype in (
        "text/plain",
        "",
        "application/json; charset=utf-8",
        "APPLICATION/JSON",
        "application/json ; charset=utf-8",
        "application/vnd.fleet+json",
        "application/jsonx",
        "multipart/form-data; boundary=x",
    ):
        typed = {"content-type": ctype}
        await _both(sides, "POST", "/v1/jobs", "{admin}", {"kind": "k"}, headers=typed)
        await _both(sides, "POST", "/v1/claims", "{a}", {"queues": ["none"]}, headers=typed)
    batch = {"jobs": [{"kind": "k", "queue": "other"}, {"kind": "k", "queue": "other"}]}
    await _both(sides, "POST", "/v1/jobs/batch", "{admin}", batch)
    await _both(sides, "POST", "/v1/jobs/batch", "{admin}", {"jobs": []})
    await _both(sides, "POST", "/v1/jobs/batch", "{a}", batch)
    # Claims: bad bodies and tokens, then real ones (highest priority first).
    for body in BAD_BODIES:
        await _both(sides, "POST", "/v1/claims", "{a}", body)
    for token in (None, "{admin}", "nope"):
        await _both(sides, "POST", "/v1/claims", token, {"queues": ["q"]})
    await _both(sides, "POST", "/v1/claims", "{a}", {"queues": ["q"], "max_jobs": 2})
    await _both(sides, "POST", "/v1/claims", "{b}", {"queues": ["q"]})
    await _both(sides, "POST", "/v1/claims", "{b}", {"queues": ["none"], "wait_seconds": 0})
    # Lease calls: every action with bad bodies, wrong tokens, other agents, stale epochs.
    for action, body in (
        ("heartbeat", {"epoch": 1, "progress": {"p": 1}}),
        ("fail", {"epoch": 1, "error": "m", "retryable": True}),
        ("release", {"epoch": 1}),
        ("complete", {"epoch": 1, "result": {"ok": True}}),
    ):
        for bad in BAD_BODIES:
            await _both(sides, "POST", f"/v1/jobs/{{j2}}/{action}", "{a}", bad)
        await _both(sides, "POST", f"/v1/jobs/{{j2}}/{action}", "{b}", body)
        await _both(sides, "POST", f"/v1/jobs/{{j2}}/{action}", "{admin}", body)
        await _both(sides, "POST", f"/v1/jobs/{{j2}}/{action}", None, body)
        await _both(sides, "POST", f"/v1/jobs/unknown/{action}", "{a}", body)
        await _both(sides, "POST", f"/v1/jobs/{{j2}}/{action}", "{a}", {**body, "epoch": 7})
    await _both(sides, "POST", "/v1/jobs/{j1}/heartbeat", "{a}", {"epoch": 1})
    await _both(sides, "POST", "/v1/jobs/{j1}/complete", "{a}", {"epoch": 1, "result": [1]})
    await _both(sides, "POST", "/v1/jobs/{j1}/complete", "{a}", {"epoch": 1})
    await _both(sides, "POST", "/v1/jobs/{j0}/fail", "{b}", {"epoch": 1, "error": "x"})
    # Batch reports: bad bodies, roles, repeated jobs, mixed outcomes, a claim after them.
    await _job(sides, "j3", queue="r")
    await _both(sides, "POST", "/v1/claims", "{a}", {"queues": ["r"]})
    for bad in [*BAD_BODIES, '{"items": [{"job_id": "x", "epoch": 1, "action": "fail"}]}']:
        await _both(sides, "POST", "/v1/reports", "{a}", bad)
    twice = {"job_id": "{j3}", "epoch": 1, "action": "heartbeat"}
    await _both(sides, "POST", "/v1/reports", "{a}", {"items": [twice, twice]})
    for token in (None, "{admin}", "nope"):
        await _both(sides, "POST", "/v1/reports", token, {"items": [twice]})
    await _both(sides, "POST", "/v1/reports", "{a}", {"items": [twice]})
    await _job(sides, "j4", queue="r")
    mixed = {
        "items": [
            {"job_id": "{j3}", "epoch": 1, "action": "complete", "result": {"r": 1}},
            {"job_id": "{j0}", "epoch": 1, "action": "release"},
            {"job_id": "unknown", "epoch": 1, "action": "heartbeat"},
            {"job_id": "{j1}", "epoch": 1, "action": "complete", "result": "x" * 5000},
        ],
        "claim": {"queues": ["r"], "max_jobs": 2},
    }
    await _both(sides, "POST", "/v1/reports", "{a}", mixed)
    # Neighbours of the hot routes still go to FastAPI: other methods, near paths.
    await _both(sides, "GET", "/v1/claims", "{a}")
    await _both(sides, "POST", "/v1/claims/", "{a}", {})
    await _both(sides, "POST", "/v1/jobs/{j1}/complete/x", "{a}", {"epoch": 1})
    await _both(sides, "PUT", "/v1/jobs/{j1}/complete", "{a}", {"epoch": 1})
    await _both(sides, "GET", "/v1/jobs/{j0}", "{admin}")
    await _both(sides, "GET", "/v1/jobs/{j1}", "{admin}")
    await _both(sides, "GET", "/v1/queues", "{admin}")
    # The direct side did answer from the protocol, and handed the bad requests on.
    direct = sides[0].direct
    assert direct is not None
    assert len(direct.answered) >= 30, direct.answered
    assert len(direct.handed_on) >= 5 * len(BAD_BODIES), direct.handed_on
    assert "/v1/reports" in direct.answered
    assert "/v1/jobs/batch" in direct.answered


async def test_the_hot_path_serves_well_formed_requests_and_replays_the_rest() -> None:
    """The parity test would pass with the hot path never taken: show when it is.

    The hot path sits inside the guard, as in the app: the guard reads the body (in
    two chunks here) and checks the caller once, and the hot path serves from that.
    """
    settings = Settings(store_url="memory://", admin_token=ADMIN, reaper_enabled=False)
    app = create_app(settings, hot_path=False)
    inner: list[bytes] = []

    async def fastapi_stand_in(scope: Scope, receive: Receive, send: Send) -> None:
        body = b""
        more = True
        while more:
            message = await receive()
            body += message["body"]
            more = message["more_body"]
        inner.append(body)
        await send({"type": "http.response.start", "status": 418, "headers": []})
        await send({"type": "http.response.body", "body": b""})

    hot = GuardMiddleware(HotPath(fastapi_stand_in), settings=settings, metrics=Metrics())

    async def call(path: str, token: str, body: bytes, json: bool = True) -> int:
        headers = [(b"authorization", f"Bearer {token}".encode())]
        if json:
            headers.append((b"content-type", b"application/json"))
        scope = {"type": "http", "method": "POST", "path": path, "headers": headers, "app": app}
        chunks = [body[:3], body[3:]]

        async def receive() -> Message:
            chunk = chunks.pop(0)
            return {"type": "http.request", "body": chunk, "more_body": bool(chunks)}

        sent: list[Message] = []

        async def send(message: Message) -> None:
            sent.append(message)

        await hot(scope, receive, send)
        status: int = sent[0]["status"]
        return status

    async with app.router.lifespan_context(app):
        assert await call("/v1/jobs", ADMIN, b'{"kind": "k"}') == 201
        assert await call("/v1/jobs/batch", ADMIN, b'{"jobs": [{"kind": "k"}]}') == 201
        assert inner == []
        # Invalid or not hot: FastAPI gets the body, whole, once.
        assert await call("/v1/jobs", ADMIN, b'{"kind": 1}') == 418
        assert await call("/v1/jobs/x/cancel", ADMIN, b"{}") == 418  # no body model: not hot
        # No content type: FastAPI does not read the body as JSON, so neither may the hot path.
        assert await call("/v1/jobs", ADMIN, b'{"kind": "k"}', json=False) == 418
        assert inner == [b'{"kind": 1}', b"{}", b'{"kind": "k"}']
        # An unknown token is the guard's answer: neither path reads the body.
        assert await call("/v1/jobs", "nope", b'{"kind": "k"}') == 401
        # What is hot comes from the app's routes: any authenticated POST with a body model.
        assert await call("/v1/agents", ADMIN, b'{"name": "a"}') == 201
        assert len(inner) == 3


async def test_the_hot_path_serves_only_a_caller_the_guard_checked_for_the_route_role() -> None:
    """Without the guard's ``Admitted``, or with one checked for another role, FastAPI answers."""
    settings = Settings(store_url="memory://", admin_token=ADMIN, reaper_enabled=False)
    app = create_app(settings, hot_path=False)
    answered: list[int] = []

    async def fastapi_stand_in(scope: Scope, receive: Receive, send: Send) -> None:
        answered.append(418)

    hot = HotPath(fastapi_stand_in)
    body = b'{"kind": "k"}'

    async def call(admitted: Admitted | None) -> list[Message]:
        scope: dict[str, Any] = {"type": "http", "method": "POST", "path": "/v1/jobs", "app": app}
        if admitted is not None:
            scope[ADMITTED] = admitted
        sent: list[Message] = []

        async def send(message: Message) -> None:
            sent.append(message)

        await hot(scope, _nothing, send)
        return sent

    async with app.router.lifespan_context(app):
        assert await call(None) == []
        assert await call(Admitted(body, None, None, None)) == []
        assert await call(Admitted(body, None, Role.AGENT, None)) == []
        assert answered == [418, 418, 418]
        assert await call(Admitted(body, None, Role.ADMIN, None)) == []  # no content type
        assert answered == [418, 418, 418, 418]
        sent = await call(Admitted(body, b"application/json", Role.ADMIN, None))
        assert sent[0]["status"] == 201
        assert answered == [418, 418, 418, 418]


async def _nothing() -> Message:
    raise AssertionError("the body was read again")


def test_what_is_hot_comes_from_the_routes_and_asks_for_nothing_fastapi_alone_supplies() -> None:
    """Authenticated async POSTs with a body model are hot; a Request parameter, a plain
    ``def``, no body or no token role leave a route to FastAPI."""
    app = create_app(Settings(store_url="memory://", admin_token=ADMIN))
    extra = APIRouter(prefix="/x")

    @extra.post("/hot")
    async def hot(body: ClaimRequest, agent: AgentAuth, co: Co) -> ClaimOut:
        return ClaimOut(leases=[])

    @extra.post("/request")
    async def with_request(body: ClaimRequest, agent: AgentAuth, request: Request) -> ClaimOut:
        return ClaimOut(leases=[])

    @extra.post("/sync")
    def sync(body: ClaimRequest, agent: AgentAuth) -> ClaimOut:
        return ClaimOut(leases=[])

    @extra.post("/anonymous")
    async def anonymous(body: ClaimRequest) -> ClaimOut:
        return ClaimOut(leases=[])

    app.include_router(extra)
    served = {r.path: r.endpoint is not None for r in _post_routes(app)}
    assert all(served[p] for p in ("/v1/reports", "/v1/claims", "/v1/jobs"))
    assert not served["/v1/jobs/{job_id}/cancel"]  # no body
    assert served["/x/hot"]
    assert not served["/x/request"]
    assert not served["/x/sync"]
    assert not served["/x/anonymous"]


async def test_only_paths_of_a_route_s_length_are_remembered() -> None:
    """A route match is kept for short paths only: unique long paths (anyone may send
    them, each a 404) cannot fill the guard's and the hot path's caches with their text."""
    app = create_app(Settings(store_url="memory://", admin_token="t" * 32))
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://x") as client:
        for i in range(3):
            long = f"/v1/{i}" + "x" * REMEMBERED_PATH
            assert (await client.get(long)).status_code == 404
            assert (await client.post(long, json={})).status_code == 404
        layers: list[Any] = []
        layer: Any = app.middleware_stack
        while layer is not None:
            layers.append(layer)
            layer = getattr(layer, "app", None)
        [guard] = [x for x in layers if isinstance(x, GuardMiddleware)]
        [hot] = [x for x in layers if isinstance(x, HotPath)]
        assert guard.rules(app).remembered.cache_info().currsize == 0
        assert hot.routes._match.cache_info().currsize == 0
        assert (await client.post("/v1/short", json={})).status_code == 404
        assert guard.rules(app).remembered.cache_info().currsize == 1
        assert hot.routes._match.cache_info().currsize == 1


def test_every_string_of_a_request_body_is_bounded_in_the_schema() -> None:
    """The guard bounds a body from its route's schema (api/limits.py), and a string with
    no maxLength counts as a free-form value, twice FLEET_MAX_PAYLOAD_BYTES: one such
    field (the traceparent's) doubled POST /v1/jobs's limit. Free-form values are the
    payloads, results and progress, which have no string type."""
    app = create_app(Settings(store_url="memory://", admin_token="t" * 32))
    schema = app.openapi()
    components = schema["components"]["schemas"]
    unbounded: list[str] = []

    def walk(node: Any, where: str, seen: frozenset[str]) -> None:
        if not isinstance(node, dict):
            return
        ref = node.get("$ref")
        if isinstance(ref, str):
            name = ref.rsplit("/", 1)[-1]
            if name not in seen:
                walk(components[name], f"{where} {name}", seen | {name})
            return
        bounded = "maxLength" in node or "enum" in node or "const" in node or "format" in node
        if node.get("type") == "string" and not bounded:
            unbounded.append(where)
        for key, value in (node.get("properties") or {}).items():
            walk(value, f"{where}.{key}", seen)
        for key in ("items", "additionalProperties"):
            walk(node.get(key), f"{where}[]", seen)
        for option in node.get("anyOf", []) + node.get("oneOf", []) + node.get("allOf", []):
            walk(option, where, seen)

    for path, operations in schema["paths"].items():
        for method, operation in operations.items():
            body = operation.get("requestBody", {}).get("content", {}).get("application/json")
            if body is not None:
                walk(body["schema"], f"{method.upper()} {path}", frozenset())
    assert unbounded == []
