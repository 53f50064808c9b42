"""A listener's counters: ``ListenerStats``, updated on the accept path and
read by whoever reports them (``serve``'s summary and stats line, its
Prometheus metrics, ``reactor.aio``'s ``server.stats``, which sums them over
a server's sockets).

Plain attributes in ``__slots__``, each an int the accept path adds to with
one ``+=``: no method call, no dict, per accepted connection. The slots are
the list of counters: ``as_dict``, ``repr`` and the sums read them from the
type, so a counter added here is reported everywhere.
"""

from __future__ import annotations

from typing import Any

__all__ = ["ListenerStats", "HISTOGRAM_BUCKETS"]

#: accepts-per-wakeup histogram: bucket i counts batches of 2**(i-1) .. 2**i - 1
HISTOGRAM_BUCKETS = 12


class ListenerStats:
    """Counters of one listener, updated as it accepts.

    - ``accepted``: connections accepted (including those rejected, see below)
    - ``aborted``: connections that died in the queue (ECONNABORTED, EPROTO, ...)
    - ``exhausted``: drains ended by EMFILE/ENFILE/ENOBUFS/ENOMEM
    - ``shed``: connections accepted and closed at once under ``on_exhausted="shed"``
    - ``rejected``: accepted connections closed at once because they could not be
      set up or watched: the backend cannot watch the fd (select, fd >=
      FD_SETSIZE), registering it failed (epoll ENOSPC past
      max_user_watches, ENOMEM), the protocol factory raised, or setting
      up failed (MemoryError). Each but the first is also reported to the
      exception handler; a protocol that was told connection_made is told
      connection_lost(exc).
    - ``wakeups``: readiness events handled; ``batches``: those that accepted >= 1
    - ``max_batch``: most connections accepted in one event
    - ``empty_wakeups``: events that found the queue already empty (stale readiness)
    - ``active``: connections accepted here and still open
    - ``histogram``: batches by size, bucket i = sizes 2**(i-1) .. 2**i - 1
    - ``proxy_errors``: connections closed for a bad or missing PROXY protocol
      header, an EOF in the middle of one, or none within the timeout
      (``proxy_protocol=True`` only)
    - ``idle_closed``: connections closed by ``idle_timeout``
    - ``tls_failed``: TLS handshakes that failed or timed out (``ssl=`` only)
    - ``limited``: times the listener stopped accepting at ``max_connections``
    - ``proxy_refused``: connections closed at accept because they came from a
      source not in ``proxy_from`` (``proxy_protocol=True`` only)
    """

    __slots__ = ("accepted", "aborted", "exhausted", "shed", "rejected", "wakeups", "batches",
                 "max_batch", "empty_wakeups", "active", "histogram", "proxy_errors", "idle_closed",
                 "tls_failed", "limited", "proxy_refused")

    def __init__(self) -> None:
        self.accepted = 0
        self.aborted = 0
        self.exhausted = 0
        self.shed = 0
        self.rejected = 0
        self.wakeups = 0
        self.batches = 0
        self.max_batch = 0
        self.empty_wakeups = 0
        self.active = 0
        self.histogram = [0] * HISTOGRAM_BUCKETS
        self.proxy_errors = 0
        self.idle_closed = 0
        self.tls_failed = 0
        self.limited = 0
        self.proxy_refused = 0

    @property
    def accepts_per_wakeup(self) -> float:
        """Mean connections accepted per readiness event."""
        return self.accepted / self.wakeups if self.wakeups else 0.0

    def as_dict(self) -> dict[str, Any]:
        """Every counter, for JSON and summaries."""
        fields = {name: getattr(self, name) for name in self.__slots__}
        fields["histogram"] = list(self.histogram)
        fields["accepts_per_wakeup"] = round(self.accepts_per_wakeup, 3)
        return fields

    def __repr__(self) -> str:
        shown = ", ".join(f"{name}={getattr(self, name)}" for name in self.__slots__ if name != "histogram")
        return f"ListenerStats({shown})"
