"""TLS on the native API (reactor/_net/tls.py): listen(ssl=) and connect(ssl=)
over real loopback sockets, with certificates the run makes (tests/tlscerts.py).

What each test catches: a handshake that blocks or never finishes; a close
without close_notify; a failed handshake that leaks its fd, hangs the
connect attempt, floods the log or goes uncounted; a silent client that
holds an fd past the handshake timeout; unbounded buffering or lost bytes
under a slow reader; a protocol error ending other connections; the PROXY
header in front of TLS; the loop closing with TLS connections open.
"""

from __future__ import annotations

import logging
import os
import socket
import ssl
import threading
import time
from typing import Any

import pytest

import reactor
from reactor.errors import ReactorStateError

from ..support import Factory, Recorder, open_fds, record_moves, run_for, run_until
from ..tlscerts import Certs, client_context, make_certs, server_context


@pytest.fixture(scope="session")
def certs(tmp_path_factory: pytest.TempPathFactory) -> Certs:
    return make_certs(tmp_path_factory.mktemp("certs"))


class Echo(reactor.Protocol):
    """Echoes, and stops reading while its writes are paused (bounded memory)."""

    def connection_made(self, transport: Any) -> None:
        self.transport = transport
        self.lost: list[Any] = []
        self.peername = transport.get_extra_info("peername")
        self.proxy = transport.get_extra_info("proxy")

    def data_received(self, data: bytes) -> None:
        self.transport.write(data)

    def pause_writing(self) -> None:
        self.transport.pause_reading()

    def resume_writing(self) -> None:
        self.transport.resume_reading()

    def connection_lost(self, exc: Any) -> None:
        self.lost.append(exc)


def tls_listen(loop: reactor.Reactor, certs: Certs, factory: Any = Echo, **options: Any) -> reactor.Listener:
    return loop.listen(factory, ssl=server_context(certs.cert, certs.key), **options)


def tls_connect(loop: reactor.Reactor, port: int, certs: Certs, factory: Any = Recorder, *,
                host: str = "127.0.0.1", **options: Any) -> Any:
    attempt = loop.connect(factory, host, port, ssl=client_context(certs.ca), **options)
    run_until(loop, attempt.done)
    return attempt


def test_echo_round_trip_and_extra_info(loop, certs):
    lst = tls_listen(loop, certs)
    attempt = tls_connect(loop, lst.address[1], certs)
    transport, client = attempt.result()
    assert client.made == 1 and client.transport is transport
    transport.write(b"ping")
    run_until(loop, lambda: bytes(client.data) == b"ping")
    assert isinstance(transport.get_extra_info("ssl_object"), ssl.SSLObject)
    subject = dict(item for rdn in transport.get_extra_info("peercert")["subject"] for item in rdn)
    assert subject["commonName"] == "localhost"
    assert transport.get_extra_info("cipher")[1].startswith("TLS")
    assert transport.get_extra_info("peername") == lst.address
    assert not transport.can_write_eof()
    transport.close()
    run_until(loop, lambda: client.lost == [None] and lst.stats.active == 0)
    assert lst.stats.tls_failed == 0


def test_a_tls_connect_attempt_moves_through_its_handshake(loop, certs, monkeypatch):
    from reactor._net.connector import ConnectAttempt

    moves = record_moves(monkeypatch, ConnectAttempt)
    lst = tls_listen(loop, certs)
    attempt = tls_connect(loop, lst.address[1], certs)
    attempt.result()[0].close()
    assert moves == [("resolving", "resolved", "connecting"), ("connecting", "handshake", "handshaking"),
                     ("handshaking", "succeed", "connected")]
    run_until(loop, lambda: lst.stats.active == 0)


def test_close_sends_close_notify_after_the_data(loop, certs):
    class SayBye(reactor.Protocol):
        def connection_made(self, transport: Any) -> None:
            transport.write(b"bye" * 1000)
            transport.close()

    lst = tls_listen(loop, certs, SayBye)
    _transport, client = tls_connect(loop, lst.address[1], certs).result()
    run_until(loop, lambda: bool(client.lost))
    # every byte, then the peer's close_notify (eof_received), then the end
    assert bytes(client.data) == b"bye" * 1000
    assert client.events[-2:] == ["eof", "lost"] and client.lost == [None]


def test_close_notify_as_openssl_reads_it(loop, certs):
    # Python's ssl module (OpenSSL) reads b"" only after a close_notify; a
    # bare FIN raises SSLEOFError ("unexpected eof while reading").
    class SayBye(reactor.Protocol):
        def connection_made(self, transport: Any) -> None:
            transport.write(b"bye")
            transport.close()

    lst = tls_listen(loop, certs, SayBye)
    outcome: list[Any] = []

    def client() -> None:
        try:
            with socket.create_connection(lst.address, timeout=5) as sock, \
                    client_context(certs.ca).wrap_socket(sock, server_hostname="localhost") as tls:
                data = b""
                while chunk := tls.recv(100):
                    data += chunk
                outcome.append(data)
        except Exception as exc:
            outcome.append(exc)

    thread = threading.Thread(target=client, daemon=True)
    thread.start()
    run_until(loop, lambda: bool(outcome), timeout=10)
    thread.join(5)
    assert outcome == [b"bye"]


def test_write_after_close_raises_and_no_half_close(loop, certs):
    lst = tls_listen(loop, certs)
    transport, client = tls_connect(loop, lst.address[1], certs).result()
    with pytest.raises(ReactorStateError):
        transport.write_eof()
    with pytest.raises(TypeError):
        transport.write("text")
    transport.close()
    with pytest.raises(ReactorStateError):
        transport.write(b"late")
    run_until(loop, lambda: bool(client.lost))


def test_abort_resets_the_connection(loop, certs):
    """abort() on a TLS transport is a reset, as on plain TCP: after it the
    kernel keeps no socket on our side (a FIN would leave one in FIN_WAIT2
    while the peer stays silent). asyncio's layer ends its transport with a
    plain close from Python 3.13."""
    class AbortOnData(reactor.Protocol):
        # aborts once it has read what the client sent: nothing is left unread,
        # which would turn a plain close into a reset by itself
        def __init__(self) -> None:
            self.lost: list[Any] = []

        def connection_made(self, transport: Any) -> None:
            self.transport = transport

        def data_received(self, data: bytes) -> None:
            self.transport.abort()

        def connection_lost(self, exc: Any) -> None:
            self.lost.append(exc)

    server = Factory(AbortOnData)
    lst = tls_listen(loop, certs, server)
    ends: list[Any] = []
    done = threading.Event()

    def client() -> None:
        try:
            with socket.create_connection(lst.address, timeout=5) as sock, \
                    client_context(certs.ca).wrap_socket(sock, server_hostname="localhost") as tls:
                ends.append(tls.getsockname())
                tls.sendall(b"ping")
                done.wait(10)  # silent until the test has looked: our TLS stack writes nothing
        except Exception as exc:
            ends.append(exc)

    thread = threading.Thread(target=client, daemon=True)
    thread.start()
    try:
        run_until(loop, lambda: bool(server.protocols) and server.protocols[0].lost == [None], timeout=10)
        assert isinstance(ends[0], tuple), ends
        ours = reactor.kernel.tcp_socket(lst.address, ends[0])
        assert ours is None, f"our end is still there, in {ours.state}: the close was a FIN, not a reset"
    finally:
        done.set()
        thread.join(5)


@pytest.mark.parametrize("case", ["untrusted", "wrong-name"])
def test_bad_certificate_fails_the_connect_and_releases_the_fd(loop, certs, case):
    if case == "untrusted":
        lst = loop.listen(Echo, ssl=server_context(certs.untrusted_cert, certs.untrusted_key))
        options: dict[str, Any] = {}
    else:
        lst = tls_listen(loop, certs)
        options = {"server_hostname": "example.com"}
    before = open_fds()
    factory = Factory()
    attempt = tls_connect(loop, lst.address[1], certs, factory, **options)
    assert isinstance(attempt.exception(), ssl.SSLCertVerificationError)
    assert factory.made == 0  # never told connection_made
    # the client's socket is closed (the server's end may still be open)
    assert open_fds() <= before | {c._fd for c in lst.connections()}
    # the server counts the failed handshake (the client's alert ends it)
    run_until(loop, lambda: lst.stats.tls_failed == 1 and lst.stats.active == 0)


def test_silent_clients_are_dropped_after_the_handshake_timeout_and_logged_once(loop, certs, clients, caplog):
    lst = tls_listen(loop, certs, ssl_handshake_timeout=0.3)
    silent = [clients.connect(lst.address) for _ in range(2)]
    start = time.monotonic()
    with caplog.at_level(logging.DEBUG, logger="reactor.listener"):
        run_until(loop, lambda: lst.stats.tls_failed == 2 and lst.stats.active == 0, timeout=5)
    assert time.monotonic() - start >= 0.3
    for sock in silent:
        sock.settimeout(1)
        assert sock.recv(1) == b""  # closed by the server
    warnings = [r for r in caplog.records if r.name == "reactor.listener" and r.levelno == logging.WARNING]
    assert len(warnings) == 1 and "tls_failed" in warnings[0].getMessage()


def test_a_plain_text_client_is_refused_and_counted(loop, certs, clients):
    lst = tls_listen(loop, certs)
    sock = clients.connect(lst.address)
    sock.sendall(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
    run_until(loop, lambda: lst.stats.tls_failed == 1 and lst.stats.active == 0)


class BulkClient(reactor.Protocol):
    """Sends ``total`` bytes of a known pattern as fast as backpressure lets
    it, reads the echo slowly (pausing after every MiB) and checks every byte."""

    CHUNK = 256 * 1024

    def __init__(self, loop: reactor.Reactor, pattern: bytes, total: int) -> None:
        self.loop = loop
        self.pattern = pattern
        self.total = total
        self.sent = 0
        self.received = 0
        self.mismatch: int | None = None
        self.paused = False
        self.pauses = 0
        self.lost: list[Any] = []

    def connection_made(self, transport: Any) -> None:
        self.transport = transport
        self._send()

    def _send(self) -> None:
        size = len(self.pattern)
        while not self.paused and self.sent < self.total:
            offset = self.sent % size
            chunk = self.pattern[offset:offset + min(self.CHUNK, self.total - self.sent)]
            self.transport.write(chunk)
            self.sent += len(chunk)

    def pause_writing(self) -> None:
        self.paused = True
        self.pauses += 1

    def resume_writing(self) -> None:
        self.paused = False
        self._send()

    def data_received(self, data: bytes) -> None:
        size = len(self.pattern)
        start = self.received % size
        expected = (self.pattern[start:] + self.pattern)[:len(data)] if start + len(data) > size \
            else self.pattern[start:start + len(data)]
        if data != expected and self.mismatch is None:
            self.mismatch = self.received
        before = self.received // (1 << 20)
        self.received += len(data)
        if self.received // (1 << 20) != before:
            self.transport.pause_reading()  # the slow reader
            self.loop.call_later(0.002, self.transport.resume_reading)

    def connection_lost(self, exc: Any) -> None:
        self.lost.append(exc)


def test_64_mib_echo_is_byte_exact_with_a_slow_reader_and_bounded_memory(certs):
    loop = reactor.Reactor(backend="epoll" if "epoll" in reactor.available_backends() else None)
    try:
        servers = Factory(Echo)
        lst = tls_listen(loop, certs, servers)
        pattern = os.urandom(1 << 20) + b"tail"  # not a divisor of the chunk: offsets move
        total = 64 << 20
        attempt = tls_connect(loop, lst.address[1], certs, lambda: BulkClient(loop, pattern, total))
        client = attempt.result()[1]
        peak = 0

        def buffered() -> int:
            # Everything the server holds for this connection: its protocol's
            # queue in the TLS layer, the encrypted bytes not yet sent, the
            # ciphertext read but not yet decrypted.
            raw = lst.connections()[0]
            layer = raw.get_protocol()
            return raw.get_write_buffer_size() + layer._get_write_buffer_size() + layer._incoming.pending

        def sample() -> None:
            nonlocal peak
            if lst.connections():
                peak = max(peak, buffered())
                loop.call_later(0.005, sample)

        loop.call_soon(sample)
        run_until(loop, lambda: client.received >= total or client.mismatch is not None or bool(client.lost),
                  timeout=120)
        assert client.mismatch is None and client.received == total and client.lost == []
        assert client.pauses > 0  # backpressure reached the writer through the TLS layer
        # asyncio's TLS water marks: 512 KiB of writes, 256 KiB of reads,
        # plus the plain transport's 64 KiB and one read in flight
        assert peak < 2 << 20, f"the server buffered {peak} bytes"
        attempt.result()[0].close()
        run_until(loop, lambda: client.lost == [None])
    finally:
        loop.close()


def test_a_failing_protocol_ends_only_its_own_connection(loop, certs, errors):
    class Fragile(Echo):
        def data_received(self, data: bytes) -> None:
            if data == b"boom":
                raise RuntimeError("boom")
            super().data_received(data)

    lst = tls_listen(loop, certs, Fragile)
    first, first_client = tls_connect(loop, lst.address[1], certs).result()
    second, second_client = tls_connect(loop, lst.address[1], certs).result()
    first.write(b"boom")
    run_until(loop, lambda: bool(first_client.lost))
    second.write(b"still here")
    run_until(loop, lambda: bytes(second_client.data) == b"still here")
    [context] = errors.take()
    assert isinstance(context["exception"], RuntimeError)
    second.close()
    run_until(loop, lambda: bool(second_client.lost))


def test_cancel_in_the_middle_of_the_handshake_closes_the_socket(loop, certs):
    mute = Factory()  # a plain TCP server that never answers the ClientHello
    lst = loop.listen(mute)
    before = open_fds()
    attempt = loop.connect(Recorder, "127.0.0.1", lst.address[1], ssl=client_context(certs.ca))
    run_until(loop, lambda: mute.made == 1)
    assert not attempt.done()  # connected, still shaking hands
    assert attempt.cancel()
    assert open_fds() <= before | {p.transport._fd for p in mute.protocols}
    run_until(loop, lambda: mute.lost == 1)  # the server sees the close


def test_a_connect_handshake_timeout_fails_the_attempt(loop, certs):
    lst = loop.listen(Factory())  # never answers
    before = open_fds()
    attempt = loop.connect(Recorder, "127.0.0.1", lst.address[1], ssl=client_context(certs.ca),
                           ssl_handshake_timeout=0.2)
    run_until(loop, attempt.done)
    assert isinstance(attempt.exception(), TimeoutError)
    run_for(loop, 0.05)
    server_fds = {c._fd for c in lst.connections()}
    assert open_fds() <= before | server_fds


def test_closing_the_reactor_tells_every_tls_protocol(certs):
    loop = reactor.Reactor()
    servers = Factory(Echo)
    lst = tls_listen(loop, certs, servers)
    _, client = tls_connect(loop, lst.address[1], certs).result()
    run_until(loop, lambda: len(servers.protocols) == 1 and hasattr(servers.protocols[0], "transport"))
    loop.close()
    assert client.lost and servers.protocols[0].lost


def test_proxy_header_in_the_clear_then_tls(loop, certs):
    servers = Factory(Echo)
    lst = tls_listen(loop, certs, servers, proxy_protocol=True)
    replies: list[Any] = []

    def client() -> None:
        # what HAProxy's send-proxy does in front of a TLS server
        with socket.create_connection(lst.address, timeout=5) as sock:
            sock.sendall(b"PROXY TCP4 192.0.2.1 127.0.0.1 4242 443\r\n")
            with client_context(certs.ca).wrap_socket(sock, server_hostname="localhost") as tls:
                tls.sendall(b"hello")
                replies.append(tls.recv(5))

    thread = threading.Thread(target=client, daemon=True)
    thread.start()
    run_until(loop, lambda: bool(replies) or not thread.is_alive(), timeout=10)
    thread.join(5)
    assert replies == [b"hello"]
    [server] = servers.protocols
    assert server.peername == ("192.0.2.1", 4242) and server.proxy.version == 1
    run_until(loop, lambda: lst.stats.active == 0)


@pytest.mark.parametrize("options, error", [
    ({"ssl": "yes"}, TypeError),
    ({"ssl": True}, ValueError),  # a server needs a certificate
    ({"ssl_handshake_timeout": 5.0}, ValueError),  # without ssl
    ({"ssl_shutdown_timeout": 5.0}, ValueError),
    ({"ssl": "ctx", "ssl_handshake_timeout": 0}, ValueError),
    ({"ssl": "ctx", "ssl_handshake_timeout": "5"}, TypeError),
    ({"ssl": "ctx", "ssl_shutdown_timeout": float("inf")}, ValueError),
])
def test_listen_arguments(loop, certs, options, error):
    if options.get("ssl") == "ctx":
        options["ssl"] = server_context(certs.cert, certs.key)
    with pytest.raises(error) as info:
        loop.listen(Echo, **options)
    assert "ssl" in str(info.value)


@pytest.mark.parametrize("options, error", [
    ({"ssl": object()}, TypeError),
    ({"server_hostname": "x"}, ValueError),  # without ssl
    ({"ssl_handshake_timeout": 1.0}, ValueError),
    ({"ssl": True, "server_hostname": 5}, TypeError),
    ({"ssl": True, "ssl_handshake_timeout": -1}, ValueError),
])
def test_connect_arguments(loop, options, error):
    with pytest.raises(error) as info:
        loop.connect(Recorder, "127.0.0.1", 9, **options)
    assert "ssl" in str(info.value) or "server_hostname" in str(info.value)


def test_an_idle_tls_connection_holds_no_receive_buffer_of_its_own(loop, certs):
    # asyncio's TLS layer allocates 256 KiB per connection for its reads;
    # ours lend the reactor's one buffer (tls.py): 30 idle pairs must cost
    # kilobytes per connection, not a quarter of a MiB.
    import tracemalloc

    servers = Factory()
    lst = tls_listen(loop, certs, servers)
    pairs = 30
    tracemalloc.start()
    try:
        before = tracemalloc.take_snapshot()
        attempts = [loop.connect(Recorder, "127.0.0.1", lst.address[1], ssl=client_context(certs.ca))
                    for _ in range(pairs)]
        run_until(loop, lambda: all(a.done() for a in attempts) and servers.made == pairs, timeout=20)
        grown = sum(stat.size_diff for stat in tracemalloc.take_snapshot().compare_to(before, "filename"))
    finally:
        tracemalloc.stop()
    assert all(a.exception() is None for a in attempts)
    per_end = grown / (2 * pairs)
    assert per_end < 64 * 1024, f"{per_end / 1024:.0f} KiB per TLS connection end"
    for attempt in attempts:
        attempt.result()[0].close()
    run_until(loop, lambda: lst.stats.active == 0)


# ----------------------------------------- asyncio.sslproto's private names


def test_the_sslproto_internals_the_layer_uses_are_this_pythons():
    """reactor/_net/tls.py overrides and reads private names of asyncio's
    TLS layer; a CPython that renames one fails here, naming it."""
    import inspect
    from asyncio import sslproto

    def parameters(name: str) -> list[str]:
        return list(inspect.signature(getattr(sslproto.SSLProtocol, name)).parameters)

    assert parameters("_get_app_transport") == ["self"]
    assert parameters("_on_handshake_complete") == ["self", "handshake_exc"]
    assert parameters("_check_handshake_timeout") == ["self"]
    assert parameters("_call_eof_received") == ["self"]
    assert parameters("connection_lost") == ["self", "exc"]
    assert parameters("_start_shutdown") == ["self"]
    assert isinstance(sslproto.SSLProtocol.max_size, int)
    assert sslproto.SSLProtocolState.WRAPPED and sslproto.SSLProtocolState.DO_HANDSHAKE
    assert sslproto.AppProtocolState.STATE_CON_MADE and sslproto.AppProtocolState.STATE_EOF
    # (made, asyncio's layer and app transport warn when collected unclosed:
    # their constructors' source says which attributes they set)
    made = inspect.getsource(sslproto.SSLProtocol.__init__) + inspect.getsource(sslproto.SSLProtocol._set_state)
    for name in ("_state", "_app_state", "_app_transport", "_app_transport_created", "_extra", "_ssl_buffer",
                 "_ssl_buffer_view", "_transport"):
        assert f"self.{name} =" in made, name
    assert "self._closed = False" in inspect.getsource(sslproto._SSLProtocolTransport.__init__)
