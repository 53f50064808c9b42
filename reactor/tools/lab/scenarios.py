"""Every scenario by name: what it shows, what its wire must be, and
whether it needs namespaces."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from .expect import Script
from .expected import SCRIPTS
from .loopback import LOOPBACK_SCENARIOS
from .netpath import NETPATH_SCENARIOS
from .session import Lab

__all__ = ["Scenario", "SCENARIOS"]


@dataclass(frozen=True)
class Scenario:
    name: str
    title: str
    #: one line for ``lab --list``: what the kernel is seen doing
    shows: str
    run: Callable[[Lab], None]
    #: the segments its kernel must send (``expected``)
    script: Script
    #: needs network namespaces (root, iproute2): skipped with the reason where they cannot be made
    netns: bool = False


_ABOUT: list[tuple[str, str, str]] = [
    ("handshake", "the handshake and the two queues",
     "connect -> EINPROGRESS, accept queue 1/8 and the listener readable; with TCP_DEFER_ACCEPT a SYN_RECV "
     "request in the SYN queue (sock_diag) and a listener no backend reports readable"),
    ("backlog", "a full backlog",
     "backlog 1 admits 2; later SYNs dropped (SYN_SENT, ListenOverflows rising), retransmitted by the "
     "client's timer, admitted only by a retransmission after accept() made room; a SYN that comes while that "
     "handshake is in flight is answered too, and its ACK dropped: a client ESTABLISHED, a server SYN_RECV"),
    ("rst-before-accept", "RST while waiting in the accept queue",
     "accept() still returns the reset connection: getpeername ENOTCONN, first recv ECONNRESET"),
    ("stale-readiness", "readiness that is stale by the time we act",
     "every backend says readable, a sibling acceptor takes the connection, our accept() gets EAGAIN"),
    ("refused", "connect refused",
     "RST to the SYN: EINPROGRESS, then writable with ERR/HUP and SO_ERROR ECONNREFUSED (read once)"),
    ("connect-timeout", "connect timed out",
     "SYNs into a black hole: SYN_SENT, a retransmission at 1 s, ETIMEDOUT from TCP_USER_TIMEOUT"),
    ("unreachable", "host unreachable: a router's ICMP",
     "a router's ICMP host-unreachable: EHOSTUNREACH in SO_ERROR at once; it came while connect() held the "
     "socket, so it is kept as a soft error (LockDroppedIcmps) and the resent SYN's ICMP ends the connect; "
     "no route: ENETUNREACH from connect itself"),
    ("close", "graceful close",
     "FIN: CLOSE_WAIT (readable, RDHUP) and FIN_WAIT2; the server's FIN: TIME_WAIT for the closer, 60 s"),
    ("last-ack", "LAST_ACK held by a lost ACK",
     "the client's link down: the server's FIN waits in LAST_ACK, retransmitted, until the link is back"),
    ("half-close", "shutdown(SHUT_WR) versus close()",
     "after shutdown the reply is read; after close the same reply draws an RST, and the next send EPIPE"),
    ("unread-close", "close with unread data",
     "close() with bytes unread sends RST, not FIN: the client's recv gets ECONNRESET, no TIME_WAIT"),
    ("linger0", "SO_LINGER {1, 0}",
     "close() sends RST at once: the peer gets ECONNRESET, nobody keeps TIME_WAIT"),
    ("server-killed", "the server process killed",
     "kill -9: FIN (EOF), the next write draws RST, the one after EPIPE; SIGPIPE only without MSG_NOSIGNAL"),
    ("link-pulled", "the server's link pulled",
     "writes retransmitted with backoff into a dead link; TCP_USER_TIMEOUT 1 s ends it: ETIMEDOUT"),
    ("reboot", "the server host rebooted",
     "its namespace deleted with all its sockets; at the same address again, it answers the next segment "
     "with RST: ECONNRESET"),
]


def _build() -> dict[str, Scenario]:
    runs = {**LOOPBACK_SCENARIOS, **NETPATH_SCENARIOS}
    names = {name for name, _, _ in _ABOUT}
    assert set(runs) == names == set(SCRIPTS), sorted((set(runs) | set(SCRIPTS)) - (set(runs) & set(SCRIPTS)))
    return {name: Scenario(name, title, shows, runs[name], SCRIPTS[name], netns=name in NETPATH_SCENARIOS)
            for name, title, shows in _ABOUT}


#: in the order ``lab`` runs them
SCENARIOS = _build()
