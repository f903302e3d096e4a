"""The HTTP/1.1 protocol ``serve`` runs: uvicorn's httptools protocol with header limits.

uvicorn closes idle keep-alive connections (``timeout_keep_alive``) but gives a
request's headers all the time they take and all the room they ask for: a client
that opens connections and sends a header byte now and then holds each of them
forever, and one that sends endless headers grows the server's memory. This
protocol closes a connection whose request headers are not complete within
``FLEET_HEADER_TIMEOUT_SECONDS`` of its first byte (or of the connection, when
nothing comes at all), and answers 431 to headers larger than ``MAX_HEADER_BYTES``
(whether they end within one read or never), and 400 in the API's error shape to
bytes httptools cannot read as HTTP/1.1.
Bodies are the guard's (``api/middleware.py``): bounded per route and in time.
This protocol only tells it, with ``BODY_COMPLETE`` in the scope, that a body was
parsed whole before the app ran, so that its read needs no deadline.

A ``POST`` to the coordinator's app is first offered to its direct answers
(``api/direct.py``): a plain hot request is answered from here, its answer
written as uvicorn's ``send`` writes one, without the ASGI cycle and the layers
above the endpoint. Anything else, and every request to another app, runs the
ASGI app as uvicorn runs it.

A refusal or a header deadline that comes while a request before it (pipelined) is
still being answered waits for that answer: the answer goes first, then the refusal,
then the close. The end of what a client sends (``shutdown(SHUT_WR)``) closes the
connection, as in uvicorn; what was answered by then is sent first.

An answer of the app that closes the connection while the client may still be
sending its body (the guard's refusals before or while it reads one: 401, 403, 408,
413, 415, 400) is followed by a *lingering close*, as nginx does: the answer is sent
with the end of what the server sends (``write_eof``), and what still comes is read
and dropped until the client closes, for at most ``LINGER_SECONDS`` and
``LINGER_BYTES``. Closed at once, the socket would hold unread bytes, and the kernel
answers a close with unread bytes, or any later byte, with a reset, which drops the
answer from the client's receive buffer unread: httpx and ``http.client`` saw
"connection reset" instead of the 413, and retried. This protocol's own refusals
(431, 400 for bytes that are not HTTP) still close at once: what follows them is not
a request's body to finish.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Iterable
from functools import partial
from typing import Any, cast

from uvicorn.protocols.http.httptools_impl import (
    STATUS_LINE,
    HttpToolsProtocol,
    RequestResponseCycle,
)

from .api.hot import HotAnswer
from .api.middleware import BODY_COMPLETE

__all__ = [
    "LINGER_BYTES",
    "LINGER_SECONDS",
    "MAX_HEADER_BYTES",
    "Deadline",
    "GuardedHttpToolsProtocol",
    "OneWriteTransport",
    "direct_answers",
]

MAX_HEADER_BYTES = 64 * 1024
"""The request line and headers of one request, together."""

_REFUSAL = (
    b"HTTP/1.1 %s\r\n"
    b"content-type: application/json\r\ncontent-length: %d\r\nconnection: close\r\n\r\n%s"
)
_TOO_LARGE_BODY = (
    b'{"error":{"code":"headers_too_large","message":"the request headers are too large",'
    b'"details":{"limit":%d}}}' % MAX_HEADER_BYTES
)
_TOO_LARGE = _REFUSAL % (
    b"431 Request Header Fields Too Large",
    len(_TOO_LARGE_BODY),
    _TOO_LARGE_BODY,
)
_NOT_HTTP_BODY = (
    b'{"error":{"code":"bad_request","message":"the request is not valid HTTP/1.1","details":{}}}'
)
_NOT_HTTP = _REFUSAL % (b"400 Bad Request", len(_NOT_HTTP_BODY), _NOT_HTTP_BODY)
_HEADER_LINE = 4
"""Bytes a header line adds to its name and value: ``": "`` and ``"\\r\\n"``."""
MAX_QUEUED = 32
"""Requests parsed ahead of the one being answered on a connection, at most.

httptools parses a whole read at once (up to 256 KiB with uvloop), and uvicorn makes
each request it finds a request cycle (~1 KiB): a read of pipelined ``GET /healthz``
held ~8,800 of them, ~9 MiB a connection. Past this many, the rest of a read waits
unparsed (its bytes only) until answers make room. The check falls between slices
(``PARSE_SLICE``), so up to one slice's requests more may queue.
"""
LINGER_SECONDS = 3.0
"""How long, at most, a connection refused mid-request is drained before it is cut.

Long enough for a client on a slow link to finish sending a body of a few MB (what a
mistaken payload is) and read the answer; short enough that a client that sends
forever, or trickles, holds its connection only this much longer than an answer it
got at once. nginx's ``lingering_timeout`` is 5 s between reads (its ``lingering_time``
30 s in all): a hard total is stricter.
"""
LINGER_BYTES = 16 * 1024 * 1024
"""Bytes drained at most after such an answer; past them the connection is cut at once.

Covers bodies up to ~16 MB beyond what the socket buffers hold (a payload a few times
the largest route limit but the batch's and the reports'), whose senders then read
their 413; a larger one may see a reset, as before. Dropping 16 MiB costs a few ms of
CPU, less than a body within a limit costs to parse.
"""
PARSE_SLICE = 4096
"""Bytes of a larger read handed to the parser at a time, so the queue can be checked
between them (a slice holds ~120 pipelined ``GET /healthz``)."""

Direct = Callable[[dict[str, Any], bytes], Awaitable[HotAnswer | None]]
"""A request's scope and whole body to its answer, or None: the ASGI app answers it."""


def _under_layers(app: Any, name: str) -> Any:
    """The first non-None attribute ``name`` of ``app`` or of a layer under it, else None.

    uvicorn wraps the app it is given (proxy headers, message logging), each layer
    keeping the next as ``.app``.
    """
    for _ in range(8):
        found = getattr(app, name, None)
        if found is not None:
            return found
        app = getattr(app, "app", None)
        if app is None:
            break
    return None


def direct_answers(app: Any) -> Direct | None:
    """The coordinator app's direct answers (``api/direct.py``), found under uvicorn's layers.

    Another app has none, and is only served by ASGI.
    """
    return cast("Direct | None", _under_layers(app, "direct_answers"))


def _nothing() -> None:
    pass


async def _write_answer(cycle: RequestResponseCycle, answer: HotAnswer) -> None:
    """Write ``answer`` as uvicorn's ``send`` writes a response with a content length."""
    if cycle.flow.write_paused and not cycle.disconnected:
        await cycle.flow.drain()  # the client does not read: wait, as ``send`` does
    if cycle.disconnected:
        return  # gone: nothing to write to (``send`` drops it too)
    cycle.response_started = True
    cycle.waiting_for_100_continue = False
    keep_alive = cycle.keep_alive  # False once the server shuts down
    parts = [STATUS_LINE[answer.status]]
    for name, value in (*cycle.default_headers, *answer.headers):
        parts += (name, b": ", value, b"\r\n")
    if not keep_alive:
        parts.append(b"connection: close\r\n")
    parts += (b"\r\n", answer.body)
    cycle.transport.write(b"".join(parts))
    cycle.response_complete = True
    cycle.message_event.set()
    if not keep_alive:
        cycle.transport.close()
    on_response, cycle.on_response = cycle.on_response, _nothing  # as run_asgi ends
    on_response()


class OneWriteTransport(asyncio.Transport):
    """A transport whose writes of one loop turn leave in one ``write``.

    uvicorn writes a response's status line and headers, then its body, as two
    writes: two system calls and two TCP segments, so on loopback the client wakes
    twice per answer. Writes made in one turn of the event loop are joined here and
    handed to the real transport once, at the end of that turn (``call_soon``);
    ``close`` and ``write_eof`` send what is held first (``abort`` drops it, as the
    real one does). The real transport also closes itself, when the client's data
    ends: ``GuardedHttpToolsProtocol.eof_received`` flushes before that. Everything
    else is the real transport's, method by method (the base class's methods would
    otherwise answer in its place).
    """

    lingering = False
    """Set by the protocol while it drains a refused request: the connection is closing."""

    def __init__(
        self,
        transport: asyncio.Transport,
        loop: asyncio.AbstractEventLoop,
        linger: Callable[[], bool] | None = None,
    ) -> None:
        super().__init__()
        self._transport = transport
        self._loop = loop
        self._held: list[bytes] = []
        self._linger = linger  # asked on ``close``: True when it drains before closing

    def write(self, data: bytes | bytearray | memoryview) -> None:
        if self.lingering:
            return  # the answer has been sent with the end of the server's side
        if not self._held:
            self._loop.call_soon(self.flush)
        self._held.append(bytes(data))

    def writelines(self, list_of_data: Iterable[bytes | bytearray | memoryview]) -> None:
        for data in list_of_data:
            self.write(data)

    def flush(self) -> None:
        """Hand what is held to the real transport, as one write."""
        if self._held:
            data = b"".join(self._held) if len(self._held) > 1 else self._held[0]
            self._held.clear()
            if not self._transport.is_closing():
                self._transport.write(data)

    def close(self) -> None:
        if self.lingering or (self._linger is not None and self._linger()):
            return  # the protocol closes the connection once drained
        self.flush()
        self._transport.close()

    def abort(self) -> None:
        self._held.clear()  # abort drops what is buffered, as the real one does
        self._transport.abort()

    def write_eof(self) -> None:
        self.flush()
        self._transport.write_eof()

    def can_write_eof(self) -> bool:
        return self._transport.can_write_eof()

    def is_closing(self) -> bool:
        return self.lingering or self._transport.is_closing()

    def get_extra_info(self, name: str, default: Any = None) -> Any:
        return self._transport.get_extra_info(name, default)

    def set_protocol(self, protocol: asyncio.BaseProtocol) -> None:
        self._transport.set_protocol(protocol)

    def get_protocol(self) -> asyncio.BaseProtocol:
        return self._transport.get_protocol()

    def is_reading(self) -> bool:
        return self._transport.is_reading()

    def pause_reading(self) -> None:
        self._transport.pause_reading()

    def resume_reading(self) -> None:
        self._transport.resume_reading()

    def set_write_buffer_limits(self, high: int | None = None, low: int | None = None) -> None:
        self._transport.set_write_buffer_limits(high, low)

    def get_write_buffer_size(self) -> int:
        return self._transport.get_write_buffer_size() + sum(map(len, self._held))

    def get_write_buffer_limits(self) -> tuple[int, int]:
        return self._transport.get_write_buffer_limits()


_EARLY = 0.001
"""Seconds a deadline may be met early: uvloop's timers and clock count whole milliseconds,
so a timer re-armed for less than one could fire again before the clock moves on."""


class Deadline:
    """A deadline moved on every request, without a timer made and cancelled for each.

    The header deadline and the keep-alive were a ``call_later`` on every request and
    a ``cancel`` soon after: each a timer handle made, put in the loop's heap, taken
    out and closed (~2.7 µs a pair on this host, two pairs a request). Here ``set``
    and ``clear`` only note when ``action`` is due; one timer runs at a time, at the
    earliest time it can be due. When it fires it checks: nothing due, it ends; due
    later (moved since), it runs again for then; due now, ``action`` runs. So
    ``action`` runs when it would have run, and a busy connection makes one timer
    per deadline's length instead of two a request.
    """

    __slots__ = ("_action", "_loop", "_timer", "_when", "due")

    def __init__(self, loop: asyncio.AbstractEventLoop, action: Callable[[], None]) -> None:
        self._loop = loop
        self._action = action
        self._timer: asyncio.TimerHandle | None = None
        self._when = 0.0  # when the timer fires
        self.due: float | None = None
        """When ``action`` runs (the loop's clock), or None: not armed. Set None to clear."""

    def set(self, seconds: float) -> None:
        """``action`` runs ``seconds`` from now, unless cleared or set again before."""
        due = self.due = self._loop.time() + seconds
        timer = self._timer
        if timer is None or due < self._when:
            if timer is not None:
                timer.cancel()  # only when a shorter deadline follows a longer one
            self._when = due
            self._timer = self._loop.call_at(due, self._fire)

    def stop(self) -> None:
        """Clear, and drop the timer too (the connection is gone: nothing holds it)."""
        self.due = None
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None

    def _fire(self) -> None:
        self._timer = None
        due = self.due
        if due is None:
            return
        if due - self._loop.time() >= _EARLY:
            self._when = due  # moved on since: wait for the new time
            self._timer = self._loop.call_at(due, self._fire)
            return
        self.due = None
        self._action()


class GuardedHttpToolsProtocol(HttpToolsProtocol):
    """uvicorn's httptools protocol, plus a deadline and a size cap for request headers."""

    header_timeout = 10.0
    """Seconds; ``serve`` sets it from ``FLEET_HEADER_TIMEOUT_SECONDS`` in each process."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._header_deadline = Deadline(self.loop, self._headers_late)
        self._keep_alive = Deadline(self.loop, self.timeout_keep_alive_handler)
        self._awaiting_headers = True  # from a request's first byte to its headers' end
        self._header_bytes = 0  # received while awaiting headers (httptools buffers them)
        self._trailer_bytes = 0  # trailer fields of the request being read (chunked bodies)
        self._read = 0  # the size of the read being parsed
        self._could_be_headers = 0  # bytes of the reads a request's headers came in
        self._refused = False
        self._unparsed = bytearray()  # a read's rest, waiting for room in the queue
        self._feeding = False
        self._closing_at_once = False  # a refusal of this protocol's own: no lingering
        self._lingered = 0  # bytes dropped since a lingering close began
        self._linger_end: asyncio.TimerHandle | None = None

    def _arm(self) -> None:
        self._header_deadline.set(self.header_timeout)

    def _disarm(self) -> None:
        self._header_deadline.due = None

    def _unset_keepalive_if_required(self) -> None:
        """uvicorn's, for the keep-alive ``Deadline`` instead of a timer a request."""
        self._keep_alive.due = None

    def _headers_late(self) -> None:
        if not self.transport.is_closing():
            self._refuse(b"")  # no answer for headers that never ended, only the close

    def _refuse(self, answer: bytes) -> None:
        """Answer ``answer`` (``b""``: none) and close: nothing more is read from here.

        A request before this one (pipelined) may still be being answered: its answer
        is owed first, so the refusal waits for it (the answer's ``on_response``).
        """
        self._refused = True
        self._disarm()
        cycle = self.cycle  # the latest request parsed whole, or the one being read
        if (
            cycle is not None
            and not cycle.more_body  # whole: a refusal inside its body is its own
            and not cycle.response_complete
            and not self.transport.is_closing()
        ):
            cycle.on_response = partial(self._answered_then_refuse, answer)
            return
        self._close_with(answer)

    def _answered_then_refuse(self, answer: bytes) -> None:
        """The answer owed before a refusal is written whole: now the refusal."""
        self.on_response_complete()
        self._close_with(answer)

    def _close_with(self, answer: bytes) -> None:
        if self.transport.is_closing():
            return  # the client asked for the close with its request, or is gone
        if answer:
            self.transport.write(answer)
        self._closing_at_once = True
        self.transport.close()

    def _linger(self) -> bool:
        """Drain instead of closing (True) when the client may still be sending.

        Asked by ``OneWriteTransport.close``. The client may still be sending when the
        request being read is not whole (answered before or while its body is read:
        its ``more_body``).
        """
        cycle = self.cycle
        if cycle is None or not cycle.more_body or self._closing_at_once:
            return False
        one = self._one_write
        if one.is_closing():
            return False  # the client is gone (``connection_lost`` closes it too)
        if one.can_write_eof():
            one.write_eof()  # the answer, then the end: the client reads it whole
        else:
            one.flush()
        one.lingering = True
        self._disarm()
        self._unparsed.clear()
        self.flow.resume_reading()  # paused while the body waited for the app
        self._linger_end = self.loop.call_later(LINGER_SECONDS, self._end_linger)
        return True

    def _end_linger(self) -> None:
        """Cut a lingering connection: its time or its bytes are up."""
        if self._linger_end is not None:
            self._linger_end.cancel()
            self._linger_end = None
        # abort, not close: a client that reads nothing must not hold it open either.
        self._one_write.abort()

    def data_received(self, data: bytes) -> None:
        if self._one_write.lingering:
            self._lingered += len(data)  # dropped: the request was answered
            if self._lingered > LINGER_BYTES:
                self._end_linger()
            return
        if self._refused:
            return
        if len(data) <= PARSE_SLICE and not self._unparsed and len(self.pipeline) < MAX_QUEUED:
            self._feed(data)  # the usual read: one request, or part of one
            return
        self._unparsed += data
        self._feed_unparsed()

    def _feed_unparsed(self) -> None:
        """Parse the waiting bytes a slice at a time while fewer than ``MAX_QUEUED`` wait."""
        if self._feeding:
            return  # an answer completed while a slice was being parsed: that loop goes on
        self._feeding = True
        try:
            while self._unparsed and len(self.pipeline) < MAX_QUEUED:
                if self._refused or self.transport.is_closing():
                    self._unparsed.clear()
                    return
                chunk = bytes(self._unparsed[:PARSE_SLICE])
                del self._unparsed[:PARSE_SLICE]
                self._feed(chunk)
        finally:
            self._feeding = False
        if self._unparsed:
            self.flow.pause_reading()  # nothing more is read until the rest is parsed

    def _feed(self, data: bytes) -> None:
        self._read = len(data)
        if self._awaiting_headers:
            self._header_bytes += self._read
            self._could_be_headers += self._read
        super().data_received(data)
        if self._refused:
            return
        # Still no end of headers after this many bytes: httptools would keep buffering.
        if self._awaiting_headers and self._header_bytes > MAX_HEADER_BYTES:
            self._refuse(_TOO_LARGE)

    def send_400_response(self, msg: str) -> None:
        """Not HTTP/1.1 as httptools reads it: 400 in the API's error shape (uvicorn's is text)."""
        if not self._refused:
            self._refuse(_NOT_HTTP)

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self._direct = None if self.config.reset_contextvars else direct_answers(self.app)
        # Measured (bench drain, --concurrency 1, 3 runs each, medians): 573 → 601 jobs/s,
        # coordinator CPU per job 0.92x, agents' 0.94x; at --concurrency 10 no change.
        self._one_write = OneWriteTransport(transport, self.loop, self._linger)
        self.transport = self._one_write
        self._arm()

    def eof_received(self) -> None:
        """The client sends nothing more: its connection closes on return, as uvicorn's does.

        uvicorn writes each answer at once, so one made before the end was read is
        sent; here it may still be held for the end of this loop turn: send it now.
        """
        self._one_write.flush()

    def connection_lost(self, exc: Exception | None) -> None:
        self._header_deadline.stop()
        self._keep_alive.stop()
        if self._linger_end is not None:
            self._linger_end.cancel()
            self._linger_end = None
        super().connection_lost(exc)

    def shutdown(self) -> None:
        """The server begins to shut down: the app's long-polls answer nothing first.

        uvicorn calls this on every open connection as its shutdown starts, then waits
        for every request in flight before the lifespan ends; a waiting long-poll would
        hold the exit up for the rest of its wait. The coordinator app ends them now
        (``begin_shutdown``: they answer ``{"leases": []}``); then, as uvicorn does, an
        idle connection closes and a busy one closes after its answer.
        """
        begin = _under_layers(self.app, "begin_shutdown")
        if begin is not None:
            begin()
        if self._one_write.lingering:
            self._end_linger()  # answered already: the exit need not wait for the drain
            return
        super().shutdown()

    def on_response_complete(self) -> None:
        """Start the next pipelined request; read on only once none is left waiting.

        uvicorn pauses reading when a request arrives behind one still being answered,
        but resumes it after *every* answer, while requests parsed from one read may
        still be queued. A client that pipelines requests without reading the answers
        then has one more read (a thousand small requests) queued after each answer:
        `GET /healthz` sent that way, unauthenticated, grew a coordinator to 2.8 GiB in
        20 s. Reading now waits until the queue is empty and the rest of the last read
        is parsed (``MAX_QUEUED``), so a client that reads nothing fills its socket
        buffers and stops there (``test_pipelined_requests_are_read_no_faster_than_answered``).
        """
        # uvicorn's own, with the keep-alive a ``Deadline`` moved rather than a timer made.
        self.server_state.total_requests += 1
        if not self.transport.is_closing():
            self._keep_alive.due = None
            self.flow.resume_reading()
            if self.pipeline:
                cycle, app = self.pipeline.pop()
                self._start_asgi_task(cycle, app)
            else:
                self._keep_alive.set(self.timeout_keep_alive)
        if self._one_write.lingering:
            return  # reading goes on, to drain: nothing more is parsed or answered
        if self._unparsed:
            self._feed_unparsed()  # room for one more: parse on from where the read stopped
        if self.pipeline or self._unparsed:
            self.flow.pause_reading()

    def on_message_begin(self) -> None:
        super().on_message_begin()
        self._trailer_bytes = 0
        # A request may begin in the middle of a read (pipelined behind another): count
        # that whole read, an upper bound of what of it is this request's.
        self._could_be_headers = self._read
        if not self._refused:
            self._header_deadline.set(self.header_timeout)

    def on_header(self, name: bytes, value: bytes) -> None:
        """A header field; or, once the headers are complete, a trailer field: dropped, bounded.

        httptools reports the trailer fields after a chunked body through this same
        callback, and uvicorn appended them to the request's headers: without a bound
        (the header cap stops counting at the end of the headers), so a client with no
        token grew a replica by ~20 MB a second with ``GET /healthz`` and endless
        trailers until the body deadline, and a token sent as a trailer, after the
        body, authenticated the request. Nothing here reads trailers: they are counted
        against ``MAX_HEADER_BYTES`` (431 past it, as for headers) and never kept.
        """
        if self._awaiting_headers:
            # uvicorn's own ``on_header``, inline: a call less for every header of every
            # request (callgrind: -0.4 % of an enqueue's instructions, -0.1 % of a cycle's).
            name = name.lower()
            if name == b"expect" and value.lower() == b"100-continue":
                self.expect_100_continue = True
            self.headers.append((name, value))
            return
        self._trailer_bytes += len(name) + len(value) + _HEADER_LINE
        if self._trailer_bytes > MAX_HEADER_BYTES and not self._refused:
            cycle = self.cycle
            started = cycle is not None and cycle.response_started
            self._refuse(b"" if started else _TOO_LARGE)  # no refusal inside an answer

    def on_headers_complete(self) -> None:
        self._header_deadline.due = None  # ``_disarm``, inline: every request
        self._awaiting_headers = False
        self._header_bytes = 0
        if self._refused:
            return  # a request pipelined behind a refused one, in the same read
        # Headers that ended within one read were never counted against the limit above.
        # When the reads they came in could hold more than the limit (rarely: ~1 µs saved
        # on every other request), count what httptools parsed (method and version aside).
        if self._could_be_headers > MAX_HEADER_BYTES:
            size = len(self.url) + sum(len(n) + len(v) + _HEADER_LINE for n, v in self.headers)
            if size > MAX_HEADER_BYTES:
                self._refuse(_TOO_LARGE)  # no request cycle: the app never sees it
                return
        # httptools also reads "HTTP/2.0" and "HTTP/0.9" (uvicorn then answers as 1.1).
        # Neither is an HTTP/1.x request: a 400, since a 505 would be a 5xx (SPEC).
        version = self.parser.get_http_version()
        if version != "1.1" and version != "1.0":
            self._refuse(_NOT_HTTP)
            return
        super().on_headers_complete()

    def _start_asgi_task(self, cycle: RequestResponseCycle, app: Any) -> None:
        """Run the request: a ``POST`` to the coordinator is first offered to its direct answers."""
        direct = self._direct
        # ``app`` is uvicorn's own 503 instead of the app past ``limit_concurrency``.
        if direct is None or cycle.scope["method"] != "POST" or app is not self.app:
            super()._start_asgi_task(cycle, app)
            return
        task = self.loop.create_task(self._answer(direct, cycle, app))
        task.add_done_callback(self.tasks.discard)
        self.tasks.add(task)

    async def _answer(self, direct: Direct, cycle: RequestResponseCycle, app: Any) -> None:
        """Answer directly when the request is plain; else (nothing done yet) through ASGI."""
        answer = None
        if not cycle.more_body and not cycle.disconnected:  # whole: parsed before this ran
            # uvicorn's scope (a TypedDict) as the plain dict it is; a local typed Any
            # rather than ``typing.cast``, a Python call on every request.
            scope: Any = cycle.scope
            answer = await direct(scope, bytes(cycle.body))
        if answer is None:
            await cycle.run_asgi(app)  # the body is still the cycle's, for ``receive``
        else:
            await _write_answer(cycle, answer)

    def on_body(self, body: bytes) -> None:
        if not self._refused:
            super().on_body(body)

    def on_message_complete(self) -> None:
        self._awaiting_headers = True  # the next request on this connection
        if self._refused:
            return
        scope: Any = self.scope  # not ``typing.cast``: a call on every request
        scope[BODY_COMPLETE] = True
        super().on_message_complete()
