"""The lifecycle scenarios that need a network path loopback does not have:
a router that answers with ICMP, a link that goes down, a host that
reboots. Each runs in network namespaces it creates and deletes (see
``netns``); both ends stay in this process, on this thread, so one
select/poll/epoll sees every fd.

Addresses are private (10.251.0.0/16) and exist only inside those
namespaces. Facts shown here:

- An ICMP destination-unreachable (host unreachable: ``EHOSTUNREACH``) for a
  SYN is reported at once: poll says ERR, SO_ERROR says EHOSTUNREACH. RFC
  1122 (4.2.3.9) calls it a soft error; Linux ends a SYN_SENT socket on it
  -- unless a system call holds the socket when it comes, and then keeps it
  only as a soft error (TcpExt LockDroppedIcmps counts those). On a path
  this short the router's answer comes back while connect() itself still
  holds the socket, every time: the socket stays in SYN_SENT, its SYN is
  resent a second later, and that one's ICMP ends it. A missing route is
  found before any packet leaves: connect() itself fails with ENETUNREACH.
- A peer that vanishes without a word (link pulled) is found only by the
  retransmission timer. The capture shows its rhythm: the lost write is
  resent first as a tail loss probe (RACK-TLP) about 200 ms on, then when
  the rto (200 ms at the least) expires, then after 400, 800 ms...; after
  ``net.ipv4.tcp_retries2`` (15: about 15 minutes) the socket gives up with
  ETIMEDOUT -- or after TCP_USER_TIMEOUT ms when it is set, sending nothing.
- A host that rebooted has no memory of the connection: its kernel answers
  the next segment with RST, the client's call fails with ECONNRESET.
- LAST_ACK lasts one round trip unless the ACK is lost; then the FIN is
  retransmitted on the same timer until it gets through.
- Any call that holds the socket does that, getsockopt(TCP_INFO) too: a
  wait that asked TCP_INFO in a loop for CLOSE made the second ICMP soft as
  well now and then under load (the capture showed a third SYN). So
  ``unreachable`` waits in poll(2), which does not lock the socket: for ERR
  after connect(), for HUP (closed) after that.

A lost path is a black hole on the far end's ingress (``netns.blackhole``):
the sender's kernel transmits, nothing arrives, nothing says so.
"""

from __future__ import annotations

import socket
import subprocess
import time

from ... import kernel
from .session import Lab, ScenarioSkipped, code_name, outcome_name

__all__ = ["NETPATH_SCENARIOS"]

CLIENT_IP, SERVER_IP, PREFIX = "10.251.0.1", "10.251.0.2", "/24"
PORT = 8080
#: TCP_USER_TIMEOUT for the pulled link, ms: a few retransmissions, then ETIMEDOUT
LINK_USER_TIMEOUT_MS = 1000
#: bound on waiting for what the retransmission timer does (rto 200 ms and up)
TIMER_WAIT = 5.0
#: bound on waiting for the pulled link's user timeout: it is checked only
#: when the retransmission timer fires, and the first rto is the connection's
#: own (3 x its first rtt sample, up to seconds on a host that stalled), so
#: allow several timer periods past LINK_USER_TIMEOUT_MS
USER_TIMEOUT_WAIT = 15.0
#: bound on waiting for a SYN_SENT socket to give up (its SYN rto is 1 s)
SYN_RETRY_WAIT = 2.5


def _hosts(lab: Lab) -> tuple[str, str, str, str]:
    """Two namespaces joined by a cable; a listener on the server side.
    Returns (client ns, server ns, client link, server link)."""
    assert lab.ns is not None
    cli_ns, srv_ns = lab.ns.add("c"), lab.ns.add("s")
    lab.open_wire(cli_ns)
    cli_link, srv_link = lab.ns.veth(cli_ns, CLIENT_IP + PREFIX, srv_ns, SERVER_IP + PREFIX)
    lab.record("lab", f"ip netns add (client, server); veth {CLIENT_IP} <-> {SERVER_IP}", "ok",
               note="two hosts and a cable, in namespaces of their own")
    return cli_ns, srv_ns, cli_link, srv_link


def _connected(lab: Lab, cli_ns: str, srv_ns: str) -> None:
    """lsn (server), cli -> srv connected, one request and reply exchanged
    (so each side has measured the rtt), lsn dropped."""
    lab.listener("lsn", SERVER_IP, 8, ns=srv_ns, port=PORT)
    lab.socket("cli", ns=cli_ns)
    lab.connect("cli", (SERVER_IP, PORT), settle=lambda: lab.state("cli") == "ESTABLISHED")
    lab.wait(lambda: lab.info("lsn").unacked > 0)  # type: ignore[union-attr]
    lab.accept("lsn", "srv")
    lab.drop("lsn")
    lab.sock("cli").send(b"hello")
    lab.wait(lambda: lab.info("srv").bytes_received == 5)  # type: ignore[union-attr]
    lab.sock("srv").recv(16)
    lab.sock("srv").send(b"hello")
    lab.wait(lambda: lab.info("cli").bytes_received == 5)  # type: ignore[union-attr]
    lab.sock("cli").recv(16)
    lab.record("lab", "cli: send + srv: recv + send + cli: recv", "5 bytes each way")


def _retransmissions(lab: Lab, name: str, until: str, started: float, bound: float = TIMER_WAIT) -> list[float]:
    """Record each firing of ``name``'s retransmission timer until its state
    is ``until`` (at most ``bound`` s); returns when each happened (s since
    ``started``)."""
    times: list[float] = []
    seen = 0
    deadline = time.monotonic() + bound
    while time.monotonic() < deadline:
        info = lab.info(name)
        if info is None or info.state == until:
            break
        if info.retransmits > seen:
            seen = info.retransmits
            times.append(time.monotonic() - started)
            lab.observe(f"{name}: TCP_INFO", f"retransmission {seen} at {times[-1]:.2f} s, rto now "
                                             f"{info.rto // 1000} ms (total_retrans {info.total_retrans})")
        time.sleep(0.002)
    return times


# ------------------------------------------------------------------ scenarios

def unreachable(lab: Lab) -> None:
    assert lab.ns is not None
    cli_ns, router = lab.ns.add("c"), lab.ns.add("r")
    lab.open_wire(cli_ns)
    lab.ns.veth(cli_ns, "10.251.1.2/24", router, "10.251.1.1/24")
    lab.ns.ip(cli_ns, "route", "add", "default", "via", "10.251.1.1")
    lab.ns.sysctl(router, "net/ipv4/ip_forward", "1")
    lab.ns.ip(router, "route", "add", "unreachable", "10.251.9.0/24")
    lab.record("lab", "client 10.251.1.2 -> router 10.251.1.1: `unreachable 10.251.9.0/24`", "ok",
               note="the router has no way to 10.251.9.0/24 and says so with ICMP host unreachable")
    lab.socket("cli", ns=cli_ns)
    locked = _lock_dropped_icmps(lab, cli_ns)
    start = time.monotonic()
    result = lab.connect("cli", ("10.251.9.9", 80), settle=lambda: lab.wait_ready("cli") is not None,
                         note="the SYN leaves; the router's ICMP comes back")
    lab.fact("connect", "EINPROGRESS" if result else "0")
    lab.fact("icmp_after", time.monotonic() - start)
    lab.fact("ready", lab.steps[-1].sock("cli").ready)
    lab.fact("state_after_icmp", lab.state("cli"))
    held = _lock_dropped_icmps(lab, cli_ns) - locked
    lab.observe("TcpExt LockDroppedIcmps", f"+{held}", note="an ICMP that finds the socket held by a call "
                "(here connect() itself) is kept only as a soft error: the socket stays SYN_SENT")
    lab.fact("icmp_while_held", held)
    error = lab.so_error("cli", note="the error is the application's at once, soft or not")
    lab.fact("so_error", code_name(error))
    # poll(2), never TCP_INFO, while the next ICMP may come: a call that holds the socket would make it soft too
    closed = lab.wait(lambda: lab.hung_up("cli"), SYN_RETRY_WAIT)
    if closed is not None:
        lab.observe("cli: poll", f"HUP {time.monotonic() - start:.2f} s after connect",
                    note="the resent SYN's ICMP found the socket free: the connect ends (CLOSE)")
    lab.fact("closed_after", time.monotonic() - start if closed is not None else None)
    lab.ns.ip(cli_ns, "route", "del", "default")
    lab.record("lab", "ip route del default (client)", "ok", note="now the client has no route at all")
    lab.socket("cli2", ns=cli_ns)
    second = lab.connect("cli2", ("10.251.9.9", 80), note="its own kernel refuses: no packet is sent")
    lab.fact("no_route", code_name(second))


def link_pulled(lab: Lab) -> None:
    assert lab.ns is not None
    cli_ns, srv_ns, _cli_link, srv_link = _hosts(lab)
    _connected(lab, cli_ns, srv_ns)
    lab.setsockopt("cli", socket.IPPROTO_TCP, socket.TCP_USER_TIMEOUT, LINK_USER_TIMEOUT_MS, side="client",
                   label="TCP_USER_TIMEOUT", note="unacked data may wait 1 s, not tcp_retries2's ~15 minutes")
    info = lab.info("cli")
    lab.fact("rto_before_ms", info.rto // 1000 if info is not None else None)
    _blackhole(lab, srv_ns, srv_link)
    lab.record("lab", f"tc: drop all ingress on {srv_link} (server)", "ok",
               note="the server's cable is pulled: nothing reaches it, and nobody says so")
    start = time.monotonic()
    lab.send("cli", b"are you there?", side="client", note="the kernel takes the bytes and starts its timer")
    times = _retransmissions(lab, "cli", "CLOSE", start, USER_TIMEOUT_WAIT)
    lab.fact("retransmissions", times)
    # What the server's kernel got after the cable was pulled: 0 unless the
    # black hole leaks (then the data is acked and nothing ever times out).
    lab.fact("dropped_by_black_hole", lab.ns.dropped(srv_ns, srv_link))
    srv_info = lab.info("srv")
    lab.fact("server_got_after_pull", (srv_info.bytes_received - 5
                                          if srv_info is not None and srv_info.bytes_received is not None else None))
    if lab.state("cli") == "CLOSE":
        lab.observe("cli: TCP_INFO", f"CLOSE {time.monotonic() - start:.2f} s after the send",
                    note="the user timeout expired: readable, with the error pending")
        lab.fact("gave_up_after", time.monotonic() - start)
    got = lab.recv("cli", side="client")
    lab.fact("recv", outcome_name(got))
    lab.fact("server_state", lab.state("srv"))
    lab.record("server", "srv: (nothing)", lab.state("srv"),
               note="the server has no idea: with nothing to send, it would wait forever (keepalive would probe)")


def reboot(lab: Lab) -> None:
    assert lab.ns is not None
    cli_ns, srv_ns, cli_link, srv_link = _hosts(lab)
    _connected(lab, cli_ns, srv_ns)
    lab.ns.ip(srv_ns, "link", "set", srv_link, "down")
    lab.drop("srv")  # aborted behind a dead link: nothing reaches the client, as in a crash
    lab.ns.delete(srv_ns)
    gone = lab.ns.wait_gone(cli_ns, cli_link)
    lab.record("lab", "the server host crashes: link down, its sockets gone, ip netns del", "ok" if gone else
               "the namespace is still being torn down", note="nothing was sent: the client still thinks it is "
                                                              "connected")
    srv_ns2 = lab.ns.add("s")
    lab.ns.veth(cli_ns, CLIENT_IP + PREFIX, srv_ns2, SERVER_IP + PREFIX)
    lab.listener("lsn2", SERVER_IP, 8, ns=srv_ns2, port=PORT,
                 note="the server host is back: a new namespace, the same address, the server listening again")
    lab.fact("client_before", lab.state("cli"))
    lab.send("cli", b"still there?", side="client", settle=lambda: lab.state("cli") == "CLOSE",
             note="the rebooted kernel has no such connection: it answers RST")
    lab.fact("client_after", lab.state("cli"))
    lab.fact("ready", lab.steps[-1].sock("cli").ready)
    got = lab.recv("cli", side="client")
    lab.fact("recv", outcome_name(got))


def last_ack(lab: Lab) -> None:
    assert lab.ns is not None
    cli_ns, srv_ns, cli_link, _srv_link = _hosts(lab)
    _connected(lab, cli_ns, srv_ns)
    lab.close("cli", "client", settle=lambda: lab.state("srv") == "CLOSE_WAIT")
    lab.recv("srv", side="server", settle=lambda: lab.state("cli") == "FIN_WAIT2",
             note="EOF; the client's FIN gets its (delayed) ACK: FIN_WAIT2")
    _blackhole(lab, cli_ns, cli_link)
    lab.record("lab", f"tc: drop all ingress on {cli_link} (client)", "ok",
               note="from now on nothing reaches the client")
    start = time.monotonic()
    lab.close("srv", "server", settle=lambda: lab.state("srv") == "LAST_ACK",
              note="our FIN is lost on the way: LAST_ACK, with the retransmission timer on")
    lab.fact("server_after_close", lab.state("srv"))
    retrans = lab.wait(lambda: _retrans(lab, "srv", srv_ns) >= 1, TIMER_WAIT)
    if retrans is not None:
        lab.observe("srv: sock_diag", f"LAST_ACK, FIN retransmitted at {time.monotonic() - start:.2f} s")
    # a step that begins before the tc command: the FIN that gets through may come while it runs
    namespaces = lab.ns
    lab.do("lab", f"tc: stop dropping on {cli_link} (client)", lambda: namespaces.unblock(cli_ns, cli_link))
    done = lab.wait(lambda: lab.state("srv") == "closed" and lab.state("cli") == "TIME_WAIT", TIMER_WAIT)
    lab.observe("cli, srv: sock_diag", f"{lab.state('cli')}, {lab.state('srv')}" + (
        f" {time.monotonic() - start:.2f} s after our close" if done is not None else ""),
        note="the next retransmission of the FIN got through: the client acks it and keeps TIME_WAIT")
    lab.fact("last_ack_lasted", time.monotonic() - start if done is not None else None)


def _lock_dropped_icmps(lab: Lab, ns: str) -> int:
    """TcpExt LockDroppedIcmps of namespace ``ns``: ICMP errors that found
    their socket held by a system call."""
    assert lab.ns is not None
    with lab.ns.inside(ns), open("/proc/thread-self/net/netstat") as f:
        lines = f.read().splitlines()
    for names, values in zip(lines[::2], lines[1::2], strict=False):
        if names.startswith("TcpExt:"):
            found = dict(zip(names.split()[1:], values.split()[1:], strict=False))
            return int(found.get("LockDroppedIcmps", 0))
    return 0


def _blackhole(lab: Lab, ns: str, link: str) -> None:
    """Drop what arrives on ``link``, or skip the scenario saying why not."""
    assert lab.ns is not None
    try:
        lab.ns.blackhole(ns, link)
    except (OSError, subprocess.SubprocessError) as exc:
        raise ScenarioSkipped(f"cannot drop packets here (tc ingress + a BPF filter, iproute2's tc and "
                              f"CONFIG_NET_CLS_BPF): {exc}") from None


def _retrans(lab: Lab, name: str, ns: str) -> int:
    """sock_diag's retransmission count of a socket we closed."""
    local, remote = lab.addresses(name)
    if local is None or remote is None:
        return 0
    with lab.ns.inside(ns):  # type: ignore[union-attr]
        entry = kernel.tcp_socket(local, remote)
    return entry.retrans if entry is not None else 0


NETPATH_SCENARIOS = {
    "unreachable": unreachable,
    "last-ack": last_ack,
    "link-pulled": link_pulled,
    "reboot": reboot,
}
