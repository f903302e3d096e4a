"""AgentClient against the coordinator app in-process: typed answers and the error tree."""

from __future__ import annotations

from typing import Any

import pytest
from fleet_agent import (
    AgentClient,
    CoordinatorUnavailable,
    LeaseLost,
    Report,
    RequestRejected,
    Unauthorized,
)
from fleet_agent.errors import redact_url

from tests.support.served import free_port

from .conftest import ADMIN, Fleet


async def test_claim_heartbeat_complete_return_typed_answers(fleet: Fleet) -> None:
    """A claimed lease carries epoch 1; heartbeat renews it; complete answers the job."""
    agent_id, token = await fleet.register()
    job_id = await fleet.enqueue(payload={"x": 1}, lease_seconds=30)
    client, _ = fleet.client(token)
    async with client:
        [claimed] = await client.claim(max_jobs=5)
        assert (claimed.job.id, claimed.job.payload, claimed.lease.epoch) == (job_id, {"x": 1}, 1)
        assert claimed.lease.agent_id == agent_id
        beat = await client.heartbeat(job_id, 1, progress={"pct": 50})
        assert beat.cancel_requested is False
        assert beat.lease.expires_at >= claimed.lease.expires_at
        done = await client.complete(job_id, 1, {"ok": True})
    assert done.status == "succeeded"


async def test_stale_epochs_raise_lease_lost(fleet: Fleet) -> None:
    """A call with an epoch the agent does not hold is LeaseLost, carrying the SPEC code."""
    _, token = await fleet.register()
    job_id = await fleet.enqueue(lease_seconds=30)
    client, _ = fleet.client(token)
    async with client:
        await client.claim()
        with pytest.raises(LeaseLost) as caught:
            await client.complete(job_id, 2)
        await client.release(job_id, 1)
        with pytest.raises(LeaseLost):
            await client.heartbeat(job_id, 1)
    assert (caught.value.status, caught.value.code) == (409, "lease_lost")


@pytest.mark.parametrize("token", ["fa.nobody.nothing", ADMIN])
async def test_wrong_or_admin_tokens_raise_unauthorized(fleet: Fleet, token: str) -> None:
    """An unknown token (401) and the admin token on an agent endpoint (403) are Unauthorized."""
    client, _ = fleet.client(token)
    async with client:
        with pytest.raises(Unauthorized) as caught:
            await client.claim()
    assert caught.value.status in (401, 403)


async def test_other_refusals_raise_request_rejected_with_status_and_code(fleet: Fleet) -> None:
    """An out-of-range claim is RequestRejected 422 with the coordinator's code and message."""
    _, token = await fleet.register()
    client, _ = fleet.client(token)
    async with client:
        with pytest.raises(RequestRejected) as caught:
            await client.claim(max_jobs=1000)
    assert (caught.value.status, caught.value.code) == (422, "validation_error")
    assert "422 validation_error" in caught.value.message


@pytest.mark.parametrize("result", [None, 0, False, "", {}, []])
async def test_a_completion_report_stores_its_result_even_a_falsy_one(
    fleet: Fleet, result: Any
) -> None:
    """A None result is left out of the request (the API's default); every other one is sent."""
    _, token = await fleet.register()
    job_id = await fleet.enqueue(lease_seconds=30)
    item = Report(job_id=job_id, epoch=1, action="complete", result=result)
    assert ("result" in item.to_json()) is (result is not None)
    client, _ = fleet.client(token)
    async with client:
        await client.claim()
        [answer] = (await client.report([item])).items
    assert answer.ok
    stored = await fleet.job(job_id)
    assert (stored["status"], stored["result"]) == ("succeeded", result)


@pytest.mark.parametrize(
    ("url", "shown"),
    [
        ("http://user:PW@host:8787/base", "http://***@host:8787/base"),
        ("https://PW@host", "https://***@host"),
        ("http://u:P@W@host/a@b?c=@d", "http://***@host/a@b?c=@d"),
        ("http://host:8787/a@b", "http://host:8787/a@b"),
        ("http://[::1]:8787", "http://[::1]:8787"),
        ("user:PW@host", "***@host"),
    ],
)
def test_redact_url_masks_credentials_only(url: str, shown: str) -> None:
    """The userinfo goes, whatever it holds; an ``@`` in the path or query stays."""
    assert redact_url(url) == shown


async def test_an_unreachable_coordinators_error_never_shows_the_urls_credentials() -> None:
    """``cannot reach the coordinator at …`` (logged on every retry) masks ``user:PW@``."""
    port = free_port()
    async with AgentClient(f"http://user:PW@127.0.0.1:{port}", "fa.x.y") as client:
        assert client.display_url == f"http://***@127.0.0.1:{port}"
        with pytest.raises(CoordinatorUnavailable) as caught:
            await client.claim(retry_timeout=0.2)
    assert f"cannot reach the coordinator at http://***@127.0.0.1:{port}" in caught.value.message
    assert "PW" not in str(caught.value)
