"""The C accept drain against its pure-Python twin, on real sockets.

Every scenario runs once per drain (``drain`` is parametrized: ``pure`` is
``drain_pure(sock._accept, n)``, ``native`` is ``NativeDrainer().drain(fd, n)``) and
both must give the same, exactly predicted answer: the parity test is the
shared expectation. The native side skips when the accelerator is not built;
CI builds it with REACTOR_NATIVE=1, and there a missing build fails
``test_extension_loads_with_the_current_abi`` instead of skipping.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import json
import os
import resource
import socket
import struct
import subprocess
import sys
import textwrap
import threading
import time
from collections.abc import Callable, Iterator

import pytest

from reactor import kernel, native
from reactor._net import accept as _accept
from reactor._net.accept import ACCEPT_SKIP, NativeDrainer, drain_pure
from reactor._net.sockopts import LINGER_RST

from ..support import open_fds

NATIVE_REASON = (
    f"C accelerator not available: {native.native_error()} "
    "(CI builds it with REACTOR_NATIVE=1; locally: REACTOR_NATIVE=1 pip install -e .)"
)
needs_native = pytest.mark.skipif(not native.native_available(), reason=NATIVE_REASON)
Drain = Callable[[socket.socket, int], _accept.DrainResult]


def pure(sock: socket.socket, n: int) -> _accept.DrainResult:
    return drain_pure(sock._accept, n, hosts={})  # as a listener calls it


def c_drain(sock: socket.socket, n: int) -> _accept.DrainResult:
    return NativeDrainer().drain(sock.fileno(), n)


@pytest.fixture(params=[pytest.param(pure, id="pure"), pytest.param(c_drain, id="native", marks=needs_native)])
def drain(request: pytest.FixtureRequest) -> Drain:
    return request.param


# ------------------------------------------------------------------ helpers


class Sockets:
    """Owns every socket and fd a test makes, and closes them at the end
    (pytest turns a leaked socket's ResourceWarning into a failure)."""

    def __init__(self) -> None:
        self.socks: list[socket.socket] = []
        self.fds: set[int] = set()

    def add(self, sock: socket.socket) -> socket.socket:
        self.socks.append(sock)
        return sock

    def take(self, result: _accept.DrainResult) -> _accept.DrainResult:
        """Record the fds a drain returned, to close them later."""
        self.fds.update(fd for fd, _ in result[0])
        return result

    def close(self) -> None:
        for fd in self.fds:
            with contextlib.suppress(OSError):
                os.close(fd)
        for sock in self.socks:
            sock.close()


@pytest.fixture
def owned() -> Iterator[Sockets]:
    sockets = Sockets()
    yield sockets
    sockets.close()


def listener(owned: Sockets, family: int = socket.AF_INET, address: object = ("127.0.0.1", 0),
             backlog: int = 1024) -> socket.socket:
    sock = owned.add(socket.socket(family, socket.SOCK_STREAM))
    sock.bind(address)
    sock.listen(backlog)
    sock.setblocking(False)
    return sock


def wait_queued(lsock: socket.socket, n: int, timeout: float = 5.0) -> None:
    """Wait until the TCP accept queue holds ``n`` connections. connect()
    returns when the client has sent the final ACK; the server side joins the
    queue when that ACK is processed, normally before connect() returns on
    loopback, but not promised. (A Unix connect() queues synchronously.)"""
    if lsock.family == socket.AF_UNIX:
        return
    deadline = time.monotonic() + timeout
    while True:
        queue = kernel.listen_queue(lsock)
        if queue is None or queue[0] >= n:
            return
        if time.monotonic() > deadline:
            pytest.fail(f"accept queue holds {queue[0]}, expected {n}")
        time.sleep(0.001)


def connect(owned: Sockets, lsock: socket.socket, n: int, bind: Callable[[int], object] | None = None
            ) -> list[socket.socket]:
    """``n`` connected clients of ``lsock``, queued (not yet accepted);
    client ``i`` is first bound to ``bind(i)`` unless that is None."""
    target = lsock.getsockname()
    clients = []
    for i in range(n):
        client = owned.add(socket.socket(lsock.family, socket.SOCK_STREAM))
        address = bind(i) if bind is not None else None
        if address is not None:
            client.bind(address)
        client.connect(target)
        clients.append(client)
    wait_queued(lsock, n)
    return clients


def peer_of(client: socket.socket) -> object:
    """What accept() should report for ``client``: its own address."""
    return client.getsockname()


# ---------------------------------------------------------------- loading


def test_extension_loads_with_the_current_abi():
    if native.env_setting() == "0":
        pytest.skip("REACTOR_NATIVE=0: the accelerator is disabled on purpose")
    if native.env_setting() != "1" and not native.native_available():
        pytest.skip(NATIVE_REASON)
    # With REACTOR_NATIVE=1 (CI) a missing or stale build fails here.
    assert native.native_error() is None
    module = native.load()
    assert module is not None
    assert module.lib.reactor_accel_abi_version() == native.ABI_VERSION
    assert module.lib.REACTOR_ADDR_STRIDE >= struct.calcsize("H") + 108  # holds a sockaddr_un


def test_the_c_drain_retries_what_the_pure_drain_retries():
    # accel.c retries EINTR itself, and nothing else; the skip set it is given
    # by NativeDrainer is _accept.ACCEPT_SKIP, so only the retry set is
    # written twice.
    assert _accept.ACCEPT_RETRY == {errno.EINTR}


@needs_native
def test_the_c_drain_is_given_the_pure_drains_skip_set():
    drainer = NativeDrainer()
    ctl = drainer._ctl
    assert sorted(ctl.skip[i] for i in range(ctl.nskip)) == sorted(ACCEPT_SKIP)


@pytest.fixture
def fresh_native(monkeypatch: pytest.MonkeyPatch) -> None:
    """Forget the cached load so the test sees a fresh one; monkeypatch puts
    the real cache back afterwards."""
    for name, value in (("_ext", None), ("_ext_error", None), ("_ext_loaded", False)):
        monkeypatch.setattr(native, name, value)


@needs_native
def test_a_stale_build_is_refused(monkeypatch: pytest.MonkeyPatch, fresh_native: None):
    monkeypatch.setattr(native, "ABI_VERSION", native.ABI_VERSION + 1)
    assert not native.native_available()
    assert "stale build" in native.native_error()
    assert native.extension() is None
    with pytest.raises(native.NativeUnavailableError, match="stale build"):
        NativeDrainer()


@needs_native
def test_reactor_native_0_disables_the_drain_but_not_the_extension(monkeypatch: pytest.MonkeyPatch,
                                                                  fresh_native: None):
    monkeypatch.setenv("REACTOR_NATIVE", "0")
    assert not native.native_available()
    assert native.native_error() == "disabled by REACTOR_NATIVE=0"
    assert native.extension() is not None  # the load generator may still use it


# ------------------------------------------------------------ drain parity


def test_empty_queue_is_eagain(owned: Sockets, drain: Drain):
    lsock = listener(owned)
    assert drain(lsock, 16) == ([], 0, errno.EAGAIN)


def test_max_accepts_zero_takes_nothing(owned: Sockets, drain: Drain):
    lsock = listener(owned)
    connect(owned, lsock, 2)
    assert drain(lsock, 0) == ([], 0, 0)
    assert len(owned.take(drain(lsock, 16))[0]) == 2


def test_batch_of_one(owned: Sockets, drain: Drain):
    lsock = listener(owned)
    clients = connect(owned, lsock, 3)
    first = owned.take(drain(lsock, 1))
    assert first[1:] == (0, 0)  # batch full: errno 0, the queue is not known to be empty
    assert [addr for _, addr in first[0]] == [peer_of(clients[0])]
    rest = owned.take(drain(lsock, 1000))
    assert [addr for _, addr in rest[0]] == [peer_of(c) for c in clients[1:]]
    assert rest[1:] == (0, errno.EAGAIN)


@pytest.mark.parametrize("queued, max_accepts", [(5, 64), (300, 100_000), (300, 5000), (7, 7)])
def test_batch_larger_than_the_queue(owned: Sockets, drain: Drain, queued: int, max_accepts: int):
    lsock = listener(owned)
    clients = connect(owned, lsock, queued)
    accepted, skipped, err = owned.take(drain(lsock, max_accepts))
    assert [addr for _, addr in accepted] == [peer_of(c) for c in clients]  # FIFO, none lost
    assert len({fd for fd, _ in accepted}) == queued
    # (7, 7): exactly full, so the drain cannot know the queue is empty.
    assert (skipped, err) == (0, 0 if queued == max_accepts else errno.EAGAIN)


@needs_native
def test_native_batches_beyond_its_buffers_in_several_calls(owned: Sockets, monkeypatch: pytest.MonkeyPatch):
    # A tiny buffer ceiling forces the multi-call path of NativeDrainer.drain.
    monkeypatch.setattr(_accept, "MAX_CAPACITY", 4)
    drainer = NativeDrainer(capacity=2)
    lsock = listener(owned)
    clients = connect(owned, lsock, 11)
    accepted, skipped, err = owned.take(drainer.drain(lsock.fileno(), 9))
    assert drainer.capacity == 4
    assert (len(accepted), skipped, err) == (9, 0, 0)
    accepted2, skipped, err = owned.take(drainer.drain(lsock.fileno(), 100))
    assert (len(accepted2), skipped, err) == (2, 0, errno.EAGAIN)
    assert [a for _, a in accepted + accepted2] == [peer_of(c) for c in clients]


@needs_native
def test_pure_and_native_take_turns_on_one_queue(owned: Sockets):
    lsock = listener(owned)
    clients = connect(owned, lsock, 10)
    got = []
    for step in range(5):
        result = owned.take((pure if step % 2 else c_drain)(lsock, 2))
        assert result[1:] == (0, 0)
        got += [addr for _, addr in result[0]]
    assert got == [peer_of(c) for c in clients]
    assert pure(lsock, 5) == c_drain(lsock, 5) == ([], 0, errno.EAGAIN)


def test_reset_before_accept_is_still_returned(owned: Sockets, drain: Drain):
    """Linux keeps a connection the client reset in the accept queue and
    returns it; getpeername then fails and the first read gives ECONNRESET.
    The drain must return it like any other (not skip, not stop)."""
    lsock = listener(owned)
    clients = connect(owned, lsock, 12)
    expected = [peer_of(c) for c in clients]
    reset = set(range(0, 12, 3))
    for i in sorted(reset):
        clients[i].setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, LINGER_RST)
        clients[i].close()  # RST
    accepted, skipped, err = owned.take(drain(lsock, 100))
    assert (skipped, err) == (0, errno.EAGAIN)
    assert [addr for _, addr in accepted] == expected
    for i, (fd, _) in enumerate(accepted):
        sock = socket.socket(lsock.family, socket.SOCK_STREAM, 0, fileno=os.dup(fd))
        with sock:
            sock.settimeout(0)
            if i in reset:  # proves the RST really came before accept
                with pytest.raises(ConnectionResetError):
                    sock.recv(1)
            else:
                with pytest.raises(BlockingIOError):
                    sock.recv(1)


@pytest.mark.parametrize("code, skip", [(errno.EINVAL, True), (errno.EINVAL, False)])
def test_skipped_errors_count_towards_max_accepts(owned: Sockets, monkeypatch: pytest.MonkeyPatch,
                                                  drain: Drain, code: int, skip: bool):
    """A queue of connections that all fail must still end the drain after
    max_accepts attempts. The kernel will not abort connections on demand,
    so the test declares EINVAL (accept on a socket that is not listening)
    a per-connection error, which puts both drains on their skip path."""
    skip_set = ACCEPT_SKIP | {code} if skip else ACCEPT_SKIP - {code}
    monkeypatch.setattr(_accept, "ACCEPT_SKIP", skip_set)  # c_drain builds its drainer with it
    sock = owned.add(socket.socket())
    sock.setblocking(False)  # bound to nothing, not listening: accept gives EINVAL
    assert drain(sock, 5) == (([], 5, 0) if skip else ([], 0, errno.EINVAL))


def test_a_broken_listener_ends_the_drain_with_its_errno(owned: Sockets, drain: Drain):
    sock = listener(owned)
    other = owned.add(socket.socket())
    os.dup2(other.fileno(), sock.fileno())  # same fd number, now a socket that is not listening
    assert drain(sock, 5) == ([], 0, errno.EINVAL)


def _fds_at_limit_script(mode: str) -> str:
    return textwrap.dedent(f"""
        import errno, json, os, resource, socket, sys, time
        from reactor import kernel, native
        from reactor._net.accept import NativeDrainer, drain_pure

        def open_fds():
            fds = set()
            for name in os.listdir("/proc/self/fd"):
                try:
                    os.fstat(int(name))
                except OSError:
                    continue
                fds.add(int(name))
            return fds

        def drain(sock, n):
            if {mode!r} == "pure":
                return drain_pure(sock._accept, n)
            return drainer.drain(sock.fileno(), n)

        drainer = NativeDrainer() if {mode!r} == "native" else None
        lsock = socket.socket()
        lsock.bind(("127.0.0.1", 0))
        lsock.listen(64)
        lsock.setblocking(False)
        clients = [socket.create_connection(lsock.getsockname()) for _ in range(20)]
        deadline = time.monotonic() + 5
        while kernel.listen_queue(lsock)[0] < 20 and time.monotonic() < deadline:
            time.sleep(0.001)
        assert kernel.listen_queue(lsock)[0] == 20, "the kernel did not queue the 20 connections"
        drain(lsock, 0)
        before = open_fds()
        soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
        limit = max(before) + 1 + 5  # fds are numbered from the lowest free one
        available = limit - len([fd for fd in before if fd < limit])
        resource.setrlimit(resource.RLIMIT_NOFILE, (limit, hard))
        accepted, skipped, err = drain(lsock, 100)
        resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))
        after = open_fds()
        got = {{fd for fd, _ in accepted}}
        report = dict(available=available, accepted=len(accepted), skipped=skipped, err=err,
                      leaked=sorted(after - before - got), lost=sorted((before | got) - after))
        for fd in got:
            os.close(fd)
        rest = drain(lsock, 100)
        report["rest"] = [len(rest[0]), rest[1], rest[2]]
        for fd, _ in rest[0]:
            os.close(fd)
        print(json.dumps(report))
    """)


@pytest.mark.parametrize("mode", ["pure", pytest.param("native", marks=needs_native)])
def test_emfile_mid_batch_returns_what_was_accepted(mode: str):
    """Out of fds after a few accepts: those come back with errno EMFILE,
    no fd is leaked or lost, and the rest stay queued for later. In a child
    process, because it lowers RLIMIT_NOFILE."""
    proc = subprocess.run([sys.executable, "-c", _fds_at_limit_script(mode)], capture_output=True, text=True,
                          timeout=60)
    assert proc.returncode == 0, proc.stderr
    report = json.loads(proc.stdout)
    assert report["available"] >= 5
    assert report["err"] == errno.EMFILE
    assert (report["accepted"], report["skipped"]) == (report["available"], 0)
    assert report["leaked"] == [] and report["lost"] == []
    assert report["rest"] == [20 - report["available"], 0, errno.EAGAIN]


# ---------------------------------------------------------------- addresses


def _ipv6_loopback() -> bool:
    if not socket.has_ipv6:
        return False
    try:
        with socket.socket(socket.AF_INET6) as s:
            s.bind(("::1", 0))
    except OSError:
        return False
    return True


needs_ipv6 = pytest.mark.skipif(not _ipv6_loopback(), reason="no IPv6 loopback (::1) here")


def test_ipv4_peers_from_several_source_addresses(owned: Sockets, drain: Drain):
    lsock = listener(owned)
    # Several client hosts: exercises the per-host string cache of the C side.
    clients = connect(owned, lsock, 6, bind=lambda i: (f"127.0.0.{2 + i % 3}", 0))
    accepted, _, _ = owned.take(drain(lsock, 16))
    assert [addr for _, addr in accepted] == [peer_of(c) for c in clients]
    assert {addr[0] for _, addr in accepted} == {"127.0.0.2", "127.0.0.3", "127.0.0.4"}


def test_peers_of_one_host_share_its_host_string(owned: Sockets, drain: Drain):
    """An idle connection keeps its peer address: one host string per host,
    not one per connection (64 bytes each)."""
    lsock = listener(owned)
    connect(owned, lsock, 4, bind=lambda i: (f"127.0.0.{2 + i % 2}", 0))
    accepted, _, _ = owned.take(drain(lsock, 16))
    hosts = [addr[0] for _, addr in accepted]
    assert hosts == ["127.0.0.2", "127.0.0.3", "127.0.0.2", "127.0.0.3"]
    assert hosts[0] is hosts[2] and hosts[1] is hosts[3]


def test_the_pure_drains_host_cache_is_bounded(owned: Sockets, monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setattr(_accept, "HOST_CACHE_SIZE", 2)
    lsock = listener(owned)
    clients = connect(owned, lsock, 5, bind=lambda i: (f"127.0.0.{2 + i}", 0))
    hosts: dict[str, str] = {}
    accepted, _, _ = owned.take(drain_pure(lsock._accept, 16, hosts=hosts))
    assert [addr for _, addr in accepted] == [peer_of(c) for c in clients]
    assert len(hosts) <= 2


@needs_ipv6
def test_ipv6_peers(owned: Sockets, drain: Drain):
    lsock = listener(owned, socket.AF_INET6, ("::1", 0))
    clients = connect(owned, lsock, 3)
    accepted, _, err = owned.take(drain(lsock, 16))
    assert err == errno.EAGAIN
    addresses = [addr for _, addr in accepted]
    assert addresses == [peer_of(c) for c in clients]
    assert all(len(a) == 4 and a[0] == "::1" for a in addresses)


@needs_ipv6
def test_ipv4_mapped_peers_on_an_ipv6_listener(owned: Sockets, drain: Drain):
    lsock = owned.add(socket.socket(socket.AF_INET6))
    lsock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 0)
    try:
        lsock.bind(("::ffff:127.0.0.1", 0))
    except OSError as exc:
        pytest.skip(f"cannot bind an IPv4-mapped address: {exc}")
    lsock.listen(16)
    lsock.setblocking(False)
    client = owned.add(socket.create_connection(("127.0.0.1", lsock.getsockname()[1])))
    wait_queued(lsock, 1)
    accepted, _, _ = owned.take(drain(lsock, 4))
    host, port = client.getsockname()
    assert [addr for _, addr in accepted] == [("::ffff:" + host, port, 0, 0)]


def test_unix_peers(owned: Sockets, drain: Drain, tmp_path):
    """CPython's forms: '' for an unbound client, a str path (undecodable
    bytes as surrogate escapes), bytes for the abstract namespace (leading
    NUL and any embedded NUL kept)."""
    lsock = listener(owned, socket.AF_UNIX, str(tmp_path / "listener"))
    names: list[object] = [
        None,                                               # unbound
        str(tmp_path / "named-client"),                     # a path
        os.fsdecode(bytes(tmp_path / "caf") + b"\xe9"),     # not valid UTF-8
        b"\0reactor-test-%d\0tail" % os.getpid(),           # abstract, with an embedded NUL
        "",                                                 # autobind: a kernel-chosen abstract name
    ]
    clients = connect(owned, lsock, len(names), bind=names.__getitem__)
    accepted, _, err = owned.take(drain(lsock, 16))
    assert err == errno.EAGAIN
    addresses = [addr for _, addr in accepted]
    assert addresses == [peer_of(c) for c in clients]
    assert addresses[0] == ""
    assert isinstance(addresses[2], str) and addresses[2].endswith("caf\udce9")
    assert addresses[3] == names[3]
    assert isinstance(addresses[4], bytes) and addresses[4][:1] == b"\0"


def test_fd_flags_nonblocking_and_cloexec(owned: Sockets, drain: Drain):
    lsock = listener(owned)
    connect(owned, lsock, 2)
    accepted, _, _ = owned.take(drain(lsock, 16))
    assert len(accepted) == 2
    for fd, _ in accepted:
        assert fcntl.fcntl(fd, fcntl.F_GETFD) & fcntl.FD_CLOEXEC  # CPython accepts with SOCK_CLOEXEC too
        nonblocking = bool(fcntl.fcntl(fd, fcntl.F_GETFL) & os.O_NONBLOCK)
        # The C drain uses accept4(SOCK_NONBLOCK): the listener's transports
        # skip the setblocking() call. socket._accept gives blocking fds.
        assert nonblocking == (drain is c_drain)


def test_fds_above_1024(owned: Sockets, drain: Drain):
    """fds beyond FD_SETSIZE are ordinary for accept4(); nothing in the drain
    may use an fd_set or a 1024-slot table."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft != resource.RLIM_INFINITY and soft < 1200:
        if hard != resource.RLIM_INFINITY and hard < 1200:
            pytest.skip(f"RLIMIT_NOFILE hard limit {hard} is below 1200")
        resource.setrlimit(resource.RLIMIT_NOFILE, (1200, hard))
    lsock = listener(owned)
    clients = connect(owned, lsock, 3)
    filler: list[int] = []
    try:
        # Occupy every free fd below 1024: the kernel hands out the lowest
        # free number, so the accepted ones must land above.
        base = os.open(os.devnull, os.O_RDONLY)
        filler.append(base)
        while filler[-1] < 1023:
            filler.append(os.dup(base))
        accepted, _, err = owned.take(drain(lsock, 16))
    finally:
        for fd in filler:
            os.close(fd)
        if soft != resource.getrlimit(resource.RLIMIT_NOFILE)[0]:
            resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))
    assert err == errno.EAGAIN
    assert [addr for _, addr in accepted] == [peer_of(c) for c in clients]
    assert all(fd >= 1024 for fd, _ in accepted)
    for (fd, _), client in zip(accepted, clients, strict=False):
        client.sendall(b"x")
        assert os.read(fd, 1) == b"x"


# ---------------------------------------------------------- native specifics


@needs_native
def test_a_failure_while_decoding_closes_the_accepted_fds(owned: Sockets, monkeypatch: pytest.MonkeyPatch):
    drainer = NativeDrainer()
    lsock = listener(owned)
    connect(owned, lsock, 3)
    before = open_fds()

    def broken(n: int, family: int) -> list:
        raise MemoryError

    monkeypatch.setattr(drainer, "_decode", broken)
    with pytest.raises(MemoryError):
        drainer.drain(lsock.fileno(), 16)
    assert open_fds() == before  # accepted, then closed: none leaked
    assert kernel.listen_queue(lsock)[0] == 0


@needs_native
def test_threads_drain_one_listener_with_their_own_buffers(owned: Sockets):
    """cffi releases the GIL during the C call, so two threads draining at
    once would overwrite each other's results if they shared buffers."""
    lsock = listener(owned, backlog=1024)
    total = 600
    connect(owned, lsock, total)
    results: list[list[tuple[int, object]]] = [[], []]
    go = threading.Event()

    def work(slot: int) -> None:
        drainer = NativeDrainer()  # one per thread: cffi releases the GIL in the C call
        go.wait(5)
        while True:
            accepted, _, err = drainer.drain(lsock.fileno(), 8)
            results[slot] += accepted
            if err == errno.EAGAIN:
                return

    threads = [threading.Thread(target=work, args=(i,)) for i in range(2)]
    for t in threads:
        t.start()
    go.set()
    for t in threads:
        t.join(10)
        assert not t.is_alive()
    got = results[0] + results[1]
    owned.fds.update(fd for fd, _ in got)
    assert len(got) == total
    assert len({fd for fd, _ in got}) == total  # no fd reported twice
    for fd, addr in got:  # each fd's address is its own peer's
        with socket.socket(fileno=os.dup(fd)) as s:
            assert s.getpeername() == addr
