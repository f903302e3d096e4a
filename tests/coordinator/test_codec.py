"""The stored job body: fields at their default are left out, and older bodies still decode."""

from __future__ import annotations

import orjson
from fleet_coordinator.domain import complete
from fleet_coordinator.store import CODEC_KEY, CODEC_STAMP, job_from_doc, job_to_doc, patch_between

from .domain_support import AGENT, LEGACY_DEFAULTS, T0, leased, new_job, ok

LEFT_OUT = {
    "payload",
    "traceparent",
    "timeout_seconds",
    "requires",
    "idempotency_key",
    "cancel_requested",
    "result",
    "last_error",
    "lease",
    "runs_dropped",
    "request_hash",
}
"""What a plain job at its defaults leaves out of its body (store/codec.py: job_to_doc)."""


def _as_written_before(body: dict[str, object]) -> dict[str, object]:
    """``body`` as the codec wrote it before defaults were left out: every field, explicit."""
    runs = body.get("runs", [])
    assert isinstance(runs, list)
    # The versions that spelled defaults out predate schedules: no ``schedule`` key.
    spelled = {k: v for k, v in LEGACY_DEFAULTS.items() if k != "schedule"}
    # Nor a codec stamp: that came later still.
    own = {k: v for k, v in body.items() if k != CODEC_KEY}
    return {
        **spelled,
        **own,
        "runs": [{"error": None, "ended_at": None, **run} for run in runs],
    }


def test_a_job_at_its_defaults_leaves_them_out_and_reads_back_whole() -> None:
    queued = new_job(payload={})
    body = job_to_doc(queued, "s00")
    assert not LEFT_OUT & set(body)
    # The declared (queried) fields stay, at any value: their columns and indexes need them.
    assert {"queue", "status", "priority", "created_at", "run_after", "kind", "lock"} <= set(body)
    assert job_from_doc(body) == queued
    running = job_to_doc(leased(queued), "s00")
    assert "deadline" not in running["lease"]  # no timeout
    assert "ended_at" not in running["runs"][0]  # still running
    assert b"null" not in orjson.dumps(running)  # so the datastore walks it for no NaN
    done = ok(complete(leased(queued), AGENT, 1, T0 + 1))
    body = job_to_doc(done, "s00")
    assert "error" not in body["runs"][0]
    assert "lease" not in body
    assert job_from_doc(body) == done


def test_fields_away_from_their_default_are_written() -> None:
    job = new_job(
        payload={"n": 1}, traceparent="00-" + "1" * 32 + "-" + "2" * 16 + "-01", timeout_seconds=5
    )
    body = job_to_doc(leased(job), "s00", request_hash="abc")
    assert {"payload", "traceparent", "lease", "request_hash", "timeout_seconds"} <= set(body)
    assert "deadline" in body["lease"]
    assert job_from_doc(body) == leased(job)


def test_a_body_written_with_every_field_decodes_the_same_and_sheds_them_on_its_next_write() -> (
    None
):
    queued = new_job(payload={})
    old = _as_written_before(job_to_doc(queued, "s00"))
    assert job_from_doc(old) == queued
    claimed = leased(queued)
    patch = patch_between(old, job_to_doc(claimed, "s00"))
    assert set(patch.remove) == LEFT_OUT - {"lease"}  # the lease is set by the claim
    assert "lease" in patch.set
    assert patch.set[CODEC_KEY] == CODEC_STAMP  # and the stamp: now it is the codec's body
