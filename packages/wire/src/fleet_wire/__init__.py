"""What ``fleet_agent`` and ``fleet_client`` share, and nothing else.

An agent machine installs ``fleet-agent``, an application ``fleet-client``; both
talk to the same coordinator and read its answers the same way. This package
holds that common ground so neither client copies it nor depends on the other:

* ``answers``: the SPEC error shape of a refused request, and httpx transport
  errors turned into the caller's own "unavailable" exception;
* ``errors``: ``WireError``, the root under both clients' exception trees, and
  the wait before a retry (``Retry-After`` when the coordinator sent one);
* ``tracing``: W3C trace context through OpenTelemetry when it is installed,
  and nothing (one ``None`` check) when it is not;
* ``terminal``: the coordinator's and other people's text shown on a terminal
  with its control characters escaped (``fleet``'s tables, readable log lines).
"""

from .answers import (
    UNAVAILABLE_STATUSES,
    Answer,
    Answered,
    ErrorAnswer,
    all_finite,
    encode,
    error_answer,
    transport_errors,
)
from .errors import WireError, retry_after, retry_wait
from .terminal import escape_controls, visible
from .tracing import (
    TRACING,
    current_traceparent,
    inject_traceparent,
    sdk_configured,
    span_from_traceparent,
)

__all__ = [
    "TRACING",
    "UNAVAILABLE_STATUSES",
    "Answer",
    "Answered",
    "ErrorAnswer",
    "WireError",
    "escape_controls",
    "visible",
    "all_finite",
    "current_traceparent",
    "encode",
    "error_answer",
    "inject_traceparent",
    "retry_after",
    "retry_wait",
    "sdk_configured",
    "span_from_traceparent",
    "transport_errors",
]
