"""Other people's text on a terminal: shown, never acted on.

Job kinds, agent names, the errors agents report and the coordinator's messages
reach ``fleet``'s tables and both clients' readable log lines. Written raw, an
``ESC [2J`` in a job's error would clear the screen of whoever is reading, and an
OSC sequence could retitle it or plant a hyperlink.
"""

from __future__ import annotations

import re
from collections.abc import MutableMapping
from typing import Any

__all__ = ["CONTROLS", "escape_controls", "visible"]

CONTROLS = re.compile("[\x00-\x1f\x7f-\x9f\u202a-\u202e\u2066-\u2069]")
"""Characters a terminal acts on instead of showing: C0 and C1 controls (ESC starts the
sequences that clear the screen, move the cursor, set the title or a hyperlink), DEL,
and the bidirectional overrides and isolates that reorder what is shown."""


def _escape(found: re.Match[str]) -> str:
    code = ord(found.group())
    return f"\\x{code:02x}" if code < 0x100 else f"\\u{code:04x}"


def visible(text: str) -> str:
    """``text`` with every character in ``CONTROLS`` written as an escape (``\\x1b``)."""
    return CONTROLS.sub(_escape, text)


def escape_controls(
    logger: object, method: str, event: MutableMapping[str, Any]
) -> MutableMapping[str, Any]:
    """A structlog processor for readable (terminal) lines: ``visible`` text values."""
    for key, value in event.items():
        if isinstance(value, str) and CONTROLS.search(value):
            event[key] = visible(value)
    return event
