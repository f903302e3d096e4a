"""The stress workload's own timing: what it asserts of a run must not hang on the pace."""

from __future__ import annotations

from pathlib import Path

from .harness import replica_env, replicas
from .workload import Plan, Workload, _Agent


async def test_a_round_no_operator_tick_redrove_gets_its_failed_jobs_retried_before_its_check(
    tmp_path: Path,
) -> None:
    """Enqueuing stops before any operator tick (a loaded machine: each tick waits for its
    slowest call) and both jobs of the round fail for good: the round is still raced for by
    the operators' pair of bulk retries before it is checked, its jobs run again and the
    history is clean (before: ``retried == 0``, which the replica-history tests assert
    against, in nearly every Cosmos run at load 10)."""
    plan = Plan(agents=1, jobs_per_round=2, locks=0, drain_bound=30.0, actions={"complete": 1.0})
    env = replica_env(plan.lease_seconds, reaper_interval=0.2)
    with replicas("sqlite", tmp_path, count=1, env=env) as (server,):
        async with Workload([server.base_url], server.admin_token, plan) as work:
            work.stop_enqueue()  # the operators never tick: no task runs them here
            queue = await work._enqueue_round()
            created = (
                await work.admin_call("POST", "/v1/agents", {"name": "failer", "capacity": 2})
            ).json()
            failer = _Agent(
                created["agent"]["id"], {"Authorization": f"Bearer {created['token']}"}, 0
            )
            leases = await work._claim(failer, {"max_jobs": 2})
            assert len(leases) == 2
            for item in leases:
                fatal = {"error": "fatal", "retryable": False}
                assert await work._write(
                    failer, item["job"]["id"], item["lease"]["epoch"], "fail", fatal
                )
            work.start_agents()  # one agent, completing whatever it is handed
            await work._finish_round(queue)
    stats = work.stats
    assert stats.violations == [], "\n".join(map(str, stats.violations))
    assert stats.retried == 2, stats.line()
    assert stats.jobs_checked == 2
    assert stats.outcomes["complete"] == 2  # the redriven jobs ran again, and ended
