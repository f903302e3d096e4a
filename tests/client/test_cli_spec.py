"""``fleet``'s commands for the SPEC endpoints main does not serve yet, against the SPEC fake."""

from __future__ import annotations

import json
from typing import Any

import httpx
import pytest
from fleet_client import FleetClient, cli
from fleet_client.exits import EXIT_NOT_FOUND, EXIT_OK, EXIT_REJECTED, EXIT_USAGE

from .spec_fake import SpecFake, job


@pytest.fixture
def fake(monkeypatch: pytest.MonkeyPatch) -> SpecFake:
    """The SPEC fake behind every client ``fleet`` makes."""
    spec = SpecFake()
    monkeypatch.setenv("FLEET_ADMIN_TOKEN", "admin-token")

    def client(url: str, token: str, **options: Any) -> FleetClient:
        return FleetClient(url, token, transport=httpx.MockTransport(spec.handle), **options)

    monkeypatch.setattr(cli, "FleetClient", client)
    return spec


def fleet_json(capsys: pytest.CaptureFixture[str], *argv: str) -> Any:
    """Run ``fleet … --json``; what it wrote."""
    assert cli.main([*argv, "--json"]) == EXIT_OK
    return json.loads(capsys.readouterr().out)


def test_queues_pause_and_resume(fake: SpecFake, capsys: pytest.CaptureFixture[str]) -> None:
    """``fleet queues pause|resume Q`` answers the queue's entry (an object: one thing)."""
    assert fleet_json(capsys, "queues", "pause", "builds")["paused"] is True
    assert fleet_json(capsys, "queues", "resume", "builds")["paused"] is False


def test_bulk_retry_and_cancel(fake: SpecFake, capsys: pytest.CaptureFixture[str]) -> None:
    """Without ids, retry and cancel go to the bulk endpoints with their filters."""
    fake.jobs = {"a": job("a", status="failed"), "b": job("b", lock="l1")}
    assert [j["id"] for j in fleet_json(capsys, "jobs", "retry", "--queue", "default")] == ["a"]
    assert fake.seen[-1][2] == {"status": "failed", "queue": "default", "limit": 100}
    cancelled = fleet_json(capsys, "jobs", "cancel", "--lock", "l1", "--limit", "5")
    assert [(j["id"], j["status"]) for j in cancelled] == [("b", "cancelled")]
    assert fake.seen[-1][2] == {"lock": "l1", "limit": 5}


def test_schedules(fake: SpecFake, capsys: pytest.CaptureFixture[str]) -> None:
    """set, list, pause, show, rm; a bad cron exits 1 and an unknown name 3."""
    argv = ("schedules", "set", "nightly", "0 3 * * *", "report", "--payload", '{"d": 1}')
    made = fleet_json(capsys, *argv, "--timezone", "Europe/Paris", "--queue", "reports")
    assert (made["timezone"], made["job"]) == (
        "Europe/Paris",
        {"kind": "report", "payload": {"d": 1}, "queue": "reports"},
    )
    assert [s["name"] for s in fleet_json(capsys, "schedules")] == ["nightly"]
    assert fleet_json(capsys, "schedules", "pause", "nightly")["paused"] is True
    assert fleet_json(capsys, "schedules", "show", "nightly")["paused"] is True
    assert fleet_json(capsys, "schedules", "resume", "nightly")["paused"] is False
    assert fleet_json(capsys, "schedules", "rm", "nightly") == {"deleted": "nightly"}
    assert cli.main(["schedules", "show", "nightly"]) == EXIT_NOT_FOUND
    assert cli.main(["schedules", "set", "bad", "@daily", "report"]) == EXIT_REJECTED


@pytest.mark.parametrize(
    "argv",
    [
        ("jobs", "list", "--limit", "-1"),
        ("jobs", "cancel", "--all", "--limit", "0"),
        ("jobs", "retry", "--all", "--limit", "1001"),
        ("schedules", "set", "n", "0 3 * * *", "k", "--run-after", "+1h"),
        ("schedules", "set", "n", "0 3 * * *", "k", "--key", "x"),
    ],
)
def test_arguments_the_coordinator_would_refuse_are_refused_at_parsing(
    fake: SpecFake, argv: tuple[str, ...]
) -> None:
    """A negative list limit, a bulk limit out of 1..1000, a schedule's key or run_after: 2."""
    with pytest.raises(SystemExit) as caught:
        cli.main(list(argv))
    assert caught.value.code == EXIT_USAGE
    assert fake.seen == []
