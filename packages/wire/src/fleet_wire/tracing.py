"""W3C trace context through OpenTelemetry, when it is installed (the ``otel`` extra).

The import is tried once, here. Without ``opentelemetry-api`` every helper is a
``None`` check: no span, no header, no context object. With the API but no SDK
configured, spans are OpenTelemetry's non-recording ones (the application
decides where traces go; see docs/client.md, "Tracing").
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, MutableMapping
from contextlib import contextmanager
from typing import Any

try:
    from opentelemetry import trace as _trace
    from opentelemetry.trace import SpanKind, Status, StatusCode
    from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator
except ImportError:  # the otel extra is not installed
    _trace = None  # type: ignore[assignment]

__all__ = [
    "TRACING",
    "SpanHandle",
    "current_traceparent",
    "inject_traceparent",
    "sdk_configured",
    "span_from_traceparent",
]

TRACING = _trace is not None
"""Whether ``opentelemetry-api`` is importable in this process."""

_W3C = TraceContextTextMapPropagator() if TRACING else None


def sdk_configured() -> bool:
    """Whether the process set a real tracer provider (not OpenTelemetry's proxy or no-op)."""
    if _trace is None:
        return False
    provider = _trace.get_tracer_provider()
    return not isinstance(provider, _trace.ProxyTracerProvider | _trace.NoOpTracerProvider)


def inject_traceparent(headers: MutableMapping[str, str]) -> None:
    """Add the current span's ``traceparent`` (and ``tracestate``) to ``headers``, if any."""
    if _W3C is not None:
        _W3C.inject(headers)


def current_traceparent() -> str | None:
    """The current span's W3C ``traceparent``, or None (no OpenTelemetry, or no span)."""
    if _W3C is None:
        return None
    carrier: dict[str, str] = {}
    _W3C.inject(carrier)
    return carrier.get("traceparent")


class SpanHandle:
    """The span a block runs in; its methods do nothing when tracing is off."""

    __slots__ = ("_span",)

    def __init__(self, span: Any = None) -> None:
        self._span = span

    def fail(self, description: str) -> None:
        """Mark the span as an error (the block ended in a failure it did not raise)."""
        if self._span is not None:
            self._span.set_status(Status(StatusCode.ERROR, description))


_OFF = SpanHandle()


@contextmanager
def span_from_traceparent(
    name: str, traceparent: str | None, attributes: Mapping[str, str | int] | None = None
) -> Iterator[SpanHandle]:
    """Run the block in a new consumer span, a child of ``traceparent`` (else of the current)."""
    if _trace is None or _W3C is None:
        yield _OFF
        return
    parent = _W3C.extract({"traceparent": traceparent}) if traceparent else None
    tracer = _trace.get_tracer("fleet")
    with tracer.start_as_current_span(
        name, context=parent, kind=SpanKind.CONSUMER, attributes=dict(attributes or {})
    ) as span:
        yield SpanHandle(span)
