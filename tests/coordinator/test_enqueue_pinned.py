"""The bytes an enqueue answers and the document it stores, pinned byte for byte.

``POST /v1/jobs`` and ``POST /v1/jobs/batch`` build each job, its stored body and
its answer on a path tuned for CPU (``routes_jobs``, ``services/jobs._build``,
``store.job_to_doc``, ``convert.job_json``). Clients read the answer, and stored
bodies outlive the version that wrote them (key order included: it is the stored
JSON), so both are pinned here as the versions before that tuning wrote them: a job
with no optional field, one with every field set (an offset in ``run_after``, unicode,
floats and nesting in the payload) and one with a payload only, alone and in a batch.
Random ids (and the shards they hash to) are the only parts filled in.
"""

from __future__ import annotations

import zlib
from typing import Any

import orjson

from .conftest import Api

PROVIDERS = ("memory", "sqlite")
START = 1_765_000_000.25

TRACE = "00-" + "1" * 32 + "-" + "2" * 16 + "-01"
EVERY_FIELD: dict[str, Any] = {
    "kind": "train",
    "queue": "gpu.q:1",
    "payload": {
        "n": 1,
        "f": 0.1,
        "big": 2**53 - 1,
        "s": 'é\u2028"x',
        "nested": [1.5, None, {"a": [True, False]}],
        "empty": {},
    },
    "priority": -7,
    "max_attempts": 5,
    "lease_seconds": 30,
    "timeout_seconds": 90.5,
    "run_after": "2030-01-02T03:04:05.123456+01:00",
    "requires": {"gpu": "a100", "zone": ""},
    "idempotency_key": "key-ü-1",
    "lock": "db",
    "traceparent": TRACE,
}

PAYLOAD = (
    '{"n":1,"f":0.1,"big":9007199254740991,"s":"é\u2028\\"x",'
    '"nested":[1.5,null,{"a":[true,false]}],"empty":{}}'
)
PLAIN_ANSWER = (
    '{"id":"<ID>","queue":"default","kind":"build","payload":{},"traceparent":null,'
    '"priority":0,"status":"queued","attempts":0,"max_attempts":3,"run_after":"<RUN_AT>",'
    '"requires":{},"cancel_requested":false,"result":null,"last_error":null,'
    '"created_at":"<AT>","updated_at":"<AT>","lock":null,"schedule":null,"lease":null}'
)
PLAIN_DOC = (
    '{"id":"<ID>","pk":"<PK>","queue":"default","kind":"build","priority":0,'
    '"status":"queued","attempts":0,"max_attempts":3,"lease_seconds":60.0,'
    '"run_after":<RUN_T>,"lock":"","created_at":<T>,"updated_at":<T>,"epoch":0,"runs":[],"codec":1}'
)
EVERY_ANSWER = (
    '{"id":"<ID>","queue":"gpu.q:1","kind":"train","payload":' + PAYLOAD + ","
    '"traceparent":"' + TRACE + '","priority":-7,"status":"queued","attempts":0,'
    '"max_attempts":5,"run_after":"2030-01-02T02:04:05.123456Z",'
    '"requires":{"gpu":"a100","zone":""},"cancel_requested":false,"result":null,'
    '"last_error":null,"created_at":"<AT>","updated_at":"<AT>","lock":"db",'
    '"schedule":null,"lease":null}'
)
EVERY_DOC = (
    '{"id":"<ID>","pk":"<PK>","queue":"gpu.q:1","kind":"train","payload":' + PAYLOAD + ","
    '"traceparent":"' + TRACE + '","priority":-7,"status":"queued","attempts":0,'
    '"max_attempts":5,"lease_seconds":30.0,"timeout_seconds":90.5,'
    '"run_after":1893549845.123456,"requires":{"gpu":"a100","zone":""},'
    '"idempotency_key":"<KEY>","lock":"db","created_at":<T>,"updated_at":<T>,'
    '"epoch":0,"runs":[],"request_hash":"<HASH>","codec":1}'
)
PAYLOAD_ONLY_ANSWER = PLAIN_ANSWER.replace(
    '"kind":"build","payload":{}', '"kind":"x","payload":{"a":1}'
)
PAYLOAD_ONLY_DOC = PLAIN_DOC.replace('"kind":"build"', '"kind":"x","payload":{"a":1}')

KEY_1 = ("k0134c8ec4515277b7b80ffa03135e5b8", "s11")
"""The id and shard of ``key-ü-1``: derived from the key, so pinned too."""
KEY_2 = ("k277fdb61a6babe8fcd91647358785e89", "s02")
HASH_1 = "1af8c609e770be65d0855be5204c4bdcb3f319d1d4c3371c89fa2522e1cb59c4"
HASH_2 = "1fc84e9d85602205022f1403b2220a67c50efd25af9043f4976fb05b803b07fd"
"""The hashes of ``EVERY_FIELD``'s bodies (the replay check): ``key-ü-1``, then ``key-2``."""


def _shard(job_id: str) -> str:
    """The shard of an id by the documented formula (crc32 modulo ``job_shards``, 16 here)."""
    return f"s{zlib.crc32(job_id.encode()) % 16:02d}"


def _filled(template: str, job_id: str, **fills: str) -> bytes:
    """``template`` with ``job_id``, its shard and each ``<NAME>`` of ``fills`` filled in."""
    template = template.replace("<ID>", job_id).replace("<PK>", _shard(job_id))
    for name, value in fills.items():
        template = template.replace(f"<{name}>", value)
    return template.encode()


async def _stored(api: Api, job_id: str) -> bytes:
    doc = await api.co.jobs.get(job_id, _shard(job_id))
    return orjson.dumps({k: v for k, v in doc.body.items() if not k.startswith("_")})


async def test_one_call_enqueue_answers_and_stores_the_pinned_bytes(api: Api) -> None:
    api.clock.set(START)
    plain = await api.client.post("/v1/jobs", json={"kind": "build"}, headers=api.admin)
    assert plain.status_code == 201
    job_id = plain.json()["id"]
    at, t = "2025-12-06T05:46:40.250000Z", "1765000000.25"
    assert plain.content == _filled(PLAIN_ANSWER, job_id, AT=at, RUN_AT=at)
    assert await _stored(api, job_id) == _filled(PLAIN_DOC, job_id, T=t, RUN_T=t)

    api.clock.set(START + 1.5)
    every = await api.client.post("/v1/jobs", json=EVERY_FIELD, headers=api.admin)
    assert every.status_code == 201
    key_id, key_shard = KEY_1
    assert _shard(key_id) == key_shard
    assert every.content == _filled(EVERY_ANSWER, key_id, AT="2025-12-06T05:46:41.750000Z")
    assert await _stored(api, key_id) == _filled(
        EVERY_DOC, key_id, T="1765000001.75", KEY="key-ü-1", HASH=HASH_1
    )

    # The replay answers the stored job, 200, in the same bytes.
    again = await api.client.post("/v1/jobs", json=EVERY_FIELD, headers=api.admin)
    assert (again.status_code, again.content) == (200, every.content)


async def test_a_batch_answers_and_stores_the_pinned_bytes(api: Api) -> None:
    api.clock.set(START + 3)
    jobs = [{"kind": "build"}, {**EVERY_FIELD, "idempotency_key": "key-2"}]
    jobs.append({"kind": "x", "payload": {"a": 1}})
    r = await api.client.post("/v1/jobs/batch", json={"jobs": jobs}, headers=api.admin)
    assert r.status_code == 201
    first, second, third = (item["id"] for item in r.json()["items"])
    assert (second, _shard(second)) == KEY_2
    # A microsecond per place in the batch: created_at orders the batch for claimers,
    # run_after stays the request's time.
    run_at, run_t = "2025-12-06T05:46:43.250000Z", "1765000003.25"
    answers = [
        _filled(PLAIN_ANSWER, first, AT=run_at, RUN_AT=run_at),
        _filled(EVERY_ANSWER, second, AT="2025-12-06T05:46:43.250001Z"),
        _filled(PAYLOAD_ONLY_ANSWER, third, AT="2025-12-06T05:46:43.250002Z", RUN_AT=run_at),
    ]
    assert r.content == b'{"items":[' + b",".join(answers) + b"]}"
    assert await _stored(api, first) == _filled(PLAIN_DOC, first, T=run_t, RUN_T=run_t)
    assert await _stored(api, second) == _filled(
        EVERY_DOC, second, T="1765000003.250001", KEY="key-2", HASH=HASH_2
    )
    assert await _stored(api, third) == _filled(
        PAYLOAD_ONLY_DOC, third, T="1765000003.250002", RUN_T=run_t
    )
