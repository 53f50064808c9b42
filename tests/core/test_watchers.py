"""When epoll is asked (``reactor._core.backends``, ``watchers``): a change
of events reaches the kernel at the next wait (one MOD, none if undone
before it), a registration at once (the ADD, whose errors asyncio raises
from ``add_reader``), a removal at once (the DEL). A deferred MOD the
kernel refuses at the wait fails alone, reported. Real sockets; the kernel's
own view of the interest list is read from ``/proc/self/fdinfo`` of the
epoll fd. The counts hold on epoll; the behaviour on every backend.
"""

from __future__ import annotations

import asyncio
import errno
import os
import select
import selectors
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

import reactor
import reactor.aio

from ..support import run_until
from .conftest import socketpair
from .test_bad_fds import Healthy, assert_one_report, socket_on_fd


def one_iteration(loop: reactor.Reactor) -> None:
    """One turn of the loop: one wait, then what is ready."""
    loop.call_soon(loop.stop)
    loop.run()


def ctl_calls(loop: reactor.Reactor) -> int:
    return loop._watchers.ctl_calls


def kernel_interest(loop: reactor.Reactor) -> dict[int, int]:
    """The epoll interest list as the kernel has it: fd -> event mask."""
    epfd = loop._watchers.selector.fileno()
    found = {}
    for line in Path(f"/proc/self/fdinfo/{epfd}").read_text().splitlines():
        if line.startswith("tfd:"):
            fields = line.split()
            found[int(fields[1])] = int(fields[3], 16)
    return found


def test_added_and_removed_in_one_iteration_costs_an_add_and_a_del(loop, backend, pairs):
    """Registration is not deferred: the ADD is where the kernel refuses an
    fd (EPERM for a regular file, EBADF for a closed one), and asyncio's
    ``add_reader`` raises that at once (programs catch the PermissionError
    to fall back to a thread), so epoll is asked at the add, and the DEL
    follows at the removal (the owner may close the fd next)."""
    a, b = socketpair(pairs)
    b.send(b"ready")  # a is readable: a watcher that lived through a wait would run
    one_iteration(loop)  # the wake-up pipe's registration goes first
    before = ctl_calls(loop)
    ran: list[str] = []
    loop.add_reader(a, ran.append, "reader")
    if backend == "epoll":
        assert ctl_calls(loop) == before + 1  # the ADD, at once
        assert kernel_interest(loop)[a.fileno()] & select.EPOLLIN
    assert loop.remove_reader(a)
    one_iteration(loop)
    assert ran == []
    if backend == "epoll":
        assert ctl_calls(loop) == before + 2  # and the DEL, at once
        assert a.fileno() not in kernel_interest(loop)


def test_read_to_read_and_write_is_one_mod_at_the_next_wait(loop, backend, pairs):
    a, _b = socketpair(pairs)
    loop.add_reader(a, pytest.fail, "nothing to read")
    one_iteration(loop)
    before = ctl_calls(loop)
    ran: list[str] = []
    loop.add_writer(a, lambda: (ran.append("writer"), loop.stop()))
    if backend == "epoll":
        assert ctl_calls(loop) == before  # at the next wait
        assert not kernel_interest(loop)[a.fileno()] & select.EPOLLOUT
    loop.run()
    assert ran == ["writer"]
    if backend == "epoll":
        assert ctl_calls(loop) == before + 1  # one MOD: no DEL + ADD
        assert kernel_interest(loop)[a.fileno()] & select.EPOLLOUT
    loop.remove_writer(a)
    loop.remove_reader(a)


def test_a_change_undone_before_the_wait_costs_nothing(loop, backend, pairs):
    a, _b = socketpair(pairs)
    loop.add_reader(a, pytest.fail, "nothing to read")
    one_iteration(loop)
    before = ctl_calls(loop)
    loop.add_writer(a, pytest.fail, "removed before the wait")
    loop.remove_writer(a)
    one_iteration(loop)
    assert ctl_calls(loop) == before
    if backend == "epoll":
        assert kernel_interest(loop)[a.fileno()] & (select.EPOLLIN | select.EPOLLOUT) == select.EPOLLIN
    loop.remove_reader(a)


def _unwatchable(kind: str) -> Iterator[int]:
    """An fd epoll_ctl(ADD) refuses: a regular file (EPERM) or a closed fd
    (EBADF)."""
    with tempfile.TemporaryFile() as f:
        if kind == "regular file":
            yield f.fileno()
            return
        fd = os.dup(f.fileno())
        os.close(fd)
        yield fd


def _add_reader_error(loop: Any, fd: int) -> type[BaseException] | None:
    try:
        loop.add_reader(fd, pytest.fail, "never watched")
    except OSError as exc:
        assert loop.remove_reader(fd) is False  # nothing left registered
        return type(exc)
    loop.remove_reader(fd)
    return None


@pytest.mark.parametrize(("kind", "expected"), [("regular file", PermissionError), ("closed fd", OSError)])
def test_an_fd_epoll_refuses_raises_at_add_reader_as_on_asyncio(kind, expected, errors):
    """asyncio's epoll loop (the oracle) raises from ``add_reader`` what
    epoll_ctl(ADD) says; so do reactor.aio's loop and ``Reactor`` (as on
    main, before and after the deferred interest changes)."""
    stock = asyncio.SelectorEventLoop(selectors.EpollSelector())
    ours = reactor.aio.new_event_loop(backend="epoll")
    own = reactor.Reactor(backend="epoll")
    own.set_exception_handler(errors)
    try:
        for loop in (stock, ours, own):
            for fd in _unwatchable(kind):
                assert _add_reader_error(loop, fd) is expected, (kind, loop)
        one_iteration(own)  # nothing left for the next wait to find
        ours.run_until_complete(asyncio.sleep(0))
    finally:
        stock.close()
        ours.close()
        own.close()
    assert errors.take() == []


def test_a_stale_registration_found_at_the_wait_ends_only_the_old_watcher(loop, backend, errors, pairs):
    # The kernel had the old socket; it is closed behind the loop's back and
    # its number reused; a writer is added for the new socket (a change of
    # events: epoll is asked at the next wait, and its MOD fails with
    # ENOENT). The old reader is reported, the new writer runs.
    healthy = Healthy(loop, pairs)
    victim, _victim_peer = socketpair(pairs)
    fd = victim.fileno()
    stale = loop.add_reader(fd, pytest.fail, "the closed socket's reader ran")
    healthy.check(b"1")
    victim.close()
    _new, _peer = socket_on_fd(pairs, fd)
    ran: list[str] = []
    loop.add_writer(fd, lambda: (ran.append("writable"), loop.remove_writer(fd)))
    run_until(loop, lambda: ran == ["writable"])
    healthy.check(b"2")
    if backend == "epoll":
        assert_one_report(errors, fd, stale)
        assert stale.cancelled()
        assert fd not in kernel_interest(loop)
    else:
        # select and poll watch numbers: the old reader joined the new
        # writer, which cannot be told from doing so on purpose
        assert errors.take() == []
        loop.remove_reader(fd)


@pytest.mark.parametrize("now", ["a regular file", "nothing"])
def test_a_stale_registration_whose_number_cannot_be_watched_fails_alone(loop, backend, errors, pairs, now):
    # As above, but the number now names a regular file (the MOD fails with
    # EPERM) or nothing (EBADF): the old reader is reported as stale, and
    # the writer added since is the number's, which the kernel refuses too:
    # reported; every other watcher carries on.
    if backend != "epoll":
        pytest.skip("select and poll watch numbers: a regular file is always ready, a free number bad at the wait")
    healthy = Healthy(loop, pairs)
    victim, _victim_peer = socketpair(pairs)
    fd = victim.fileno()
    stale = loop.add_reader(fd, pytest.fail, "the closed socket's reader ran")
    healthy.check(b"1")
    with tempfile.TemporaryFile() as f:  # (opened first: not on fd's number)
        victim.close()
        if now == "a regular file":
            os.dup2(f.fileno(), fd)
        writer = loop.add_writer(fd, pytest.fail, "an unwatchable fd's writer ran")
        healthy.check(b"2")
        if now == "a regular file":
            os.close(fd)
    first, second = errors.take()
    assert first["handle"] is stale and "epoll_ctl(MOD) failed" in first["message"]
    assert second["handle"] is writer and "epoll_ctl(ADD) failed" in second["message"]
    for context in (first, second):
        assert context["fd"] == fd and context["exception"].errno == errno.EBADF
    assert second["exception"].__cause__.errno == (errno.EPERM if now == "a regular file" else errno.EBADF)
    assert stale.cancelled() and writer.cancelled()
    assert fd not in loop._selector.get_map() and fd not in kernel_interest(loop)
    healthy.check(b"3")


def test_a_callback_replaced_on_a_number_now_naming_a_regular_file_raises_and_reports(loop, backend, errors, pairs):
    # The callback-only MOD is made at once (the stale check); it fails with
    # EPERM when the number names a regular file now. The old reader is the
    # closed socket's: reported; the new one cannot be watched: add_reader
    # raises PermissionError, as asyncio's does for a regular file.
    if backend != "epoll":
        pytest.skip("select and poll watch numbers: a regular file is always ready")
    victim, _victim_peer = socketpair(pairs)
    fd = victim.fileno()
    stale = loop.add_reader(fd, pytest.fail, "the closed socket's reader ran")
    one_iteration(loop)
    with tempfile.TemporaryFile() as f:  # (opened first: not on fd's number)
        victim.close()
        os.dup2(f.fileno(), fd)
        try:
            with pytest.raises(PermissionError):
                loop.add_reader(fd, pytest.fail, "a regular file's reader ran")
        finally:
            os.close(fd)
    assert_one_report(errors, fd, stale)
    assert stale.cancelled()
    assert fd not in loop._selector.get_map()
    assert loop.remove_reader(fd) is False


def test_a_registration_the_kernel_kept_is_taken_over(loop, backend, pairs, monkeypatch):
    # A DEL that failed leaves the kernel with the fd the map has forgotten:
    # the next ADD answers EEXIST, and register takes it over with a MOD.
    if backend != "epoll":
        pytest.skip("only epoll has a kernel interest list")
    a, b = socketpair(pairs)
    loop.add_writer(a, pytest.fail, "removed before any wait")
    selector = loop._watchers.selector

    def failing_del(fd: int) -> None:
        raise OSError(errno.ENOMEM, "Cannot allocate memory")

    monkeypatch.setattr(selector, "_ctl_del", failing_del)
    loop.remove_writer(a)
    assert kernel_interest(loop)[a.fileno()] & select.EPOLLOUT  # still the kernel's
    before = ctl_calls(loop)
    seen: list[bytes] = []
    loop.add_reader(a, lambda: seen.append(a.recv(10)))
    assert ctl_calls(loop) == before + 2  # ADD (EEXIST), MOD
    assert kernel_interest(loop)[a.fileno()] & (select.EPOLLIN | select.EPOLLOUT) == select.EPOLLIN
    b.send(b"hi")
    run_until(loop, lambda: seen == [b"hi"])
    monkeypatch.undo()
    loop.remove_reader(a)
