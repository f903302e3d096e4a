"""Progress lines on stderr, each stamped with the seconds since the bench started."""

from __future__ import annotations

import sys
import time

__all__ = ["say"]

_STARTED = time.monotonic()


def say(message: str) -> None:
    """One progress line, flushed at once."""
    print(f"[{time.monotonic() - _STARTED:7.1f}s] {message}", file=sys.stderr, flush=True)
