"""``job_patch`` from two states gives exactly the patch of encoding and comparing bodies.

The reference is what every job write did before ``job_patch`` existed:
``patch_between(stored, job_to_doc(new, ...))``. ``job_patch`` takes its patch
from the old and new states instead when it is told the stored body is the old
state's exact encoding, which holds for a body this replica wrote; that a write
through either way leaves exactly such a body is checked here too, from bodies
that are not (written by an older version, or with keys of their own), and on
every write of the API tests (``conftest.CheckedJobStates``).
"""

from __future__ import annotations

import dataclasses
import random
from collections.abc import Callable
from typing import Any

import orjson
from fleet_coordinator.domain import (
    BackoffPolicy,
    JobState,
    JobStatus,
    Lease,
    Rejected,
    Run,
    RunOutcome,
    cancel,
    claim,
    complete,
    fail,
    heartbeat,
    reap,
    release,
    retry,
)
from fleet_coordinator.services.cache import JobStates
from fleet_coordinator.store import (
    CODEC_KEY,
    CODEC_STAMP,
    Retention,
    job_from_doc,
    job_patch,
    job_to_doc,
    patch_between,
)
from fleet_datastore import Document, Patch
from hypothesis import event, given, settings
from hypothesis import strategies as st

from .domain_support import AGENT, LEGACY_DEFAULTS, OTHER, T0

SHARD = "s07"
EXAMPLES = settings(max_examples=600, deadline=None)

json_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(-3, 3)
    | st.floats(-2.0, 2.0, allow_nan=False)
    | st.text("ab", max_size=2),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text("ab", max_size=2), inner),
    max_leaves=5,
)
# A few instants often, so that equal times (a same-instant heartbeat, a lease just
# expiring) come up as well as different ones.
times = st.sampled_from([T0, T0 + 1, T0 + 30, T0 + 60, T0 + 61, T0 + 600]) | st.floats(
    T0 - 10, T0 + 1000, allow_nan=False
)
ttls = st.none() | st.builds(Retention, st.sampled_from([60, 3600]), st.sampled_from([60, 86400]))
hashes = st.sampled_from(["", "", "h" * 64])
agents = st.sampled_from([AGENT, OTHER])
maybe_times = st.none() | times
maybe_text = st.none() | st.sampled_from(["", "x", "boom"])


@st.composite
def runs(draw: st.DrawFn, epoch: int) -> Run:
    """A run of the history, finished or not, with or without error and progress."""
    outcome = draw(st.sampled_from(RunOutcome))
    return Run(
        run_id=f"run-{epoch}",
        epoch=epoch,
        agent_id=draw(agents),
        claimed_at=draw(times),
        ended_at=None if outcome is RunOutcome.RUNNING else draw(maybe_times),
        outcome=outcome,
        error=draw(maybe_text),
        progress=draw(st.none() | json_values),
    )


@st.composite
def job_states(draw: st.DrawFn) -> JobState:
    """A job in any status: mostly as transitions leave it (so that the fenced calls and
    the claim get through), sometimes any mix of fields."""
    status = draw(st.sampled_from(JobStatus))
    dropped = draw(st.sampled_from([0, 0, 0, 3]))
    history = [draw(runs(dropped + i + 1)) for i in range(draw(st.integers(0, 3)))]
    coherent = draw(st.sampled_from([True, True, True, False]))
    max_attempts = draw(st.integers(1, 3))
    attempts = draw(st.integers(0, 3))
    cancel_requested = draw(st.booleans())
    lease = None
    if coherent and status is JobStatus.LEASED:
        claimed = draw(times)
        epoch = dropped + len(history) + 1
        deadline = draw(st.none() | st.floats(claimed + 1, claimed + 100, allow_nan=False))
        lease = Lease(
            agent_id=AGENT,
            run_id=f"run-{epoch}",
            epoch=epoch,
            expires_at=claimed + draw(st.sampled_from([30.0, 60.0])),
            claimed_at=claimed,
            deadline=deadline,
        )
        history.append(Run(run_id=f"run-{epoch}", epoch=epoch, agent_id=AGENT, claimed_at=claimed))
        attempts = draw(st.integers(1, max_attempts))
    elif coherent and status is JobStatus.QUEUED:
        attempts, cancel_requested = draw(st.integers(0, max_attempts - 1)), False
    elif not coherent and draw(st.booleans()):
        lease = Lease(
            agent_id=draw(agents),
            run_id="run-x",
            epoch=draw(st.integers(0, 5)),
            expires_at=draw(times),
            claimed_at=draw(times),
            deadline=draw(maybe_times),
        )
    return JobState(
        id="j-" + draw(st.sampled_from(["1", "2"])),
        queue=draw(st.sampled_from(["default", "gpu"])),
        kind="build",
        payload=draw(st.dictionaries(st.text("ab", max_size=2), json_values, max_size=2)),
        traceparent=draw(st.none() | st.just("00-" + "1" * 32 + "-" + "2" * 16 + "-01")),
        priority=draw(st.integers(-2, 2)),
        status=status,
        attempts=attempts,
        max_attempts=max_attempts,
        lease_seconds=draw(st.sampled_from([30.0, 60.0])),
        timeout_seconds=draw(st.none() | st.sampled_from([5.0, 90.0])),
        run_after=draw(times),
        requires=draw(st.sampled_from([{}, {"gpu": "a100"}])),
        idempotency_key=draw(st.none() | st.just("key-1")),
        lock=draw(st.none() | st.sampled_from(["", "db"])),
        schedule=draw(st.none() | st.just("nightly")),
        cancel_requested=cancel_requested,
        result=draw(json_values),
        last_error=draw(maybe_text),
        created_at=draw(times),
        updated_at=draw(times),
        lease=lease,
        epoch=dropped + len(history) if coherent else draw(st.integers(0, 5)),
        runs=tuple(history),
        runs_dropped=dropped,
    )


Step = Callable[[JobState, float, st.DataObject], "JobState | Rejected"]
holders = st.sampled_from([AGENT] * 5 + [OTHER])  # AGENT holds the coherent leases


def _epoch(job: JobState, data: st.DataObject) -> int:
    return data.draw(st.sampled_from([job.epoch] * 4 + [job.epoch - 1]))


def _rng(data: st.DataObject) -> Callable[[], float]:
    return random.Random(data.draw(st.integers(0, 9))).random


BACKOFF = BackoffPolicy(base_seconds=1, factor=2, max_seconds=20, jitter=0.5)
STEPS: dict[str, Step] = {
    "claim": lambda job, now, data: claim(
        job,
        data.draw(holders),
        f"run-{job.epoch + 1}",
        now,
        labels=data.draw(st.sampled_from([{"gpu": "a100"}, {}])),
        lease_seconds=data.draw(st.none() | st.just(45.0)),
    ),
    "heartbeat": lambda job, now, data: heartbeat(
        job,
        data.draw(holders),
        _epoch(job, data),
        now,
        lease_seconds=data.draw(st.none() | st.just(45.0)),
        progress=data.draw(st.none() | json_values),
    ),
    "complete": lambda job, now, data: complete(
        job, data.draw(holders), _epoch(job, data), now, result=data.draw(json_values)
    ),
    "fail": lambda job, now, data: fail(
        job,
        data.draw(holders),
        _epoch(job, data),
        now,
        error=data.draw(st.sampled_from(["boom", "x"])),
        retryable=data.draw(st.booleans()),
        backoff=BACKOFF,
        rng=_rng(data),
    ),
    "release": lambda job, now, data: release(job, data.draw(holders), _epoch(job, data), now),
    "reap": lambda job, now, data: reap(job, now, backoff=BACKOFF, rng=_rng(data)),
    "cancel": lambda job, now, data: cancel(job, now),
    "retry": lambda job, now, data: retry(job, now),
}
FITTING = {
    JobStatus.QUEUED: ["claim", "cancel"],
    JobStatus.LEASED: ["heartbeat", "complete", "fail", "release", "reap", "cancel"],
    JobStatus.SUCCEEDED: ["retry"],
    JobStatus.FAILED: ["retry"],
    JobStatus.CANCELLED: ["retry"],
}
"""The steps a job in each status takes; any other is refused (tried too, less often)."""


def _step(job: JobState, data: st.DataObject) -> JobState | None:
    """``job`` after a random transition at a random instant; None if it was refused."""
    name = data.draw(st.sampled_from(FITTING[job.status]) | st.sampled_from(sorted(STEPS)))
    # Instants the outcome turns on: due; within the lease (most), at its expiry or deadline.
    moments = [job.run_after, job.updated_at]
    if job.lease is not None:
        lease = job.lease
        moments = [lease.claimed_at + 0.5, lease.expires_at - 0.5] * 2 + [lease.expires_at]
        moments += [] if lease.deadline is None else [lease.deadline]
    near = data.draw(st.sampled_from([True, True, True, False]))
    new = STEPS[name](job, data.draw(st.sampled_from(moments) if near else times), data)
    if isinstance(new, Rejected):
        event(f"{name}: refused")
        return None
    event(f"{name}: {job.status.value} -> {new.status.value}")
    return new


def _stored(
    job: JobState, request_hash: str, ttl: Retention | None, cosmos: bool
) -> dict[str, Any]:
    """The body a store holds for ``job`` as the codec wrote it (Cosmos adds its own keys)."""
    body = job_to_doc(job, SHARD, request_hash, ttl)
    if cosmos:
        body.update({"_rid": "AAAA", "_etag": '"0a00"', "_ts": 1_700_000_000, "_attachments": ""})
    return body


def _reference(stored: dict[str, Any], new: JobState, ttl: Retention | None) -> Patch:
    """What a job write patched before ``job_patch``: encode ``new``, compare the bodies."""
    body = job_to_doc(new, str(stored["pk"]), str(stored.get("request_hash", "")), ttl)
    return patch_between(stored, body)


def _assert_same(got: Patch, expected: Patch) -> None:
    # The keys set in the same order: a key new to a body is appended in that order.
    assert list(got.set.items()) == list(expected.set.items())
    assert sorted(got.remove) == sorted(expected.remove)
    assert type(got.set) is dict
    assert type(got.remove) is tuple


def _applied(stored: dict[str, Any], patch: Patch) -> dict[str, Any]:
    """``stored`` once a store applied ``patch`` (documents.apply_patch, values via JSON)."""
    body = dict(stored)
    for key in patch.remove:
        body.pop(key, None)
    body.update(orjson.loads(orjson.dumps(dict(patch.set))))
    return body


@EXAMPLES
@given(job_states(), st.data(), ttls, hashes, st.booleans())
def test_every_transition_patches_as_the_encoded_bodies_do(
    first: JobState, data: st.DataObject, ttl: Retention | None, request_hash: str, cosmos: bool
) -> None:
    """A job's writes, one after the other, each over the body the one before left."""
    old, stored = first, _stored(first, request_hash, ttl, cosmos)
    for _ in range(data.draw(st.integers(1, 8))):
        new = _step(old, data)
        if new is None:
            continue
        patch = job_patch(stored, new, ttl, old)
        _assert_same(patch, _reference(stored, new, ttl))
        old, stored = new, _applied(stored, patch)


CHANGING: dict[str, st.SearchStrategy[Any]] = {
    "status": st.sampled_from(JobStatus),
    "attempts": st.integers(0, 3),
    "run_after": times,
    "cancel_requested": st.booleans(),
    "result": json_values,
    "last_error": maybe_text,
    "updated_at": times,
    "lease": st.none()
    | st.builds(
        Lease,
        agent_id=agents,
        run_id=st.just("run-x"),
        epoch=st.integers(0, 3),
        expires_at=times,
        claimed_at=times,
        deadline=maybe_times,
    ),
    "epoch": st.integers(0, 5),
    "runs": st.lists(runs(1), max_size=2).map(tuple),
    "runs_dropped": st.sampled_from([0, 3]),
}
SETTINGS: dict[str, st.SearchStrategy[Any]] = {
    "queue": st.sampled_from(["default", "gpu"]),
    "payload": st.sampled_from([{}, {"a": 1}]),
    "traceparent": st.none() | st.just("tp"),
    "priority": st.integers(-2, 2),
    "timeout_seconds": st.none() | st.just(5.0),
    "requires": st.sampled_from([{}, {"gpu": "a100"}]),
    "idempotency_key": st.none() | st.just("key-1"),
    "lock": st.none() | st.sampled_from(["", "db"]),
    "schedule": st.none() | st.just("nightly"),
    "created_at": times,
}


@EXAMPLES
@given(job_states(), st.data(), ttls, hashes, st.booleans())
def test_any_change_of_any_field_patches_as_the_encoded_bodies_do(
    old: JobState, data: st.DataObject, ttl: Retention | None, request_hash: str, cosmos: bool
) -> None:
    """Edits no transition makes: to and from defaults, equal but new values, settings."""
    fields = {**CHANGING, **SETTINGS} if data.draw(st.booleans()) else CHANGING
    names = data.draw(st.lists(st.sampled_from(sorted(fields)), max_size=4, unique=True))
    edits = {name: data.draw(fields[name]) for name in names}
    if data.draw(st.booleans()):
        # Equal values that are not the same objects: the runs rebuilt, the result copied.
        edits["runs"] = tuple(dataclasses.replace(r) for r in old.runs)
        edits["result"] = orjson.loads(orjson.dumps(old.result))
    new = dataclasses.replace(old, **edits)
    stored = _stored(old, request_hash, ttl, cosmos)
    _assert_same(job_patch(stored, new, ttl, old), _reference(stored, new, ttl))


@st.composite
def unlike_the_codec(draw: st.DrawFn, body: dict[str, Any]) -> dict[str, Any]:
    """``body`` changed as a body of another origin may differ from the codec's own."""
    odd = dict(body)
    # An older version wrote no stamp; a newer one may write another.
    del odd[CODEC_KEY]
    if draw(st.booleans()):
        odd[CODEC_KEY] = CODEC_STAMP + 1
    if draw(st.booleans()):
        odd = {**LEGACY_DEFAULTS, **odd}
        odd["runs"] = [{"error": None, "ended_at": None, **run} for run in odd["runs"]]
        if odd["lease"] is not None:
            odd["lease"] = {"deadline": None, **odd["lease"]}
    if draw(st.booleans()):
        odd["legacy_field"] = draw(json_values)  # a key this version no longer writes
    for key in draw(st.lists(st.sampled_from(["due_at", "ended_at", "ttl", "runs_dropped"]))):
        odd.pop(key, None)  # derived fields an older version did not keep
    if draw(st.booleans()):
        odd[draw(st.sampled_from(["due_at", "ended_at", "ttl"]))] = draw(times)
    if draw(st.booleans()) and odd["lock"] == "":
        odd["lock"] = None
    if draw(st.booleans()):
        # Numbers that read back equal in another type (Cosmos gives 60.0 back as 60).
        odd["priority"] = float(odd["priority"])
        odd["lease_seconds"] = int(odd["lease_seconds"])
    return odd


@EXAMPLES
@given(job_states(), st.data(), ttls, hashes, st.booleans())
def test_a_body_of_another_origin_is_patched_the_long_way_and_then_is_the_codecs(
    first: JobState, data: st.DataObject, ttl: Retention | None, request_hash: str, cosmos: bool
) -> None:
    """Read from the store, a body is not known to be the codec's: its write compares the
    bodies (``JobStates.written`` gives no state), and what it leaves is the codec's body,
    so the next write may take its patch from the states."""
    stored = data.draw(unlike_the_codec(_stored(first, request_hash, ttl, cosmos)))
    old = job_from_doc(stored)
    mid = _step(old, data)
    if mid is None:
        return
    patch = job_patch(stored, mid, ttl)
    _assert_same(patch, _reference(stored, mid, ttl))
    written = _applied(stored, patch)
    own = {key: value for key, value in written.items() if not key.startswith("_")}
    assert own == job_to_doc(mid, SHARD, str(stored.get("request_hash", "")), ttl)
    new = _step(mid, data)
    if new is None:
        return
    _assert_same(job_patch(written, new, ttl, mid), _reference(written, new, ttl))


def _as_read(body: dict[str, Any], cosmos: bool) -> dict[str, Any]:
    """``body`` as a store gives it back: through JSON (Cosmos DB: whole floats as ints)."""
    read: dict[str, Any] = orjson.loads(orjson.dumps(body))
    if not cosmos:
        return read

    def whole(value: Any) -> Any:
        if isinstance(value, float) and value.is_integer():
            return int(value)
        if isinstance(value, dict):
            return {key: whole(item) for key, item in value.items()}
        if isinstance(value, list):
            return [whole(item) for item in value]
        return value

    return {key: whole(value) for key, value in read.items()}


@EXAMPLES
@given(job_states(), st.data(), ttls, hashes, st.booleans())
def test_a_stamped_body_read_from_the_store_patches_from_the_state_it_decodes_to(
    first: JobState, data: st.DataObject, ttl: Retention | None, request_hash: str, cosmos: bool
) -> None:
    """A body with this codec's stamp, written on any replica of this version and read
    back (a claim's candidate), takes its patch from its decoding (``JobStates.written``):
    not ``first`` itself, but what the store's JSON gives back, numbers perhaps in
    another type."""
    stored = _as_read(_stored(first, request_hash, ttl, cosmos), cosmos)
    for etag in ("e1", "e2", "e3", "e4"):
        old = JobStates().written(Document(first.id, SHARD, etag, stored))
        assert old is not None
        new = _step(old, data)
        if new is None:
            return
        patch = job_patch(stored, new, ttl, old)
        _assert_same(patch, _reference(stored, new, ttl))
        stored = _as_read(_applied(stored, patch), cosmos)


JOB = JobState(id="j-1", queue="default", kind="build", payload={"n": 1}, created_at=T0)


def _doc(etag: str, **changes: Any) -> Document:
    return Document(JOB.id, SHARD, etag, {**job_to_doc(JOB, SHARD), **changes})


def test_only_a_body_with_this_codecs_stamp_counts_as_written() -> None:
    states = JobStates(max_items=2)
    read = _doc("e1")
    assert states.written(read) == JOB  # read from the store, written by this version
    assert states.written(read) is states.of(read)  # decoded once
    wrote = _doc("e2")
    states.remember(wrote, JOB)
    assert states.written(wrote) is JOB
    unstamped = {key: value for key, value in job_to_doc(JOB, SHARD).items() if key != CODEC_KEY}
    assert states.written(Document(JOB.id, SHARD, "e3", unstamped)) is None  # an older version
    assert states.written(_doc("e4", **{CODEC_KEY: CODEC_STAMP + 1})) is None  # a newer one
