"""Knowing, instead of guessing with a sleep, that a loop is waiting in its
selector: for tests that must act on a loop while it is blocked (a wake-up
from a thread, a signal, a clock moved behind its back)."""

from __future__ import annotations

import socket
import threading
from collections.abc import Callable
from typing import Any


class SelectorWaits:
    """Wraps ``loop._wait`` and records every timeout it is
    given; ``entered`` is set when the loop starts a wait that
    ``blocking(timeout)`` calls blocking (default: no timeout at all).

    The event is set just before the real ``select()`` call, so an action
    taken once it is set either finds the loop in the kernel or wakes the
    call at once (a wake-up byte is already there, a signal's byte too):
    either way the loop was committed to a wait that only that action can
    end, which is what these tests need to know.
    """

    def __init__(self, loop: Any, blocking: Callable[[float | None], bool] = lambda t: t is None) -> None:
        self.timeouts: list[float | None] = []
        self.entered = threading.Event()
        self._blocking = blocking
        self._real = loop._wait
        loop._wait = self._select

    def _select(self, timeout: float | None = None) -> Any:
        self.timeouts.append(timeout)
        if self._blocking(timeout):
            self.entered.set()
        return self._real(timeout)

    def wait(self, timeout: float = 5.0) -> bool:
        """Block the calling thread until the loop is waiting, at most
        ``timeout`` seconds; False if it never was. (A thread cannot fail
        the test itself: it returns this for the test to assert.)"""
        return self.entered.wait(timeout)


class Backstop:
    """A socketpair the loop watches, so that a wait the code under test
    fails to end is ended anyway after ``seconds`` (the test then fails on
    ``used`` instead of hanging), without a timer on the loop itself -- a
    timer would change the very wait being tested (no timeout at all)."""

    def __init__(self, loop: Any, seconds: float = 5.0) -> None:
        self.loop = loop
        self.used = False
        self._r, self._w = socket.socketpair()
        loop.add_reader(self._r, self._fire)
        self._timer = threading.Timer(seconds, self._w.send, (b"x",))

    def _fire(self) -> None:
        self.used = True
        self._r.recv(1)
        self.loop.stop()

    def __enter__(self) -> Backstop:
        self._timer.start()
        return self

    def __exit__(self, *exc_info: Any) -> None:
        self._timer.cancel()
        self._timer.join(5)
        self.loop.remove_reader(self._r)
        self._r.close()
        self._w.close()
