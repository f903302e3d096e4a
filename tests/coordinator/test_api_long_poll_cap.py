"""A greedy agent's long-polls are capped per agent; an honest agent is served meanwhile."""

from __future__ import annotations

import asyncio
from collections.abc import Callable

from .conftest import Api

PROVIDERS = ("memory", "sqlite")


async def _until(condition: Callable[[], bool], what: str) -> None:
    """Poll ``condition()`` until true, failing after 10 seconds."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + 10.0
    while not condition():
        assert loop.time() < deadline, f"timed out waiting for {what}"
        await asyncio.sleep(0.01)


async def test_long_polls_past_the_cap_get_429_and_an_honest_agent_is_served(api: Api) -> None:
    """With FLEET_MAX_LONG_POLLS_PER_AGENT long-polls waiting, the agent's next one is
    429 too_many_long_polls with Retry-After at once; another agent claims normally, and
    the waiting count returns to zero once the long-polls end."""
    cap = api.co.settings.max_long_polls_per_agent
    greedy_id, greedy = await api.agent(name="greedy", capacity=100)
    _, honest = await api.agent(name="honest")
    body = {"queues": ["greedy"], "wait_seconds": 30}
    waiting = [
        asyncio.create_task(api.client.post("/v1/claims", json=body, headers=greedy))
        for _ in range(cap)
    ]
    await _until(lambda: api.co.long_polls.waiting(greedy_id) == cap, "the long-polls to wait")

    refused = await api.client.post("/v1/claims", json=body, headers=greedy)
    assert refused.status_code == 429, refused.text
    assert refused.json()["error"]["code"] == "too_many_long_polls"
    assert refused.json()["error"]["details"] == {"limit": cap}
    assert refused.headers["retry-after"] == "2"
    # A claim that does not wait is not a long-poll: still served.
    r = await api.client.post("/v1/claims", json={"queues": ["greedy"]}, headers=greedy)
    assert r.status_code == 200

    job = await api.enqueue(queue="honest")
    r = await api.client.post(
        "/v1/claims", json={"queues": ["honest"], "wait_seconds": 30}, headers=honest
    )
    assert r.status_code == 200
    assert [lease["job"]["id"] for lease in r.json()["leases"]] == [job["id"]]

    # Jobs for the greedy agent end its long-polls; its count goes back to zero.
    for _ in range(cap):
        await api.enqueue(queue="greedy")
    answers = await asyncio.gather(*waiting)
    assert sum(len(a.json()["leases"]) for a in answers) == cap
    assert len(api.co.long_polls) == 0


async def test_a_report_whose_waiting_claim_is_past_the_cap_applies_none_of_its_items(
    api: Api,
) -> None:
    """``POST /v1/reports`` with a waiting claim past the cap: 429 and nothing applied
    (it used to complete the job and then answer 429, so a retry found it lost)."""
    cap = api.co.settings.max_long_polls_per_agent
    agent_id, headers = await api.agent(name="greedy", capacity=100)
    job = await api.enqueue(queue="work")
    [lease] = await api.claim(headers, queues=["work"])
    idle = {"queues": ["idle"], "wait_seconds": 30}
    waiting = [
        asyncio.create_task(api.client.post("/v1/claims", json=idle, headers=headers))
        for _ in range(cap)
    ]
    await _until(lambda: api.co.long_polls.waiting(agent_id) == cap, "the long-polls to wait")

    done = {"job_id": job["id"], "epoch": lease["lease"]["epoch"], "action": "complete"}
    report = {"items": [done], "claim": {"queues": ["idle"], "wait_seconds": 5}}
    refused = await api.client.post("/v1/reports", json=report, headers=headers)
    assert refused.status_code == 429, refused.text
    assert refused.json()["error"]["code"] == "too_many_long_polls"
    assert (await api.job(job["id"]))["status"] == "leased"
    assert api.co.long_polls.waiting(agent_id) == cap
    assert len(api.co.long_polls) == 1

    # The same report with a claim that does not wait is no long-poll: applied.
    report["claim"] = {"queues": ["idle"]}
    r = await api.client.post("/v1/reports", json=report, headers=headers)
    assert r.status_code == 200, r.text
    assert r.json()["items"][0]["ok"] is True
    assert (await api.job(job["id"]))["status"] == "succeeded"

    for _ in range(cap):
        await api.enqueue(queue="idle")
    answers = await asyncio.gather(*waiting)
    assert sum(len(a.json()["leases"]) for a in answers) == cap
    assert len(api.co.long_polls) == 0
