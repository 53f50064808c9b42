"""The accept errno policy, exactly: first ``drain_pure`` on a scripted
``accept``, then a real Listener on a scripted fake listening socket (its fd
is real and readable while the script is not empty, so the reactor's
selectors see it like a listening socket with a queue)."""

from __future__ import annotations

import errno
import os
import socket
import time
from collections import deque
from collections.abc import Callable
from typing import Any

import pytest

import reactor
import reactor._net.listener as listener_mod
from reactor._net.accept import ACCEPT_CAPACITY, ACCEPT_FATAL, ACCEPT_RETRY, ACCEPT_SKIP, drain_pure

from ..support import Factory, Recorder, VirtualClock, open_fds, registered, run_until

# ---------------------------------------- helpers used by this suite only

class FakeListenSocket:
    """A listening socket whose ``_accept()`` replays a script, trio-style.

    ``fileno()`` is a real fd (one end of a socketpair) that is readable
    exactly while the script is not empty -- like a listening socket with a
    non-empty queue, level-triggered. Scripted connections are real
    socketpair ends (the other end is in ``peers``); scripted errors are
    ``OSError(errno.X)``. An empty script raises EAGAIN.
    """

    family = socket.AF_UNIX
    type = socket.SOCK_STREAM

    def __init__(self, on_call: Callable[[Any], None] | None = None,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self._ready_r, self._ready_w = socket.socketpair()
        self._ready_r.setblocking(False)
        self._signalled = False
        self.script: deque[Any] = deque()
        self.calls: list[tuple[float, Any]] = []
        self.peers: list[socket.socket] = []
        self.on_call = on_call
        self.closed = False
        self.listened: int | None = None
        self.clock = clock  # what the call times in ``calls`` are read from

    # the socket API the listener uses
    def fileno(self) -> int:
        return -1 if self.closed else self._ready_r.fileno()

    def getsockname(self) -> str:
        return "fake"

    def listen(self, backlog: int) -> None:
        self.listened = backlog

    def setblocking(self, flag: bool) -> None:
        pass

    def _accept(self) -> tuple[int, Any]:
        if self.closed:
            raise OSError(errno.EBADF, os.strerror(errno.EBADF))
        item: Any = BlockingIOError(errno.EAGAIN, os.strerror(errno.EAGAIN))
        if self.script:
            item = self.script.popleft()
        self._sync()
        self.calls.append((self.clock(), item if isinstance(item, BaseException) else "conn"))
        if self.on_call is not None:
            self.on_call(item)
        if isinstance(item, BaseException):
            raise item
        return item

    def close(self) -> None:
        if self.closed:
            return
        self.closed = True
        self._ready_r.close()
        self._ready_w.close()
        for item in self.script:
            if not isinstance(item, BaseException):
                os.close(item[0])
        self.script.clear()

    # scripting
    def push_connection(self, address: Any = "peer") -> socket.socket:
        ours, peer = socket.socketpair()
        self.peers.append(peer)
        peer.settimeout(5.0)
        self.script.append((ours.detach(), address))
        self._sync()
        return peer

    def push_error(self, code: int) -> None:
        exc: OSError = (InterruptedError if code == errno.EINTR else OSError)(code, os.strerror(code))
        self.script.append(exc)
        self._sync()

    def outcomes(self) -> list[Any]:
        return [item if item == "conn" else errno.errorcode[item.errno] for _, item in self.calls]

    def _sync(self) -> None:
        if self.closed:
            return
        if self.script and not self._signalled:
            self._ready_w.send(b"x")
            self._signalled = True
        elif not self.script and self._signalled:
            self._ready_r.recv(1)
            self._signalled = False

    def close_all(self) -> None:
        self.close()
        for peer in self.peers:
            peer.close()



def scripted(*items):
    """An ``accept`` callable replaying ``items``: ints are fds (returned with
    an address), errno names raise OSError; the end raises EAGAIN."""
    queue = list(items)
    calls = []

    def accept():
        calls.append(queue[0] if queue else "EAGAIN")
        if not queue:
            raise BlockingIOError(errno.EAGAIN, "empty")
        item = queue.pop(0)
        if isinstance(item, str):
            code = getattr(errno, item)
            raise (InterruptedError if code == errno.EINTR else OSError)(code, os.strerror(code))
        return item, ("127.0.0.1", 1000 + item)

    accept.calls = calls
    return accept


class TestPolicySets:
    def test_named_sets_hold_what_the_design_says(self):
        assert ACCEPT_RETRY == {errno.EINTR}
        assert {errno.ECONNABORTED, errno.EPROTO} <= ACCEPT_SKIP
        assert {errno.EMFILE, errno.ENFILE, errno.ENOBUFS, errno.ENOMEM} == ACCEPT_CAPACITY
        assert {errno.EBADF, errno.EINVAL, errno.ENOTSOCK} <= ACCEPT_FATAL

    def test_sets_are_disjoint_and_leave_eagain_out(self):
        sets = [ACCEPT_RETRY, ACCEPT_SKIP, ACCEPT_CAPACITY, ACCEPT_FATAL]
        for i, a in enumerate(sets):
            for b in sets[i + 1:]:
                assert not a & b
            assert errno.EAGAIN not in a


class TestDrainPure:
    def test_drains_until_eagain(self):
        accept = scripted(5, 6, 7)
        accepted, skipped, err = drain_pure(accept, 100)
        assert [fd for fd, _ in accepted] == [5, 6, 7]
        assert accepted[0][1] == ("127.0.0.1", 1005)
        assert (skipped, err) == (0, errno.EAGAIN)

    def test_empty_queue_is_a_normal_end(self):
        assert drain_pure(scripted(), 10) == ([], 0, errno.EAGAIN)

    def test_stops_at_max_accepts_with_err_zero_and_leaves_the_rest(self):
        accept = scripted(5, 6, 7)
        accepted, _skipped, err = drain_pure(accept, 2)
        assert [fd for fd, _ in accepted] == [5, 6]
        assert err == 0
        assert accept.calls == [5, 6]  # the third was never asked for

    def test_batch_of_one(self):
        accepted, _, err = drain_pure(scripted(5, 6), 1)
        assert [fd for fd, _ in accepted] == [5] and err == 0

    def test_aborted_and_eproto_are_skipped_and_counted(self):
        accepted, skipped, err = drain_pure(scripted(5, "ECONNABORTED", "EPROTO", 6), 100)
        assert [fd for fd, _ in accepted] == [5, 6]
        assert (skipped, err) == (2, errno.EAGAIN)

    def test_skips_count_towards_max_accepts(self):
        # A queue full of dead connections still gives the loop back.
        accept = scripted(*["ECONNABORTED"] * 10)
        assert drain_pure(accept, 3) == ([], 3, 0)
        assert len(accept.calls) == 3

    def test_eintr_is_retried_and_costs_no_attempt(self):
        accept = scripted("EINTR", 5, "EINTR", "EINTR", 6)
        accepted, skipped, err = drain_pure(accept, 2)
        assert [fd for fd, _ in accepted] == [5, 6]
        assert (skipped, err) == (0, 0)

    @pytest.mark.parametrize("name", ["EMFILE", "ENFILE", "ENOBUFS", "ENOMEM"])
    def test_capacity_errors_end_the_drain_keeping_what_was_accepted(self, name):
        accept = scripted(5, name, 6)
        accepted, _skipped, err = drain_pure(accept, 100)
        assert [fd for fd, _ in accepted] == [5]
        assert err == getattr(errno, name)
        assert accept.calls == [5, name]  # 6 is still queued

    @pytest.mark.parametrize("name", ["EBADF", "EINVAL", "ENOTSOCK"])
    def test_fatal_errors_end_the_drain(self, name):
        assert drain_pure(scripted(name, 5), 100) == ([], 0, getattr(errno, name))

    def test_oserror_without_errno_is_reported_as_einval(self):
        def accept():
            raise OSError("no errno")

        assert drain_pure(accept, 5) == ([], 0, errno.EINVAL)


# ----------------------------------------------------------------- listener

@pytest.fixture
def fake():
    sock = FakeListenSocket()
    yield sock
    sock.close_all()


def listen_fake(loop, fake, factory=None, **options):
    lst = loop.listen(factory or Factory(), sock=fake, **options)
    assert not lst.native  # a fake is always drained by the pure reference
    return lst


class TestListenerOnScript:
    def test_listen_accepts_a_socket_like_object(self, loop, fake):
        lst = listen_fake(loop, fake)
        assert fake.listened == lst.backlog
        assert lst.address == "fake"
        assert lst.state == "active"

    def test_one_wakeup_drains_everything_and_the_histogram_says_so(self, loop, fake):
        factory = Factory()
        lst = listen_fake(loop, fake, factory)
        for _ in range(5):
            fake.push_connection()
        run_until(loop, lambda: factory.made == 5)
        s = lst.stats
        assert (s.accepted, s.wakeups, s.batches, s.max_batch, s.empty_wakeups) == (5, 1, 1, 5, 0)
        assert s.histogram[3] == 1 and sum(s.histogram) == 1  # 5 is in 4..7
        assert fake.outcomes() == ["conn"] * 5 + ["EAGAIN"]

    def test_max_accepts_splits_the_queue_over_wakeups(self, loop, fake):
        factory = Factory()
        lst = listen_fake(loop, fake, factory, max_accepts=2)
        for _ in range(5):
            fake.push_connection()
        run_until(loop, lambda: factory.made == 5)
        s = lst.stats
        assert (s.batches, s.max_batch, s.wakeups) == (3, 2, 3)
        assert s.histogram[2] == 2 and s.histogram[1] == 1

    def test_aborted_connections_are_skipped_and_counted(self, loop, fake):
        factory = Factory()
        lst = listen_fake(loop, fake, factory)
        fake.push_connection()
        fake.push_error(errno.ECONNABORTED)
        fake.push_error(errno.EPROTO)
        fake.push_connection()
        run_until(loop, lambda: factory.made == 2)
        s = lst.stats
        assert (s.accepted, s.aborted, s.batches, s.max_batch, s.wakeups) == (2, 2, 1, 2, 1)
        assert lst.state == "active"

    def test_a_queue_of_only_aborted_connections_is_not_an_empty_wakeup(self, loop, fake):
        lst = listen_fake(loop, fake)
        for _ in range(3):
            fake.push_error(errno.ECONNABORTED)
        run_until(loop, lambda: lst.stats.aborted == 3)
        assert lst.stats.empty_wakeups == 0 and lst.stats.batches == 0

    def test_eintr_is_retried_at_once(self, loop, fake):
        factory = Factory()
        lst = listen_fake(loop, fake, factory)
        fake.push_error(errno.EINTR)
        fake.push_connection()
        run_until(loop, lambda: factory.made == 1)
        assert fake.outcomes() == ["EINTR", "conn", "EAGAIN"]
        assert (lst.stats.aborted, lst.stats.wakeups, lst.stats.exhausted) == (0, 1, 0)

    def test_dead_queue_gives_the_loop_back_between_batches(self, loop, fake):
        factory = Factory()
        lst = listen_fake(loop, fake, factory, max_accepts=2)
        for _ in range(6):
            fake.push_error(errno.ECONNABORTED)
        fake.push_connection()
        run_until(loop, lambda: factory.made == 1)
        # three batches of two dead connections, then the live one and EAGAIN
        assert lst.stats.aborted == 6 and lst.stats.wakeups == 4

    def test_shed_accepts_and_closes_the_surplus_and_keeps_serving(self, loop, fake):
        factory = Factory()
        lst = listen_fake(loop, fake, factory, on_exhausted="shed")
        reserve = lst._reserve_fd
        assert reserve is not None
        fake.push_error(errno.EMFILE)
        shed_peers = [fake.push_connection(), fake.push_connection()]
        run_until(loop, lambda: lst.stats.shed == 2)
        assert factory.made == 0
        assert (lst.stats.exhausted, lst.state) == (1, "active")
        assert lst._reserve_fd is not None  # taken back
        for peer in shed_peers:
            assert peer.recv(10) == b""  # closed at once, not left hanging
        fake.push_connection()
        run_until(loop, lambda: factory.made == 1)

    def test_shed_counts_the_connections_that_died_in_the_queue(self, loop, fake):
        # It used to drop the drain's skipped count (ruff RUF059 named it):
        # stats.aborted missed every connection that died while shedding.
        lst = listen_fake(loop, fake, on_exhausted="shed")
        fake.push_error(errno.EMFILE)
        fake.push_error(errno.ECONNABORTED)
        shed_peers = [fake.push_connection(), fake.push_connection()]
        run_until(loop, lambda: lst.stats.shed == 2)
        assert lst.stats.aborted == 1 and fake.outcomes() == ["EMFILE", "ECONNABORTED", "conn", "conn", "EAGAIN"]
        for peer in shed_peers:
            assert peer.recv(10) == b""

    @pytest.mark.parametrize("code", [errno.EBADF, errno.EINVAL, errno.ENOTSOCK])
    def test_fatal_error_closes_the_listener_and_reports(self, loop, errors, fake, code):
        factory = Factory()
        lst = listen_fake(loop, fake, factory)
        fake.push_connection()
        fake.push_error(code)
        run_until(loop, lambda: lst.state == "closed")
        assert fake.closed
        assert factory.made == 1  # what was accepted before still got its protocol
        (context,) = errors.take()
        assert context["exception"].errno == code
        assert context["listener"] is lst
        assert "fake" in context["message"]
        lst.close()  # idempotent

    def test_factory_failure_closes_that_connection_and_reports(self, loop, errors, fake):
        made = []

        def factory():
            if not made:
                made.append(None)
                raise RuntimeError("factory broke")
            made.append(Recorder())
            return made[-1]

        lst = listen_fake(loop, fake, factory)
        first = fake.push_connection("p1")
        fake.push_connection("p2")
        run_until(loop, lambda: len(made) == 2)
        (context,) = errors.take()
        assert isinstance(context["exception"], RuntimeError) and context["peername"] == "p1"
        assert first.recv(10) == b""
        assert (lst.stats.active, lst.stats.rejected, lst.stats.accepted) == (1, 1, 2)

    def test_no_fd_is_leaked_by_any_scripted_path(self, loop, errors, fake):
        before = open_fds()
        factory = Factory()
        lst = listen_fake(loop, fake, factory, on_exhausted="shed")
        fake.push_connection()
        fake.push_error(errno.ECONNABORTED)
        fake.push_error(errno.EMFILE)
        fake.push_connection()
        fake.push_connection()
        run_until(loop, lambda: lst.stats.shed == 2)
        for p in factory.protocols:
            p.transport.close()
        lst.close()
        run_until(loop, lambda: factory.lost == 1)
        for peer in fake.peers:
            peer.close()
        # the fake's own pair and the peers are closed; the reserve fd too
        assert open_fds() <= before


class TestRealEmptyQueue:
    """Stale readiness on a real socket: someone else takes the connection
    between the wake-up and our drain."""

    def test_stale_readiness_is_counted_and_never_blocks(self, loop):
        import select
        import threading

        factory = Factory()
        lst = loop.listen(factory)
        listening = lst.socket
        stolen = []
        real_drain = lst._drain

        def steal_then_drain(n):
            # another acceptor wins the race, then our drain runs (select
            # first, so that the thief never changes the socket's flags)
            while select.select([listening], [], [], 0)[0]:
                fd, _ = listening._accept()
                stolen.append(socket.socket(fileno=fd))
            return real_drain(n)

        def unblock():
            # Only matters if the drain blocked in accept(): make the socket
            # non-blocking and wake the accept, so that the test fails on the
            # late timer instead of hanging.
            os.set_blocking(listening.fileno(), False)
            socket.create_connection(lst.address, timeout=5).close()

        lst._drain = steal_then_drain
        client = socket.create_connection(lst.address, timeout=5)
        watchdog = threading.Timer(1.0, unblock)
        watchdog.start()
        try:
            fired = []
            start = loop.time()
            loop.call_later(0.05, lambda: fired.append(loop.time() - start))
            run_until(loop, lambda: fired and lst.stats.wakeups >= 1)
            assert fired[0] < 0.5
            assert len(stolen) == 1 and factory.made == 0
            assert lst.stats.empty_wakeups == 1 and lst.stats.accepted == 0
            assert lst.state == "active"
        finally:
            watchdog.cancel()
            watchdog.join(5)
            client.close()
            for sock in stolen:
                sock.close()

    def test_a_competing_thread_acceptor_never_breaks_the_loop(self, loop):
        import threading

        factory = Factory()
        lst = loop.listen(factory)
        other = lst.socket.dup()
        other.settimeout(0.05)
        taken = []
        stop = threading.Event()

        def acceptor():
            while not stop.is_set():
                try:
                    sock, _ = other.accept()
                except (TimeoutError, BlockingIOError):
                    continue
                except OSError:
                    break
                taken.append(sock)

        thread = threading.Thread(target=acceptor, daemon=True)
        thread.start()
        clients = []
        try:
            for _ in range(200):
                clients.append(socket.create_connection(lst.address, timeout=5))
            run_until(loop, lambda: factory.made + len(taken) == 200, timeout=10)
            s = lst.stats
            assert s.accepted == factory.made and s.aborted == 0
        finally:
            stop.set()
            thread.join(5)
            other.close()
            for sock in taken + clients:
                sock.close()



# ------------------------------------------------- exhaustion, in virtual time

@pytest.fixture
def vclock():
    return VirtualClock()


@pytest.fixture
def vloop(backend, errors, vclock):
    """A reactor whose timers run on ``vclock``: backoffs are exact and take
    no real time. The fake socket's readiness is real I/O, seen at once."""
    r = reactor.Reactor(backend=backend, clock=vclock)
    r.set_exception_handler(errors)
    yield r
    r.close()
    unexpected = errors.take()
    assert not unexpected, f"unexpected exceptions in callbacks: {unexpected}"


@pytest.fixture
def vfake(vclock):
    sock = FakeListenSocket(clock=vclock)
    yield sock
    sock.close_all()


#: loop iterations allowed at one virtual instant before a test gives up
STEPS = 50


def step_until(loop, clock, predicate):
    """Run iterations at this virtual instant (no waiting, the clock does not
    move) until ``predicate()``; fail after ``STEPS``."""
    for _ in range(STEPS):
        if predicate():
            return
        clock.step(loop)
    assert predicate(), f"not reached in {STEPS} iterations at t={clock.now}"


def settle(loop, clock, steps=STEPS):
    """Run ``steps`` iterations at this virtual instant: whatever is due
    now, and what that starts, has happened afterwards."""
    for _ in range(steps):
        clock.step(loop)


def advance(loop, clock, seconds):
    """Move virtual time on by ``seconds`` and settle at the new instant."""
    clock.advance(seconds)
    settle(loop, clock)


B = listener_mod.BACKOFF_INITIAL
#: below any timer resolution: "just before" / "just after" a deadline
EPS = 1e-6


class TestExhaustionInVirtualTime:
    def test_emfile_pauses_with_the_reader_removed_and_retries_at_the_backoff(self, vloop, vclock, vfake):
        factory = Factory()
        lst = listen_fake(vloop, vfake, factory)
        vfake.push_error(errno.EMFILE)
        vfake.push_connection()
        step_until(vloop, vclock, lambda: lst.state == "exhausted")
        t0 = vclock.now
        assert not registered(vloop, vfake.fileno())
        assert lst._retry_timer.when == pytest.approx(t0 + B)
        settle(vloop, vclock)  # 50 iterations at this instant: no busy loop, no early retry
        assert vfake.outcomes() == ["EMFILE"]
        advance(vloop, vclock, B - EPS)
        assert vfake.outcomes() == ["EMFILE"] and lst.state == "exhausted"
        advance(vloop, vclock, 2 * EPS)
        assert factory.made == 1 and vfake.outcomes() == ["EMFILE", "conn", "EAGAIN"]
        (t_emfile, _), (t_retry, _) = vfake.calls[:2]
        assert t_retry - t_emfile == pytest.approx(B, abs=3 * EPS)
        assert lst.state == "active" and registered(vloop, vfake.fileno())
        assert (lst.stats.exhausted, lst.stats.accepted) == (1, 1)

    def test_backoff_doubles_up_to_its_ceiling_and_an_accept_resets_it(self, vloop, vclock, vfake):
        factory = Factory()
        lst = listen_fake(vloop, vfake, factory)
        for _ in range(10):
            vfake.push_error(errno.EMFILE)
        vfake.push_connection()
        delays = []
        step_until(vloop, vclock, lambda: lst.state == "exhausted")
        while not factory.made:
            assert lst.state == "exhausted"
            delay = lst._retry_timer.when - vloop.time()
            delays.append(delay)
            advance(vloop, vclock, delay)  # to the deadline, exactly
        expected = [min(B * 2 ** i, listener_mod.BACKOFF_MAX) for i in range(10)]
        assert delays == pytest.approx(expected)
        assert expected[-3:] == [listener_mod.BACKOFF_MAX] * 3  # the ceiling was reached and held
        times = [t for t, _ in vfake.calls]
        assert [b - a for a, b in zip(times, times[1:11], strict=False)] == pytest.approx(expected)
        assert lst.stats.exhausted == 10
        # the accept reset it: the next EMFILE waits the initial delay again
        vfake.push_error(errno.EMFILE)
        step_until(vloop, vclock, lambda: lst.state == "exhausted")
        assert lst._retry_timer.when - vloop.time() == pytest.approx(B)

    @pytest.mark.parametrize("code", [errno.EMFILE, errno.ENFILE, errno.ENOBUFS, errno.ENOMEM])
    def test_every_capacity_errno_pauses(self, vloop, vclock, vfake, code):
        lst = listen_fake(vloop, vfake)
        vfake.push_error(code)
        step_until(vloop, vclock, lambda: lst.stats.exhausted == 1)
        settle(vloop, vclock)
        assert lst.state == "exhausted" and not registered(vloop, vfake.fileno())
        assert lst.stats.exhausted == 1  # once: no retry before the backoff

    def test_a_closing_connection_ends_the_backoff_early(self, vloop, vclock, vfake):
        factory = Factory()
        lst = listen_fake(vloop, vfake, factory)
        first = vfake.push_connection()
        vfake.push_error(errno.EMFILE)
        vfake.push_connection()
        step_until(vloop, vclock, lambda: lst.state == "exhausted")
        assert factory.made == 1
        start = vclock.now
        first.close()  # the peer leaves: our transport closes and frees an fd
        step_until(vloop, vclock, lambda: factory.made == 2)
        # no virtual time passed: the close ended the backoff, not its timer
        assert vclock.now == start
        assert lst.state == "active" and lst._retry_timer is None

    def test_pause_during_exhaustion_wins_over_the_retry_timer(self, vloop, vclock, vfake):
        factory = Factory()
        lst = listen_fake(vloop, vfake, factory)
        vfake.push_error(errno.EMFILE)
        vfake.push_connection()
        step_until(vloop, vclock, lambda: lst.state == "exhausted")
        lst.pause()
        advance(vloop, vclock, 3 * listener_mod.BACKOFF_MAX)  # long past any retry
        assert lst.state == "paused" and factory.made == 0 and vfake.outcomes() == ["EMFILE"]
        lst.resume()
        step_until(vloop, vclock, lambda: factory.made == 1)

    def test_close_during_exhaustion_cancels_the_retry(self, vloop, vclock, vfake):
        lst = listen_fake(vloop, vfake)
        vfake.push_error(errno.EMFILE)
        step_until(vloop, vclock, lambda: lst.state == "exhausted")
        lst.close()
        assert lst.state == "closed" and vfake.closed and lst._retry_timer is None
        advance(vloop, vclock, 3 * listener_mod.BACKOFF_MAX)
        assert lst.state == "closed" and vfake.outcomes() == ["EMFILE"]  # no accept() on a closed socket

    def test_a_shed_that_frees_nothing_backs_off_instead_of_spinning(self, vloop, vclock, vfake):
        # ENFILE is system-wide: the fd we free may be taken by another
        # process before our accept, which then fails again.
        lst = listen_fake(vloop, vfake, on_exhausted="shed")
        for _ in range(4):
            vfake.push_error(errno.ENFILE)
        step_until(vloop, vclock, lambda: lst.state == "exhausted")
        settle(vloop, vclock)
        assert vfake.outcomes() == ["ENFILE", "ENFILE"]  # the drain and one shed attempt, then a pause
        assert lst.stats.shed == 0 and lst._reserve_fd is not None
        advance(vloop, vclock, B)
        assert vfake.outcomes() == ["ENFILE"] * 4
        times = [t for t, _ in vfake.calls]
        assert times[1] == times[0] and times[2] - times[1] == pytest.approx(B) and times[3] == times[2]
        assert lst._retry_timer.when - vloop.time() == pytest.approx(2 * B)

    def test_pause_from_a_protocol_survives_an_exhausted_drain(self, vloop, vclock, vfake):
        class Pauser(Recorder):
            def connection_made(self, transport):
                super().connection_made(transport)
                lst.pause()

        factory = Factory(Pauser)
        lst = listen_fake(vloop, vfake, factory)
        vfake.push_connection()
        vfake.push_error(errno.EMFILE)
        vfake.push_connection()
        step_until(vloop, vclock, lambda: factory.made == 1)
        advance(vloop, vclock, 3 * listener_mod.BACKOFF_MAX)
        assert lst.state == "paused" and factory.made == 1  # no retry behind the user's back
        assert lst._retry_timer is None
        lst.resume()
        step_until(vloop, vclock, lambda: factory.made == 2)

    def test_shed_falls_back_to_pause_for_memory_errors(self, vloop, vclock, vfake):
        factory = Factory()
        lst = listen_fake(vloop, vfake, factory, on_exhausted="shed")
        reserve = lst._reserve_fd
        vfake.push_error(errno.ENOBUFS)
        vfake.push_connection()
        step_until(vloop, vclock, lambda: lst.state == "exhausted")
        settle(vloop, vclock)
        assert lst.stats.shed == 0 and lst._reserve_fd == reserve and factory.made == 0
        advance(vloop, vclock, B)
        assert factory.made == 1 and lst.state == "active"

    def test_shed_retakes_its_spare_fd_after_failing_to(self, vloop, vclock, vfake, monkeypatch):
        factory = Factory()
        lst = listen_fake(vloop, vfake, factory, on_exhausted="shed")
        real_open = listener_mod._open_reserve
        monkeypatch.setattr(listener_mod, "_open_reserve", lambda: None)  # fds still short after the shed
        vfake.push_error(errno.EMFILE)
        vfake.push_connection()
        step_until(vloop, vclock, lambda: lst.stats.shed == 1)
        assert lst._reserve_fd is None and lst.state == "exhausted"  # falls back to pausing
        monkeypatch.setattr(listener_mod, "_open_reserve", real_open)  # fds are free again
        advance(vloop, vclock, B)
        assert lst.state == "active" and lst._reserve_fd is not None
        vfake.push_error(errno.EMFILE)
        vfake.push_connection()
        step_until(vloop, vclock, lambda: lst.stats.shed == 2)  # shedding works again
