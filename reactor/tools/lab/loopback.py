"""The lifecycle scenarios that loopback can show: both ends on 127.0.0.1,
one process, every step on this machine's own kernel.

What loopback cannot show is a path that loses packets: the kernel hands a
segment to its peer inside the very call that sent it (the handshake of a
non-blocking connect is over before connect() returns EINPROGRESS; the ACK
of a FIN comes back before close() returns). A packet goes missing on
loopback only when the receiving kernel drops it by rule -- a full accept
queue drops SYNs -- which is how ``backlog`` and ``connect-timeout`` make a
black hole. Lost links, routers and reboots are in ``netpath``.

Each scenario is a function of a :class:`~.session.Lab`; the notes on its
steps say why the kernel answered as it did. The facts it records are what
the tests assert.
"""

from __future__ import annotations

import fcntl
import select
import signal
import socket
import struct
import subprocess
import sys
import termios
import time

from .session import Lab, code_name, outcome_name

__all__ = ["LOOPBACK_SCENARIOS"]

HOST = "127.0.0.1"
#: how long a connect on loopback may take to settle (it is done inside the call)
SETTLE = 0.5
#: TCP_USER_TIMEOUT for the black-hole connect, ms: room for one SYN retransmission (at 1 s)
SYN_USER_TIMEOUT_MS = 1500
#: bound on waiting for a SYN retransmission (1 s on Linux, then 1 s again or 2 s)
SYN_RETRANSMIT_WAIT = 3.5
#: bound on the child process that plays the server being ready
CHILD_READY_TIMEOUT = 10.0


def pair(lab: Lab, cli: str = "cli", srv: str = "srv") -> int:
    """A connected pair on loopback (connect + accept) as one step; the
    listener is dropped. Returns the server's port."""
    lsn = lab.socket(f"{cli}-lsn")
    lsn.bind((HOST, 0))
    lsn.listen(8)
    port: int = lsn.getsockname()[1]
    client = lab.socket(cli)
    lab.dial(cli, (HOST, port))
    lab.wait(lambda: bool(select.select([lsn], [], [], 0)[0]), SETTLE)
    conn, _ = lsn.accept()
    lab.adopt(srv, conn)
    lab.drop(f"{cli}-lsn")
    lab.record("lab", f"{cli} -> {srv}: connect() + accept() on {HOST}:{port}", f"{cli}:{client.getsockname()[1]} "
               f"<-> {srv}:{port}")
    return port


def unread_bytes(sock: socket.socket) -> int:
    """SIOCINQ (FIONREAD): bytes received and not yet read."""
    return int(struct.unpack("i", fcntl.ioctl(sock.fileno(), termios.FIONREAD, b"\0\0\0\0"))[0])


# ------------------------------------------------------------------ scenarios

def handshake(lab: Lab) -> None:
    lsn = lab.listener("lsn", HOST, 8, note="two queues: SYN_RECV requests (SYN queue), completed connections "
                                             "(accept queue, at most the backlog)")
    lab.socket("cli")
    result = lab.connect("cli", lsn.getsockname(), note="loopback ran the handshake inside the call; a non-blocking "
                                                         "connect says EINPROGRESS anyway")
    lab.fact("connect", code_name(result))
    lab.fact("client_state_after_connect", lab.state("cli"))
    lab.fact("accept_queue", lab.info("lsn").unacked)  # type: ignore[union-attr]
    lab.so_error("cli", note="writable and SO_ERROR 0: the connection is up")
    lab.accept("lsn", "srv", note="accept() takes it off the accept queue; the listener is no longer readable")
    lab.abort("cli", "srv", note="out of the picture: the client's RST, and the server end is gone with it")

    dfr = lab.listener("dfr", HOST, 8, defer_accept=1,
                       note="TCP_DEFER_ACCEPT: a completed handshake waits in the SYN queue until data comes")
    address = dfr.getsockname()
    lab.socket("cli2")
    lab.connect("cli2", address, settle=lambda: lab.count(address, "SYN_RECV") == 1,
                note="the client is ESTABLISHED; the server holds only a request socket (no fd, no accept)")
    syn = lab.matching(address, "SYN_RECV")
    lab.observe(f"sock_diag {HOST}:{address[1]} SYN_RECV", f"{len(syn)} request socket(s)" + (
        f", timer {syn[0].timer} {syn[0].expires_ms / 1000:.1f}s" if syn else ""),
        note="the SYN queue; the accept queue is empty, so no backend reports the listener readable")
    lab.fact("syn_queue", len(syn))
    lab.fact("accept_queue_deferred", lab.info("dfr").unacked)  # type: ignore[union-attr]
    lab.send("cli2", b"GET", side="client", settle=lambda: lab.info("dfr").unacked == 1,  # type: ignore[union-attr]
             note="data: the request becomes a socket and moves to the accept queue")
    lab.fact("syn_queue_after_data", lab.count(address, "SYN_RECV"))
    lab.accept("dfr", "srv2")


def backlog(lab: Lab) -> None:
    lsn = lab.listener("lsn", HOST, 1, note="backlog 1: Linux admits while the queue holds <= backlog, so 2 fit")
    before = lab.overflows()
    connected_at: dict[str, float] = {}
    for n in range(1, 5):
        name = f"c{n}"
        lab.socket(name)
        connected_at[name] = time.monotonic()
        lab.connect(name, lsn.getsockname(), note="SYN dropped: the accept queue is full" if n > 2 else "")
    lab.fact("states_after_connect", [lab.state(f"c{n}") for n in range(1, 5)])
    delta = lab.overflows()["ListenOverflows"] - before["ListenOverflows"]
    lab.observe("TcpExt ListenOverflows", f"+{delta}", note="each SYN that found the queue full was dropped and "
                                                             "counted; the client is not told (no RST)")
    lab.fact("listen_overflows_delta", delta)

    def retransmits() -> int:
        info = lab.info("c3")
        return info.retransmits if info else 0

    retransmit_times: list[float] = []
    if lab.wait(lambda: retransmits() >= 1, SYN_RETRANSMIT_WAIT) is not None:
        retransmit_times.append(time.monotonic() - connected_at["c3"])
        info = lab.info("c3")
        lab.observe("c3: TCP_INFO", f"SYN retransmitted {retransmit_times[0]:.2f} s after connect "
                                    f"(rto now {info.rto // 1000 if info else '?'} ms)",
                    note="the client's own timer; the listener never learns it tried")
    lab.accept("lsn", "s1", note="room for one more: but only the client's next SYN retransmission finds it")
    waited = lab.wait(lambda: lab.state("c3") == "ESTABLISHED" or lab.state("c4") == "ESTABLISHED",
                      SYN_RETRANSMIT_WAIT)
    if waited is not None:
        winner = "c3" if lab.state("c3") == "ESTABLISHED" else "c4"
        retransmit_times.append(time.monotonic() - connected_at[winner])
        lab.observe(f"{winner}: TCP_INFO", f"ESTABLISHED {retransmit_times[-1]:.2f} s after connect",
                    note="its SYN retransmission found the room the accept() made")
        # The SYN is refused only by a full *accept* queue: a SYN that comes while the winner's
        # handshake is still in flight finds room too, and its ACK then finds the queue full.
        address = lsn.getsockname()
        lab.wait(lambda: _settled_half_open(lab, address), SETTLE)
        late = [name for name in ("c3", "c4") if lab.state(name) == "ESTABLISHED"]
        pending = lab.matching(address, "SYN_RECV")
        lab.observe(f"sock_diag {HOST}:{address[1]} SYN_RECV", f"{len(pending)} request socket(s); clients "
                    f"ESTABLISHED: {', '.join(late)}", note="a client whose SYN was answered while the winner's "
                    "handshake was in flight believes it is connected; its ACK found the accept queue full and was "
                    "dropped: the server keeps only a request, and will resend its SYN/ACK")
        lab.fact("late_established", late)
        lab.fact("half_open", len(pending))
    total = lab.overflows()["ListenOverflows"] - before["ListenOverflows"]
    lab.observe("TcpExt ListenOverflows", f"+{total} since the first connect", note="every retransmitted SYN that "
                                                                                    "found the queue full again")
    lab.fact("syn_retransmit_times", retransmit_times)
    lab.fact("listen_overflows_total", total)


def rst_before_accept(lab: Lab) -> None:
    lsn = lab.listener("lsn", HOST, 8)
    lab.socket("cli")
    lab.connect("cli", lsn.getsockname())
    lab.close("cli", "client", linger_rst=True, settle=lambda: lab.state("cli") == "closed",
              note="RST to a connection that waits in the accept queue: it stays queued, reset")
    lab.fact("queue_after_rst", lab.info("lsn").unacked)  # type: ignore[union-attr]
    srv = lab.accept("lsn", "srv", note="Linux still hands it out: accept() succeeds")
    lab.fact("accept", "ok" if srv is not None else "failed")
    if srv is None:
        return
    lab.fact("accepted_state", lab.state("srv"))
    peer = lab.do("server", "srv: getpeername()", srv.getpeername, note="the peer address is gone with the RST")
    lab.fact("getpeername", outcome_name(peer))
    first = lab.recv("srv", side="server", note="the first read reports the reset")
    lab.fact("recv", outcome_name(first))
    lab.recv("srv", side="server", note="once reported, the error is gone: EOF")


def stale_readiness(lab: Lab) -> None:
    lsn = lab.listener("lsn", HOST, 8)
    lab.socket("cli")
    lab.connect("cli", lsn.getsockname())
    ready = lab.readiness.now()[lsn.fileno()]
    lab.record("server", "lsn: select/poll/epoll", ", ".join(f"{b}: {'readable' if ready[b] else 'not ready'}"
                                                             for b in lab.backends),
               note="we are told: a connection waits")
    lab.fact("reported_readable", {b: bool(ready[b]) for b in lab.backends})
    sibling = lsn.dup()  # a second acceptor on the same listening socket: a forked worker, a thread
    try:
        taken = lab.do("server", "sibling (same listening socket): accept()", sibling.accept,
                       note="another process or thread sharing the listener takes it first")
        if isinstance(taken, tuple):
            lab.adopt("sib", taken[0])
    finally:
        sibling.close()
    late = lab.accept("lsn", "srv", note="acting on the readiness we were given: it was stale, the queue is empty")
    lab.fact("late_accept", "ok" if late is not None else lab.steps[-1].errno)


def refused(lab: Lab) -> None:
    port_sock = lab.socket("port")
    port_sock.bind((HOST, 0))
    address = port_sock.getsockname()
    lab.record("server", f"port: socket() bind({HOST}:{address[1]}), no listen()", "ok",
               note="the port is ours, and nobody listens on it")
    lab.socket("cli")
    result = lab.connect("cli", address, settle=lambda: lab.state("cli") == "CLOSE",
                         note="the server's kernel answers the SYN with RST")
    lab.fact("connect", code_name(result))
    lab.fact("ready", lab.steps[-1].sock("cli").ready)
    lab.fact("so_error", code_name(lab.so_error("cli", note="the error waits in SO_ERROR")))
    lab.fact("so_error_again", code_name(lab.so_error("cli", note="reading SO_ERROR cleared it")))


def connect_timeout(lab: Lab) -> None:
    lsn = lab.listener("lsn", HOST, 0, note="backlog 0 holds one connection")
    lab.socket("fill")
    lab.connect("fill", lsn.getsockname(), note="now the accept queue is full: a black hole for SYNs")
    lab.socket("cli")
    lab.setsockopt("cli", socket.IPPROTO_TCP, socket.TCP_USER_TIMEOUT, SYN_USER_TIMEOUT_MS, side="client",
                   label="TCP_USER_TIMEOUT", note="give up after 1.5 s instead of the SYN retries")
    start = time.monotonic()
    lab.connect("cli", lsn.getsockname(), note="SYN_SENT, not writable: nothing has answered")
    info_wait = lab.wait(lambda: (lab.info("cli") or _NO_INFO).retransmits >= 1, SYN_RETRANSMIT_WAIT)
    if info_wait is not None:
        lab.observe("cli: TCP_INFO", f"SYN retransmitted {time.monotonic() - start:.2f} s after connect")
    done = lab.wait(lambda: lab.state("cli") == "CLOSE", SYN_RETRANSMIT_WAIT)
    gave_up = time.monotonic() - start
    if done is not None:
        lab.observe("cli: TCP_INFO", f"CLOSE {gave_up:.2f} s after connect",
                    note="the user timeout expired: writable, with the error in SO_ERROR")
        lab.fact("gave_up_after", gave_up)
    lab.fact("so_error", code_name(lab.so_error("cli")))
    with open("/proc/sys/net/ipv4/tcp_syn_retries") as f:
        retries = f.read().strip()
    lab.record("kernel", "net.ipv4.tcp_syn_retries", retries,
               note="without TCP_USER_TIMEOUT the client retransmits the SYN this many times before ETIMEDOUT")


def close(lab: Lab) -> None:
    pair(lab)
    lab.close("cli", "client", settle=lambda: lab.state("srv") == "CLOSE_WAIT",
              note="FIN: FIN_WAIT1 until the server's kernel acks it (a delayed ACK, which may ride on the "
                   "server's own FIN), then FIN_WAIT2 until the server's FIN")
    lab.fact("client_after_close", lab.state("cli"))
    lab.fact("server_after_fin", lab.state("srv"))
    lab.fact("server_ready_after_fin", lab.steps[-1].sock("srv").ready)
    lab.recv("srv", side="server", note="EOF; the server may still send, then should close")
    lab.close("srv", "server", settle=lambda: lab.state("cli") == "TIME_WAIT",
              note="our FIN: LAST_ACK until the client's ACK, one loopback round trip, so gone already")
    _time_wait(lab, note="the side that closed first keeps TIME_WAIT, 60 s on Linux (TCP_TIMEWAIT_LEN)")


def half_close(lab: Lab) -> None:
    pair(lab)
    lab.shutdown("cli", side="client", settle=lambda: lab.state("srv") == "CLOSE_WAIT",
                 note="half-close: FIN sent, the client can still read")
    lab.fact("client_after_shutdown", lab.state("cli"))
    lab.recv("srv", side="server")
    lab.send("srv", b"reply", side="server", settle=lambda: unread_bytes(lab.sock("cli")) > 0)
    reply = lab.recv("cli", side="client", note="the reply reaches a client that shut its write side")
    lab.fact("half_closed_reads", reply if isinstance(reply, bytes) else outcome_name(reply))
    lab.close("srv", "server", settle=lambda: lab.state("cli") == "CLOSE",
              note="the client's socket is replaced by a TIME_WAIT entry; its fd reads EOF")
    lab.recv("cli", side="client")
    lab.drop("cli", "srv")

    pair(lab, "cli2", "srv2")
    lab.close("cli2", "client", settle=lambda: lab.state("srv2") == "CLOSE_WAIT",
              note="close(): the same FIN; the server cannot tell the two apart")
    lab.recv("srv2", side="server")
    lab.send("srv2", b"reply", side="server", settle=lambda: lab.state("srv2") == "CLOSE",
             note="nobody will read it: the client's kernel answers RST")
    lab.fact("reply_after_close", lab.state("srv2"))
    second = lab.send("srv2", b"more", side="server", note="writing after the RST")
    lab.fact("second_send", outcome_name(second))


def unread_close(lab: Lab) -> None:
    pair(lab)
    lab.send("cli", b"GET / HTTP/1.1\r\n\r\n", side="client", settle=lambda: unread_bytes(lab.sock("srv")) > 0)
    lab.do("server", "srv: ioctl(SIOCINQ)", lambda: unread_bytes(lab.sock("srv")), fmt=lambda n: f"{n} bytes unread")
    lab.close("srv", "server", settle=lambda: lab.state("cli") == "CLOSE",
              note="close() with unread data sends RST, not FIN (RFC 2525): the request was not read")
    lab.fact("client_after", lab.state("cli"))
    lab.fact("client_ready", lab.steps[-1].sock("cli").ready)
    got = lab.recv("cli", side="client")
    lab.fact("recv", outcome_name(got))
    _time_wait(lab, note="an RST leaves no TIME_WAIT")


def linger_zero(lab: Lab) -> None:
    pair(lab)
    lab.close("cli", "client", linger_rst=True, settle=lambda: lab.state("srv") == "CLOSE",
              note="SO_LINGER {1, 0}: close() sends RST at once and the socket is freed: no FIN, no TIME_WAIT")
    lab.fact("server_after", lab.state("srv"))
    lab.fact("server_ready", lab.steps[-1].sock("srv").ready)
    got = lab.recv("srv", side="server")
    lab.fact("recv", outcome_name(got))
    _time_wait(lab, note="neither side keeps one")


def server_killed(lab: Lab) -> None:
    pair(lab)
    srv = lab.sock("srv")
    child = lab.spawn([sys.executable, "-c", "import sys, time; print('ready', flush=True); time.sleep(60)"],
                      pass_fds=[srv.fileno()], stdout=subprocess.PIPE)
    assert child.stdout is not None
    ready, _, _ = select.select([child.stdout], [], [], CHILD_READY_TIMEOUT)
    if not ready or child.stdout.readline().strip() != b"ready":
        raise RuntimeError("the child process that holds the server socket did not start")
    lab.forget("srv")
    lab.record("server", f"srv: handed to process {child.pid}; our fd closed", "ok",
               note="only that process holds the server side now")
    def kill() -> None:
        child.kill()  # our own child, by its pid
        child.wait(CHILD_READY_TIMEOUT)

    lab.do("lab", f"kill -KILL {child.pid}", kill,
           settle=lambda: lab.state("cli") == "CLOSE_WAIT",
           note="the process dies; its kernel closes the fd for it: FIN, as if it had called close()")
    lab.fact("client_after_kill", lab.state("cli"))
    lab.recv("cli", side="client", note="EOF: a crash looks like a close")
    lab.send("cli", b"ping", side="client", settle=lambda: lab.state("cli") == "CLOSE",
             note="the kernel takes it; the server's kernel has no socket to give it to and answers RST")
    lab.fact("client_after_write", lab.state("cli"))
    caught = _SigpipeCatcher()
    with caught:
        third = lab.send("cli", b"ping", side="client", note="after the RST: EPIPE")
        with_flag = caught.take()
        fourth = lab.send("cli", b"ping", side="client", nosignal=False, note="the same send without MSG_NOSIGNAL")
        without_flag = caught.take()
    lab.record("kernel", "SIGPIPE raised", f"{with_flag} with MSG_NOSIGNAL, {without_flag} without",
               note="CPython ignores SIGPIPE, but a process that restores it dies here: send with MSG_NOSIGNAL")
    lab.fact("send_after_rst", outcome_name(third))
    lab.fact("send_without_flag", outcome_name(fourth))
    lab.fact("sigpipe", {"MSG_NOSIGNAL": with_flag, "no flag": without_flag})


# ------------------------------------------------------------------ helpers

def _settled_half_open(lab: Lab, address: tuple[str, int]) -> bool:
    """Each late client connected on its side is the winner or has a request
    socket waiting for it on the server's (its ACK was dropped)."""
    late = sum(1 for name in ("c3", "c4") if lab.state(name) == "ESTABLISHED")
    return late == 1 + lab.count(address, "SYN_RECV")


def _time_wait(lab: Lab, note: str) -> None:
    """Which end of the cli/srv connection keeps TIME_WAIT, by its own
    four-tuple (facts: time_wait = how many ends, time_wait_left = seconds)."""
    found = {name: lab.entry(name) for name in ("cli", "srv")}
    waiting = {name: entry for name, entry in found.items() if entry is not None and entry.state == "TIME_WAIT"}
    text = ", ".join(f"{name} {entry.expires_ms / 1000:.1f} s left" for name, entry in waiting.items()) or "none"
    lab.observe("sock_diag cli, srv (by four-tuple): TIME_WAIT", text, note=note)
    lab.fact("time_wait", len(waiting))
    lab.fact("time_wait_left", next(iter(waiting.values())).expires_ms / 1000 if waiting else None)


class _SigpipeCatcher:
    """Counts SIGPIPEs the kernel raises on this thread: blocked, so they
    wait as pending (even while CPython ignores the signal: a blocked signal
    is never discarded) and are taken with sigtimedwait."""

    def __enter__(self) -> _SigpipeCatcher:
        self._old = signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGPIPE})
        return self

    def take(self) -> int:
        count = 0
        while signal.sigtimedwait({signal.SIGPIPE}, 0) is not None:
            count += 1
        return count

    def __exit__(self, *exc: object) -> None:
        self.take()
        signal.pthread_sigmask(signal.SIG_SETMASK, self._old)


class _NoInfo:
    retransmits = 0


_NO_INFO = _NoInfo()


LOOPBACK_SCENARIOS = {
    "handshake": handshake,
    "backlog": backlog,
    "rst-before-accept": rst_before_accept,
    "stale-readiness": stale_readiness,
    "refused": refused,
    "connect-timeout": connect_timeout,
    "close": close,
    "half-close": half_close,
    "unread-close": unread_close,
    "linger0": linger_zero,
    "server-killed": server_killed,
}
