"""The ``fleet`` subcommands: their arguments and what each one does."""

from __future__ import annotations

import argparse
import os
import stat
import sys
from collections.abc import Awaitable, Callable
from contextlib import nullcontext
from pathlib import Path
from typing import IO, Any

from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from .arguments import add_job_options, count, pair, spec_from_args
from .client import BATCH_LIMIT, FleetClient
from .errors import FleetError
from .exits import EXIT_OK, EXIT_REJECTED, EXIT_USAGE, exit_code_of
from .jobs_file import FileSummary, count_lines, enqueue_file
from .models import Job, JobSpec
from .render import Output

__all__ = ["add_agents", "add_jobs", "add_queues", "add_schedules"]

Groups = Any  # argparse's _SubParsersAction is private


# -- jobs --------------------------------------------------------------------------


def add_jobs(groups: Groups, common: argparse.ArgumentParser) -> None:
    """``fleet jobs enqueue|enqueue-file|list|show|cancel|retry``."""
    jobs = groups.add_parser("jobs", help="enqueue, list, show, cancel and retry jobs")
    sub = jobs.add_subparsers(dest="command", required=True)

    enqueue = sub.add_parser("enqueue", parents=[common], help="enqueue one job")
    enqueue.add_argument("kind")
    add_job_options(enqueue)
    enqueue.add_argument("-q", "--quiet", action="store_true", help="print only the job id")
    enqueue.set_defaults(run=_enqueue)

    from_file = sub.add_parser(
        "enqueue-file", parents=[common], help="enqueue a JSON Lines file, 1,000 jobs a request"
    )
    from_file.add_argument("path", help="one job's fields per line; - for stdin")
    from_file.add_argument(
        "--key-prefix", help="idempotency key <prefix><line> for lines without one (safe re-runs)"
    )
    from_file.add_argument("--batch-size", type=int, default=BATCH_LIMIT, help=argparse.SUPPRESS)
    from_file.set_defaults(run=_enqueue_file)

    listing = sub.add_parser("list", parents=[common], help="list jobs, oldest first")
    listing.add_argument("--queue")
    listing.add_argument(
        "--status", choices=["queued", "leased", "succeeded", "failed", "cancelled"]
    )
    listing.add_argument("--kind")
    listing.add_argument("--lock")
    listing.add_argument("--limit", type=count(0), default=50, help="at most this many (0: all)")
    listing.set_defaults(run=_list)

    show = sub.add_parser("show", parents=[common], help="one job with its runs")
    show.add_argument("job_id")
    show.set_defaults(run=_show)

    for name, verb in (("cancel", "cancel"), ("retry", "requeue")):
        act = sub.add_parser(
            name, parents=[common], help=f"{verb} jobs by id, or in bulk by filter"
        )
        act.add_argument("job_ids", nargs="*", metavar="JOB_ID")
        act.add_argument("--queue", help="bulk: only this queue")
        act.add_argument("--kind", help="bulk: only this kind")
        if name == "cancel":
            act.add_argument("--lock", help="bulk: only jobs with this lock")
        else:
            act.add_argument("--status", choices=["failed", "cancelled"], default="failed")
        act.add_argument(
            "--limit", type=count(1, 1000), default=100, help="bulk: at most this many (1..1000)"
        )
        act.add_argument("--all", action="store_true", help="bulk without a filter")
        act.set_defaults(run=_cancel if name == "cancel" else _retry)


async def _enqueue(client: FleetClient, args: argparse.Namespace, out: Output) -> int:
    job = await client.enqueue_spec(spec_from_args(args, args.kind))
    if args.quiet:
        out.out.file.write(job.id + "\n")
    else:
        out.jobs([job], one=True)
    return EXIT_OK


async def _enqueue_file(client: FleetClient, args: argparse.Namespace, out: Output) -> int:
    stdin = args.path == "-"
    # Opened once, before anything reads it: a pipe, a FIFO or the /dev/fd/N of a
    # process substitution can be read only once (and a FIFO's second open waits
    # for a writer that never comes). As bytes, decoded line by line (jobs_file): a
    # line that is not UTF-8 is reported as invalid, not the end of the run.
    path = Path(args.path)
    try:
        opened = nullcontext(sys.stdin.buffer) if stdin else path.open("rb")  # noqa: ASYNC230
    except OSError as exc:  # no such file, a directory, no permission …
        out.note(f"fleet: error: cannot read {args.path}: {exc.strerror or exc}")
        return EXIT_USAGE
    with opened as source:
        summary = await _send_file(client, args, out, source)
    if args.json:
        out.json(summary.as_json())
    else:
        rate = f" ({summary.enqueued / summary.seconds:,.0f} jobs/s)" if summary.seconds else ""
        out.out.print(
            f"{summary.enqueued:,} of {summary.lines:,} jobs enqueued in "
            f"{summary.seconds:.1f} s{rate}; {summary.invalid:,} invalid lines, "
            f"{summary.rejected:,} refused",
            highlight=False,
        )
        for problem in summary.problems:
            out.note(f"  {problem}")
        if summary.stopped:
            out.note(f"fleet: error: stopped {summary.stopped}")
    if summary.error is not None:
        return exit_code_of(summary.error)
    return EXIT_OK if summary.ok else EXIT_REJECTED


async def _send_file(
    client: FleetClient, args: argparse.Namespace, out: Output, source: IO[bytes]
) -> FileSummary:
    # The bar's total costs a pass over the file: only a regular file can be read twice.
    regular = args.path != "-" and stat.S_ISREG(os.fstat(source.fileno()).st_mode)
    total = count_lines(Path(args.path)) if regular else None
    columns = (
        TextColumn("enqueued"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("lines"),
        TimeElapsedColumn(),
    )
    # The bar goes to stderr and only to a terminal: stdout stays the summary alone.
    with Progress(*columns, console=out.err, disable=not out.err.is_terminal) as bar:
        task = bar.add_task("enqueue", total=total)

        def progress(enqueued: int, lines: int) -> None:
            bar.update(task, completed=lines, description=f"{enqueued:,} enqueued")

        # Blocking reads of a local file: this loop runs this one command and nothing else.
        return await enqueue_file(
            client,
            source,
            key_prefix=args.key_prefix,
            batch_size=max(1, min(args.batch_size, BATCH_LIMIT)),
            progress=progress,
        )


async def _list(client: FleetClient, args: argparse.Namespace, out: Output) -> int:
    found = []
    page_size = min(args.limit, 1000) if args.limit > 0 else 1000
    filters = {"queue": args.queue, "status": args.status, "kind": args.kind, "lock": args.lock}
    async for job in client.list_jobs(page_size=page_size, **filters):
        found.append(job)
        if len(found) == args.limit:
            break
    out.jobs(found)
    return EXIT_OK


async def _show(client: FleetClient, args: argparse.Namespace, out: Output) -> int:
    out.job(await client.get_job(args.job_id))
    return EXIT_OK


def _bulk_filters(args: argparse.Namespace, out: Output, *names: str) -> dict[str, Any] | None:
    filters = {name: getattr(args, name) for name in names if getattr(args, name) is not None}
    if not filters and not args.all:
        out.err.print("fleet: error: give job ids, a filter (--queue, --kind …) or --all")
        return None
    return filters


async def _each_job(ids: list[str], act: Callable[[str], Awaitable[Job]], out: Output) -> int:
    """``act`` on every id, whatever became of the ones before; the worst exit status."""
    done: list[Job] = []
    worst = EXIT_OK
    for job_id in ids:
        try:
            done.append(await act(job_id))
        except FleetError as exc:  # this id's own outcome: the others are still tried
            out.note(f"fleet: error: {job_id}: {exc.message}")
            worst = max(worst, exit_code_of(exc))  # the statuses grow with how bad it is
    if len(ids) == 1:  # one job: its object, or nothing if it failed
        if done:
            out.jobs(done, one=True)
    elif done or out.as_json:
        out.jobs(done)
    return worst


async def _cancel(client: FleetClient, args: argparse.Namespace, out: Output) -> int:
    if args.job_ids:
        return await _each_job(args.job_ids, client.cancel_job, out)
    filters = _bulk_filters(args, out, "queue", "kind", "lock")
    if filters is None:
        return EXIT_USAGE
    out.jobs(await client.cancel_jobs(limit=args.limit, **filters))
    return EXIT_OK


async def _retry(client: FleetClient, args: argparse.Namespace, out: Output) -> int:
    if args.job_ids:
        return await _each_job(args.job_ids, client.retry_job, out)
    filters = _bulk_filters(args, out, "queue", "kind")
    if filters is None:
        return EXIT_USAGE
    out.jobs(await client.retry_jobs(status=args.status, limit=args.limit, **filters))
    return EXIT_OK


# -- queues ------------------------------------------------------------------------


def add_queues(groups: Groups, common: argparse.ArgumentParser) -> None:
    """``fleet queues [pause|resume QUEUE]``."""
    queues = groups.add_parser("queues", parents=[common], help="list, pause and resume queues")
    queues.set_defaults(run=_queues)
    sub = queues.add_subparsers(dest="command")
    for name in ("pause", "resume"):
        act = sub.add_parser(name, parents=[common], help=f"{name} claims from a queue")
        act.add_argument("queue")
        act.set_defaults(run=_pause if name == "pause" else _resume)


async def _queues(client: FleetClient, args: argparse.Namespace, out: Output) -> int:
    out.queues(await client.list_queues())
    return EXIT_OK


async def _pause(client: FleetClient, args: argparse.Namespace, out: Output) -> int:
    out.queues([await client.pause_queue(args.queue)], one=True)
    return EXIT_OK


async def _resume(client: FleetClient, args: argparse.Namespace, out: Output) -> int:
    out.queues([await client.resume_queue(args.queue)], one=True)
    return EXIT_OK


# -- agents ------------------------------------------------------------------------


def add_agents(groups: Groups, common: argparse.ArgumentParser) -> None:
    """``fleet agents [add NAME|drain ID|rm ID]``."""
    agents = groups.add_parser("agents", parents=[common], help="list, add, drain, remove agents")
    agents.set_defaults(run=_agents)
    sub = agents.add_subparsers(dest="command")
    add = sub.add_parser("add", parents=[common], help="register an agent; prints its token once")
    add.add_argument("name")
    add.add_argument("--capacity", type=int, default=1)
    add.add_argument("--label", type=pair, action="append", default=[], metavar="KEY=VALUE")
    add.add_argument("--queue", dest="queues", action="append", default=[])
    add.add_argument("-q", "--quiet", action="store_true", help="print only the agent token")
    add.set_defaults(run=_agent_add)
    for name, run, text in (
        ("drain", _agent_drain, "no new claims for the agent"),
        ("rm", _agent_rm, "revoke the agent's token, release its leases"),
    ):
        act = sub.add_parser(name, parents=[common], help=text)
        act.add_argument("agent_id")
        act.set_defaults(run=run)


async def _agents(client: FleetClient, args: argparse.Namespace, out: Output) -> int:
    out.agents(await client.list_agents())
    return EXIT_OK


async def _agent_add(client: FleetClient, args: argparse.Namespace, out: Output) -> int:
    created = await client.create_agent(
        args.name, labels=dict(args.label), capacity=args.capacity, queues=args.queues
    )
    if args.json:
        out.json({"agent": created.agent.model_dump(mode="json"), "token": created.token})
        return EXIT_OK
    if args.quiet:
        out.out.file.write(created.token + "\n")
        return EXIT_OK
    out.agents([created.agent])
    # The agent's token is the point of this command (shown once by the coordinator).
    out.err.print("agent token (shown once; give it to the agent as FLEET_AGENT_TOKEN):")
    out.out.file.write(created.token + "\n")
    return EXIT_OK


async def _agent_drain(client: FleetClient, args: argparse.Namespace, out: Output) -> int:
    out.agents([await client.drain_agent(args.agent_id)], one=True)
    return EXIT_OK


async def _agent_rm(client: FleetClient, args: argparse.Namespace, out: Output) -> int:
    await client.delete_agent(args.agent_id)
    if args.json:
        out.json({"deleted": args.agent_id})
    return EXIT_OK


# -- schedules ---------------------------------------------------------------------


def add_schedules(groups: Groups, common: argparse.ArgumentParser) -> None:
    """``fleet schedules [set|show|pause|resume|rm]``."""
    schedules = groups.add_parser("schedules", parents=[common], help="periodic jobs")
    schedules.set_defaults(run=_schedules)
    sub = schedules.add_subparsers(dest="command")
    put = sub.add_parser("set", parents=[common], help="create or replace a schedule")
    put.add_argument("name")
    put.add_argument("cron", help='five fields, e.g. "0 3 * * *"')
    put.add_argument("kind", help="the kind of the jobs it enqueues")
    put.add_argument("--timezone", default="UTC", help="IANA name (default UTC)")
    put.add_argument("--paused", action="store_true")
    add_job_options(put, schedule=True)
    put.set_defaults(run=_schedule_set)
    for name, run in (
        ("show", _schedule_show),
        ("pause", _schedule_pause),
        ("resume", _schedule_resume),
        ("rm", _schedule_rm),
    ):
        act = sub.add_parser(name, parents=[common], help=f"{name} a schedule")
        act.add_argument("name")
        act.set_defaults(run=run)


async def _schedules(client: FleetClient, args: argparse.Namespace, out: Output) -> int:
    out.schedules(await client.list_schedules())
    return EXIT_OK


async def _schedule_set(client: FleetClient, args: argparse.Namespace, out: Output) -> int:
    spec: JobSpec = spec_from_args(args, args.kind)
    made = await client.set_schedule(
        args.name, args.cron, spec, timezone=args.timezone, paused=args.paused
    )
    out.schedules([made], one=True)
    return EXIT_OK


async def _schedule_show(client: FleetClient, args: argparse.Namespace, out: Output) -> int:
    out.schedules([await client.get_schedule(args.name)], one=True)
    return EXIT_OK


async def _schedule_pause(client: FleetClient, args: argparse.Namespace, out: Output) -> int:
    out.schedules([await client.pause_schedule(args.name)], one=True)
    return EXIT_OK


async def _schedule_resume(client: FleetClient, args: argparse.Namespace, out: Output) -> int:
    out.schedules([await client.resume_schedule(args.name)], one=True)
    return EXIT_OK


async def _schedule_rm(client: FleetClient, args: argparse.Namespace, out: Output) -> int:
    await client.delete_schedule(args.name)
    if args.json:
        out.json({"deleted": args.name})
    return EXIT_OK
