"""API fuzzing with schemathesis against the service's own OpenAPI schema.

A real ``fleet-coordinator serve`` process (SQLite) is fuzzed operation by
operation with valid and invalid requests, once with no token, once with an
agent's token and once with the admin token: no response may be a 5xx (a 503
would mean the store failed, which it must not here), and every 4xx must carry
the SPEC error shape ``{"error": {"code", "message", "details"}}``.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from schemathesis import GenerationMode
from schemathesis.checks import response_schema_conformance
from schemathesis.core.result import Ok

from tests.support.served import Served

MAX_EXAMPLES = 10
"""Examples per operation, mode and token in ``make verify`` (a few seconds each)."""


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Served]:
    """One coordinator for the whole module."""
    with Served(cwd=tmp_path_factory.mktemp("fuzz")) as served:
        yield served


@pytest.fixture(scope="module")
def tokens(server: Served) -> dict[str, dict[str, str]]:
    """Headers for each role: none, a registered agent, the admin."""
    created = httpx.post(
        f"{server.base_url}/v1/agents",
        json={"name": "fuzzed", "capacity": 5},
        headers=server.admin_headers,
    ).json()
    return {
        "none": {},
        "agent": {"Authorization": f"Bearer {created['token']}"},
        "admin": server.admin_headers,
    }


def _assert_error_shape(status: int, text: str) -> None:
    body: Any = json.loads(text)
    assert isinstance(body, dict), text
    assert set(body) == {"error"}, text
    error = body["error"]
    assert isinstance(error, dict), text
    assert set(error) == {"code", "message", "details"}, text
    assert isinstance(error["code"], str), text
    assert error["code"], text
    assert isinstance(error["message"], str), text
    assert error["message"], text
    assert isinstance(error["details"], dict), text


@pytest.mark.parametrize("role", ["none", "agent", "admin"])
def test_fuzzed_requests_never_get_a_5xx_and_every_4xx_has_the_error_shape(
    server: Served, tokens: dict[str, dict[str, str]], role: str
) -> None:
    """Every operation, valid and invalid inputs, each role: no 5xx, 4xx in the SPEC shape."""
    schema = schemathesis.openapi.from_url(f"{server.base_url}/openapi.json")
    headers = tokens[role]
    operations = []
    for result in schema.get_all_operations():
        assert isinstance(result, Ok), result  # every operation of our own schema loads
        operations.append(result.ok())
    assert len(operations) >= 15
    strategy = st.one_of(
        *(op.as_strategy(generation_mode=mode) for op in operations for mode in GenerationMode)
    )
    seen: set[tuple[str, int]] = set()

    @settings(
        max_examples=MAX_EXAMPLES * len(operations),
        deadline=None,
        database=None,
        suppress_health_check=list(HealthCheck),
    )
    @given(case=strategy)
    def fuzz(case: Any) -> None:
        body = case.body
        if isinstance(body, dict) and isinstance(body.get("wait_seconds"), int | float):
            # A long-poll with nothing to claim waits its whole wait_seconds: keep it short.
            body["wait_seconds"] = min(body["wait_seconds"], 0.05)
        response = case.call(headers=headers, timeout=30)
        status = response.status_code
        seen.add((case.operation.label, status))
        # No 5xx at all: the store is healthy here, so not even a 503; a 500 carries an
        # error_id that the server log shows with its traceback.
        assert status < 500, (
            f"{case.operation.label}: {status} {response.text[:500]}\n{server.log_tail()}"
        )
        if 400 <= status < 500:
            _assert_error_shape(status, response.text)
        if status < 300 or status in (401, 403, 404, 409, 422):
            case.validate_response(response, checks=[response_schema_conformance])

    fuzz()
    assert seen, "nothing was sent"
    if role == "none":
        # Without a token nothing under /v1 is ever served.
        served = sorted((label, s) for label, s in seen if " /v1/" in label and s < 300)
        assert served == []
