"""Job and agent documents: the domain's ``JobState`` and ``AgentState`` to and from JSON.

Times are floats (epoch seconds), as in the domain. A stored job adds ``pk``
(the shard), ``due_at`` (only while leased), ``ended_at`` (only while terminal:
retention's index on memory and SQLite), ``ttl`` (only while terminal, on stores
that expire documents: Cosmos DB deletes the job that many seconds after this last
write) and ``request_hash`` (the hash of the enqueue body, to tell an idempotent
replay from a different job). A job without a lock stores ``lock = ""`` so that
claims can query lockless jobs by index. Fields no query reads are left out
while they hold their default (the payload, requirements, idempotency key,
traceparent, timeout, result, last error, lease, cancel request, runs dropped and
request hash; a lease's ``deadline`` and a run's ``ended_at`` and ``error`` while
None): ``job_from_doc`` reads an absent one as its default, and a job body shrinks
from ~710 to ~500 bytes, so a 2 KB SQLite page holds three jobs instead of two and
every write encodes, compares and checks less. With no None inside them, a claim's
lease and run need no walk for a NaN either (the datastore looks for one only
where its JSON holds a ``null``:
``fleet_datastore.documents._encode``).

Every job body carries ``codec`` (``CODEC_STAMP``): written only by
``job_to_doc``, and by every job write of this version (a write over a body of
another origin goes the long way, which sets it), so a body with this stamp is
exactly ``job_to_doc`` of the state it decodes to, wherever it was read from, and
its next write may take its patch from the two states (``job_patch``). A change to
what ``job_to_doc`` writes must change the stamp:
``tests/coordinator/test_codec_stamp.py`` pins the encoding to it.

A stored agent adds ``pk`` (its id) and ``kind = "agent"``; its ledger ``held``
is ``{job_id: {"epoch", "at"}}``.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from fleet_datastore import Patch

from ..domain import (
    TERMINAL_STATUSES,
    AgentState,
    Holding,
    JobState,
    JobStatus,
    Lease,
    Run,
    RunOutcome,
    constructor,
    reap_due_at,
)

__all__ = [
    "CODEC_KEY",
    "CODEC_STAMP",
    "Retention",
    "agent_from_doc",
    "agent_to_doc",
    "held_to_doc",
    "job_from_doc",
    "job_patch",
    "job_to_doc",
    "patch_between",
]


CODEC_KEY = "codec"
CODEC_STAMP = 1
"""The version of ``job_to_doc``'s encoding, stored in every job body it writes (``CODEC_KEY``).

Change it with any change to what ``job_to_doc`` writes for some state (a field
added, dropped, renamed, defaulted or encoded otherwise): a body stamped by one
version is then never taken for another's (``JobStates.written``).
"""


@dataclass(frozen=True, slots=True)
class Retention:
    """How long terminal jobs stay readable: succeeded, and failed or cancelled (seconds)."""

    succeeded: int
    failed: int

    def seconds(self, status: JobStatus) -> int:
        """The retention of a job that ended in ``status``."""
        return self.succeeded if status is JobStatus.SUCCEEDED else self.failed

    def ttl(self, status: JobStatus) -> int:
        """The ``ttl`` of a job that ended in ``status``, on a store that expires documents.

        A second more than the retention: Cosmos DB counts an item's time to live from
        its last write time in whole seconds (``_ts``, rounded down), so a ``ttl`` of
        the retention itself deleted jobs up to a second early (SPEC 12: never earlier).
        """
        return self.seconds(status) + 1


def _lease_to_doc(lease: Lease | None) -> dict[str, Any] | None:
    if lease is None:
        return None
    doc: dict[str, Any] = {
        "agent_id": lease.agent_id,
        "run_id": lease.run_id,
        "epoch": lease.epoch,
        "expires_at": lease.expires_at,
        "claimed_at": lease.claimed_at,
    }
    if lease.deadline is not None:
        doc["deadline"] = lease.deadline  # only with a timeout: most jobs have none
    return doc


def _run_to_doc(run: Run) -> dict[str, Any]:
    doc: dict[str, Any] = {
        "run_id": run.run_id,
        "epoch": run.epoch,
        "agent_id": run.agent_id,
        "claimed_at": run.claimed_at,
        "outcome": run.outcome._value_,
    }
    if run.ended_at is not None:
        doc["ended_at"] = run.ended_at  # not while it runs
    if run.error is not None:
        doc["error"] = run.error
    if run.progress is not None:
        doc["progress"] = run.progress  # only when reported: most runs never carry any
    return doc


def job_to_doc(
    job: JobState, shard: str, request_hash: str = "", ttl: Retention | None = None
) -> dict[str, Any]:
    """The stored body of ``job`` in partition ``shard``; ``ttl`` where the store expires jobs."""
    # A job's payload and requirements are its own dicts (``domain.enqueue`` copies
    # them): the body holds them as they are, for the store to encode, and the store
    # keeps its own copy (its JSON read back). Another mapping is copied into a dict.
    payload, requires = job.payload, job.requires
    # The fields in a fixed order, each left out while it holds its default (None,
    # empty or false: read back as the default by job_from_doc). Never a declared
    # (queried) field: those stay present (store/specs.py). Built key by key rather
    # than whole and then pruned, which cost twice as much: every enqueued job and
    # every write by the long way (``job_patch``) is encoded here.
    body: dict[str, Any] = {"id": job.id, "pk": shard, "queue": job.queue, "kind": job.kind}
    if payload:
        body["payload"] = payload if type(payload) is dict else dict(payload)
    if job.traceparent is not None:
        body["traceparent"] = job.traceparent
    body["priority"] = job.priority
    body["status"] = job.status._value_  # not .value: a property (domain/statuses.py)
    body["attempts"] = job.attempts
    body["max_attempts"] = job.max_attempts
    body["lease_seconds"] = job.lease_seconds
    if job.timeout_seconds is not None:
        body["timeout_seconds"] = job.timeout_seconds
    body["run_after"] = job.run_after
    if requires:
        body["requires"] = requires if type(requires) is dict else dict(requires)
    if job.idempotency_key is not None:
        body["idempotency_key"] = job.idempotency_key
    body["lock"] = job.lock or ""
    if job.cancel_requested:
        body["cancel_requested"] = True
    if job.result is not None:
        body["result"] = job.result
    if job.last_error is not None:
        body["last_error"] = job.last_error
    body["created_at"] = job.created_at
    body["updated_at"] = job.updated_at
    lease, runs = job.lease, job.runs
    if lease is not None:
        body["lease"] = _lease_to_doc(lease)
    body["epoch"] = job.epoch
    body["runs"] = [_run_to_doc(r) for r in runs] if runs else []
    if job.runs_dropped:
        body["runs_dropped"] = job.runs_dropped
    if request_hash:
        body["request_hash"] = request_hash
    body[CODEC_KEY] = CODEC_STAMP
    if job.schedule is not None:
        body["schedule"] = job.schedule
    if lease is not None:  # else no reaper's time: ``reap_due_at`` needs a lease
        due = reap_due_at(job)
        if due is not None:
            body["due_at"] = due
    if job.status in TERMINAL_STATUSES:  # ``job.is_terminal``, without the property's call
        # A terminal job changes again only through retry, which drops both fields.
        body["ended_at"] = job.updated_at
        if ttl is not None:
            body["ttl"] = ttl.ttl(job.status)
    return body


_job_state = constructor(JobState)
_lease = constructor(Lease)
_run = constructor(Run)
"""The classes' calls at a third of the cost (``domain/_replace.py``): every job read is decoded."""


def job_from_doc(body: dict[str, Any]) -> JobState:
    """The domain value of a stored job body."""
    lease_doc = body.get("lease")
    lease = None
    if lease_doc:
        lease = _lease(
            agent_id=lease_doc["agent_id"],
            run_id=lease_doc["run_id"],
            epoch=int(lease_doc["epoch"]),
            expires_at=float(lease_doc["expires_at"]),
            claimed_at=float(lease_doc["claimed_at"]),
            deadline=None if lease_doc.get("deadline") is None else float(lease_doc["deadline"]),
        )
    runs = tuple(
        _run(
            run_id=r["run_id"],
            epoch=int(r["epoch"]),
            agent_id=r["agent_id"],
            claimed_at=float(r["claimed_at"]),
            ended_at=None if r.get("ended_at") is None else float(r["ended_at"]),
            outcome=RunOutcome(r["outcome"]),
            error=r.get("error"),
            progress=r.get("progress"),
        )
        for r in body.get("runs", [])
    )
    timeout = body.get("timeout_seconds")
    return _job_state(
        id=body["id"],
        queue=body["queue"],
        kind=body["kind"],
        payload=body.get("payload") or {},
        traceparent=body.get("traceparent"),
        priority=int(body.get("priority", 0)),
        status=JobStatus(body["status"]),
        attempts=int(body.get("attempts", 0)),
        max_attempts=int(body.get("max_attempts", 3)),
        lease_seconds=float(body.get("lease_seconds", 60.0)),
        timeout_seconds=None if timeout is None else float(timeout),
        run_after=float(body.get("run_after", 0.0)),
        requires=body.get("requires") or {},
        idempotency_key=body.get("idempotency_key"),
        lock=body.get("lock") or None,
        schedule=body.get("schedule"),
        cancel_requested=bool(body.get("cancel_requested", False)),
        result=body.get("result"),
        last_error=body.get("last_error"),
        created_at=float(body.get("created_at", 0.0)),
        updated_at=float(body.get("updated_at", 0.0)),
        lease=lease,
        epoch=int(body.get("epoch", 0)),
        runs=runs,
        runs_dropped=int(body.get("runs_dropped", 0)),
    )


def patch_between(old: dict[str, Any], new: dict[str, Any]) -> Patch:
    """The smallest top-level patch turning ``old`` into ``new``.

    Small patches matter on Cosmos: up to 10 operations go out as one
    conditional ``patch_item``; a transition touches far fewer fields.
    """
    changed = {k: v for k, v in new.items() if k != "id" and k != "pk" and old.get(k) != v}
    removed = tuple(k for k in old if k not in new and not k.startswith("_"))
    return Patch(set=changed, remove=removed)


def job_patch(
    stored: dict[str, Any], new: JobState, ttl: Retention | None, old: JobState | None = None
) -> Patch:
    """The write of ``new`` over the stored body ``stored``: ``patch_between(stored, body)``.

    ``body`` being ``job_to_doc(new, ...)`` with ``stored``'s ``request_hash`` and
    ``ttl``. Pass ``old`` only when ``stored`` is exactly the body of ``old`` (with
    this ``ttl``; keys starting with "_" aside), as it is for a body with this
    version's ``CODEC_STAMP`` (``JobStates.written``). Then the patch comes from
    comparing ``old`` with ``new`` field by field, without building ``body`` and
    comparing its ~25 keys: a transition changes a handful of fields, and the rest are
    the same objects (``domain._replace``). That saves ~45,000 of the ~70,000
    instructions a write spent here, ~4 % of a ``--concurrency 1`` job
    (docs/benchmarks.md). A body of another origin (written by an older version, with
    its defaults spelled out, keys since dropped or no stamp) goes the long way, as
    does any change to a field no transition makes. tests/coordinator/test_job_patch.py
    checks that both ways give the same patch over random states, transitions and
    stored bodies.
    """
    if old is None or not _same_settings(old, new):
        # The partition key is never part of a patch: any shard gives the same one.
        body = job_to_doc(new, stored["pk"], str(stored.get("request_hash", "")), ttl)
        return patch_between(stored, body)
    # The fields transitions change, in job_to_doc's order (so the keys a patch adds
    # land in a stored body in the same order either way); a field at its default
    # (``job_to_doc`` leaves it out) is absent from a body, so reaching it is a removal.
    changed: dict[str, Any] = {}
    removed: list[str] = []
    if new.status is not old.status:
        changed["status"] = new.status._value_
    if new.attempts != old.attempts:
        changed["attempts"] = new.attempts
    if new.run_after != old.run_after:
        changed["run_after"] = new.run_after
    if new.cancel_requested != old.cancel_requested:
        if new.cancel_requested:
            changed["cancel_requested"] = True
        else:
            removed.append("cancel_requested")
    if new.result is not old.result and new.result != old.result:
        if new.result is None:
            removed.append("result")
        else:
            changed["result"] = new.result
    if new.last_error != old.last_error:
        if new.last_error is None:
            removed.append("last_error")
        else:
            changed["last_error"] = new.last_error
    if new.updated_at != old.updated_at:
        changed["updated_at"] = new.updated_at
    if new.lease is not old.lease and new.lease != old.lease:
        if new.lease is None:
            removed.append("lease")
        else:
            changed["lease"] = _lease_to_doc(new.lease)
    if new.epoch != old.epoch:
        changed["epoch"] = new.epoch
    if new.runs is not old.runs and new.runs != old.runs:
        changed["runs"] = [_run_to_doc(r) for r in new.runs]
    if new.runs_dropped != old.runs_dropped:
        if new.runs_dropped == 0:
            removed.append("runs_dropped")
        else:
            changed["runs_dropped"] = new.runs_dropped
    # The derived fields are compared with what is stored, as patch_between does:
    # cheaper than deriving them for ``old`` too.
    due = reap_due_at(new)
    if due is None:
        if "due_at" in stored:
            removed.append("due_at")
    elif stored.get("due_at") != due:
        changed["due_at"] = due
    if new.is_terminal:
        if stored.get("ended_at") != new.updated_at:
            changed["ended_at"] = new.updated_at
        if ttl is not None and stored.get("ttl") != (seconds := ttl.ttl(new.status)):
            changed["ttl"] = seconds
    else:
        removed.extend(key for key in ("ended_at", "ttl") if key in stored)
    return Patch(set=changed, remove=tuple(removed))


def _same_settings(old: JobState, new: JobState) -> bool:
    """Whether ``new`` holds ``old``'s very values of the fields no transition changes."""
    return (
        new.id is old.id
        and new.queue is old.queue
        and new.kind is old.kind
        and new.payload is old.payload
        and new.traceparent is old.traceparent
        and new.priority is old.priority
        and new.max_attempts is old.max_attempts
        and new.lease_seconds is old.lease_seconds
        and new.timeout_seconds is old.timeout_seconds
        and new.requires is old.requires
        and new.idempotency_key is old.idempotency_key
        and new.lock is old.lock
        and new.schedule is old.schedule
        and new.created_at is old.created_at
    )


def held_to_doc(held: Mapping[str, Holding]) -> dict[str, Any]:
    """The stored shape of an agent's ledger."""
    return {job_id: {"epoch": h.epoch, "at": h.at} for job_id, h in held.items()}


def agent_to_doc(agent: AgentState) -> dict[str, Any]:
    """The stored body of ``agent``."""
    return {
        "id": agent.id,
        "pk": agent.id,
        "kind": "agent",
        "name": agent.name,
        "labels": dict(agent.labels),
        "capacity": agent.capacity,
        "queues": list(agent.queues),
        "draining": agent.draining,
        "token_hash": agent.token_hash,
        "created_at": agent.created_at,
        "last_seen": agent.last_seen,
        "held": held_to_doc(agent.held),
    }


def agent_from_doc(body: Mapping[str, Any]) -> AgentState:
    """The domain value of a stored agent body."""
    last_seen = body.get("last_seen")
    return AgentState(
        id=body["id"],
        name=str(body.get("name", "")),
        labels=body.get("labels") or {},
        capacity=int(body.get("capacity", 1)),
        queues=tuple(body.get("queues") or ()),
        draining=bool(body.get("draining")),
        token_hash=str(body.get("token_hash", "")),
        created_at=float(body.get("created_at", 0.0)),
        last_seen=None if last_seen is None else float(last_seen),
        held={
            job_id: Holding(int(entry["epoch"]), float(entry.get("at", 0.0)))
            for job_id, entry in (body.get("held") or {}).items()
        },
    )
