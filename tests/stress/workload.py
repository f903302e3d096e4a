"""The stress workload: agents that claim and misbehave over real HTTP, recorded round by round.

``Workload.run()`` enqueues jobs in rounds (one queue per round, batches with
idempotency keys so a retry after a crash enqueues each job once), while
``agents`` agent tasks (each a registered agent, spread over the replicas)
claim from every queue and then, per lease, randomly: complete (after 0-2
heartbeats), fail (retryable or not), release, abandon it, or sleep past the
lease and then try to complete. Every ``Plan.worker_every``-th agent is instead a
batched ``fleet_agent.Worker`` (heartbeats, completions and failures through
``POST /v1/reports`` with the next claim riding along) whose client records what
the coordinator acknowledged. Meanwhile ``Plan.operators`` bulk retries at a time
redrive each running round's failed jobs (``POST /v1/jobs/retry``, small limits,
sent together on different replicas so that they race), and now and then cancel
one of its jobs the same way (``POST /v1/jobs/cancel``); each job in an
acknowledged answer is recorded (``Bulked``), and the checker holds both to
single-winner (``double_retry``, ``double_cancel``, ``claim_after_cancel``). Each round is
checked (``history.check``) as soon as all its jobs are terminal, then
forgotten, so memory stays bounded however long the run.

A request whose answer never came (a killed replica, a cancelled agent, a 503)
is recorded as *in doubt*, never as acknowledged. Every loop is bounded by
``Plan.duration``/``Plan.max_claims`` and by ``Plan.drain_bound`` after that.
"""

from __future__ import annotations

import asyncio
import random
import time
import uuid
from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass, field, replace
from typing import Any

import httpx
from fleet_agent import (
    AgentClient,
    Claimed,
    CoordinatorUnavailable,
    Job,
    JobFailed,
    Report,
    Reported,
    Worker,
)

from .history import TERMINAL, Bulked, Claim, History, Violation, Write, check, parse_time

__all__ = ["ACTIONS", "Plan", "Stats", "Workload"]

ACTIONS = {
    "complete": 0.55,
    "fail": 0.1,
    "fail_final": 0.03,
    "release": 0.12,
    "abandon": 0.1,
    "late_complete": 0.05,
    "heartbeats": 0.05,
}
"""What an agent does with a lease, and how often."""


@dataclass
class Plan:
    """The shape and bounds of one run."""

    agents: int = 32
    capacity: int = 4
    lease_seconds: float = 2.0
    jobs_per_round: int = 400
    duration: float = 20.0
    """Seconds after which no new round is enqueued."""
    max_claims: int = 1_000_000
    """Acknowledged claims after which no new round is enqueued."""
    drain_bound: float = 60.0
    """Seconds within which every job must be terminal once enqueuing (and chaos) stopped."""
    round_bound: float = 300.0
    """Seconds a round may take while the run is still going."""
    strict: bool = True
    """No crashes in this run: every run of every job must have been acknowledged."""
    seed: int = 1
    locks: int = 4
    """Locks per round (0: no job has a lock); their jobs are checked for ``lock_overlap``."""
    lock_every: int = 2
    """Every this-many-th job of a round carries one of the round's locks."""
    actions: dict[str, float] = field(default_factory=lambda: dict(ACTIONS))
    worker_every: int = 4
    """Every n-th agent is a batched ``Worker`` (0: none)."""
    shared_every: int = 4
    """Of the other agents, every n-th (the 2nd, 6th, …) claims through two replicas at
    once with one token, as two processes sharing it would (0: none)."""
    operators: int = 2
    """Bulk retries of each running round's failed jobs sent at once every tick, one per
    replica (0: none)."""
    redrive_limit: int = 3
    """The ``limit`` of each bulk retry: small, so racing calls contend for the same jobs."""
    cancel_every: int = 10
    """A round's first operator tick and every this-many-th after send ``operators`` bulk
    cancels of one job each instead of retries (0: none): a few queued or leased jobs."""


@dataclass
class Stats:
    """What a run did and found."""

    claims_checked: int = 0
    claims_seen: int = 0
    """Acknowledged claims so far, checked or not yet (their round is still running)."""
    jobs_checked: int = 0
    rounds: int = 0
    writes_acked: int = 0
    lease_lost: int = 0
    in_doubt: int = 0
    claims_in_doubt: int = 0
    """Batched Workers' claims a try of which got no answer (retried after a read timeout,
    or given up): in doubt, strict run or not (``History.claims_in_doubt``)."""
    agents_killed: int = 0
    agents_deleted: int = 0
    """Killed agents the admin API then deleted (their leases released by the delete)."""
    replicas_killed: int = 0
    retried: int = 0
    """Jobs requeued by acknowledged bulk retries."""
    cancelled: int = 0
    """Jobs cancelled or asked to stop by acknowledged bulk cancels."""
    started: float = field(default_factory=time.monotonic)
    elapsed: float = 0.0
    drain_seconds: float = 0.0
    """Seconds from the end of enqueuing (and chaos) until every job was terminal."""
    violations: list[Violation] = field(default_factory=list)
    outcomes: Counter[str] = field(default_factory=Counter)

    def line(self) -> str:
        """One progress line."""
        elapsed = time.monotonic() - self.started
        rate = self.claims_seen / elapsed if elapsed else 0.0
        return (
            f"t={elapsed:6.0f}s claims_seen={self.claims_seen} ({rate:.0f}/s) "
            f"claims_checked={self.claims_checked} "
            f"jobs={self.jobs_checked} rounds={self.rounds} lease_lost={self.lease_lost} "
            f"in_doubt={self.in_doubt} claims_in_doubt={self.claims_in_doubt} "
            f"replicas_killed={self.replicas_killed} "
            f"agents_killed={self.agents_killed} agents_deleted={self.agents_deleted} "
            f"retried={self.retried} cancelled={self.cancelled} "
            f"violations={len(self.violations)}"
        )


class _InDoubtError(Exception):
    """The request's outcome is unknown (no answer, or 503)."""


@dataclass
class _Agent:
    id: str
    headers: dict[str, str]
    home: int


class Workload:
    """Agents, rounds and the recorded history against ``urls`` (coordinator replicas)."""

    def __init__(self, urls: list[str], admin_token: str, plan: Plan) -> None:
        self.urls = urls
        self.admin = {"Authorization": f"Bearer {admin_token}"}
        self.plan = plan
        self.stats = Stats()
        self.rng = random.Random(plan.seed)
        self.run_id = uuid.uuid4().hex[:8]
        self.doubtful_claims: Counter[str] = Counter()
        self.claims_in_doubt: dict[str, float] = {}
        self.doubtful_tokens: set[str] = set()
        self.rounds: dict[str, History] = {}
        self.round_of: dict[str, History] = {}
        self.enqueue_stopped = asyncio.Event()
        self.stopped_at: float | None = None
        self.agents: dict[int, asyncio.Task[None]] = {}
        self.agent_ids: dict[int, str] = {}
        self.deletions: set[asyncio.Task[None]] = set()
        self.finishing: set[str] = set()
        """Rounds being checked: no bulk retry touches their jobs any more."""
        self.redriving: dict[str, set[asyncio.Task[None]]] = {}
        """The bulk retries of each round in flight (a round being checked waits for them)."""
        self.ticks: Counter[str] = Counter()
        """Operator ticks per running round, since its jobs exist."""
        self._next_agent = 0
        self._quit = asyncio.Event()
        self.http = httpx.AsyncClient(
            timeout=httpx.Timeout(30.0, connect=5.0),
            limits=httpx.Limits(max_connections=4 * plan.agents + 32),
        )

    async def __aenter__(self) -> Workload:
        return self

    async def __aexit__(self, *exc: object) -> None:
        self._quit.set()
        for task in self.agents.values():
            task.cancel()
        await asyncio.gather(*self.agents.values(), return_exceptions=True)
        await asyncio.gather(*self.deletions, return_exceptions=True)
        await self.http.aclose()

    # -- requests --------------------------------------------------------------------------

    async def _send(
        self, home: int, method: str, path: str, headers: dict[str, str], body: Any = None
    ) -> httpx.Response:
        """One request to replica ``home``; ``_InDoubtError`` when its outcome is unknown."""
        try:
            r = await self.http.request(method, self.urls[home] + path, headers=headers, json=body)
        except httpx.ConnectError as exc:
            raise ConnectionRefusedError(str(exc)) from exc  # never reached the replica
        except httpx.TransportError as exc:
            raise _InDoubtError(str(exc)) from exc
        if r.status_code == 503:
            raise _InDoubtError(r.text)
        return r

    async def admin_call(
        self, method: str, path: str, body: Any = None, *, gone_after_retry: bool = False
    ) -> httpx.Response:
        """An admin request, retried on other replicas until it is answered (bounded).

        ``gone_after_retry``: a 404 after a try whose answer was lost is the effect of
        that try (a delete), not an error.
        """
        for attempt in range(200):
            home = attempt % len(self.urls)
            try:
                r = await self._send(home, method, path, self.admin, body)
            except (ConnectionRefusedError, _InDoubtError):
                await asyncio.sleep(0.05)  # back-off while a replica restarts
                continue
            gone = gone_after_retry and attempt > 0 and r.status_code == 404
            if r.status_code >= 400 and not gone:
                self._unexpected(path, r)
            return r
        raise RuntimeError(f"{method} {path}: no replica answered")

    def _unexpected(self, what: str, r: httpx.Response) -> None:
        self.stats.violations.append(
            Violation("unexpected_status", what, f"{r.status_code} {r.text[:200]}")
        )

    # -- agents ----------------------------------------------------------------------------

    def start_agents(self) -> None:
        """Start ``plan.agents`` agent tasks."""
        for _ in range(self.plan.agents):
            self._spawn()

    def _spawn(self) -> None:
        index = self._next_agent
        self._next_agent += 1
        every = self.plan.worker_every
        run = self._worker_agent if every and index % every == every - 1 else self._agent
        self.agents[index] = asyncio.create_task(run(index), name=f"agent-{index}")

    def kill_agent(self, *, delete: bool = False) -> None:
        """Cancel a random agent task abruptly (a crashed worker) and start a new agent.

        With ``delete``, an admin then deletes the dead agent, which releases its
        leases (SPEC 4, 9): every lease it was acknowledged may end from the moment
        the delete is sent, recorded as a doubtful end for the checker.
        """
        pool = sorted(self.agents)
        if delete:
            # Prefer an agent acknowledged a lease that has not expired: its delete has
            # something to release, and the checker something to check.
            now = time.time()
            holding = {
                claim.agent
                for history in self.rounds.values()
                for claims in history.claims.values()
                for claim in claims
                if claim.expires_at > now
            }
            pool = [i for i in pool if self.agent_ids.get(i) in holding] or pool
        index = self.rng.choice(pool)
        self.agents.pop(index).cancel()
        self.stats.agents_killed += 1
        agent_id = self.agent_ids.pop(index, None)
        if delete and agent_id is not None:
            task = asyncio.create_task(self._delete_agent(agent_id))
            self.deletions.add(task)
            task.add_done_callback(self.deletions.discard)
        self._spawn()

    async def _delete_agent(self, agent_id: str) -> None:
        """Delete an agent through any replica (a lost answer is retried: then 404 is fine)."""
        sent = time.time()
        for history in self.rounds.values():
            history.deleted_agents[agent_id] = min(history.deleted_agents.get(agent_id, sent), sent)
        r = await self.admin_call("DELETE", f"/v1/agents/{agent_id}", gone_after_retry=True)
        if r.status_code in (204, 404):
            self.stats.agents_deleted += 1

    async def _agent(self, index: int) -> None:
        body = {"name": f"stress-{index}", "capacity": self.plan.capacity}
        created = (await self.admin_call("POST", "/v1/agents", body)).json()
        headers = {"Authorization": f"Bearer {created['token']}"}
        agent = _Agent(created["agent"]["id"], headers, index % len(self.urls))
        self.agent_ids[index] = agent.id
        loops = [self._claim_loop(agent, random.Random(f"{self.plan.seed}-{index}"))]
        every = self.plan.shared_every
        if every and index % every == 1 and len(self.urls) > 1:
            # Two processes sharing one agent's token, each through its own replica and
            # each asking for every slot it has not filled itself: together they ask for
            # more than the capacity, which must hold across the replicas (SPEC 4).
            twin = _Agent(agent.id, headers, (agent.home + 1) % len(self.urls))
            loops.append(self._claim_loop(twin, random.Random(f"{self.plan.seed}-{index}-twin")))
        await asyncio.gather(*loops)

    async def _claim_loop(self, agent: _Agent, rng: random.Random) -> None:
        working: set[asyncio.Task[None]] = set()
        try:
            while not self._quit.is_set():
                if len(working) >= self.plan.capacity:
                    # Every slot is busy: claim again when a lease's work ends.
                    _, working = await asyncio.wait(working, return_when=asyncio.FIRST_COMPLETED)
                    continue
                claim = {"max_jobs": self.plan.capacity - len(working), "wait_seconds": 1}
                for item in await self._claim(agent, claim):
                    working.add(asyncio.create_task(self._work(agent, item, rng)))
        finally:
            for task in working:  # a killed agent's work dies with it
                task.cancel()

    async def _worker_agent(self, index: int) -> None:
        """A batched ``Worker`` whose handlers act at random and whose client records."""
        body = {"name": f"stress-worker-{index}", "capacity": self.plan.capacity}
        created = (await self.admin_call("POST", "/v1/agents", body)).json()
        agent = _Agent(created["agent"]["id"], {}, index % len(self.urls))
        self.agent_ids[index] = agent.id
        rng = random.Random(f"{self.plan.seed}-{index}")
        transport = _CountingTransport()
        client = _RecordingClient(
            self, agent, transport, self.urls[agent.home], created["token"], retry_timeout=5.0
        )
        lease = self.plan.lease_seconds
        kinds = ["complete", "heartbeats", "fail", "fail_final"]
        weights = [self.plan.actions.get(k, 0.0) for k in kinds]

        async def handler(job: Job) -> dict[str, str]:
            action = rng.choices(kinds, weights)[0]
            self.stats.outcomes[f"worker_{action}"] += 1
            if action == "fail":
                raise JobFailed("boom")
            if action == "fail_final":
                raise JobFailed("fatal", retryable=False)
            # "heartbeats" outlives the lease: only the worker's heartbeats keep it.
            await asyncio.sleep(rng.uniform(0, lease / 2) if action == "complete" else lease * 1.2)
            token = f"{agent.id}:{job.epoch}:{uuid.uuid4().hex[:8]}"
            self.doubtful_tokens.add(token)  # until an answer says what happened
            return {"token": token}

        async with client:
            worker = Worker(
                client, {"stress": handler}, concurrency=self.plan.capacity, wait_seconds=1
            )
            await worker.run()

    async def _claim(self, agent: _Agent, claim: dict[str, Any]) -> list[dict[str, Any]]:
        sent = time.time()
        self.doubtful_claims[agent.id] += 1  # until an answer says what happened
        try:
            r = await self._send(agent.home, "POST", "/v1/claims", agent.headers, claim)
        except ConnectionRefusedError:
            self.doubtful_claims[agent.id] -= 1
            agent.home = (agent.home + 1) % len(self.urls)
            await asyncio.sleep(0.05)  # back-off while a replica restarts
            return []
        except _InDoubtError:
            self.stats.in_doubt += 1
            agent.home = (agent.home + 1) % len(self.urls)
            return []
        self.doubtful_claims[agent.id] -= 1
        acked = time.time()
        if r.status_code != 200:
            self._unexpected("POST /v1/claims", r)
            return []
        leases: list[dict[str, Any]] = r.json()["leases"]
        for item in leases:
            self._record_claim(agent, item, sent, acked)
        return leases

    def record_claim(self, agent: _Agent, item: dict[str, Any], sent: float, acked: float) -> None:
        """Record one acknowledged lease of ``agent``."""
        self._record_claim(agent, item, sent, acked)

    def record_write(
        self, agent: _Agent, report: Report, answer: dict[str, Any], sent: float, acked: float
    ) -> None:
        """Record one acknowledged (ok) report of a batched worker."""
        history = self.round_of.get(report.job_id)
        if history is None:
            return
        self.stats.writes_acked += 1
        op = report.action
        token = None
        if op == "heartbeat":
            expires = parse_time(answer["lease"]["expires_at"])
            at, status = expires - self.plan.lease_seconds, None
        else:
            # The answer carries no server time: the write landed after it was sent
            # (one host clock), the earliest end of the lease the checker may assume.
            expires, at, status = None, sent, answer["status"]
            if op == "complete":
                token = report.result["token"]
        write = Write(report.job_id, report.epoch, agent.id, op, at, sent, acked, expires)
        history.write(replace(write, status=status, token=token))

    def _record_claim(self, agent: _Agent, item: dict[str, Any], sent: float, acked: float) -> None:
        job, lease = item["job"], item["lease"]
        history = self.rounds.get(job["queue"])
        if history is None:
            # A job of no round: only possible if the coordinator invented or lost track of one.
            self.stats.violations.append(Violation("unknown_claim", job["id"], "not enqueued"))
            return
        self.round_of[job["id"]] = history
        self.stats.claims_seen += 1
        history.claim(
            Claim(
                job=job["id"],
                epoch=int(lease["epoch"]),
                agent=agent.id,
                claimed_at=parse_time(job["updated_at"]),
                expires_at=parse_time(lease["expires_at"]),
                sent=sent,
                acked=acked,
            )
        )

    async def _work(self, agent: _Agent, item: dict[str, Any], rng: random.Random) -> None:
        job_id, epoch = item["job"]["id"], int(item["lease"]["epoch"])
        action = rng.choices(list(self.plan.actions), list(self.plan.actions.values()))[0]
        self.stats.outcomes[action] += 1
        lease = self.plan.lease_seconds
        try:
            if action in ("complete", "heartbeats"):
                beats = rng.randint(0, 2) if action == "complete" else rng.randint(3, 5)
                for _ in range(beats):
                    await asyncio.sleep(rng.uniform(0, lease / 4))
                    if not await self._write(agent, job_id, epoch, "heartbeat", {}):
                        return
                await self._complete(agent, job_id, epoch)
            elif action == "fail":
                await self._write(agent, job_id, epoch, "fail", {"error": "boom"})
            elif action == "fail_final":
                body = {"error": "fatal", "retryable": False}
                await self._write(agent, job_id, epoch, "fail", body)
            elif action == "release":
                await self._write(agent, job_id, epoch, "release", {})
            elif action == "late_complete":
                await asyncio.sleep(lease + rng.uniform(0.05, 0.5))  # past the lease, on purpose
                await self._complete(agent, job_id, epoch)
            # "abandon": do nothing; the reaper must take the job back.
        except _InDoubtError:
            self.stats.in_doubt += 1

    async def _complete(self, agent: _Agent, job_id: str, epoch: int) -> None:
        token = f"{agent.id}:{epoch}:{uuid.uuid4().hex[:8]}"
        self.doubtful_tokens.add(token)  # stays there if no answer comes (or we are cancelled)
        await self._write(agent, job_id, epoch, "complete", {"result": {"token": token}})
        self.doubtful_tokens.discard(token)

    async def _write(
        self, agent: _Agent, job_id: str, epoch: int, op: str, body: dict[str, Any]
    ) -> bool:
        """One fenced write; True if acknowledged, False on 409, ``_InDoubtError`` if unknown."""
        sent = time.time()
        history = self.round_of.get(job_id)
        ends = op != "heartbeat" and history is not None
        if ends and history is not None:
            history.doubtful_ends[(job_id, epoch)] = sent  # until an answer says what happened
        try:
            r = await self._send(
                agent.home,
                "POST",
                f"/v1/jobs/{job_id}/{op}",
                agent.headers,
                {"epoch": epoch, **body},
            )
        except ConnectionRefusedError:
            agent.home = (agent.home + 1) % len(self.urls)
            if ends and history is not None:
                history.doubtful_ends.pop((job_id, epoch), None)
            return False  # never reached a replica: nothing happened; give the lease up
        except _InDoubtError:
            agent.home = (agent.home + 1) % len(self.urls)
            raise
        acked = time.time()
        if ends and history is not None:
            history.doubtful_ends.pop((job_id, epoch), None)
        if r.status_code == 409 and r.json()["error"]["code"] == "lease_lost":
            self.stats.lease_lost += 1
            return False
        if r.status_code != 200:
            self._unexpected(f"POST /v1/jobs/{{id}}/{op}", r)
            return False
        data = r.json()
        if history is None:
            return True
        self.stats.writes_acked += 1
        if op == "heartbeat":
            expires = parse_time(data["lease"]["expires_at"])
            at, status, token = expires - self.plan.lease_seconds, None, None
        else:
            expires, at, status = None, parse_time(data["updated_at"]), data["status"]
            token = body["result"]["token"] if op == "complete" else None
        history.write(Write(job_id, epoch, agent.id, op, at, sent, acked, expires, status, token))
        return True

    # -- rounds ----------------------------------------------------------------------------

    async def run(
        self, progress: Callable[[Stats], None] | None = None, every: float = 10.0
    ) -> Stats:
        """Enqueue, work and check round after round until the plan's bounds; return the stats."""
        self.stats.started = time.monotonic()
        self.start_agents()
        reporter = asyncio.create_task(self._report(progress, every)) if progress else None
        operators = [asyncio.create_task(self._operators())] if self.plan.operators else []
        try:
            pending = [await self._enqueue_round()]
            while pending:
                if len(pending) == 1 and not self.enqueue_stopped.is_set():
                    # Keep the agents busy: the next round goes in once this one has
                    # nothing left to hand out.
                    await self._wait_quiet(pending[0], ("queued",), self._deadline())
                    if self._done():
                        self.stop_enqueue()
                    else:
                        pending.append(await self._enqueue_round())
                await self._finish_round(pending.pop(0))
                if not pending and not self.enqueue_stopped.is_set():
                    pending.append(await self._enqueue_round())
        finally:
            if reporter is not None:
                reporter.cancel()
            for task in operators:
                task.cancel()
            await asyncio.gather(*operators, return_exceptions=True)
        self.stats.elapsed = time.monotonic() - self.stats.started
        if self.stopped_at is not None:
            self.stats.drain_seconds = time.monotonic() - self.stopped_at
        return self.stats

    def stop_enqueue(self) -> None:
        """No new rounds from now on; the drain bound starts counting."""
        if not self.enqueue_stopped.is_set():
            self.stopped_at = time.monotonic()
            self.enqueue_stopped.set()

    def _done(self) -> bool:
        recorded = sum(h.claim_count for h in self.rounds.values())
        elapsed = time.monotonic() - self.stats.started
        return (
            elapsed >= self.plan.duration
            or self.stats.claims_checked + recorded >= self.plan.max_claims
        )

    def _deadline(self) -> float:
        if self.stopped_at is not None:
            return self.stopped_at + self.plan.drain_bound
        return time.monotonic() + self.plan.round_bound

    async def _report(self, progress: Callable[[Stats], None], every: float) -> None:
        while True:
            await asyncio.sleep(every)
            progress(self.stats)

    async def _enqueue_round(self) -> str:
        queue = f"{self.run_id}-r{self.stats.rounds + len(self.rounds)}"
        history = History(
            capacity=self.plan.capacity,
            doubtful_claims=self.doubtful_claims,
            claims_in_doubt=self.claims_in_doubt,
            doubtful_tokens=self.doubtful_tokens,
        )
        self.rounds[queue] = history  # before any job exists: a claim may come back first
        n = self.plan.jobs_per_round
        for start in range(0, n, 1000):
            jobs = [
                {
                    "queue": queue,
                    "kind": "stress",
                    "payload": {"i": i},
                    "lease_seconds": self.plan.lease_seconds,
                    "idempotency_key": f"{queue}-{i}",
                    **self._lock_of(queue, i),
                }
                for i in range(start, min(start + 1000, n))
            ]
            # Retried until answered: the idempotency keys make each job exist once.
            r = await self.admin_call("POST", "/v1/jobs/batch", {"jobs": jobs})
            for job in r.json()["items"]:
                history.enqueued[job["id"]] = queue
                if job.get("lock"):
                    history.locks[job["id"]] = job["lock"]
        return queue

    def _lock_of(self, queue: str, i: int) -> dict[str, str]:
        """Every ``plan.lock_every``-th job of a round shares one of ``plan.locks`` locks."""
        if self.plan.locks <= 0 or i % self.plan.lock_every:
            return {}
        return {"lock": f"{queue}-lock{(i // self.plan.lock_every) % self.plan.locks}"}

    async def _wait_quiet(self, queue: str, statuses: tuple[str, ...], deadline: float) -> None:
        """Poll until ``queue`` lists no job in ``statuses`` (or the deadline passes)."""
        while time.monotonic() < deadline:
            if self.stopped_at is None and self._done():
                self.stop_enqueue()
                deadline = min(deadline, self._deadline())
            if not await self._any(queue, statuses):
                return
            await asyncio.sleep(0.2)  # polling the coordinator's state, not synchronising

    async def _any(self, queue: str, statuses: tuple[str, ...]) -> bool:
        """Whether ``queue`` lists a job in one of ``statuses`` now."""
        for status in statuses:
            r = await self.admin_call("GET", f"/v1/jobs?queue={queue}&status={status}&limit=1")
            if r.json()["items"]:
                return True
        return False

    async def _finish_round(self, queue: str) -> None:
        history = self.rounds[queue]
        deadline = self._deadline()
        if self.plan.operators:
            await self._redrive_before_check(queue, deadline)
        # No bulk retry may requeue a job of this round once its final state is read:
        # those in flight end first (the checker reads answers, not guesses).
        self.finishing.add(queue)
        await asyncio.gather(*self.redriving.pop(queue, set()), return_exceptions=True)
        await self._wait_quiet(queue, ("queued", "leased"), deadline)
        final: dict[str, dict[str, Any] | None] = {}
        gate = asyncio.Semaphore(16)

        async def read(job_id: str) -> None:
            async with gate:
                r = await self.admin_call("GET", f"/v1/jobs/{job_id}")
            final[job_id] = r.json() if r.status_code == 200 else None

        def status(job_id: str) -> str | None:
            return (final.get(job_id) or {}).get("status")

        while True:
            todo = [j for j in history.enqueued if status(j) not in TERMINAL]
            await asyncio.gather(*(read(j) for j in todo))
            late = [j for j in history.enqueued if status(j) not in TERMINAL]
            if not late:
                break
            if time.monotonic() > deadline:
                for j in late:
                    self.stats.violations.append(
                        Violation("not_terminal_in_bound", j, f"still {status(j)}")
                    )
                break
            await asyncio.sleep(0.2)  # polling the coordinator's state, not synchronising
        listed = (await self.admin_call("GET", "/v1/queues")).json()["items"]
        counts = {q["queue"]: q for q in listed if q["queue"] == queue}
        counts.setdefault(queue, {})
        self.stats.violations += check(
            history, final, counts, strict=self.plan.strict, unsettled=frozenset(late)
        )
        self.stats.claims_checked += history.claim_count
        self.stats.jobs_checked += len(history.enqueued)
        self.stats.rounds += 1
        for job_id in history.enqueued:
            self.round_of.pop(job_id, None)
        del self.rounds[queue]
        self.ticks.pop(queue, None)
        self.finishing.discard(queue)

    # -- operators ---------------------------------------------------------------------------

    async def _operators(self) -> None:
        """Every tick, ``plan.operators`` bulk calls for each running round at once, one per
        replica: they list the same jobs at the same moment and race for them. While rounds
        are enqueued, a round's first tick once its jobs exist, and every
        ``plan.cancel_every``-th after, cancels; the others retry (the first: a round may be
        checked after few ticks, on Cosmos DB). Once enqueuing stopped, only the rounds no
        tick reached yet, or no retry redrove yet, are ticked, with retries after their
        first tick: each tick waits for its slowest call, and on a loaded machine a short
        run's ticks could all pass before any of its jobs had failed for good; the drain
        gets no more work than one redrive (and one cancel)."""
        while True:
            stopped = self.enqueue_stopped.is_set()
            for queue in list(self.rounds):
                # Checked at each round, not once per pass: the ticks before it took time,
                # and a round being checked must get no call registered after its wait.
                history = self.rounds.get(queue)
                if history is None or queue in self.finishing or not history.enqueued:
                    continue  # checked, being checked, or its batch is still being enqueued
                if stopped and self.ticks[queue] and _redriven(history):
                    continue
                await self._tick(queue, self._action(queue))
            await asyncio.sleep(0.1)  # pacing the operators, not synchronising

    def _action(self, queue: str) -> str:
        """The call of ``queue``'s next tick: its first, and every ``plan.cancel_every``-th
        after while rounds are enqueued, cancel; the others retry."""
        self.ticks[queue] += 1
        n, every = self.ticks[queue], self.plan.cancel_every
        if every > 0 and n % every == 1 and (n == 1 or not self.enqueue_stopped.is_set()):
            return "cancel"
        return "retry"

    async def _tick(self, queue: str, action: str) -> None:
        """``plan.operators`` bulk calls of ``action`` for ``queue`` at once, one per replica."""
        calls = {
            asyncio.create_task(self._bulk(i % len(self.urls), queue, action))
            for i in range(self.plan.operators)
        }
        self.redriving.setdefault(queue, set()).update(calls)
        try:
            await asyncio.gather(*calls)
        finally:
            self.redriving.get(queue, set()).difference_update(calls)

    async def _redrive_before_check(self, queue: str, deadline: float) -> None:
        """The operators' racing retries for ``queue`` once it has a failed job, unless an
        acknowledged retry (or one in doubt) redrove some job of it already; and its first
        tick, if no tick reached it yet.

        The backstop of ``_operators`` for a round about to be checked: whether their ticks
        came after a job of it failed for good was a matter of timing (under load 10 nearly
        every 4 s Cosmos run redrove nothing). Here the condition is waited on: a failed job
        listed, or every job ended with none failed (nothing to redrive); at most until
        ``deadline``.
        """
        history = self.rounds[queue]
        if not self.ticks[queue] and history.enqueued:
            await self._tick(queue, self._action(queue))  # its first tick (a cancel) too
        while not _redriven(history) and time.monotonic() < deadline:
            if await self._any(queue, ("failed",)):
                await self._tick(queue, "retry")
            elif not await self._any(queue, ("queued", "leased")):
                return
            if not _redriven(history):
                await asyncio.sleep(0.2)  # polling the coordinator's state, not synchronising

    async def _bulk(self, home: int, queue: str, action: str) -> None:
        """One bulk retry of ``queue``'s failed jobs (or a bulk cancel of one of its jobs)
        through replica ``home``, recorded."""
        history = self.rounds[queue]
        if action == "retry":
            body: dict[str, Any] = {"queue": queue, "status": "failed"}
            body["limit"] = self.plan.redrive_limit
        else:
            body = {"queue": queue, "limit": 1}
        sent = time.time()
        try:
            r = await self._send(home, "POST", f"/v1/jobs/{action}", self.admin, body)
        except ConnectionRefusedError:
            return  # never reached a replica: nothing was done
        except _InDoubtError:
            if action == "retry":
                history.retries_in_doubt = True  # some failed job may have been requeued
            self.stats.in_doubt += 1  # (an unseen cancel can only end a job: no check needs it)
            return
        if r.status_code != 200:
            self._unexpected(f"POST /v1/jobs/{action}", r)
            return
        acked = time.time()
        for job in r.json()["items"]:
            done = Bulked(job["id"], parse_time(job["updated_at"]), sent, acked)
            if action == "retry":
                history.retry(done)
                self.stats.retried += 1
            else:
                history.cancel(done, job["status"])
                self.stats.cancelled += 1


def _redriven(history: History) -> bool:
    """Whether an acknowledged bulk retry requeued a job of the round, or one got no answer."""
    return bool(history.retries) or history.retries_in_doubt


@dataclass
class _Tries:
    """The tries (first and retries) of one client call."""

    count: int = 0


_CALL: ContextVar[_Tries | None] = ContextVar("stress_call", default=None)
"""The call being made in this context, if a recorded one (``_CountingTransport.call``)."""


class _CountingTransport(httpx.AsyncBaseTransport):
    """Counts the tries of each recorded call that go out (``call``)."""

    def __init__(self, inner: httpx.AsyncBaseTransport | None = None) -> None:
        self.inner = inner or httpx.AsyncHTTPTransport()

    @contextmanager
    def call(self) -> Iterator[_Tries]:
        """Count the tries of the call made inside: its own, not those of the client's
        other calls meanwhile (a Worker's claim beside its reports and heartbeats).

        The client sends each try from the task that made the call, or from a task it
        starts for the retries, which runs in a copy of that context.
        """
        tries = _Tries()
        token = _CALL.set(tries)
        try:
            yield tries
        finally:
            _CALL.reset(token)

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        tries = _CALL.get()
        if tries is not None:
            tries.count += 1
        return await self.inner.handle_async_request(request)

    async def aclose(self) -> None:
        await self.inner.aclose()


class _RecordingClient(AgentClient):
    """An ``AgentClient`` that records the claims and reports the coordinator acknowledged.

    A claim one try of which got no answer (its request retried after a read timeout,
    or given up) may have leased jobs on that try: it stays *in doubt* for the agent
    from its send (``History.claims_in_doubt``); so does every report of a request
    that failed.
    """

    def __init__(
        self,
        work: Workload,
        agent: _Agent,
        transport: _CountingTransport,
        url: str,
        token: str,
        **options: Any,
    ) -> None:
        super().__init__(url, token, transport=transport, **options)
        self.work = work
        self.agent = agent
        self.counting = transport

    async def claim(self, **kw: Any) -> list[Claimed]:
        """Claim, recording the leases won."""
        sent = time.time()
        self.work.doubtful_claims[self.agent.id] += 1
        with self.counting.call() as tries:
            try:
                claimed = await super().claim(**kw)
            except (CoordinatorUnavailable, asyncio.CancelledError):
                if tries.count:
                    self._in_doubt(sent)  # a try went out and no answer came back
                raise
        self._acked(sent, tries, claimed)
        return claimed

    async def report(self, reports: Any, **kw: Any) -> Reported:
        """Report, recording the acknowledged writes and the leases won."""
        sent = time.time()
        claims = kw.get("max_jobs", 0) > 0
        ends = [r for r in reports if r.action != "heartbeat"]
        # The Worker sends an end again in a new call when a call failed (``report_delayed``):
        # that call may have landed, so the end stays in doubt from its first send, and the
        # new call's ``lease_lost`` (its lease gone: maybe by that very end) settles nothing.
        resent: set[tuple[str, int]] = set()
        for r in ends:
            history = self.work.round_of.get(r.job_id)
            if history is not None:
                key = (r.job_id, r.epoch)
                if key in history.doubtful_ends:
                    resent.add(key)
                else:
                    history.doubtful_ends[key] = sent
        if claims:
            self.work.doubtful_claims[self.agent.id] += 1
        with self.counting.call() as tries:
            try:
                answer = await super().report(reports, **kw)
            except (CoordinatorUnavailable, asyncio.CancelledError):
                if claims and tries.count:
                    self._in_doubt(sent)
                raise
        acked = time.time()
        # A retried request may have been applied by a try whose answer was lost: the
        # retry then finds the lease gone and answers ``lease_lost`` for a write that
        # landed. Only a first-try answer settles an item that was not ok.
        first_try = tries.count == 1
        for r, item in zip(reports, answer.items, strict=True):
            history = self.work.round_of.get(r.job_id)
            settled = item.ok or (first_try and (r.job_id, r.epoch) not in resent)
            if r.action != "heartbeat" and history is not None and settled:
                history.doubtful_ends.pop((r.job_id, r.epoch), None)
            if item.ok:
                raw: dict[str, Any] = {"status": item.status}
                if item.lease is not None:
                    raw["lease"] = {"expires_at": item.lease.expires_at.isoformat()}
                self.work.record_write(self.agent, r, raw, sent, acked)
            elif item.code == "lease_lost":
                self.work.stats.lease_lost += 1
            if r.action == "complete" and (item.ok or (item.code == "lease_lost" and settled)):
                self.work.doubtful_tokens.discard(r.result["token"])
        if claims:
            self._acked(sent, tries, answer.leases)
        return answer

    def _acked(self, sent: float, tries: _Tries, claimed: list[Claimed]) -> None:
        acked = time.time()
        if tries.count == 1:
            # Answered on its first try: no lease can have been won unseen.
            self.work.doubtful_claims[self.agent.id] -= 1
        else:
            self._in_doubt(sent)  # an earlier try's answer was lost
        for c in claimed:
            item = {
                "job": c.job.raw,
                "lease": {"epoch": c.lease.epoch, "expires_at": c.lease.expires_at.isoformat()},
            }
            self.work.record_claim(self.agent, item, sent, acked)

    def _in_doubt(self, sent: float) -> None:
        """A claim sent at ``sent`` may have leased jobs on a try whose answer was lost."""
        doubt, agent = self.work.claims_in_doubt, self.agent.id
        doubt[agent] = min(doubt.get(agent, sent), sent)
        self.work.stats.claims_in_doubt += 1
