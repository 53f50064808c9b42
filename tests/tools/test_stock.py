"""The Protocol base class and the stock protocols the CLI serves (echo,
discard, close), on real sockets and every backend."""

from __future__ import annotations

import hashlib
import os
import random
import shutil
import socket
import tempfile
import threading

import pytest

import reactor
from reactor.protocols import Protocol
from reactor.tools.http import HttpProtocol
from reactor.tools.stock import CloseProtocol, DiscardProtocol, EchoProtocol, stock_protocol

from ..support import BackgroundReader, open_fds, recv_exactly, run_until


@pytest.fixture(params=["tcp", "unix"])
def address_of(request, loop):
    """Listen with a factory on TCP or a Unix socket; returns the listener."""
    path = tempfile.mkdtemp(prefix="rx-", dir="/tmp")

    def listen(factory):
        if request.param == "unix":
            return loop.listen_unix(factory, os.path.join(path, "s"))
        return loop.listen(factory)

    yield listen
    shutil.rmtree(path, ignore_errors=True)


class Tracking:
    """Wraps a stock protocol class to observe connection_lost."""

    def __init__(self, cls):
        self.cls = cls
        self.protocols = []
        self.lost = []

    def __call__(self):
        tracker = self

        class Tracked(self.cls):
            def connection_lost(self, exc):
                super().connection_lost(exc)
                tracker.lost.append(exc)

        protocol = Tracked()
        self.protocols.append(protocol)
        return protocol


class TestBase:
    def test_every_event_is_a_no_op(self):
        p = Protocol()
        assert p.connection_made(object()) is None
        assert p.data_received(b"x") is None
        assert p.eof_received() is None  # None: the transport closes
        assert p.connection_lost(None) is None
        assert p.pause_writing() is None and p.resume_writing() is None

    def test_same_method_names_as_asyncio(self):
        import asyncio

        for name in ("connection_made", "data_received", "eof_received", "connection_lost",
                     "pause_writing", "resume_writing"):
            assert hasattr(asyncio.Protocol, name) and callable(getattr(Protocol, name))

    def test_stock_protocols_by_name(self):
        assert stock_protocol("echo") is EchoProtocol
        assert stock_protocol("discard") is DiscardProtocol
        assert stock_protocol("close") is CloseProtocol
        assert stock_protocol("http") is HttpProtocol
        with pytest.raises(ValueError) as info:
            stock_protocol("chargen")
        for name in ("echo", "discard", "close", "http", "chargen"):
            assert name in str(info.value)

    def test_public_protocol_is_the_base(self):
        assert reactor.Protocol is Protocol
        for cls in (EchoProtocol, DiscardProtocol, CloseProtocol, HttpProtocol):
            assert issubclass(cls, Protocol)


class TestEcho:
    def test_echoes_in_order(self, loop, clients, address_of):
        tracking = Tracking(EchoProtocol)
        lst = address_of(tracking)
        client = clients.connect(lst.address)
        for i in range(20):
            client.sendall(b"message %02d;" % i)
        run_until(loop, lambda: tracking.protocols)
        reader_done = []
        expected = b"".join(b"message %02d;" % i for i in range(20))

        def read():
            reader_done.append(recv_exactly(client, len(expected)))

        thread = threading.Thread(target=read, daemon=True)
        thread.start()
        run_until(loop, lambda: reader_done)
        thread.join(5)
        assert reader_done == [expected]

    def test_half_close_flushes_then_closes(self, loop, clients, address_of):
        tracking = Tracking(EchoProtocol)
        lst = address_of(tracking)
        client = clients.connect(lst.address)
        payload = random.randbytes(4 << 20)
        sender = threading.Thread(target=lambda: (client.sendall(payload), client.shutdown(socket.SHUT_WR)),
                                  daemon=True)
        sender.start()
        reader = BackgroundReader(client)
        run_until(loop, lambda: reader.done and tracking.lost, timeout=20)
        sender.join(5)
        reader.join()
        assert reader.error is None
        assert hashlib.sha256(reader.data).digest() == hashlib.sha256(payload).digest()  # then EOF
        assert tracking.lost == [None]

    def test_slow_reader_pauses_reading(self, loop, clients):
        tracking = Tracking(EchoProtocol)
        lst = loop.listen(tracking)
        client = clients.connect(lst.address)
        run_until(loop, lambda: tracking.protocols)
        t = tracking.protocols[0].transport
        sent = []

        def send():
            data = b"z" * (1 << 20)
            try:
                for _ in range(64):
                    client.sendall(data)
                    sent.append(len(data))
            except OSError:
                pass

        thread = threading.Thread(target=send, daemon=True)
        thread.start()
        # nobody reads the echo: the server stops reading instead of buffering
        run_until(loop, lambda: not t.is_reading(), timeout=10)
        assert t.get_write_buffer_size() > t.get_write_buffer_limits()[1]
        reader = BackgroundReader(client, on_chunk=lambda chunk: None)
        run_until(loop, lambda: len(sent) == 64, timeout=20)
        client.shutdown(socket.SHUT_WR)
        run_until(loop, lambda: reader.done, timeout=20)
        thread.join(5)
        reader.join()
        assert reader.count == 64 << 20


class TestDiscard:
    def test_reads_everything_writes_nothing_closes_with_the_peer(self, loop, clients, address_of):
        tracking = Tracking(DiscardProtocol)
        lst = address_of(tracking)
        client = clients.connect(lst.address)
        client.sendall(b"d" * 100_000)
        client.shutdown(socket.SHUT_WR)
        run_until(loop, lambda: tracking.lost)
        assert tracking.protocols[0].received == 100_000
        assert tracking.lost == [None]
        assert client.recv(10) == b""  # nothing but our FIN


class TestClose:
    def test_closes_at_once(self, loop, clients, address_of):
        tracking = Tracking(CloseProtocol)
        lst = address_of(tracking)
        before = open_fds()
        socks = [clients.connect(lst.address) for _ in range(20)]
        run_until(loop, lambda: len(tracking.lost) == 20)
        for sock in socks:
            assert sock.recv(10) == b""  # FIN, not RST
        assert tracking.lost == [None] * 20
        clients.close_all()
        assert open_fds() == before
        assert lst.stats.active == 0
