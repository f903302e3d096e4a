"""A small stand-in for the endpoints SPEC.md adds that main does not serve yet.

Bulk retry and cancel, queue pause/resume, schedules and the ``lock`` field follow
the SPEC's request and answer shapes exactly; ``httpx.MockTransport(fake.handle)``
puts it under a ``FleetClient``. Every request it received is kept in ``seen``.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any

import httpx

_NOW = datetime(2030, 1, 1, tzinfo=UTC).isoformat()


def job(job_id: str, **fields: Any) -> dict[str, Any]:
    """A job in the SPEC's answer shape."""
    return {
        "id": job_id,
        "queue": "default",
        "kind": "k",
        "payload": {},
        "priority": 0,
        "status": "queued",
        "attempts": 0,
        "max_attempts": 3,
        "run_after": _NOW,
        "requires": {},
        "cancel_requested": False,
        "result": None,
        "last_error": None,
        "created_at": _NOW,
        "updated_at": _NOW,
        "lock": None,
        "schedule": None,
        "lease": None,
        **fields,
    }


def _error(status: int, code: str) -> httpx.Response:
    return httpx.Response(status, json={"error": {"code": code, "message": code, "details": {}}})


class SpecFake:
    """The SPEC's newer admin endpoints over an in-memory dict of jobs and schedules."""

    def __init__(self) -> None:
        self.jobs: dict[str, dict[str, Any]] = {}
        self.schedules: dict[str, dict[str, Any]] = {}
        self.paused: set[str] = set()
        self.seen: list[tuple[str, str, Any]] = []

    def handle(self, request: httpx.Request) -> httpx.Response:
        """Answer one request as the SPEC says."""
        body = json.loads(request.content) if request.content else None
        self.seen.append((request.method, request.url.path, body))
        parts = request.url.path.strip("/").split("/")[1:]
        route = getattr(self, f"_{parts[0]}")
        answer: httpx.Response = route(request.method, parts[1:], body)
        return answer

    def _jobs(self, method: str, rest: list[str], body: Any) -> httpx.Response:
        if rest == [] and method == "POST":
            made = job(f"j{len(self.jobs)}", **body)
            self.jobs[made["id"]] = made
            return httpx.Response(201, json=made)
        if rest == ["retry"]:
            wanted = [j for j in self.jobs.values() if j["status"] == body["status"]]
            for item in wanted[: body.get("limit", 100)]:
                item.update(status="queued", attempts=0)
            return httpx.Response(200, json={"items": wanted[: body.get("limit", 100)]})
        if rest == ["cancel"]:
            lock = body.get("lock")
            wanted = [
                j
                for j in self.jobs.values()
                if j["status"] == "queued" and (lock is None or j["lock"] == lock)
            ]
            for item in wanted[: body.get("limit", 100)]:
                item["status"] = "cancelled"
            return httpx.Response(200, json={"items": wanted[: body.get("limit", 100)]})
        return _error(404, "not_found")

    def _queues(self, method: str, rest: list[str], body: Any) -> httpx.Response:
        queue, action = rest
        (self.paused.add if action == "pause" else self.paused.discard)(queue)
        entry = {"queue": queue, "paused": queue in self.paused, "queued": 0, "leased": 0}
        entry.update(succeeded=0, failed=0, cancelled=0, oldest_queued_age_seconds=0.0)
        return httpx.Response(200, json=entry)

    def _schedules(self, method: str, rest: list[str], body: Any) -> httpx.Response:
        if not rest:
            return httpx.Response(200, json={"items": list(self.schedules.values())})
        name = rest[0]
        if method == "PUT":
            if len(body["cron"].split()) != 5:
                return _error(422, "validation_error")
            created = name not in self.schedules
            self.schedules[name] = {
                "name": name,
                "cron": body["cron"],
                "timezone": body.get("timezone", "UTC"),
                "job": body["job"],
                "paused": body.get("paused", False),
                "next_run_at": _NOW,
                "last_run_at": None,
                "created_at": _NOW,
                "updated_at": _NOW,
            }
            return httpx.Response(201 if created else 200, json=self.schedules[name])
        if name not in self.schedules:
            return _error(404, "not_found")
        if method == "DELETE":
            del self.schedules[name]
            return httpx.Response(204)
        if len(rest) == 2:
            self.schedules[name]["paused"] = rest[1] == "pause"
        return httpx.Response(200, json=self.schedules[name])
