"""Each scenario's script: the segments the kernel must put on the wire.

Read them as packetdrill scripts without the syscalls (those are the
timeline): ``→`` is the connecting socket's segment, ``←`` its peer's (or
a router's). Where this machine's kernel parts from the textbook, the
script follows the kernel and says so:

- An ACK that TCP delays (the ACK of a FIN, of data) often rides on the
  next segment the same way: ``times=(0, 1)``. The textbook's four-segment
  close is three segments when the server closes within the delayed-ACK
  time (FIN, FIN/ACK, ACK).
- A RST that answers a segment carrying an ACK has no ACK of its own
  (RFC 793's <SEQ=SEG.ACK><CTL=RST>): ``RST``. A RST answering a SYN, and
  the RST of an abort (SO_LINGER {1, 0}, close with unread data), carry
  one: ``RST/ACK``.
- The first resend of a lost tail is a tail loss probe (RACK-TLP, RFC
  8985) about 200 ms after it, the retransmission timeout (200 ms at the
  least, not RFC 6298's 1 s) follows, and only then does the timer double.
- SYNs are resent at 1 s intervals, not 1, 2, 4 s: Linux 6.7+ keeps the
  first ``net.ipv4.tcp_syn_linear_timeouts`` (4) intervals linear. A
  script allows both (the gap is up to 2.6 s).
- An ICMP host unreachable for a SYN ends the connect at once -- unless a
  call holds the socket when it comes (connect() itself, on a short path),
  and then it is a soft error and the SYN is resent once: ``times=(0, 1)``.
- A SYN to a full accept queue is dropped, but a full SYN queue is not
  checked: two SYNs arriving while one place is free are both answered,
  and the second one's ACK is then dropped (the client believes it is
  connected; ``backlog`` shows it).
"""

from __future__ import annotations

from .expect import Line, Script, to_client, to_server

__all__ = ["SCRIPTS"]

#: the three-way handshake, initiated by the connecting socket
HANDSHAKE = (to_server("SYN", retransmission=False), to_client("SYN/ACK"), to_server("ACK"))
#: the namespaces' connection: a handshake, then "hello" each way
#: (each ACK is sent at once early in a connection, quick-ACK mode, but may ride on the reply)
HELLO = (*HANDSHAKE, to_server("ACK", data=True), to_client("ACK", times=(0, 1)), to_client("ACK", data=True),
         to_server("ACK", times=(0, 1)))
#: a SYN resent by the client's timer: 1 s apart (linear), or 2 s (doubled, older kernels)
SYN_RESENT = dict(retransmission=True, gap=(0.9, 2.6))


def _syn_refused_then_answered() -> tuple[Line, ...]:
    return (to_server("SYN", retransmission=False), to_server("SYN", times=(1, None), **SYN_RESENT),
            to_client("SYN/ACK", times=(0, 1), after="lsn: accept"), to_server("ACK", times=(0, 1)))


SCRIPTS: dict[str, Script] = {
    "handshake": Script(
        "SYN, SYN/ACK, ACK before accept() returns; with TCP_DEFER_ACCEPT the same three, then the data "
        "that makes the connection acceptable",
        {"cli": (*HANDSHAKE[:2], to_server("ACK", before="lsn: accept"),
                 to_server("RST/ACK", after="cli, srv: setsockopt")),
         "cli2": (*HANDSHAKE, to_server("ACK", data=True, after="cli2: send", before="dfr: accept"),
                  to_client("ACK", times=(0, 1)))}),
    "backlog": Script(
        "SYNs to a full accept queue are not answered, the client resends them, and one resent after "
        "accept() made room is answered",
        {"c1": HANDSHAKE, "c2": HANDSHAKE, "c3": _syn_refused_then_answered(), "c4": _syn_refused_then_answered()}),
    "rst-before-accept": Script(
        "the handshake, then the client's RST/ACK before accept(); accept() and recv() send nothing",
        {"cli": (*HANDSHAKE, to_server("RST/ACK", after="cli: setsockopt(SO_LINGER", before="lsn: accept"))}),
    "stale-readiness": Script(
        "the handshake only: readiness and accept() are local, nothing is sent",
        {"cli": HANDSHAKE[:2] + (to_server("ACK", before="sibling"),)}),
    "refused": Script(
        "a SYN to a port nobody listens on is answered by RST/ACK",
        {"cli": (to_server("SYN", retransmission=False), to_client("RST/ACK"))}),
    "connect-timeout": Script(
        "SYNs into a full queue: resent 1 s later, and nothing after TCP_USER_TIMEOUT gives up (no RST)",
        {"fill": HANDSHAKE,
         "cli": (to_server("SYN", retransmission=False), to_server("SYN", **SYN_RESENT))}),
    "unreachable": Script(
        "the SYN draws a router's ICMP host unreachable; one that came while connect() held the socket is soft, "
        "so the SYN is resent once and its ICMP ends the connect; no route sends nothing",
        {"cli": (to_server("SYN", retransmission=False), to_client("ICMP host unreachable"),
                 to_server("SYN", times=(0, 1), retransmission=True, gap=(0.9, 1.6)),
                 to_client("ICMP host unreachable", times=(0, 1)))}),
    "close": Script(
        "FIN, its ACK (alone, or riding on the server's FIN), FIN, ACK: the closer keeps TIME_WAIT",
        {"cli": (*HANDSHAKE, to_server("FIN/ACK", after="cli: close"), to_client("ACK", times=(0, 1)),
                 to_client("FIN/ACK", after="srv: close"), to_server("ACK"))}),
    "last-ack": Script(
        "the server's FIN is resent on its retransmission timer while the client's link drops it, and "
        "acknowledged once the link is back",
        {"cli": (*HELLO, to_server("FIN/ACK", after="cli: close"), to_client("ACK", times=(0, 1)),
                 to_client("FIN/ACK", after="srv: close", retransmission=False),
                 to_client("FIN/ACK", times=(1, None), retransmission=True, gap=(0.1, None)),
                 to_server("ACK", after="tc: stop dropping"))}),
    "half-close": Script(
        "FIN one way, then data the other way after it; after shutdown() it is read and acknowledged, "
        "after close() it draws a RST",
        {"cli": (*HANDSHAKE, to_server("FIN/ACK", after="cli: shutdown"), to_client("ACK", times=(0, 1)),
                 to_client("ACK", data=True, after="srv: send"), to_server("ACK", times=(0, 1)),
                 to_client("FIN/ACK", after="srv: close"), to_server("ACK")),
         "cli2": (*HANDSHAKE, to_server("FIN/ACK", after="cli2: close"), to_client("ACK", times=(0, 1)),
                  to_client("ACK", data=True, after="srv2: send"), to_server("RST"))}),
    "unread-close": Script(
        "close() with the request unread sends RST/ACK and no FIN",
        {"cli": (*HANDSHAKE, to_server("ACK", data=True, after="cli: send"), to_client("ACK", times=(0, 1)),
                 to_client("RST/ACK", after="srv: close"))}),
    "linger0": Script(
        "SO_LINGER {1, 0}: close() sends RST/ACK and no FIN",
        {"cli": (*HANDSHAKE, to_server("RST/ACK", after="cli: setsockopt(SO_LINGER"))}),
    "server-killed": Script(
        "the killed process's kernel sends FIN; the client's next write draws a RST",
        {"cli": (*HANDSHAKE, to_client("FIN/ACK", after="kill"), to_server("ACK", times=(0, 1)),
                 to_server("ACK", data=True, after="cli: send"), to_client("RST"))}),
    "link-pulled": Script(
        "the write is resent (a tail loss probe, then the retransmission timer, doubling) into the dead "
        "link, then nothing: TCP_USER_TIMEOUT ends it without a RST",
        {"cli": (*HELLO, to_server("ACK", data=True, after="cli: send", retransmission=False),
                 to_server("ACK", data=True, times=(1, None), retransmission=True, gap=(0.1, None)))}),
    "reboot": Script(
        "the rebooted host answers the client's next segment with RST",
        {"cli": (*HELLO, to_server("ACK", data=True, after="cli: send"), to_client("RST"))}),
}
