"""A store container whose calls of one method wait until the test lets them go.

Cancellation tests hold a claim or a report at one ``await`` (``entered`` tells
the test it got there), cancel it there, then ``release`` the call. With
``after=True`` the call runs first and its answer is held: a read that the store
served at one moment and its caller uses later (a stalled event loop, a slow link).
"""

from __future__ import annotations

import asyncio
from typing import Any

__all__ = ["GUARD", "Held"]

GUARD = 5.0
"""Seconds after which a call that should have answered counts as hung (a failure)."""


class Held:
    """``inner`` with its ``method`` held: every call waits for ``release`` first
    (``after``: every call's answer waits for ``release`` before its caller gets it)."""

    def __init__(self, inner: Any, method: str, *, after: bool = False) -> None:
        self.inner = inner
        self.method = method
        self.after = after
        self.entered = asyncio.Event()
        self.release = asyncio.Event()

    def __getattr__(self, name: str) -> Any:
        attribute = getattr(self.inner, name)
        if name != self.method:
            return attribute

        async def held(*args: Any, **kwargs: Any) -> Any:
            if self.after:
                answer = await attribute(*args, **kwargs)
                self.entered.set()
                await self.release.wait()
                return answer
            self.entered.set()
            await self.release.wait()
            return await attribute(*args, **kwargs)

        return held
