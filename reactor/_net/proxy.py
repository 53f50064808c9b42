"""The PROXY protocol (v1 and v2), sans-IO: bytes in, a header or an error out.

A load balancer in TCP mode (HAProxy ``send-proxy`` / ``send-proxy-v2``, AWS
NLB, Envoy, nginx ``proxy_protocol on``) opens its own connection to us, so
the socket's peer is the balancer. It sends one header first, before any
byte of the client's, saying who the client is. The facts, from the
specification (haproxy.org/download/3.0/doc/proxy-protocol.txt):

- v1 is one line of ASCII: ``PROXY`` SP (``TCP4`` | ``TCP6`` | ``UNKNOWN``)
  SP src SP dst SP sport SP dport CRLF, single spaces, at most 107 bytes
  with the CRLF. Addresses are in their family's textual form (dotted quad;
  RFC 4291 for IPv6); ports are decimal 0..65535. After ``UNKNOWN`` the
  receiver must ignore the rest of the line (``PROXY UNKNOWN\\r\\n`` is the
  shortest header) and use the socket's own addresses.
- v2 is binary: the 12-byte signature ``\\r\\n\\r\\n\\0\\r\\nQUIT\\n``; a byte of
  version (high nibble, must be 2) and command (low nibble: 0 LOCAL, 1
  PROXY; others must be rejected); a byte of family (high nibble: 0 UNSPEC,
  1 INET, 2 INET6, 3 UNIX) and transport (low: 0 UNSPEC, 1 STREAM, 2
  DGRAM); a 16-bit big-endian length of what follows. The address block is
  4+4+2+2 bytes for INET, 16+16+2+2 for INET6, 108+108 for UNIX, none for
  UNSPEC; the rest of the length is TLVs (type: 1 byte, length: 2 bytes big
  endian, value).
- LOCAL (the balancer's own health checks) and UNSPEC say "no client": the
  receiver must accept the connection and use the real endpoints, and
  skip the address block.
- The header must arrive before any data, and a receiver must not guess: a
  connection whose first bytes are neither signature is not PROXY traffic.
  The v1 signature ``PROXY`` and the v2 one differ in their first byte, so
  the first byte decides which parser reads on.

What this means for us -- strict everywhere, because a server behind a
balancer trusts the header's address (logs, rate limits, ACLs) and a
client that reaches us directly must not be able to forge one by being
sloppy: anything the specification does not allow is ``ProxyProtocolError``
naming the rule, and the connection is closed (the listener counts it).

- v1: the line ends at the first CRLF, which must come within 107 bytes
  (so a client that never sends one costs at most 107 bytes of buffer);
  exactly five fields after ``PROXY``, one space apart; a valid address of
  the named family (``ipaddress``: no IPv4 octet with a leading zero; and no
  IPv6 zone ``%eth0``, which means nothing on another host); ports are
  decimal digits without leading zeros. ``UNKNOWN``: the rest of the line is
  ignored, as the specification requires.
- v2: version 2, command 0 or 1, one of the seven family/transport pairs
  above; the length at most the address block plus ``MAX_V2_TLV_BYTES``
  (the specification allows 64 KiB; no balancer sends more than a few
  hundred bytes of TLVs); the length at least the family's address block;
  the TLVs fill the rest exactly. For LOCAL and UNSPEC the block is skipped
  as the specification says (its TLVs too). TLVs are returned as they are,
  (type, value); PP2_TYPE_CRC32C is not verified.
- The bytes after the header are the client's: returned with the header.

Who may send one. A header is believed because the balancer is trusted, so
it must come from the balancer: a client that reaches the port directly
(the balancer's network is rarely the only way in) could otherwise send a
well-formed header and be taken at its word. ``proxy_from`` lists the
networks a header is taken from (``TrustedSources``); a TCP connection from
anywhere else is closed at accept, before a byte is read, and counted in
``stats.proxy_refused``. The default is loopback only (127.0.0.0/8 and ::1:
a balancer on the same host); a balancer elsewhere must be named, and
``0.0.0.0/0,::/0`` trusts every source, which is what the listener did
before the list existed. A Unix socket's peers are not filtered: who may
connect is the socket file's mode (``serve --unix-mode``).

``HeaderReader`` is the one piece that meets a connection: the listener's
pre-protocol (``listen(..., proxy_protocol=True)``). The transport hands it
the bytes until the header is complete; then it hands the connection on, a
plain composition of the transport's own calls: the header recorded
(``peername`` and the extra info), ``transport.set_protocol(real)`` (which
reads the way the real protocol's type asks: a TLS layer, whose ClientHello
may share the header's segment, lends its buffer), the real protocol's
``connection_made`` only then, and the bytes after the header as its first
data. A bad
header, an EOF in the middle of one, or no header within the timeout closes
the connection and counts in ``stats.proxy_errors``; the real protocol
never hears of it (nor does its factory run). An EOF before any byte (a TCP
health check) is not an error.
"""

from __future__ import annotations

import ipaddress
import os
import socket
import struct
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, NamedTuple

from ..protocols import Protocol

if TYPE_CHECKING:
    from .host import Host
    from .transport import Transport

__all__ = [
    "ProxyProtocolError", "ProxyHeader", "Parsed", "NeedMore", "NEED_MORE", "ProxyParser",
    "V1_SIGNATURE", "V2_SIGNATURE", "V1_MAX_LENGTH", "MAX_V2_TLV_BYTES", "LOCAL", "PROXY",
    "DEFAULT_PROXY_TIMEOUT", "DEFAULT_PROXY_FROM", "TrustedSources", "check_proxy_from", "HeaderReader", "parse",
]

#: seconds a connection may take to send its whole header; a balancer sends
#: it with its first segment, so only a client that is not a balancer, or a
#: dead one, takes longer (haproxy's own accept-proxy wait is its
#: ``timeout client``, often 5 s too)
DEFAULT_PROXY_TIMEOUT = 5.0
#: the sources a PROXY header is taken from when ``proxy_from`` is not given
DEFAULT_PROXY_FROM = ("127.0.0.0/8", "::1/128")
#: peer hosts whose verdict is kept (the accept drain shares one string per
#: host, so a balancer's few addresses are looked up once each)
_TRUST_CACHE_SIZE = 1024

#: v1 starts with these 6 bytes ("PROXY" and its space)
V1_SIGNATURE = b"PROXY "
#: v1: the longest line the specification allows, CRLF included
V1_MAX_LENGTH = 107
#: v2: the 12-byte signature
V2_SIGNATURE = b"\r\n\r\n\x00\r\nQUIT\n"
#: v2: signature, version/command, family/transport, 16-bit length
V2_FIXED_LENGTH = 16
#: v2: TLV bytes accepted after the address block (the spec allows up to 64 KiB)
MAX_V2_TLV_BYTES = 4096
#: v2 TLV head: type (1 byte), length (2 bytes, big endian)
_TLV_HEAD = struct.Struct("!BH")

LOCAL, PROXY = "LOCAL", "PROXY"
_V2_COMMANDS = {0x0: LOCAL, 0x1: PROXY}
_V2_VERSION = 0x2
#: v2 family nibble -> (socket family, address block size)
_V2_FAMILIES = {
    0x0: (socket.AF_UNSPEC, 0),
    0x1: (socket.AF_INET, 4 + 4 + 2 + 2),
    0x2: (socket.AF_INET6, 16 + 16 + 2 + 2),
    0x3: (socket.AF_UNIX, 108 + 108),
}
#: v2 transport nibble -> socket type (UNSPEC only with the UNSPEC family)
_V2_TRANSPORTS = {0x0: None, 0x1: socket.SOCK_STREAM, 0x2: socket.SOCK_DGRAM}
_UNIX_PATH_SIZE = 108
_V1_FAMILIES = {b"TCP4": socket.AF_INET, b"TCP6": socket.AF_INET6}
_V1_UNKNOWN = b"UNKNOWN"
_CRLF = b"\r\n"
_MAX_PORT = 65535


class TrustedSources:
    """The networks a PROXY header is taken from (module docs);
    ``trusts(host)`` for a peer's host string."""

    __slots__ = ("networks", "_cache")

    def __init__(self, networks: tuple[ipaddress.IPv4Network | ipaddress.IPv6Network, ...]) -> None:
        self.networks = networks
        self._cache: dict[str, bool] = {}

    def trusts(self, host: str) -> bool:
        verdict = self._cache.get(host)
        if verdict is None:
            verdict = self._lookup(host)
            if len(self._cache) >= _TRUST_CACHE_SIZE:
                self._cache.clear()
            self._cache[host] = verdict
        return verdict

    def _lookup(self, host: str) -> bool:
        try:
            address: Any = ipaddress.ip_address(host.partition("%")[0])
        except ValueError:
            return False
        if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
            address = address.ipv4_mapped  # a dual-stack socket's IPv4 peer
        return any(address in network for network in self.networks)

    def __repr__(self) -> str:
        return f"TrustedSources({', '.join(str(n) for n in self.networks)})"


def check_proxy_from(proxy_from: Any, proxy_protocol: bool) -> TrustedSources | None:
    """``proxy_from`` checked: None (the default, loopback only) or CIDR
    networks as strings (an address alone is one host); a str may list them
    comma-separated. None without ``proxy_protocol``."""
    if not proxy_protocol:
        if proxy_from is not None:
            raise ValueError("proxy_from is only meaningful with proxy_protocol=True")
        return None
    if proxy_from is None:
        proxy_from = DEFAULT_PROXY_FROM
    if isinstance(proxy_from, str):
        proxy_from = [item.strip() for item in proxy_from.split(",")]
    try:
        items = list(proxy_from)
    except TypeError:
        raise TypeError(f"proxy_from must be CIDR strings or None, not {type(proxy_from).__name__}") from None
    networks = []
    for item in items:
        if not isinstance(item, str):
            raise TypeError(f"proxy_from must be CIDR strings or None, not {type(item).__name__} {item!r}")
        try:
            networks.append(ipaddress.ip_network(item, strict=True))
        except ValueError as exc:
            raise ValueError(f"proxy_from: {item!r} is not a network in CIDR form (10.0.0.0/8, ::1/128): "
                             f"{exc}") from None
    if not networks:
        raise ValueError("proxy_from is empty: no source could send a PROXY header")
    return TrustedSources(tuple(networks))


class ProxyProtocolError(ValueError):
    """The bytes are not a valid PROXY protocol header; ``reason`` says which
    rule they break."""

    def __init__(self, reason: str) -> None:
        super().__init__(f"bad PROXY protocol header: {reason}")
        self.reason = reason


@dataclass(frozen=True, slots=True)
class ProxyHeader:
    """A parsed header.

    version: 1 or 2. command: ``"PROXY"`` (the addresses are the client's
    connection) or ``"LOCAL"`` (v2: the balancer's own connection; use the
    socket's addresses). family: ``AF_INET``, ``AF_INET6``, ``AF_UNIX`` or
    ``AF_UNSPEC`` (v1 ``UNKNOWN``, v2 UNSPEC, and LOCAL). type:
    ``SOCK_STREAM``, ``SOCK_DGRAM`` or None (unspecified). source,
    destination: ``(host, port)`` for AF_INET, ``(host, port, 0, 0)`` for
    AF_INET6 (as ``getpeername`` has them), the path for AF_UNIX (``str``;
    ``bytes`` for an abstract name, leading NUL kept), None when there are
    none. tlvs: v2's ``(type, value)`` pairs, in order.
    """

    version: int
    command: str
    family: int
    type: int | None
    source: Any
    destination: Any
    tlvs: tuple[tuple[int, bytes], ...] = ()

    @property
    def has_addresses(self) -> bool:
        """True when the header names the client (PROXY with a known family)."""
        return self.source is not None


class NeedMore:
    """``ProxyParser.feed`` result: the header is not complete yet."""

    __slots__ = ()

    def __repr__(self) -> str:
        return "NEED_MORE"


NEED_MORE = NeedMore()


class Parsed(NamedTuple):
    """``ProxyParser.feed`` result: the header, and the bytes after it."""

    header: ProxyHeader
    rest: bytes


class ProxyParser:
    """Feed bytes as they come: ``feed(data)`` returns ``NEED_MORE`` until
    the header is complete, then ``Parsed(header, rest)`` once; it raises
    ``ProxyProtocolError`` as soon as the bytes cannot become a valid header
    (and on every feed after that). Buffers at most one header."""

    def __init__(self) -> None:
        self._buffer = b""
        self._error: ProxyProtocolError | None = None
        self._done = False

    def feed(self, data: bytes) -> NeedMore | Parsed:
        if self._error is not None:
            raise self._error
        if self._done:
            raise RuntimeError("the header was already parsed")
        self._buffer += data
        try:
            result = _parse(self._buffer)
        except ProxyProtocolError as exc:
            self._error = exc
            self._buffer = b""
            raise
        if result is not NEED_MORE:
            self._done = True
            self._buffer = b""
        return result

    @property
    def buffered(self) -> int:
        """Bytes received of a header not yet complete."""
        return len(self._buffer)


def parse(data: bytes) -> NeedMore | Parsed:
    """Parse a header from the start of ``data`` (one call, no state)."""
    return _parse(bytes(data))


def _parse(buffer: bytes) -> NeedMore | Parsed:
    if not buffer:
        return NEED_MORE
    # The first byte decides: "P" (v1) or "\r" (v2); each signature must then
    # match as far as we have it.
    for signature, parse_version in ((V1_SIGNATURE, _parse_v1), (V2_SIGNATURE, _parse_v2)):
        if buffer[0] == signature[0]:
            head = buffer[:len(signature)]
            if head != signature[:len(head)]:
                raise ProxyProtocolError("missing header (the first bytes are not a PROXY signature)")
            if len(head) < len(signature):
                return NEED_MORE
            return parse_version(buffer)
    raise ProxyProtocolError("missing header (the first bytes are not a PROXY signature)")


# ------------------------------------------------------------------------ v1

def _parse_v1(buffer: bytes) -> NeedMore | Parsed:
    end = buffer.find(_CRLF, 0, V1_MAX_LENGTH)
    if end < 0:
        if len(buffer) >= V1_MAX_LENGTH:
            raise ProxyProtocolError(f"v1: no CRLF within {V1_MAX_LENGTH} bytes")
        if b"\n" in buffer or b"\r" in buffer[:-1]:
            raise ProxyProtocolError("v1: a bare CR or LF in the line")
        return NEED_MORE
    line = buffer[len(V1_SIGNATURE):end]
    if b"\n" in line or b"\r" in line:
        raise ProxyProtocolError("v1: a bare CR or LF in the line")
    rest = buffer[end + len(_CRLF):]
    if line == _V1_UNKNOWN or line.startswith(_V1_UNKNOWN + b" "):
        # The specification: ignore the rest of the line, use the socket's addresses.
        return Parsed(ProxyHeader(1, PROXY, socket.AF_UNSPEC, None, None, None), rest)
    fields = line.split(b" ")
    if len(fields) != 5:
        raise ProxyProtocolError("v1: expected 'TCP4|TCP6|UNKNOWN src dst sport dport', one space apart")
    proto, src, dst, sport, dport = fields
    family = _V1_FAMILIES.get(proto)
    if family is None:
        raise ProxyProtocolError(f"v1: unknown protocol {proto[:8]!r} (TCP4, TCP6 or UNKNOWN)")
    source = _v1_address(family, src, sport)
    destination = _v1_address(family, dst, dport)
    return Parsed(ProxyHeader(1, PROXY, family, socket.SOCK_STREAM, source, destination), rest)


def _v1_address(family: int, host: bytes, port: bytes) -> tuple[Any, ...]:
    try:
        text = host.decode("ascii")
    except UnicodeDecodeError:
        raise ProxyProtocolError("v1: an address is not ASCII") from None
    try:
        if "%" in text:  # an IPv6 zone means nothing on another host
            raise ValueError
        address: ipaddress.IPv4Address | ipaddress.IPv6Address = (
            ipaddress.IPv4Address(text) if family == socket.AF_INET else ipaddress.IPv6Address(text))
    except ValueError:
        kind = "IPv4" if family == socket.AF_INET else "IPv6"
        raise ProxyProtocolError(f"v1: {text[:46]!r} is not a valid {kind} address") from None
    number = _v1_port(port)
    if family == socket.AF_INET:
        return (str(address), number)
    return (str(address), number, 0, 0)


def _v1_port(text: bytes) -> int:
    # isdigit() on bytes is ASCII only; no sign, no spaces, no leading zero
    if not text.isdigit() or (len(text) > 1 and text[0] == ord("0")) or int(text) > _MAX_PORT:
        raise ProxyProtocolError(f"v1: port {text[:8]!r} is not a decimal 0..65535 without leading zeros")
    return int(text)


# ------------------------------------------------------------------------ v2

def _parse_v2(buffer: bytes) -> NeedMore | Parsed:
    if len(buffer) < V2_FIXED_LENGTH:
        # check the version/command and family bytes as soon as they come
        if len(buffer) > 12:
            _v2_command(buffer[12])
        if len(buffer) > 13:
            _v2_family(buffer[13])
        return NEED_MORE
    command = _v2_command(buffer[12])
    family, sock_type, address_size = _v2_family(buffer[13])
    (length,) = struct.unpack_from("!H", buffer, 14)
    if length > address_size + MAX_V2_TLV_BYTES:
        raise ProxyProtocolError(f"v2: length {length} is over the {address_size + MAX_V2_TLV_BYTES} "
                                 "bytes accepted for this family")
    if len(buffer) < V2_FIXED_LENGTH + length:
        return NEED_MORE
    block = buffer[V2_FIXED_LENGTH:V2_FIXED_LENGTH + length]
    rest = buffer[V2_FIXED_LENGTH + length:]
    if command == LOCAL or family == socket.AF_UNSPEC:
        # The specification: accept, use the real endpoints, skip the block.
        return Parsed(ProxyHeader(2, command, socket.AF_UNSPEC, sock_type if command == PROXY else None,
                                  None, None), rest)
    if length < address_size:
        raise ProxyProtocolError(f"v2: length {length} is shorter than the {address_size}-byte address block")
    source, destination = _v2_addresses(family, block[:address_size])
    tlvs = _v2_tlvs(block[address_size:])
    return Parsed(ProxyHeader(2, command, family, sock_type, source, destination, tlvs), rest)


def _v2_command(byte: int) -> str:
    version, command = byte >> 4, byte & 0x0F
    if version != _V2_VERSION:
        raise ProxyProtocolError(f"v2: version {version} (must be 2)")
    if command not in _V2_COMMANDS:
        raise ProxyProtocolError(f"v2: command {command} (0 LOCAL or 1 PROXY)")
    return _V2_COMMANDS[command]


def _v2_family(byte: int) -> tuple[int, int | None, int]:
    family_nibble, transport_nibble = byte >> 4, byte & 0x0F
    if family_nibble not in _V2_FAMILIES or transport_nibble not in _V2_TRANSPORTS or (
            (family_nibble == 0) != (transport_nibble == 0)):
        raise ProxyProtocolError(f"v2: family/transport byte 0x{byte:02x} is not one the specification defines")
    family, size = _V2_FAMILIES[family_nibble]
    return family, _V2_TRANSPORTS[transport_nibble], size


def _v2_addresses(family: int, block: bytes) -> tuple[Any, Any]:
    if family == socket.AF_INET:
        src, dst, sport, dport = struct.unpack("!4s4sHH", block)
        return (socket.inet_ntop(family, src), sport), (socket.inet_ntop(family, dst), dport)
    if family == socket.AF_INET6:
        src, dst, sport, dport = struct.unpack("!16s16sHH", block)
        return (socket.inet_ntop(family, src), sport, 0, 0), (socket.inet_ntop(family, dst), dport, 0, 0)
    return _unix_path(block[:_UNIX_PATH_SIZE]), _unix_path(block[_UNIX_PATH_SIZE:])


def _unix_path(raw: bytes) -> str | bytes:
    # NUL-padded, as in sockaddr_un; a leading NUL is Linux's abstract namespace
    # (returned as bytes, as socket.getpeername() does)
    if raw[:1] == b"\0":
        return raw.rstrip(b"\0")
    return os.fsdecode(raw.split(b"\0", 1)[0])


def _v2_tlvs(data: bytes) -> tuple[tuple[int, bytes], ...]:
    tlvs = []
    offset = 0
    while offset < len(data):
        if len(data) - offset < _TLV_HEAD.size:
            raise ProxyProtocolError("v2: a truncated TLV after the address block")
        tlv_type, tlv_length = _TLV_HEAD.unpack_from(data, offset)
        offset += _TLV_HEAD.size
        if tlv_length > len(data) - offset:
            raise ProxyProtocolError(f"v2: TLV 0x{tlv_type:02x} of {tlv_length} bytes overruns the header")
        tlvs.append((tlv_type, data[offset:offset + tlv_length]))
        offset += tlv_length
    return tuple(tlvs)


# ------------------------------------------------------- on a connection

class HeaderReader(Protocol):
    """The pre-protocol of a ``proxy_protocol=True`` listener (module docs).

    ``host`` is the loop the connection runs on (the timer's); ``listener``
    is told ``_proxy_failed(reason)``; ``factory`` makes the real protocol
    once the header is complete; ``timeout`` bounds the wait (one timer per
    connection, cancelled at the header)."""

    __slots__ = ("_reactor", "_listener", "_factory", "_timeout", "_parser", "_transport", "_timer")

    def __init__(self, host: Host, listener: Any, factory: Callable[[], Any], timeout: float) -> None:
        self._reactor = host
        self._listener = listener
        self._factory = factory
        self._timeout = timeout
        self._parser = ProxyParser()
        self._transport: Transport | None = None
        self._timer: Any = None

    def connection_made(self, transport: Any) -> None:
        self._transport = transport
        self._timer = self._reactor.call_later(self._timeout, self._timed_out)

    def data_received(self, data: bytes) -> None:
        try:
            result = self._parser.feed(data)
        except ProxyProtocolError as exc:
            self._fail(exc.reason)
            return
        if isinstance(result, NeedMore):
            return
        self._cancel_timer()
        transport = self._transport
        assert transport is not None
        try:
            protocol = self._factory()
        except (SystemExit, KeyboardInterrupt):
            raise
        except BaseException as exc:
            # as the listener does when its factory raises: close, count, report
            self._listener.stats.rejected += 1
            self._reactor.call_exception_handler({"message": "the protocol factory failed; connection closed",
                                               "exception": exc, "transport": transport, "protocol": self})
            transport.abort()
            return
        self._hand_over(transport, result, protocol)

    def _hand_over(self, transport: Transport, result: Parsed, protocol: Any) -> None:
        """The header is read: the connection is ``protocol``'s from now on
        (module docs). Its ``connection_made`` runs here, in this callback's
        context, which is the connection's."""
        transport._set_proxy_header(result.header)
        transport.set_protocol(protocol)
        if transport._begin() is None:  # None: connection_made did not raise
            transport._deliver(result.rest)

    def eof_received(self) -> None:
        if self._parser.buffered:
            self._fail("the connection closed in the middle of the header")
        self._cancel_timer()
        return None  # the transport closes

    def connection_lost(self, exc: Exception | None) -> None:
        self._cancel_timer()
        self._transport = None

    def _timed_out(self) -> None:
        self._timer = None
        self._fail(f"no complete header within {self._timeout:g} s")

    def _fail(self, reason: str) -> None:
        self._cancel_timer()
        transport = self._transport
        if transport is not None and not transport.is_closing():
            self._listener._proxy_failed(transport, reason)
            transport.close()

    def _cancel_timer(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
