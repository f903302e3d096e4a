"""``fleet-agent run``'s number options, checked by ``main`` in-process (no coordinator)."""

from __future__ import annotations

import argparse
import io
import logging
import sys

import pytest
import structlog
from fleet_agent import cli

from .conftest import ADMIN

SECONDS_OPTIONS = ("--wait-seconds", "--grace-seconds", "--startup-timeout", "--report-window")
"""Every float option of ``fleet-agent run``: each is a number of seconds."""

BASE = ("run", "--url", "http://127.0.0.1:9", "--token", ADMIN)


@pytest.fixture
def started(monkeypatch: pytest.MonkeyPatch) -> list[argparse.Namespace]:
    """The options ``main`` would have started a worker with; nothing is started."""
    runs: list[argparse.Namespace] = []

    async def run(args: argparse.Namespace, handlers: object) -> None:
        runs.append(args)

    monkeypatch.setattr(cli, "_run", run)
    monkeypatch.setattr(cli, "_configure_logging", lambda level: None)
    return runs


def test_every_float_option_of_run_is_covered_here() -> None:
    """The list above names all float options of ``run``, so a new one gets checked too."""
    commands = next(
        action
        for action in cli._parser()._actions
        if isinstance(action, argparse._SubParsersAction)
    )
    run = commands.choices["run"]
    floats = {action.option_strings[0] for action in run._actions if action.type is float}
    assert floats == set(SECONDS_OPTIONS)


@pytest.mark.parametrize("option", SECONDS_OPTIONS)
@pytest.mark.parametrize("value", ["nan", "NaN", "inf", "-inf", "infinity", "-1", "-0.001"])
def test_a_seconds_option_refuses_nan_infinity_and_negatives(
    option: str,
    value: str,
    started: list[argparse.Namespace],
    capsys: pytest.CaptureFixture[str],
) -> None:
    """NaN, an infinity or a negative number of seconds is a usage error: exit 2, one line."""
    with pytest.raises(SystemExit) as exited:
        cli.main([*BASE, f"{option}={value}"])
    assert exited.value.code == 2
    err = capsys.readouterr().err
    assert f"fleet-agent: error: {option} must " in err
    assert "Traceback" not in err
    assert started == []


@pytest.mark.parametrize(
    ("option", "value"),
    [
        ("--wait-seconds", "0"),
        ("--wait-seconds", "30"),
        ("--grace-seconds", "0"),
        ("--grace-seconds", "3600"),
        ("--startup-timeout", "0"),
        ("--startup-timeout", "0.5"),
        ("--report-window", "0"),
        ("--report-window", "0.25"),
    ],
)
def test_a_finite_non_negative_seconds_option_is_accepted(
    option: str, value: str, started: list[argparse.Namespace]
) -> None:
    """Zero and ordinary finite values still start the worker with that value."""
    assert cli.main([*BASE, option, value]) == 0
    [args] = started
    assert getattr(args, option.removeprefix("--").replace("-", "_")) == float(value)


class _Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_on_a_terminal_a_job_kind_is_shown_not_acted_on(monkeypatch: pytest.MonkeyPatch) -> None:
    """A kind holding ``ESC [2J`` (a producer's text) reaches a terminal's log escaped."""
    terminal = _Terminal()
    monkeypatch.setattr(sys, "stderr", terminal)
    try:
        cli._configure_logging(logging.INFO)
        structlog.get_logger().info("agent.job.claimed", kind="k\x1b[2J\x9b", epoch=1)
    finally:
        structlog.reset_defaults()
    text = terminal.getvalue()
    assert "k\\x1b[2J\\x9b" in text
    assert "\x1b[2J" not in text
    assert "\x9b" not in text
