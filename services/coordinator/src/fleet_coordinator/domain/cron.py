"""Cron schedules in a time zone (SPEC semantics 11), pure: occurrences as UTC instants.

Five fields — minute, hour, day of month, month, day of week — of numbers, ``*``,
ranges, lists and steps only (names, ``L``, ``W``, ``#``, seconds and ``@daily``
are refused). The fields match *local wall-clock time*: ``cronsim`` walks the
wall-clock occurrences and each is mapped to an instant in the zone here, with
SPEC 11's daylight-saving rules made explicit rather than left to a library:

* a wall time in a gap (spring forward: 02:30 on a day that jumps 02:00 → 03:00)
  does not exist, and that occurrence is skipped;
* a wall time that repeats (fall back: 02:30 twice) is its first instant only,
  so a repeated local hour fires once.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from cronsim import CronSim, CronSimError

from .clock import Timestamp

__all__ = ["CronError", "CronSchedule"]

_ITEM = r"(\*|\d+(-\d+)?)(/\d+)?"
_FIELD = re.compile(rf"^{_ITEM}(,{_ITEM})*$")
_STEP = re.compile(r"/(\d+)")
_SPANS = (("minute", 59), ("hour", 23), ("day of month", 30), ("month", 11), ("day of week", 6))
"""Each field's name and its largest useful step: its last value minus its first (the
days of the week are 0..6; 7 is Sunday again)."""
_SEARCH = 5_000
"""Wall-clock occurrences one search looks at (more than a year of an hourly cron)."""


class CronError(ValueError):
    """A cron expression or time zone that SPEC 11 does not accept; ``field`` names which."""

    def __init__(self, message: str, field: str = "cron") -> None:
        super().__init__(message)
        self.field = field


_NOT_IANA_ZONES = frozenset({"localtime", "posixrules"})
"""Files of the zone database that are no IANA zone name: ``localtime`` is each host's
own zone (replicas on hosts set differently would disagree on every occurrence), and
``posixrules`` a default rule set. The ``posix/`` and ``right/`` copies (the latter
counting leap seconds) are refused by their prefix."""


@dataclass(frozen=True, slots=True)
class CronSchedule:
    """A validated five-field cron expression evaluated in an IANA time zone."""

    expr: str
    zone: ZoneInfo

    @classmethod
    def parse(cls, expr: str, timezone: str) -> CronSchedule:
        """Validate ``expr`` and ``timezone``; ``CronError`` says what is wrong."""
        fields = expr.split()
        if len(fields) != 5:
            raise CronError("cron must have exactly five fields")
        for f in fields:
            if not _FIELD.match(f):
                raise CronError(f"cron field {f!r}: only numbers, *, ranges, lists and steps")
        unknown = CronError(f"unknown time zone {timezone!r}", field="timezone")
        if timezone in _NOT_IANA_ZONES or timezone.startswith(("posix/", "right/")):
            raise unknown
        try:
            zone = ZoneInfo(timezone)
        except (ZoneInfoNotFoundError, ValueError) as exc:
            raise unknown from exc
        try:
            CronSim(" ".join(fields), datetime(2000, 1, 1))
        except CronSimError as exc:
            raise CronError(f"cron {expr!r}: {exc}") from exc
        return cls(" ".join(fields), zone)

    @classmethod
    def parse_new(cls, expr: str, timezone: str) -> CronSchedule:
        """``parse``, refusing also a step past its field's range: a schedule being stored.

        ``*/60`` in the minute field (or ``*/24`` in the hour's) matches the first value
        only, once an hour (a day): never what its author meant by "every 60 minutes",
        and cronsim takes it silently. Schedules already stored are read with ``parse``,
        so one stored before this check keeps firing as it did.
        """
        parsed = cls.parse(expr, timezone)
        for (name, span), field in zip(_SPANS, parsed.expr.split(), strict=True):
            for step in _STEP.findall(field):
                # Compared as text first: a step of thousands of digits is not converted.
                if len(step.lstrip("0")) > 2 or int(step) > span:
                    raise CronError(
                        f"cron {name} field {field!r}: a step must be 1 to {span}; "
                        f"/{step} is past the field's range and would match its first value only"
                    )
        return parsed

    def _wall(self, t: Timestamp) -> datetime:
        return datetime.fromtimestamp(t, self.zone).replace(tzinfo=None, second=0, microsecond=0)

    def _instant(self, wall: datetime) -> Timestamp | None:
        """The instant of a local wall time: None in a gap, the first one when it repeats."""
        aware = wall.replace(tzinfo=self.zone, fold=0)
        if aware.astimezone(UTC).astimezone(self.zone).replace(tzinfo=None) != wall:
            return None
        return aware.timestamp()

    def _instants(self, start: datetime, *, reverse: bool) -> Iterator[Timestamp]:
        walls = CronSim(self.expr, start, reverse=reverse)
        for _ in range(_SEARCH):
            try:
                wall = next(walls)
            except (StopIteration, CronSimError):
                return
            instant = self._instant(wall)
            if instant is not None:
                yield instant

    def next_after(self, t: Timestamp) -> Timestamp | None:
        """The first occurrence strictly after ``t`` (None if none within the search)."""
        for instant in self._instants(self._wall(t) - timedelta(minutes=1), reverse=False):
            if instant > t:
                return instant
        return None

    def _reached(self, t: Timestamp) -> datetime:
        """A wall time at or after every wall time whose first instant is at or before ``t``.

        That is the clock's reading at ``t``, except in the second pass of a repeated
        hour: there the wall times from the reading to the end of the repeat also had
        their first instant already, in the first pass. Reading ``t`` at the first
        pass's (larger) offset instead gives a wall time past the end of the repeat;
        the wall times between the two come after ``t`` and ``latest`` skips them.
        """
        local = datetime.fromtimestamp(t, self.zone)
        wall = local.replace(tzinfo=None, second=0, microsecond=0)
        offset, first_pass = local.utcoffset(), local.replace(fold=0).utcoffset()
        if offset is not None and first_pass is not None and first_pass > offset:
            wall += first_pass - offset
        return wall

    def latest(self, t: Timestamp, after: Timestamp) -> Timestamp | None:
        """The latest occurrence in ``(after, t]``, or None."""
        # First instants grow with the wall time: walking back from a wall time at or
        # after every one t has reached, the first instant at or before t is the latest.
        for instant in self._instants(self._reached(t) + timedelta(minutes=1), reverse=True):
            if instant > t:
                continue  # past the end of a repeated hour whose second pass t is in
            return instant if instant > after else None
        return None

    def count_between(self, after: Timestamp, until: Timestamp, cap: int = 1_000) -> int:
        """How many occurrences lie strictly between ``after`` and ``until`` (at most ``cap``)."""
        n = 0
        for instant in self._instants(self._wall(after), reverse=False):
            if instant <= after:
                continue
            if instant >= until or n >= cap:
                break
            n += 1
        return n
