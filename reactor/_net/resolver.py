"""Name resolution off the loop: a small thread pool per reactor.

``getaddrinfo()`` is a blocking call with no non-blocking variant in libc
(glibc's ``getaddrinfo_a`` runs threads of its own and is not exposed by
CPython): it may read /etc/hosts, ask nscd or systemd-resolved over a socket,
or wait for DNS servers with seconds of retries. Run on the loop, one slow
lookup would stall every connection. So:

- A numeric address ("127.0.0.1", "::1", "fe80::1%eth0") never goes to the
  pool: ``getaddrinfo(..., AI_NUMERICHOST)`` only parses the string (no
  /etc/hosts, no DNS), so it cannot block and runs inline on the loop.
- Anything else runs in a ``concurrent.futures.ThreadPoolExecutor`` of a few
  threads, created on the first lookup (a reactor that never resolves a name
  never starts a thread) and shut down when the reactor closes. The pool is
  the reactor's own (``Host.net_state.resolver``). The result
  comes back with ``call_soon_threadsafe``, so the caller's callback always
  runs on the loop thread.
- A lookup cannot be interrupted once a thread runs it; cancelling only
  drops the result. Shutting the pool down does not wait for such a thread:
  it finishes its lookup and exits.

This is what asyncio (``run_in_executor(None, getaddrinfo)``), trio
(``to_thread``) and libuv (``uv_getaddrinfo`` on its 4-thread work pool) do.
"""

from __future__ import annotations

import concurrent.futures
import socket
import weakref
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from .._core.resources import CLOSE_NORMAL
from ..errors import ReactorStateError
from .host import check_open

if TYPE_CHECKING:
    from .host import Host

__all__ = ["MAX_WORKERS", "AddrInfo", "ResolverPool", "numeric_addrinfo", "pool_for"]

#: lookups run at once per reactor: enough that one slow name does not hold
#: up the others, few enough not to matter on a small machine
MAX_WORKERS = 4

#: one getaddrinfo() entry: (family, type, proto, canonname, sockaddr)
AddrInfo = tuple[int, int, int, str, Any]


def numeric_addrinfo(host: str, port: int) -> list[AddrInfo] | None:
    """``getaddrinfo`` for a numeric host, or None when ``host`` is a name.

    With AI_NUMERICHOST the C library only parses the string, so this never
    blocks and is safe to call on the loop.
    """
    try:
        infos: list[AddrInfo] = list(
            socket.getaddrinfo(host, port, socket.AF_UNSPEC, socket.SOCK_STREAM, 0, socket.AI_NUMERICHOST))
    except (socket.gaierror, UnicodeError, ValueError):
        return None
    return infos


class ResolverPool:
    """The threads that run blocking lookups for one reactor.

    Tracked as a resource of its reactor, so that ``Reactor.close()`` shuts
    it down (``close_for_loop``).
    """

    #: Reactor.close() closes it after the listeners, before the connections
    close_order = CLOSE_NORMAL

    def __init__(self, reactor: Host, max_workers: int = MAX_WORKERS) -> None:
        # weak: the reactor holds its pool (net_state), and the pool's
        # threads hold the pool: a strong reference back would keep a
        # reactor dropped without close() alive while a lookup runs
        self._reactor = weakref.ref(reactor)
        self._max_workers = max_workers
        self._executor: concurrent.futures.ThreadPoolExecutor | None = None
        self._closed = False

    def submit(self, fn: Callable[[], Any], callback: Callable[[concurrent.futures.Future], Any]
               ) -> concurrent.futures.Future:
        """Run ``fn()`` on a pool thread; then ``callback(future)`` on the loop.

        The callback is not called if the future is cancelled or the reactor
        has closed by the time the lookup ends.
        """
        if self._closed:
            raise ReactorStateError("the reactor is closed")
        if self._executor is None:
            self._executor = concurrent.futures.ThreadPoolExecutor(
                max_workers=self._max_workers, thread_name_prefix="reactor-resolver")
        future = self._executor.submit(fn)
        reactor_ref = self._reactor

        def deliver(done: concurrent.futures.Future) -> None:
            # Runs on the pool thread (or on the loop if cancelled there).
            reactor = reactor_ref()
            if done.cancelled() or reactor is None:
                return
            try:
                reactor.call_soon_threadsafe(callback, done)
            except ReactorStateError:
                pass  # the reactor closed while we looked the name up: nobody is waiting

        future.add_done_callback(deliver)
        return future

    def close_for_loop(self) -> None:
        self._closed = True
        reactor = self._reactor()
        if reactor is not None and reactor.net_state.resolver is self:
            reactor.net_state.resolver = None
        if self._executor is not None:
            # wait=False: a thread stuck in a DNS timeout must not hold up close().
            self._executor.shutdown(wait=False, cancel_futures=True)
            self._executor = None

    def __repr__(self) -> str:
        state = "closed" if self._closed else "idle" if self._executor is None else "running"
        return f"<ResolverPool {state} max_workers={self._max_workers}>"


def pool_for(reactor: Host) -> ResolverPool:
    """The reactor's resolver pool, made (without threads yet) on first use."""
    state = reactor.net_state
    pool = state.resolver
    if pool is None:
        check_open(reactor)
        pool = state.resolver = ResolverPool(reactor)
        reactor.track_resource(pool)
    return pool
