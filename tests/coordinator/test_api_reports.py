"""``POST /v1/reports``: many lease calls in one request, each fenced on its own (SPEC 13)."""

from __future__ import annotations

from typing import Any

import pytest
from fleet_coordinator import Settings, create_app
from fleet_coordinator.api.limits import RouteRules
from fleet_coordinator.services import agent_docs, get_job
from fleet_coordinator.store import agent_from_doc

from .conftest import Api


async def _report(api: Api, headers: dict[str, str], **body: Any) -> dict[str, Any]:
    r = await api.client.post("/v1/reports", json=body, headers=headers)
    assert r.status_code == 200, r.text
    data: dict[str, Any] = r.json()
    return data


async def _leased(api: Api, count: int) -> tuple[dict[str, str], list[str]]:
    """An agent of capacity ``count`` holding ``count`` fresh jobs: its headers, the job ids."""
    _, headers = await api.agent(capacity=count)
    for _ in range(count):
        await api.enqueue()
    return headers, [lease["job"]["id"] for lease in await api.claim(headers, max_jobs=count)]


async def test_each_action_answers_in_request_order_as_its_single_endpoint(api: Api) -> None:
    """Heartbeat, complete, fail and release in one request each do what their endpoint does."""
    _, headers = await api.agent(capacity=4)
    jobs = [await api.enqueue(max_attempts=1) for _ in range(4)]
    leases = await api.claim(headers, max_jobs=4)
    ids = [lease["job"]["id"] for lease in leases]
    assert sorted(ids) == sorted(j["id"] for j in jobs)
    items = [
        {"job_id": ids[0], "epoch": 1, "action": "heartbeat", "progress": {"p": 1}},
        {"job_id": ids[1], "epoch": 1, "action": "complete", "result": {"ok": True}},
        {"job_id": ids[2], "epoch": 1, "action": "fail", "error": "boom"},
        {"job_id": ids[3], "epoch": 1, "action": "release"},
    ]
    api.clock.advance(1)
    answer = await _report(api, headers, items=items)
    assert answer["leases"] == []
    out = answer["items"]
    assert [o["job_id"] for o in out] == ids
    assert all(o["ok"] for o in out)
    assert out[0]["status"] == "leased"
    assert out[0]["lease"]["epoch"] == 1
    assert out[0]["cancel_requested"] is False
    assert [o["status"] for o in out[1:]] == ["succeeded", "failed", "queued"]
    assert (await api.job(ids[1]))["result"] == {"ok": True}
    assert (await api.job(ids[2]))["last_error"] == "boom"
    assert (await api.job(ids[3]))["runs"][0]["outcome"] == "released"


async def test_a_heartbeat_items_progress_is_kept_on_its_run_as_by_its_endpoint(api: Api) -> None:
    """A batched heartbeat keeps its progress on the running run, as the heartbeat endpoint
    does (the console's timeline shows it); one without progress keeps the last."""
    _, headers = await api.agent(capacity=2)
    await api.enqueue()
    await api.enqueue()
    batched, single = [le["job"]["id"] for le in await api.claim(headers, max_jobs=2)]
    beat = {"job_id": batched, "epoch": 1, "action": "heartbeat", "progress": {"done": 3}}
    await _report(api, headers, items=[beat])
    r = await api.client.post(
        f"/v1/jobs/{single}/heartbeat", json={"epoch": 1, "progress": {"done": 3}}, headers=headers
    )
    assert r.status_code == 200, r.text
    for job_id in (batched, single):
        assert (await get_job(api.co, job_id)).runs[-1].progress == {"done": 3}, job_id
    await _report(api, headers, items=[{"job_id": batched, "epoch": 1, "action": "heartbeat"}])
    assert (await get_job(api.co, batched)).runs[-1].progress == {"done": 3}


async def test_an_item_answer_carries_only_the_fields_of_its_outcome(api: Api) -> None:
    """SPEC's item answer has optional, non-null fields: an ok item carries ``status`` (a
    heartbeat also ``lease`` and ``cancel_requested``), a failed one ``error``; none is null."""
    headers, ids = await _leased(api, 4)
    items = [
        {"job_id": ids[0], "epoch": 1, "action": "heartbeat"},
        {"job_id": ids[1], "epoch": 1, "action": "complete"},
        {"job_id": ids[2], "epoch": 1, "action": "fail", "error": "boom"},
        {"job_id": ids[3], "epoch": 1, "action": "release"},
        {"job_id": ids[0], "epoch": 9, "action": "heartbeat"},
        {"job_id": "0" * 32, "epoch": 1, "action": "complete"},
        {"job_id": ids[1], "epoch": 1, "action": "complete", "result": {"x": "y" * 5000}},
    ]
    answers = []
    for item in items:  # one request each: a job appears once per request
        answers += (await _report(api, headers, items=[item]))["items"]
    assert [sorted(a) for a in answers] == [
        ["cancel_requested", "job_id", "lease", "ok", "status"],
        ["job_id", "ok", "status"],
        ["job_id", "ok", "status"],
        ["job_id", "ok", "status"],
        *[["error", "job_id", "ok"]] * 3,
    ]
    codes = [a["error"]["code"] for a in answers[4:]]
    assert codes == ["lease_lost", "not_found", "payload_too_large"]
    assert all(v is not None for a in answers for v in a.values())


async def test_a_failed_item_changes_nothing_for_the_others(api: Api) -> None:
    """A stale epoch, an unknown job and a too-large result fail in place; the rest apply."""
    headers, ids = await _leased(api, 3)
    items = [
        {"job_id": ids[0], "epoch": 2, "action": "complete"},
        {"job_id": "0" * 32, "epoch": 1, "action": "complete"},
        {"job_id": ids[1], "epoch": 1, "action": "complete", "result": {"x": "y" * 5000}},
        {"job_id": ids[2], "epoch": 1, "action": "complete"},
    ]
    out = (await _report(api, headers, items=items))["items"]
    assert [(o["ok"], o.get("error", {}).get("code")) for o in out] == [
        (False, "lease_lost"),
        (False, "not_found"),
        (False, "payload_too_large"),
        (True, None),
    ]
    assert [(await api.job(i))["status"] for i in ids] == ["leased", "leased", "succeeded"]


async def test_a_report_on_another_agents_lease_is_lease_lost(api: Api) -> None:
    """An agent cannot end or renew a lease it does not hold, even with the right epoch."""
    _, mine = await api.agent()
    holder_id, theirs = await api.agent(name="other")
    job = await api.enqueue()
    await api.claim(theirs)
    out = await _report(api, mine, items=[{"job_id": job["id"], "epoch": 1, "action": "release"}])
    assert out["items"][0]["error"]["code"] == "lease_lost"
    stored = await api.job(job["id"])
    assert stored["status"] == "leased"
    assert stored["lease"]["agent_id"] == holder_id


async def test_the_claim_uses_the_capacity_the_reports_freed(api: Api) -> None:
    """A full agent that completes its job and claims in the same request gets the next job."""
    _, headers = await api.agent(capacity=1)
    first = await api.enqueue()
    api.clock.advance(1)  # older first (SPEC 5)
    second = await api.enqueue()
    [lease] = await api.claim(headers)
    assert lease["job"]["id"] == first["id"]
    assert await api.claim(headers) == []  # full
    answer = await _report(
        api,
        headers,
        items=[{"job_id": first["id"], "epoch": 1, "action": "complete"}],
        claim={"max_jobs": 1},
    )
    assert answer["items"][0]["status"] == "succeeded"
    assert [le["job"]["id"] for le in answer["leases"]] == [second["id"]]
    assert answer["leases"][0]["lease"]["epoch"] == 1


async def test_a_report_cycle_decodes_its_agent_once(
    api: Api, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A C=1 agent's complete-and-claim decodes its agent document once: at the ledger
    write; the next claim starts from that version, decoded already (``AgentDocs.stored``)."""
    _, headers = await api.agent(capacity=1)
    for _ in range(4):
        await api.enqueue()
    [lease] = await api.claim(headers)
    decoded: list[str] = []

    def counted(body: Any) -> Any:
        decoded.append(body["id"])
        return agent_from_doc(body)

    monkeypatch.setattr(agent_docs, "agent_from_doc", counted)
    job_id = lease["job"]["id"]
    for _ in range(3):
        answer = await _report(
            api,
            headers,
            items=[{"job_id": job_id, "epoch": 1, "action": "complete"}],
            claim={"max_jobs": 1},
        )
        assert answer["items"][0]["status"] == "succeeded"
        [lease] = answer["leases"]
        job_id = lease["job"]["id"]
    assert len(decoded) == 3, decoded


async def test_no_items_and_a_claim_is_a_claim(api: Api) -> None:
    """An empty report list with a claim leases like ``POST /v1/claims``."""
    _, headers = await api.agent()
    job = await api.enqueue()
    answer = await _report(api, headers, claim={})
    assert answer["items"] == []
    assert [le["job"]["id"] for le in answer["leases"]] == [job["id"]]
    assert (await _report(api, headers)) == {"items": [], "leases": []}


async def test_a_repeated_job_or_an_invalid_item_rejects_the_whole_request(api: Api) -> None:
    """422 and nothing applied: a job twice, a fail without error, an unknown action, >100."""
    _, headers = await api.agent(capacity=2)
    await api.enqueue()
    [lease] = await api.claim(headers)
    job_id = lease["job"]["id"]
    done = {"job_id": job_id, "epoch": 1, "action": "complete"}
    bodies: list[dict[str, Any]] = [
        {"items": [done, {**done, "action": "heartbeat"}]},
        {"items": [done, {"job_id": "x" * 32, "epoch": 1, "action": "fail"}]},
        {"items": [done, {"job_id": "y" * 32, "epoch": 1, "action": "finish"}]},
        {"items": [done, {"job_id": "z" * 32, "epoch": 0, "action": "release"}]},
        # A fencing epoch is a JSON integer: not coerced from a string, a bool or a float.
        {"items": [{**done, "epoch": "1"}]},
        {"items": [{**done, "epoch": True}]},
        {"items": [{**done, "epoch": 1.0}]},
        {"items": [{**done, "job_id": f"{i:032x}"} for i in range(101)]},
        {"items": [done], "claim": {"max_jobs": 0}},
    ]
    for body in bodies:
        r = await api.client.post("/v1/reports", json=body, headers=headers)
        assert r.status_code == 422, r.text
        assert r.json()["error"]["code"] == "validation_error"
    assert (await api.job(job_id))["status"] == "leased"


STRAY_FIELDS = [
    ("heartbeat", "result", {"r": 1}),
    ("heartbeat", "error", "boom"),
    ("heartbeat", "retryable", False),
    ("heartbeat", "result", None),
    ("complete", "error", "boom"),
    ("complete", "progress", {"p": 1}),
    ("complete", "retryable", True),
    ("fail", "result", {"r": 1}),
    ("fail", "progress", {"p": 1}),
    ("release", "result", None),
    ("release", "error", "boom"),
    ("release", "retryable", False),
    ("release", "progress", {"p": 1}),
]
"""A field an action's single endpoint does not take, with a value (``null`` included)."""


async def test_a_field_its_action_does_not_take_rejects_the_whole_request(api: Api) -> None:
    """An item carrying a field its single endpoint refuses (a result on a heartbeat, an error
    on a complete …) makes the request 422 with nothing applied, as an invalid body does."""
    _, headers = await api.agent(capacity=2)
    await api.enqueue()
    await api.enqueue()
    first, second = [le["job"]["id"] for le in await api.claim(headers, max_jobs=2)]
    done = {"job_id": first, "epoch": 1, "action": "complete", "result": {"ok": 1}}
    for action, field, value in STRAY_FIELDS:
        base: dict[str, Any] = {"epoch": 1, field: value}
        if action == "fail":
            base["error"] = "boom"
        single = await api.client.post(f"/v1/jobs/{second}/{action}", json=base, headers=headers)
        assert single.status_code == 422, (action, field, single.text)  # as its endpoint
        item = {"job_id": second, "action": action, **base}
        r = await api.client.post("/v1/reports", json={"items": [done, item]}, headers=headers)
        assert r.status_code == 422, (action, field, r.text)
        assert r.json()["error"]["code"] == "validation_error"
    assert [(await api.job(j))["status"] for j in (first, second)] == ["leased", "leased"]


async def test_reports_need_an_agent_token(api: Api) -> None:
    """No token is 401, the admin token 403."""
    r = await api.client.post("/v1/reports", json={"items": []})
    assert r.status_code == 401
    r = await api.client.post("/v1/reports", json={"items": []}, headers=api.admin)
    assert r.status_code == 403


def test_the_body_bound_counts_one_free_form_value_an_item() -> None:
    """Each item takes only its action's fields (a union chosen by ``action``), so the guard
    bounds a report body by 100 items of one result or progress each: ~53 MB with the
    default payload limit, where a model allowing both in every item allowed ~111 MB."""
    settings = Settings(store_url="memory://", admin_token="an-admin-token-for-the-bound")
    rules = RouteRules(create_app(settings), settings.max_payload_bytes)
    portable = 2 * settings.max_payload_bytes  # what a free-form value may take
    limit = rules.match("POST", "/v1/reports").body_limit
    assert 100 * portable < limit < 1.1 * 100 * portable


async def test_a_store_failure_in_the_claim_answers_the_items_already_applied(
    api: Api, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The claim after the items fails (503): the items, written, are answered in place.

    Before, the whole request answered 503 although its items had ended their
    leases in the store: the agent, told nothing was applied, retried them and got
    ``lease_lost`` for a job it had completed.
    """
    from fleet_datastore import StoreUnavailableError

    async def no_query(*args: object) -> object:
        raise StoreUnavailableError("the store went away")

    headers, ids = await _leased(api, 2)
    await api.enqueue()  # for the claims to look for
    monkeypatch.setattr(api.co.jobs.inner, "query", no_query)  # the claim's candidate query
    for job_id, claim in ((ids[0], {"max_jobs": 1}), (ids[1], {"max_jobs": 1, "wait_seconds": 1})):
        r = await api.client.post(
            "/v1/reports",
            json={"items": [{"job_id": job_id, "epoch": 1, "action": "complete"}], "claim": claim},
            headers=headers,
        )
        assert r.status_code == 200, r.text
        assert r.json() == {
            "items": [{"job_id": job_id, "ok": True, "status": "succeeded"}],
            "leases": [],
        }
    # Nothing applied, nothing to answer: the claim's failure is the request's (503).
    r = await api.client.post("/v1/reports", json={"items": [], "claim": {}}, headers=headers)
    assert r.status_code == 503, r.text
    monkeypatch.undo()
    assert [(await api.job(i))["status"] for i in ids] == ["succeeded", "succeeded"]
