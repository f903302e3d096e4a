"""SQLite under a running coordinator: a file deleted, a write lock held elsewhere."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest
from fleet_datastore.providers import sqlite as sqlite_provider

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


def _hold_write_lock(path: Path) -> sqlite3.Connection:
    conn = sqlite3.connect(path, isolation_level=None)
    conn.execute("BEGIN IMMEDIATE")
    return conn


async def test_readyz_is_503_while_another_process_holds_the_write_lock_too_long(
    api: Api, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A write lock held elsewhere past a write's busy timeout (here 0 s): writes fail,
    and ``/readyz`` says so (it read through the lock and said ready)."""
    monkeypatch.setattr(sqlite_provider, "LOCK_HELD_SECONDS", 0.0)
    other = _hold_write_lock(tmp_path / "fleet.db")
    try:
        r = await api.client.get("/readyz")
        assert r.status_code == 503, r.text
        assert r.json()["error"]["details"] == {"store": "StoreUnavailableError"}
    finally:
        other.execute("ROLLBACK")
        other.close()
