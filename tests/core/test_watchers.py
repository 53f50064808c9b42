"""Interest changes reach the kernel at the next wait (``reactor._core.
watchers``, ``backends.EpollSelector``): what never lives through a wait
never reaches epoll, a change of events is one MOD, and a change the kernel
refuses when it is finally asked fails alone, reported to the watcher it
was for. Real sockets; the kernel's own view of the interest list is read
from ``/proc/self/fdinfo`` of the epoll fd. The counts hold on epoll; the
behaviour on every backend.
"""

from __future__ import annotations

import errno
import select
import socket
from collections.abc import Iterator
from pathlib import Path

import pytest

import reactor

from ..support import Factory, Recorder, run_until
from .test_bad_fds import Healthy, assert_one_report, socket_on_fd


@pytest.fixture
def pairs() -> Iterator[list[socket.socket]]:
    made: list[socket.socket] = []
    yield made
    for sock in made:
        sock.close()


def socketpair(pairs: list[socket.socket]) -> tuple[socket.socket, socket.socket]:
    a, b = socket.socketpair()
    a.setblocking(False)
    pairs += (a, b)
    return a, b


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


def test_added_and_removed_in_one_iteration_never_reaches_the_kernel(loop, backend, pairs):
    a, b = socketpair(pairs)
    b.send(b"ready")  # a is readable: a watcher that reached the kernel would run
    one_iteration(loop)  # the wake-up pipe's registration goes first
    before = ctl_calls(loop)
    ran: list[str] = []
    loop.add_reader(a, ran.append, "reader")
    loop.add_writer(a, ran.append, "writer")
    assert loop.remove_reader(a) and loop.remove_writer(a)
    one_iteration(loop)
    assert ran == []
    if backend == "epoll":
        assert ctl_calls(loop) == before, "epoll_ctl was called for a watcher that never lived through a wait"
        assert a.fileno() not in kernel_interest(loop)


def test_forgotten_before_the_wait_never_reaches_the_kernel(loop, backend, pairs):
    # a connection closed in connection_made: its owner forgets the fd
    a, b = socketpair(pairs)
    b.send(b"ready")
    one_iteration(loop)
    before = ctl_calls(loop)
    ran: list[str] = []
    loop.add_reader(a.fileno(), ran.append, "reader")
    loop.forget_fd(a.fileno())
    one_iteration(loop)
    assert ran == []
    if backend == "epoll":
        assert ctl_calls(loop) == before


def test_added_then_waited_is_registered_with_one_call(loop, backend, pairs):
    a, b = socketpair(pairs)
    one_iteration(loop)
    before = ctl_calls(loop)
    seen: list[bytes] = []
    loop.add_reader(a, lambda: seen.append(a.recv(10)))
    if backend == "epoll":
        assert a.fileno() not in kernel_interest(loop)  # not yet: at the next wait
    b.send(b"hi")
    run_until(loop, lambda: seen == [b"hi"])
    if backend == "epoll":
        assert ctl_calls(loop) == before + 1  # one ADD
        assert kernel_interest(loop)[a.fileno()] & select.EPOLLIN
    assert loop.remove_reader(a)
    if backend == "epoll":
        # removed: DEL at once (the owner may close the fd next; see backends)
        assert ctl_calls(loop) == before + 2
        assert a.fileno() not in kernel_interest(loop)


def test_a_reader_and_a_writer_added_together_are_one_add(loop, backend, pairs):
    a, _b = socketpair(pairs)
    one_iteration(loop)
    before = ctl_calls(loop)
    ran: list[str] = []
    loop.add_reader(a, ran.append, "reader")
    loop.add_writer(a, lambda: (ran.append("writer"), loop.remove_writer(a)))
    run_until(loop, lambda: "writer" in ran)
    assert "reader" not in ran
    if backend == "epoll":
        # ADD (IN|OUT), then the writer's removal: one MOD at the next wait
        one_iteration(loop)
        assert ctl_calls(loop) == before + 2
        assert kernel_interest(loop)[a.fileno()] & (select.EPOLLIN | select.EPOLLOUT) == select.EPOLLIN
    loop.remove_reader(a)


def test_read_to_read_and_write_is_one_mod(loop, backend, pairs):
    a, _b = socketpair(pairs)
    loop.add_reader(a, pytest.fail, "nothing to read")
    one_iteration(loop)
    before = ctl_calls(loop)
    ran: list[str] = []
    loop.add_writer(a, lambda: (ran.append("writer"), loop.stop()))
    assert ctl_calls(loop) == before  # at the next wait
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


def test_a_number_closed_and_reused_before_the_wait_watches_the_new_socket(loop, backend, errors, pairs):
    # The classic bug of deferred registration: the fd number is closed and
    # given to a new socket between the add and the next wait. The new
    # socket's watcher replaces the old one (bare fds: nothing tells the two
    # files apart, as on select and poll) and gets its events; the old one
    # never runs; nothing reaches the exception handler.
    healthy = Healthy(loop, pairs)
    victim, victim_peer = socketpair(pairs)
    fd = victim.fileno()
    victim_peer.send(b"old")
    old = loop.add_reader(fd, pytest.fail, "the closed socket's reader ran")
    victim.close()
    new, peer = socket_on_fd(pairs, fd)
    seen: list[bytes] = []
    loop.add_reader(fd, lambda: seen.append(new.recv(10)))
    assert old.cancelled()
    peer.send(b"new")
    run_until(loop, lambda: seen == [b"new"])
    healthy.check(b"1")
    assert errors.take() == []
    if backend == "epoll":
        assert kernel_interest(loop)[fd] & select.EPOLLIN
    loop.remove_reader(fd)


def test_a_stale_registration_found_at_the_wait_ends_only_the_old_watcher(loop, backend, errors, pairs):
    # The kernel had the old socket (a wait went by); it is closed behind the
    # loop's back and its number reused; a writer is added for the new
    # socket (a change of events: epoll is asked at the next wait, and its
    # MOD fails with ENOENT). The old reader is reported, the new writer runs.
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


def test_a_bad_fd_at_the_wait_fails_alone(loop, backend, errors, pairs):
    # Closed between the add and the wait, its number left free: epoll's
    # ADD fails with EBADF when the loop waits (before: the ADD was made at
    # once and the close then dropped it silently); select and poll find it
    # closed when they wait. One report, and every other watcher carries on.
    healthy = Healthy(loop, pairs)
    victim, _peer = socketpair(pairs)
    fd = victim.fileno()
    bad = loop.add_reader(fd, pytest.fail, "the closed socket's reader ran")
    victim.close()
    healthy.check(b"1")
    healthy.check(b"2")  # select and poll report at the wait after the one that found it
    assert_one_report(errors, fd, bad)
    assert bad.cancelled()
    assert fd not in loop._selector.get_map()
    healthy.check(b"3")


def test_a_connection_the_kernel_refuses_at_the_wait_is_closed(loop, backend, errors, monkeypatch):
    # ENOSPC (past fs.epoll.max_user_watches) for an accepted connection's
    # ADD, which epoll is asked at the next wait: the connection ends as a
    # registration refused at once does -- reported, closed, counted.
    if backend != "epoll":
        pytest.skip("only epoll asks the kernel to watch an fd")
    factory = Factory(Recorder)
    lst = loop.listen(factory)
    one_iteration(loop)  # the listener's own ADD
    selector = loop._watchers.selector
    real_add = selector._ctl_add

    def refusing(fd: int, mask: int) -> None:
        if fd != lst.socket.fileno():
            raise OSError(errno.ENOSPC, "No space left on device")
        real_add(fd, mask)

    monkeypatch.setattr(selector, "_ctl_add", refusing)
    with socket.create_connection(lst.address, timeout=5) as client:
        run_until(loop, lambda: bool(factory.protocols) and bool(factory.protocols[0].lost))
        monkeypatch.setattr(selector, "_ctl_add", real_add)
        assert client.recv(10) == b""  # closed by the server
    [proto] = factory.protocols
    assert proto.events == ["made", "lost"]
    assert isinstance(proto.lost[0], OSError) and proto.lost[0].errno == errno.ENOSPC
    assert lst.stats.rejected == 1
    [context] = errors.take()
    assert "cannot watch" in context["message"] and context["exception"] is proto.lost[0]
    lst.close()


def test_a_listener_the_kernel_refuses_at_the_wait_backs_off_and_serves(loop, backend, errors, monkeypatch):
    # The listening fd's ADD fails once (ENOMEM) when the loop waits: the
    # listener pauses as when accept() runs out of kernel memory, and is
    # watched again after its backoff; no report, a log line.
    if backend != "epoll":
        pytest.skip("only epoll asks the kernel to watch an fd")
    selector = loop._watchers.selector
    real_add = selector._ctl_add
    refused: list[int] = []

    def refusing_once(fd: int, mask: int) -> None:
        if not refused and fd == lst.socket.fileno():
            refused.append(fd)
            raise OSError(errno.ENOMEM, "Cannot allocate memory")
        real_add(fd, mask)

    monkeypatch.setattr(selector, "_ctl_add", refusing_once)
    factory = Factory(Recorder)
    lst = loop.listen(factory)
    one_iteration(loop)
    assert refused and lst.state == "exhausted" and lst.stats.exhausted == 1
    with socket.create_connection(lst.address, timeout=5):
        run_until(loop, lambda: bool(factory.protocols))
    assert lst.state == "active"
    assert errors.take() == []
    lst.close()


def test_added_closed_and_removed_on_the_next_turn_is_not_reported(loop, backend, errors, pairs):
    # anyio's order (the close, then a callback that removes the watcher),
    # with the add in the same iteration as the close: the wait that finds
    # the fd closed (epoll: its ADD fails with EBADF) only sets the watcher
    # aside, and its removal on the next turn ends it quietly.
    healthy = Healthy(loop, pairs)
    victim, _peer = socketpair(pairs)
    fd = victim.fileno()
    loop.add_reader(fd, pytest.fail, "the closed socket's reader ran")
    victim.close()
    removed: list[bool] = []
    loop.call_soon(lambda: removed.append(loop.remove_reader(fd)))
    healthy.check(b"1")
    run_until(loop, lambda: bool(removed))
    healthy.check(b"2")
    assert removed == [True]
    assert errors.take() == []
