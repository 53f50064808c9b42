"""cffi build script (out-of-line API mode) for the ``reactor._accel`` module.

The declarations cffi needs are in ``accel.cdef`` (and, for the reference
server, ``CSERVER_CDEF`` below), the C code in ``accel.c`` (the accept drain),
``loadgen.c`` (the benchmark load generator) and ``cserver.c`` (the
benchmark's reference server, ``bench --peers c``); all are
plain files that C tools can read and compile on their own. They are joined
into one translation unit, with ``#line`` markers so that compiler messages
name the real file and line. setup.py names this file in ``cffi_modules``.
The extension is optional unless REACTOR_NATIVE=1 at build time:
``optional=True`` is passed through to setuptools' Extension, which then
turns a failed compile into a warning.
"""

import os
import pathlib

from cffi import FFI

HERE = pathlib.Path(__file__).resolve().parent
REQUIRED = os.environ.get("REACTOR_NATIVE", "").strip().lower() in ("1", "on", "true", "yes")
SOURCES = ["accel.c", "loadgen.c", "cserver.c"]
#: What Python sees of cserver.c (run by reactor/tools/peers/c_server.py).
CSERVER_CDEF = """
#define REACTOR_CSERVER_CLOSE 0
#define REACTOR_CSERVER_ECHO 1
struct reactor_cserver_stats {
    long long accepted;        /* connections accepted, on either listener */
    long long skipped;         /* accept4() errors that cost one connection */
    long long wakeups;         /* epoll_wait() returns */
    long long deferred;        /* echo: sends the socket could not take whole (the rest waited for EPOLLOUT) */
    long long open_at_end;     /* connections closed by the return */
};
/* Serve the non-blocking listener lfd (and idle_lfd, or -1) until stop_fd
 * (or -1: never) is readable. Returns 0, or the errno that stopped it. */
int reactor_cserver_run(int lfd, int idle_lfd, int mode, int stop_fd, struct reactor_cserver_stats *stats);
"""


def _source() -> str:
    parts = []
    for name in SOURCES:
        path = HERE / name
        parts.append(f'#line 1 "_native/{name}"\n{path.read_text()}')
    return "\n".join(parts)


ffibuilder = FFI()
ffibuilder.cdef((HERE / "accel.cdef").read_text() + CSERVER_CDEF)
ffibuilder.set_source(
    "reactor._accel",
    _source(),
    extra_compile_args=["-O2", "-std=gnu11", "-Wall"],
    optional=not REQUIRED,
)

if __name__ == "__main__":
    ffibuilder.compile(verbose=True)
