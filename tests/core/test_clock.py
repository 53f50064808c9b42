"""The injectable clock: ``Reactor(clock=...)`` drives ``time()`` and every
deadline, so tests run timers in virtual time; the selector still waits in
real seconds, so a virtual clock must never make the loop sleep the virtual
amount."""

from __future__ import annotations

import threading
import time

import pytest

import reactor
from reactor._core import loop as loop_module
from reactor._core.loop import EventLoop

from ..support import VirtualClock
from .waits import SelectorWaits


@pytest.fixture
def clock() -> VirtualClock:
    return VirtualClock()


@pytest.fixture
def vloop(backend, clock, errors):
    """A reactor on ``backend`` running on the virtual ``clock``."""
    r = reactor.Reactor(backend=backend, clock=clock)
    r.set_exception_handler(errors)
    yield r
    r.close()
    assert not errors.take()


def test_timers_run_in_virtual_time(vloop, clock):
    start = time.monotonic()
    seen = []
    vloop.call_later(30, seen.append, "+30")
    vloop.call_at(clock.now + 60, seen.append, "+60")
    assert vloop.time() == clock.now
    clock.step(vloop)
    assert seen == []
    clock.advance(29.5)
    clock.step(vloop)
    assert seen == []  # never early
    clock.advance(0.5)
    clock.step(vloop)
    assert seen == ["+30"]
    clock.advance(3600)
    clock.step(vloop)
    assert seen == ["+30", "+60"]
    assert time.monotonic() - start < 1.0, "virtual time took real time"


def test_a_step_never_waits(vloop, clock):
    waits = SelectorWaits(vloop)
    vloop.call_later(30, lambda: None)
    start = time.monotonic()
    for _ in range(3):
        clock.step(vloop)
    assert waits.timeouts == [0.0, 0.0, 0.0]
    assert time.monotonic() - start < 0.5


def record_one_wait(loop) -> list:
    """Run one iteration of ``loop`` and return the timeouts its selector
    was given, without waiting: the wrapped select records the timeout,
    stops the loop and polls with timeout 0."""
    timeouts = []
    real = loop._wait

    def select(timeout=None):
        timeouts.append(timeout)
        loop.stop()
        return real(0)

    loop._wait = select
    loop.run()
    loop._wait = real
    return timeouts


def test_a_virtual_timer_far_ahead_does_not_set_a_real_wait(vloop):
    # Before the cap the loop handed the selector the virtual distance: a
    # timer at +30 virtual seconds made it wait 30 real ones.
    vloop.call_later(30, lambda: None)
    [timeout] = record_one_wait(vloop)
    assert 0 < timeout <= loop_module._FOREIGN_CLOCK_MAX_WAIT


def test_a_clock_moved_by_another_thread_is_seen_while_the_loop_waits(vloop, clock):
    waits = SelectorWaits(vloop, blocking=lambda timeout: timeout is not None and timeout > 0)
    seen = []
    vloop.call_later(30, lambda: (seen.append(vloop.time()), vloop.stop()))
    blocked = []

    def move_the_clock():
        blocked.append(waits.wait())
        clock.advance(30)  # no wake-up: the loop must look at the clock itself

    mover = threading.Thread(target=move_the_clock)
    # bounds the test if the loop never looks (the fault: a 30 s real wait)
    safety = threading.Timer(3.0, vloop.call_soon_threadsafe, (vloop.stop,))
    start = time.monotonic()
    mover.start()
    safety.start()
    vloop.run()
    elapsed = time.monotonic() - start
    safety.cancel()
    mover.join(5)
    safety.join(5)
    assert blocked == [True]
    assert seen == [clock.now], f"the timer did not run (the loop waited {elapsed:.2f} s)"
    assert elapsed < 1.0


def test_the_real_clock_is_not_capped(backend):
    # time.monotonic, given or by default, waits the whole way to a timer.
    for clock in (None, time.monotonic):
        with reactor.Reactor(backend=backend, clock=clock) as r:
            r.call_later(30, lambda: None)
            [timeout] = record_one_wait(r)
            assert timeout == pytest.approx(30, abs=0.1)


@pytest.mark.parametrize("cls", [reactor.Reactor, EventLoop])
@pytest.mark.parametrize("bad", [42, "monotonic", 1.5])
def test_a_clock_that_is_not_callable_is_a_type_error_naming_clock(cls, bad):
    with pytest.raises(TypeError, match="clock must be callable"):
        cls(clock=bad)


def test_a_falsy_clock_is_still_the_clock():
    # `clock or time.monotonic` would silently swap a clock whose bool() is
    # False (an object with __len__ == 0, say) for the real one.
    class FalsyClock(VirtualClock):
        def __bool__(self) -> bool:
            return False

    clock = FalsyClock(start=5.0)
    with reactor.Reactor(clock=clock) as r:
        assert r.time() == 5.0
