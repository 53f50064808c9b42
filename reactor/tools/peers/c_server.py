"""The close/echo server in C (``_native/cserver.c``): the physical floor.

No event loop, no Python on the data path: one epoll loop that drains the
listener with accept4 and echoes with one recv and one send, in the
accelerator (``reactor._accel``, built by ``pip install``). Python only binds
the sockets, prints the lines the bench waits for and hands over; cffi
releases the GIL for the whole run. SIGTERM and SIGINT stop it: their
handlers are Python's, whose C half writes the signal number to the wakeup
fd, which the C loop watches; the process then exits 0 like every peer.
"""

from __future__ import annotations

import os
import signal
import socket
import sys

try:
    from ._common import BACKLOG, announce, announce_idle, make_parser
except ImportError:  # run by path: python reactor/tools/peers/c_server.py
    from _common import BACKLOG, announce, announce_idle, make_parser  # type: ignore[no-redef]


def _listen(host: str, port: int) -> socket.socket:
    sock = socket.create_server((host, port), backlog=BACKLOG)
    sock.setblocking(False)
    return sock


def _stopped(signum, frame) -> None:  # the wakeup fd has already told the C loop
    pass


def main() -> int:
    parser = make_parser(__doc__)
    parser.add_argument("--sndbuf", type=int, default=None, metavar="BYTES",
                        help="SO_SNDBUF of the listener, which accepted connections inherit (tests: a small one "
                             "makes echo sends partial)")
    args = parser.parse_args()
    from reactor import native

    module = native.extension()
    if module is None or not hasattr(module.lib, "reactor_cserver_run"):
        why = native.extension_error() or "the build predates _native/cserver.c"
        print(f"c_server: the C reference server is not built ({why}); pip install -e . rebuilds it",
              file=sys.stderr)
        return 1
    ffi, lib = module.ffi, module.lib
    listener = _listen(args.host, args.port)
    if args.sndbuf is not None:
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, args.sndbuf)
    idle = _listen(args.host, 0) if args.idle_listener else None
    wake_r, wake_w = os.pipe2(os.O_NONBLOCK | os.O_CLOEXEC)
    # the wakeup fd first: a signal between the two would find a handler and no way to wake the loop
    signal.set_wakeup_fd(wake_w, warn_on_full_buffer=False)
    for signum in (signal.SIGTERM, signal.SIGINT):
        signal.signal(signum, _stopped)
    announce(args.host, listener.getsockname()[1])
    if idle is not None:
        announce_idle(args.host, idle.getsockname()[1])
    mode = lib.REACTOR_CSERVER_ECHO if args.mode == "echo" else lib.REACTOR_CSERVER_CLOSE
    stats = ffi.new("struct reactor_cserver_stats *")
    err = lib.reactor_cserver_run(listener.fileno(), -1 if idle is None else idle.fileno(), mode, wake_r, stats)
    signal.set_wakeup_fd(-1)
    for fd in (wake_r, wake_w):
        os.close(fd)
    listener.close()
    if idle is not None:
        idle.close()
    if err:
        print(f"c_server: {os.strerror(err)}", file=sys.stderr)
        return 1
    print(f"stopped: accepted={stats.accepted} skipped={stats.skipped} wakeups={stats.wakeups} "
          f"deferred={stats.deferred} open_at_end={stats.open_at_end}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
