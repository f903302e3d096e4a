"""``replace`` and ``constructor``: ``dataclasses.replace`` and the class's own call for
the domain's frozen, slotted values, ~3x cheaper.

Every transition makes a new ``JobState`` (and often a new ``Run``) from the old
one. ``dataclasses.replace`` re-validates its arguments and goes through
``__init__``, which sets each of a frozen class's 24 fields with
``object.__setattr__``: 6 µs a ``JobState``, a few per cent of a drained job's
coordinator CPU. Here each class gets, once, a function that copies every field
through its slot descriptor and takes the changed ones from ``changes``: 1.9 µs.
Only for frozen slotted dataclasses without ``__post_init__`` or init-only
fields, whose ``__init__`` just stores its arguments; names that are not fields
raise ``TypeError`` as ``dataclasses.replace`` does.

``constructor`` does it for a new value: a ``JobState`` built by calling the class
costs ~46,000 instructions (the 25 ``object.__setattr__`` calls, and the class call
packing its keyword arguments into a dict for ``__init__``); a plain function
storing through the slots' descriptors ~29,000, and one filling a mutable twin of
the same layout that then becomes a ``JobState`` (``_twin``) ~15,500. Every enqueued
job is built this way (``lifecycle.enqueue``).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import Any, ParamSpec, TypeVar

__all__ = ["constructor", "draft", "replace"]

T = TypeVar("T")
P = ParamSpec("P")


def replace(obj: T, /, **changes: Any) -> T:
    """``obj`` with ``changes``: what ``dataclasses.replace(obj, **changes)`` returns."""
    cls = type(obj)
    found = _COPIERS.get(cls)
    if found is None:
        found = _COPIERS[cls] = _copier(cls)
    copier, names = found
    if not names.issuperset(changes):
        unknown = sorted(set(changes) - names)
        raise TypeError(f"{cls.__name__} has no fields {unknown}")
    result: T = copier(obj, changes)
    return result


_Copier = Callable[[Any, dict[str, Any]], Any]
_COPIERS: dict[type[Any], tuple[_Copier, frozenset[str]]] = {}


def _fields(cls: type[Any]) -> tuple[dataclasses.Field[Any], ...]:
    """The fields of a frozen slotted dataclass whose ``__init__`` only stores its arguments."""
    params = getattr(cls, "__dataclass_params__", None)
    fields = dataclasses.fields(cls)
    if (
        params is None
        or not params.frozen
        or "__slots__" not in cls.__dict__
        or hasattr(cls, "__post_init__")
        or any(not f.init for f in fields)
    ):
        raise TypeError(f"{cls.__name__} is not a frozen slotted dataclass without __post_init__")
    return fields


def _copier(cls: type[Any]) -> tuple[_Copier, frozenset[str]]:
    fields = _fields(cls)
    names = [f.name for f in fields]
    env: dict[str, Any] = {"_new": object.__new__, "_cls": cls}
    lines = ["def copy(obj, changes):", "    new = _new(_cls)"]
    for i, name in enumerate(names):
        env[f"_set{i}"] = cls.__dict__[name].__set__  # the slot's descriptor: bypasses frozen
        lines.append(f"    _set{i}(new, changes[{name!r}] if {name!r} in changes else obj.{name})")
    lines.append("    return new")
    exec("\n".join(lines), env)  # the source above names only the class's own fields
    return env["copy"], frozenset(names)


def _twin(cls: type[Any]) -> type[Any]:
    """A plain class with ``cls``'s very slots, whose instances may become ``cls``'s.

    Its fields are assigned as any object's (one store each, ~85 instructions, where a
    frozen class's slot takes a descriptor call of ~670, as ``_copier``'s does); then
    the value's ``__class__`` is set to ``cls``, which Python allows between two
    classes of one layout (it checks: a class of another layout raises here, at once).
    """
    twin = type(f"_{cls.__name__}Twin", (), {"__slots__": cls.__slots__})
    trial: Any = object.__new__(twin)
    trial.__class__ = cls
    return twin


def draft(cls: type[Any]) -> type[Any]:
    """A mutable class of ``cls``'s layout: fill an instance's every field, then set its
    ``__class__`` to ``cls`` to make it the frozen value.

    For a builder whose callers pass many keyword arguments already: a call of
    ``constructor``'s function with 16 of them cost ~2 µs on a slow host (CPython
    matching each name), as much as the rest of the value's build. A field left
    unset raises ``AttributeError`` when read; equality with the class's own call
    is the builder's test (``tests/coordinator/test_domain_replace.py``).
    """
    _fields(cls)
    return _twin(cls)


def constructor(cls: Callable[P, T]) -> Callable[P, T]:
    """A function building ``cls`` from keyword arguments, as calling ``cls`` does.

    The same parameters, defaults and default factories (a ``default_factory`` is
    called for each value that omits its field); the value is equal to the class's
    own (``tests/coordinator/test_domain_replace.py``). Keyword-only, as the domain's
    classes are. Built on a twin (``_twin``): ~5,000 instructions for a ``JobState``,
    where the class's call costs ~46,000 and storing through the slots' descriptors
    ~29,000.
    """
    assert isinstance(cls, type)
    fields = _fields(cls)
    params: list[str] = []
    env: dict[str, Any] = {"_new": object.__new__, "_cls": cls, "_twin": _twin(cls)}
    env["_missing"] = dataclasses.MISSING
    lines = ["    new = _new(_twin)"]
    for i, f in enumerate(fields):
        value = f.name
        if f.default is not dataclasses.MISSING:
            env[f"_default{i}"] = f.default
            params.append(f"{f.name}=_default{i}")
        elif f.default_factory is not dataclasses.MISSING:
            env[f"_factory{i}"] = f.default_factory
            params.append(f"{f.name}=_missing")
            value = f"_factory{i}() if {f.name} is _missing else {f.name}"
        else:
            params.append(f.name)
        lines.append(f"    new.{f.name} = {value}")
    lines += ["    new.__class__ = _cls", "    return new"]
    exec("\n".join([f"def build(*, {', '.join(params)}):", *lines]), env)  # fields' names only
    build: Callable[P, T] = env["build"]
    return build
