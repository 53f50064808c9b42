"""reactor.aio's own promises, beyond what CPython's conformance mixins check:
how the loop is made and chosen, that servers accept through reactor's
listeners (and say so in ``.stats``), that transports are the asyncio kinds
aiohttp and sslproto need, and the kernel cases handled better than asyncio's
selector loop does (a Unix connect to a full backlog)."""

from __future__ import annotations

import asyncio
import gc
import os
import socket
import ssl
import tempfile

import pytest

import reactor
import reactor.aio
from reactor.aio.transports import StreamTransport

from ..support import LOOP_BACKENDS, open_fds

NATIVE = [True, False] if reactor.native_available() else [False]


def run(coro, **kwargs):
    return reactor.aio.run(coro, **kwargs)


# ------------------------------------------------------------------ the loop

def test_new_event_loop_with_no_arguments_is_a_loop_factory():
    with asyncio.Runner(loop_factory=reactor.aio.new_event_loop) as runner:
        loop = runner.get_loop()
        assert isinstance(loop, asyncio.AbstractEventLoop)
        assert isinstance(loop, reactor.aio.ReactorEventLoop)
        assert loop.backend in reactor.available_backends()
        assert runner.run(asyncio.sleep(0, result=42)) == 42


@pytest.mark.parametrize("backend", LOOP_BACKENDS)
def test_backend_and_native_are_what_was_asked(backend):
    for native in NATIVE:
        loop = reactor.aio.new_event_loop(backend=backend, native=native)
        try:
            assert (loop.backend, loop.native) == (backend, native)
        finally:
            loop.close()


def test_reactor_backend_from_the_environment(monkeypatch):
    monkeypatch.setenv("REACTOR_BACKEND", "poll")
    loop = reactor.aio.new_event_loop()
    try:
        assert loop.backend == "poll"
    finally:
        loop.close()
    monkeypatch.setenv("REACTOR_BACKEND", "nonsense")
    with pytest.raises(ValueError, match="REACTOR_BACKEND|nonsense"):
        reactor.aio.new_event_loop()


def test_run_closes_the_loop_and_returns_the_result():
    loops = []

    async def main():
        loops.append(asyncio.get_running_loop())
        return "done"

    assert run(main(), backend="select") == "done"
    assert loops[0].is_closed() and loops[0].backend == "select"


def test_closing_the_loop_releases_every_fd():
    before = open_fds()

    kept = []  # the server's side too, or 3.15's StreamWriter.__del__ warns while the loop runs

    async def main():
        server = await asyncio.start_server(lambda r, w: kept.append(w), "127.0.0.1", 0)
        port = server.sockets[0].getsockname()[1]
        _reader, writer = await asyncio.open_connection("127.0.0.1", port)
        writer.write(b"x")
        return server, writer  # left open: the loop's close must release them

    loop = reactor.aio.new_event_loop()
    server, writer = loop.run_until_complete(main())
    server.close()
    writer.close()
    loop.run_until_complete(asyncio.sleep(0.01))
    loop.close()
    assert open_fds() - before == set()
    assert all(w.transport.is_closing() for w in kept)


# ------------------------------------------------------------------ servers

@pytest.mark.parametrize("native", NATIVE)
def test_servers_accept_through_reactor_listeners(native):
    async def main():
        async def echo(reader, writer):
            writer.write(await reader.readexactly(5))
            await writer.drain()
            writer.close()

        server = await asyncio.start_server(echo, "127.0.0.1", 0)
        port = server.sockets[0].getsockname()[1]
        for _ in range(3):
            reader, writer = await asyncio.open_connection("127.0.0.1", port)
            writer.write(b"hello")
            assert await reader.read() == b"hello"
            writer.close()
            await writer.wait_closed()
        stats = server.stats
        server.close()
        await server.wait_closed()
        return stats

    stats = run(main(), native=native)
    assert isinstance(stats, reactor.ListenerStats)
    assert stats.accepted == 3 and stats.wakeups >= 1 and stats.active == 0


def test_stats_add_up_over_every_listening_socket():
    async def main():
        server = await asyncio.start_server(lambda r, w: w.close(), ["127.0.0.1", "::1"], 0)
        ports = [s.getsockname()[:2] for s in server.sockets]
        for host, port in ports:
            reader, writer = await asyncio.open_connection(host, port)
            await reader.read()
            writer.close()
        stats = server.stats
        server.close()
        await server.wait_closed()
        return len(ports), stats

    if not socket.has_ipv6:
        pytest.skip("no IPv6 on this machine")
    try:
        count, stats = run(main())
    except OSError as exc:
        pytest.skip(f"cannot bind ::1 here: {exc}")
    assert count == 2 and stats.accepted == 2


def test_server_stats_sum_every_counter_of_the_stats_type():
    # Each counter a distinct value on two listeners: a counter left out of
    # the sum (a hand-kept list of names drifts) reads 0 in the total.
    from reactor.aio.servers import sum_stats

    class Fake:
        def __init__(self, base):
            self.stats = reactor.ListenerStats()
            for number, name in enumerate(self.stats.__slots__):
                if name != "histogram":
                    setattr(self.stats, name, base + number)
            self.stats.histogram[3] = base

    total = sum_stats([Fake(100), Fake(1000)])
    for number, name in enumerate(total.__slots__):
        if name == "max_batch":
            assert total.max_batch == 1000 + number
        elif name != "histogram":
            assert getattr(total, name) == 1100 + 2 * number, name
    assert total.histogram[3] == 1100


def test_failed_tls_handshakes_are_counted_in_server_stats(tmp_path):
    from ..tlscerts import self_signed

    cert, key = self_signed(tmp_path)
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(cert, key)

    async def main():
        server = await asyncio.start_server(lambda r, w: w.close(), "127.0.0.1", 0, ssl=context)
        port = server.sockets[0].getsockname()[1]
        for _ in range(3):  # not TLS at all: the handshake fails
            reader, writer = await asyncio.open_connection("127.0.0.1", port)
            writer.write(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
            await asyncio.wait_for(reader.read(), 10)
            writer.close()
        stats = server.stats
        server.close()
        await server.wait_closed()
        return stats

    stats = run(main())
    assert stats.accepted == 3 and stats.tls_failed == 3, stats


def test_unix_server_and_connection():
    with tempfile.TemporaryDirectory() as tmp:
        path = os.path.join(tmp, "s")

        async def main():
            async def upper(reader, writer):
                writer.write((await reader.read(100)).upper())
                writer.close()

            server = await asyncio.start_unix_server(upper, path)
            reader, writer = await asyncio.open_unix_connection(path)
            writer.write(b"abc")
            writer.write_eof()
            data = await reader.read()
            writer.close()
            server.close()
            await server.wait_closed()
            return data, server.stats.accepted

        assert run(main()) == (b"ABC", 1)


# --------------------------------------------------------------- transports

def test_connections_are_asyncio_transports_with_reactor_inside():
    seen = {}

    class Probe(asyncio.Protocol):
        def connection_made(self, transport):
            seen["transport"] = transport
            transport.close()

    async def main():
        server = await asyncio.get_running_loop().create_server(Probe, "127.0.0.1", 0)
        port = server.sockets[0].getsockname()[1]
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        await reader.read()
        client = writer.transport
        writer.close()
        server.close()
        await server.wait_closed()
        return client

    client = run(main())
    for transport in (seen["transport"], client):
        assert isinstance(transport, asyncio.Transport)
        assert isinstance(transport, StreamTransport)
        assert isinstance(transport, reactor.Transport)


def test_buffered_protocol_reads_into_its_own_buffer():
    class Collect(asyncio.BufferedProtocol):
        def __init__(self):
            self.buffer = bytearray(7)  # smaller than what arrives: several reads
            self.data = bytearray()
            self.done = asyncio.get_running_loop().create_future()

        def get_buffer(self, sizehint):
            return self.buffer

        def buffer_updated(self, nbytes):
            self.data += self.buffer[:nbytes]

        def eof_received(self):
            self.done.set_result(bytes(self.data))

    payload = os.urandom(10_000)

    async def main():
        async def send(reader, writer):
            writer.write(payload)
            await writer.drain()
            writer.close()

        server = await asyncio.start_server(send, "127.0.0.1", 0)
        port = server.sockets[0].getsockname()[1]
        transport, protocol = await asyncio.get_running_loop().create_connection(Collect, "127.0.0.1", port)
        data = await asyncio.wait_for(protocol.done, 5)
        transport.close()
        server.close()
        await server.wait_closed()
        return data

    assert run(main()) == payload


def test_datagram_endpoint_round_trip():
    class Echo(asyncio.DatagramProtocol):
        def connection_made(self, transport):
            self.transport = transport

        def datagram_received(self, data, addr):
            self.transport.sendto(data[::-1], addr)

    class Client(asyncio.DatagramProtocol):
        def __init__(self):
            self.reply = asyncio.get_running_loop().create_future()

        def datagram_received(self, data, addr):
            self.reply.set_result(data)

    async def main():
        loop = asyncio.get_running_loop()
        server, _ = await loop.create_datagram_endpoint(Echo, local_addr=("127.0.0.1", 0))
        address = server.get_extra_info("sockname")
        client, protocol = await loop.create_datagram_endpoint(Client, remote_addr=address)
        assert isinstance(client, asyncio.DatagramTransport)
        client.sendto(b"abc")
        reply = await asyncio.wait_for(protocol.reply, 5)
        client.close()
        server.close()
        await asyncio.sleep(0)
        return reply

    assert run(main()) == b"cba"


# ------------------------------------------------------------ kernel cases

def test_unix_connect_to_a_full_backlog_waits_for_a_real_connection():
    """Linux: a non-blocking Unix connect to a listener whose backlog is full
    gives EAGAIN and leaves the socket unconnected, yet writable. asyncio's
    selector loop then reports success for a connection that does not exist
    (the first read fails with ENOTCONN); here sock_connect retries until the
    listener has room, and the connection is real."""
    with tempfile.TemporaryDirectory() as tmp:
        path = os.path.join(tmp, "full")
        listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        listener.bind(path)
        listener.listen(0)
        fillers = []
        try:
            # fill the backlog with connections nobody accepts
            while True:
                filler = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
                filler.setblocking(False)
                try:
                    filler.connect(path)
                except BlockingIOError:
                    filler.close()
                    break
                fillers.append(filler)
                assert len(fillers) < 100, "the backlog never filled"

            async def main():
                loop = asyncio.get_running_loop()
                sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
                sock.setblocking(False)
                connect = asyncio.ensure_future(loop.sock_connect(sock, path))
                await asyncio.sleep(0.05)
                assert not connect.done(), "connected to a full backlog"
                # make room: accept the queued connections
                listener.setblocking(False)
                while True:
                    try:
                        conn, _ = listener.accept()
                    except BlockingIOError:
                        break
                    fillers.append(conn)
                await asyncio.wait_for(connect, 5)
                peer = sock.getpeername()
                sock.close()
                return peer

            assert run(main()) == path
        finally:
            for filler in fillers:
                filler.close()
            listener.close()


def test_refused_connect_is_the_builtin_class():
    async def main():
        probe = socket.socket()
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
        probe.close()
        with pytest.raises(ConnectionRefusedError):
            await asyncio.open_connection("127.0.0.1", port)

    run(main())


@pytest.mark.parametrize("family", ["tcp", "unix"])
def test_a_refused_connect_leaves_its_error_to_the_caller_alone(family, tmp_path):
    """Nothing but the caller refers to a refused connect's error once the
    loop has moved on: no cycle error -> traceback -> the loop's callback
    frame -> its future -> error, which only the garbage collector would
    free. TCP on loopback is refused once the socket is writable (the
    watcher's callback); a Unix socket nobody listens on at connect()."""
    async def main():
        loop = asyncio.get_running_loop()
        if family == "tcp":
            probe = socket.socket()
            probe.bind(("127.0.0.1", 0))
            address = probe.getsockname()
            probe.close()
            sock = socket.socket()
        else:
            address = str(tmp_path / "deaf.sock")
            deaf = socket.socket(socket.AF_UNIX)
            deaf.bind(address)  # bound, never listening: connect() is refused at once
            deaf.close()
            sock = socket.socket(socket.AF_UNIX)
        with sock:
            sock.setblocking(False)
            try:
                await loop.sock_connect(sock, address)
            except ConnectionRefusedError as exc:
                error = exc
        await asyncio.sleep(0)  # the loop has moved on (asyncio's own handles are gone too)
        return [ref for ref in gc.get_referrers(error) if isinstance(ref, asyncio.Future)]

    assert run(main()) == []


@pytest.mark.parametrize("backend", LOOP_BACKENDS)
def test_an_fd_closed_while_watched_fails_alone(backend):
    """select() raises for everyone, poll() spins on POLLNVAL: on reactor.aio
    only that watcher ends, reported once, and the loop goes on."""
    errors = []

    async def main():
        loop = asyncio.get_running_loop()
        loop.set_exception_handler(lambda loop, context: errors.append(context))
        doomed_r, doomed_w = socket.socketpair()
        healthy_r, healthy_w = socket.socketpair()
        got = loop.create_future()
        loop.add_reader(doomed_r.fileno(), lambda: None)
        loop.add_reader(healthy_r.fileno(), lambda: got.done() or got.set_result(healthy_r.recv(10)))
        doomed_fd = doomed_r.fileno()
        doomed_r.close()  # behind the loop's back: no remove_reader
        doomed_w.close()
        healthy_w.send(b"alive")  # the loop waits for it with the dead fd in its set
        data = await asyncio.wait_for(got, 5)
        loop.remove_reader(healthy_r.fileno())
        healthy_r.close()
        healthy_w.close()
        return doomed_fd, data

    doomed_fd, data = run(main(), backend=backend)
    assert data == b"alive"
    reports = [context for context in errors if context.get("fd") == doomed_fd]
    # epoll forgets a closed fd by itself: nothing to report there
    assert len(reports) == (0 if backend == "epoll" else 1), errors


def test_a_server_closed_during_an_accept_batch_still_serves_what_it_accepted():
    """The accept drain hands out a whole batch; a protocol callback that
    closes the server meanwhile must not break the rest of the batch
    (asyncio's Server refuses _attach() once closed)."""
    served = []

    async def main():
        loop = asyncio.get_running_loop()
        errors = []
        loop.set_exception_handler(lambda loop, context: errors.append(context))
        holder = {}

        class CloseServer(asyncio.Protocol):
            def connection_made(self, transport):
                served.append(transport)
                holder["server"].close()  # the first of the batch closes the server
                transport.write(b"hi")
                transport.close()

        server = holder["server"] = await loop.create_server(CloseServer, "127.0.0.1", 0)
        port = server.sockets[0].getsockname()[1]
        # Blocking connects from the loop's own thread: the kernel completes
        # them while the loop is not looking, so all five wait in the queue
        # and the next readiness event accepts them in one batch.
        clients = [socket.create_connection(("127.0.0.1", port)) for _ in range(5)]
        for client in clients:
            client.settimeout(5)
        replies = [await loop.run_in_executor(None, client.recv, 10) for client in clients]
        for client in clients:
            client.close()
        await asyncio.wait_for(server.wait_closed(), 5)
        return replies, errors, server.stats.max_batch

    replies, errors, batch = run(main())
    assert replies == [b"hi"] * 5 and len(served) == 5
    assert errors == []
    assert batch == 5, "the five connections were not accepted in one batch: the test proves nothing"


# ------------------------------------------------------------ PROXY protocol

#: a v1 header naming a client that is not the socket's peer
PROXY_V1 = b"PROXY TCP4 192.0.2.7 198.51.100.1 56324 443\r\n"


class ProxiedEcho(asyncio.Protocol):
    """Echoes; keeps what the transport said at connection_made."""

    seen: list[tuple] = []

    def connection_made(self, transport):
        self.transport = transport
        proxy = transport.get_extra_info("proxy")
        ProxiedEcho.seen.append((transport.get_extra_info("peername"), transport.get_extra_info("socket_peername"),
                                 proxy.version if proxy else None))

    def data_received(self, data):
        self.transport.write(data)


@pytest.mark.parametrize("native", NATIVE)
def test_create_server_proxy_protocol_gives_the_clients_address(native):
    ProxiedEcho.seen = []

    async def main():
        loop = asyncio.get_running_loop()
        server = await loop.create_server(ProxiedEcho, "127.0.0.1", 0, proxy_protocol=True)
        port = server.sockets[0].getsockname()[1]
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        writer.write(PROXY_V1 + b"hello")
        echoed = await asyncio.wait_for(reader.readexactly(5), 5)
        client = writer.get_extra_info("sockname")
        writer.close()
        await writer.wait_closed()
        # no header: closed unanswered, counted, and the protocol never made
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        writer.write(b"GET / HTTP/1.1\r\n\r\n")
        closed = await asyncio.wait_for(reader.read(), 5)
        writer.close()
        stats = server.stats
        server.close()
        await server.wait_closed()
        return echoed, client, closed, stats

    echoed, client, closed, stats = run(main(), native=native)
    assert (echoed, closed) == (b"hello", b"")
    assert ProxiedEcho.seen == [(("192.0.2.7", 56324), client, 1)]
    assert (stats.accepted, stats.proxy_errors) == (2, 1)


def test_create_unix_server_proxy_protocol():
    ProxiedEcho.seen = []
    with tempfile.TemporaryDirectory() as tmp:
        path = os.path.join(tmp, "s")

        async def main():
            server = await asyncio.get_running_loop().create_unix_server(ProxiedEcho, path, proxy_protocol=True)
            reader, writer = await asyncio.open_unix_connection(path)
            writer.write(PROXY_V1 + b"hi")
            echoed = await asyncio.wait_for(reader.readexactly(2), 5)
            writer.close()
            server.close()
            await server.wait_closed()
            return echoed

        assert run(main()) == b"hi"
    peername, socket_peername, version = ProxiedEcho.seen[0]
    assert (peername, version) == (("192.0.2.7", 56324), 1)
    assert socket_peername in ("", None)  # a Unix client socket has no name


def test_proxy_protocol_is_refused_unless_a_bool():
    async def main():
        loop = asyncio.get_running_loop()
        with pytest.raises(TypeError, match="proxy_protocol"):
            await loop.create_server(ProxiedEcho, "127.0.0.1", 0, proxy_protocol="yes")
        with pytest.raises(TypeError, match="proxy_protocol"):
            await loop.create_unix_server(ProxiedEcho, "/nonexistent/s", proxy_protocol=1)

    run(main())


def test_proxy_protocol_hands_a_buffered_protocol_what_came_after_the_header():
    class Collect(asyncio.BufferedProtocol):
        def __init__(self):
            self.buffer = bytearray(7)  # smaller than what came with the header: several rounds
            self.data = bytearray()
            self.done = asyncio.get_running_loop().create_future()

        def connection_made(self, transport):
            self.peername = transport.get_extra_info("peername")

        def get_buffer(self, sizehint):
            return self.buffer

        def buffer_updated(self, nbytes):
            self.data += self.buffer[:nbytes]

        def eof_received(self):
            self.done.set_result((self.peername, bytes(self.data)))

    first, later = os.urandom(20), os.urandom(10_000)

    async def main():
        loop = asyncio.get_running_loop()
        made = loop.create_future()

        def factory():
            made.set_result(Collect())  # once: one connection
            return made.result()

        server = await loop.create_server(factory, "127.0.0.1", 0, proxy_protocol=True)
        port = server.sockets[0].getsockname()[1]
        with socket.create_connection(("127.0.0.1", port), timeout=5) as client:
            client.sendall(PROXY_V1 + first)  # one segment: the header and what follows
            protocol = await asyncio.wait_for(made, 5)  # the header was read (and `first` with it)
            client.sendall(later)  # read into the protocol's buffer by the transport
            client.shutdown(socket.SHUT_WR)
            result = await asyncio.wait_for(protocol.done, 5)
        server.close()
        await server.wait_closed()
        return result

    assert run(main()) == (("192.0.2.7", 56324), first + later)


def tls_client_behind_a_header(port: int, context, payload: bytes) -> bytes:
    """A blocking TLS client (run in a thread) that sends the PROXY header
    and its ClientHello in one segment, then ``payload``; returns what it
    reads back before EOF. Every wait is bounded by the socket's timeout."""
    import ssl

    incoming, outgoing = ssl.MemoryBIO(), ssl.MemoryBIO()
    tls = context.wrap_bio(incoming, outgoing, server_hostname="localhost")
    with socket.create_connection(("127.0.0.1", port), timeout=5) as sock:
        def pump(step):
            while True:
                try:
                    return step()
                except ssl.SSLWantReadError:
                    if outgoing.pending:
                        sock.sendall(outgoing.read())
                    data = sock.recv(65536)
                    if data:
                        incoming.write(data)
                    else:
                        incoming.write_eof()  # the next step raises
                finally:
                    if outgoing.pending:
                        sock.sendall(outgoing.read())

        try:
            tls.do_handshake()
        except ssl.SSLWantReadError:
            sock.sendall(PROXY_V1 + outgoing.read())  # the header and the ClientHello together
        pump(tls.do_handshake)
        tls.write(payload)
        sock.sendall(outgoing.read())
        received = bytearray()
        while len(received) < len(payload):
            received += pump(lambda: tls.read(65536))
        return bytes(received)


def test_proxy_protocol_then_tls(tmp_path):
    from pathlib import Path

    from ..tlscerts import client_context, make_certs, server_context

    certs = make_certs(Path(tmp_path))
    ProxiedEcho.seen = []

    async def main():
        loop = asyncio.get_running_loop()
        server = await loop.create_server(ProxiedEcho, "127.0.0.1", 0, proxy_protocol=True,
                                          ssl=server_context(certs.cert, certs.key))
        port = server.sockets[0].getsockname()[1]
        echoed = await asyncio.wait_for(
            loop.run_in_executor(None, tls_client_behind_a_header, port, client_context(certs.ca), b"secret"), 10)
        server.close()
        await server.wait_closed()
        return echoed

    assert run(main()) == b"secret"
    assert [(peername, version) for peername, _, version in ProxiedEcho.seen] == [(("192.0.2.7", 56324), 1)]
