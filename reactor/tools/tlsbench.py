"""``python -m reactor bench tls``: TLS handshakes per second and the server's CPU per handshake.

Each connection is a full TLS handshake (no session resumption) and then the
server's close (close_notify), so the server's work per connection is the
handshake: what a TLS front end spends on a new client. The servers, one at a
time, each in its own process pinned to one CPU where the machine has two:

- ``reactor``: ``python -m reactor serve --protocol close --tls-cert --tls-key``
  (the native API: asyncio's TLS state machine over reactor's transports);
- ``aio``: the asyncio server of ``reactor/tools/peers/tls_server.py`` on
  ``reactor.aio``; ``asyncio`` and ``uvloop``: the same code on stock asyncio
  and on uvloop.

All use one certificate the run makes (ECDSA P-256, with the openssl
command): the signature a handshake costs is the same for every server. The
client is a separate process (on the other CPU) with ``--concurrency`` threads, each
connecting, shaking hands (OpenSSL releases the GIL for it) and reading the
close; it does not verify the certificate, which would only add client work.
Server CPU is utime + stime from ``/proc/PID/stat`` over the measured window,
divided by the handshakes the client completed; the table gives medians of
``--repeat`` runs and half their range.
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import ssl
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .benchmark import ServerProcess, cpu_pair, machine_description

__all__ = ["TlsOptions", "TlsResult", "run_tls_bench", "format_tls_table", "make_certificate", "SERVERS"]

#: the servers bench tls knows, in table order
SERVERS = ("reactor", "aio", "asyncio", "uvloop")
PEER_SCRIPT = Path(__file__).resolve().parent / "peers" / "tls_server.py"
SCHEMA_VERSION = 1


@dataclass
class TlsOptions:
    servers: list[str] = field(default_factory=lambda: list(SERVERS))
    backend: str = "auto"
    concurrency: int = 8
    duration: float = 2.0
    repeat: int = 3
    json_path: str | None = None


@dataclass
class TlsResult:
    server: str
    status: str = "ok"  # or "skipped: why" / "failed: why"
    rates: list[float] = field(default_factory=list)  # handshakes per second, per run
    user_us: list[float] = field(default_factory=list)  # server user CPU per handshake, per run
    sys_us: list[float] = field(default_factory=list)
    errors: int = 0

    def median(self, values: list[float]) -> float | None:
        return statistics.median(values) if values else None

    @property
    def cpu_us(self) -> list[float]:
        return [u + s for u, s in zip(self.user_us, self.sys_us, strict=True)]

    def spread(self, values: list[float]) -> float | None:
        middle = self.median(values)
        return (max(values) - min(values)) / 2 / middle if values and middle else None

    def as_dict(self) -> dict[str, Any]:
        return {"server": self.server, "status": self.status, "handshakes_per_s": self.rates,
                "server_cpu_user_us": self.user_us, "server_cpu_sys_us": self.sys_us, "errors": self.errors,
                "median_handshakes_per_s": self.median(self.rates), "median_server_cpu_us": self.median(self.cpu_us)}


def make_certificate(directory: Path) -> tuple[Path, Path]:
    """An ECDSA P-256 certificate for localhost and 127.0.0.1 (openssl command)."""
    if shutil.which("openssl") is None:
        raise RuntimeError("bench tls needs the openssl command to make its certificate (apt-get install openssl)")
    cert, key = directory / "bench.pem", directory / "bench.key"
    subprocess.run(["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1",
                    "-nodes", "-days", "1", "-subj", "/CN=localhost",
                    "-addext", "subjectAltName=DNS:localhost,IP:127.0.0.1",
                    "-keyout", str(key), "-out", str(cert)], check=True, capture_output=True, timeout=60)
    return cert, key


def _command(server: str, cert: Path, key: Path, backend: str) -> list[str]:
    if server == "reactor":
        return [sys.executable, "-m", "reactor", "serve", "--protocol", "close", "--port", "0",
                "--tls-cert", str(cert), "--tls-key", str(key), "--backend", backend]
    loop = "reactor" if server == "aio" else server
    return [sys.executable, str(PEER_SCRIPT), "--loop", loop, "--cert", str(cert), "--key", str(key)]


def _why_skip(server: str) -> str | None:
    if server == "uvloop":
        try:
            import uvloop  # noqa: F401
        except ImportError:
            return "skipped: uvloop is not installed (pip install -e '.[peers]')"
    return None


# ------------------------------------------------------------------- client

def client_main(argv: Sequence[str]) -> int:
    """The client process: ``PORT DURATION THREADS``; prints one JSON line."""
    port, duration, threads = int(argv[0]), float(argv[1]), int(argv[2])
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE  # the server's work is the point; verifying is client work
    deadline = time.monotonic() + duration
    counts = [0] * threads
    errors = [0] * threads

    def worker(index: int) -> None:
        while time.monotonic() < deadline:
            try:
                with socket.create_connection(("127.0.0.1", port), timeout=5) as sock, \
                        context.wrap_socket(sock, server_hostname="localhost") as tls:
                    tls.recv(1)  # b"": the server's close_notify
                counts[index] += 1
            except (OSError, ssl.SSLError):
                errors[index] += 1

    started = time.monotonic()
    pool = [threading.Thread(target=worker, args=(i,), daemon=True) for i in range(threads)]
    for thread in pool:
        thread.start()
    for thread in pool:
        thread.join(duration + 30)
    print(json.dumps({"handshakes": sum(counts), "errors": sum(errors), "seconds": time.monotonic() - started}),
          flush=True)
    return 0


def _run_client(port: int, options: TlsOptions, cpu: int | None) -> dict[str, Any]:
    proc = subprocess.Popen([sys.executable, "-m", "reactor.tools.tlsbench", "--client", str(port),
                             str(options.duration), str(options.concurrency)],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, stdin=subprocess.DEVNULL)
    if cpu is not None:
        try:
            os.sched_setaffinity(proc.pid, {cpu})
        except OSError:
            pass
    out, err = proc.communicate(timeout=options.duration + 60)
    if proc.returncode != 0:
        raise RuntimeError(f"the TLS client failed: {err.strip()[-300:]}")
    result: dict[str, Any] = json.loads(out.strip().splitlines()[-1])
    return result


# -------------------------------------------------------------------- runs

def measure(server: str, cert: Path, key: Path, options: TlsOptions) -> TlsResult:
    result = TlsResult(server)
    why = _why_skip(server)
    if why is not None:
        result.status = why
        return result
    server_cpu, client_cpu = cpu_pair()
    for _ in range(options.repeat):
        proc = ServerProcess(_command(server, cert, key, options.backend), server_cpu)
        try:
            user0, sys0 = proc.cpu_times()
            run = _run_client(proc.port, options, client_cpu)
            user1, sys1 = proc.cpu_times()
        finally:
            proc.stop()
        if not run["handshakes"]:
            result.status = f"failed: no handshake completed ({run['errors']} errors)"
            return result
        result.rates.append(run["handshakes"] / run["seconds"])
        result.user_us.append((user1 - user0) / run["handshakes"] * 1e6)
        result.sys_us.append((sys1 - sys0) / run["handshakes"] * 1e6)
        result.errors += run["errors"]
    return result


def run_tls_bench(options: TlsOptions, progress: Callable[[str], None] = print) -> list[TlsResult]:
    results = []
    with tempfile.TemporaryDirectory(prefix="reactor-bench-tls-") as directory:
        cert, key = make_certificate(Path(directory))
        for index, server in enumerate(options.servers, 1):
            started = time.monotonic()
            try:
                result = measure(server, cert, key, options)
            except (RuntimeError, OSError, subprocess.SubprocessError, ValueError) as exc:
                last = str(exc).strip().splitlines()[-1:] or [type(exc).__name__]
                result = TlsResult(server, status=f"failed: {last[0]}")
            results.append(result)
            rate = result.median(result.rates)
            shown = f"{rate:,.0f}/s" if rate else result.status
            progress(f"[{index}/{len(options.servers)}] {server}: {shown} ({time.monotonic() - started:.1f} s)")
    if options.json_path:
        document = {"schema_version": SCHEMA_VERSION, "workload": "tls", "machine": machine_description(),
                    "options": {"servers": options.servers, "backend": options.backend,
                                "concurrency": options.concurrency, "duration": options.duration,
                                "repeat": options.repeat},
                    "results": [r.as_dict() for r in results]}
        Path(options.json_path).write_text(json.dumps(document, indent=2) + "\n")
    return results


def _fmt(value: float | None, spec: str) -> str:
    return "-" if value is None else format(value, spec)


def format_tls_table(results: Sequence[TlsResult]) -> str:
    base = next((r for r in results if r.server == "asyncio" and r.cpu_us), None)
    base_cpu = base.median(base.cpu_us) if base else None
    header = (f"{'server':<10}{'handshakes/s':>14}{'±':>5}{'CPU µs/hs':>11}{'±':>5}{'user µs':>9}{'sys µs':>8}"
              f"{'CPU vs asyncio':>16}{'errors':>8}")
    lines = [header, "-" * len(header)]
    for r in results:
        if not r.rates:
            lines.append(f"{r.server:<10}  {r.status}")
            continue
        cpu = r.median(r.cpu_us)
        ratio = f"{base_cpu / cpu:.2f}x" if base_cpu and cpu else "-"
        rate_spread, cpu_spread = r.spread(r.rates), r.spread(r.cpu_us)
        rate = _fmt(r.median(r.rates), ",.0f")
        lines.append(f"{r.server:<10}{rate:>14}{_fmt(rate_spread and rate_spread * 100, '.0f'):>4}%"
                     f"{_fmt(cpu, ',.0f'):>11}{_fmt(cpu_spread and cpu_spread * 100, '.0f'):>4}%"
                     f"{_fmt(r.median(r.user_us), ',.0f'):>9}{_fmt(r.median(r.sys_us), ',.0f'):>8}{ratio:>16}"
                     f"{r.errors:>8}")
    lines += ["",
              "columns: handshakes/s: full TLS handshakes the client completed per second (median of the runs); "
              "±: half their range",
              "  CPU µs/hs: server CPU per handshake (/proc/PID/stat) = user µs + sys µs; "
              "CPU vs asyncio: asyncio's CPU per handshake / this row's (> 1: cheaper)",
              "  certificate: ECDSA P-256, made for this run; TLS 1.3, no session resumption"]
    return "\n".join(lines)


if __name__ == "__main__" and len(sys.argv) > 1 and sys.argv[1] == "--client":
    sys.exit(client_main(sys.argv[2:]))
