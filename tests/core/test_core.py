"""The loop core (``reactor._core.core``), on both loops that are made of it:
reactor's own and reactor.aio's asyncio loop, every backend. What is written
once must behave once: each test runs on both, and the rules that used to
differ between them (a cancelled watcher, the wake-up byte, the wake-up fd a
signal handler gives back) are held here. Resource close is
``test_resources.py``, on both loops too."""

from __future__ import annotations

import asyncio
import selectors
import signal
import socket
import threading
from collections.abc import Callable, Iterator
from typing import Any

import pytest

import reactor
import reactor.aio
from reactor._core.core import READ_BUFFER_SIZE, LoopCore

from ..support import LOOP_BACKENDS

KINDS = ["reactor", "aio"]


class Face:
    """One loop, and how a test drives it the same way on both."""

    def __init__(self, kind: str, backend: str) -> None:
        self.kind = kind
        self.loop: Any = reactor.Reactor(backend) if kind == "reactor" else reactor.aio.new_event_loop(backend=backend)
        self.errors: list[dict] = []
        self.loop.set_exception_handler(lambda loop, context: self.errors.append(context))

    def add_reader(self, fd: int, callback: Callable[[], Any]) -> Any:
        """The handle watching ``fd`` (asyncio's add_reader returns none)."""
        if self.kind == "reactor":
            return self.loop.add_reader(fd, callback)
        return self.loop._add_reader(fd, callback)

    def add_writer(self, fd: int, callback: Callable[[], Any]) -> Any:
        if self.kind == "reactor":
            return self.loop.add_writer(fd, callback)
        return self.loop._add_writer(fd, callback)

    def run_once(self) -> None:
        """One iteration: the callbacks ready now, and the I/O ready now."""
        if self.kind == "reactor":
            self.loop.call_soon(self.loop.stop)
            self.loop.run()
        else:
            self.loop.call_soon(self.loop.stop)
            self.loop.run_forever()

    def run_until(self, predicate: Callable[[], bool], timeout: float = 5.0) -> None:
        deadline = self.loop.time() + timeout
        while not predicate():
            assert self.loop.time() < deadline, "timed out"
            self.run_once()

    def close(self) -> None:
        self.loop.close()


@pytest.fixture(params=[(kind, backend) for kind in KINDS for backend in LOOP_BACKENDS],
                ids=lambda p: f"{p[0]}-{p[1]}")
def face(request: pytest.FixtureRequest) -> Iterator[Face]:
    made = Face(*request.param)
    yield made
    made.close()
    assert not made.errors, made.errors


def test_both_loops_are_made_of_the_core(face):
    assert isinstance(face.loop, LoopCore)
    assert len(face.loop.read_buffer) == READ_BUFFER_SIZE
    assert face.loop.backend in LOOP_BACKENDS and not face.loop.is_closing()


def test_a_watcher_cancelled_without_remove_is_unregistered_when_its_fd_is_ready(face):
    # asyncio's rule, now reactor's too: a handle cancelled by its owner
    # stays registered until its fd is next ready, then goes. reactor's loop
    # used to skip it for ever: a readable fd woke every wait for nothing.
    a, b = socket.socketpair()
    with a, b:
        seen: list[bytes] = []
        handle = face.add_reader(a.fileno(), lambda: seen.append(a.recv(10)))
        handle.cancel()
        b.send(b"x")
        face.run_until(lambda: face.loop._watchers.handle_for(a.fileno(), selectors.EVENT_READ) is None)
        assert seen == []
        with pytest.raises(KeyError):
            face.loop._watchers.selector.get_key(a.fileno())


def test_a_registration_a_callback_changed_is_not_dropped_for_a_stale_handle(face):
    # The reader runs before the writer of the same fd: when it cancels the
    # writer's handle and watches with a new one, the stale handle the
    # dispatch still holds must not take the new registration with it.
    a, b = socket.socketpair()
    with a, b:
        seen: list[str] = []

        def read() -> None:
            a.recv(10)
            old.cancel()
            face.add_writer(a.fileno(), lambda: seen.append("new writer"))

        face.add_reader(a.fileno(), read)
        old = face.add_writer(a.fileno(), lambda: seen.append("old writer"))
        b.send(b"x")
        face.run_until(lambda: bool(seen))
        assert seen == ["new writer"]
        face.loop.forget_fd(a.fileno())


def test_many_thread_wake_ups_write_one_byte_per_wait(face):
    # The pipe holds a wake-up until the loop reads it: one byte is enough,
    # and a thread calling in a loop never fills it.
    loop = face.loop
    seen: list[int] = []

    def call_many() -> None:
        for i in range(1000):
            loop.call_soon_threadsafe(seen.append, i)

    thread = threading.Thread(target=call_many)
    thread.start()
    thread.join(timeout=10)
    assert not thread.is_alive()
    queued = loop._wake_r.recv(4096, socket.MSG_PEEK)
    assert queued == b"\0"
    face.run_until(lambda: len(seen) == 1000)
    assert seen == list(range(1000))


@pytest.fixture
def wakeup_fd_before() -> Iterator[int]:
    """A wake-up fd that some other code set before the loop's first signal
    handler (another library, an outer loop)."""
    theirs, other_end = socket.socketpair()
    theirs.setblocking(False)
    previous = signal.set_wakeup_fd(theirs.fileno())
    try:
        yield theirs.fileno()
    finally:
        signal.set_wakeup_fd(previous)
        theirs.close()
        other_end.close()


def test_the_last_signal_handler_gives_back_the_wakeup_fd_that_was_there(face, wakeup_fd_before):
    # reactor.aio used to set -1, taking the fd from whoever had it.
    loop = face.loop
    loop.add_signal_handler(signal.SIGUSR1, lambda: None)
    loop.add_signal_handler(signal.SIGUSR2, lambda: None)
    assert signal.set_wakeup_fd(loop._wake_w.fileno(), warn_on_full_buffer=False) == loop._wake_w.fileno()
    assert loop.remove_signal_handler(signal.SIGUSR1)
    assert signal.set_wakeup_fd(loop._wake_w.fileno(), warn_on_full_buffer=False) == loop._wake_w.fileno()
    assert loop.remove_signal_handler(signal.SIGUSR2)
    assert signal.set_wakeup_fd(wakeup_fd_before) == wakeup_fd_before


def test_a_signal_runs_its_handler_on_the_loop(face):
    loop = face.loop
    seen: list[str] = []
    loop.add_signal_handler(signal.SIGUSR1, seen.append, "usr1")
    try:
        signal.raise_signal(signal.SIGUSR1)
        face.run_until(lambda: seen == ["usr1"])
    finally:
        loop.remove_signal_handler(signal.SIGUSR1)
    assert signal.getsignal(signal.SIGUSR1) is signal.SIG_DFL


def test_forget_fd_drops_reader_and_writer_at_once(face):
    a, b = socket.socketpair()
    with a, b:
        face.add_reader(a.fileno(), lambda: None)
        face.add_writer(a.fileno(), lambda: None)
        face.loop.forget_fd(a.fileno())
        assert face.loop._watchers.handle_for(a.fileno(), selectors.EVENT_READ) is None
        assert face.loop._watchers.handle_for(a.fileno(), selectors.EVENT_WRITE) is None
        face.run_once()


def test_is_closing_from_the_start_of_close(face):
    class Witness:
        close_order = 0
        saw: bool | None = None

        def close_for_loop(self) -> None:
            Witness.saw = face.loop.is_closing()
            face.loop.untrack_resource(self)

    face.loop.track_resource(Witness())
    face.loop.close()
    assert Witness.saw is True and face.loop.is_closing()


def test_asyncio_ready_order_is_kept_on_reactor_aio():
    # reactor.aio queues a ready watcher's handle behind the callbacks
    # already ready (asyncio's order); reactor runs it at once.
    order: dict[str, list[str]] = {}
    for kind in KINDS:
        face = Face(kind, "epoll" if "epoll" in LOOP_BACKENDS else LOOP_BACKENDS[0])
        a, b = socket.socketpair()
        seen: list[str] = []
        try:
            face.add_reader(a.fileno(), lambda seen=seen, a=a: (seen.append("io"), a.recv(10)))
            b.send(b"x")
            face.run_until(lambda seen=seen: "io" in seen)  # now a wait has seen it once
            seen.clear()
            b.send(b"x")
            face.loop.call_soon(seen.append, "soon")
            face.run_until(lambda seen=seen: len(seen) == 2)
            order[kind] = list(seen)
            face.loop.remove_reader(a.fileno())
        finally:
            a.close()
            b.close()
            face.close()
    assert order == {"reactor": ["io", "soon"], "aio": ["soon", "io"]}


def test_reactor_aio_is_still_an_asyncio_base_event_loop():
    loop = reactor.aio.new_event_loop()
    try:
        assert isinstance(loop, asyncio.base_events.BaseEventLoop)
    finally:
        loop.close()
