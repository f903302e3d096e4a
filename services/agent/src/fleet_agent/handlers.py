"""Finding handlers: the built-in ``shell`` kind, ``--handlers module:attr`` and entry points."""

from __future__ import annotations

import importlib
from collections.abc import Iterable, Mapping
from importlib.metadata import entry_points
from typing import Any

from .errors import AgentError
from .job import Handler
from .shell import run_shell

__all__ = ["ENTRY_POINT_GROUP", "HandlerLoadError", "load_handlers"]

ENTRY_POINT_GROUP = "fleet_agent.handlers"
"""Entry points in this group name a job kind and point at its handler."""


class HandlerLoadError(AgentError):
    """A handler named on the command line or by an entry point cannot be loaded."""


def load_handlers(specs: Iterable[str], *, use_entry_points: bool = True) -> dict[str, Handler]:
    """``shell``, then entry points, then each spec (later ones win).

    A spec is ``package.module:attr`` where ``attr`` maps kinds to handlers, or
    ``kind=package.module:attr`` where ``attr`` is one handler.
    """
    handlers: dict[str, Handler] = {"shell": run_shell}
    if use_entry_points:
        for point in entry_points(group=ENTRY_POINT_GROUP):
            handlers[point.name] = _checked(point.name, _guarded(point.load, point.value))
    for spec in specs:
        kind, _, target = spec.rpartition("=")
        value = _import(target)
        if kind:
            handlers[kind] = _checked(kind, value)
        elif isinstance(value, Mapping):
            handlers.update({str(k): _checked(str(k), v) for k, v in value.items()})
        else:
            raise HandlerLoadError(
                f"{target} is not a mapping of kinds to handlers (use kind={target} for one)"
            )
    return handlers


def _import(target: str) -> Any:
    module_name, _, attr = target.partition(":")
    if not module_name or not attr:
        raise HandlerLoadError(f"handler {target!r} must look like package.module:attr")
    module = _guarded(lambda: importlib.import_module(module_name), target)
    value: Any = module
    for part in attr.split("."):
        if not hasattr(value, part):
            raise HandlerLoadError(f"cannot load handler {target}: no attribute {part!r}")
        value = getattr(value, part)
    return value


def _guarded(load: Any, target: str) -> Any:
    try:
        return load()
    except Exception as exc:
        raise HandlerLoadError(
            f"cannot load handler {target}: {type(exc).__name__}: {exc}"
        ) from exc


def _checked(kind: str, value: Any) -> Handler:
    if not callable(value):
        raise HandlerLoadError(f"the handler for kind {kind!r} is not callable")
    handler: Handler = value
    return handler
