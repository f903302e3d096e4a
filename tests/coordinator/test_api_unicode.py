"""Text that is not valid Unicode, in every string position of every request model.

The positions are derived from the app's OpenAPI schema (so a model or route added
later is covered without touching this file): every string property, array item,
map key and map value, and every free-form JSON value (a payload, a result,
progress), where hypothesis places the bad string as a key or a value at some depth.
Hypothesis draws the bad string (a lone high or low surrogate somewhere in ordinary
text) and how it travels: as a JSON escape (``"\\ud800"``), as UTF-8-encoded
surrogate bytes, or as bytes that are not UTF-8 at all. Every such request gets 400
or 422 in the error shape, on every provider, and the store is unchanged.
"""

from __future__ import annotations

import json
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import Any, cast

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient
from fleet_coordinator import Settings, create_app
from fleet_coordinator.api.deps import Role
from fleet_coordinator.api.limits import RouteRules
from fleet_coordinator.services import Coordinator
from fleet_coordinator.store import every_job
from fleet_datastore import Query
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from .conftest import store_settings

ADMIN = "admin-token-for-unicode-tests"
Step = tuple[str, Any]


@dataclass(frozen=True)
class Position:
    """One place a string can go in one operation's request body."""

    method: str
    path: str
    steps: tuple[Step, ...]  # ("prop", name) ("item", None) ("key", None) ("value", None)
    # ("option", i) picks an anyOf branch; a trailing ("any", None) is free-form JSON

    def __str__(self) -> str:
        where = "".join(
            f".{arg}" if kind == "prop" else f"[{kind}]"
            for kind, arg in self.steps
            if kind != "option"
        )
        return f"{self.method} {self.path} body{where}"


def _resolve(schema: Mapping[str, Any], defs: Mapping[str, Any]) -> Mapping[str, Any]:
    while "$ref" in schema:
        schema = defs[schema["$ref"].rsplit("/", 1)[-1]]
    return schema


def _is_free(s: Mapping[str, Any]) -> bool:
    """A value of any JSON type (no type), or an object of any keys and values."""
    if "type" not in s and not any(k in s for k in ("anyOf", "oneOf", "allOf", "enum", "const")):
        return True
    return (
        s.get("type") == "object"
        and not s.get("properties")
        and s.get("additionalProperties", True) is True
    )


def _positions(
    s: Mapping[str, Any], defs: Mapping[str, Any], steps: tuple[Step, ...], seen: frozenset[str]
) -> Iterator[tuple[Step, ...]]:
    if "$ref" in s:
        name = s["$ref"].rsplit("/", 1)[-1]
        if name not in seen:
            yield from _positions(defs[name], defs, steps, seen | {name})
        return
    if _is_free(s):
        yield (*steps, ("any", None))
        return
    for key in ("anyOf", "oneOf"):
        for index, option in enumerate(s.get(key, ())):
            yield from _positions(option, defs, (*steps, ("option", index)), seen)
    kind = s.get("type")
    if kind == "string" and "enum" not in s:
        yield steps
    elif kind == "array":
        yield from _positions(s.get("items", {}), defs, (*steps, ("item", None)), seen)
    elif kind == "object":
        for name, sub in s.get("properties", {}).items():
            yield from _positions(sub, defs, (*steps, ("prop", name)), seen)
        extra = s.get("additionalProperties")
        if isinstance(extra, dict):
            yield (*steps, ("key", None))
            yield from _positions(extra, defs, (*steps, ("value", None)), seen)


def _minimal(s: Mapping[str, Any], defs: Mapping[str, Any]) -> Any:
    """A small instance of ``s`` (valid for the models here; only a carrier for the string)."""
    s = _resolve(s, defs)
    if "enum" in s:
        return s["enum"][0]
    for key in ("anyOf", "oneOf"):
        if key in s:
            options = [o for o in s[key] if _resolve(o, defs).get("type") != "null"]
            return _minimal(options[0], defs) if options else None
    kind = s.get("type")
    if kind == "object":
        props = s.get("properties", {})
        return {name: _minimal(props[name], defs) for name in s.get("required", ())}
    if kind == "array":
        return [_minimal(s.get("items", {}), defs) for _ in range(s.get("minItems", 0))]
    if kind == "string":
        if s.get("format") == "date-time":
            return "2030-01-01T00:00:00Z"
        return "a" * max(1, s.get("minLength", 1))
    if kind in ("integer", "number"):
        low = s.get("minimum", s.get("exclusiveMinimum", 0))
        return max(1, int(low) + 1)
    if kind == "boolean":
        return False
    return {}


def _place(s: Mapping[str, Any], defs: Mapping[str, Any], steps: tuple[Step, ...], bad: Any) -> Any:
    """A small instance of ``s`` with ``bad`` at ``steps``."""
    if not steps:
        return bad
    s = _resolve(s, defs)
    (kind, arg), rest = steps[0], steps[1:]
    if kind == "any":
        return bad
    if kind == "option":
        return _place(s.get("anyOf", s.get("oneOf", []))[arg], defs, rest, bad)
    if kind == "item":
        return [_place(s.get("items", {}), defs, rest, bad)]
    if kind == "key":
        return {bad: _minimal(s["additionalProperties"], defs)}
    if kind == "value":
        return {"k": _place(s["additionalProperties"], defs, rest, bad)}
    body = _minimal(s, defs)
    body[arg] = _place(s["properties"][arg], defs, rest, bad)
    return body


def _app_schema() -> dict[str, Any]:
    app = create_app(Settings(store_url="memory://", admin_token=ADMIN))
    schema: dict[str, Any] = app.openapi()
    return schema


SCHEMA = _app_schema()
DEFS = SCHEMA.get("components", {}).get("schemas", {})
POSITIONS = [
    Position(method.upper(), path, steps)
    for path, item in SCHEMA["paths"].items()
    for method, operation in item.items()
    for media in [operation.get("requestBody", {}).get("content", {}).get("application/json")]
    if media is not None
    for steps in _positions(media["schema"], DEFS, (), frozenset())
]


def test_the_positions_cover_every_request_model() -> None:
    """Every operation with a JSON body has positions; the known string fields are among them."""
    labels = {str(p) for p in POSITIONS}
    with_body = {
        (m.upper(), p)
        for p, item in SCHEMA["paths"].items()
        for m, op in item.items()
        if "requestBody" in op
    }
    assert {(p.method, p.path) for p in POSITIONS} >= with_body - {
        ("POST", "/v1/jobs/{job_id}/release")  # only an epoch: no string to corrupt
    }
    for expected in (
        "POST /v1/jobs body.payload[any]",
        "POST /v1/jobs body.kind",
        "POST /v1/jobs body.requires[key]",
        "POST /v1/jobs body.requires[value]",
        "POST /v1/jobs/batch body.jobs[item].idempotency_key",
        "POST /v1/agents body.labels[key]",
        "POST /v1/agents body.queues[item]",
        "POST /v1/jobs/{job_id}/complete body.result[any]",
        "POST /v1/jobs/{job_id}/fail body.error",
    ):
        assert expected in labels


# -- the requests ---------------------------------------------------------------------

TEXT = st.text(alphabet="abcxyz019 ._-", max_size=8)
SURROGATE = st.integers(0xD800, 0xDFFF).map(chr)


@st.composite
def free_form(draw: st.DrawFn, bad: str) -> Any:
    """Free-form JSON holding ``bad`` as a key or a value, at some depth."""
    as_key = draw(st.booleans())
    value: Any = {bad: 1} if as_key else bad
    for _ in range(draw(st.integers(0, 3))):
        value = [1, value] if draw(st.booleans()) else {draw(TEXT) or "k": value}
    return value if isinstance(value, dict) else {"v": value}


@dataclass(frozen=True)
class Sent:
    """One corrupted request: its raw body and how the bad text travels."""

    body: bytes
    how: str


@st.composite
def corrupted(draw: st.DrawFn, position: Position) -> Sent:
    """A request body for ``position`` whose string there is not valid Unicode."""
    how = draw(st.sampled_from(["escape", "surrogate-bytes", "invalid-bytes"]))
    # surrogateescape turns U+DC80..U+DCFF into the lone bytes 0x80..0xFF: not UTF-8.
    lone = draw(st.integers(0xDC80, 0xDCFF).map(chr)) if how == "invalid-bytes" else draw(SURROGATE)
    text = draw(TEXT) + lone + draw(TEXT)
    bad: Any = text
    if position.steps[-1][0] == "any":
        bad = draw(free_form(text))
    schema = SCHEMA["paths"][position.path][position.method.lower()]["requestBody"]
    body = _place(schema["content"]["application/json"]["schema"], DEFS, position.steps, bad)
    if how == "escape":
        raw = json.dumps(body).encode()  # ensure_ascii: the surrogate as a \\udXXX escape
    elif how == "surrogate-bytes":
        raw = json.dumps(body, ensure_ascii=False).encode("utf-8", "surrogatepass")
    else:
        raw = json.dumps(body, ensure_ascii=False).encode("utf-8", "surrogateescape")
    return Sent(raw, how)


# -- the app on each provider -----------------------------------------------------------


@dataclass
class Served:
    """An app in a TestClient, the tokens to call it, and a view of its stored documents."""

    client: TestClient
    agent_headers: dict[str, str]
    rules: RouteRules

    def headers(self, position: Position) -> dict[str, str]:
        role = self.rules.match(position.method, position.path).role
        token = self.agent_headers if role is Role.AGENT else {"Authorization": f"Bearer {ADMIN}"}
        return {**token, "Content-Type": "application/json"}

    def stored(self) -> dict[str, str | None]:
        """Every stored document's id and etag."""
        app = cast(FastAPI, self.client.app)
        co: Coordinator = app.state.coordinator

        async def snapshot() -> dict[str, str | None]:
            found: dict[str, str | None] = {}
            jobs, agents = co.containers.jobs, co.containers.agents
            for container, queries in ((jobs, every_job(10_000)), (agents, [Query(limit=10_000)])):
                for query in queries:
                    page = await container.query(query)
                    found.update({f"{container.name}/{d.id}": d.etag for d in page.items})
            return found

        assert self.client.portal is not None
        return self.client.portal.call(snapshot)


@pytest.fixture(scope="module", params=["memory", "sqlite", "cosmos"])
def served(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Served]:
    """One app per provider for the whole module, with one agent and one job stored."""
    tmp = tmp_path_factory.mktemp(str(request.param))
    cfg = Settings(
        **store_settings(str(request.param), tmp, request), admin_token=ADMIN, reaper_enabled=False
    )
    app = create_app(cfg)
    with TestClient(app) as client:
        admin = {"Authorization": f"Bearer {ADMIN}"}
        created = client.post("/v1/agents", json={"name": "w"}, headers=admin).json()
        assert client.post("/v1/jobs", json={"kind": "k"}, headers=admin).status_code == 201
        agent = {"Authorization": f"Bearer {created['token']}"}
        yield Served(client, agent, RouteRules(app, cfg.max_payload_bytes))


@pytest.mark.parametrize("position", POSITIONS, ids=str)
def test_invalid_unicode_in_any_string_is_refused_and_nothing_is_written(
    served: Served, position: Position
) -> None:
    """A lone surrogate (escaped or as bytes) or non-UTF-8 bytes at this position: 400 or
    422 in the error shape, naming the problem, and the store is unchanged."""
    before = served.stored()
    url = position.path.replace("{job_id}", "0123456789abcdef").replace("{agent_id}", "x")
    url = url.replace("{name}", "s").replace("{queue}", "q")

    @settings(
        max_examples=12,
        deadline=None,
        database=None,
        suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
    )
    @given(sent=corrupted(position))
    def check(sent: Sent) -> None:
        r = served.client.request(
            position.method, url, content=sent.body, headers=served.headers(position)
        )
        assert r.status_code in (400, 422), (sent, r.status_code, r.text)
        error = r.json()["error"]
        assert set(error) == {"code", "message", "details"}
        if sent.how == "escape":
            assert r.status_code == 422, r.text
            [detail] = error["details"]["errors"]
            assert detail["type"] == "string_unicode", r.text
        else:
            assert (r.status_code, error["code"]) == (400, "bad_request"), r.text
            assert "UTF-8" in error["message"]

    check()
    assert served.stored() == before


def test_valid_escapes_and_astral_text_are_accepted_and_kept(served: Served) -> None:
    """A surrogate pair escape, an escaped backslash before ``ud800`` and raw astral text
    are valid Unicode: the job is stored and read back unchanged."""
    admin = {"Authorization": f"Bearer {ADMIN}", "Content-Type": "application/json"}
    raw = '{"kind": "k", "payload": {"pair": "\\ud83d\\ude00", "text": "\\\\ud800", "raw": "😀"}}'
    r = served.client.post("/v1/jobs", content=raw.encode(), headers=admin)
    assert r.status_code == 201, r.text
    job = served.client.get(f"/v1/jobs/{r.json()['id']}", headers=admin).json()
    assert job["payload"] == {"pair": "😀", "text": "\\ud800", "raw": "😀"}


@pytest.mark.parametrize(
    ("path", "raw", "loc"),
    [
        pytest.param("/v1/jobs", '{"kind": "\\ud800", "kind": "k"}', ["kind"], id="field"),
        pytest.param(
            "/v1/jobs",
            '{"kind": "k", "payload": {"a": "\\udfff", "a": 1}}',
            ["payload", "a"],
            id="payload",
        ),
        pytest.param(
            "/v1/jobs/batch",
            '{"jobs": [{"kind": "k"}, {"kind": "k", "queue": "\\ud800x", "queue": "q"}]}',
            ["jobs", "1", "queue"],
            id="batch-item",
        ),
    ],
)
def test_a_lone_surrogate_under_a_repeated_key_is_refused(
    served: Served, path: str, raw: str, loc: list[str]
) -> None:
    """A repeated key's earlier value is checked too, though the route keeps only the last:
    a lone surrogate there is 422 at its location, and nothing is written."""
    admin = {"Authorization": f"Bearer {ADMIN}", "Content-Type": "application/json"}
    before = served.stored()
    r = served.client.post(path, content=raw.encode(), headers=admin)
    assert r.status_code == 422, r.text
    [detail] = r.json()["error"]["details"]["errors"]
    assert (detail["type"], detail["loc"]) == ("string_unicode", ["body", *loc])
    assert served.stored() == before


def test_a_json_body_in_utf16_is_refused(served: Served) -> None:
    """JSON must be UTF-8: a UTF-16 body (which could smuggle a lone surrogate) is 400."""
    admin = {"Authorization": f"Bearer {ADMIN}", "Content-Type": "application/json"}
    raw = '{"kind": "k", "payload": {"x": "\\ud800"}}'.encode("utf-16-le")
    before = served.stored()
    r = served.client.post("/v1/jobs", content=raw, headers=admin)
    assert r.status_code == 400, r.text
    assert r.json()["error"]["code"] == "bad_request"
    assert served.stored() == before
