"""Linux facts a server needs and no portable API gives.

- ``somaxconn``: the kernel silently clamps ``listen(backlog)`` to
  ``net.core.somaxconn``; we clamp first so that ``Listener.backlog`` tells the
  truth.
- The accept queue of a listening TCP socket is visible through ``TCP_INFO``:
  for a socket in LISTEN state, Linux reports the current queue length in
  ``tcpi_unacked`` and the maximum (the effective backlog) in ``tcpi_sacked``.
- When the accept queue is full, the kernel drops the final ACK of the
  handshake (or the SYN) and counts it in TcpExt ``ListenOverflows`` and
  ``ListenDrops`` (``/proc/net/netstat``, per network namespace). The client
  sees nothing but a retransmission about a second later.
- fd limits are ``RLIMIT_NOFILE``; an unprivileged process may raise its soft
  limit up to the hard one.

- ``TCP_INFO`` on a connected socket is the kernel's own view of one
  connection: its state, the smoothed rtt and rto (microseconds), the
  retransmissions of the segment at the head of the queue (``retransmits``,
  reset when it is acked) and of the whole life (``total_retrans``), bytes
  acked and received, and how long ago (ms) data was last sent and received.
  Newer kernels append fields; the kernel copies min(asked, its size), so the
  fields past what it returned are None. On a socket accepted from the queue
  and not yet written to, ``last_data_sent`` counts from the moment the
  handshake completed: the time it waited in the accept queue (jiffies: 1 to
  4 ms resolution).
- sock_diag (``NETLINK_SOCK_DIAG``, message ``SOCK_DIAG_BY_FAMILY`` with an
  ``inet_diag_req_v2``) is how ``ss`` lists sockets: a dump of every TCP socket
  of the network namespace whose state bit is set in ``idiag_states``,
  including those that have no fd: request sockets (SYN_RECV, the SYN queue;
  kept as state 12, NEW_SYN_RECV, so that bit must be asked too) and
  TIME_WAIT sockets with the time left on their timer. For a LISTEN socket,
  ``idiag_rqueue`` is the accept queue and ``idiag_wqueue`` the backlog. Each
  reply is an ``inet_diag_msg`` followed by attributes (``INET_DIAG_INFO``:
  the same ``tcp_info``; ``INET_DIAG_SHUTDOWN``: which directions are shut).
  The dump is answered in several datagrams and ends with ``NLMSG_DONE``; a
  refusal is ``NLMSG_ERROR`` with a negative errno. No capability is needed.
  A dump walks every socket of the namespace (a busy host has tens of
  thousands in TIME_WAIT: 120 ms for 5,500 here), so a query for one port
  sends a filter the kernel runs on each socket before copying it out
  (``INET_DIAG_REQ_BYTECODE``, what ``ss '( sport = :80 )'`` sends): two
  port comparisons, local or remote. ``S_EQ``/``D_EQ`` are Linux 4.16+; an
  older kernel refuses the filter (EINVAL) and we filter here instead.
  One connection is found without a dump: the same request without
  ``NLM_F_DUMP`` and with the four-tuple set is a hash lookup (ENOENT when
  there is no such socket; the lookup falls back to a listener on the local
  port, which we do not count as a match).

Every function returns None (or a neutral value) where the fact is not
available, rather than raising: these are diagnostics.
"""

from __future__ import annotations

import errno
import operator
import os
import resource
import socket
import struct
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import NamedTuple

__all__ = [
    "somaxconn",
    "listen_queue",
    "listen_overflows",
    "fd_limits",
    "raise_fd_limit",
    "open_fd_count",
    "TCP_STATES",
    "TcpInfo",
    "tcp_info",
    "parse_tcp_info",
    "DiagSocket",
    "tcp_sockets",
    "tcp_socket",
    "port_states",
]

#: What Linux uses when /proc/sys/net/core/somaxconn cannot be read (5.4+).
DEFAULT_SOMAXCONN = 4096
_TCP_INFO = getattr(socket, "TCP_INFO", 11)
# struct tcp_info: 8 single-byte fields, then u32 rto, ato, snd_mss, rcv_mss,
# unacked, sacked, ...
_TCP_INFO_QUEUE = struct.Struct("=8x4xIII" "II")


def somaxconn() -> int:
    """The kernel's ceiling on a listen backlog (``net.core.somaxconn``)."""
    try:
        with open("/proc/sys/net/core/somaxconn") as f:
            return int(f.read().strip())
    except (OSError, ValueError):
        return DEFAULT_SOMAXCONN if sys.platform.startswith("linux") else socket.SOMAXCONN


def listen_queue(sock: socket.socket) -> tuple[int, int] | None:
    """``(current, maximum)`` of a listening TCP socket's accept queue, or
    None where TCP_INFO cannot tell (not Linux, not TCP, not listening)."""
    if not sys.platform.startswith("linux") or sock.family not in (socket.AF_INET, socket.AF_INET6):
        return None
    try:
        raw = sock.getsockopt(socket.IPPROTO_TCP, _TCP_INFO, 64)
    except OSError:
        return None
    if len(raw) < _TCP_INFO_QUEUE.size or raw[0] != 10:  # 10 == TCP_LISTEN
        return None
    _ato, _snd_mss, _rcv_mss, unacked, sacked = _TCP_INFO_QUEUE.unpack_from(raw)
    return unacked, sacked


def listen_overflows(path: str = "/proc/net/netstat") -> dict[str, int] | None:
    """TcpExt ``ListenOverflows`` and ``ListenDrops`` of this network
    namespace, or None where they cannot be read."""
    try:
        with open(path) as f:
            lines = f.read().splitlines()
    except OSError:
        return None
    for names, values in zip(lines, lines[1:], strict=False):
        if names.startswith("TcpExt:") and values.startswith("TcpExt:"):
            table = dict(zip(names.split()[1:], values.split()[1:], strict=False))
            try:
                return {key: int(table[key]) for key in ("ListenOverflows", "ListenDrops")}
            except (KeyError, ValueError):
                return None
    return None


def fd_limits() -> tuple[int, int]:
    """``(soft, hard)`` RLIMIT_NOFILE; ``resource.RLIM_INFINITY`` as -1."""
    return resource.getrlimit(resource.RLIMIT_NOFILE)


def raise_fd_limit(target: int | None = None) -> int:
    """Raise the soft fd limit towards ``target`` (default: the hard limit);
    returns the soft limit now in force. Never lowers it."""
    soft, hard = fd_limits()
    want = hard if target is None else target
    if hard != resource.RLIM_INFINITY:
        want = min(want, hard)
    if soft == resource.RLIM_INFINITY or (want != resource.RLIM_INFINITY and want <= soft):
        return soft
    try:
        resource.setrlimit(resource.RLIMIT_NOFILE, (want, hard))
    except (ValueError, OSError):
        return soft
    return want


def open_fd_count() -> int | None:
    """How many fds this process has open (``/proc/self/fd``), or None."""
    try:
        return len(os.listdir("/proc/self/fd")) - 1  # the listdir's own fd
    except OSError:
        return None


# ------------------------------------------------------------------ TCP_INFO

#: ``tcpi_state`` / ``idiag_state`` -> name (include/net/tcp_states.h); 12 is a
#: request socket, which sock_diag reports as SYN_RECV
TCP_STATES = {
    1: "ESTABLISHED", 2: "SYN_SENT", 3: "SYN_RECV", 4: "FIN_WAIT1", 5: "FIN_WAIT2", 6: "TIME_WAIT",
    7: "CLOSE", 8: "CLOSE_WAIT", 9: "LAST_ACK", 10: "LISTEN", 11: "CLOSING", 12: "NEW_SYN_RECV",
}
_STATE_CODES = {name: code for code, name in TCP_STATES.items()}
_LINUX = sys.platform.startswith("linux")
#: enough for every field we name; the kernel copies min(this, its struct)
_TCP_INFO_BUFLEN = 256

# struct tcp_info (include/uapi/linux/tcp.h), field by field in kernel order:
# (name, struct format); "_" fields are padding or not named here. The byte
# holding the window scales is split by hand.
_TCP_INFO_LAYOUT = (
    ("state", "B"), ("ca_state", "B"), ("retransmits", "B"), ("probes", "B"), ("backoff", "B"),
    ("options", "B"), ("_wscale", "B"), ("_flags", "B"),
    ("rto", "I"), ("ato", "I"), ("snd_mss", "I"), ("rcv_mss", "I"),
    ("unacked", "I"), ("sacked", "I"), ("lost", "I"), ("retrans", "I"), ("_fackets", "I"),
    ("last_data_sent", "I"), ("_last_ack_sent", "I"), ("last_data_recv", "I"), ("last_ack_recv", "I"),
    ("pmtu", "I"), ("rcv_ssthresh", "I"), ("rtt", "I"), ("rttvar", "I"), ("snd_ssthresh", "I"),
    ("snd_cwnd", "I"), ("advmss", "I"), ("reordering", "I"), ("rcv_rtt", "I"), ("rcv_space", "I"),
    ("total_retrans", "I"),
    ("pacing_rate", "Q"), ("max_pacing_rate", "Q"), ("bytes_acked", "Q"), ("bytes_received", "Q"),
    ("segs_out", "I"), ("segs_in", "I"), ("notsent_bytes", "I"), ("min_rtt", "I"),
    ("data_segs_in", "I"), ("data_segs_out", "I"), ("delivery_rate", "Q"),
    ("_busy_time", "Q"), ("_rwnd_limited", "Q"), ("_sndbuf_limited", "Q"),
    ("delivered", "I"), ("delivered_ce", "I"), ("bytes_sent", "Q"), ("bytes_retrans", "Q"),
    ("dsack_dups", "I"), ("reord_seen", "I"), ("rcv_ooopack", "I"), ("snd_wnd", "I"),
)


class TcpInfo(NamedTuple):
    """One connection as the kernel sees it (``TCP_INFO``). Times are as the
    kernel gives them: ``rto``, ``ato``, ``rtt``, ``rttvar``, ``min_rtt`` in
    microseconds; ``last_data_sent``, ``last_data_recv``, ``last_ack_recv`` in
    milliseconds ago. A field this kernel did not return is None.

    A named tuple, not a dataclass: it is made from one ``unpack_from``,
    where a frozen dataclass of 50 fields unpacked one by one cost 28 us to
    parse and build (measured) -- and ``serve --trace`` reads it a few times
    per connection."""

    state: str
    ca_state: int
    retransmits: int  # of the unacked head segment (or the SYN); 0 again once acked
    probes: int  # zero-window or keepalive probes unanswered
    backoff: int  # how many times the rto was doubled
    options: int
    snd_wscale: int
    rcv_wscale: int
    rto: int
    ato: int
    snd_mss: int
    rcv_mss: int
    unacked: int  # LISTEN: the accept queue's length
    sacked: int  # LISTEN: the backlog
    lost: int
    retrans: int  # segments retransmitted and not yet acked
    last_data_sent: int
    last_data_recv: int
    last_ack_recv: int
    pmtu: int
    rcv_ssthresh: int
    rtt: int
    rttvar: int
    snd_ssthresh: int
    snd_cwnd: int
    advmss: int
    reordering: int
    rcv_rtt: int
    rcv_space: int
    total_retrans: int  # retransmissions over the whole life
    pacing_rate: int | None = None
    max_pacing_rate: int | None = None
    bytes_acked: int | None = None
    bytes_received: int | None = None
    segs_out: int | None = None
    segs_in: int | None = None
    notsent_bytes: int | None = None
    min_rtt: int | None = None
    data_segs_in: int | None = None
    data_segs_out: int | None = None
    delivery_rate: int | None = None
    delivered: int | None = None
    delivered_ce: int | None = None
    bytes_sent: int | None = None
    bytes_retrans: int | None = None
    dsack_dups: int | None = None
    reord_seen: int | None = None
    rcv_ooopack: int | None = None
    snd_wnd: int | None = None

    def as_dict(self) -> dict[str, object]:
        return self._asdict()


_Layout = tuple[int, struct.Struct, Callable[[tuple[int, ...]], tuple[int, ...]], tuple[None, ...]]


def _layouts() -> list[_Layout]:
    """For each count of leading fields of the layout: (the bytes they span,
    one Struct that unpacks them all, a getter of the values that are
    TcpInfo fields after the eight single bytes, the Nones for the fields
    past them). C's alignment: a u64 starts on 8 bytes."""
    formats: list[str] = []
    offset = 0
    out: list[_Layout] = []
    for count, (_name, fmt) in enumerate(_TCP_INFO_LAYOUT, 1):
        size = struct.calcsize("=" + fmt)
        pad = -offset % size
        formats.append(f"{pad}x{fmt}" if pad else fmt)
        offset += pad + size
        if count <= _TCP_INFO_ALWAYS:
            continue  # every kernel returns at least these
        named = [i for i, (n, _f) in enumerate(_TCP_INFO_LAYOUT[:count]) if i >= 8 and not n.startswith("_")]
        missing = len(TcpInfo._fields) - 8 - len(named)
        out.append((offset, struct.Struct("=" + "".join(formats)), operator.itemgetter(*named), (None,) * missing))
    return out


#: how many leading fields every kernel since 2.6 returns (up to total_retrans)
_TCP_INFO_ALWAYS = [name for name, _ in _TCP_INFO_LAYOUT].index("total_retrans")
#: longest first: the first that fits what the kernel returned is used
_TCP_INFO_PREFIXES = _layouts()[::-1]
_TCP_INFO_MIN = _TCP_INFO_PREFIXES[-1][0]


def parse_tcp_info(raw: bytes) -> TcpInfo | None:
    """A ``struct tcp_info`` as the kernel returned it (getsockopt or the
    ``INET_DIAG_INFO`` attribute), or None if it is too short to be one."""
    length = len(raw)
    if length < _TCP_INFO_MIN:
        return None
    _size, layout, getter, missing = next(entry for entry in _TCP_INFO_PREFIXES if entry[0] <= length)
    values = layout.unpack_from(raw)
    state, ca_state, retransmits, probes, backoff, options, wscale = values[:7]
    return TcpInfo._make((TCP_STATES.get(state, str(state)), ca_state, retransmits, probes, backoff, options,
                          wscale & 0x0F, wscale >> 4, *getter(values), *missing))


def tcp_info(sock: socket.socket) -> TcpInfo | None:
    """The kernel's ``TCP_INFO`` of a TCP socket, parsed, or None where it
    cannot tell (not Linux, not TCP, the fd closed)."""
    if not _LINUX:
        return None
    # No family check first: ``sock.family`` converts to an enum in Python
    # (1.5 us); a socket that is not TCP refuses the option (EOPNOTSUPP).
    try:
        raw = sock.getsockopt(socket.IPPROTO_TCP, _TCP_INFO, _TCP_INFO_BUFLEN)
    except OSError:
        return None
    return parse_tcp_info(raw)


# ----------------------------------------------------------------- sock_diag

_NETLINK_SOCK_DIAG = 4  # a.k.a. NETLINK_INET_DIAG
_SOCK_DIAG_BY_FAMILY = 20
_NLM_F_REQUEST = 0x1
_NLM_F_DUMP = 0x300  # NLM_F_ROOT | NLM_F_MATCH
_NLMSG_ERROR = 2
_NLMSG_DONE = 3
_NLMSG_HDR = struct.Struct("=IHHII")  # len, type, flags, seq, pid
#: inet_diag_req_v2 head: family, protocol, ext, pad, states
_DIAG_REQ = struct.Struct("=BBBxI")
#: inet_diag_sockid: ports and addresses in network order, then ifindex and cookie
_DIAG_SOCKID = struct.Struct("!HH16s16s")
_DIAG_SOCKID_TAIL = struct.Struct("=IQ")
#: inet_diag_msg head and tail around the sockid
_DIAG_MSG_HEAD = struct.Struct("=BBBB")
_DIAG_MSG_TAIL = struct.Struct("=IIIII")  # expires (ms), rqueue, wqueue, uid, inode
_DIAG_MSG_SIZE = _DIAG_MSG_HEAD.size + _DIAG_SOCKID.size + _DIAG_SOCKID_TAIL.size + _DIAG_MSG_TAIL.size
_RTATTR = struct.Struct("=HH")
_INET_DIAG_INFO = 2
_INET_DIAG_REQ_BYTECODE = 1
_BC_JMP = 1  # INET_DIAG_BC_JMP
_BC_S_EQ = 11  # INET_DIAG_BC_S_EQ
_BC_D_EQ = 12  # INET_DIAG_BC_D_EQ
_INET_DIAG_SHUTDOWN = 8
#: idiag_timer -> what ss prints
_TIMERS = {0: None, 1: "on", 2: "keepalive", 3: "timewait", 4: "persist"}
#: INET_DIAG_NOCOOKIE in both halves: "any socket with these addresses"
_NO_COOKIE = 0xFFFFFFFFFFFFFFFF
#: a dump never needs more: each datagram holds whole messages
_RECV_SIZE = 65536
#: bound on one dump: sock_diag answers at once, a namespace has few sockets here
_DUMP_TIMEOUT = 2.0


@dataclass(frozen=True)
class DiagSocket:
    """One TCP socket as sock_diag lists it (what ``ss -tn`` prints)."""

    state: str
    local: tuple[str, int]
    remote: tuple[str, int]
    timer: str | None  # "on" (retransmit), "keepalive", "timewait", "persist", or None
    expires_ms: int  # time left on that timer
    retrans: int  # for the timer: retransmissions so far (SYN_RECV: SYN-ACKs resent)
    rqueue: int  # LISTEN: the accept queue; otherwise bytes received and unread
    wqueue: int  # LISTEN: the backlog; otherwise bytes not yet acked
    inode: int  # 0 for a socket no fd holds: SYN_RECV, TIME_WAIT, an orphan
    shutdown: int | None = None  # bit 0: we read EOF or shut reading; bit 1: we shut writing
    info: TcpInfo | None = None


def _address(family: int, raw: bytes, port: int) -> tuple[str, int]:
    if family == socket.AF_INET:
        return socket.inet_ntop(family, raw[:4]), port
    return socket.inet_ntop(family, raw), port


def _port_filter(port: int) -> bytes:
    """sock_diag bytecode for "local port == port or remote port == port",
    laid out as ``ss`` compiles ``A || B``.

    Each op is (code, yes, no): the kernel jumps ``yes`` bytes on a match,
    ``no`` bytes otherwise; landing exactly on the end accepts, past it
    rejects. A port test is two ops, the second holding the port. The
    kernel's audit walks the ``yes`` chain and wants every ``no`` target on
    it, hence the JMP (never matches: always takes ``no``) between A and B."""
    op = struct.Struct("=BBH")
    return (op.pack(_BC_S_EQ, 8, 12) + op.pack(0, 0, port)   # local port: match -> the JMP, else -> B
            + op.pack(_BC_JMP, 4, 12)                         # from A's match: to the end (accept)
            + op.pack(_BC_D_EQ, 8, 12) + op.pack(0, 0, port))  # remote port: match -> the end, else past it


def _dump_family(family: int, states: int, want_info: bool, port: int | None) -> list[DiagSocket]:
    ext = 1 << (_INET_DIAG_INFO - 1) if want_info else 0
    body = (_DIAG_REQ.pack(family, socket.IPPROTO_TCP, ext, states)
            + _DIAG_SOCKID.pack(0, 0, b"", b"") + _DIAG_SOCKID_TAIL.pack(0, _NO_COOKIE))
    if port is not None:
        bytecode = _port_filter(port)
        body += _RTATTR.pack(_RTATTR.size + len(bytecode), _INET_DIAG_REQ_BYTECODE) + bytecode
    return _ask(body, _NLM_F_REQUEST | _NLM_F_DUMP)


def _ask(body: bytes, flags: int) -> list[DiagSocket]:
    """Send one sock_diag request; the sockets of its answer."""
    header = _NLMSG_HDR.pack(_NLMSG_HDR.size + len(body), _SOCK_DIAG_BY_FAMILY, flags, 1, 0)
    found: list[DiagSocket] = []
    deadline = time.monotonic() + _DUMP_TIMEOUT
    with socket.socket(socket.AF_NETLINK, socket.SOCK_DGRAM, _NETLINK_SOCK_DIAG) as nl:
        nl.settimeout(_DUMP_TIMEOUT)
        nl.sendto(header + body, (0, 0))
        while True:
            if time.monotonic() > deadline:
                raise TimeoutError(f"sock_diag did not finish its answer within {_DUMP_TIMEOUT} s")
            data = nl.recv(_RECV_SIZE)
            offset = 0
            while offset + _NLMSG_HDR.size <= len(data):
                length, kind, _flags, _seq, _pid = _NLMSG_HDR.unpack_from(data, offset)
                if length < _NLMSG_HDR.size:
                    return found  # malformed: stop rather than loop
                payload = data[offset + _NLMSG_HDR.size:offset + length]
                offset += (length + 3) & ~3
                if kind == _NLMSG_DONE:
                    return found
                if kind == _NLMSG_ERROR:
                    (error,) = struct.unpack_from("=i", payload)
                    if error == 0:
                        return found  # an acknowledgement
                    raise OSError(-error, os.strerror(-error))
                if kind == _SOCK_DIAG_BY_FAMILY and len(payload) >= _DIAG_MSG_SIZE:
                    found.append(_parse_diag_msg(payload))
                    if not flags & _NLM_F_DUMP:
                        return found  # a lookup has one answer and no NLMSG_DONE


def _parse_diag_msg(payload: bytes) -> DiagSocket:
    family, state, timer, retrans = _DIAG_MSG_HEAD.unpack_from(payload)
    sport, dport, src, dst = _DIAG_SOCKID.unpack_from(payload, _DIAG_MSG_HEAD.size)
    expires, rqueue, wqueue, _uid, inode = _DIAG_MSG_TAIL.unpack_from(
        payload, _DIAG_MSG_HEAD.size + _DIAG_SOCKID.size + _DIAG_SOCKID_TAIL.size)
    info: TcpInfo | None = None
    shutdown: int | None = None
    offset = _DIAG_MSG_SIZE
    while offset + _RTATTR.size <= len(payload):
        length, kind = _RTATTR.unpack_from(payload, offset)
        if length < _RTATTR.size:
            break
        value = payload[offset + _RTATTR.size:offset + length]
        offset += (length + 3) & ~3
        if kind == _INET_DIAG_INFO:
            info = parse_tcp_info(value)
        elif kind == _INET_DIAG_SHUTDOWN and value:
            shutdown = value[0]
    return DiagSocket(
        state=TCP_STATES.get(state, str(state)) if state != 12 else "SYN_RECV",
        local=_address(family, src, sport), remote=_address(family, dst, dport),
        timer=_TIMERS.get(timer, str(timer)), expires_ms=expires, retrans=retrans,
        rqueue=rqueue, wqueue=wqueue, inode=inode, shutdown=shutdown, info=info,
    )


def tcp_sockets(port: int | None = None, states: frozenset[str] | set[str] | None = None, *,
                family: int | None = None, info: bool = False) -> list[DiagSocket] | None:
    """The TCP sockets of this network namespace (sock_diag, as ``ss`` reads
    them) whose local or remote port is ``port`` (every port if None), in one
    of ``states`` (names from ``TCP_STATES``; every state if None), IPv4 and
    IPv6 unless ``family`` says one; with ``info``, each has its
    ``TcpInfo`` where the kernel gives one. None where sock_diag is not
    available (not Linux, no netlink)."""
    if not sys.platform.startswith("linux") or not hasattr(socket, "AF_NETLINK"):
        return None
    if states is None:
        mask = 0xFFFF
    else:
        unknown = set(states) - set(_STATE_CODES)
        if unknown:
            raise ValueError(f"unknown TCP states {sorted(unknown)}; choose from {sorted(_STATE_CODES)}")
        mask = 0
        for name in states:
            mask |= 1 << _STATE_CODES[name]
        if "SYN_RECV" in states:
            mask |= 1 << _STATE_CODES["NEW_SYN_RECV"]  # the request sockets of the SYN queue
    found: list[DiagSocket] = []
    try:
        for fam in (family,) if family is not None else (socket.AF_INET, socket.AF_INET6):
            try:
                found += _dump_family(fam, mask, info, port)
            except OSError as exc:
                if exc.errno != errno.EINVAL or port is None:
                    raise
                found += _dump_family(fam, mask, info, None)  # a kernel before 4.16: no S_EQ/D_EQ
    except OSError:
        return None
    if port is not None:
        found = [s for s in found if port in (s.local[1], s.remote[1])]
    return found


def tcp_socket(local: tuple[str, int], remote: tuple[str, int], *, info: bool = False) -> DiagSocket | None:
    """The one TCP socket of this namespace with these addresses, in
    whatever state (TIME_WAIT and SYN_RECV too), by a sock_diag lookup
    rather than a dump; None if there is none (or no sock_diag)."""
    if not sys.platform.startswith("linux") or not hasattr(socket, "AF_NETLINK"):
        return None
    family = socket.AF_INET6 if ":" in local[0] else socket.AF_INET
    try:
        src, dst = socket.inet_pton(family, local[0]), socket.inet_pton(family, remote[0])
    except OSError:
        return None
    ext = 1 << (_INET_DIAG_INFO - 1) if info else 0
    body = (_DIAG_REQ.pack(family, socket.IPPROTO_TCP, ext, 0xFFFF)
            + _DIAG_SOCKID.pack(local[1], remote[1], src.ljust(16, b"\0")[:16], dst.ljust(16, b"\0")[:16])
            + _DIAG_SOCKID_TAIL.pack(0, _NO_COOKIE))
    try:
        found = _ask(body, _NLM_F_REQUEST)
    except OSError:
        return None  # ENOENT: no such socket
    for entry in found:
        if entry.local == (local[0], local[1]) and entry.remote == (remote[0], remote[1]):
            return entry
    return None  # the lookup's fallback: a listener on the local port


def port_states(port: int, *, family: int | None = None) -> dict[str, int] | None:
    """How many TCP sockets of this namespace use ``port`` (local or remote),
    by state: ``{"LISTEN": 1, "SYN_RECV": 3, "ESTABLISHED": 10, "TIME_WAIT": 40}``.
    None where sock_diag is not available."""
    found = tcp_sockets(port, family=family)
    if found is None:
        return None
    counts: dict[str, int] = {}
    for entry in found:
        counts[entry.state] = counts.get(entry.state, 0) + 1
    return counts
