"""Small readers for the infrastructure files the tests check without their tools.

No Bicep compiler, Docker engine or Compose runs on our machines, so the tests read
the text: Bicep parameters, decorators and ``name:`` entries; Dockerfile
instructions by stage. Each reader handles only the constructs our files use and
fails loudly on anything it cannot place.
"""

from __future__ import annotations

import json
import re
import shlex
from dataclasses import dataclass, field
from pathlib import Path

__all__ = [
    "ROOT",
    "BicepParam",
    "Instruction",
    "Stage",
    "bicep_params",
    "bicep_without_comments",
    "dockerfile_stages",
    "exec_form",
    "settings_env_names",
]

ROOT = Path(__file__).resolve().parents[2]


def settings_env_names() -> set[str]:
    """``FLEET_<FIELD>`` for every field of the coordinator's Settings."""
    from fleet_coordinator.settings import Settings

    return {f"FLEET_{name.upper()}" for name in Settings.model_fields}


# ---- Bicep ---------------------------------------------------------------------------


def bicep_without_comments(text: str) -> str:
    """The text with ``//`` and ``/* */`` comments blanked, strings left intact."""
    out: list[str] = []
    i, n = 0, len(text)
    while i < n:
        c = text[i]
        if c == "'":
            j = i + 1
            while j < n and text[j] != "'":
                j += 2 if text[j] == "\\" else 1
            out.append(text[i : j + 1])
            i = j + 1
        elif text.startswith("//", i):
            j = text.find("\n", i)
            i = n if j < 0 else j
        elif text.startswith("/*", i):
            j = text.index("*/", i) + 2
            out.append("\n" * text.count("\n", i, j))
            i = j
        else:
            out.append(c)
            i += 1
    return "".join(out)


@dataclass
class BicepParam:
    """One ``param`` declaration with the decorators above it."""

    name: str
    type: str
    default: str | None
    decorators: list[str] = field(default_factory=list)

    def decorator(self, name: str) -> str | None:
        """The argument text of ``@name(...)`` (possibly multi-line), or None."""
        for d in self.decorators:
            if d.startswith(f"@{name}(") or d == f"@{name}()":
                return d[len(name) + 2 : -1]
        return None


_PARAM = re.compile(r"^param\s+(\w+)\s+(\w+)(?:\s*=\s*(.+))?$")


def bicep_params(text: str) -> dict[str, BicepParam]:
    """Every top-level ``param`` of a Bicep file, with its decorators."""
    lines = bicep_without_comments(text).splitlines()
    params: dict[str, BicepParam] = {}
    pending: list[str] = []
    i = 0
    while i < len(lines):
        line = lines[i].strip()
        if line.startswith("@"):
            decorator = line
            # A decorator whose argument spans lines, e.g. @allowed([ ... ]).
            while decorator.count("(") > decorator.count(")"):
                i += 1
                decorator += " " + lines[i].strip()
            pending.append(decorator)
        elif line.startswith("param "):
            match = _PARAM.match(line)
            assert match, f"cannot read: {line}"
            name, kind, default = match.groups()
            params[name] = BicepParam(name, kind, default, pending)
            pending = []
        elif line:
            pending = []
        i += 1
    return params


# ---- Dockerfile ----------------------------------------------------------------------


@dataclass
class Instruction:
    """One Dockerfile instruction, continuation lines joined."""

    keyword: str
    args: str


@dataclass
class Stage:
    """One ``FROM … AS name`` stage and its instructions."""

    name: str
    base: str
    instructions: list[Instruction]

    def all(self, keyword: str) -> list[str]:
        """The arguments of every instruction ``keyword`` in this stage."""
        return [i.args for i in self.instructions if i.keyword == keyword]

    def last(self, keyword: str) -> str | None:
        """The arguments of the last ``keyword`` instruction in this stage, if any."""
        found = self.all(keyword)
        return found[-1] if found else None


def dockerfile_stages(text: str) -> list[Stage]:
    """The stages of a Dockerfile in order (instructions before the first FROM are dropped)."""
    logical: list[str] = []
    current = ""
    for raw in text.splitlines():
        line = raw.strip()
        if not current and (not line or line.startswith("#")):
            continue
        if line.startswith("#"):
            continue  # a comment inside a continued instruction
        if line.endswith("\\"):
            current += line[:-1] + " "
            continue
        logical.append(current + line)
        current = ""
    stages: list[Stage] = []
    for line in logical:
        keyword, _, args = line.partition(" ")
        keyword = keyword.upper()
        if keyword == "FROM":
            words = args.split()
            name = words[2] if len(words) >= 3 and words[1].upper() == "AS" else str(len(stages))
            stages.append(Stage(name, words[0], []))
        elif stages:
            stages[-1].instructions.append(Instruction(keyword, args.strip()))
    return stages


def exec_form(args: str) -> list[str]:
    """The argument list of an exec-form instruction (``["a", "b"]``) or a shell form split."""
    args = args.strip()
    if args.startswith("["):
        value = json.loads(args)
        assert isinstance(value, list)
        return [str(v) for v in value]
    return shlex.split(args)
