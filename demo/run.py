"""The demo: one coordinator on SQLite, three ``fleet-agent run`` processes, 500 mixed jobs.

It kills one agent (SIGKILL) while it holds jobs, cancels one long job mid-run, shows
queued / leased / succeeded / failed / cancelled live, and ends with a summary of
who finished the killed agent's jobs. Every process it starts is stopped on the way
out, Ctrl-C and SIGTERM included. Leases are 2 s and the reaper runs every 0.5 s,
so the killed agent's jobs come back within about 2.5 s.
"""

from __future__ import annotations

import argparse
import random
import secrets
import shutil
import signal
import tempfile
import time
from collections.abc import Callable
from contextlib import ExitStack
from dataclasses import dataclass, field
from pathlib import Path
from types import FrameType
from typing import Any

import httpx
from rich.console import Console, Group
from rich.live import Live
from rich.progress import BarColumn, Progress, TextColumn
from rich.table import Table

from tests.support.agents import AgentProcess
from tests.support.served import Served

ROOT = Path(__file__).resolve().parent.parent
QUEUE = "demo"
LEASE_SECONDS = 2.0
COORDINATOR_ENV = {
    "FLEET_REAPER_INTERVAL_SECONDS": "0.5",
    "FLEET_DEFAULT_LEASE_SECONDS": str(LEASE_SECONDS),
    "FLEET_LONG_POLL_INTERVAL_SECONDS": "0.1",
}
STATUSES = ("queued", "leased", "succeeded", "failed", "cancelled")


CANCEL_SECONDS = 30


def make_jobs(count: int, rng: random.Random) -> list[dict[str, Any]]:
    """``count`` jobs of mixed kinds and priorities, the first one long (to be cancelled)."""
    jobs: list[dict[str, Any]] = [_job("work", {"seconds": CANCEL_SECONDS}, priority=100)]
    for n in range(count - 1):
        pick = rng.random()
        priority = rng.choice((0, 0, 0, 5, 10))
        if pick < 0.05:  # slow: outlives two lease lengths, kept alive by heartbeats
            job = _job("work", {"seconds": round(rng.uniform(2, 3), 2)}, priority)
        elif pick < 0.08:  # fails, retried once after backoff, fails again
            job = _job("work", {"seconds": 0.05, "fail": True}, priority, max_attempts=2)
        elif pick < 0.11:  # a shell command that fails at once
            job = _job("shell", {"argv": ["sh", "-c", "echo boom >&2; exit 3"]}, priority)
            job["max_attempts"] = 1
        elif pick < 0.21:
            job = _job("shell", {"argv": ["sh", "-c", f"echo job {n} from $$"]}, priority)
        else:
            job = _job("work", {"seconds": round(rng.uniform(0.05, 0.25), 3)}, priority)
        jobs.append(job)
    rng.shuffle(jobs)
    return jobs


def _job(kind: str, payload: dict[str, Any], priority: int, **more: Any) -> dict[str, Any]:
    return {
        "queue": QUEUE,
        "kind": kind,
        "payload": payload,
        "priority": priority,
        "lease_seconds": LEASE_SECONDS,
        **more,
    }


@dataclass
class Demo:
    """The running demo: the admin client, the agents and what happened so far."""

    http: httpx.Client
    agents: dict[str, AgentProcess]  # by agent id
    names: dict[str, str]  # agent id -> name
    total: int
    cancel_id: str
    started: float = field(default_factory=time.monotonic)
    counts: dict[str, int] = field(default_factory=dict)
    events: list[str] = field(default_factory=list)
    victim: str | None = None
    victim_jobs: list[str] = field(default_factory=list)
    cancel_sent: bool = False

    def elapsed(self) -> float:
        return time.monotonic() - self.started

    def poll(self) -> None:
        """Read the queue's counts; kill the victim and cancel the long job when it is time."""
        [stats] = [q for q in self.http.get("/v1/queues").json()["items"] if q["queue"] == QUEUE]
        self.counts = {status: int(stats[status]) for status in STATUSES}
        done = sum(self.counts[s] for s in ("succeeded", "failed", "cancelled"))
        if not self.cancel_sent and self._status(self.cancel_id) == "leased":
            self.http.post(f"/v1/jobs/{self.cancel_id}/cancel").raise_for_status()
            self.cancel_sent = True
            self._event(f"cancel requested for the 30 s job {self.cancel_id[:8]} while it runs")
        if self.victim is None and self.cancel_sent and done >= self.total // 5:
            self._kill_one()

    def _kill_one(self) -> None:
        # The victim holds jobs, but not the job being cancelled: that one should show a
        # cancel reaching a live agent (killed, its holder would let the lease expire).
        leased = self._leased()
        holder = {job["id"]: job["lease"]["agent_id"] for job in leased}.get(self.cancel_id)
        ids = list(self.agents)
        for victim in ids[1:] + ids[:1]:
            held = [job["id"] for job in leased if job["lease"]["agent_id"] == victim]
            if held and victim != holder:
                self.agents[victim].signal(signal.SIGKILL)
                self.victim, self.victim_jobs = victim, held
                self._event(f"SIGKILL {self.names[victim]} while it holds {len(held)} jobs")
                return
        # none fits right now: try again at the next poll

    def _leased(self) -> list[dict[str, Any]]:
        params: dict[str, str | int] = {"queue": QUEUE, "status": "leased", "limit": 1000}
        items: list[dict[str, Any]] = self.http.get("/v1/jobs", params=params).json()["items"]
        return items

    def _status(self, job_id: str) -> str:
        return str(self.http.get(f"/v1/jobs/{job_id}").json()["status"])

    def _event(self, text: str) -> None:
        self.events.append(f"{self.elapsed():5.1f} s  {text}")

    def line(self) -> str:
        """One line of counts, for ``--plain``."""
        counts = " ".join(f"{status}={self.counts.get(status, 0)}" for status in STATUSES)
        return f"{self.elapsed():5.1f} s  {counts}"

    def finished(self) -> bool:
        return bool(self.counts) and self.counts["queued"] + self.counts["leased"] == 0

    def render(self) -> Group:
        """The live view: one bar per status, the agents, the events so far."""
        bars = Progress(
            TextColumn("{task.description:>10}"),
            BarColumn(bar_width=50),
            TextColumn("{task.completed:>4.0f} / {task.total:.0f}"),
        )
        for status in STATUSES:
            bars.add_task(status, total=self.total, completed=self.counts.get(status, 0))
        agents = Table(title=f"agents — {self.elapsed():.1f} s", title_justify="left")
        agents.add_column("agent")
        agents.add_column("live leases", justify="right")
        agents.add_column("state")
        for agent_id, proc in self.agents.items():
            state = "running" if proc.running() else "[red]killed[/red]"
            agents.add_row(self.names[agent_id], str(self._live(agent_id)), state)
        return Group(bars, agents, *self.events)

    def _live(self, agent_id: str) -> int:
        return int(self.http.get(f"/v1/agents/{agent_id}").json()["live_leases"])

    def summary(self, console: Console) -> bool:
        """Print the outcome; True when the killed agent's jobs were all finished by others."""
        table = Table(title=f"{self.total} jobs in {self.elapsed():.1f} s", title_justify="left")
        for status in STATUSES:
            table.add_column(status, justify="right")
        table.add_row(*(str(self.counts[s]) for s in STATUSES))
        console.print(table)
        cancelled = self.http.get(f"/v1/jobs/{self.cancel_id}").json()
        console.print(
            f"cancelled mid-run: job {self.cancel_id[:8]} is {cancelled['status']} "
            f"(runs: {', '.join(r['outcome'] for r in cancelled['runs'])})"
        )
        if self.victim is None:
            console.print("[red]no agent was killed (none held a job at 20 %)[/red]")
            return False
        return self._victim_summary(console)

    def _victim_summary(self, console: Console) -> bool:
        victim = self.names[self.victim or ""]
        table = Table(title=f"jobs {victim} held when it was killed", title_justify="left")
        for column in ("job", "kind", "runs (agent: outcome)", "status"):
            table.add_column(column)
        taken_over, ok = 0, True
        for job_id in self.victim_jobs:
            job = self.http.get(f"/v1/jobs/{job_id}").json()
            runs = [(self.names.get(r["agent_id"], "?"), r["outcome"]) for r in job["runs"]]
            # A job the victim completed between the listing and the SIGKILL was not
            # taken over; every other one must have expired and ended with another agent.
            if (victim, "lease_expired") in runs:
                taken_over += 1
                # Ended by another agent, or (its last attempt spent) failed by the reaper.
                exhausted = runs[-1] == (victim, "lease_expired") and job["status"] == "failed"
                ok = ok and job["status"] in ("succeeded", "failed")
                ok = ok and (runs[-1][0] != victim or exhausted)
            chain = " → ".join(f"{name}: {outcome}" for name, outcome in runs)
            table.add_row(job_id[:8], job["kind"], chain, job["status"])
        console.print(table)
        ok = ok and taken_over > 0
        verdict = (
            "all ended (finished by the other agents, or failed with no attempts left)"
            if ok
            else "[red]NOT all finished[/red]"
        )
        console.print(f"{taken_over} jobs taken over from the killed {victim}: {verdict}")
        return ok


def main(argv: list[str] | None = None) -> int:
    """Run the demo; exit 0 when everything ended as described."""
    parser = argparse.ArgumentParser(prog="python -m demo", description=__doc__)
    parser.add_argument("--jobs", type=int, default=500)
    parser.add_argument("--concurrency", type=int, default=8, help="per agent")
    parser.add_argument("--plain", action="store_true", help="no live display (for logs)")
    parser.add_argument("--time-limit", type=float, default=60.0)
    parser.add_argument("--seed", type=int, default=7)
    args = parser.parse_args(argv)
    console = Console()
    signal.signal(signal.SIGTERM, _interrupt)
    signal.signal(signal.SIGINT, signal.default_int_handler)  # even if started ignoring it
    workdir = Path(tempfile.mkdtemp(prefix="fleet-demo-"))
    try:
        with ExitStack() as stack:
            return _run(stack, workdir, args, console)
    except KeyboardInterrupt:
        console.print("interrupted: every process was stopped")
        return 130
    finally:
        shutil.rmtree(workdir, ignore_errors=True)


def _run(stack: ExitStack, workdir: Path, args: argparse.Namespace, console: Console) -> int:
    served = Served(
        cwd=workdir,
        store_url=f"sqlite:///{workdir}/fleet.db",
        env=COORDINATOR_ENV,
        admin_token=secrets.token_urlsafe(24),
    )
    stack.enter_context(served)
    console.print(f"coordinator on {served.base_url} (SQLite in {workdir})")
    http = stack.enter_context(
        httpx.Client(base_url=served.base_url, headers=served.admin_headers, timeout=15)
    )
    agents: dict[str, AgentProcess] = {}
    names: dict[str, str] = {}
    agent_args = (
        "--queue", QUEUE, "--concurrency", str(args.concurrency), "--wait-seconds", "1",
        "--handlers", "demo.handlers:HANDLERS", "--log-level", "warning",
    )  # fmt: skip
    for n in range(1, 4):
        name = f"agent-{n}"
        body = {"name": name, "capacity": args.concurrency, "queues": [QUEUE]}
        created = http.post("/v1/agents", json=body).raise_for_status().json()
        agent_id = created["agent"]["id"]
        names[agent_id] = name
        process = AgentProcess(
            served.base_url, created["token"], workdir, agent_args, name=name,
            env={"PYTHONPATH": str(ROOT)},
        )  # fmt: skip
        agents[agent_id] = stack.enter_context(process)
    jobs = make_jobs(args.jobs, random.Random(args.seed))
    items = http.post("/v1/jobs/batch", json={"jobs": jobs}).raise_for_status().json()["items"]
    [cancel_id] = [job["id"] for job in items if job["payload"].get("seconds") == CANCEL_SECONDS]
    console.print(f"3 agents x {args.concurrency} slots; {len(items)} jobs enqueued")
    demo = Demo(http, agents, names, len(items), cancel_id)
    if args.plain:
        finished = _watch(demo, args.time_limit, lambda: console.print(demo.line()), every=1)
        console.print(*demo.events, sep="\n")
    else:
        with Live(demo.render(), console=console, refresh_per_second=4) as live:
            finished = _watch(demo, args.time_limit, lambda: live.update(demo.render()))
    if not finished:
        console.print(f"[red]not finished within {args.time_limit:.0f} s[/red]")
        return 1
    return 0 if demo.summary(console) else 1


def _watch(demo: Demo, time_limit: float, show: Callable[[], None], every: float = 0) -> bool:
    """Poll, and show every ``every`` seconds, until every job ended; False past the limit."""
    shown = 0.0
    while not demo.finished():
        if demo.elapsed() > time_limit:
            return False
        demo.poll()
        if demo.elapsed() - shown >= every:
            shown = demo.elapsed()
            show()
        time.sleep(0.25)
    show()
    return True


def _interrupt(signum: int, frame: FrameType | None) -> None:
    raise KeyboardInterrupt
