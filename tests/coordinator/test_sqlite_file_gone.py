"""A SQLite file deleted under a running coordinator: not ready, and no write acknowledged."""

from __future__ import annotations

from pathlib import Path

from .conftest import Api

PROVIDERS = ("sqlite",)
"""Only SQLite has a file to lose."""


def _delete(path: Path) -> None:
    path.unlink()


async def test_once_the_file_is_deleted_enqueues_are_503_not_acknowledged(
    api: Api, tmp_path: Path
) -> None:
    """``/readyz`` found the file gone (503) while enqueues still answered 201, each
    into an inode nobody can open again (lost at the next restart): now every write
    is 503 ``store_unavailable``, a claim too, and reads still answer."""
    job = await api.enqueue()
    _, agent = await api.agent()
    _delete(tmp_path / "fleet.db")
    assert (await api.client.get("/readyz")).status_code == 503
    r = await api.client.post("/v1/jobs", json={"kind": "k"}, headers=api.admin)
    assert r.status_code == 503, r.text
    assert r.json()["error"]["code"] == "store_unavailable"
    batch = {"jobs": [{"kind": "k", "idempotency_key": "b"}]}
    r = await api.client.post("/v1/jobs/batch", json=batch, headers=api.admin)
    assert r.status_code == 503, r.text
    r = await api.client.post("/v1/claims", json={}, headers=agent)
    assert r.status_code == 503, r.text
    assert (await api.job(job["id"]))["status"] == "queued"
