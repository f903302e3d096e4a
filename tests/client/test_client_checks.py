"""What both clients check before anything is sent: the token, the payload, the ids."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import httpx
import pytest
from fleet_client import CoordinatorUnavailable, FleetClient, FleetError, NotFound, SyncFleetClient
from pydantic import ValidationError

from tests.support.served import free_port

from .spec_fake import SpecFake

TOKEN = "s3cret-admin-token"

Make = Callable[[str], Any]


def _async_client(token: str) -> FleetClient:
    transport = httpx.MockTransport(SpecFake().handle)
    return FleetClient("http://coordinator", token, transport=transport)


def _sync_client(token: str) -> SyncFleetClient:
    return SyncFleetClient("http://127.0.0.1:9", token)


@pytest.mark.parametrize("make", [_async_client, _sync_client], ids=["async", "sync"])
@pytest.mark.parametrize("bad", [TOKEN + "\rX", "tökén-" + TOKEN, TOKEN + "\x00", "  \r\n"])
def test_a_token_no_header_can_carry_is_refused_when_the_client_is_made(
    make: Make, bad: str
) -> None:
    """A FleetError at once, that never shows the token (not even a part of it)."""
    with pytest.raises(FleetError) as caught:
        make(bad)
    assert TOKEN not in str(caught.value)
    assert "tökén" not in str(caught.value)


async def test_whitespace_around_the_token_is_dropped() -> None:
    """A token read with its line ending (``\\r``, ``\\n``) authenticates as the token."""
    sent: list[str] = []

    def handle(request: httpx.Request) -> httpx.Response:
        sent.append(request.headers["authorization"])
        return httpx.Response(200, json={"items": []})

    async with FleetClient(
        "http://coordinator", f" {TOKEN}\r\n", transport=httpx.MockTransport(handle)
    ) as client:
        await client.list_queues()
    sync = SyncFleetClient("http://127.0.0.1:9", TOKEN + "\r")
    assert sent == [f"Bearer {TOKEN}"]
    assert sync._headers == {"Authorization": f"Bearer {TOKEN}"}


NO_JSON_FORM = [
    {"s": float("nan")},
    {"deep": [{"b": float("inf")}]},
    {"s": -float("inf"), "t": None},
]


@pytest.mark.parametrize("payload", NO_JSON_FORM)
async def test_nan_and_infinity_are_refused_before_any_request(payload: dict[str, Any]) -> None:
    """pydantic would send NaN and ±∞ as null: both clients raise ValidationError instead."""
    sent: list[httpx.Request] = []

    def handle(request: httpx.Request) -> httpx.Response:
        sent.append(request)
        return httpx.Response(500)

    transport = httpx.MockTransport(handle)
    async with FleetClient("http://coordinator", TOKEN, transport=transport) as client:
        with pytest.raises(ValidationError):
            await client.enqueue("k", payload)
        with pytest.raises(ValidationError):
            await client.enqueue("k", {}, lease_seconds=float("nan"))
        with pytest.raises(ValidationError):
            await client.enqueue_batch([{"kind": "k", "payload": payload}])
    with SyncFleetClient("http://127.0.0.1:9", TOKEN) as sync, pytest.raises(ValidationError):
        sync.enqueue("k", payload)  # sent, this would be CoordinatorUnavailable
    assert sent == []


def _no_server(kind: str) -> Any:
    """A client whose every request would fail: what it raises first must come before one."""
    if kind == "sync":
        return SyncFleetClient("http://127.0.0.1:9", TOKEN, retry_timeout=0.1)
    return FleetClient("http://127.0.0.1:9", TOKEN, retry_timeout=0.1)


async def _use(client: Any, method: str, *args: Any, **kwargs: Any) -> Any:
    result = getattr(client, method)(*args, **kwargs)
    return await result if isinstance(client, FleetClient) else result


@pytest.mark.parametrize("kind", ["sync", "async"])
@pytest.mark.parametrize("payload", [[1, 2], "text", 3])
async def test_a_payload_that_is_not_an_object_is_a_validation_error(
    kind: str, payload: Any
) -> None:
    """As docs/client.md promises: pydantic's ValidationError, before any request."""
    client = _no_server(kind)
    with pytest.raises(ValidationError):
        await _use(client, "enqueue", "k", payload)


@pytest.mark.parametrize("kind", ["sync", "async"])
@pytest.mark.parametrize(
    ("method", "args", "kwargs"),
    [
        ("get_job", ("\ud800",), {}),
        ("pause_queue", ("q\udc00",), {}),
        ("list_jobs_page", (), {"queue": "\ud800"}),
        ("cancel_jobs", (), {"kind": "\ud800"}),
        ("create_agent", ("\ud800",), {}),
        ("enqueue", ("k", {"s": "\ud800"}), {}),
    ],
)
async def test_a_lone_surrogate_is_refused_before_any_request(
    kind: str, method: str, args: tuple[Any, ...], kwargs: dict[str, Any]
) -> None:
    """No bare UnicodeEncodeError: a FleetError (or, in a job, a ValidationError)."""
    client = _no_server(kind)
    with pytest.raises((FleetError, ValidationError)) as caught:
        await _use(client, method, *args, **kwargs)
    assert not isinstance(caught.value, CoordinatorUnavailable)  # nothing was sent
    assert "surrogate" in str(caught.value)


@pytest.mark.parametrize("kind", ["sync", "async"])
@pytest.mark.parametrize(
    "url", ["notaurl", "ftp://x", "http://", "http://host:port", "http://[::1"]
)
def test_a_url_that_is_not_http_is_refused_when_the_client_is_made(kind: str, url: str) -> None:
    """Not a coordinator to retry for ten seconds: a FleetError at once."""
    make = SyncFleetClient if kind == "sync" else FleetClient
    with pytest.raises(FleetError) as caught:
        make(url, TOKEN)
    assert "not an http(s) URL" in str(caught.value)


@pytest.mark.parametrize("kind", ["sync", "async"])
async def test_credentials_in_the_url_are_not_shown_in_errors(kind: str) -> None:
    """``http://user:PW@host`` is shown as ``http://***@host``."""
    url = f"http://user:PW-s3cret@127.0.0.1:{free_port()}"
    make = SyncFleetClient if kind == "sync" else FleetClient
    client = make(url, TOKEN, retry_timeout=0.1)
    with pytest.raises(CoordinatorUnavailable) as caught:
        await _use(client, "list_queues")
    assert "PW-s3cret" not in str(caught.value)
    assert "***@127.0.0.1" in str(caught.value)
    with pytest.raises(FleetError) as refused:
        make("ftp://user:PW-s3cret@host", TOKEN)
    assert "PW-s3cret" not in str(refused.value)


@pytest.mark.parametrize(
    ("job_id", "raw_path"),
    [
        ("..", b"/v1/jobs/%2E%2E"),
        (".", b"/v1/jobs/%2E"),
        ("../agents", b"/v1/jobs/..%2Fagents"),
        ("a/b", b"/v1/jobs/a%2Fb"),
        ("a b?c#d", b"/v1/jobs/a%20b%3Fc%23d"),
    ],
)
async def test_an_id_is_one_path_segment_whatever_it_holds(job_id: str, raw_path: bytes) -> None:
    """``get_job("..")`` must not reach ``/v1``, nor ``get_job("../agents")`` the agents."""
    sent: list[bytes] = []

    def handle(request: httpx.Request) -> httpx.Response:
        sent.append(request.url.raw_path)
        return httpx.Response(404, json={"error": {"code": "not_found", "message": "no"}})

    transport = httpx.MockTransport(handle)
    async with FleetClient("http://coordinator", TOKEN, transport=transport) as client:
        with pytest.raises(NotFound):
            await client.get_job(job_id)
    assert sent == [raw_path]


@pytest.mark.parametrize("kind", ["sync", "async"])
async def test_an_empty_id_is_refused_before_any_request(kind: str) -> None:
    """``/v1/jobs/`` is the collection, not a job."""
    with pytest.raises(FleetError, match="empty"):
        await _use(_no_server(kind), "get_job", "")
