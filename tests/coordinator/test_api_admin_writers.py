"""Admin writes of one document at once on one replica take turns, so none ends in a 503.

Each is a conditional-write loop that gives up after ``MAX_CAS_ATTEMPTS``
conflicts with 503 ``store_unavailable``. Racing one another, twenty PUTs of one
schedule each lost a round to every one that wrote first, and the last ones ran
out of rounds: 503s from a healthy store. Serialised per document in the replica
(``services/keyed_locks.py``), every write is one read and one write.
"""

from __future__ import annotations

import asyncio

import pytest

from .conftest import Api, CallCounter

WRITERS = 20


async def test_puts_of_one_schedule_at_once_all_land(
    api: Api, monkeypatch: pytest.MonkeyPatch
) -> None:
    creates = CallCounter(monkeypatch, api.co.schedules, "create")
    replaces = CallCounter(monkeypatch, api.co.schedules, "replace")
    answers = await asyncio.gather(
        *(
            api.client.put(
                "/v1/schedules/nightly",
                json={"cron": "0 3 * * *", "job": {"kind": f"k{i}"}},
                headers=api.admin,
            )
            for i in range(WRITERS)
        )
    )
    statuses = sorted(r.status_code for r in answers)
    assert statuses == [200] * (WRITERS - 1) + [201], [r.text for r in answers]
    assert (creates.calls, replaces.calls) == (1, WRITERS - 1)  # no write lost a race


async def test_pauses_and_resumes_of_one_schedule_at_once_all_land(
    api: Api, monkeypatch: pytest.MonkeyPatch
) -> None:
    r = await api.client.put(
        "/v1/schedules/nightly", json={"cron": "0 3 * * *", "job": {"kind": "k"}}, headers=api.admin
    )
    assert r.status_code == 201, r.text
    writes = CallCounter(monkeypatch, api.co.schedules, "update_if_match")
    answers = await asyncio.gather(
        *(
            api.client.post(
                f"/v1/schedules/nightly/{'pause' if i % 2 else 'resume'}", headers=api.admin
            )
            for i in range(WRITERS)
        )
    )
    assert [r.status_code for r in answers] == [200] * WRITERS, [r.text for r in answers]
    # In turn, each changes it (one write) but the first, a resume of a running schedule.
    assert writes.calls == WRITERS - 1


async def test_pauses_and_resumes_of_one_queue_at_once_all_land(
    api: Api, monkeypatch: pytest.MonkeyPatch
) -> None:
    writes = CallCounter(monkeypatch, api.co.agents, "update_if_match")
    answers = await asyncio.gather(
        *(
            api.client.post(f"/v1/queues/busy/{'pause' if i % 2 else 'resume'}", headers=api.admin)
            for i in range(WRITERS)
        )
    )
    assert [r.status_code for r in answers] == [200] * WRITERS, [r.text for r in answers]
    assert writes.calls == WRITERS - 1  # the first creates the marker; one write each after
