"""Races on ``POST /v1/reports`` through three replicas over one store, on every provider.

Each report in a batch must be fenced on its own exactly as its single endpoint
(SPEC 13): whatever else races it — the same lease reported through another
replica, the reaper at the lease's expiry, a stale epoch beside live ones,
another agent's lease in the batch — at most one write per lease epoch wins, and
what is stored is what the winner's answer said. ``asyncio.gather`` starts every
racer before any answers.
"""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from fleet_coordinator.services import reap_once

from .conftest import Api
from .test_service_races import replicas_of

LEASE = 10.0


async def _report(api: Api, headers: dict[str, str], **body: Any) -> dict[str, Any]:
    r = await api.client.post("/v1/reports", json=body, headers=headers)
    assert r.status_code == 200, r.text
    data: dict[str, Any] = r.json()
    return data


def _item(job_id: str, epoch: int, action: str, **fields: Any) -> dict[str, Any]:
    body = {"job_id": job_id, "epoch": epoch, "action": action, **fields}
    if action != "complete":
        body.pop("result", None)  # only a complete takes one (else 422)
    if action == "fail":
        body.setdefault("error", "boom")
    return body


async def test_one_lease_reported_through_three_replicas_at_once_has_one_winner(
    api: Api,
) -> None:
    """The same leases ended through three replicas at once: one ok per lease, stored as said."""
    async with replicas_of(api, 3) as apps:
        _, headers = await api.agent(capacity=8)
        for round_ in range(3):
            for _ in range(8):
                await api.enqueue(lease_seconds=LEASE)
            ids = [le["job"]["id"] for le in await api.claim(headers, max_jobs=8)]
            assert len(ids) == 8
            actions = ["complete", "fail", "release"]
            answers = await asyncio.gather(
                *(
                    _report(
                        app,
                        headers,
                        items=[
                            _item(j, 1, actions[(n + k) % 3], result={"by": n})
                            for k, j in enumerate(ids)
                        ],
                    )
                    for n, app in enumerate(apps)
                )
            )
            for k, job_id in enumerate(ids):
                winners = [n for n, a in enumerate(answers) if a["items"][k]["ok"]]
                assert len(winners) == 1, (round_, job_id, answers)
                losers = [a["items"][k] for n, a in enumerate(answers) if n not in winners]
                assert all(o["error"]["code"] == "lease_lost" for o in losers)
                stored = await apps[2].job(job_id)
                winner = winners[0]
                assert stored["status"] == answers[winner]["items"][k]["status"]
                assert stored["runs"][0]["outcome"] in {"succeeded", "failed", "released"}
                assert len(stored["runs"]) == 1
                if stored["status"] == "succeeded":
                    assert stored["result"] == {"by": winner}
            # Clear the stage: requeued jobs leave the queue so the next round starts clean.
            for job_id in ids:
                await api.client.post(f"/v1/jobs/{job_id}/cancel", headers=api.admin)


async def test_leases_ended_through_another_replica_free_their_slots_for_a_claim_here(
    api: Api,
) -> None:
    """Ended through replica B, which writes their release later, the slots are free on A.

    The claim on A sees fewer free slots than it asks for and checks the ledger's
    entries against the jobs before it trusts them: it used to do so only with a
    full ledger, and got one job here instead of three (its answer depended on which
    replica won each report, as in the test above).
    """
    async with replicas_of(api, 2, ledger_flush_seconds=60) as (here, there):
        _, headers = await api.agent(capacity=4)
        for _ in range(4):
            await api.enqueue(lease_seconds=LEASE)
        ids = [le["job"]["id"] for le in await here.claim(headers, max_jobs=4)]
        assert len(ids) == 4
        # One ends here, two through the other replica (their release not yet written),
        # and one lease stays live.
        ended_here = await _report(here, headers, items=[_item(ids[0], 1, "complete")])
        ended_there = await _report(
            there, headers, items=[_item(j, 1, "complete") for j in ids[1:3]]
        )
        assert [i["ok"] for i in ended_here["items"] + ended_there["items"]] == [True] * 3
        for _ in range(4):
            await api.enqueue(lease_seconds=LEASE)
        again = await here.claim(headers, max_jobs=4)
        assert len(again) == 3  # capacity 4, one lease live
        assert await here.claim(headers, max_jobs=4) == []  # and never more than capacity


async def test_stale_epochs_mixed_with_live_ones_change_only_the_live_leases(api: Api) -> None:
    """A batch of epoch-1 reports, half of them stale, races the epoch-2 holder's batch."""
    async with replicas_of(api, 3) as apps:
        _, headers = await api.agent(capacity=8)
        for _ in range(8):
            await api.enqueue(lease_seconds=LEASE)
        first = [le["job"]["id"] for le in await api.claim(headers, max_jobs=8)]
        # Half the leases expire and are taken again by the same agent, at epoch 2.
        stale = first[:4]
        for job_id in stale:
            await api.client.post(
                f"/v1/jobs/{job_id}/heartbeat", json={"epoch": 1}, headers=headers
            )
        api.clock.advance(LEASE / 2)
        live = first[4:]
        for job_id in live:
            beat = await api.client.post(
                f"/v1/jobs/{job_id}/heartbeat", json={"epoch": 1}, headers=headers
            )
            assert beat.status_code == 200
        api.clock.advance(LEASE / 2 + 0.1)  # the first half expired, the second did not
        assert await reap_once(apps[1].co) == 4
        again = [le["job"]["id"] for le in await api.claim(headers, max_jobs=4)]
        assert sorted(again) == sorted(stale)
        # Through three replicas at once: epoch 1 for every job (half stale), and two
        # epoch-2 batches for the re-claimed half that race each other.
        old_batch = [_item(j, 1, "complete", result={"epoch": 1}) for j in first]
        new_batch = [_item(j, 2, "complete", result={"epoch": 2}) for j in stale]
        rival = [_item(j, 2, "release") for j in stale]
        old, new, other = await asyncio.gather(
            _report(apps[0], headers, items=old_batch),
            _report(apps[1], headers, items=new_batch),
            _report(apps[2], headers, items=rival),
        )
        codes = [None if o["ok"] else o["error"]["code"] for o in old["items"]]
        assert codes == ["lease_lost"] * 4 + [None] * 4
        for k, job_id in enumerate(stale):
            wins = [new["items"][k]["ok"], other["items"][k]["ok"]]
            assert wins.count(True) == 1, (job_id, new, other)
            stored = await apps[2].job(job_id)
            outcomes = [r["outcome"] for r in stored["runs"]]
            if wins[0]:
                assert stored["result"] == {"epoch": 2}
                assert outcomes == ["lease_expired", "succeeded"]
            else:
                assert stored["result"] is None
                assert outcomes == ["lease_expired", "released"]
        for job_id in live:
            stored = await apps[2].job(job_id)
            assert stored["result"] == {"epoch": 1}
            assert [r["outcome"] for r in stored["runs"]] == ["succeeded"]


@pytest.mark.parametrize("offset", [-1e-3, 0.0, 1e-3], ids=["before", "at", "after"])
async def test_a_report_racing_the_reapers_at_expiry_leaves_one_outcome(
    api: Api, offset: float
) -> None:
    """At expiry a batch (heartbeats and completions), two reapers and claimers race.

    Before expiry every report wins and nothing is reaped; at or after it every
    report loses, each job is reaped exactly once and leased again at most once.
    """
    async with replicas_of(api, 3) as apps:
        holder_id, holder = await api.agent(name="holder", capacity=4)
        claimers = [await api.agent(name=f"c{i}", capacity=4) for i in range(4)]
        for round_ in range(3):
            for _ in range(4):
                await api.enqueue(lease_seconds=LEASE)
            ids = [le["job"]["id"] for le in await api.claim(holder, max_jobs=4)]
            api.clock.set(api.clock.now() + LEASE + offset)
            items = [_item(j, 1, "heartbeat" if k % 2 else "complete") for k, j in enumerate(ids)]
            answer, reaped_a, reaped_b, *claims = await asyncio.gather(
                _report(apps[round_ % 3], holder, items=items),
                reap_once(apps[1].co),
                reap_once(apps[2].co),
                *(apps[i % 3].claim(h, max_jobs=4) for i, (_, h) in enumerate(claimers)),
            )
            # Claimers may also take the jobs the holder had no room for (its ledger may
            # still count leases that ended on another replica): only ours matter here.
            leases = [le for result in claims for le in result if le["job"]["id"] in ids]
            assert len({le["job"]["id"] for le in leases}) == len(leases)
            for k, job_id in enumerate(ids):
                stored = await api.job(job_id)
                out = answer["items"][k]
                epochs = [r["epoch"] for r in stored["runs"]]
                assert epochs == list(range(1, len(epochs) + 1))
                if offset < 0:
                    assert out["ok"], out
                    assert stored["runs"][0]["outcome"] == ("running" if k % 2 else "succeeded")
                else:
                    assert out["error"]["code"] == "lease_lost"
                    assert stored["runs"][0]["outcome"] == "lease_expired"
                    assert len(stored["runs"]) <= 2
            if offset < 0:
                assert reaped_a + reaped_b == 0
                assert leases == []
            else:
                assert reaped_a + reaped_b == len(ids)
                assert all(le["lease"]["epoch"] == 2 for le in leases)
            # Clear the stage for the next round.
            for job in (await api.client.get("/v1/jobs", headers=api.admin)).json()["items"]:
                await api.client.post(f"/v1/jobs/{job['id']}/cancel", headers=api.admin)
            api.clock.advance(LEASE + 1)
            await reap_once(api.co)
            assert holder_id


async def test_a_batch_mixing_another_agents_lease_never_touches_it(api: Api) -> None:
    """Agent A reports B's lease beside its own while B ends it elsewhere: A's item always loses."""
    async with replicas_of(api, 3) as apps:
        a_id, a = await api.agent(name="a", capacity=4)
        b_id, b = await api.agent(name="b", capacity=4)
        for round_ in range(4):
            for _ in range(4):
                await api.enqueue(lease_seconds=LEASE)
            mine = [le["job"]["id"] for le in await api.claim(a, max_jobs=2)]
            theirs = [le["job"]["id"] for le in await api.claim(b, max_jobs=2)]
            batch = [_item(j, 1, "complete", result={"by": "a"}) for j in (*mine, *theirs)]
            their_batch = [_item(j, 1, "release") for j in theirs]
            their_rival = [_item(j, 1, "fail", retryable=False) for j in theirs]
            from_a, from_b, rival_b, *beats = await asyncio.gather(
                _report(apps[round_ % 3], a, items=batch),
                _report(apps[(round_ + 1) % 3], b, items=their_batch),
                _report(apps[(round_ + 2) % 3], b, items=their_rival),
                *(
                    apps[2].client.post(f"/v1/jobs/{j}/complete", json={"epoch": 1}, headers=a)
                    for j in theirs
                ),
            )
            assert [o["ok"] for o in from_a["items"]] == [True, True, False, False]
            assert all(o["error"]["code"] == "lease_lost" for o in from_a["items"][2:])
            assert all(r.status_code == 409 for r in beats)
            for job_id in mine:
                assert (await apps[1].job(job_id))["status"] == "succeeded"
            for k, job_id in enumerate(theirs):
                # B's own release and fail race too: exactly one of them lands.
                wins = [from_b["items"][k]["ok"], rival_b["items"][k]["ok"]]
                assert wins.count(True) == 1
                stored = await apps[1].job(job_id)
                assert stored["result"] is None
                outcome = "released" if wins[0] else "failed"
                assert [(r["agent_id"], r["outcome"]) for r in stored["runs"]] == [(b_id, outcome)]
                await api.client.post(f"/v1/jobs/{job_id}/cancel", headers=api.admin)
        assert a_id != b_id
