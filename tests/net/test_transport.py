"""The stream transport on real loopback sockets (TCP, and Unix where the
behaviour is the same), every backend: FIN vs RST, half-close, backpressure
with a slow reader, dead and resetting peers, exactly-once connection_lost,
and fds that never outlive their transport."""

from __future__ import annotations

import ast
import asyncio
import errno
import fcntl
import gc
import hashlib
import os
import pathlib
import random
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import tracemalloc
import weakref
from typing import Any

import pytest

import reactor
from reactor._compiled import is_compiled
from reactor._net import transport as transport_mod
from reactor._net.transport import DEFAULT_HIGH_WATER, DEFAULT_LOW_WATER, READ_SIZE, Event, State, Transport
from reactor.errors import ReactorStateError
from reactor.tools.stock import EchoProtocol

from ..support import (
    LINGER_RST,
    BackgroundReader,
    Factory,
    Recorder,
    open_fds,
    readable,
    recv_exactly,
    run_for,
    run_until,
)

TCP_CLOSE = 7  # tcp_info.tcpi_state once a reset arrived


@pytest.fixture(params=["tcp", "unix"])
def family(request):
    return request.param


@pytest.fixture
def short_dir():
    path = tempfile.mkdtemp(prefix="rx-", dir="/tmp")
    yield path
    shutil.rmtree(path, ignore_errors=True)


def serve(loop, factory, family="tcp", short_dir=None):
    if family == "unix":
        return loop.listen_unix(factory, os.path.join(short_dir, "s"))
    return loop.listen(factory)


def connected(loop, clients, factory, family="tcp", short_dir=None, cls_kwargs=None):
    """A listener, one client, and the server protocol of that client."""
    lst = serve(loop, factory, family, short_dir)
    client = clients.connect(lst.address)
    run_until(loop, lambda: len(factory.protocols) == 1 and factory.protocols[0].made)
    return lst, client, factory.protocols[0]


def wait_tcp_state(sock, state, timeout=5.0):
    """Poll a TCP socket's state (tcp_info's first byte) until it is ``state``."""
    deadline = time.monotonic() + timeout
    while sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_INFO, 8)[0] != state:
        if time.monotonic() > deadline:
            raise AssertionError(f"TCP state never became {state}")
        time.sleep(0.001)


class EchoRecorder(Recorder):
    def data_received(self, data):
        super().data_received(data)
        self.transport.write(data)


# ------------------------------------------------------------------ FIN / RST

class TestCloseVersusAbort:
    def test_close_sends_fin(self, loop, clients, family, short_dir):
        _, client, p = connected(loop, clients, Factory(), family, short_dir)
        p.transport.close()
        assert p.transport.is_closing()
        assert client.recv(10) == b""
        run_until(loop, lambda: p.lost)
        assert p.lost == [None]

    def test_abort_sends_rst(self, loop, clients):
        _, client, p = connected(loop, clients, Factory())
        p.transport.write(b"dropped?")
        p.transport.abort()
        with pytest.raises(ConnectionResetError):
            # data already sent may arrive first; the reset follows
            while client.recv(100):
                pass
        run_until(loop, lambda: p.lost)
        assert p.lost == [None]

    def test_abort_drops_the_queue(self, loop, clients):
        _, client, p = connected(loop, clients, Factory())
        p.transport.write(b"x" * (16 << 20))  # far more than the kernel takes
        assert p.transport.get_write_buffer_size() > 0
        p.transport.abort()
        assert p.transport.get_write_buffer_size() == 0
        got = 0
        with pytest.raises(ConnectionResetError):
            while True:
                chunk = client.recv(1 << 20)
                if not chunk:
                    break
                got += len(chunk)
        assert got < 16 << 20


# ----------------------------------------------------------------- half-close

class TestHalfClose:
    def test_peer_eof_calls_eof_received_and_closes_by_default(self, loop, clients, family, short_dir):
        _, client, p = connected(loop, clients, Factory(), family, short_dir)
        client.sendall(b"last words")
        client.shutdown(socket.SHUT_WR)
        run_until(loop, lambda: p.lost)
        assert p.events == ["made", "data", "eof", "lost"]
        assert p.data == b"last words" and p.lost == [None]
        assert client.recv(10) == b""

    def test_returning_true_keeps_the_write_side_open(self, loop, clients, family, short_dir):
        class KeepOpen(Recorder):
            eof_result = True

        _, client, p = connected(loop, clients, Factory(KeepOpen), family, short_dir)
        client.shutdown(socket.SHUT_WR)
        run_until(loop, lambda: p.eofs == 1)
        assert not p.transport.is_closing()
        p.transport.write(b"reply after your EOF")
        assert recv_exactly(client, 20) == b"reply after your EOF"
        run_for(loop, 0.02)
        assert not p.lost
        p.transport.close()
        assert client.recv(10) == b""
        run_until(loop, lambda: p.lost)
        assert p.lost == [None] and p.eofs == 1

    def test_write_eof_lets_the_peer_keep_sending(self, loop, clients, family, short_dir):
        _, client, p = connected(loop, clients, Factory(), family, short_dir)
        t = p.transport
        assert t.can_write_eof()
        t.write(b"before eof")
        t.write_eof()
        t.write_eof()  # idempotent
        assert recv_exactly(client, 10) == b"before eof"
        assert client.recv(10) == b""  # our FIN
        with pytest.raises(ReactorStateError):
            t.write(b"after eof")
        client.sendall(b"still talking")
        run_until(loop, lambda: p.data == b"still talking")
        assert t.is_reading() and not p.lost
        client.close()
        run_until(loop, lambda: p.lost)
        assert p.lost == [None] and p.events[-2:] == ["eof", "lost"]

    def test_eof_is_delivered_once_even_if_reading_is_resumed(self, loop, clients):
        class KeepOpen(Recorder):
            eof_result = True

        _, client, p = connected(loop, clients, Factory(KeepOpen))
        client.shutdown(socket.SHUT_WR)
        run_until(loop, lambda: p.eofs == 1)
        assert not p.transport.is_reading()
        p.transport.pause_reading()
        p.transport.resume_reading()  # e.g. from resume_writing()
        run_for(loop, 0.05)
        assert p.eofs == 1 and not p.transport.is_reading()
        p.transport.write(b"still writable")
        assert recv_exactly(client, 14) == b"still writable"

    def test_write_eof_waits_for_the_queue(self, loop, clients):
        _, client, p = connected(loop, clients, Factory())
        payload = random.randbytes(8 << 20)
        p.transport.write(payload)
        assert p.transport.get_write_buffer_size() > 0
        p.transport.write_eof()
        reader = BackgroundReader(client)
        run_until(loop, lambda: reader.done, timeout=20)
        reader.join()
        assert reader.error is None
        assert bytes(reader.data) == payload  # all of it, then EOF
        assert not p.lost


# --------------------------------------------------------------- backpressure

class TestBackpressure:
    def test_64_mib_echo_to_a_slow_reader_with_bounded_memory(self, loop, clients):
        total = 64 << 20
        block = random.randbytes(1 << 20)
        high = DEFAULT_HIGH_WATER

        class MeasuredEcho(EchoProtocol):
            peak = 0
            pauses = 0

            def data_received(self, data):
                super().data_received(data)
                size = self.transport.get_write_buffer_size()
                if size > MeasuredEcho.peak:
                    MeasuredEcho.peak = size

            def pause_writing(self):
                MeasuredEcho.pauses += 1
                super().pause_writing()

            def connection_lost(self, exc):
                MeasuredEcho.lost = exc

        factory = Factory(MeasuredEcho)
        lst = loop.listen(factory)
        client = clients.connect(lst.address)
        client.settimeout(30)
        sent_hash = hashlib.sha256()
        got_hash = hashlib.sha256()
        sender_error = []

        def send():
            try:
                for i in range(total // len(block)):
                    chunk = block[i:] + block[:i]
                    sent_hash.update(chunk)
                    client.sendall(chunk)
                client.shutdown(socket.SHUT_WR)
            except BaseException as exc:
                sender_error.append(exc)

        sender = threading.Thread(target=send, daemon=True)
        sender.start()
        # the reader starts late: everything backs up into the server first
        reader = BackgroundReader(client, delay=0.3, chunk=1 << 18, on_chunk=got_hash.update)
        run_until(loop, lambda: reader.done and hasattr(MeasuredEcho, "lost"), timeout=60)
        sender.join(10)
        reader.join()
        assert not sender_error and reader.error is None
        assert reader.count == total
        assert got_hash.digest() == sent_hash.digest()
        assert MeasuredEcho.pauses >= 1  # the slow reader did push back
        assert MeasuredEcho.peak <= high + READ_SIZE
        assert MeasuredEcho.lost is None

    def test_pause_and_resume_writing_at_the_water_marks(self, loop, clients):
        class Marks(Recorder):
            def pause_writing(self):
                super().pause_writing()
                self.size_at_pause = self.transport.get_write_buffer_size()

            def resume_writing(self):
                super().resume_writing()
                self.size_at_resume = self.transport.get_write_buffer_size()

        _, client, p = connected(loop, clients, Factory(Marks))
        t = p.transport
        t.set_write_buffer_limits(high=1 << 30)
        while t.get_write_buffer_size() == 0:  # fill the kernel's buffers
            t.write(b"k" * (256 << 10))
        queued = t.get_write_buffer_size()
        t.set_write_buffer_limits(high=queued + 1000, low=100)
        assert t.get_write_buffer_limits() == (100, queued + 1000)
        t.write(b"a" * 1000)
        assert p.paused == 0  # exactly at the high mark: not over it
        t.write(b"b")
        assert p.paused == 1 and p.size_at_pause == queued + 1001
        t.write(b"c" * 5000)
        assert p.paused == 1  # once per crossing
        t.close()
        reader = BackgroundReader(client)
        run_until(loop, lambda: p.lost and reader.done, timeout=20)
        reader.join()
        assert p.resumed == 1 and p.size_at_resume <= 100
        assert p.events.index("pause") < p.events.index("resume") < p.events.index("lost")

    def test_lowering_the_high_mark_below_the_queue_pauses_at_once(self, loop, clients):
        _, _client, p = connected(loop, clients, Factory())
        t = p.transport
        t.set_write_buffer_limits(high=1 << 30)
        while t.get_write_buffer_size() == 0:
            t.write(b"k" * (256 << 10))
        assert p.paused == 0
        t.set_write_buffer_limits(high=t.get_write_buffer_size() - 1)
        assert p.paused == 1

    def test_buffer_limits_defaults_and_validation(self, loop, clients):
        _, _, p = connected(loop, clients, Factory())
        t = p.transport
        assert t.get_write_buffer_limits() == (DEFAULT_LOW_WATER, DEFAULT_HIGH_WATER)
        t.set_write_buffer_limits(high=100)
        assert t.get_write_buffer_limits() == (25, 100)
        t.set_write_buffer_limits(low=10)
        assert t.get_write_buffer_limits() == (10, 40)
        t.set_write_buffer_limits()
        assert t.get_write_buffer_limits() == (DEFAULT_LOW_WATER, DEFAULT_HIGH_WATER)
        t.set_write_buffer_limits(high=0, low=0)
        assert t.get_write_buffer_limits() == (0, 0)
        for kwargs, exc, name in [
            (dict(high="1"), TypeError, "high"),
            (dict(high=1.5), TypeError, "high"),
            (dict(low=True), TypeError, "low"),
            (dict(high=10, low=11), ValueError, "low"),
            (dict(high=-1), ValueError, "high"),
            (dict(low=-1, high=5), ValueError, "low"),
        ]:
            with pytest.raises(exc, match=name):
                t.set_write_buffer_limits(**kwargs)
        assert t.get_write_buffer_limits() == (0, 0)  # unchanged by the failures

    def test_pause_reading_stops_data_until_resumed(self, loop, clients):
        _, client, p = connected(loop, clients, Factory())
        t = p.transport
        t.pause_reading()
        assert not t.is_reading()
        client.sendall(b"held back")
        run_for(loop, 0.05)
        assert p.data == b""
        t.resume_reading()
        assert t.is_reading()
        run_until(loop, lambda: p.data == b"held back")


# --------------------------------------------------------------- dying peers

KILLED_CLIENT = r"""
import socket, sys, time
sock = socket.create_connection(("127.0.0.1", int(sys.argv[1])), timeout=10)
print("connected", flush=True)
time.sleep(60)
"""


class TestDeadPeers:
    @pytest.mark.parametrize("unread", [False, True], ids=["idle", "unread-data"])
    def test_peer_killed_with_sigkill(self, loop, unread):
        factory = Factory()
        lst = loop.listen(factory)
        before = open_fds()
        child = subprocess.Popen([sys.executable, "-c", KILLED_CLIENT, str(lst.address[1])],
                                 stdout=subprocess.PIPE, stderr=subprocess.DEVNULL)
        try:
            assert readable(child.stdout, 10), "child did not connect"
            assert child.stdout.readline() == b"connected\n"
            run_until(loop, lambda: factory.protocols and factory.protocols[0].made)
            p = factory.protocols[0]
            if unread:
                p.transport.write(b"you will never read this")
            child.send_signal(signal.SIGKILL)
            child.wait(10)
            run_until(loop, lambda: p.lost)
        finally:
            if child.poll() is None:
                child.kill()
                child.wait(10)
            child.stdout.close()
        # The kernel closes a killed process's sockets: FIN, or RST when it
        # had unread data.
        if unread:
            assert len(p.lost) == 1 and isinstance(p.lost[0], ConnectionResetError)
            assert p.eofs == 0
        else:
            assert p.lost == [None] and p.eofs == 1
        assert open_fds() == before

    @pytest.mark.parametrize("path", ["direct", "queued"])
    def test_writing_to_a_closed_peer_is_broken_pipe_without_sigpipe(self, loop, clients, path):
        class KeepOpen(Recorder):
            eof_result = True

        pipes = []
        previous = signal.signal(signal.SIGPIPE, lambda *args: pipes.append(args[0]))
        try:
            _, client, p = connected(loop, clients, Factory(KeepOpen))
            t = p.transport
            client.close()  # FIN; its kernel answers whatever we send next with RST
            run_until(loop, lambda: p.eofs == 1)
            if path == "direct":
                t.write(b"first")  # accepted by our kernel, reset by theirs
                wait_tcp_state(t.get_extra_info("socket"), TCP_CLOSE)
                t.write(b"second")  # EPIPE
            else:
                t.set_write_buffer_limits(high=1 << 30)
                t.write(b"x" * (8 << 20))
                t.write(b"y" * (1 << 20))  # queued behind: flushed with sendmsg
            run_until(loop, lambda: p.lost)
            assert len(p.lost) == 1 and isinstance(p.lost[0], (BrokenPipeError, ConnectionResetError))
            if path == "direct":
                assert isinstance(p.lost[0], BrokenPipeError)
            t.write(b"dropped quietly")  # the connection is gone; the protocol was told
        finally:
            signal.signal(signal.SIGPIPE, previous)
        assert pipes == []  # never SIGPIPE, whatever the process's SIGPIPE disposition

    @pytest.mark.parametrize("queued", [False, True])
    def test_writing_after_the_peer_reset(self, loop, clients, queued):
        pipes = []
        previous = signal.signal(signal.SIGPIPE, lambda *args: pipes.append(args[0]))
        try:
            _, client, p = connected(loop, clients, Factory())
            t = p.transport
            t.pause_reading()  # so the reset is found by writing, not reading
            if queued:
                t.set_write_buffer_limits(high=1 << 30)
                t.write(b"x" * (8 << 20))
                assert t.get_write_buffer_size() > 0
            client.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, LINGER_RST)
            client.close()
            wait_tcp_state(t.get_extra_info("socket"), TCP_CLOSE)
            t.write(b"into the void")
            run_until(loop, lambda: p.lost)
            assert len(p.lost) == 1 and isinstance(p.lost[0], (ConnectionResetError, BrokenPipeError))
        finally:
            signal.signal(signal.SIGPIPE, previous)
        assert pipes == []

    def test_peer_reset_while_reading(self, loop, clients):
        _, client, p = connected(loop, clients, Factory())
        client.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, LINGER_RST)
        client.close()
        run_until(loop, lambda: p.lost)
        assert len(p.lost) == 1 and isinstance(p.lost[0], ConnectionResetError)
        assert p.eofs == 0


# ------------------------------------------------------ callbacks fail alone

class TestFailingCallbacks:
    def test_exception_in_data_received_aborts_only_that_connection(self, loop, errors, clients):
        class Fragile(EchoRecorder):
            def data_received(self, data):
                if data == b"boom":
                    raise ValueError("protocol bug")
                super().data_received(data)

        factory = Factory(Fragile)
        lst = loop.listen(factory)
        healthy = clients.connect(lst.address)
        fragile = clients.connect(lst.address)
        run_until(loop, lambda: len(factory.protocols) == 2)
        fragile.sendall(b"boom")
        run_until(loop, lambda: errors.contexts)
        with pytest.raises(ConnectionResetError):
            fragile.recv(10)  # aborted: RST
        (context,) = errors.take()
        assert isinstance(context["exception"], ValueError)
        assert "data_received" in context["message"]
        broken = context["protocol"]
        run_until(loop, lambda: broken.lost)
        assert broken.lost == [None]
        healthy.sendall(b"fine")
        run_until(loop, lambda: sum(p.data == b"fine" for p in factory.protocols) == 1)
        assert recv_exactly(healthy, 4) == b"fine"
        assert lst.state == "active"

    @pytest.mark.parametrize("method", ["connection_made", "eof_received", "connection_lost",
                                        "pause_writing"])
    def test_exception_in_any_callback_reaches_the_handler(self, loop, errors, clients, method):
        class Failing(Recorder):
            pass

        def fail(self, *args):
            getattr(Recorder, method)(self, *args)
            raise RuntimeError(method)

        setattr(Failing, method, fail)
        factory = Factory(Failing)
        lst = loop.listen(factory)
        client = clients.connect(lst.address)
        run_until(loop, lambda: factory.protocols and factory.protocols[0].made)
        p = factory.protocols[0]
        if method == "eof_received":
            client.shutdown(socket.SHUT_WR)
        elif method == "connection_lost":
            p.transport.close()
        elif method == "pause_writing":
            p.transport.set_write_buffer_limits(high=0)
            p.transport.write(b"x" * (16 << 20))
        run_until(loop, lambda: errors.contexts)
        (context,) = errors.take()
        assert str(context["exception"]) == method and method in context["message"]
        if method != "pause_writing":
            run_until(loop, lambda: p.lost)
            assert len(p.lost) == 1
        run_for(loop, 0.01)
        assert not errors.take()


# ------------------------------------------------- connection_lost exactly once

def _scenario(name, loop, client, p):
    t = p.transport
    if name == "close":
        t.close()
    elif name == "close-twice":
        t.close()
        t.close()
    elif name == "close-with-queue":
        t.write(b"q" * (8 << 20))
        t.close()
        return BackgroundReader(client)
    elif name == "abort":
        t.abort()
    elif name == "close-then-abort":
        t.write(b"q" * (8 << 20))
        t.close()
        t.abort()
    elif name == "abort-then-close":
        t.abort()
        t.close()
        t.abort()
    elif name == "peer-fin":
        client.shutdown(socket.SHUT_WR)
    elif name == "peer-rst":
        client.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, LINGER_RST)
        client.close()
    elif name == "write-eof-then-peer-close":
        t.write_eof()
        client.close()
    elif name == "reactor-close-open":
        loop.close()
    elif name == "reactor-close-after-close":
        t.close()
        loop.close()
    elif name == "reactor-close-with-queue":
        t.write(b"q" * (8 << 20))
        t.close()
        loop.close()
    else:  # pragma: no cover
        raise AssertionError(name)
    return None


@pytest.mark.parametrize("scenario", [
    "close", "close-twice", "close-with-queue", "abort", "close-then-abort", "abort-then-close", "peer-fin",
    "peer-rst", "write-eof-then-peer-close", "reactor-close-open", "reactor-close-after-close",
    "reactor-close-with-queue",
])
def test_connection_lost_exactly_once(loop, clients, scenario):
    factory = Factory()
    lst = loop.listen(factory)
    before = open_fds()
    client = clients.connect(lst.address)
    run_until(loop, lambda: factory.protocols and factory.protocols[0].made)
    p = factory.protocols[0]
    reader = _scenario(scenario, loop, client, p)
    if not loop.is_closed():
        run_until(loop, lambda: p.lost, timeout=20)
        run_for(loop, 0.02)
    if reader is not None:
        reader.join()
        assert reader.error is None and reader.count == 8 << 20
    assert len(p.lost) == 1, p.events
    assert p.events.count("lost") == 1 and p.events[-1] == "lost"
    assert p.transport.is_closing()
    clients.close_all()
    after = open_fds()
    assert after <= before, after - before


# -------------------------------------------------------------- state errors

class TestStateErrors:
    def test_write_after_close_raises(self, loop, clients):
        _, _, p = connected(loop, clients, Factory())
        p.transport.close()
        with pytest.raises(ReactorStateError):
            p.transport.write(b"late")
        run_until(loop, lambda: p.lost)
        with pytest.raises(ReactorStateError):
            p.transport.write(b"later")

    def test_write_after_close_with_a_queue_raises(self, loop, clients):
        _, client, p = connected(loop, clients, Factory())
        p.transport.write(b"q" * (8 << 20))
        p.transport.close()
        with pytest.raises(ReactorStateError):
            p.transport.writelines([b"late"])
        client.close()
        run_until(loop, lambda: p.lost)

    def test_write_after_abort_raises(self, loop, clients):
        _, _, p = connected(loop, clients, Factory())
        p.transport.abort()
        with pytest.raises(ReactorStateError):
            p.transport.write(b"late")

    def test_write_rejects_non_bytes(self, loop, clients):
        _, _, p = connected(loop, clients, Factory())
        with pytest.raises(TypeError, match="str"):
            p.transport.write("text")

    def test_memoryviews_of_wide_items_are_sent_whole(self, loop, clients):
        import array

        _, client, p = connected(loop, clients, Factory())
        items = array.array("Q", range(1 << 21))  # 16 MiB: the kernel takes only part at once
        p.transport.write(memoryview(items))
        assert 0 < p.transport.get_write_buffer_size() < len(items) * items.itemsize
        p.transport.close()
        reader = BackgroundReader(client)
        run_until(loop, lambda: reader.done and p.lost, timeout=20)
        reader.join()
        assert bytes(reader.data) == items.tobytes()

    def test_empty_write_is_a_no_op(self, loop, clients):
        _, client, p = connected(loop, clients, Factory())
        p.transport.write(b"")
        p.transport.write(b"x")
        assert recv_exactly(client, 1) == b"x"

    def test_mutable_buffers_are_copied_when_queued(self, loop, clients):
        _, client, p = connected(loop, clients, Factory())
        t = p.transport
        t.set_write_buffer_limits(high=1 << 30)
        filler = b"k" * (256 << 10)
        sent = bytearray()
        while t.get_write_buffer_size() == 0:
            t.write(filler)
            sent += filler
        data = bytearray(b"original")
        t.write(data)
        sent += data
        data[:] = b"CHANGED!"
        t.close()
        reader = BackgroundReader(client)
        run_until(loop, lambda: reader.done, timeout=20)
        reader.join()
        assert bytes(reader.data) == bytes(sent)


# ------------------------------------------------------------------- extras

class TestExtraInfo:
    def test_tcp(self, loop, clients):
        _, client, p = connected(loop, clients, Factory())
        t = p.transport
        assert t.get_extra_info("peername") == client.getsockname()
        assert t.get_extra_info("sockname") == client.getpeername()
        sock = t.get_extra_info("socket")
        assert isinstance(sock, socket.socket) and sock.getpeername() == client.getsockname()
        assert t.get_extra_info("nonsense", "default") == "default"
        assert t.get_extra_info("nonsense") is None
        assert t.get_protocol() is p
        assert "open" in repr(t)

    def test_unix(self, loop, clients, short_dir):
        lst, _client, p = connected(loop, clients, Factory(), "unix", short_dir)
        t = p.transport
        assert t.get_extra_info("sockname") == lst.address
        assert t.get_extra_info("peername") in ("", None, b"")
        assert t.get_extra_info("socket").family == socket.AF_UNIX


# ---------------------------------------------------------- nothing is lost

class TestNothingLost:
    @pytest.mark.parametrize("how", ["one-write", "many-writes", "writelines"])
    def test_every_byte_written_before_close_arrives(self, loop, clients, family, short_dir, how):
        payload = random.randbytes(4 << 20)

        class WriteAndClose(Recorder):
            def connection_made(self, transport):
                super().connection_made(transport)
                if how == "one-write":
                    transport.write(payload)
                elif how == "many-writes":
                    for i in range(0, len(payload), 4096):
                        transport.write(payload[i:i + 4096])
                else:
                    transport.writelines(payload[i:i + 65536] for i in range(0, len(payload), 65536))
                transport.close()

        factory = Factory(WriteAndClose)
        lst = serve(loop, factory, family, short_dir)
        before = open_fds()
        client = clients.connect(lst.address)
        reader = BackgroundReader(client)
        run_until(loop, lambda: reader.done and factory.lost == 1, timeout=20)
        reader.join()
        assert reader.error is None
        assert hashlib.sha256(reader.data).digest() == hashlib.sha256(payload).digest()
        assert factory.protocols[0].lost == [None]
        clients.close_all()
        assert open_fds() == before

    def test_no_fd_outlives_its_transport(self, loop, clients):
        factory = Factory(EchoRecorder)
        lst = loop.listen(factory)
        before = open_fds()
        for i in range(30):
            client = clients.connect(lst.address)
            client.sendall(b"x")
            if i % 3 == 0:
                client.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, LINGER_RST)
        run_until(loop, lambda: sum(len(p.data) for p in factory.protocols) == 30)
        for i, p in enumerate(factory.protocols):
            if i % 5 == 1:
                p.transport.abort()
            elif i % 5 == 2:
                p.transport.close()
        clients.close_all()
        run_until(loop, lambda: factory.lost == 30)
        assert open_fds() == before
        assert lst.stats.active == 0


def test_reactor_close_releases_every_fd(backend, clients):
    before = open_fds()
    r = reactor.Reactor(backend=backend)
    factory = Factory()
    tcp = r.listen(factory)
    short = tempfile.mkdtemp(prefix="rx-", dir="/tmp")
    try:
        unix = r.listen_unix(factory, os.path.join(short, "s"))
        for address in (tcp.address, unix.address, tcp.address):
            clients.connect(address)
        run_until(r, lambda: factory.made == 3)
        factory.protocols[0].transport.write(b"q" * (8 << 20))  # a queue left unflushed
        factory.protocols[1].transport.pause_reading()
        r.close()
        assert tcp.state == "closed" and unix.state == "closed"
        assert not os.path.exists(os.path.join(short, "s"))
        assert [p.lost for p in factory.protocols] == [[None]] * 3
        clients.close_all()
        assert open_fds() == before
    finally:
        r.close()
        shutil.rmtree(short, ignore_errors=True)



def test_a_partial_send_of_bytes_queues_a_view_not_a_copy(loop):
    a, b = socket.socketpair()
    a.setblocking(False)
    with b:
        transport = Transport(loop, a, reactor.Protocol())
        loop._resources.add(transport)
        transport._start()
        payload = b"y" * (8 * 1024 * 1024)  # more than the kernel takes at once
        transport.write(payload)
        queued = transport._buffer[0]
        assert isinstance(queued, memoryview) and queued.obj is payload
        mutable = bytearray(b"z" * 1000)
        transport.write(mutable)
        assert isinstance(transport._buffer[-1], bytes)  # copied: the caller may reuse it
        transport.abort()
        loop.call_soon(loop.stop)
        loop.run()


def test_select_ends_a_connection_it_cannot_watch(errors):
    with reactor.Reactor(backend="select") as r:
        r.set_exception_handler(errors)
        a, b = socket.socketpair()
        high = fcntl.fcntl(a.fileno(), fcntl.F_DUPFD, reactor.FD_SETSIZE + 3)
        a.close()
        lost = []

        class Watch(reactor.Protocol):
            def connection_lost(self, exc):
                lost.append(exc)

        transport = Transport(r, socket.socket(fileno=high), Watch())
        r._resources.add(transport)
        failure = transport._start()
        assert isinstance(failure, reactor.BackendLimitError)
        r.call_soon(r.stop)
        r.run()
        b.close()
        assert len(lost) == 1 and isinstance(lost[0], reactor.BackendLimitError)
        assert transport.is_closing()
        with pytest.raises(OSError):
            os.fstat(high)  # closed, not leaked
        assert [type(c["exception"]) for c in errors.take()] == [reactor.BackendLimitError]


# ------------------------------------------------------------ the lifecycle


def _documented_table():
    """The table printed in transport.py's docstring, as {(state, event): next}."""
    lines = transport_mod.__doc__.splitlines()
    head = next(i for i, line in enumerate(lines) if line.split()[:2] == ["state", "close()"])
    columns = [Event.CLOSE, Event.ABORT, Event.WRITE_EOF, Event.FLUSHED, Event.FAILED]
    table = {}
    for line in lines[head + 1:]:
        if not line.strip():
            break
        names, cells = re.split(r"\s{2,}", line.strip(), maxsplit=1)
        for name in names.split(", "):
            for event, cell in zip(columns, cells.replace("(no-op)", "-").split(), strict=True):
                if cell != "-":
                    table[State[name], event] = State[cell]
    return table


class TestLifecycleTable:
    def test_every_state_has_a_row_and_the_closed_states_have_no_moves(self):
        table = transport_mod._TRANSITIONS
        assert set(table) == set(State)
        assert table[State.CLOSED] == {} and table[State.LOST] == {}
        for row in table.values():
            assert all(isinstance(e, Event) and isinstance(s, State) for e, s in row.items())

    def test_the_docstring_shows_the_table_the_code_uses(self):
        code = {(state, event): after for state, row in transport_mod._TRANSITIONS.items()
                for event, after in row.items()}
        assert _documented_table() == code

    def test_the_columns_are_the_table(self):
        for event in Event:
            column = getattr(transport_mod, f"_ON_{event.name}")
            expected = {s: row[event] for s, row in transport_mod._TRANSITIONS.items() if event in row}
            assert column == expected

    def test_an_illegal_internal_move_raises_at_once(self, loop):
        a, b = socket.socketpair()
        with b:
            transport = Transport(loop, a, reactor.Protocol())
            loop._resources.add(transport)
            with pytest.raises(KeyError):
                transport._flushed()  # nothing was waiting for the queue
            assert transport._state is State.OPEN  # and nothing moved
            transport.abort()
            with pytest.raises(KeyError):
                transport._connection_failed(ConnectionResetError())  # no fd, no failure
            assert transport._state is State.CLOSED


class TestStatesAsSeenFromOutside:
    def test_peer_reset_then_write_drops_the_data(self, loop, clients):
        _, client, p = connected(loop, clients, Factory())
        client.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, LINGER_RST)
        client.close()
        run_until(loop, lambda: p.lost)
        t = p.transport
        assert t._state is State.LOST and t.is_closing() and not t.is_reading()
        t.write(b"nobody reads this")  # no exception: the protocol was told
        t.write_eof()
        t.close()
        t.abort()  # all no-ops
        assert t._state is State.LOST and len(p.lost) == 1

    def test_write_eof_then_peer_reset_keeps_write_raising(self, loop, clients):
        _, client, p = connected(loop, clients, Factory())
        t = p.transport
        t.write_eof()
        assert t._state is State.WRITE_SHUT and t.is_reading() and not t.is_closing()
        assert client.recv(10) == b""
        client.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, LINGER_RST)
        client.close()
        run_until(loop, lambda: p.lost)
        assert t._state is State.CLOSED and isinstance(p.lost[0], ConnectionResetError)
        with pytest.raises(ReactorStateError):
            t.write(b"after my own write_eof")

    def test_write_eof_with_a_queue_is_shutting_until_flushed(self, loop, clients):
        _, client, p = connected(loop, clients, Factory())
        t = p.transport
        t.write(b"q" * (8 << 20))
        t.write_eof()
        assert t._state is State.SHUTTING_WRITE and t.get_write_buffer_size() > 0
        reader = BackgroundReader(client)
        run_until(loop, lambda: reader.done, timeout=20)
        reader.join()
        assert reader.count == 8 << 20 and t._state is State.WRITE_SHUT

    def test_close_during_write_eof_flush_closes_after_the_flush(self, loop, clients):
        _, client, p = connected(loop, clients, Factory())
        t = p.transport
        t.write(b"q" * (8 << 20))
        t.write_eof()
        t.close()
        assert t._state is State.CLOSING and t.is_closing()
        reader = BackgroundReader(client)
        run_until(loop, lambda: reader.done and p.lost, timeout=20)
        reader.join()
        assert reader.count == 8 << 20 and p.lost == [None] and t._state is State.CLOSED

    def test_resume_writing_that_raises_is_reported_and_the_connection_carries_on(self, loop, errors, clients):
        class BadResume(Recorder):
            def resume_writing(self):
                super().resume_writing()
                raise RuntimeError("resume_writing")

        _, client, p = connected(loop, clients, Factory(BadResume))
        t = p.transport
        t.set_write_buffer_limits(high=1000, low=100)
        t.write(b"r" * (8 << 20))
        assert p.paused == 1
        reader = BackgroundReader(client)
        run_until(loop, lambda: errors.contexts, timeout=20)
        (context,) = errors.take()
        assert "resume_writing" in context["message"] and context["transport"] is t
        assert not t.is_closing()  # a flow-control hint failing does not end the connection
        t.close()
        run_until(loop, lambda: reader.done and p.lost, timeout=20)
        reader.join()
        assert reader.count == 8 << 20 and p.lost == [None]

    def test_an_accepted_and_closed_connection_sets_few_attributes(self, loop, clients):
        class CloseAtOnce(reactor.Protocol):
            def connection_made(self, transport):
                seen.append(transport)
                transport.close()

        seen = []
        lst = loop.listen(CloseAtOnce)
        clients.connect(lst.address)
        run_until(loop, lambda: seen and lst.stats.active == 0)
        # the initial state lives on the class: only these were set
        assert set(vars(seen[0])) <= {"_reactor", "_family", "_protocol", "_peername", "_server", "_fd",
                                       "_state", "_nonblocking"}


class TestWriteFastPath:
    """Transport.write's first branch (plain bytes, open, nothing queued,
    after the first write) must behave exactly like the general one."""

    def _armed(self, loop, a):
        transport = Transport(loop, a, reactor.Protocol())
        loop._resources.add(transport)
        transport._start()
        transport.write(b"first")  # TCP_NODELAY looked at, the socket made
        assert not transport._nodelay_pending and transport._sock is not None
        return transport

    def test_a_partial_send_queues_a_view_and_watches_for_writing(self, loop):
        a, b = socket.socketpair()
        a.setblocking(False)
        with b:
            transport = self._armed(loop, a)
            transport._io_seen = False
            payload = b"y" * (8 * 1024 * 1024)  # more than the kernel takes at once
            transport.write(payload)
            assert transport._io_seen  # some bytes moved: idle_timeout sees it
            queued = transport._buffer[0]
            assert isinstance(queued, memoryview) and queued.obj is payload
            assert transport.get_write_buffer_size() == len(queued) < len(payload)
            assert loop._watchers.handle_for(a.fileno(), 2) is not None  # EVENT_WRITE
            # a second write (queued: the general path) goes after it, in order
            transport.write(b"tail")
            assert transport._buffer[-1] == b"tail"
            reader = BackgroundReader(b)
            run_until(loop, lambda: not transport.get_write_buffer_size())
            transport.close()  # FIN: the reader sees EOF
            run_until(loop, lambda: reader.done)
            reader.join()
            assert reader.error is None and bytes(reader.data) == b"first" + payload + b"tail"

    def test_nothing_sent_queues_the_bytes_themselves(self, loop):
        a, b = socket.socketpair()
        a.setblocking(False)
        with b:
            transport = self._armed(loop, a)
            filler = b"f" * (8 * 1024 * 1024)
            transport.write(filler)
            transport._buffer = ()  # pretend the queue was flushed ...
            transport._buffer_size = 0
            loop.remove_writer(a)
            while True:  # ... and fill the kernel's buffer to the brim
                try:
                    a.send(b"z" * 65536)
                except BlockingIOError:
                    break
            payload = b"p" * 1000
            transport._io_seen = False
            transport.write(payload)
            assert transport._buffer[0] is payload and not transport._io_seen
            transport.abort()
            loop.call_soon(loop.stop)
            loop.run()

    def test_bytes_subclasses_and_states_take_the_general_path(self, loop, clients):
        class Tagged(bytes):
            pass

        _, client, p = connected(loop, clients, Factory())
        p.transport.write(b"a")
        p.transport.write(Tagged(b"b"))
        p.transport.write(b"")
        assert recv_exactly(client, 2) == b"ab"
        p.transport.close()
        with pytest.raises(ReactorStateError):
            p.transport.write(b"late")
        with pytest.raises(ReactorStateError):
            p.transport.write(b"")


@pytest.mark.parametrize("nonblocking", [True, False], ids=["nonblocking-fd", "blocking-fd"])
def test_an_idle_connection_holds_no_socket_object(loop, nonblocking):
    # Idle memory per connection: the socket object is made by the first
    # read or write, not when reading starts -- and never on the echo path
    # when the transport is compiled (recv(2)/send(2) on the fd). A blocking
    # fd (the pure accept path's) is made non-blocking first, on the bare
    # fd: a read must never block the loop.
    a, b = socket.socketpair()
    a.setblocking(not nonblocking)
    fd = a.detach()
    with b:
        p = Recorder()
        transport = Transport(loop, fd, p, family=socket.AF_UNIX, nonblocking=nonblocking)
        loop._resources.add(transport)
        transport._start()
        assert transport._sock is None and transport.is_reading()
        assert not os.get_blocking(fd)
        b.send(b"hello")
        run_until(loop, lambda: p.data)
        assert bytes(p.data) == b"hello"
        transport.write(b"back")
        assert b.recv(16) == b"back"
        if is_compiled(transport_mod):
            assert transport._sock is None
        else:
            assert transport._sock is not None and not transport._sock.getblocking()
        assert not os.get_blocking(fd)
        transport.close()
        run_until(loop, lambda: p.lost)


def test_reads_and_writes_on_the_fd_give_what_the_socket_object_gives(loop):
    # Compiled, the transport reads and writes the fd with recv(2)/send(2)
    # itself (transport.pxd); run as Python, through the socket object. Both
    # must deliver reads of at most READ_SIZE, whole and in order, and end on
    # a reset with the exception the socket module raises there
    # (ConnectionResetError, its errno and the C library's text). This runs
    # on both passes.
    payload = os.urandom(2 * READ_SIZE + 7)
    sizes: list[int] = []

    class Sizes(Recorder):
        def data_received(self, data: bytes) -> None:
            assert type(data) is bytes
            sizes.append(len(data))
            super().data_received(data)

    a, b = socket.socketpair()
    a.setblocking(False)
    p = Sizes()
    transport = Transport(loop, a.detach(), p, family=socket.AF_UNIX)
    loop._resources.add(transport)
    transport._start()
    with b:
        sender = threading.Thread(target=b.sendall, args=(payload,))
        sender.start()
        run_until(loop, lambda: len(p.data) == len(payload), timeout=10)
        sender.join(10)
        assert bytes(p.data) == payload and max(sizes) <= READ_SIZE
        transport.write(b"x" * 10)  # the first write (no TCP_NODELAY on AF_UNIX)
        transport.write(b"y" * 10)  # the direct path
        assert recv_exactly(b, 20) == b"x" * 10 + b"y" * 10
    run_until(loop, lambda: p.lost)
    assert p.lost == [None] and p.eofs == 1  # b closed: our read gave EOF

    with socket.create_server(("127.0.0.1", 0)) as listener:
        peer = socket.create_connection(listener.getsockname(), timeout=5)
        ours, _ = listener.accept()
    ours.setblocking(False)
    p = Recorder()
    transport = Transport(loop, ours.detach(), p)
    loop._resources.add(transport)
    transport._start()
    transport.write(b"ping")  # the first write of a TCP connection: TCP_NODELAY on the fd
    with peer:
        assert recv_exactly(peer, 4) == b"ping"
        with socket.fromfd(transport._fd, socket.AF_INET, socket.SOCK_STREAM) as dup:
            assert dup.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY)
        peer.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, LINGER_RST)
    run_until(loop, lambda: p.lost)  # the RST: our recv fails
    exc = p.lost[0]
    assert type(exc) is ConnectionResetError and exc.errno == errno.ECONNRESET
    assert exc.args == (errno.ECONNRESET, os.strerror(errno.ECONNRESET)) and exc.__traceback__ is None


# --------------------------------------------------------- the read path


class Lending(asyncio.BufferedProtocol):
    """Lends a small buffer of its own; records what arrives through it."""

    def __init__(self) -> None:
        self.buffer = bytearray(8)
        self.data = bytearray()
        self.lost: list = []

    def connection_made(self, transport):
        self.transport = transport

    def get_buffer(self, sizehint):
        return self.buffer

    def buffer_updated(self, nbytes):
        self.data += self.buffer[:nbytes]

    def connection_lost(self, exc):
        self.lost.append(exc)


def test_the_protocol_type_picks_the_read_path_at_creation_and_at_set_protocol(loop):
    # One decision (Transport._choose_read_path): a protocol that lends its
    # buffer is read into it, any other gets bytes; set_protocol() decides
    # again, and a connection already reading switches at once.
    a, b = socket.socketpair()
    a.setblocking(False)
    with b:
        lending = Lending()
        transport = Transport(loop, a, lending)
        loop._resources.add(transport)
        transport._start()
        b.send(b"0123456789")  # more than its buffer: two rounds of buffer_updated
        run_until(loop, lambda: len(lending.data) == 10)
        assert bytes(lending.data) == b"0123456789"
        plain = Recorder()
        transport.set_protocol(plain)
        assert transport.get_protocol() is plain
        b.send(b"plain")
        run_until(loop, lambda: plain.data)
        assert bytes(plain.data) == b"plain" and len(lending.data) == 10
        again = Lending()
        transport.set_protocol(again)
        b.send(b"lent")
        run_until(loop, lambda: again.data)
        assert bytes(again.data) == b"lent" and bytes(plain.data) == b"plain"
        transport.close()
        run_until(loop, lambda: again.lost)


def test_a_connection_read_into_a_lent_buffer_is_freed_without_the_cyclic_gc(loop):
    # The buffered read path is a bound method on the instance (a cycle);
    # it goes when the fd does, so the transport dies by reference counts.
    a, b = socket.socketpair()
    a.setblocking(False)
    gc.disable()
    try:
        with b:
            lending = Lending()
            data, lost = lending.data, lending.lost
            transport = Transport(loop, a, lending)
            loop._resources.add(transport)
            transport._start()
            b.send(b"x")
            run_until(loop, lambda: data)
            transport.close()
            run_until(loop, lambda: lost)
            gone = weakref.ref(transport)
            del transport, lending
            assert gone() is None
    finally:
        gc.enable()


# ------------------------------------------------- one shared attribute table


@pytest.mark.skipif(is_compiled(transport_mod),
                    reason="tracemalloc names allocations by Python frame, and compiled code has none: "
                           "this runs on the pure pass (REACTOR_NATIVE=0)")
def test_connections_keep_the_shared_attribute_table_through_their_first_read(loop):
    """64 connections up before any reads: the names their first read sets
    (``_sock``, ``_io_seen``) are in the class's shared table already, so no
    connection gets a dict of its own (+271 B each without
    ``Transport._SHARED_ATTRIBUTES``)."""
    pairs = [socket.socketpair() for _ in range(64)]
    protocols = []
    for ours, _ in pairs:
        ours.setblocking(False)
        protocols.append(Recorder())
        transport = Transport(loop, ours.detach(), protocols[-1], family=socket.AF_UNIX)
        loop._resources.add(transport)
        transport._start()
    tracemalloc.start()
    try:
        before = tracemalloc.take_snapshot()
        for _, theirs in pairs:
            theirs.send(b"x")
        run_until(loop, lambda: all(p.data for p in protocols))
        after = tracemalloc.take_snapshot()
    finally:
        tracemalloc.stop()
    grown = sum(stat.size_diff for stat in after.compare_to(before, "filename")
                if stat.traceback[0].filename == transport_mod.__file__)
    # what a first read makes: the socket object (88 B)
    assert grown / len(pairs) < 150, f"{grown / len(pairs):.0f} B per connection in transport.py"
    for p in protocols:
        p.transport.abort()
    for _, theirs in pairs:
        theirs.close()
    run_until(loop, lambda: all(p.lost for p in protocols))


def _source(module: Any) -> str:
    """The ``.py`` source of ``module``, also when it runs compiled (its
    ``__file__`` is then the extension beside it)."""
    return str(pathlib.Path(module.__file__).with_name(module.__name__.rpartition(".")[2] + ".py"))


def _stored_names(path: str, classes: set[str] | None, owners: tuple[str, ...]) -> set[str]:
    """Attribute names stored on ``owners`` (``self``, ``transport``) in the
    methods of ``classes`` (every class and function if None) of ``path``."""
    with open(path) as f:
        tree = ast.parse(f.read())
    scopes = [node for node in ast.walk(tree) if isinstance(node, ast.ClassDef) and node.name in classes] \
        if classes is not None else [tree]
    names = set()
    for scope in scopes:
        for node in ast.walk(scope):
            targets = node.targets if isinstance(node, ast.Assign) else \
                [node.target] if isinstance(node, (ast.AugAssign, ast.AnnAssign)) else []
            for target in targets:
                for part in ast.walk(target):
                    if isinstance(part, ast.Attribute) and isinstance(part.value, ast.Name) \
                            and part.value.id in owners:
                        names.add(part.attr)
    return names


def test_every_name_a_transport_is_given_is_declared():
    """A name added to the transport but to neither ``_SHARED_ATTRIBUTES``
    nor ``_UNSHARED_ATTRIBUTES`` might give every busy server's connections
    their own dict again: each name is decided, in one place."""
    from reactor._net import idle, tls
    from reactor.aio import loop as aio_loop
    from reactor.aio import transports as aio_transports

    stored = _stored_names(_source(transport_mod), {"Transport"}, ("self",))
    stored |= _stored_names(_source(idle), None, ("transport",))
    stored |= _stored_names(_source(tls), {"RawTLSTransport"}, ("self",))
    assert stored - {*Transport._SHARED_ATTRIBUTES, *Transport._UNSHARED_ATTRIBUTES} == set()
    assert not set(Transport._SHARED_ATTRIBUTES) & set(Transport._UNSHARED_ATTRIBUTES)
    stream = _stored_names(_source(aio_transports), {"StreamTransport"}, ("self",))
    stream |= _stored_names(_source(aio_loop), None, ("transp", "transport"))
    stream_transport = aio_transports.StreamTransport
    assert stream - {*stream_transport._SHARED_ATTRIBUTES, *stream_transport._UNSHARED_ATTRIBUTES} == set()
    assert not set(stream_transport._SHARED_ATTRIBUTES) & set(stream_transport._UNSHARED_ATTRIBUTES)
