"""The coarse sweep (reactor/_core/sweep.py), in virtual time: members are
checked once per interval with the tick count, the timer runs only while
there are members, and a failing check drops its member only."""

from __future__ import annotations

import pytest

from reactor._core.loop import EventLoop
from reactor._core.sweep import MAX_INTERVAL, MIN_INTERVAL, Sweep, interval_for

from ..support import ErrorLog, VirtualClock


@pytest.fixture
def clock() -> VirtualClock:
    return VirtualClock()


@pytest.fixture
def vloop(clock, errors):
    loop = EventLoop(clock=clock)
    loop.set_exception_handler(errors)
    yield loop
    loop.close()


def live_timers(loop: EventLoop) -> int:
    return sum(1 for _, _, handle in loop._timers if not handle._cancelled)


def test_members_are_checked_once_per_interval_with_the_tick_count(vloop, clock):
    seen: list[tuple[str, int]] = []
    sweep = Sweep(vloop, 0.5, lambda member, ticks: seen.append((member, ticks)))
    sweep.add("a")
    sweep.add("b")
    clock.advance(0.49)
    clock.step(vloop)
    assert seen == []  # not before the interval
    clock.advance(0.01)
    clock.step(vloop)
    assert sorted(seen) == [("a", 1), ("b", 1)] and sweep.ticks == 1
    seen.clear()
    clock.advance(0.5)
    clock.step(vloop)
    assert sorted(seen) == [("a", 2), ("b", 2)]


def test_the_timer_runs_only_while_there_are_members(vloop, clock):
    sweep = Sweep(vloop, 0.1, lambda member, ticks: None)
    assert live_timers(vloop) == 0
    sweep.add(1)
    sweep.add(2)
    assert live_timers(vloop) == 1  # one timer for all members
    sweep.discard(1)
    sweep.discard(2)
    sweep.discard(3)  # not a member: no error
    sweep.add(4)
    sweep.discard(4)
    assert live_timers(vloop) == 1  # members coming and going make no timer each
    clock.advance(0.1)
    clock.step(vloop)
    assert live_timers(vloop) == 0  # a sweep that found none does not arm again
    sweep.add(5)
    assert live_timers(vloop) == 1


def test_a_check_that_discards_others_and_itself(vloop, clock):
    checked: list[int] = []
    sweep: Sweep

    def check(member: int, ticks: int) -> None:
        checked.append(member)
        sweep.discard(member)
        sweep.discard(member + 1)  # the next one is never checked this sweep

    sweep = Sweep(vloop, 0.1, check)
    for member in (1, 2, 3, 4):
        sweep.add(member)
    clock.advance(0.1)
    clock.step(vloop)
    assert len(sweep) == 0 and len(checked) == 2
    assert live_timers(vloop) == 0


def test_a_failing_check_is_reported_and_drops_only_its_member(vloop, clock, errors: ErrorLog):
    checked: list[str] = []

    def check(member: str, ticks: int) -> None:
        if member == "bad":
            raise RuntimeError("check failed")
        checked.append(member)

    sweep = Sweep(vloop, 0.1, check)
    sweep.add("bad")
    sweep.add("good")
    clock.advance(0.1)
    clock.step(vloop)
    [context] = errors.take()
    assert isinstance(context["exception"], RuntimeError) and context["member"] == "bad"
    assert checked == ["good"] and len(sweep) == 1
    clock.advance(0.1)
    clock.step(vloop)
    assert checked == ["good", "good"] and not errors.take()


def test_interval_for_a_limit():
    assert interval_for(60) == MAX_INTERVAL  # a 60 s limit fires at most 1 s late
    assert interval_for(2) == 0.5
    assert interval_for(0.001) == MIN_INTERVAL


@pytest.mark.parametrize("interval", [0, MIN_INTERVAL / 2, MAX_INTERVAL * 2])
def test_interval_bounds(vloop, interval):
    with pytest.raises(ValueError, match="interval"):
        Sweep(vloop, interval, lambda member, ticks: None)
