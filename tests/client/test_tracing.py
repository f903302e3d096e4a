"""One trace from the enqueue to the completion, across three real processes."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from fleet_client import FleetClient
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from tests.agent.conftest import eventually
from tests.support.agents import AgentProcess
from tests.support.served import Served

SITE = Path(__file__).parents[1] / "support" / "otel_site"


def traced_env(spans: Path, service: str) -> dict[str, str]:
    """Environment that gives a process the test SDK, writing its spans to ``spans``."""
    return {"PYTHONPATH": str(SITE), "TEST_SPANS_FILE": str(spans), "TEST_SERVICE_NAME": service}


def read_spans(path: Path) -> list[dict[str, Any]]:
    """The spans a process has written so far."""
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


@pytest.fixture
def coordinator(tmp_path: Path) -> Iterator[Served]:
    """A coordinator process exporting its spans to ``coordinator.jsonl``."""
    env = {
        **traced_env(tmp_path / "coordinator.jsonl", "coordinator"),
        "FLEET_REAPER_INTERVAL_SECONDS": "0.2",
        "FLEET_LONG_POLL_INTERVAL_SECONDS": "0.05",
    }
    with Served(cwd=tmp_path / "coordinator", env=env) as served:
        yield served


async def test_enqueue_claim_run_and_complete_are_one_trace(
    coordinator: Served, tmp_path: Path
) -> None:
    """The job keeps the enqueuing span's traceparent; claim, run and completion are children."""
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    tracer = provider.get_tracer("app")
    queue = f"traced{uuid.uuid4().hex[:8]}"
    agent_spans = tmp_path / "agent.jsonl"
    async with FleetClient(coordinator.base_url, coordinator.admin_token) as fleet:
        token = (await fleet.create_agent("traced", queues=[queue])).token
        with tracer.start_as_current_span("app.enqueue") as root:
            job = await fleet.enqueue("shell", {"argv": ["true"]}, queue=queue)
        context = root.get_span_context()
        trace_id, root_id = f"0x{context.trace_id:032x}", f"0x{context.span_id:016x}"
        assert (job.traceparent or "").startswith(f"00-{trace_id[2:]}-{root_id[2:]}-")
        agent_args = ("--queue", queue, "--wait-seconds", "1")
        agent_env = traced_env(agent_spans, "agent")
        with AgentProcess(coordinator.base_url, token, tmp_path, agent_args, env=agent_env):

            async def succeeded() -> bool:
                return (await fleet.get_job(job.id)).status == "succeeded"

            await eventually(succeeded, within=20)

    def names(spans: list[dict[str, Any]]) -> set[str]:
        return {s["name"] for s in spans if s["context"]["trace_id"] == trace_id}

    coordinator_file = tmp_path / "coordinator.jsonl"
    wanted = {"coordinator.job.claimed", "coordinator.job.completed"}
    await eventually(lambda: wanted <= names(read_spans(coordinator_file)))
    await eventually(lambda: "fleet.job.run" in names(read_spans(agent_spans)))

    in_coordinator = [
        s for s in read_spans(coordinator_file) if s["context"]["trace_id"] == trace_id
    ]
    [run] = [s for s in read_spans(agent_spans) if s["name"] == "fleet.job.run"]
    children = {s["name"]: s for s in in_coordinator if s["parent_id"] == root_id}
    server = [s for s in in_coordinator if s["kind"] == "SpanKind.SERVER"]
    assert [s["name"] for s in server] == ["POST /v1/jobs"]
    assert server[0]["parent_id"] == root_id
    assert run["context"]["trace_id"] == trace_id
    assert run["parent_id"] == root_id
    assert run["attributes"]["fleet.job.id"] == job.id
    assert run["resource"]["attributes"]["service.name"] == "agent"
    claimed, completed = children["coordinator.job.claimed"], children["coordinator.job.completed"]
    assert claimed["attributes"]["fleet.epoch"] == completed["attributes"]["fleet.epoch"] == 1
    assert claimed["start_time"] <= run["start_time"] <= run["end_time"] <= completed["end_time"]
    assert [s.name for s in exporter.get_finished_spans()] == ["app.enqueue"]


def run_python(script: str) -> str:
    """What ``script`` prints, run by this environment's interpreter in a fresh process."""
    done = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, check=True, timeout=60
    )
    return done.stdout.strip()


def test_without_the_coordinator_extra_no_middleware_is_added() -> None:
    """Without the instrumentation package the app is built exactly as before: no OTel layer."""
    printed = run_python(
        """
import sys
sys.modules["opentelemetry.instrumentation.asgi"] = None  # the otel extra not installed
from fleet_coordinator import Settings, create_app, tracing
app = create_app(Settings(store_url="memory://", admin_token="t"))
layer, outer = app.build_middleware_stack(), []
while type(layer).__name__ != "ServerErrorMiddleware":
    outer.append(type(layer).__name__)
    layer = layer.app
print(tracing.TRACING, outer, [m.cls.__name__ for m in app.user_middleware])
"""
    )
    assert printed == "False ['HeadAsGet', 'GuardMiddleware', 'HotPath', 'RefuseJsonConstants'] []"


def test_with_the_extra_but_no_sdk_requests_skip_the_middleware() -> None:
    """No tracer provider set: requests bypass OpenTelemetry's layer; once one is set, traced."""
    printed = run_python(
        """
import asyncio
import httpx
from opentelemetry import trace
from opentelemetry.instrumentation.asgi import OpenTelemetryMiddleware
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from fleet_coordinator import Settings, create_app

calls = 0
inner = OpenTelemetryMiddleware.__call__
async def counted(self, scope, receive, send):
    global calls
    calls += 1
    await inner(self, scope, receive, send)
OpenTelemetryMiddleware.__call__ = counted

app = create_app(Settings(store_url="memory://", admin_token="t"))
auth = {"Authorization": "Bearer t"}

async def main():
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://t") as http:
            first = (await http.get("/v1/queues", headers=auth)).status_code
            before = calls
            spans = InMemorySpanExporter()
            provider = TracerProvider()
            provider.add_span_processor(SimpleSpanProcessor(spans))
            trace.set_tracer_provider(provider)
            second = (await http.get("/v1/queues", headers=auth)).status_code
            names = [s.name for s in spans.get_finished_spans()]
            print(first, before, second, calls, names)

asyncio.run(main())
"""
    )
    assert printed.splitlines()[-1] == "200 0 200 1 ['GET /v1/queues']"  # after the log lines


def test_without_an_sdk_the_per_request_check_reads_no_environment() -> None:
    """No tracer provider set: a request's tracing check costs no ``os.environ`` look-up
    (OpenTelemetry's own check makes one, an encode and a KeyError, every call)."""
    printed = run_python(
        """
import os
from fleet_coordinator.tracing import requests_traced

class Counted(dict):
    looked_up = 0
    def __contains__(self, key):
        Counted.looked_up += 1
        return super().__contains__(key)

os.environ = Counted(os.environ)
print([requests_traced() for _ in range(3)], Counted.looked_up)
"""
    )
    assert printed == "[False, False, False] 0"


def test_a_tracer_provider_named_by_the_environment_traces_requests() -> None:
    """``OTEL_PYTHON_TRACER_PROVIDER`` names the SDK's provider: OpenTelemetry loads it on
    first use, and requests are traced from the first one."""
    done = subprocess.run(
        [
            sys.executable,
            "-c",
            "from fleet_coordinator.tracing import requests_traced; print(requests_traced())",
        ],
        capture_output=True,
        text=True,
        check=True,
        timeout=60,
        env={**os.environ, "OTEL_PYTHON_TRACER_PROVIDER": "sdk_tracer_provider"},
    )
    assert done.stdout.strip() == "True"


def test_without_opentelemetry_the_clients_read_no_trace_context() -> None:
    """Without ``opentelemetry-api`` the clients read no trace context and send no traceparent."""
    printed = run_python(
        """
import sys
sys.modules["opentelemetry"] = None  # the otel extras not installed
from fleet_wire import TRACING, current_traceparent
from fleet_client import JobSpec
from fleet_client import calls
import fleet_agent
spec = JobSpec(kind="k")
call = calls.enqueue(spec)
print(TRACING, current_traceparent(), calls.trace_headers(), call.trace, call.body)
"""
    )
    assert printed == "False None None None {'kind': 'k', 'payload': {}}"


def test_an_agent_opens_no_run_span_without_an_sdk_or_a_parent() -> None:
    """No SDK and no ``traceparent``: the handler is awaited directly; else in a run span."""
    printed = run_python(
        """
import asyncio
from opentelemetry import trace
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
import fleet_agent.tracing
from fleet_agent.job import Job
from fleet_agent.models import Claimed

opened = []
inner = fleet_agent.tracing.span_from_traceparent
def counted(name, traceparent, attributes=None):
    opened.append(traceparent is not None)
    return inner(name, traceparent, attributes)
fleet_agent.tracing.span_from_traceparent = counted

PARENT = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"

def job(traceparent):
    raw = {"id": "j1", "kind": "k", "queue": "default", "status": "leased", "attempts": 1,
           "max_attempts": 3, "updated_at": "2026-12-05T00:00:00Z"}
    if traceparent:
        raw["traceparent"] = traceparent
    lease = {"agent_id": "a", "run_id": "r", "epoch": 1, "expires_at": "2026-12-05T00:01:00Z"}
    claimed = Claimed.from_json({"job": raw, "lease": lease})
    return Job(claimed.job, claimed.lease)

async def handler(job):
    return ("complete", None, False)

async def main():
    run = fleet_agent.tracing.run_in_span
    await run(job(None), handler)
    bare = list(opened)
    await run(job(PARENT), handler)
    spans = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(spans))
    trace.set_tracer_provider(provider)
    await run(job(None), handler)
    print(bare, opened, [s.name for s in spans.get_finished_spans()])

asyncio.run(main())
"""
    )
    assert printed == "[] [True, False] ['fleet.job.run']"
