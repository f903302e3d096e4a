"""Long-polls that end when their caller goes away.

A claim with ``wait_seconds`` holds one of its agent's long-poll slots on this
replica (``FLEET_MAX_LONG_POLLS_PER_AGENT``) until its wait ends. A caller that
hangs up gets nothing from that wait, so the guard runs such a request beside a
watch on the ASGI channel: an ``http.disconnect`` before the answer cancels the
request, and the claim's own ``finally`` frees the slot at once. A claim round
under way when the caller hangs up runs to its end, and the jobs it leased are
released at once, the attempt not counted (``services/claims.py``,
``_claim_to_the_end``): nobody is left to answer them to.
"""

from __future__ import annotations

import asyncio
import contextlib
import re

from starlette.types import ASGIApp, Message, Receive, Scope, Send

__all__ = ["may_long_poll", "run_until_disconnect"]

_LONG_POLL_PATHS = frozenset({"/v1/claims", "/v1/reports"})
_NO_WAIT = re.compile(rb'"wait_seconds"\s*:\s*0(?:\.0*)?\s*[,}]')


def may_long_poll(scope: Scope, body: bytes) -> bool:
    """Whether a request may wait: a claim path whose body names a ``wait_seconds`` not 0.

    A byte search, before the body is parsed: a request taken for a long-poll only
    costs the watch (two more tasks); one taken for none whose claim does wait only
    loses the early end of that wait if its caller hangs up. A batched report's
    claim says ``"wait_seconds": 0`` (one request per job at ``--concurrency 1``):
    it never waits, so it is not watched.
    """
    if scope["path"] not in _LONG_POLL_PATHS:
        return False
    named = body.count(b'"wait_seconds"')
    return named > 0 and named > len(_NO_WAIT.findall(body))


async def run_until_disconnect(
    app: ASGIApp, scope: Scope, body: bytes, receive: Receive, send: Send
) -> None:
    """Run ``app`` on ``body``; cancel it if the client disconnects before it answers."""
    heard: asyncio.Future[Message] = asyncio.get_running_loop().create_future()
    answered = False

    async def sent(message: Message) -> None:
        nonlocal answered
        if message["type"] == "http.response.body" and not message.get("more_body", False):
            answered = True
        await send(message)

    async def watch() -> None:
        # The body was read whole: the next message on the channel is the disconnect.
        while True:
            message = await receive()
            if message["type"] == "http.disconnect":
                heard.set_result(message)
                if not answered:  # an in-process client "disconnects" once it has the answer
                    serving.cancel()
                return

    pending = True

    async def replayed() -> Message:
        nonlocal pending
        if pending:
            pending = False
            return {"type": "http.request", "body": body, "more_body": False}
        return await asyncio.shield(heard)  # the app may wait for the disconnect too

    serving = asyncio.ensure_future(app(scope, replayed, sent))
    watcher = asyncio.ensure_future(watch())
    try:
        with contextlib.suppress(asyncio.CancelledError):
            await serving
        if serving.cancelled() and not heard.done():
            raise asyncio.CancelledError  # we were cancelled ourselves, not the client gone
    finally:
        watcher.cancel()
        serving.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await watcher
