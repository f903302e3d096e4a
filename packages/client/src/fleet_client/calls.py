"""What each admin call sends and how its answer is read, for both clients.

``FleetClient`` (async, httpx) and ``SyncFleetClient`` (blocking, ``http.client``) differ
only in how a request travels; everything else about a call — its method and
path, its body, whether it may be retried, how its answer becomes a model — is
one ``Call`` built here, so the two clients cannot drift apart.

A call is ``safe`` when sending it twice does no harm, and only safe calls are
retried on ``CoordinatorUnavailable``: reads, pause/resume, drain, deletes,
``PUT`` of a schedule, and enqueues whose every job carries an idempotency key.
Anything else (an enqueue without a key, cancel, retry, registering an agent) is
sent once: a lost answer could hide a write that landed.
"""

from __future__ import annotations

import gc
import json
import re
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Generic, Protocol, TypeVar
from urllib.parse import quote, urlsplit, urlunsplit

from fleet_wire import TRACING, Answered, encode, inject_traceparent, retry_wait
from pydantic import BaseModel, ConfigDict, TypeAdapter

from .errors import CoordinatorUnavailable, FleetError
from .models import Agent, AgentCreated, Job, JobDetail, JobPage, JobSpec, QueueStats, Schedule

__all__ = [
    "BATCH_LIMIT",
    "RETRY",
    "Call",
    "auth_headers",
    "backoff",
    "body_bytes",
    "checked_url",
    "read_answer",
    "shown_url",
]

T = TypeVar("T")

BATCH_LIMIT = 1000
"""Most jobs one ``POST /v1/jobs/batch`` takes."""

RETRY: dict[str, Any] = {"attempts": None, "wait_initial": 0.05, "wait_jitter": 0.1}
"""stamina's settings for a safe call, beside each client's ``retry_timeout`` and wait cap."""


def backoff(exc: Exception, wait_max: float | None = None) -> bool | float:
    """Retry ``CoordinatorUnavailable``: after its ``Retry-After`` (at most ``wait_max``)."""
    return retry_wait(exc, CoordinatorUnavailable, wait_max)


@dataclass(frozen=True, slots=True)
class Call(Generic[T]):
    """One request of the admin API and how to read its answer."""

    method: str
    path: str
    read: Callable[[Any], T]
    """The answer's decoded JSON to the value the call returns."""
    body: Mapping[str, Any] | None = None
    params: Mapping[str, str | int] | None = None
    safe: bool = True
    gone_is_done: bool = False
    """A delete: ``NotFound`` means what was asked is done; the answer has no body."""
    trace: Mapping[str, str] | None = None
    """The caller's trace context as headers, taken when an enqueue was built (its jobs
    carry the same ``traceparent``); None: the client takes it when it sends."""
    read_body: Callable[[bytes], T] | None = None
    """The answer's body (bytes) straight to the value ``read`` gives, cheaper; any
    ``ValueError`` sends the answer to ``read`` instead, which then says what is wrong."""


_HEADER_TEXT = re.compile(r"[\x21-\x7e](?:[\x20-\x7e]*[\x21-\x7e])?")
"""Visible ASCII, inner spaces allowed: what every HTTP library sends as a header value."""


def shown_url(url: str) -> str:
    """``url`` as messages show it: credentials in it (``http://user:pw@host``) are ``***``."""
    try:
        parts = urlsplit(url)
    except ValueError:  # an unbalanced "[": show what cannot hold credentials anyway
        return url if "@" not in url else "(a URL that cannot be read)"
    if "@" not in parts.netloc:
        return url
    return urlunsplit(parts._replace(netloc="***@" + parts.netloc.rpartition("@")[2]))


def checked_url(url: str) -> str:
    """``url`` without a trailing ``/``, if it is ``http(s)://host[:port][/prefix]``.

    Checked when a client is made: a mistyped URL (``notaurl``, ``ftp://x``, a port
    that is not a number) is a mistake to say at once, not a coordinator to retry
    for ``retry_timeout`` and call unreachable.
    """
    try:
        parts = urlsplit(url)
        _ = parts.port  # raises ValueError for a port that is not a number
    except ValueError:
        raise FleetError(f"not an http(s) URL: {shown_url(url)}") from None
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise FleetError(f"not an http(s) URL: {shown_url(url)}")
    return url.rstrip("/")


def auth_headers(token: str) -> dict[str, str]:
    """The ``Authorization`` header of ``token``; ``FleetError`` if no header can carry it.

    Checked when a client is made, so a bad token fails at once and in the same way
    in both clients, not as a transport error on the first request, whose message
    (the HTTP library's) would hold the header's value: the token. Whitespace
    around it (a carriage return from a file written on Windows, a newline from
    ``$(cat …)``) is dropped. No message here ever holds the token, not even in part.
    """
    stripped = token.strip()
    if not stripped:
        raise FleetError("the admin token is empty")
    if not _HEADER_TEXT.fullmatch(stripped):
        raise FleetError(
            "the admin token holds a character an HTTP header cannot carry "
            "(only visible ASCII and inner spaces); it is not shown"
        )
    return {"Authorization": f"Bearer {stripped}"}


def _segment(value: str) -> str:
    """``value`` as one path segment: an id or a name must not change the route.

    ``/`` and everything else reserved is percent-encoded; ``.`` and ``..`` are too,
    which ``quote`` leaves alone and a URL library then resolves as dot segments
    (``/v1/jobs/..`` is ``/v1``). An empty one would name the collection instead.
    """
    if not value:
        raise FleetError("an id or a name cannot be empty")
    if value in (".", ".."):
        return value.replace(".", "%2E")
    return quote(_unicode(value), safe="")


def _unicode(text: str) -> str:
    """``text``, if UTF-8 can hold it; ``FleetError`` for a lone surrogate."""
    try:
        text.encode()
    except UnicodeEncodeError:
        raise FleetError(f"not valid Unicode (a lone surrogate): {text!r}") from None
    return text


def body_bytes(call: Call[Any]) -> bytes | None:
    """The call's body as JSON bytes (``fleet_wire.encode``); ``FleetError`` if it has none."""
    if call.body is None:
        return None
    try:
        return encode(call.body)
    except ValueError as exc:  # NaN or ±∞, a lone surrogate (UnicodeEncodeError)
        why = "a lone surrogate" if isinstance(exc, UnicodeEncodeError) else str(exc)
        raise FleetError(f"the request has no JSON form: {why}") from None


class Bodied(Answered, Protocol):
    """An answer with its body's bytes: ``httpx.Response`` or ``fleet_wire.Answer``."""

    @property
    def content(self) -> bytes: ...


def read_answer(call: Call[T], answer: Bodied) -> T:
    """The value ``call`` returns, read off a 2xx answer; ``FleetError`` if it is not one of
    the coordinator's answers (not JSON, or not the shape the call expects: ``--url``
    names another server)."""
    if call.gone_is_done:
        return call.read(None)
    if call.read_body is not None:
        try:
            return call.read_body(answer.content)
        except ValueError:  # not JSON, not the shape, or read otherwise than orjson reads it
            pass  # ``read`` below reads it as ever: the same value, or the same error
    try:
        return call.read(answer.json())
    except (ValueError, KeyError, TypeError) as exc:  # JSONDecodeError, ValidationError …
        not_json = isinstance(exc, json.JSONDecodeError | UnicodeDecodeError)
        kind = "not JSON" if not_json else "not the answer expected"
        raise FleetError(
            f"{answer.status_code} {call.method} {call.path}: the answer is {kind}; "
            "is the URL the coordinator's?",
            status=answer.status_code,
            code="unexpected_answer",
        ) from None


def trace_headers() -> dict[str, str] | None:
    """The caller's trace context as headers (``traceparent``, ``tracestate``), taken once
    for a call: its jobs and its request carry the same; None without OpenTelemetry."""
    if not TRACING:
        return None
    headers: dict[str, str] = {}
    inject_traceparent(headers)
    return headers


def _with_trace(spec: JobSpec, traceparent: str | None) -> JobSpec:
    """``spec`` carrying ``traceparent``, the caller's, unless it carries its own."""
    if spec.traceparent is not None or traceparent is None:
        return spec
    return spec.model_copy(update={"traceparent": traceparent})


_BARE: dict[str, JobSpec] = {}
"""``enqueue(kind)``'s spec by kind, validated once: a frozen model of a ``str`` alone."""

_BARE_MAX = 256


def job_spec(kind: str, payload: Any, options: Mapping[str, Any]) -> JobSpec:
    """The ``JobSpec`` of ``enqueue(kind, payload, **options)``, validated by pydantic.

    The payload goes to the model as given (``None`` is ``{}``): a list or a string
    is then pydantic's ``ValidationError``, not ``dict()``'s ``TypeError``. A kind
    alone (the commonest enqueue) is validated once, its spec kept (~7 µs a call).
    """
    bare = payload is None and not options and type(kind) is str
    if bare and (spec := _BARE.get(kind)) is not None:
        return spec
    spec = JobSpec.model_validate(
        {"kind": kind, "payload": {} if payload is None else payload, **options}
    )
    if bare:
        if len(_BARE) >= _BARE_MAX:
            _BARE.clear()
        _BARE[kind] = spec
    return spec


def spec_of(job: JobSpec | Mapping[str, Any]) -> JobSpec:
    """A ``JobSpec`` from itself or its JSON fields (validated)."""
    return job if isinstance(job, JobSpec) else JobSpec.model_validate(job)


def _present(**fields: Any) -> dict[str, Any]:
    # Filters go into a query string or a body: a lone surrogate fails here, named.
    return {k: _unicode(v) if isinstance(v, str) else v for k, v in fields.items() if v is not None}


def _items(adapter: TypeAdapter[list[T]]) -> Callable[[Any], list[T]]:
    # One validation of the whole list: a batch answer holds up to 1,000 jobs.
    return lambda data: adapter.validate_python(data["items"])


_SPECS = TypeAdapter(list[JobSpec])
_JOBS = TypeAdapter(list[Job])

# Reading an answer straight from its bytes (pydantic's own JSON parser) instead of
# ``orjson.loads`` and then validating the Python objects: the 1,000 jobs of a batch
# answer cost ~20 % fewer instructions, most of it the ~3,000 dicts orjson built
# (and the garbage collector then walked) only to be read once. The two parsers read
# every JSON the coordinator writes alike; they differ only on what it never writes
# (it refuses such bodies on the way in): NaN and the infinities, a number past a
# float's range (1e400), which pydantic reads where orjson refuses them, and an integer
# past 64 bits, which orjson reads as a float. An answer holding one of those is read
# the old way (``read``), found by ``_read_alike``; so is any answer pydantic refuses,
# so that the error is the old one.

_I64_MIN, _U64_MAX = -(2**63), 2**64 - 1
"""The integers orjson reads as integers; past these it reads a float."""


class _JobItems(BaseModel):
    """``{"items": [job, ...]}``, the answer of the calls that return jobs."""

    model_config = ConfigDict(frozen=True, extra="ignore")
    items: list[Job]


def _plain(value: Any) -> bool:
    """Whether ``value`` (an ``Any`` field's JSON) holds no float that is not finite and no
    integer past 64 bits: then orjson would have read it as pydantic did."""
    stack = [value]
    while stack:
        node = stack.pop()
        kind = type(node)
        if kind is dict:
            stack.extend(node.values())
        elif kind is list:
            stack.extend(node)
        elif kind is float:
            if node - node != 0.0:  # NaN or ±∞
                return False
        elif kind is int and not _I64_MIN <= node <= _U64_MAX:
            return False
    return True


def _read_alike(jobs: list[Job]) -> list[Job]:
    """``jobs``, if orjson would have read their JSON as pydantic did; else ``ValueError``."""
    if all(
        (not job.payload or _plain(job.payload))
        and (job.result is None or _plain(job.result))
        and _I64_MIN <= job.priority <= _U64_MAX
        and _I64_MIN <= job.attempts <= _U64_MAX
        and _I64_MIN <= job.max_attempts <= _U64_MAX
        and (job.lease is None or _I64_MIN <= job.lease.epoch <= _U64_MAX)
        for job in jobs
    ):
        return jobs
    raise ValueError("read otherwise than orjson reads it")


def _job_body(body: bytes) -> Job:
    return _read_alike([Job.model_validate_json(body)])[0]


def _jobs_body(body: bytes) -> list[Job]:
    # The collector paused while up to 1,000 jobs are built (~5,000 tracked objects,
    # none in a cycle): its young and full collections were ~30 % of the parse here.
    # The parse holds the GIL throughout, so no other thread runs while it is off; it is
    # turned back on only if it was on.
    paused = gc.isenabled()
    if paused:
        gc.disable()
    try:
        items = _JobItems.model_validate_json(body).items
    finally:
        if paused:
            gc.enable()
    return _read_alike(items)


_QUEUES = TypeAdapter(list[QueueStats])
_AGENTS = TypeAdapter(list[Agent])
_SCHEDULES = TypeAdapter(list[Schedule])


def _none(_: Any) -> None:
    return None


# -- jobs -------------------------------------------------------------------------


_BODIES: dict[int, tuple[JobSpec, dict[str, Any]]] = {}
"""The body of each spec in ``_BARE``, by the spec's ``id`` (checked: the spec is kept)."""


def _body(spec: JobSpec) -> dict[str, Any]:
    """``spec.body()``; dumped once for a spec of ``_BARE``."""
    kept = _BODIES.get(id(spec))
    if kept is not None and kept[0] is spec:
        return kept[1]
    body = spec.body()
    if _BARE.get(spec.kind) is spec:
        if len(_BODIES) >= _BARE_MAX:
            _BODIES.clear()
        _BODIES[id(spec)] = (spec, body)
    return body


def enqueue(job: JobSpec | Mapping[str, Any]) -> Call[Job]:
    """``POST /v1/jobs``; the caller's trace context goes with the job."""
    trace = trace_headers()
    spec = _with_trace(spec_of(job), trace.get("traceparent") if trace else None)
    safe = spec.idempotency_key is not None
    return Call(
        "POST",
        "/v1/jobs",
        Job.model_validate,
        _body(spec),
        safe=safe,
        trace=trace,
        read_body=_job_body,
    )


def enqueue_batch(jobs: Sequence[JobSpec | Mapping[str, Any]]) -> Call[list[Job]]:
    """``POST /v1/jobs/batch``: 1..1000 jobs, all or nothing."""
    # Each distinct object is validated and dumped once: ``[{"kind": "k"}] * 1000``
    # is one spec, not a thousand (~4.5 µs a job here). One validation and one dump
    # for the whole list: ~2x cheaper than per spec.
    given = list(jobs)
    distinct = list({id(job): job for job in given}.values())
    try:
        specs: list[JobSpec] | None = _SPECS.validate_python(distinct)
    except ValueError:
        if len(distinct) == len(given):
            raise
        specs = None
    if specs is None:  # raised as the whole list raises it: at every index it holds
        distinct = given
        specs = _SPECS.validate_python(given)
    trace = trace_headers()  # one caller, one context
    traceparent = trace.get("traceparent") if trace else None
    if traceparent is not None:
        specs = [_with_trace(spec, traceparent) for spec in specs]
    safe = all(spec.idempotency_key is not None for spec in specs)
    dumped = _SPECS.dump_python(specs, mode="json", exclude_none=True)
    if len(distinct) < len(given):
        body_of = {id(job): body for job, body in zip(distinct, dumped, strict=True)}
        dumped = [body_of[id(job)] for job in given]
    body = {"jobs": dumped}
    return Call(
        "POST", "/v1/jobs/batch", _items(_JOBS), body, safe=safe, trace=trace, read_body=_jobs_body
    )


def batches(
    jobs: Iterable[JobSpec | Mapping[str, Any]],
) -> Iterator[list[JobSpec | Mapping[str, Any]]]:
    """``jobs`` in lists of at most ``BATCH_LIMIT``, for ``enqueue_many``."""
    chunk: list[JobSpec | Mapping[str, Any]] = []
    for job in jobs:
        chunk.append(job)
        if len(chunk) == BATCH_LIMIT:
            yield chunk
            chunk = []
    if chunk:
        yield chunk


def get_job(job_id: str) -> Call[JobDetail]:
    """``GET /v1/jobs/{id}``."""
    return Call("GET", f"/v1/jobs/{_segment(job_id)}", JobDetail.model_validate)


def list_jobs_page(
    *,
    queue: str | None = None,
    status: str | None = None,
    kind: str | None = None,
    lock: str | None = None,
    limit: int | None = None,
    cursor: str | None = None,
    page_size: int | None = None,
) -> Call[JobPage]:
    """``GET /v1/jobs`` with its filters; ``page_size`` (as ``list_jobs`` names it) or ``limit``."""
    if limit is not None and page_size is not None and limit != page_size:
        raise ValueError("give page_size or limit (the same thing), not both")
    params = _present(queue=queue, status=status, kind=kind, lock=lock, cursor=cursor)
    params["limit"] = page_size if page_size is not None else limit if limit is not None else 100
    return Call("GET", "/v1/jobs", JobPage.model_validate, params=params)


def cancel_job(job_id: str) -> Call[Job]:
    """``POST /v1/jobs/{id}/cancel``."""
    path = f"/v1/jobs/{_segment(job_id)}/cancel"
    return Call("POST", path, Job.model_validate, safe=False, read_body=_job_body)


def retry_job(job_id: str) -> Call[Job]:
    """``POST /v1/jobs/{id}/retry``."""
    path = f"/v1/jobs/{_segment(job_id)}/retry"
    return Call("POST", path, Job.model_validate, safe=False, read_body=_job_body)


def cancel_jobs(
    *, queue: str | None = None, kind: str | None = None, lock: str | None = None, limit: int = 100
) -> Call[list[Job]]:
    """``POST /v1/jobs/cancel``."""
    body = _present(queue=queue, kind=kind, lock=lock, limit=limit)
    return Call("POST", "/v1/jobs/cancel", _items(_JOBS), body, safe=False, read_body=_jobs_body)


def retry_jobs(
    *,
    status: str = "failed",
    queue: str | None = None,
    kind: str | None = None,
    limit: int = 100,
) -> Call[list[Job]]:
    """``POST /v1/jobs/retry``."""
    body = _present(status=status, queue=queue, kind=kind, limit=limit)
    return Call("POST", "/v1/jobs/retry", _items(_JOBS), body, safe=False, read_body=_jobs_body)


# -- queues -----------------------------------------------------------------------


def list_queues() -> Call[list[QueueStats]]:
    """``GET /v1/queues``."""
    return Call("GET", "/v1/queues", _items(_QUEUES))


def pause_queue(queue: str) -> Call[QueueStats]:
    """``POST /v1/queues/{queue}/pause``."""
    return Call("POST", f"/v1/queues/{_segment(queue)}/pause", QueueStats.model_validate)


def resume_queue(queue: str) -> Call[QueueStats]:
    """``POST /v1/queues/{queue}/resume``."""
    return Call("POST", f"/v1/queues/{_segment(queue)}/resume", QueueStats.model_validate)


# -- agents -----------------------------------------------------------------------


def create_agent(
    name: str,
    *,
    labels: Mapping[str, str] | None = None,
    capacity: int = 1,
    queues: Sequence[str] | None = None,
) -> Call[AgentCreated]:
    """``POST /v1/agents``; never retried (a second send registers a second agent)."""
    body: dict[str, Any] = {"name": name, "labels": dict(labels or {}), "capacity": capacity}
    if queues:
        body["queues"] = list(queues)
    return Call("POST", "/v1/agents", AgentCreated.model_validate, body, safe=False)


def list_agents() -> Call[list[Agent]]:
    """``GET /v1/agents``."""
    return Call("GET", "/v1/agents", _items(_AGENTS))


def get_agent(agent_id: str) -> Call[Agent]:
    """``GET /v1/agents/{id}``."""
    return Call("GET", f"/v1/agents/{_segment(agent_id)}", Agent.model_validate)


def drain_agent(agent_id: str) -> Call[Agent]:
    """``POST /v1/agents/{id}/drain``."""
    return Call("POST", f"/v1/agents/{_segment(agent_id)}/drain", Agent.model_validate)


def delete_agent(agent_id: str) -> Call[None]:
    """``DELETE /v1/agents/{id}``; already gone is done."""
    return Call("DELETE", f"/v1/agents/{_segment(agent_id)}", _none, gone_is_done=True)


# -- schedules --------------------------------------------------------------------


def set_schedule(
    name: str,
    cron: str,
    job: JobSpec | Mapping[str, Any],
    *,
    timezone: str = "UTC",
    paused: bool = False,
) -> Call[Schedule]:
    """``PUT /v1/schedules/{name}`` (a replace: safe to repeat)."""
    body = {"cron": cron, "timezone": timezone, "job": spec_of(job).body(), "paused": paused}
    return Call("PUT", f"/v1/schedules/{_segment(name)}", Schedule.model_validate, body)


def list_schedules() -> Call[list[Schedule]]:
    """``GET /v1/schedules``."""
    return Call("GET", "/v1/schedules", _items(_SCHEDULES))


def get_schedule(name: str) -> Call[Schedule]:
    """``GET /v1/schedules/{name}``."""
    return Call("GET", f"/v1/schedules/{_segment(name)}", Schedule.model_validate)


def pause_schedule(name: str) -> Call[Schedule]:
    """``POST /v1/schedules/{name}/pause``."""
    return Call("POST", f"/v1/schedules/{_segment(name)}/pause", Schedule.model_validate)


def resume_schedule(name: str) -> Call[Schedule]:
    """``POST /v1/schedules/{name}/resume``."""
    return Call("POST", f"/v1/schedules/{_segment(name)}/resume", Schedule.model_validate)


def delete_schedule(name: str) -> Call[None]:
    """``DELETE /v1/schedules/{name}``; already gone is done."""
    return Call("DELETE", f"/v1/schedules/{_segment(name)}", _none, gone_is_done=True)
