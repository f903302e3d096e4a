"""``Worker``'s seconds arguments, checked when it is built (nothing is contacted)."""

from __future__ import annotations

import math
from typing import Any

import pytest
from fleet_agent import AgentClient, Worker

SECONDS_ARGUMENTS = ("wait_seconds", "grace_seconds", "startup_timeout", "report_window")


@pytest.mark.parametrize("name", SECONDS_ARGUMENTS)
@pytest.mark.parametrize("value", [math.nan, math.inf, -math.inf, -1.0])
async def test_a_seconds_argument_refuses_nan_infinity_and_negatives(
    name: str, value: float
) -> None:
    """A Worker built in Python refuses what ``fleet-agent run`` refuses, with ValueError."""
    async with AgentClient("http://127.0.0.1:9", "fa.nobody.nothing") as client:
        arguments: dict[str, Any] = {name: value}
        with pytest.raises(ValueError, match=name):
            Worker(client, {}, **arguments)


@pytest.mark.parametrize("name", SECONDS_ARGUMENTS)
async def test_zero_seconds_is_accepted(name: str) -> None:
    """Zero is a valid value of every seconds argument (no wait, no grace, one try)."""
    async with AgentClient("http://127.0.0.1:9", "fa.nobody.nothing") as client:
        arguments: dict[str, Any] = {name: 0.0}
        worker = Worker(client, {}, **arguments)
    assert worker is not None
