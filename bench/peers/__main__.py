"""``python -m bench.peers``: run the peer benchmark and print (and write) its table."""

from __future__ import annotations

import argparse
import os
import platform
import shutil
import sys
import tempfile
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path

from .celery_redis import Celery
from .context import Bench
from .debian import ensure_packages
from .fleet import Fleet
from .processes import Processes, guard
from .procrastinate_pg import Procrastinate
from .progress import say
from .results import Row, table, trials
from .rq_redis import Rq
from .runner import batch_trial, drain_trial
from .system import System

SYSTEMS: dict[str, Callable[[], System]] = {
    "fleet-c1": lambda: Fleet(concurrency=1),
    "fleet-c10": lambda: Fleet(concurrency=10),
    "celery-instances": lambda: Celery("instances"),
    "celery-one": lambda: Celery("one"),
    "procrastinate": Procrastinate,
    "rq": Rq,
}
NEEDS = {"celery-instances": "redis", "celery-one": "redis", "rq": "redis", "procrastinate": "pg"}
HERE = Path(__file__).resolve().parent


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m bench.peers", description=__doc__)
    parser.add_argument("--jobs", type=int, default=10_000, help="N jobs per trial")
    parser.add_argument("--reps", type=int, default=2, help="repetitions (medians reported)")
    parser.add_argument("--workers", default="2,8", help="worker counts W, comma-separated")
    parser.add_argument(
        "--systems", default=",".join(SYSTEMS), help=f"comma-separated, of: {', '.join(SYSTEMS)}"
    )
    parser.add_argument("--out", type=Path, help="markdown file (default bench/peers/results-*.md)")
    parser.add_argument("--venvs", type=Path, help="keep the peers' venvs here between runs")
    parser.add_argument("--keep", action="store_true", help="keep the temp dir (logs, id files)")
    return parser


def main(argv: list[str] | None = None) -> int:
    """Run every selected system through the protocol; print and write the table."""
    args = _parser().parse_args(argv)
    keys = [k.strip() for k in args.systems.split(",") if k.strip()]
    unknown = [k for k in keys if k not in SYSTEMS]
    if unknown:
        raise SystemExit(f"peers: unknown systems {unknown}; choose from {list(SYSTEMS)}")
    workers = [int(w) for w in args.workers.split(",")]
    needs = {NEEDS.get(k) for k in keys}
    ensure_packages(redis="redis" in needs, postgres="pg" in needs)

    processes = Processes()
    guard(processes)
    workdir = Path(tempfile.mkdtemp(prefix="fleet-peers-"))
    venv_root = args.venvs or workdir / "venvs"
    bench = Bench(workdir=workdir, venv_root=venv_root, processes=processes)
    systems: list[System] = [SYSTEMS[k]() for k in keys]
    rows = [Row(s.label, s.peer) for s in systems]
    ok = False
    say(f"peers: N={args.jobs:,}, reps={args.reps}, W={workers}; temp dir {workdir}")
    try:
        versions: dict[str, str] = {}
        for system in systems:
            say(f"preparing {system.label}")
            system.prepare(bench)
            versions.update(system.versions())
        for rep in range(1, args.reps + 1):
            for key, system, row in zip(keys, systems, rows, strict=True):
                _rep(bench, key, system, row, rep, args, workers)
        ok = True
    except KeyboardInterrupt:
        say("interrupted: stopping everything started")
        return 130
    finally:
        processes.stop_all()
        if ok and not args.keep:
            shutil.rmtree(workdir, ignore_errors=True)
        else:
            _prune(workdir)
            say(f"logs and id files kept in {workdir}")
    text = _document(rows, workers, versions, args)
    print(text)
    out = args.out or HERE / f"results-{datetime.now(UTC):%Y-%m-%d-%H%M}.md"
    out.write_text(text)
    say(f"table written to {out}")
    return 0


def _prune(workdir: Path) -> None:
    """Keep the logs and id files of a failed run; drop the data dirs and venvs."""
    for name in ("venvs", "pgdata", "pgsock", "redis"):
        shutil.rmtree(workdir / name, ignore_errors=True)
    for database in workdir.glob("*/fleet.db*"):
        database.unlink(missing_ok=True)


def _rep(
    bench: Bench,
    key: str,
    system: System,
    row: Row,
    rep: int,
    args: argparse.Namespace,
    workers: list[int],
) -> None:
    tag = f"[rep {rep}/{args.reps}] {system.label}"
    if system.has_batch:
        jps = batch_trial(bench, system, args.jobs, f"{key}-batch-{rep}")
        row.batches.append(jps)
        say(f"{tag}: batch enqueue {jps:,.0f} jobs/s")
    for count in workers:
        say(f"{tag}, W={count}")
        trial = drain_trial(bench, system, args.jobs, count, f"{key}-w{count}-{rep}")
        row.add(count, trial)
        drain = "did not finish" if trial.drain_jps is None else f"{trial.drain_jps:,.0f} jobs/s"
        say(
            f"  drain {drain}; machine busy {trial.busy:.0%}; server CPU "
            f"{trial.server_ms_per_job:.2f} ms/job; workers {trial.worker_ms_per_job:.2f} ms/job;"
            f" duplicates {trial.ids.duplicates}, missing {trial.ids.missing},"
            f" failed {trial.failed}"
        )


def _document(
    rows: list[Row], workers: list[int], versions: dict[str, str], args: argparse.Namespace
) -> str:
    stamp = f"{datetime.now(UTC):%Y-%m-%d %H:%M} UTC"
    listed = ", ".join(f"{k} {v}" for k, v in sorted(versions.items()))
    return (
        f"Peer benchmark, {stamp}: N = {args.jobs:,} jobs, median of {args.reps} reps, "
        f"W = {', '.join(map(str, workers))}; {platform.python_implementation()} "
        f"{platform.python_version()}, {_cores()} cores.\n\nVersions: {listed}.\n\n"
        + table(rows, workers)
        + "\nEvery trial:\n\n"
        + trials(rows)
    )


def _cores() -> int:
    return os.cpu_count() or 0


if __name__ == "__main__":
    sys.exit(main())
