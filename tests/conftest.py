"""Shared fixtures: a reactor per backend that fails the test when a callback
raises unexpectedly, bounded run helpers, and an fd counter."""

from __future__ import annotations

import os
import time
from typing import Callable

import pytest

import reactor

LOOP_BACKENDS = [name for name in ("select", "poll", "epoll") if name in reactor.available_backends()]


def open_fds() -> set[int]:
    """The fds this process has open right now."""
    fds = set()
    for name in os.listdir("/proc/self/fd"):
        fd = int(name)
        try:
            os.fstat(fd)
        except OSError:
            continue  # the listdir's own fd, already closed
        fds.add(fd)
    return fds


class Recorder:
    """Collects what reaches the reactor's exception handler."""

    def __init__(self) -> None:
        self.contexts: list[dict] = []

    def __call__(self, loop: reactor.Reactor, context: dict) -> None:
        self.contexts.append(context)

    def take(self) -> list[dict]:
        taken, self.contexts = self.contexts, []
        return taken


@pytest.fixture
def clients():
    """Plain blocking client sockets, all closed after the test."""
    from .helpers_server import Clients

    pool = Clients()
    yield pool
    pool.close_all()


@pytest.fixture(params=LOOP_BACKENDS)
def backend(request: pytest.FixtureRequest) -> str:
    return request.param


@pytest.fixture
def errors() -> Recorder:
    return Recorder()


@pytest.fixture
def loop(backend: str, errors: Recorder):
    """A reactor on ``backend``; the test fails if a callback raised and the
    test did not ``errors.take()`` it."""
    r = reactor.Reactor(backend=backend)
    r.set_exception_handler(errors)
    yield r
    r.close()
    unexpected = errors.take()
    assert not unexpected, f"unexpected exceptions in callbacks: {unexpected}"


def run_until(loop: reactor.Reactor, predicate: Callable[[], bool], timeout: float = 5.0,
              poll: float = 0.005) -> float:
    """Run ``loop`` until ``predicate()`` holds (checked every ``poll``
    seconds and whenever the loop stops); fail after ``timeout``. Returns the
    time it took."""
    start = time.monotonic()
    deadline = start + timeout

    def check() -> None:
        if predicate() or time.monotonic() >= deadline:
            loop.stop()
        else:
            loop.call_later(poll, check)

    loop.call_soon(check)
    while True:
        loop.run()
        if predicate():
            return time.monotonic() - start
        if time.monotonic() >= deadline:
            pytest.fail(f"condition not reached within {timeout} s")
        loop.call_soon(check)
