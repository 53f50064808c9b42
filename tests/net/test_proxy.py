"""The PROXY protocol: the sans-IO parser on raw bytes (every valid form,
every strictness rule, byte-at-a-time feeding), then listeners on real
loopback and Unix sockets with ``proxy_protocol=True`` (the header's
address as peername, the balancer's as socket_peername, bad and missing
headers closed and counted, the timeout in virtual time)."""

from __future__ import annotations

import os
import socket
import struct
import tempfile

import pytest

import reactor
from reactor._net.proxy import (
    DEFAULT_PROXY_TIMEOUT,
    MAX_V2_TLV_BYTES,
    NEED_MORE,
    V1_MAX_LENGTH,
    V2_SIGNATURE,
    Parsed,
    ProxyHeader,
    ProxyParser,
    ProxyProtocolError,
    check_proxy_from,
    parse,
)

from ..support import Factory, Recorder, VirtualClock, readable, run_for, run_until

# ------------------------------------------------------------------ builders

V1_TCP4 = b"PROXY TCP4 192.0.2.7 198.51.100.1 56324 443\r\n"


def v2(command: int = 1, family: int = 0x11, block: bytes = b"", *, version: int = 2,
       length: int | None = None) -> bytes:
    """A v2 header: signature, version/command, family/transport, length, block."""
    size = len(block) if length is None else length
    return V2_SIGNATURE + bytes([(version << 4) | command, family]) + struct.pack("!H", size) + block


def inet_block(src: str = "192.0.2.7", dst: str = "198.51.100.1", sport: int = 56324, dport: int = 443) -> bytes:
    return socket.inet_pton(socket.AF_INET, src) + socket.inet_pton(socket.AF_INET, dst) + struct.pack(
        "!HH", sport, dport)


def inet6_block(src: str = "2001:db8::7", dst: str = "2001:db8::1", sport: int = 1, dport: int = 2) -> bytes:
    return socket.inet_pton(socket.AF_INET6, src) + socket.inet_pton(socket.AF_INET6, dst) + struct.pack(
        "!HH", sport, dport)


def tlv(kind: int, value: bytes) -> bytes:
    return struct.pack("!BH", kind, len(value)) + value


def feed_bytewise(data: bytes) -> Parsed:
    """Feed one byte at a time: NEED_MORE until the last, then the result."""
    parser = ProxyParser()
    for index in range(len(data) - 1):
        assert parser.feed(data[index:index + 1]) is NEED_MORE, f"complete after {index + 1} bytes"
    result = parser.feed(data[-1:])
    assert isinstance(result, Parsed)
    return result


# ---------------------------------------------------------- valid headers

def test_v1_tcp4() -> None:
    header, rest = parse(V1_TCP4 + b"GET / HTTP/1.1\r\n")
    assert header == ProxyHeader(1, "PROXY", socket.AF_INET, socket.SOCK_STREAM,
                                 ("192.0.2.7", 56324), ("198.51.100.1", 443))
    assert header.has_addresses
    assert rest == b"GET / HTTP/1.1\r\n"


def test_v1_tcp6_is_normalised_like_getpeername() -> None:
    header, rest = parse(b"PROXY TCP6 2001:DB8:0:0::7 ::1 0 65535\r\n")
    assert header.family == socket.AF_INET6
    assert header.source == ("2001:db8::7", 0, 0, 0)
    assert header.destination == ("::1", 65535, 0, 0)
    assert rest == b""


@pytest.mark.parametrize("line", [b"PROXY UNKNOWN\r\n",
                                  b"PROXY UNKNOWN ffff:f...f:ffff ffff:f...f:ffff 65535 65535\r\n"])
def test_v1_unknown_ignores_the_rest_of_the_line(line: bytes) -> None:
    header, rest = parse(line + b"data")
    assert (header.version, header.command, header.family, header.source) == (1, "PROXY", socket.AF_UNSPEC, None)
    assert not header.has_addresses
    assert rest == b"data"


def test_v1_longest_line_is_accepted() -> None:
    longest = b"PROXY TCP6 ffff:ffff:ffff:ffff:ffff:ffff:ffff:fffe ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff " \
              b"65535 65535\r\n"
    assert len(longest) <= V1_MAX_LENGTH
    unknown = b"PROXY UNKNOWN " + b"x" * (V1_MAX_LENGTH - 16) + b"\r\n"
    assert len(unknown) == V1_MAX_LENGTH
    assert parse(longest).header.source[1] == 65535
    assert parse(unknown).header.family == socket.AF_UNSPEC


def test_v2_inet_with_tlvs() -> None:
    tlvs = tlv(0x01, b"h2") + tlv(0x02, b"example.com") + tlv(0x04, b"")
    header, rest = parse(v2(1, 0x11, inet_block() + tlvs) + b"after")
    assert header == ProxyHeader(2, "PROXY", socket.AF_INET, socket.SOCK_STREAM, ("192.0.2.7", 56324),
                                 ("198.51.100.1", 443), ((0x01, b"h2"), (0x02, b"example.com"), (0x04, b"")))
    assert rest == b"after"


def test_v2_inet6_and_dgram() -> None:
    header, _ = parse(v2(1, 0x22, inet6_block()))
    assert header.family == socket.AF_INET6 and header.type == socket.SOCK_DGRAM
    assert header.source == ("2001:db8::7", 1, 0, 0) and header.destination == ("2001:db8::1", 2, 0, 0)


def test_v2_unix_paths() -> None:
    src = b"/run/client.sock".ljust(108, b"\0")
    dst = b"\0abstract".ljust(108, b"\0")
    header, _ = parse(v2(1, 0x31, src + dst))
    assert header.family == socket.AF_UNIX
    assert header.source == "/run/client.sock"
    assert header.destination == b"\0abstract"


def test_v2_local_uses_the_socket_addresses() -> None:
    # haproxy's health checks: LOCAL, UNSPEC, no block; a LOCAL with a block skips it
    for data in (v2(0, 0x00), v2(0, 0x11, inet_block() + tlv(1, b"x"))):
        header, rest = parse(data + b"x")
        assert (header.version, header.command, header.source, header.tlvs) == (2, "LOCAL", None, ())
        assert rest == b"x"


def test_v2_proxy_unspec_skips_the_block() -> None:
    header, rest = parse(v2(1, 0x00, b"ignored"))
    assert header.command == "PROXY" and header.family == socket.AF_UNSPEC and header.source is None
    assert rest == b""


@pytest.mark.parametrize("data", [
    V1_TCP4 + b"rest",
    b"PROXY UNKNOWN\r\nrest",
    v2(1, 0x11, inet_block() + tlv(0x05, b"id")) + b"rest",
    v2(1, 0x21, inet6_block()) + b"rest",
    v2(0, 0x00) + b"rest",
], ids=["v1-tcp4", "v1-unknown", "v2-inet-tlv", "v2-inet6", "v2-local"])
def test_byte_at_a_time_gives_the_same_result(data: bytes) -> None:
    whole = parse(data)
    header_length = len(data) - len(b"rest")
    assert feed_bytewise(data[:header_length]) == (whole.header, b"")
    # the bytes after the header come back, whichever feed carried them
    parser = ProxyParser()
    assert parser.feed(data[:header_length - 1]) is NEED_MORE
    assert parser.feed(data[header_length - 1:]) == whole
    assert whole.rest == b"rest"


def test_parser_is_done_after_one_header() -> None:
    parser = ProxyParser()
    parser.feed(V1_TCP4)
    with pytest.raises(RuntimeError):
        parser.feed(b"more")


# ---------------------------------------------------------- strictness

V1_BAD = {
    "lowercase signature": b"proxy TCP4 1.2.3.4 5.6.7.8 1 2\r\n",
    "no space after PROXY": b"PROXYTCP4 1.2.3.4 5.6.7.8 1 2\r\n",
    "unknown protocol": b"PROXY UDP4 1.2.3.4 5.6.7.8 1 2\r\n",
    "lowercase protocol": b"PROXY tcp4 1.2.3.4 5.6.7.8 1 2\r\n",
    "two spaces": b"PROXY TCP4  1.2.3.4 5.6.7.8 1 2\r\n",
    "trailing space": b"PROXY TCP4 1.2.3.4 5.6.7.8 1 2 \r\n",
    "tab": b"PROXY TCP4 1.2.3.4\t5.6.7.8 1 2\r\n",
    "missing port": b"PROXY TCP4 1.2.3.4 5.6.7.8 1\r\n",
    "extra field": b"PROXY TCP4 1.2.3.4 5.6.7.8 1 2 3\r\n",
    "bad IPv4": b"PROXY TCP4 1.2.3.256 5.6.7.8 1 2\r\n",
    "IPv4 leading zero": b"PROXY TCP4 1.2.3.04 5.6.7.8 1 2\r\n",
    "IPv6 under TCP4": b"PROXY TCP4 ::1 ::1 1 2\r\n",
    "IPv4 under TCP6": b"PROXY TCP6 1.2.3.4 5.6.7.8 1 2\r\n",
    "IPv6 zone": b"PROXY TCP6 fe80::1%eth0 ::1 1 2\r\n",
    "host name": b"PROXY TCP4 localhost 5.6.7.8 1 2\r\n",
    "port too big": b"PROXY TCP4 1.2.3.4 5.6.7.8 65536 2\r\n",
    "port leading zero": b"PROXY TCP4 1.2.3.4 5.6.7.8 01 2\r\n",
    "port sign": b"PROXY TCP4 1.2.3.4 5.6.7.8 +1 2\r\n",
    "port hex": b"PROXY TCP4 1.2.3.4 5.6.7.8 0x1 2\r\n",
    "port empty": b"PROXY TCP4 1.2.3.4 5.6.7.8  2\r\n",
    "bare LF": b"PROXY TCP4 1.2.3.4 5.6.7.8 1 2\n",
    "bare CR inside": b"PROXY TCP4 1.2.3.4\r5.6.7.8 1 2\r\n",
    "non-ASCII address": "PROXY TCP4 1.2.3.٤ 5.6.7.8 1 2\r\n".encode(),
    "non-ASCII digit port": "PROXY TCP4 1.2.3.4 5.6.7.8 ٤ 2\r\n".encode(),
    "too long": b"PROXY UNKNOWN " + b"x" * V1_MAX_LENGTH + b"\r\n",
    "UNKNOWN glued": b"PROXY UNKNOWNX\r\n",
}


@pytest.mark.parametrize("data", list(V1_BAD.values()), ids=list(V1_BAD))
def test_v1_rejected(data: bytes) -> None:
    with pytest.raises(ProxyProtocolError) as caught:
        parse(data)
    assert isinstance(caught.value, ValueError) and caught.value.reason
    # byte at a time, the error comes too, and never a header
    parser = ProxyParser()
    with pytest.raises(ProxyProtocolError):
        for index in range(len(data)):
            parser.feed(data[index:index + 1])


def test_v1_without_crlf_is_refused_after_107_bytes() -> None:
    parser = ProxyParser()
    assert parser.feed(b"PROXY UNKNOWN " + b"x" * (V1_MAX_LENGTH - 15)) is NEED_MORE  # 106 bytes
    with pytest.raises(ProxyProtocolError, match="107"):
        parser.feed(b"x")


V2_BAD = {
    "version 1": v2(1, 0x11, inet_block(), version=1),
    "version 3": v2(1, 0x11, inet_block(), version=3),
    "command 2": v2(2, 0x11, inet_block()),
    "command 15": v2(15, 0x11, inet_block()),
    "family 4": v2(1, 0x41, inet_block()),
    "transport 3": v2(1, 0x13, inet_block()),
    "inet unspec transport": v2(1, 0x10, inet_block()),
    "unspec family stream": v2(1, 0x01),
    "inet block short": v2(1, 0x11, inet_block()[:11]),
    "inet6 block short": v2(1, 0x21, inet_block()),
    "unix block short": v2(1, 0x31, b"\0" * 215),
    "truncated TLV head": v2(1, 0x11, inet_block() + b"\x01\x00"),
    "TLV overruns": v2(1, 0x11, inet_block() + struct.pack("!BH", 1, 5) + b"abc"),
    "length over the cap": v2(1, 0x11, length=12 + MAX_V2_TLV_BYTES + 1),
    "unspec over the cap": v2(0, 0x00, length=MAX_V2_TLV_BYTES + 1),
}


@pytest.mark.parametrize("data", list(V2_BAD.values()), ids=list(V2_BAD))
def test_v2_rejected(data: bytes) -> None:
    with pytest.raises(ProxyProtocolError):
        parse(data)


def test_v2_bad_bytes_are_refused_before_the_block_arrives() -> None:
    # version/command, family and the length are checked as soon as they come
    for prefix in (v2(2, 0x11)[:13], v2(1, 0x41)[:14], v2(1, 0x11, length=65535)[:16]):
        with pytest.raises(ProxyProtocolError):
            parse(prefix)


def test_v2_length_at_the_cap_is_accepted() -> None:
    value = b"v" * (MAX_V2_TLV_BYTES - 3)
    header, _ = parse(v2(1, 0x11, inet_block() + tlv(0xE0, value)))
    assert header.tlvs == ((0xE0, value),)


@pytest.mark.parametrize("data", [b"GET / HTTP/1.1\r\n", b"\x16\x03\x01", b"\r\n\r\n\x00\r\nQUIT\r", b"PROXX",
                                  b" PROXY TCP4", b"\x00"])
def test_anything_else_is_a_missing_header_as_soon_as_it_differs(data: bytes) -> None:
    parser = ProxyParser()
    with pytest.raises(ProxyProtocolError, match="missing header"):
        for index in range(len(data)):
            parser.feed(data[index:index + 1])
    with pytest.raises(ProxyProtocolError):
        parser.feed(b"")  # an error sticks


def test_empty_feed_needs_more() -> None:
    assert ProxyParser().feed(b"") is NEED_MORE
    assert repr(NEED_MORE) == "NEED_MORE"


# ------------------------------------------------------------ listeners

def connect_client(address, family: int = socket.AF_INET) -> socket.socket:
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.settimeout(5.0)
    sock.connect(address)
    return sock


def closed_by_server(sock: socket.socket, timeout: float = 5.0) -> bool:
    """True once the server closed: EOF or a reset."""
    if not readable(sock, timeout):
        return False
    try:
        return sock.recv(4096) == b""
    except ConnectionResetError:
        return True


@pytest.mark.parametrize("header", [V1_TCP4, v2(1, 0x11, inet_block() + tlv(1, b"h2"))], ids=["v1", "v2"])
def test_peername_is_the_headers_and_data_arrives_intact(loop: reactor.Reactor, header: bytes) -> None:
    factory = Factory()
    listener = loop.listen(factory, proxy_protocol=True)
    assert listener.proxy_protocol
    payload = os.urandom(100_000)
    sock = connect_client(listener.address)
    try:
        sock.sendall(header[:7])
        run_for(loop, 0.05)
        assert factory.protocols == [], "no protocol before the header is complete"
        sock.sendall(header[7:] + payload[:10])
        run_until(loop, lambda: factory.protocols and len(factory.protocols[0].data) >= 10)
        protocol = factory.protocols[0]
        assert protocol.events[:2] == ["made", "data"]
        transport = protocol.transport
        assert transport.get_extra_info("peername") == ("192.0.2.7", 56324)
        assert transport.get_extra_info("socket_peername") == sock.getsockname()
        assert transport.get_extra_info("proxy") == parse(header).header
        sock.sendall(payload[10:])
        run_until(loop, lambda: len(protocol.data) >= len(payload))
        assert bytes(protocol.data) == payload
        assert listener.stats.proxy_errors == 0
        transport.write(b"bye")
        transport.close()
        assert sock.recv(3) == b"bye"
    finally:
        sock.close()
    run_until(loop, lambda: protocol.lost)
    listener.close()


def test_header_and_data_in_one_segment(loop: reactor.Reactor) -> None:
    factory = Factory()
    listener = loop.listen(factory, proxy_protocol=True)
    sock = connect_client(listener.address)
    try:
        sock.sendall(b"PROXY TCP6 2001:db8::7 2001:db8::1 1 2\r\nhello")
        run_until(loop, lambda: factory.protocols and factory.protocols[0].data)
        protocol = factory.protocols[0]
        assert bytes(protocol.data) == b"hello"
        assert protocol.transport.get_extra_info("peername") == ("2001:db8::7", 1, 0, 0)
        protocol.transport.close()
    finally:
        sock.close()
    run_until(loop, lambda: protocol.lost)
    listener.close()


@pytest.mark.parametrize("header", [b"PROXY UNKNOWN\r\n", v2(0, 0x00)], ids=["v1-unknown", "v2-local"])
def test_local_and_unknown_keep_the_sockets_peer(loop: reactor.Reactor, header: bytes) -> None:
    factory = Factory()
    listener = loop.listen(factory, proxy_protocol=True)
    sock = connect_client(listener.address)
    try:
        sock.sendall(header)
        run_until(loop, lambda: factory.protocols)
        transport = factory.protocols[0].transport
        assert transport.get_extra_info("peername") == sock.getsockname()
        assert transport.get_extra_info("socket_peername") == sock.getsockname()
        assert transport.get_extra_info("proxy") == parse(header).header
        transport.close()
    finally:
        sock.close()
    run_until(loop, lambda: factory.protocols[0].lost)
    listener.close()


@pytest.mark.parametrize("data", [b"GET / HTTP/1.1\r\nHost: x\r\n\r\n", b"PROXY TCP4 1.2.3.4 5.6.7.8 01 2\r\n",
                                  v2(3, 0x11, inet_block())], ids=["no-header", "v1-bad-port", "v2-bad-command"])
def test_bad_header_closes_and_counts(loop: reactor.Reactor, data: bytes) -> None:
    factory = Factory()
    listener = loop.listen(factory, proxy_protocol=True)
    sock = connect_client(listener.address)
    try:
        sock.sendall(data)
        run_until(loop, lambda: listener.stats.proxy_errors == 1)
        run_until(loop, lambda: listener.stats.active == 0)
        assert closed_by_server(sock)
    finally:
        sock.close()
    assert factory.protocols == [], "the protocol factory never runs for a bad header"
    assert listener.stats.as_dict()["proxy_errors"] == 1
    listener.close()


def test_eof_in_the_middle_of_a_header_counts_but_a_bare_connect_does_not(loop: reactor.Reactor) -> None:
    factory = Factory()
    listener = loop.listen(factory, proxy_protocol=True)
    bare = connect_client(listener.address)
    bare.close()  # a TCP health check
    run_until(loop, lambda: listener.stats.accepted == 1 and listener.stats.active == 0)
    assert listener.stats.proxy_errors == 0
    partial = connect_client(listener.address)
    partial.sendall(V1_TCP4[:20])
    partial.shutdown(socket.SHUT_WR)
    try:
        run_until(loop, lambda: listener.stats.proxy_errors == 1 and listener.stats.active == 0)
    finally:
        partial.close()
    assert factory.protocols == []
    listener.close()


@pytest.fixture
def vclock() -> VirtualClock:
    return VirtualClock()


def test_silent_client_is_closed_after_the_timeout(backend: str, vclock: VirtualClock) -> None:
    with reactor.Reactor(backend=backend, clock=vclock) as loop:
        factory = Factory()
        listener = loop.listen(factory, proxy_protocol=True, proxy_timeout=2.0)
        silent = connect_client(listener.address)
        slow = connect_client(listener.address)
        try:
            for _ in range(100):
                vclock.step(loop)
                if listener.stats.accepted == 2:
                    break
            assert listener.stats.accepted == 2
            slow.sendall(V1_TCP4[:10])
            vclock.advance(1.9)
            vclock.step(loop)
            assert listener.stats.active == 2 and listener.stats.proxy_errors == 0
            slow.sendall(V1_TCP4[10:])
            for _ in range(100):
                vclock.step(loop)
                if factory.protocols:
                    break
            assert len(factory.protocols) == 1, "a header completed in time is served"
            vclock.advance(0.2)
            vclock.step(loop)
            assert listener.stats.proxy_errors == 1
            assert listener.stats.active == 1
            assert closed_by_server(silent)
            # the served connection's timer was cancelled: it stays open
            vclock.advance(DEFAULT_PROXY_TIMEOUT * 2)
            vclock.step(loop)
            assert listener.stats.active == 1 and listener.stats.proxy_errors == 1
        finally:
            silent.close()
            slow.close()
        listener.close()


def test_unix_listener(loop: reactor.Reactor) -> None:
    factory = Factory()
    with tempfile.TemporaryDirectory() as tmp:
        path = os.path.join(tmp, "s")
        listener = loop.listen_unix(factory, path, proxy_protocol=True)
        sock = connect_client(path, socket.AF_UNIX)
        try:
            sock.sendall(V1_TCP4 + b"x")
            run_until(loop, lambda: factory.protocols and factory.protocols[0].data)
            transport = factory.protocols[0].transport
            assert transport.get_extra_info("peername") == ("192.0.2.7", 56324)
            assert transport.get_extra_info("socket_peername") in ("", None, b"")
            sock.sendall(b"PROXY again")  # after the header, anything is data
            run_until(loop, lambda: len(factory.protocols[0].data) == 12)
            assert bytes(factory.protocols[0].data) == b"xPROXY again"
            transport.close()
        finally:
            sock.close()
        run_until(loop, lambda: factory.protocols[0].lost)
        listener.close()


def test_off_changes_nothing(loop: reactor.Reactor) -> None:
    factory = Factory()
    listener = loop.listen(factory)
    assert not listener.proxy_protocol
    assert listener._factory is factory, "off, the accept path calls the caller's factory itself"
    sock = connect_client(listener.address)
    try:
        sock.sendall(V1_TCP4)
        run_until(loop, lambda: factory.protocols and factory.protocols[0].data)
        transport = factory.protocols[0].transport
        assert bytes(factory.protocols[0].data) == V1_TCP4, "without the option a header is data"
        assert transport.get_extra_info("proxy") is None
        assert transport.get_extra_info("proxy", "none") == "none"
        assert transport.get_extra_info("socket_peername") == transport.get_extra_info("peername") \
            == sock.getsockname()
        transport.close()
    finally:
        sock.close()
    run_until(loop, lambda: factory.protocols[0].lost)
    listener.close()


class Raising(Recorder):
    def connection_made(self, transport) -> None:
        super().connection_made(transport)
        raise RuntimeError("boom")


def test_connection_made_raising_after_the_header_aborts(loop: reactor.Reactor, errors) -> None:
    factory = Factory(Raising)
    listener = loop.listen(factory, proxy_protocol=True)
    sock = connect_client(listener.address)
    try:
        sock.sendall(V1_TCP4 + b"data")
        run_until(loop, lambda: listener.stats.active == 0)
        assert closed_by_server(sock)
    finally:
        sock.close()
    taken = errors.take()
    assert len(taken) == 1 and isinstance(taken[0]["exception"], RuntimeError)
    assert factory.protocols[0].data == b"", "no data_received after connection_made raised"
    listener.close()


def test_factory_raising_after_the_header_is_rejected(loop: reactor.Reactor, errors) -> None:
    def factory():
        raise RuntimeError("no protocol")

    listener = loop.listen(factory, proxy_protocol=True)
    sock = connect_client(listener.address)
    try:
        sock.sendall(V1_TCP4)
        run_until(loop, lambda: listener.stats.active == 0 and listener.stats.accepted == 1)
    finally:
        sock.close()
    assert listener.stats.rejected == 1 and listener.stats.proxy_errors == 0
    assert [type(c["exception"]) for c in errors.take()] == [RuntimeError]
    listener.close()


@pytest.mark.parametrize("kwargs, error", [
    ({"proxy_protocol": 1}, TypeError),
    ({"proxy_protocol": True, "proxy_timeout": 0}, ValueError),
    ({"proxy_protocol": True, "proxy_timeout": float("nan")}, ValueError),
    ({"proxy_protocol": True, "proxy_timeout": float("inf")}, ValueError),
    ({"proxy_protocol": True, "proxy_timeout": "5"}, TypeError),
    ({"proxy_from": "127.0.0.1/32"}, ValueError),  # without proxy_protocol it would mean nothing
    ({"proxy_protocol": True, "proxy_from": "10.0.0.1/8"}, ValueError),  # host bits set
    ({"proxy_protocol": True, "proxy_from": "balancer"}, ValueError),
    ({"proxy_protocol": True, "proxy_from": []}, ValueError),
    ({"proxy_protocol": True, "proxy_from": [10]}, TypeError),
    ({"proxy_protocol": True, "proxy_from": 10}, TypeError),
])
def test_arguments_are_checked(loop: reactor.Reactor, kwargs, error) -> None:
    with pytest.raises(error):
        loop.listen(reactor.Protocol, **kwargs)
    with tempfile.TemporaryDirectory() as tmp, pytest.raises(error):
        loop.listen_unix(reactor.Protocol, os.path.join(tmp, "s"), **kwargs)


# ------------------------------------------------------- trusted balancers

def test_the_default_trusts_loopback_only() -> None:
    trusted = check_proxy_from(None, True)
    assert [trusted.trusts(host) for host in ("127.0.0.1", "127.8.9.10", "::1", "::ffff:127.0.0.1")] == [True] * 4
    assert [trusted.trusts(host) for host in ("10.0.0.1", "192.0.2.7", "::2", "::ffff:10.0.0.1", "")] == [False] * 5
    some = check_proxy_from("10.0.0.0/8, 2001:db8::/32", True)
    assert some.trusts("10.1.2.3") and some.trusts("2001:db8::5") and not some.trusts("127.0.0.1")
    assert check_proxy_from(None, False) is None


def test_a_header_from_an_untrusted_source_is_refused_unread(loop: reactor.Reactor) -> None:
    # The balancer is 127.0.0.2; a client on 127.0.0.1 reaches the port
    # directly with a well-formed header: closed, counted, never believed.
    factory = Factory()
    listener = loop.listen(factory, proxy_protocol=True, proxy_from="127.0.0.2/32")
    direct = connect_client(listener.address)
    try:
        direct.sendall(V1_TCP4 + b"hello")
        run_until(loop, lambda: listener.stats.proxy_refused == 1 and listener.stats.active == 0)
        assert closed_by_server(direct)
    finally:
        direct.close()
    assert factory.protocols == [] and listener.stats.proxy_errors == 0
    balancer = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    try:
        balancer.bind(("127.0.0.2", 0))
        balancer.settimeout(5.0)
        balancer.connect(listener.address)
        balancer.sendall(V1_TCP4 + b"hello")
        run_until(loop, lambda: factory.protocols and factory.protocols[0].data)
        protocol = factory.protocols[0]
        assert protocol.transport.get_extra_info("peername")[0] == parse(V1_TCP4).header.source[0]
        protocol.transport.close()
    finally:
        balancer.close()
    run_until(loop, lambda: protocol.lost)
    assert listener.stats.proxy_refused == 1
    listener.close()


def test_reactor_aio_create_server_takes_proxy_from() -> None:
    import asyncio

    import reactor.aio

    async def main():
        seen = []

        class Proto(asyncio.Protocol):
            def connection_made(self, transport):
                seen.append(transport.get_extra_info("peername"))
                transport.close()

        server = await asyncio.get_running_loop().create_server(Proto, "127.0.0.1", 0, proxy_protocol=True,
                                                                proxy_from=["127.0.0.2/32"])
        port = server.sockets[0].getsockname()[1]
        for source in ("127.0.0.1", "127.0.0.2"):
            reader, writer = await asyncio.open_connection("127.0.0.1", port, local_addr=(source, 0))
            writer.write(V1_TCP4)
            await asyncio.wait_for(reader.read(), 10)
            writer.close()
        stats = server.stats
        server.close()
        await server.wait_closed()
        return seen, stats

    seen, stats = reactor.aio.run(main())
    assert len(seen) == 1 and seen[0][0] == parse(V1_TCP4).header.source[0]
    assert stats.proxy_refused == 1
