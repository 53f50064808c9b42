"""``serve --metrics HOST:PORT``: the server's figures in Prometheus' text format.

The text is made by ``prometheus_client`` (the optional ``metrics`` extra):
a collector builds every sample at scrape time from what the server already
keeps -- the listener's ``ListenerStats``, the kernel's view of each
listening socket's accept queue (TCP_INFO) and TcpExt ListenOverflows /
ListenDrops (``/proc/net/netstat``, for the whole network namespace) -- so
serving metrics costs nothing between scrapes, and no counter is kept
twice. With ``--workers`` the supervisor serves them: each worker's
counters come from its ``counts:`` lines (every 0.25 s), summed per slot
over the slot's workers past and present (a counter never goes down when a
worker is replaced), with a ``worker`` label (the slot number, stable
across restarts and reloads); its own restarts and reloads are counters
too.

The endpoint is a reactor listener answering ``GET /metrics`` (HEAD too;
404 elsewhere) with the strict HTTP/1.1 parser of ``http.py``, keep-alive as
Prometheus uses it, on the server's own loop: no thread (a supervisor that
forks must have none), bound to 127.0.0.1 unless told otherwise.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

from .. import kernel
from .._net.addresses import format_address
from .._net.stats import ListenerStats
from ..protocols import Protocol
from .http import HttpError, RequestParser, http_date

if TYPE_CHECKING:
    from .._net.listener import Listener
    from .._net.reactor import Reactor
    from .._net.transport import Transport
    from .http import HeaderTimeout
    from .workers import Supervisor

__all__ = ["ListenerMetrics", "SupervisorMetrics", "serve_metrics", "parse_address", "check_available",
           "COUNTERS", "PREFIX", "metrics_line"]

PREFIX = "reactor_"
#: ListenerStats' counters, exported as ``reactor_<name>_total`` (the type's
#: own slots, so a new counter is exported without a list to keep), and
#: what each one counts (the HELP line)
COUNTERS = {
    "accepted": "connections accepted",
    "aborted": "connections that died in the accept queue (ECONNABORTED, EPROTO)",
    "exhausted": "accept drains ended by EMFILE/ENFILE/ENOBUFS/ENOMEM",
    "shed": "connections accepted and closed at once while out of fds (--on-exhausted shed)",
    "rejected": "accepted connections closed at once because they could not be set up or watched",
    "wakeups": "readiness events of the listening socket",
    "batches": "readiness events that accepted at least one connection",
    "empty_wakeups": "readiness events that found the accept queue already empty",
    "proxy_errors": "connections closed for a bad, missing or late PROXY header",
    "idle_closed": "connections closed by --idle-timeout",
    "tls_failed": "TLS handshakes that failed or timed out",
    "limited": "times accepting paused at --max-connections",
    "proxy_refused": "connections closed because their source is not in --proxy-from",
    "header_timeouts": "HTTP request heads answered 408 after --header-timeout",
}
#: not counters: gauges (active), or not additive (max_batch, histogram)
_GAUGES = {"active", "max_batch", "histogram"}
assert set(ListenerStats.__slots__) - _GAUGES <= set(COUNTERS), "a ListenerStats counter has no HELP text"


def check_available() -> str | None:
    """None if ``prometheus_client`` can be imported, else why not."""
    try:
        import prometheus_client  # noqa: F401
    except ImportError as exc:
        return f"--metrics needs the prometheus_client package (pip install 'reactor-loop[metrics]'): {exc}"
    return None


def parse_address(text: str) -> tuple[str, int]:
    """``HOST:PORT`` (``[::1]:9100`` for IPv6; ``:9100`` is 127.0.0.1) ->
    (host, port); ValueError naming what is wrong."""
    host, sep, port = text.rpartition(":")
    if not sep or not port.isdigit() or not 0 <= int(port) <= 65535:
        raise ValueError(f"expected HOST:PORT, like 127.0.0.1:9100, not {text!r}")
    host = host.strip("[]") or "127.0.0.1"
    return host, int(port)


class _Collector:
    """A prometheus_client collector over one server's figures."""

    def collect(self) -> Iterator[Any]:
        from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily

        per_worker = self.worker_counts()
        counters = {name: CounterMetricFamily(f"{PREFIX}{name}", help_text, labels=["worker"])
                    for name, help_text in COUNTERS.items()}
        open_connections = GaugeMetricFamily(f"{PREFIX}open_connections", "connections open now",
                                             labels=["worker"])
        max_batch = GaugeMetricFamily(f"{PREFIX}max_batch", "most connections accepted in one readiness event",
                                      labels=["worker"])
        for worker, counts in per_worker.items():
            for name, family in counters.items():
                if name in counts:
                    family.add_metric([worker], counts[name])
            open_connections.add_metric([worker], counts.get("active", 0))
            max_batch.add_metric([worker], counts.get("max_batch", 0))
        yield from counters.values()
        yield open_connections
        yield max_batch
        queue = GaugeMetricFamily(f"{PREFIX}listen_queue", "connections waiting in the listening socket's "
                                  "accept queue (TCP_INFO)", labels=["worker"])
        queue_max = GaugeMetricFamily(f"{PREFIX}listen_queue_max", "the accept queue's size: the effective "
                                      "backlog", labels=["worker"])
        for worker, depth in self.listen_queues().items():
            if depth is not None:
                queue.add_metric([worker], depth[0])
                queue_max.add_metric([worker], depth[1])
        yield queue
        yield queue_max
        overflows = kernel.listen_overflows()
        if overflows is not None:
            for name in ("ListenOverflows", "ListenDrops"):
                family = CounterMetricFamily(f"{PREFIX}kernel_{_snake(name)}",
                                             f"TcpExt {name} of the network namespace (/proc/net/netstat)")
                family.add_metric([], overflows.get(name, 0))
                yield family
        yield from self.supervisor_metrics()

    def worker_counts(self) -> dict[str, dict[str, int]]:
        raise NotImplementedError

    def listen_queues(self) -> dict[str, tuple[int, int] | None]:
        raise NotImplementedError

    def supervisor_metrics(self) -> Iterator[Any]:
        return iter(())


def _snake(name: str) -> str:
    return "".join(f"_{c.lower()}" if c.isupper() and i else c.lower() for i, c in enumerate(name))


class ListenerMetrics(_Collector):
    """One process serving one listener (``serve`` without ``--workers``): worker ``"0"``."""

    def __init__(self, listener: Listener, header_timeout: HeaderTimeout | None = None) -> None:
        self._listener = listener
        self._header_timeout = header_timeout

    def worker_counts(self) -> dict[str, dict[str, int]]:
        stats = self._listener.stats
        counts = {name: getattr(stats, name) for name in stats.__slots__ if name != "histogram"}
        if self._header_timeout is not None:
            counts["header_timeouts"] = self._header_timeout.timed_out
        return {"0": counts}

    def listen_queues(self) -> dict[str, tuple[int, int] | None]:
        listener = self._listener
        return {"0": kernel.listen_queue(listener.socket) if listener.state != "closed" else None}


class SupervisorMetrics(_Collector):
    """``serve --workers N``: per slot, summed over the slot's workers."""

    def __init__(self, supervisor: Supervisor) -> None:
        self._supervisor = supervisor

    def worker_counts(self) -> dict[str, dict[str, int]]:
        return {str(index): counts for index, counts in enumerate(self._supervisor.slot_counts())}

    def listen_queues(self) -> dict[str, tuple[int, int] | None]:
        return {str(index): queue for index, queue in enumerate(self._supervisor.listen_queues())}

    def supervisor_metrics(self) -> Iterator[Any]:
        from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily

        supervisor = self._supervisor
        restarts = CounterMetricFamily(f"{PREFIX}restarts", "workers started again after one died")
        restarts.add_metric([], supervisor.restart_total)
        reloads = CounterMetricFamily(f"{PREFIX}reloads", "reloads (SIGHUP) that replaced every worker")
        reloads.add_metric([], supervisor.reloads)
        live = GaugeMetricFamily(f"{PREFIX}workers", "worker processes alive (a reload runs two generations)")
        live.add_metric([], len(supervisor.workers))
        yield from (restarts, reloads, live)


class _MetricsProtocol(Protocol):
    """``GET /metrics`` -> the text format; strict HTTP/1.1, keep-alive."""

    def __init__(self, registry: Any) -> None:
        self._registry = registry

    def connection_made(self, transport: Transport) -> None:
        self.transport = transport
        self.parser = RequestParser()

    def data_received(self, data: bytes) -> None:
        try:
            requests = self.parser.feed(data)
        except HttpError as exc:
            self._answer(exc.status, exc.reason, b"", "text/plain", False, False)
            return
        for method, target, _, keep_alive in requests:
            head_only = method == b"HEAD"
            if method not in (b"GET", b"HEAD"):
                self._answer(405, "Method Not Allowed", b"", "text/plain", False, False)
                return
            if target.split(b"?", 1)[0] != b"/metrics":
                self._answer(404, "Not Found", b"see /metrics\n", "text/plain", keep_alive, head_only)
            else:
                from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

                self._answer(200, "OK", generate_latest(self._registry), CONTENT_TYPE_LATEST, keep_alive,
                             head_only)
            if not keep_alive:
                return

    def _answer(self, status: int, reason: str, body: bytes, content_type: str, keep_alive: bool,
                head_only: bool) -> None:
        from .http import _wall_clock

        head = (f"HTTP/1.1 {status} {reason}\r\nDate: {http_date(_wall_clock())}\r\n"
                f"Content-Type: {content_type}\r\nContent-Length: {len(body)}\r\n"
                f"Connection: {'keep-alive' if keep_alive else 'close'}\r\n\r\n").encode("ascii")
        self.transport.write(head if head_only else head + body)
        if not keep_alive:
            self.transport.close()


def serve_metrics(reactor: Reactor, address: str, collector: _Collector) -> Listener:
    """Listen on ``address`` (HOST:PORT) and answer scrapes from ``collector``
    (the caller prints where: ``metrics_line``). Idle scrapers are closed
    after 60 s of silence."""
    from prometheus_client import CollectorRegistry

    registry = CollectorRegistry(auto_describe=False)
    registry.register(collector)
    host, port = parse_address(address)
    return reactor.listen(lambda: _MetricsProtocol(registry), host, port, idle_timeout=60.0)


def metrics_line(listener: Listener) -> str:
    """The line serve prints once it listens: where to scrape."""
    return f"metrics on http://{format_address(listener.address)}/metrics"
