"""Test-only start-up hook: an OpenTelemetry SDK in a real process, writing spans to a file.

A process started with this directory on ``PYTHONPATH`` and ``TEST_SPANS_FILE``
set gets a tracer provider whose every finished span is appended to that file as
one JSON line, at once (a simple processor: nothing waits in a buffer when the
process is stopped). Production processes configure their own SDK instead.
"""

from __future__ import annotations

import os
from collections.abc import Sequence

_PATH = os.environ.get("TEST_SPANS_FILE")

if _PATH:
    from opentelemetry import trace
    from opentelemetry.sdk.resources import Resource
    from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
    from opentelemetry.sdk.trace.export import SimpleSpanProcessor, SpanExporter, SpanExportResult

    class _JsonLines(SpanExporter):
        def __init__(self, path: str) -> None:
            self.path = path

        def export(self, spans: Sequence[ReadableSpan]) -> SpanExportResult:
            with open(self.path, "a", encoding="utf-8") as out:
                for span in spans:
                    out.write(span.to_json(indent=None) + "\n")
            return SpanExportResult.SUCCESS

    _service = os.environ.get("TEST_SERVICE_NAME", "process")
    _provider = TracerProvider(resource=Resource.create({"service.name": _service}))
    _provider.add_span_processor(SimpleSpanProcessor(_JsonLines(_PATH)))
    trace.set_tracer_provider(_provider)
