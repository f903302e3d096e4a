"""The codec stamp changes with the encoding: ``job_to_doc``'s output is pinned to it here.

A body stamped with ``CODEC_STAMP`` is taken for exactly ``job_to_doc`` of the
state it decodes to, wherever it was read from, and its next write takes its patch
from the two states (``JobStates.written``, ``store.job_patch``). A version that
encoded some state otherwise under the same stamp would take the bodies of the
version before it for its own, and patch them wrongly. So the encoding of a fixed
set of states, every field away from its default in one of them, is hashed and
pinned together with the stamp: a change of the encoding fails this test until
the stamp is changed too and the new hash is pinned with it.
"""

from __future__ import annotations

import hashlib

import orjson
from fleet_coordinator.domain import JobState, JobStatus, Lease, Run, RunOutcome
from fleet_coordinator.store import CODEC_STAMP, Retention, job_from_doc, job_to_doc

from .domain_support import AGENT, T0

PINNED = (1, "ff593310edc2ae4b3d7dcdcf6537f30b737ccd247c51939530947a66d862d0f5")
"""``(CODEC_STAMP, the hash of the encodings below)``: change both together, never one."""

RUN = Run(run_id="run-1", epoch=1, agent_id=AGENT, claimed_at=T0 + 1)
LEASE = Lease(
    agent_id=AGENT, run_id="run-1", epoch=1, expires_at=T0 + 61, claimed_at=T0 + 1, deadline=None
)
QUEUED = JobState(id="j-1", queue="default", kind="build", payload={}, created_at=T0)
SETTLED = JobState(
    id="k" + "0" * 32,
    queue="gpu",
    kind="train",
    payload={"n": 1, "nested": [1.5, None, {"a": "b"}]},
    traceparent="00-" + "1" * 32 + "-" + "2" * 16 + "-01",
    priority=-2,
    max_attempts=5,
    lease_seconds=30.0,
    timeout_seconds=90.0,
    run_after=T0 + 10,
    requires={"gpu": "a100"},
    idempotency_key="key-1",
    lock="db",
    schedule="nightly",
    created_at=T0,
    updated_at=T0,
)
STATES: tuple[JobState, ...] = (
    QUEUED,
    SETTLED,
    # Leased, with and without a deadline, a cancel asked for, progress on the run.
    JobState(
        id="j-2",
        queue="default",
        kind="build",
        payload={"n": 2},
        status=JobStatus.LEASED,
        attempts=1,
        created_at=T0,
        updated_at=T0 + 1,
        lease=LEASE,
        epoch=1,
        runs=(RUN,),
    ),
    JobState(
        id="j-3",
        queue="default",
        kind="build",
        payload={},
        status=JobStatus.LEASED,
        attempts=2,
        cancel_requested=True,
        last_error="boom",
        created_at=T0,
        updated_at=T0 + 2,
        lease=Lease(
            agent_id=AGENT,
            run_id="run-2",
            epoch=2,
            expires_at=T0 + 62,
            claimed_at=T0 + 2,
            deadline=T0 + 32,
        ),
        epoch=2,
        runs=(
            Run(
                run_id="run-1",
                epoch=1,
                agent_id=AGENT,
                claimed_at=T0 + 1,
                ended_at=T0 + 1.5,
                outcome=RunOutcome.FAILED,
                error="boom",
            ),
            Run(run_id="run-2", epoch=2, agent_id=AGENT, claimed_at=T0 + 2, progress={"p": 0.5}),
        ),
        runs_dropped=3,
    ),
    # Terminal: succeeded with a result, failed, cancelled.
    JobState(
        id="j-4",
        queue="default",
        kind="build",
        payload={"n": 4},
        status=JobStatus.SUCCEEDED,
        attempts=1,
        result={"ok": True, "out": [1, 2]},
        created_at=T0,
        updated_at=T0 + 3,
        epoch=1,
        runs=(
            Run(
                run_id="run-1",
                epoch=1,
                agent_id=AGENT,
                claimed_at=T0 + 1,
                ended_at=T0 + 3,
                outcome=RunOutcome.SUCCEEDED,
            ),
        ),
    ),
    JobState(
        id="j-5",
        queue="default",
        kind="build",
        payload={},
        status=JobStatus.FAILED,
        attempts=3,
        max_attempts=3,
        last_error="gave up",
        created_at=T0,
        updated_at=T0 + 4,
        epoch=3,
    ),
    JobState(
        id="j-6",
        queue="default",
        kind="build",
        payload={},
        status=JobStatus.CANCELLED,
        created_at=T0,
        updated_at=T0 + 5,
    ),
)


def _encodings() -> list[dict[str, object]]:
    bodies = []
    for ttl in (None, Retention(succeeded=3600, failed=86400)):
        for request_hash in ("", "h" * 64):
            bodies += [job_to_doc(state, "s03", request_hash, ttl) for state in STATES]
    return bodies


def test_the_encoding_is_the_one_pinned_to_the_stamp() -> None:
    bodies = _encodings()
    # Key order aside: it changes no body's meaning, so it need not change the stamp.
    digest = hashlib.sha256(orjson.dumps(bodies, option=orjson.OPT_SORT_KEYS)).hexdigest()
    assert (CODEC_STAMP, digest) == PINNED, (
        "job_to_doc encodes some state otherwise than the version pinned with this stamp: "
        "change CODEC_STAMP (store/codec.py) and pin it here with the new hash"
    )


def test_every_pinned_encoding_decodes_to_its_state() -> None:
    # The states cover every field away from its default, and read back whole.
    bodies = iter(_encodings())
    for _ in range(4):
        for state in STATES:
            assert job_from_doc(next(bodies)) == state


STORED_ORDER = "76671dab3682580e5df2cf72d3c9846d17cf42baef93111e1c4cc326026f2c4a"
"""The hash of the same encodings with their keys in the order ``job_to_doc`` puts them."""


def test_the_keys_keep_the_order_stored_bodies_have() -> None:
    # Not part of the stamp (a body means the same in any order), but it is the stored
    # JSON, and ``job_patch`` adds keys in this order: a rewrite of job_to_doc for speed
    # must put every key where it was.
    digest = hashlib.sha256(orjson.dumps(_encodings())).hexdigest()
    assert digest == STORED_ORDER
