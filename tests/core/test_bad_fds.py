"""Bad fds fail alone (DESIGN section 3): an fd closed by user code while it
is still watched ends only its own watchers, with one report per fd to the
exception handler; every other watcher carries on, and the loop neither
spins nor dies. Each test runs on select, poll and epoll (the ``loop``
fixture), because each kernel shows a closed fd its own way
(``reactor._core.backends`` has the facts):

- select fails as a whole with EBADF (before the fix: ``run()`` raised);
- poll answers POLLNVAL at once, on every call (before: a busy loop that
  ran the dead fd's callback forever);
- epoll forgets the fd silently, and the stale registration shows when the
  number is watched again (before: the new socket was never watched, or
  ``add_writer`` raised FileNotFoundError).
"""

from __future__ import annotations

import errno
import os
import socket
import time
from typing import Any

import pytest

from ..support import ErrorLog, run_for, run_until
from .conftest import socketpair

#: Long enough for a spinning loop to show (a busy poll() loop runs it
#: thousands of times), short enough for a unit test.
WINDOW = 0.3
#: Iterations a loop that waits may take in WINDOW: the timer that stops it,
#: the healthy reader, a report; a spinning one takes thousands.
MAX_QUIET_ITERATIONS = 30


def socket_on_fd(pairs: list[socket.socket], fd: int) -> tuple[socket.socket, socket.socket]:
    """A new connected pair whose first socket has the fd number ``fd`` (a
    closed fd's number, as the next socket() usually gets it)."""
    new, peer = socket.socketpair()
    if peer.fileno() == fd:
        new, peer = peer, new
    if new.fileno() != fd:
        os.dup2(new.fileno(), fd)
        new.close()
        new = socket.socket(fileno=fd)
    new.setblocking(False)
    pairs += (new, peer)
    return new, peer


def count_selects(loop: Any) -> list[int]:
    """Count the loop's waits from now on (``counter[0]``)."""
    counter = [0]
    real = loop._wait

    def counting(timeout: float | None = None) -> Any:
        counter[0] += 1
        return real(timeout)

    loop._wait = counting
    return counter


def assert_quiet(loop: Any) -> None:
    """The loop waits instead of spinning: few iterations and little CPU
    over WINDOW seconds of run()."""
    counter = count_selects(loop)
    cpu, wall = time.process_time(), time.monotonic()
    run_for(loop, WINDOW)
    cpu, wall = time.process_time() - cpu, time.monotonic() - wall
    assert counter[0] < MAX_QUIET_ITERATIONS, f"the loop spun: {counter[0]} iterations in {wall:.2f} s"
    assert cpu < 0.5 * wall, f"the loop used {cpu:.2f} s of CPU in {wall:.2f} s"


def assert_one_report(errors: ErrorLog, fd: int, handle: Any) -> None:
    contexts = errors.take()
    assert len(contexts) == 1, contexts
    context = contexts[0]
    assert context["fd"] == fd
    assert context["handle"] is handle
    assert isinstance(context["exception"], OSError)
    assert context["exception"].errno == errno.EBADF
    assert f"fd {fd}" in context["message"]


class Healthy:
    """A watched socketpair that must keep working beside the bad fd."""

    def __init__(self, loop: Any, pairs: list[socket.socket]) -> None:
        self.loop = loop
        self.sock, self.peer = socketpair(pairs)
        self.data = bytearray()
        loop.add_reader(self.sock, self._read)

    def _read(self) -> None:
        self.data += self.sock.recv(100)

    def check(self, byte: bytes) -> None:
        want = bytes(self.data) + byte
        self.peer.send(byte)
        run_until(self.loop, lambda: bytes(self.data) == want)


def test_a_closed_watched_fd_ends_only_its_watchers(loop, backend, errors, pairs):
    healthy = Healthy(loop, pairs)
    victim, _peer = socketpair(pairs)
    fd = victim.fileno()
    ran = []
    reader = loop.add_reader(victim, ran.append, "read")
    writer = loop.add_writer(victim, ran.append, "write")
    healthy.check(b"1")
    assert ran.count("write") >= 1
    ran.clear()

    victim.close()  # behind the loop's back: no remove_reader / remove_writer
    healthy.check(b"2")
    assert_quiet(loop)
    healthy.check(b"3")

    assert ran == [], "a watcher ran on a closed fd"
    if backend == "epoll":
        # The kernel dropped the fd from the interest list by itself:
        # nothing fires, so nothing is seen until the number is reused
        # (test_a_stale_registration_is_reported_when_the_number_is_watched_again).
        assert errors.take() == []
    else:
        assert_one_report(errors, fd, reader)  # one per fd, naming the reader first
        assert reader.cancelled() and writer.cancelled()
        assert fd not in loop._selector.get_map()


def test_a_watcher_cancelled_through_its_handle_ends_without_a_report(loop, errors, pairs):
    healthy = Healthy(loop, pairs)
    victim, _peer = socketpair(pairs)
    loop.add_reader(victim, pytest.fail, "a cancelled reader ran").cancel()
    victim.close()
    assert_quiet(loop)
    healthy.check(b"1")
    assert errors.take() == []


@pytest.mark.parametrize("run_between", [False, True], ids=["reused-at-once", "reused-later"])
@pytest.mark.parametrize("watch", ["add_reader", "add_writer"])
def test_the_closed_fds_number_can_be_watched_again(loop, backend, errors, pairs, run_between, watch):
    # The stale registration is for reading; the new socket is watched for
    # reading (the same events: a callback replacement, where epoll's
    # selector used to skip the kernel and leave the new socket unwatched)
    # or writing (new events: epoll_ctl(MOD) failed with ENOENT and
    # add_writer raised FileNotFoundError).
    healthy = Healthy(loop, pairs)
    victim, _peer = socketpair(pairs)
    fd = victim.fileno()
    stale = loop.add_reader(victim, pytest.fail, "the closed socket's reader ran")
    victim.close()
    if run_between:
        healthy.check(b"1")
    new, peer = socket_on_fd(pairs, fd)
    assert new.fileno() == fd

    seen = []
    if watch == "add_reader":
        loop.add_reader(new, lambda: seen.append(new.recv(10)))
        peer.send(b"hi")
        run_until(loop, lambda: seen == [b"hi"])
    else:
        loop.add_writer(new, lambda: (seen.append("writable"), loop.remove_writer(new)))
        run_until(loop, lambda: seen == ["writable"])
    healthy.check(b"2")

    if backend == "epoll" or run_between:
        # select/poll reported it when they next waited; epoll when the
        # number was registered again.
        assert_one_report(errors, fd, stale)
        assert stale.cancelled()
    else:
        # select and poll watch numbers: closed and reused before the loop
        # waited again, the fd is the new socket's, and the add replaced
        # (add_reader) or joined (add_writer) the old watcher, which cannot
        # be told from doing so on purpose: nothing to report.
        assert errors.take() == []
        assert stale.cancelled() == (watch == "add_reader")
    loop.remove_reader(new)
    loop.remove_writer(new)


def test_removing_one_watcher_of_a_closed_fd_reports_the_other(loop, errors, pairs):
    # epoll finds the stale entry in remove_reader (epoll_ctl(MOD) fails with
    # EBADF: before the fix, remove_reader raised); select and poll when
    # they next wait. Either way: the reader goes quietly, as asked, and
    # the writer, which nobody removed, is reported.
    healthy = Healthy(loop, pairs)
    victim, _peer = socketpair(pairs)
    fd = victim.fileno()
    reader = loop.add_reader(victim, pytest.fail, "reader ran")
    writer = loop.add_writer(victim, pytest.fail, "writer ran")
    victim.close()
    assert loop.remove_reader(fd) is True
    assert reader.cancelled()
    assert_quiet(loop)
    healthy.check(b"1")
    assert_one_report(errors, fd, writer)
    assert writer.cancelled()
    assert loop.remove_writer(fd) is False


@pytest.mark.parametrize("by", ["object", "fd"])
def test_closed_then_removed_on_the_next_turn_is_not_reported(loop, errors, pairs, by):
    """Closing a socket and removing its watcher one turn later is what
    anyio does (the close, then a callback that calls remove_reader): on
    select and poll the wait between them finds the fd closed, and the
    report must wait for the next wait, made only if the watcher is still
    there. (Before: "fd N was closed while still watched" for code that did
    nothing wrong; anyio's suite counts it as a failure.)"""
    healthy = Healthy(loop, pairs)
    victim, _peer = socketpair(pairs)
    fd = victim.fileno()
    ran: list[str] = []
    loop.add_reader(victim if by == "object" else fd, ran.append, "read")
    healthy.check(b"1")
    removed: list[bool] = []

    def remove_later() -> None:
        removed.append(loop.remove_reader(victim if by == "object" else fd))

    victim.close()
    loop.call_soon(remove_later)  # after the next wait, which finds the fd closed
    healthy.check(b"2")
    run_until(loop, lambda: bool(removed))
    healthy.check(b"3")
    assert removed == [True]
    assert ran == []
    assert errors.take() == []
