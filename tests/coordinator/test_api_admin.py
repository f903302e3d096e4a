"""Admin calls over HTTP: cancel, retry and the agent registry."""

from __future__ import annotations

from .conftest import Api


async def test_cancel_a_queued_job_finishes_it(api: Api) -> None:
    """Cancelling a queued job makes it cancelled and unclaimable."""
    _, headers = await api.agent()
    job = await api.enqueue()
    r = await api.client.post(f"/v1/jobs/{job['id']}/cancel", headers=api.admin)
    assert r.status_code == 200
    assert r.json()["status"] == "cancelled"
    assert await api.claim(headers) == []


async def test_cancel_a_leased_job_requests_it_and_release_cancels(api: Api) -> None:
    """A leased job gets cancel_requested, seen in heartbeats; its release cancels it."""
    _, headers = await api.agent()
    job = await api.enqueue()
    await api.claim(headers)
    r = await api.client.post(f"/v1/jobs/{job['id']}/cancel", headers=api.admin)
    assert r.json()["status"] == "leased"
    assert r.json()["cancel_requested"] is True
    hb = await api.client.post(
        f"/v1/jobs/{job['id']}/heartbeat", json={"epoch": 1}, headers=headers
    )
    assert hb.json()["cancel_requested"] is True
    rel = await api.client.post(f"/v1/jobs/{job['id']}/release", json={"epoch": 1}, headers=headers)
    assert rel.json()["status"] == "cancelled"


async def test_cancel_a_terminal_job_is_a_conflict(api: Api) -> None:
    """Cancelling a succeeded job answers 409 and leaves it succeeded."""
    _, headers = await api.agent()
    job = await api.enqueue()
    await api.claim(headers)
    await api.client.post(f"/v1/jobs/{job['id']}/complete", json={"epoch": 1}, headers=headers)
    r = await api.client.post(f"/v1/jobs/{job['id']}/cancel", headers=api.admin)
    assert r.status_code == 409
    assert r.json()["error"]["code"] == "already_terminal"
    assert (await api.job(job["id"]))["status"] == "succeeded"


async def test_retry_requeues_a_failed_job_and_refuses_a_queued_one(api: Api) -> None:
    """Retry requeues failed or cancelled jobs with a fresh budget, else 409."""
    _, headers = await api.agent()
    job = await api.enqueue(max_attempts=1)
    queued_retry = await api.client.post(f"/v1/jobs/{job['id']}/retry", headers=api.admin)
    assert queued_retry.status_code == 409
    await api.claim(headers)
    await api.client.post(
        f"/v1/jobs/{job['id']}/fail", json={"epoch": 1, "error": "x"}, headers=headers
    )
    r = await api.client.post(f"/v1/jobs/{job['id']}/retry", headers=api.admin)
    assert r.status_code == 200
    assert r.json()["status"] == "queued"
    assert r.json()["attempts"] == 0
    [again] = await api.claim(headers)
    assert again["lease"]["epoch"] == 2


async def test_agents_are_listed_read_and_drained(api: Api) -> None:
    """Agents are listed with lease counts; a drained agent gets no claims."""
    agent_id, headers = await api.agent(labels={"gpu": "a100"}, capacity=2)
    await api.enqueue()
    await api.claim(headers)
    listed = (await api.client.get("/v1/agents", headers=api.admin)).json()["items"]
    assert [a["id"] for a in listed] == [agent_id]
    assert listed[0]["live_leases"] == 1
    assert listed[0]["last_seen"] is not None
    assert "token_hash" not in listed[0]
    drained = await api.client.post(f"/v1/agents/{agent_id}/drain", headers=api.admin)
    assert drained.json()["draining"] is True
    await api.enqueue()
    assert await api.claim(headers) == []


async def test_deleting_an_agent_revokes_its_token_and_releases_its_leases(api: Api) -> None:
    """A deleted agent's token is refused and its job goes back to the queue."""
    agent_id, headers = await api.agent()
    job = await api.enqueue()
    await api.claim(headers)
    r = await api.client.delete(f"/v1/agents/{agent_id}", headers=api.admin)
    assert r.status_code == 204
    assert (await api.client.post("/v1/claims", json={}, headers=headers)).status_code == 401
    assert (await api.client.get(f"/v1/agents/{agent_id}", headers=api.admin)).status_code == 404
    stored = await api.job(job["id"])
    assert stored["status"] == "queued"
    assert stored["runs"][-1]["outcome"] == "released"


async def test_an_idle_claim_updates_last_seen(api: Api) -> None:
    """A claim that finds nothing still records when the agent was last seen."""
    agent_id, headers = await api.agent()
    assert await api.claim(headers) == []
    agent = (await api.client.get(f"/v1/agents/{agent_id}", headers=api.admin)).json()
    assert agent["last_seen"] is not None


async def test_unknown_agents_are_404_for_every_admin_call(api: Api) -> None:
    """Reading, draining or deleting an unknown agent answers 404."""
    for method, path in (
        ("GET", "/v1/agents/0123456789abcdef"),
        ("POST", "/v1/agents/0123456789abcdef/drain"),
        ("DELETE", "/v1/agents/0123456789abcdef"),
    ):
        r = await api.client.request(method, path, headers=api.admin)
        assert r.status_code == 404, (method, path)
        assert r.json()["error"]["code"] == "not_found"


async def test_retry_of_a_cancelled_job_makes_it_claimable(api: Api) -> None:
    """A cancelled job can be retried and then claimed."""
    _, headers = await api.agent()
    job = await api.enqueue()
    await api.client.post(f"/v1/jobs/{job['id']}/cancel", headers=api.admin)
    r = await api.client.post(f"/v1/jobs/{job['id']}/retry", headers=api.admin)
    assert r.json()["status"] == "queued"
    assert r.json()["cancel_requested"] is False
    [lease] = await api.claim(headers)
    assert lease["job"]["id"] == job["id"]


async def test_heartbeats_keep_a_lease_past_its_first_expiry(api: Api) -> None:
    """Renewed leases outlive the original lease_seconds and are not reaped."""
    from fleet_coordinator.services import reap_once

    _, headers = await api.agent()
    job = await api.enqueue(lease_seconds=10)
    await api.claim(headers)
    for _ in range(3):
        api.clock.advance(8)
        r = await api.client.post(
            f"/v1/jobs/{job['id']}/heartbeat", json={"epoch": 1}, headers=headers
        )
        assert r.status_code == 200
    assert await reap_once(api.co) == 0
    r = await api.client.post(f"/v1/jobs/{job['id']}/complete", json={"epoch": 1}, headers=headers)
    assert r.json()["status"] == "succeeded"


async def test_an_ended_lease_leaves_the_agent_ledger(api: Api) -> None:
    """After complete, the agent shows no live lease, and the flush writes that to the store."""
    agent_id, headers = await api.agent()
    job = await api.enqueue()
    await api.claim(headers)
    await api.client.post(f"/v1/jobs/{job['id']}/complete", json={"epoch": 1}, headers=headers)
    shown = (await api.client.get(f"/v1/agents/{agent_id}", headers=api.admin)).json()
    assert shown["live_leases"] == 0
    await api.co.ledger.flush(agent_id)
    stored = await api.co.containers.agents.get(agent_id, agent_id)
    assert stored.body["held"] == {}
    assert api.co.ledger.ended(agent_id) == {}
