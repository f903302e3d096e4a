"""Finding handlers: the built-in shell kind, --handlers specs and entry points."""

from __future__ import annotations

from importlib.metadata import EntryPoint

import pytest
from fleet_agent import ENTRY_POINT_GROUP, load_handlers, run_shell
from fleet_agent.handlers import HandlerLoadError

from demo.handlers import HANDLERS, work


def test_shell_is_built_in_and_a_mapping_spec_adds_its_kinds() -> None:
    """``module:attr`` naming a dict adds every kind in it beside ``shell``."""
    handlers = load_handlers(["demo.handlers:HANDLERS"], use_entry_points=False)
    assert handlers == {"shell": run_shell, **HANDLERS}


def test_a_kind_spec_names_one_handler_and_later_sources_win() -> None:
    """``kind=module:attr`` binds one kind, overriding the built-in one of that name."""
    handlers = load_handlers(["shell=demo.handlers:work"], use_entry_points=False)
    assert handlers == {"shell": work}


def test_entry_points_name_kinds(monkeypatch: pytest.MonkeyPatch) -> None:
    """An entry point in the group is loaded under its name; --handlers still win over it."""
    points = [EntryPoint(name="thumbnail", value="demo.handlers:work", group=ENTRY_POINT_GROUP)]
    monkeypatch.setattr(
        "fleet_agent.handlers.entry_points",
        lambda group: points if group == ENTRY_POINT_GROUP else [],
    )
    assert load_handlers([])["thumbnail"] is work
    assert "thumbnail" not in load_handlers([], use_entry_points=False)


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        ("demo.handlers", "must look like package.module:attr"),
        ("demo.nothing_here:HANDLERS", "cannot load handler demo.nothing_here:HANDLERS"),
        ("demo.handlers:MISSING", "no attribute 'MISSING'"),
        ("demo.handlers:work", "is not a mapping of kinds to handlers"),
        ("x=demo.run:QUEUE", "the handler for kind 'x' is not callable"),
    ],
)
def test_specs_that_do_not_load_say_why(spec: str, message: str) -> None:
    """Every way a spec can be wrong is one HandlerLoadError with a clear message."""
    with pytest.raises(HandlerLoadError, match=message):
        load_handlers([spec], use_entry_points=False)
