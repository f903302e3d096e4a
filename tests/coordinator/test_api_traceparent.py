"""The job's ``traceparent``: taken at enqueue, stored, handed to the agent with the lease."""

from __future__ import annotations

from .conftest import Api

PROVIDERS = ("memory", "sqlite")
TRACEPARENT = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"


async def test_a_traceparent_is_stored_and_returned_with_the_lease(api: Api) -> None:
    """The claim answers the job with the traceparent it was enqueued with."""
    job = await api.enqueue(traceparent=TRACEPARENT)
    assert job["traceparent"] == TRACEPARENT
    _, agent = await api.agent()
    [leased] = await api.claim(agent)
    assert leased["job"]["traceparent"] == TRACEPARENT
    assert (await api.job(job["id"]))["traceparent"] == TRACEPARENT


async def test_jobs_without_one_have_none(api: Api) -> None:
    """A job enqueued without a traceparent shows null."""
    assert (await api.enqueue())["traceparent"] is None


async def test_a_batch_takes_one_per_job(api: Api) -> None:
    """Each job of a batch keeps its own traceparent."""
    body = {"jobs": [{"kind": "a", "traceparent": TRACEPARENT}, {"kind": "b"}]}
    r = await api.client.post("/v1/jobs/batch", json=body, headers=api.admin)
    assert r.status_code == 201, r.text
    assert [j["traceparent"] for j in r.json()["items"]] == [TRACEPARENT, None]


async def test_a_malformed_traceparent_is_422(api: Api) -> None:
    """Anything but the W3C ``version-traceid-parentid-flags`` form is refused."""
    for bad in ("00-xyz", TRACEPARENT.upper(), TRACEPARENT + "-extra"):
        body = {"kind": "k", "traceparent": bad}
        r = await api.client.post("/v1/jobs", json=body, headers=api.admin)
        assert r.status_code == 422, bad


async def test_a_replay_from_another_trace_is_the_same_job(api: Api) -> None:
    """An idempotent replay differing only in traceparent is a replay (200), not a conflict."""
    first = await api.enqueue(idempotency_key="k1", traceparent=TRACEPARENT)
    other = TRACEPARENT.replace("00f067aa0ba902b7", "1111111111111111")
    body = {"kind": "build", "payload": {"n": 1}, "idempotency_key": "k1", "traceparent": other}
    r = await api.client.post("/v1/jobs", json=body, headers=api.admin)
    assert (r.status_code, r.json()["id"], r.json()["traceparent"]) == (
        200,
        first["id"],
        TRACEPARENT,
    )
