"""What ``fleet-coordinator serve`` refuses to start with, and how it says so.

docs/operations.md, "Settings": an invalid value stops the process at start with a
message naming the variable: one line each on stderr, never a traceback, and never
the value of a secret.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
from collections.abc import Mapping
from pathlib import Path

import httpx
import pytest
from fleet_coordinator import Settings, create_app
from fleet_coordinator.cli import WORKER_HEALTHCHECK_SECONDS
from fleet_coordinator.settings import problems
from pydantic import ValidationError

from tests.support.served import Served, free_port, tool_path

REFUSED_WITHIN = 60.0
"""Seconds a refused ``serve`` has to exit; one that starts instead is killed then."""


def _serve(
    cwd: Path, env: Mapping[str, str], *args: str, within: float = REFUSED_WITHIN
) -> tuple[int, str, str]:
    """Run ``serve`` until it exits (or ``within`` passes): status, stdout, stderr."""
    base = {k: v for k, v in os.environ.items() if not k.startswith("FLEET_")}
    command = [tool_path("fleet-coordinator"), "serve", "--port", str(free_port()), *args]
    process = subprocess.Popen(
        command,
        cwd=cwd,
        env={**base, "FLEET_ADMIN_TOKEN": "adm-token", **env},
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
    )
    try:
        out, err = process.communicate(timeout=within)
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)  # its session: workers included
        out, err = process.communicate()
        pytest.fail(f"serve started instead of refusing: {out[-2000:]}{err[-2000:]}")
    return process.returncode, out, err


def _problems(monkeypatch: pytest.MonkeyPatch, **env: str) -> list[str]:
    """The lines ``serve`` prints for ``env`` (only these FLEET_* variables set)."""
    for name in list(os.environ):
        if name.startswith("FLEET_"):
            monkeypatch.delenv(name)
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    with pytest.raises(ValidationError) as refused:
        Settings()
    return problems(refused.value)


def test_invalid_settings_stop_serve_with_one_line_each_naming_the_variable(
    tmp_path: Path,
) -> None:
    """Each wrong variable is one line on stderr with what is wrong and the value; exit 2."""
    code, out, err = _serve(
        tmp_path,
        {
            "FLEET_DEFAULT_LEASE_SECONDS": "0",
            "FLEET_REAPER_ENABLED": "maybe",
            "FLEET_STORE_URL": "cosmos://",
            "FLEET_COSMOS_KEY": "the-cosmos-key-value",
        },
    )
    assert code == 2, (out, err)
    assert "Traceback" not in out + err
    assert "the-cosmos-key-value" not in out + err
    assert err.splitlines() == [
        "fleet-coordinator: FLEET_COSMOS_ENDPOINT: must be set when FLEET_STORE_URL is "
        "cosmos:// (got '')",
        "fleet-coordinator: FLEET_DEFAULT_LEASE_SECONDS: must be > 0 (got '0')",
        "fleet-coordinator: FLEET_REAPER_ENABLED: must be true or false (or 1/0, yes/no, "
        "on/off) (got 'maybe')",
    ]


@pytest.mark.parametrize(
    ("url", "said"),
    [
        ("postgres://x", "unknown store URL scheme in 'postgres://x'"),
        ("memory", "unknown store URL scheme in 'memory'"),
        ("", "unknown store URL scheme in ''"),
        ("sqlite://", "sqlite URL needs a file path: 'sqlite://'"),
    ],
)
def test_a_store_url_no_provider_opens_is_refused_before_the_store_opens(
    monkeypatch: pytest.MonkeyPatch, url: str, said: str
) -> None:
    """An unknown scheme, or ``sqlite://`` without a path, is a settings error, not a lifespan
    traceback."""
    [line] = _problems(monkeypatch, FLEET_STORE_URL=url)
    assert line.startswith(f"FLEET_STORE_URL: {said}"), line


def test_cosmos_needs_its_endpoint_and_key_and_never_shows_the_key(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """``cosmos://`` without ``FLEET_COSMOS_KEY``, or with an endpoint that is no URL, is named."""
    missing = _problems(monkeypatch, FLEET_STORE_URL="cosmos://")
    assert [line.split(":", 1)[0] for line in missing] == [
        "FLEET_COSMOS_ENDPOINT",
        "FLEET_COSMOS_KEY",
    ]
    assert missing[1].endswith("(value not shown)")
    [endpoint] = _problems(
        monkeypatch,
        FLEET_STORE_URL="cosmos://",
        FLEET_COSMOS_ENDPOINT="localhost",
        FLEET_COSMOS_KEY="k3y",
    )
    assert endpoint.startswith("FLEET_COSMOS_ENDPOINT: must be an http(s) URL"), endpoint
    # The variables matter only for cosmos://: unused, they are not checked.
    assert Settings(store_url="memory://").cosmos_endpoint == "localhost"


def test_serve_refuses_several_workers_on_a_memory_store(tmp_path: Path) -> None:
    """``--workers 2`` with ``memory://`` would be two stores behind one port: exit 2."""
    code, out, err = _serve(tmp_path, {"FLEET_STORE_URL": "memory://"}, "--workers", "2")
    assert code == 2, (out, err)
    assert "--workers 2 with FLEET_STORE_URL=memory://" in err
    assert "Traceback" not in out + err


def test_a_blank_admin_token_stops_serve_without_showing_it(tmp_path: Path) -> None:
    """``FLEET_ADMIN_TOKEN=" "`` could never be presented: refused at start, exit 2."""
    code, out, err = _serve(tmp_path, {"FLEET_STORE_URL": "memory://", "FLEET_ADMIN_TOKEN": " "})
    assert code == 2, (out, err)
    assert err.startswith("fleet-coordinator: FLEET_ADMIN_TOKEN: is blank"), err
    assert "Traceback" not in out + err


def test_an_admin_token_no_header_carries_is_refused_without_showing_it(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Non-ASCII or a control character inside: clients cannot send it as the server compares."""
    for token in ("tökén-0123", "abc\x01def"):
        [line] = _problems(monkeypatch, FLEET_ADMIN_TOKEN=token)
        assert line.startswith("FLEET_ADMIN_TOKEN: holds a character"), line
        assert token not in line
        assert "tök" not in line


async def test_whitespace_around_the_admin_token_is_dropped() -> None:
    """A token read from a file with its newline works as the token without it."""
    settings = Settings(store_url="memory://", admin_token=" tok-0123\n", reaper_enabled=False)
    app = create_app(settings)
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:
            r = await client.get("/v1/queues", headers={"Authorization": "Bearer tok-0123"})
    assert r.status_code == 200, r.text


@pytest.mark.parametrize(("token", "warned"), [("adm-token-0123", True), ("a" * 20, False)])
def test_a_short_admin_token_is_served_with_a_warning_that_never_shows_it(
    tmp_path: Path, token: str, warned: bool
) -> None:
    """Under 20 characters: served (the token works), with one warning giving its length only."""
    with Served(cwd=tmp_path, admin_token=token) as server:
        r = httpx.get(f"{server.base_url}/v1/queues", headers=server.admin_headers)
        assert r.status_code == 200, r.text
    log = server.log_path.read_text()
    assert ("coordinator.admin_token.short" in log) is warned, log
    assert token not in log


@pytest.mark.parametrize("workers", ["1", "2"])
def test_serve_refuses_a_store_written_with_another_shard_count(
    tmp_path: Path, workers: str
) -> None:
    """A restart with another ``FLEET_JOB_SHARDS`` stops at start (exit 3), saying both values,
    instead of serving jobs it cannot find; with ``--workers 2`` too (uvicorn's parent
    exited 0 when its workers failed to start)."""
    with Served(cwd=tmp_path) as server:
        created = httpx.post(
            f"{server.base_url}/v1/jobs", json={"kind": "k"}, headers=server.admin_headers
        )
        assert created.status_code == 201
    code, out, err = _serve(
        tmp_path,
        {"FLEET_STORE_URL": server.store_url, "FLEET_JOB_SHARDS": "3", "FLEET_ADMIN_TOKEN": "adm"},
        "--workers",
        workers,
        # uvicorn's parent notices a worker that died during its ping only when the ping's
        # wait ends (cli.WORKER_HEALTHCHECK_SECONDS).
        within=REFUSED_WITHIN + WORKER_HEALTHCHECK_SECONDS,
    )
    assert code == 3, (out, err)
    assert "Traceback" not in out + err
    refusals = [json.loads(line) for line in out.splitlines() if "start_refused" in line]
    assert refusals, (out, err)
    refusal = refusals[0]  # one a worker that got as far as the store before it was stopped
    assert refusal["event"] == "coordinator.start_refused"
    assert refusal["reason"].startswith(
        "FLEET_JOB_SHARDS is 3, but this store's jobs are spread over 16 shards"
    ), refusal
