"""CPU accounting from ``/proc``: the machine's busy share and a process tree's CPU seconds."""

from __future__ import annotations

import os
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

__all__ = ["CpuSnapshot", "machine_jiffies", "tree_cpu_seconds"]

_TICKS = os.sysconf("SC_CLK_TCK")


def machine_jiffies() -> tuple[int, int]:
    """(busy, total) jiffies of all cores since boot; idle and iowait count as not busy."""
    fields = [int(x) for x in Path("/proc/stat").read_text().splitlines()[0].split()[1:]]
    total = sum(fields[:8])  # user nice system idle iowait irq softirq steal (guest is in user)
    return total - fields[3] - fields[4], total


def _stat(pid: int) -> tuple[int, list[str]] | None:
    try:
        text = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    # The command name is in parentheses and may hold spaces: split after the last ')'.
    rest = text[text.rindex(")") + 2 :].split()
    return int(rest[1]), rest  # ppid, fields from state on


def tree_cpu_seconds(roots: Iterable[int]) -> float:
    """utime + stime + cutime + cstime of every live process under ``roots`` (roots included).

    Children that exited and were reaped are in their parent's cutime/cstime, so a
    server that forks a backend per connection (PostgreSQL) is counted whole.
    """
    stats: dict[int, list[str]] = {}
    children: dict[int, list[int]] = {}
    for entry in os.scandir("/proc"):
        if entry.name.isdigit():
            found = _stat(int(entry.name))
            if found is not None:
                ppid, rest = found
                stats[int(entry.name)] = rest
                children.setdefault(ppid, []).append(int(entry.name))
    total = 0
    pending = [pid for pid in roots if pid in stats]
    seen: set[int] = set()
    while pending:
        pid = pending.pop()
        if pid in seen:
            continue
        seen.add(pid)
        rest = stats[pid]
        total += sum(int(rest[i]) for i in (11, 12, 13, 14))  # utime stime cutime cstime
        pending.extend(children.get(pid, []))
    return total / _TICKS


@dataclass(frozen=True)
class CpuSnapshot:
    """The machine's jiffies and the servers' CPU seconds at one moment."""

    busy: int
    total: int
    server_seconds: float

    @classmethod
    def take(cls, server_pids: Iterable[int]) -> CpuSnapshot:
        """Read both now."""
        busy, total = machine_jiffies()
        return cls(busy, total, tree_cpu_seconds(server_pids))

    def busy_share_since(self, earlier: CpuSnapshot) -> float:
        """The share (0..1) of all cores' time that was busy between the two snapshots."""
        return (self.busy - earlier.busy) / max(self.total - earlier.total, 1)
