"""The wire: the TCP segments of our own connections, read from the kernel
through an ``AF_PACKET`` socket and parsed here (no libpcap, no tcpdump).

Facts this module relies on (Linux):

- ``socket(AF_PACKET, SOCK_DGRAM, 0)`` receives nothing until it is bound
  to a protocol; bound to ``ETH_P_ALL`` it is a *tap*: it sees what every
  interface (or the one it is bound to) receives, and -- only a tap does --
  what it transmits, as a clone marked ``PACKET_OUTGOING`` and stamped at
  that moment (``dev_queue_xmit_nit``). A socket bound to ``ETH_P_IP``
  sees received packets only. SOCK_DGRAM hands over the packet from its
  network header: here, the IP header. It needs CAP_NET_RAW.
- On loopback each segment crosses the tap twice: once outgoing, and once
  more when ``lo`` delivers it to itself (``PACKET_HOST``). We keep the
  outgoing copy and drop the other one in the kernel: it is stamped when
  the sender's kernel transmits, and it exists even if the receive side
  then drops the packet (libpcap keeps the other one; either would do).
  On any other interface a segment is seen once: outgoing or incoming.
- A classic BPF program attached with ``SO_ATTACH_FILTER`` runs on every
  packet before it is queued: it keeps only IPv4/IPv6 TCP (and ICMP where
  asked) with one of our ports, so a busy machine's other connections never
  fill our queue. It is attached before the socket is bound, so nothing
  unfiltered is ever queued; a new program replaces the old one at once
  (the lab adds a port before each connect). What it lets through is cut
  to ``SNAPLEN`` bytes: headers are all we read.
- The tap sees a packet before ``tc`` ingress does: a packet a ``tc``
  black hole drops on arrival was still *on the wire*, and is captured.
- ``SO_TIMESTAMPING`` (software) gives each packet's kernel time
  (CLOCK_REALTIME, ns), taken as the tap sees it -- but only while the
  kernel's time-stamping is switched on, and asking for it switches it on
  *later*, from a work queue (``net_enable_timestamp``): packets sent in
  between carry no time. (``SO_TIMESTAMPNS`` would stamp those with the
  moment we read them, silently.) It goes off again, the same way, when
  the last socket that asked is closed, and switching it on took up to
  3.3 s under load here. So one UDP socket that asks for it is kept open
  for the life of the process (``stamping_on``): the first tap waits until
  a datagram it sends itself comes back stamped, later taps find it on. A
  packet without a time is counted (``unstamped``), never given a wrong one.
  ``time.time() - time.monotonic()``, read once, maps the times onto the
  monotonic clock the lab stamps its calls with (both are slewed alike by
  NTP; only a clock step would move it).
- ``PACKET_STATISTICS`` counts what the kernel had to drop because our
  queue was full: a capture with drops is incomplete and says so.

Sequence numbers are shown relative to each side's ISN (its SYN's
sequence number), as tcpdump does; the window is scaled by the shift each
side announced on its SYN (RFC 7323) when both SYNs were seen.
"""

from __future__ import annotations

import atexit
import ctypes
import ctypes.util
import os
import select
import socket
import struct
import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

__all__ = ["Capture", "Packet", "Numbering", "flag_names", "parse", "CaptureUnavailable", "SNAPLEN"]

ETH_P_ALL = 0x0003
ETH_P_IP = 0x0800
ETH_P_IPV6 = 0x86DD
SOL_PACKET = 263
PACKET_STATISTICS = 6
SO_ATTACH_FILTER = 26
SO_TIMESTAMPING = 37
#: SOF_TIMESTAMPING_RX_SOFTWARE | SOF_TIMESTAMPING_SOFTWARE: received packets' software time
_STAMP_FLAGS = (1 << 3) | (1 << 4)
#: bound on waiting for the kernel to switch time-stamping on (a work queue: ms, seconds under load)
STAMPING_WAIT = 15.0
SO_RCVBUFFORCE = 33  # SO_RCVBUF past net.core.rmem_max (CAP_NET_ADMIN)
PACKET_HOST, PACKET_OUTGOING = 0, 4
ARPHRD_LOOPBACK = 772
#: bytes kept of each packet: an IPv4 or IPv6 header and a TCP header with
#: every option (60), or an ICMP error quoting the IP and TCP headers' start
SNAPLEN = 160
#: the capture's receive buffer: a scenario sends tens of segments, serve
#: bursts of thousands (each queued packet costs its buffer's true size)
RCVBUF = 4 << 20

_TCP, _ICMP, _ICMPV6 = 6, 1, 58
_FIN, _SYN, _RST, _PSH, _ACK, _URG, _ECE, _CWR = 0x01, 0x02, 0x04, 0x08, 0x10, 0x20, 0x40, 0x80
#: in the order people say them: SYN/ACK, FIN/ACK, RST/ACK, PSH/ACK
_FLAG_ORDER = [(_SYN, "SYN"), (_FIN, "FIN"), (_RST, "RST"), (_PSH, "PSH"), (_ACK, "ACK"), (_URG, "URG"),
               (_ECE, "ECE"), (_CWR, "CWR")]
_ICMP_UNREACH = {0: "net unreachable", 1: "host unreachable", 2: "protocol unreachable", 3: "port unreachable",
                 4: "fragmentation needed", 9: "net prohibited", 10: "host prohibited", 13: "prohibited"}


class CaptureUnavailable(OSError):
    """The capture cannot be opened here (no CAP_NET_RAW, no AF_PACKET)."""


def flag_names(flags: int) -> str:
    """``0x12`` -> ``"SYN/ACK"``."""
    return "/".join(name for bit, name in _FLAG_ORDER if flags & bit) or "none"


@dataclass
class Packet:
    """One captured TCP segment (or an ICMP error about one), as parsed."""

    #: the kernel's time for it (CLOCK_REALTIME, s)
    time: float
    #: source and destination (ip, port); for an ICMP error, those of the
    #: segment it quotes (ours), and ``icmp`` says what the router said
    src: tuple[str, int]
    dst: tuple[str, int]
    flags: int
    seq: int
    ack: int
    window: int
    #: payload bytes
    length: int
    #: TCP options by name (mss, wscale, sackOK, ts, sack)
    options: dict[str, Any] = field(default_factory=dict)
    #: "host unreachable" and its sender, for an ICMP error
    icmp: str | None = None
    icmp_from: str | None = None
    #: PACKET_OUTGOING: this host sent it
    outgoing: bool = False

    @property
    def flag_text(self) -> str:
        return f"ICMP {self.icmp}" if self.icmp else flag_names(self.flags)


def _ip_text(family: int, raw: bytes) -> str:
    return socket.inet_ntop(family, raw)


def _options(raw: bytes) -> dict[str, Any]:
    found: dict[str, Any] = {}
    i = 0
    while i < len(raw):
        kind = raw[i]
        if kind == 0:  # end of options
            break
        if kind == 1:  # no-op
            i += 1
            continue
        if i + 1 >= len(raw) or raw[i + 1] < 2:
            break  # malformed: stop rather than loop
        size = raw[i + 1]
        body = raw[i + 2:i + size]
        if kind == 2 and len(body) == 2:
            found["mss"] = struct.unpack("!H", body)[0]
        elif kind == 3 and len(body) == 1:
            found["wscale"] = body[0]
        elif kind == 4:
            found["sackOK"] = True
        elif kind == 5:
            found["sack"] = len(body) // 8
        elif kind == 8 and len(body) == 8:
            found["ts"] = struct.unpack("!II", body)
        i += size
    return found


def _tcp(data: bytes, offset: int, payload_end: int) -> tuple[int, int, int, int, int, int, int, dict[str, Any]] | None:
    """(sport, dport, seq, ack, flags, window, payload length, options) of
    the TCP header at ``offset``; None if it is cut short."""
    if len(data) < offset + 20:
        return None
    sport, dport, seq, ack, off_flags, window = struct.unpack("!HHIIHH", data[offset:offset + 16])
    header = (off_flags >> 12) * 4
    options = _options(data[offset + 20:offset + header]) if header > 20 else {}
    return sport, dport, seq, ack, off_flags & 0xFF, window, max(0, payload_end - offset - header), options


def parse(data: bytes, stamp: float = 0.0, outgoing: bool = False) -> Packet | None:
    """A packet from its IP header on (what a SOCK_DGRAM packet socket
    gives), or None if it is not a TCP segment or an ICMP error about one."""
    if not data:
        return None
    version = data[0] >> 4
    if version == 4 and len(data) >= 20:
        family, header, proto = socket.AF_INET, (data[0] & 0x0F) * 4, data[9]
        total = struct.unpack("!H", data[2:4])[0]
        src, dst = _ip_text(family, data[12:16]), _ip_text(family, data[16:20])
        icmp_proto = _ICMP
    elif version == 6 and len(data) >= 40:
        # extension headers are not followed: TCP right after the fixed header
        family, header, proto = socket.AF_INET6, 40, data[6]
        total = 40 + struct.unpack("!H", data[4:6])[0]
        src, dst = _ip_text(family, data[8:24]), _ip_text(family, data[24:40])
        icmp_proto = _ICMPV6
    else:
        return None
    if proto == _TCP:
        tcp = _tcp(data, header, total)
        if tcp is None:
            return None
        sport, dport, seq, ack, flags, window, length, options = tcp
        return Packet(stamp, (src, sport), (dst, dport), flags, seq, ack, window, length, options,
                      outgoing=outgoing)
    if proto == icmp_proto and len(data) >= header + 8:
        kind, code = data[header], data[header + 1]
        # destination unreachable (v4 type 3, v6 type 1), quoting our segment's IP header and ports
        if (family == socket.AF_INET and kind == 3) or (family == socket.AF_INET6 and kind == 1):
            quoted = data[header + 8:]
            inner = parse(quoted + b"\0" * 20, stamp)  # only its first 8 TCP bytes are quoted (RFC 792)
            if inner is None:
                return None
            what = _ICMP_UNREACH.get(code, f"unreachable code {code}") if family == socket.AF_INET else \
                f"unreachable code {code}"
            return Packet(stamp, inner.src, inner.dst, 0, inner.seq, 0, 0, 0, icmp=what, icmp_from=src,
                          outgoing=outgoing)
    return None


# ------------------------------------------------------------------ BPF

_BPF_LD, _BPF_LDX, _BPF_JMP, _BPF_RET = 0x00, 0x01, 0x05, 0x06
_BPF_W, _BPF_H, _BPF_B = 0x00, 0x08, 0x10
_BPF_IMM, _BPF_ABS, _BPF_IND, _BPF_MSH = 0x00, 0x20, 0x40, 0xA0
_BPF_JEQ, _BPF_JSET = 0x10, 0x40
_BPF_K = 0x00
_SKF_AD_OFF = -0x1000
_SKF_AD_PROTOCOL, _SKF_AD_PKTTYPE, _SKF_AD_HATYPE = 0, 4, 28


def _ancillary(field_offset: int) -> int:
    return (_SKF_AD_OFF + field_offset) & 0xFFFFFFFF


class _Program:
    """A classic BPF program with named jump targets, assembled at the end
    (jumps are relative and forward only, at most 255 instructions)."""

    def __init__(self) -> None:
        self._code: list[tuple[int, str | int, str | int, int]] = []
        self._labels: dict[str, int] = {}

    def op(self, code: int, k: int = 0, jt: str | int = 0, jf: str | int = 0) -> None:
        self._code.append((code, jt, jf, k))

    def label(self, name: str) -> None:
        self._labels[name] = len(self._code)

    def assemble(self) -> bytes:
        out = b""
        for index, (code, jt, jf, k) in enumerate(self._code):
            offsets = []
            for target in (jt, jf):
                jump = self._labels[target] - index - 1 if isinstance(target, str) else target
                if not 0 <= jump <= 255:
                    raise ValueError(f"BPF jump out of range at {index}: {target}")
                offsets.append(jump)
            out += struct.pack("HBBI", code, offsets[0], offsets[1], k & 0xFFFFFFFF)
        return out


def filter_program(ports: Iterable[int] | None, icmp: bool = False) -> bytes:
    """The socket filter: IPv4/IPv6 TCP segments with a port in ``ports``
    (None: any port), ICMP too if ``icmp``; on loopback only the outgoing
    copy. Everything else is dropped in the kernel."""
    ports = sorted(set(ports)) if ports is not None else None
    p = _Program()
    # loopback: each packet is seen twice; keep the outgoing copy
    p.op(_BPF_LD | _BPF_W | _BPF_ABS, _ancillary(_SKF_AD_HATYPE))
    p.op(_BPF_JMP | _BPF_JEQ | _BPF_K, ARPHRD_LOOPBACK, 0, "family")
    p.op(_BPF_LD | _BPF_W | _BPF_ABS, _ancillary(_SKF_AD_PKTTYPE))
    p.op(_BPF_JMP | _BPF_JEQ | _BPF_K, PACKET_OUTGOING, 0, "drop")
    p.label("family")
    p.op(_BPF_LD | _BPF_W | _BPF_ABS, _ancillary(_SKF_AD_PROTOCOL))
    p.op(_BPF_JMP | _BPF_JEQ | _BPF_K, ETH_P_IP, "v4", 0)
    p.op(_BPF_JMP | _BPF_JEQ | _BPF_K, ETH_P_IPV6, "v6", "drop")
    p.label("v4")
    p.op(_BPF_LD | _BPF_B | _BPF_ABS, 9)  # IPv4 protocol
    p.op(_BPF_JMP | _BPF_JEQ | _BPF_K, _ICMP, "icmp" if icmp else "drop", 0)
    p.op(_BPF_JMP | _BPF_JEQ | _BPF_K, _TCP, 0, "drop")
    p.op(_BPF_LD | _BPF_H | _BPF_ABS, 6)
    p.op(_BPF_JMP | _BPF_JSET | _BPF_K, 0x1FFF, "drop", 0)  # a later fragment: no TCP header
    p.op(_BPF_LDX | _BPF_B | _BPF_MSH, 0)  # X = the IPv4 header's length
    p.op(_BPF_JMP | _BPF_JEQ | _BPF_K, 0, "ports", "ports")
    p.label("v6")
    p.op(_BPF_LD | _BPF_B | _BPF_ABS, 6)  # IPv6 next header (extension headers are not followed)
    p.op(_BPF_JMP | _BPF_JEQ | _BPF_K, _ICMPV6, "icmp" if icmp else "drop", 0)
    p.op(_BPF_JMP | _BPF_JEQ | _BPF_K, _TCP, 0, "drop")
    p.op(_BPF_LDX | _BPF_W | _BPF_IMM, 40)  # X = 40: the fixed IPv6 header
    p.label("ports")
    if ports is None:
        p.op(_BPF_JMP | _BPF_JEQ | _BPF_K, 0, "keep", "keep")
    else:
        for offset in (0, 2):  # source port, then destination port
            p.op(_BPF_LD | _BPF_H | _BPF_IND, offset)
            for port in ports:
                p.op(_BPF_JMP | _BPF_JEQ | _BPF_K, port, "keep", 0)
        p.op(_BPF_JMP | _BPF_JEQ | _BPF_K, 0, "drop", "drop")
    p.label("icmp")
    p.label("keep")
    p.op(_BPF_RET | _BPF_K, SNAPLEN)
    p.label("drop")
    p.op(_BPF_RET | _BPF_K, 0)
    return p.assemble()


# --------------------------------------------------------------- capture

_libc: list[ctypes.CDLL] = []


def _bind_everywhere(sock: socket.socket, ifindex: int) -> None:
    """bind(2) with a sockaddr_ll of our own: Python's AF_PACKET address
    takes an interface *name*, and "every interface" (index 0) has none."""
    if not _libc:
        _libc.append(ctypes.CDLL(ctypes.util.find_library("c") or None, use_errno=True))
    # struct sockaddr_ll: family, protocol (network order), ifindex, hatype, pkttype, halen, addr[8]
    address = struct.pack("=HHiHBB8s", socket.AF_PACKET, socket.htons(ETH_P_ALL), ifindex, 0, 0, 0, b"")
    buffer = ctypes.create_string_buffer(address, len(address))
    if _libc[0].bind(sock.fileno(), buffer, len(address)) != 0:
        err = ctypes.get_errno()
        raise OSError(err, f"bind(AF_PACKET): {os.strerror(err)}")


class Capture:
    """A tap on the current network namespace's interfaces (or one of
    them), keeping only TCP segments with one of ``ports`` (None: all) and,
    with ``icmp``, ICMP errors. Non-blocking: ``read()`` takes what is
    queued. Opened in the namespace of the thread that makes it.

    Raises :class:`CaptureUnavailable` where it cannot be opened."""

    def __init__(self, ports: Iterable[int] | None = None, *, interface: str | None = None,
                 icmp: bool = False) -> None:
        self._ports: set[int] | None = set(ports) if ports is not None else None
        self._icmp = icmp
        try:
            sock = socket.socket(socket.AF_PACKET, socket.SOCK_DGRAM, 0)  # protocol 0: receives nothing yet
        except (OSError, AttributeError) as exc:
            raise CaptureUnavailable(getattr(exc, "errno", None) or 0, _why(exc)) from None
        try:
            sock.setsockopt(socket.SOL_SOCKET, SO_TIMESTAMPING, _STAMP_FLAGS)
            try:
                sock.setsockopt(socket.SOL_SOCKET, SO_RCVBUFFORCE, RCVBUF)
            except OSError:
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, RCVBUF)
            self._sock = sock
            self._attach()
            _bind_everywhere(sock, socket.if_nametoindex(interface) if interface else 0)
            sock.setblocking(False)
            if not stamping_on(STAMPING_WAIT):
                raise CaptureUnavailable(0, f"the kernel did not switch packet time-stamping on within "
                                            f"{STAMPING_WAIT:g} s")
        except BaseException:
            sock.close()
            raise
        #: packets read without the kernel's time (stamped when read instead)
        self.unstamped = 0
        #: CLOCK_REALTIME - CLOCK_MONOTONIC: the kernel stamps packets with the one, we keep the other
        self.offset = clock_offset()

    def fileno(self) -> int:
        return self._sock.fileno()

    def add_ports(self, *ports: int) -> None:
        """Keep these ports too (the filter is replaced at once)."""
        if self._ports is None or set(ports) <= self._ports:
            return
        self._ports.update(ports)
        self._attach()

    def _attach(self) -> None:
        program = filter_program(self._ports, self._icmp)
        code = ctypes.create_string_buffer(program, len(program))
        # struct sock_fprog: unsigned short len; struct sock_filter *filter
        fprog = struct.pack("HL", len(program) // 8, ctypes.addressof(code))
        self._sock.setsockopt(socket.SOL_SOCKET, SO_ATTACH_FILTER, fprog)

    def read(self, limit: int = 100_000) -> list[Packet]:
        """What is queued now (at most ``limit`` packets), parsed, in the
        order the kernel queued them. Times are on time.monotonic()."""
        found: list[Packet] = []
        for _ in range(limit):
            try:
                data, ancillary, _flags, address = self._sock.recvmsg(SNAPLEN, 64)
            except (BlockingIOError, InterruptedError):
                break
            stamp = _software_stamp(ancillary)
            if stamp is None:
                self.unstamped += 1
                stamp = time.time()
            packet = parse(data, stamp - self.offset, outgoing=address[2] == PACKET_OUTGOING)
            if packet is not None:
                found.append(packet)
        return found

    def stats(self) -> tuple[int, int]:
        """(packets the filter let through, packets dropped because our
        queue was full) since the last call: PACKET_STATISTICS, which the
        kernel resets when it is read."""
        raw = self._sock.getsockopt(SOL_PACKET, PACKET_STATISTICS, 8)
        packets, drops = struct.unpack("II", raw)
        return int(packets), int(drops)

    def close(self) -> None:
        self._sock.close()

    def __enter__(self) -> Capture:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def clock_offset(tries: int = 5) -> float:
    """time.time() - time.monotonic(), from the narrowest of a few brackets
    (a preemption between the two reads would shift it by the time lost)."""
    best: tuple[float, float] = (float("inf"), 0.0)
    for _ in range(tries):
        before = time.monotonic()
        real = time.time()
        after = time.monotonic()
        best = min(best, (after - before, real - (before + after) / 2))
    return best[1]


def _software_stamp(ancillary: list[tuple[int, int, bytes]]) -> float | None:
    """The software time of SCM_TIMESTAMPING (its first timespec), or None:
    the kernel sends no such message for a packet it did not stamp."""
    for level, kind, value in ancillary:
        if level == socket.SOL_SOCKET and kind == SO_TIMESTAMPING and len(value) >= 16:
            seconds, nanoseconds = struct.unpack("qq", value[:16])
            if seconds or nanoseconds:
                return seconds + nanoseconds / 1e9
    return None


#: the socket that keeps the kernel's time-stamping on for this process (see the module's notes)
_stamper: list[socket.socket] = []


def stamping_on(timeout: float = STAMPING_WAIT) -> bool:
    """Wait (bounded) until the kernel stamps packets: a datagram sent to
    ourselves on loopback comes back with a software time. The socket that
    sends it asks for time stamps, which is what switches them on, and is
    kept (one fd, closed at exit) so that they stay on between taps. The
    first call makes it in the calling thread's network namespace: the
    lab calls this from the host's (a socket holds its namespace alive)."""
    if not _stamper:
        probe = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        try:
            probe.setsockopt(socket.SOL_SOCKET, SO_TIMESTAMPING, _STAMP_FLAGS)
            probe.bind(("127.0.0.1", 0))
        except OSError:
            probe.close()
            raise
        _stamper.append(probe)
        atexit.register(probe.close)
    probe = _stamper[0]
    deadline = time.monotonic() + timeout
    while True:
        probe.sendto(b"stamp?", probe.getsockname())
        ready, _, _ = select.select([probe], [], [], max(0.0, deadline - time.monotonic()))
        if not ready:
            return False
        _data, ancillary, _flags, _address = probe.recvmsg(16, 256)
        if _software_stamp(ancillary) is not None:
            return True
        if time.monotonic() >= deadline:
            return False
        time.sleep(0.002)


def _why(exc: BaseException) -> str:
    if isinstance(exc, PermissionError):
        return "a packet capture needs CAP_NET_RAW (root)"
    if isinstance(exc, AttributeError):
        return "no AF_PACKET on this platform (Linux only)"
    return f"cannot open a packet capture: {exc}"


# ------------------------------------------------------------- numbering

class Numbering:
    """Relative sequence numbers, scaled windows and retransmissions for
    the segments of one connection, fed in order: ``number(packet, way)``
    with way 0 for one side's segments and 1 for the other's."""

    def __init__(self) -> None:
        self._isn: list[int | None] = [None, None]
        self._scale: list[int | None] = [None, None]
        self._sent_end: list[int] = [0, 0]  # highest relative sequence end sent, per side

    def number(self, packet: Packet, way: int) -> tuple[int, int | None, int, bool]:
        """(relative seq, relative ack or None, scaled window, retransmission)."""
        other = 1 - way
        if packet.flags & _SYN and self._isn[way] is None:
            self._isn[way] = packet.seq
            self._scale[way] = packet.options.get("wscale", 0)
        if self._isn[way] is None:
            self._isn[way] = packet.seq  # its SYN was not seen: count from here
        isn = self._isn[way]
        assert isn is not None
        seq = (packet.seq - isn) & 0xFFFFFFFF
        ack: int | None = None
        if packet.flags & _ACK and self._isn[other] is not None:
            ack = (packet.ack - self._isn[other]) & 0xFFFFFFFF  # type: ignore[operator]
        elif packet.flags & _ACK:
            ack = packet.ack
        window = packet.window
        if not packet.flags & _SYN and self._scale[0] is not None and self._scale[1] is not None:
            # scaling holds only when both SYNs offered it (RFC 7323 2.2)
            window <<= self._scale[way] or 0
        used = packet.length + (1 if packet.flags & _SYN else 0) + (1 if packet.flags & _FIN else 0)
        end = seq + used
        retransmission = bool(used) and not packet.icmp and end <= self._sent_end[way] and \
            self._sent_end[way] - seq < 1 << 30
        self._sent_end[way] = max(self._sent_end[way], end)
        return seq, ack, window, retransmission


def options_text(options: dict[str, Any]) -> str:
    """``mss 65495,sackOK,TS,wscale 7`` (tcpdump's order and names)."""
    parts = []
    if "mss" in options:
        parts.append(f"mss {options['mss']}")
    if options.get("sackOK"):
        parts.append("sackOK")
    if "ts" in options:
        parts.append("TS")
    if "wscale" in options:
        parts.append(f"wscale {options['wscale']}")
    if options.get("sack"):
        parts.append(f"sack {options['sack']}")
    return ",".join(parts)
