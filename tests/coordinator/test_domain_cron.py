"""Cron occurrences across daylight-saving transitions, against a brute-force reference.

The reference knows nothing of cronsim or of the wall-time walks in ``cron.py``: it
looks at every minute, as an instant, around a transition, reads the zone's clock
there and keeps the instant when the reading matches the expression and no earlier
instant showed the same reading (SPEC 11: a wall time in a gap never shows, a
repeated one fires once, at its first instant). ``next_after``, ``latest`` and
``count_between`` must agree with it at every minute of the transition (a
deterministic sweep over fixed expressions), and for any expression, time and
``after`` hypothesis draws. Zones: a one-hour shift at night (Berlin, New York), a
shift across midnight (Santiago), half an hour (Lord Howe), two hours (Troll), and
a 45-minute offset (Chatham); each zone both ways.
"""

from __future__ import annotations

import bisect
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from functools import cache
from zoneinfo import ZoneInfo

import pytest
from fleet_coordinator.domain.cron import CronSchedule
from hypothesis import given, settings
from hypothesis import strategies as st

ZONES = (
    "Europe/Berlin",
    "America/New_York",
    "America/Santiago",
    "Australia/Lord_Howe",
    "Antarctica/Troll",
    "Pacific/Chatham",
)
YEAR = 2027
BEFORE = timedelta(hours=8)
"""How far back the reference looks: past the earliest ``after`` a check uses."""
AFTER = timedelta(hours=26)
"""How far ahead it looks: past a daily cron's next occurrence."""

_BOUNDS = ((0, 59), (0, 23), (1, 31), (1, 12), (0, 7))


@dataclass(frozen=True)
class Transition:
    """A change of a zone's UTC offset: the first instant of the new offset."""

    zone: str
    at: datetime
    shift: timedelta
    """New offset minus old: negative where the clock falls back (a repeated hour)."""


@cache
def transitions(zone: str) -> tuple[Transition, ...]:
    """The zone's offset changes in ``YEAR``, found by reading its clock every minute."""
    tz = ZoneInfo(zone)
    found = []
    u = datetime(YEAR, 1, 1, tzinfo=UTC)
    before = u.astimezone(tz).utcoffset()
    while u.year == YEAR:
        step = u + timedelta(hours=1)
        if step.astimezone(tz).utcoffset() != before:
            while u.astimezone(tz).utcoffset() == before:
                u += timedelta(minutes=1)
            after = u.astimezone(tz).utcoffset()
            assert before is not None
            assert after is not None
            found.append(Transition(zone, u, after - before))
            before = after
        u = step
    assert {t.shift > timedelta(0) for t in found} == {True, False}, zone
    return tuple(found)


ALL = [t for zone in ZONES for t in transitions(zone)]


def _field(text: str, lo: int, hi: int) -> set[int]:
    values: set[int] = set()
    for item in text.split(","):
        body, _, step = item.partition("/")
        if body == "*":
            first, last = lo, hi
        elif "-" in body:
            first, last = (int(x) for x in body.split("-"))
        else:
            first = int(body)
            last = hi if step else first  # "5/10" starts at 5 and steps to the end
        values |= set(range(first, last + 1, int(step or 1)))
    return values


@dataclass(frozen=True)
class Fields:
    """A five-field cron read independently of cronsim: the values each field allows."""

    minute: frozenset[int]
    hour: frozenset[int]
    dom: frozenset[int]
    month: frozenset[int]
    dow: frozenset[int]
    either_day: bool
    """Both day fields restricted: either may match (Vixie cron's rule, cronsim's too)."""

    @classmethod
    @cache
    def read(cls, expr: str) -> Fields:
        parts = expr.split()
        sets = [frozenset(_field(p, lo, hi)) for p, (lo, hi) in zip(parts, _BOUNDS, strict=True)]
        dow = sets[4] | ({0} if 7 in sets[4] else set())
        either = not parts[2].startswith("*") and not parts[4].startswith("*")
        return cls(sets[0], sets[1], sets[2], sets[3], dow, either)

    def match(self, wall: datetime) -> bool:
        """Whether a wall-clock minute matches."""
        on_dom = wall.day in self.dom
        on_dow = (wall.weekday() + 1) % 7 in self.dow
        on_day = on_dom or on_dow if self.either_day else on_dom and on_dow
        return (
            wall.minute in self.minute
            and wall.hour in self.hour
            and wall.month in self.month
            and on_day
        )


@cache
def reference(expr: str, transition: Transition) -> tuple[float, ...]:
    """Every occurrence from ``BEFORE`` to ``AFTER`` the transition, as epoch seconds, in order."""
    tz = ZoneInfo(transition.zone)
    fields = Fields.read(expr)
    out = []
    u = transition.at - BEFORE
    while u < transition.at + AFTER:
        local = u.astimezone(tz)
        # fold 1 is the second time the clock shows this reading: not a new occurrence.
        if local.fold == 0 and fields.match(local.replace(tzinfo=None)):
            out.append(u.timestamp())
        u += timedelta(minutes=1)
    return tuple(out)


def check(expr: str, transition: Transition, t: float, after: float) -> None:
    """``next_after(t)``, ``latest(t, ·)`` and ``count_between(after, t)`` against the
    reference (``t`` and ``after`` within its reach)."""
    assert after >= (transition.at - BEFORE).timestamp()
    ref = reference(expr, transition)
    cron = CronSchedule.parse(expr, transition.zone)
    end = (transition.at + AFTER).timestamp()
    where = (expr, transition.zone, datetime.fromtimestamp(t, UTC).isoformat())

    i = bisect.bisect_right(ref, t)  # ref[:i] are at or before t
    if i < len(ref):
        assert cron.next_after(t) == ref[i], where
    else:
        nxt = cron.next_after(t)
        assert nxt is None or nxt >= end, where

    due = [x for x in ref[:i] if x > after]
    assert cron.latest(t, after) == (due[-1] if due else None), (*where, after)
    if i:
        # A sweep that already enqueued the latest occurrence finds nothing new (a
        # repeated hour fires once); one that enqueued the one before finds the latest.
        assert cron.latest(t, ref[i - 1]) is None, where
        if i > 1:
            assert cron.latest(t, ref[i - 2]) == ref[i - 1], where

    between = [x for x in ref if after < x < t]
    assert cron.count_between(after, t) == min(len(between), 1_000), (*where, after)


SWEPT = (
    "* * * * *",
    "*/15 * * * *",
    "15,45 * * * *",
    "0,30 1-3 * * *",
    "30 2 * * *",
    "30 23 * * *",
    "0 0 * * *",
)


@pytest.mark.parametrize("transition", ALL, ids=lambda t: f"{t.zone}:{t.at:%m-%d}")
def test_every_minute_around_a_transition_agrees_with_the_reference(
    transition: Transition,
) -> None:
    """From an hour before each transition to 150 minutes after (past a two-hour repeat),
    every minute (on it or half a minute past), each function answers as the brute-force
    reference does."""
    start = (transition.at - timedelta(hours=1)).timestamp()
    for expr in SWEPT:
        for minute in range(210):
            t = start + 60 * minute + (30.5 if minute % 2 else 0)
            check(expr, transition, t, t - 5400)


def _fields(lo: int, hi: int) -> st.SearchStrategy[str]:
    number = st.integers(lo, hi)
    step = st.integers(1, hi - lo + 1)
    item = st.one_of(
        st.just("*"),
        number.map(str),
        st.builds(lambda k: f"*/{k}", step),
        st.builds(lambda a, b: f"{min(a, b)}-{max(a, b)}", number, number),
        st.builds(lambda a, b, k: f"{min(a, b)}-{max(a, b)}/{k}", number, number, step),
    )
    return st.lists(item, min_size=1, max_size=3).map(",".join)


@st.composite
def cases(draw: st.DrawFn) -> tuple[str, Transition, float, float]:
    """An expression, a transition, a time within 3 h of it, and an ``after`` before it.

    The day fields are drawn from the transition's own days, so that a restricted
    day still has occurrences the reference can see.
    """
    transition = draw(st.sampled_from(ALL))
    local = transition.at.astimezone(ZoneInfo(transition.zone))
    day = draw(st.sampled_from(["*", str(local.day), f"{max(1, local.day - 1)}-{local.day}"]))
    month = draw(st.sampled_from(["*", str(local.month)]))
    weekday = (local.weekday() + 1) % 7
    dow = draw(st.sampled_from(["*", str(weekday), "1-5", "0,6", "7"]))
    expr = f"{draw(_fields(0, 59))} {draw(_fields(0, 23))} {day} {month} {dow}"
    t = transition.at.timestamp() + draw(st.floats(-3 * 3600, 3 * 3600))
    after = t - draw(st.floats(0, 4 * 3600))
    return expr, transition, t, after


@settings(max_examples=200, deadline=None)
@given(cases())
def test_any_expression_near_a_transition_agrees_with_the_reference(
    case: tuple[str, Transition, float, float],
) -> None:
    """For any expression, time and ``after`` near a transition, each function answers
    as the brute-force reference does."""
    check(*case)
