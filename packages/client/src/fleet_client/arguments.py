"""``fleet``'s argument types and the job options several commands share."""

from __future__ import annotations

import argparse
import json
import re
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

from fleet_wire import encode

from .models import JobSpec

__all__ = ["add_job_options", "count", "json_object", "pair", "spec_from_args", "when"]

_RELATIVE = re.compile(r"\+(\d+(?:\.\d+)?)([smhd])")
_UNITS = {"s": "seconds", "m": "minutes", "h": "hours", "d": "days"}


def when(text: str) -> datetime:
    """``+30s`` / ``+5m`` / ``+2h`` / ``+1d`` from now, or an ISO-8601 time with its zone."""
    relative = _RELATIVE.fullmatch(text)
    if relative:
        delta = timedelta(**{_UNITS[relative.group(2)]: float(relative.group(1))})
        return datetime.now(UTC) + delta
    try:
        value = datetime.fromisoformat(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(f"not a time: {text!r}") from exc
    if value.tzinfo is None:
        raise argparse.ArgumentTypeError(f"give the time zone (e.g. {text}Z or {text}+02:00)")
    return value


def json_object(text: str) -> dict[str, Any]:
    """A JSON object given on the command line (NaN, ±Infinity and lone surrogates refused)."""
    try:
        value = json.loads(text, parse_constant=_no_constant)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(f"not JSON: {exc}") from exc
    if not isinstance(value, dict):
        raise argparse.ArgumentTypeError("must be a JSON object")
    try:
        encode(value)  # what will be sent: a "\ud800" escape decodes to a lone surrogate
    except ValueError:
        raise argparse.ArgumentTypeError("a string is not Unicode (a lone surrogate)") from None
    return value


def _no_constant(name: str) -> Any:
    # Python's json reads NaN and ±Infinity, which JSON does not have (and pydantic
    # would send as null).
    raise ValueError(f"{name} is not JSON")


def pair(text: str) -> tuple[str, str]:
    """``key=value``."""
    key, sep, value = text.partition("=")
    if not sep or not key:
        raise argparse.ArgumentTypeError(f"expected key=value, got {text!r}")
    return key, value


def count(low: int, high: int | None = None) -> Callable[[str], int]:
    """An argument type: an integer from ``low`` to ``high`` (no upper bound: None)."""

    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"not an integer: {text!r}") from None
        if value < low or (high is not None and value > high):
            bound = f"{low}..{high}" if high is not None else f"{low} or more"
            raise argparse.ArgumentTypeError(f"must be {bound}, not {value}")
        return value

    return parse


def add_job_options(command: argparse.ArgumentParser, *, schedule: bool = False) -> None:
    """The job fields as options: ``--payload``, ``--queue``, ``--priority`` …

    A schedule's job template (``schedule``) takes neither ``--run-after`` nor ``--key``:
    the coordinator sets both for each occurrence (SPEC 11) and refuses them (422).
    """
    command.add_argument("--payload", type=json_object, help="the payload, a JSON object")
    command.add_argument("--queue", help="queue (default: default)")
    command.add_argument("--priority", type=int, help="higher runs first")
    command.add_argument("--max-attempts", type=int)
    command.add_argument("--lease-seconds", type=float)
    command.add_argument("--timeout-seconds", type=float, help="longest run of one attempt")
    if not schedule:
        command.add_argument(
            "--run-after", type=when, help="ISO-8601 with zone, or +30s/+5m/+2h/+1d"
        )
        command.add_argument("--key", help="idempotency key: a repeat returns the same job")
    command.add_argument("--require", type=pair, action="append", default=[], metavar="LABEL=VALUE")
    command.add_argument("--lock", help="jobs sharing a lock never run at the same time")


def spec_from_args(args: argparse.Namespace, kind: str) -> JobSpec:
    """The job that ``--payload``, ``--queue``, ``--priority`` … describe."""
    fields: dict[str, Any] = {
        "kind": kind,
        "payload": args.payload or {},
        "queue": args.queue,
        "priority": args.priority,
        "max_attempts": args.max_attempts,
        "lease_seconds": args.lease_seconds,
        "timeout_seconds": args.timeout_seconds,
        "run_after": getattr(args, "run_after", None),
        "requires": dict(args.require) or None,
        "idempotency_key": getattr(args, "key", None),
        "lock": args.lock,
    }
    return JobSpec.model_validate(fields)
