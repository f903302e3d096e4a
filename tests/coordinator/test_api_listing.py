"""GET /v1/jobs without a status: one store query per status, merged, on every provider.

No listing index leaves ``status`` out (``store/listing.py``): a listing without
one reads each status's index range, every one resuming after the same job, and
must page through exactly what filtering and sorting every job would give.
"""

from __future__ import annotations

from typing import Any

import pytest
from fleet_coordinator.store import every_job

from .conftest import Api


async def _listed_pages(api: Api, params: str, limit: int) -> list[list[str]]:
    pages: list[list[str]] = []
    cursor: str | None = None
    for _ in range(200):
        query = f"{params}&limit={limit}" + (f"&cursor={cursor}" if cursor else "")
        r = await api.client.get(f"/v1/jobs?{query}", headers=api.admin)
        assert r.status_code == 200, r.text
        body = r.json()
        pages.append([j["id"] for j in body["items"]])
        cursor = body["next_cursor"]
        if cursor is None:
            return pages
    raise AssertionError("the cursor never ended")


async def _every_job(api: Api) -> list[dict[str, Any]]:
    # The jobs keep no id order across shards (JOBS_SPEC.id_order): one query a status.
    return [d.body for q in every_job(10_000) for d in (await api.co.jobs.query(q)).items]


def _brute(jobs: list[dict[str, Any]], queue: str | None, kind: str | None) -> list[str]:
    kept = [
        j
        for j in jobs
        if (queue is None or j["queue"] == queue) and (kind is None or j["kind"] == kind)
    ]
    kept.sort(key=lambda j: (j["created_at"], j["id"], j["pk"]))
    return [j["id"] for j in kept]


@pytest.fixture
async def mixed(api: Api) -> Api:
    """Jobs of two queues and two kinds in every status, many enqueued at the same instant."""
    _, headers = await api.agent(capacity=4)
    for i in range(24):
        await api.enqueue(queue="qr"[i % 2], kind=("build", "resize")[i // 2 % 2], max_attempts=1)
        if i % 3 == 2:  # three jobs per instant: ties broken by id, then shard
            api.clock.advance(1)
    leases = await api.claim(headers, max_jobs=4)
    assert len(leases) == 4
    done, failed = leases[0], leases[1]
    for lease, verb, extra in ((done, "complete", {}), (failed, "fail", {"error": "x"})):
        r = await api.client.post(
            f"/v1/jobs/{lease['job']['id']}/{verb}",
            json={"epoch": lease["lease"]["epoch"], **extra},
            headers=headers,
        )
        assert r.status_code == 200, r.text
    queued = [j for j in await _every_job(api) if j["status"] == "queued"]
    for job in sorted(queued, key=lambda j: j["id"])[::4]:
        r = await api.client.post(f"/v1/jobs/{job['id']}/cancel", headers=api.admin)
        assert r.status_code == 200, r.text
    statuses = {j["status"] for j in await _every_job(api)}
    assert statuses == {"queued", "leased", "succeeded", "failed", "cancelled"}
    return api


@pytest.mark.parametrize("limit", [1, 3, 7])
@pytest.mark.parametrize("queue", [None, "q", "r"])
@pytest.mark.parametrize("kind", [None, "resize"])
async def test_a_listing_without_a_status_pages_through_exactly_the_matching_jobs(
    mixed: Api, queue: str | None, kind: str | None, limit: int
) -> None:
    """Oldest first, ties by id then shard, every status interleaved, each job once."""
    params = "&".join(
        f"{name}={value}" for name, value in (("queue", queue), ("kind", kind)) if value
    )
    pages = await _listed_pages(mixed, params or "x=1", limit)
    expected = _brute(await _every_job(mixed), queue, kind)
    assert expected
    assert [i for page in pages for i in page] == expected
    assert all(len(page) <= limit for page in pages)


async def test_jobs_changing_status_between_pages_are_listed_exactly_once(api: Api) -> None:
    """Every status's read resumes after the last job listed, whatever its status was.

    The second job listed is cancelled before the next page: resumed from the
    cancelled jobs' own last position (the first job), it would come again. The
    third, not yet listed, is claimed meanwhile and still comes once, from the
    leased jobs.
    """
    _, headers = await api.agent()
    ids = []
    for _ in range(4):
        ids.append((await api.enqueue(queue="q"))["id"])
        api.clock.advance(1)
    for job_id in (ids[0], ids[3]):
        r = await api.client.post(f"/v1/jobs/{job_id}/cancel", headers=api.admin)
        assert r.status_code == 200, r.text
    r = await api.client.get("/v1/jobs?queue=q&limit=2", headers=api.admin)
    first = r.json()
    assert [j["id"] for j in first["items"]] == ids[:2]
    r = await api.client.post(f"/v1/jobs/{ids[1]}/cancel", headers=api.admin)
    assert r.status_code == 200, r.text
    [lease] = await api.claim(headers)
    assert lease["job"]["id"] == ids[2]
    r = await api.client.get(
        f"/v1/jobs?queue=q&limit=2&cursor={first['next_cursor']}", headers=api.admin
    )
    second = r.json()
    assert [(j["id"], j["status"]) for j in second["items"]] == [
        (ids[2], "leased"),
        (ids[3], "cancelled"),
    ]
    assert second["next_cursor"] is None


async def test_a_cursor_of_another_listing_is_a_bad_cursor(api: Api) -> None:
    """Cursors stay bound to their listing: another queue, or a status filter, answers 400."""
    for i in range(4):
        await api.enqueue(queue="qr"[i % 2])
    cursors = {}
    for params in ("queue=q", "queue=r", "queue=q&status=queued", "kind=build"):
        r = await api.client.get(f"/v1/jobs?{params}&limit=1", headers=api.admin)
        cursors[params] = r.json()["next_cursor"]
        assert cursors[params] is not None
    for mine, other in (
        ("queue=q", "queue=r"),
        ("queue=q", "queue=q&status=queued"),
        ("queue=q&status=queued", "queue=q"),
        ("kind=build", "queue=q"),
    ):
        r = await api.client.get(
            f"/v1/jobs?{other}&limit=1&cursor={cursors[mine]}", headers=api.admin
        )
        assert r.status_code == 400, (mine, other, r.text)
        assert r.json()["error"]["code"] == "bad_cursor"
