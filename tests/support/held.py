"""A store container whose calls of one method wait until the test lets them go.

Cancellation tests hold a claim or a report at one ``await`` (``entered`` tells
the test it got there), cancel it there, then ``release`` the call.
"""

from __future__ import annotations

import asyncio
from typing import Any

__all__ = ["GUARD", "Held"]

GUARD = 5.0
"""Seconds after which a call that should have answered counts as hung (a failure)."""


class Held:
    """``inner`` with its ``method`` held: every call waits for ``release`` first."""

    def __init__(self, inner: Any, method: str) -> None:
        self.inner = inner
        self.method = method
        self.entered = asyncio.Event()
        self.release = asyncio.Event()

    def __getattr__(self, name: str) -> Any:
        attribute = getattr(self.inner, name)
        if name != self.method:
            return attribute

        async def held(*args: Any, **kwargs: Any) -> Any:
            self.entered.set()
            await self.release.wait()
            return await attribute(*args, **kwargs)

        return held
