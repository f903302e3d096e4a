"""The happy path and the agent calls over HTTP: claim, heartbeat, complete, fail, release."""

from __future__ import annotations

from datetime import datetime, timedelta

from .conftest import Api


async def test_full_lifecycle_records_one_succeeded_run(api: Api) -> None:
    """Register, enqueue, claim, heartbeat and complete leave a succeeded job with one run."""
    agent_id, headers = await api.agent()
    job = await api.enqueue(payload={"x": 1})
    assert job["status"] == "queued"
    assert job["lease"] is None
    [leased] = await api.claim(headers)
    assert leased["job"]["id"] == job["id"]
    assert leased["lease"]["epoch"] == 1
    assert leased["lease"]["agent_id"] == agent_id
    api.clock.advance(10)
    r = await api.client.post(f"/v1/jobs/{job['id']}/heartbeat", json={"epoch": 1}, headers=headers)
    assert r.status_code == 200, r.text
    assert r.json()["cancel_requested"] is False
    r = await api.client.post(
        f"/v1/jobs/{job['id']}/complete", json={"epoch": 1, "result": {"ok": True}}, headers=headers
    )
    assert r.status_code == 200
    assert r.json()["status"] == "succeeded"
    stored = await api.job(job["id"])
    assert stored["result"] == {"ok": True}
    assert stored["lease"] is None
    assert [run["outcome"] for run in stored["runs"]] == ["succeeded"]
    assert stored["runs"][0]["agent_id"] == agent_id


async def test_stale_epoch_gets_lease_lost_and_changes_nothing(api: Api) -> None:
    """A call with an epoch the agent no longer holds is 409 lease_lost and writes nothing."""
    _, headers = await api.agent()
    job = await api.enqueue()
    await api.claim(headers)
    before = await api.job(job["id"])
    for op, body in (
        ("heartbeat", {"epoch": 2}),
        ("complete", {"epoch": 2}),
        ("fail", {"epoch": 2, "error": "x"}),
        ("release", {"epoch": 2}),
    ):
        r = await api.client.post(f"/v1/jobs/{job['id']}/{op}", json=body, headers=headers)
        assert r.status_code == 409, (op, r.text)
        assert r.json()["error"]["code"] == "lease_lost"
    assert await api.job(job["id"]) == before


async def test_an_epoch_that_is_not_a_json_integer_is_refused_and_changes_nothing(
    api: Api,
) -> None:
    """A fencing epoch is an integer: "1", true and 1.0 are 422, not coerced to epoch 1."""
    _, headers = await api.agent()
    job = await api.enqueue()
    await api.claim(headers)
    before = await api.job(job["id"])
    for epoch in ("1", True, 1.0):
        for op, extra in (
            ("heartbeat", {}),
            ("complete", {}),
            ("fail", {"error": "x"}),
            ("release", {}),
        ):
            for query in ("", "?via=plain"):  # the hot path and FastAPI's
                r = await api.client.post(
                    f"/v1/jobs/{job['id']}/{op}{query}",
                    json={"epoch": epoch, **extra},
                    headers=headers,
                )
                assert r.status_code == 422, (epoch, op, query, r.text)
                assert r.json()["error"]["code"] == "validation_error"
    assert await api.job(job["id"]) == before


async def test_another_agent_cannot_touch_a_lease(api: Api) -> None:
    """An agent acting on a lease it does not hold gets lease_lost."""
    _, owner = await api.agent()
    _, other = await api.agent(name="other")
    job = await api.enqueue()
    await api.claim(owner)
    r = await api.client.post(f"/v1/jobs/{job['id']}/complete", json={"epoch": 1}, headers=other)
    assert r.status_code == 409
    assert r.json()["error"]["code"] == "lease_lost"
    assert (await api.job(job["id"]))["status"] == "leased"


async def test_fail_requeues_with_backoff_then_fails_for_good(api: Api) -> None:
    """A retryable failure requeues after backoff; the last attempt's failure fails the job."""
    _, headers = await api.agent()
    job = await api.enqueue(max_attempts=2)
    await api.claim(headers)
    r = await api.client.post(
        f"/v1/jobs/{job['id']}/fail", json={"epoch": 1, "error": "boom"}, headers=headers
    )
    assert r.status_code == 200
    assert r.json()["status"] == "queued"
    assert await api.claim(headers) == []  # not due until the backoff has passed
    api.clock.advance(2)
    [again] = await api.claim(headers)
    assert again["lease"]["epoch"] == 2
    r = await api.client.post(
        f"/v1/jobs/{job['id']}/fail", json={"epoch": 2, "error": "boom"}, headers=headers
    )
    assert r.json()["status"] == "failed"
    assert r.json()["last_error"] == "boom"


async def test_release_requeues_without_counting_the_attempt(api: Api) -> None:
    """A released job is claimable at once and its attempt is given back."""
    _, headers = await api.agent()
    job = await api.enqueue()
    await api.claim(headers)
    r = await api.client.post(f"/v1/jobs/{job['id']}/release", json={"epoch": 1}, headers=headers)
    assert r.status_code == 200
    assert r.json()["status"] == "queued"
    assert r.json()["attempts"] == 0
    [again] = await api.claim(headers)
    assert again["lease"]["epoch"] == 2


async def test_expired_lease_is_requeued_by_the_reaper(api: Api) -> None:
    """A lease not renewed by expires_at is reaped: requeued, run outcome lease_expired."""
    _, headers = await api.agent()
    job = await api.enqueue(lease_seconds=30)
    await api.claim(headers)
    api.clock.advance(30)
    from fleet_coordinator.services import reap_once

    assert await reap_once(api.co) == 1
    stored = await api.job(job["id"])
    assert stored["status"] == "queued"
    assert stored["attempts"] == 1
    assert stored["runs"][-1]["outcome"] == "lease_expired"
    r = await api.client.post(f"/v1/jobs/{job['id']}/complete", json={"epoch": 1}, headers=headers)
    assert r.status_code == 409
    assert await reap_once(api.co) == 0


async def test_timeout_ends_the_attempt_as_timed_out(api: Api) -> None:
    """An attempt past timeout_seconds is ended by the reaper even while heartbeating."""
    _, headers = await api.agent()
    job = await api.enqueue(timeout_seconds=20, lease_seconds=15, max_attempts=1)
    await api.claim(headers)
    api.clock.advance(10)
    await api.client.post(f"/v1/jobs/{job['id']}/heartbeat", json={"epoch": 1}, headers=headers)
    api.clock.advance(10)
    from fleet_coordinator.services import reap_once

    assert await reap_once(api.co) == 1
    stored = await api.job(job["id"])
    assert stored["status"] == "failed"
    assert stored["runs"][-1]["outcome"] == "timed_out"


async def test_lease_expiry_never_promises_more_than_the_attempts_timeout(api: Api) -> None:
    """With timeout 2 s and lease 30 s, claim and heartbeat answer expires_at = claim + 2 s."""
    from fleet_coordinator.services import reap_once

    _, headers = await api.agent()
    job = await api.enqueue(timeout_seconds=2, lease_seconds=30)
    [lease] = await api.claim(headers)
    claimed = datetime.fromisoformat((await api.job(job["id"]))["runs"][-1]["claimed_at"])
    deadline = claimed + timedelta(seconds=2)
    assert datetime.fromisoformat(lease["lease"]["expires_at"]) == deadline
    api.clock.advance(1)
    r = await api.client.post(f"/v1/jobs/{job['id']}/heartbeat", json={"epoch": 1}, headers=headers)
    assert r.status_code == 200, r.text
    assert datetime.fromisoformat(r.json()["lease"]["expires_at"]) == deadline
    api.clock.advance(1)  # at expires_at, as answered: the lease is gone
    r = await api.client.post(f"/v1/jobs/{job['id']}/heartbeat", json={"epoch": 1}, headers=headers)
    assert r.status_code == 409
    assert r.json()["error"]["code"] == "lease_lost"
    assert await reap_once(api.co) == 1
    stored = await api.job(job["id"])
    assert stored["status"] == "queued"
    assert stored["runs"][-1]["outcome"] == "timed_out"


async def test_reaper_never_touches_a_completed_job(api: Api) -> None:
    """A job completed before the sweep stays succeeded."""
    _, headers = await api.agent()
    job = await api.enqueue(lease_seconds=5)
    await api.claim(headers)
    await api.client.post(f"/v1/jobs/{job['id']}/complete", json={"epoch": 1}, headers=headers)
    api.clock.advance(100)
    from fleet_coordinator.services import reap_once

    assert await reap_once(api.co) == 0
    assert (await api.job(job["id"]))["status"] == "succeeded"


async def test_a_job_shows_its_newest_runs_and_counts_the_dropped_ones(api: Api) -> None:
    """A job keeps its newest 20 runs; ``runs_dropped`` says how many older ones it had."""
    agent_id, headers = await api.agent()
    job = await api.enqueue()
    for _ in range(22):
        (leased,) = await api.claim(headers)
        r = await api.client.post(
            f"/v1/jobs/{job['id']}/release",
            json={"epoch": leased["lease"]["epoch"]},
            headers=headers,
        )
        assert r.status_code == 200, r.text
    stored = await api.job(job["id"])
    assert len(stored["runs"]) == 20
    assert stored["runs_dropped"] == 2
    assert [run["epoch"] for run in stored["runs"]] == list(range(3, 23))
    assert stored["runs"][0]["agent_id"] == agent_id
