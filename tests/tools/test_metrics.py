"""``serve --metrics HOST:PORT``: Prometheus' text format, read by a real Prometheus."""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import socket
import subprocess
import time
import urllib.parse
import urllib.request

import pytest

from ..support import Server

pytest.importorskip("prometheus_client", reason="the metrics extra: pip install '.[metrics]'")


def http_get(port: int) -> None:
    with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
        sock.sendall(b"GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        while sock.recv(4096):
            pass


def scrape(url: str) -> dict[str, float]:
    """Every sample of the endpoint, by its name and labels as written."""
    with urllib.request.urlopen(url, timeout=10) as response:
        assert response.headers["Content-Type"].startswith("text/plain; version=")
        text = response.read().decode()
    samples = {}
    for line in text.splitlines():
        if line and not line.startswith("#"):
            name, value = line.rsplit(" ", 1)
            samples[name] = float(value)
    return samples


def metrics_url(server: Server) -> str:
    for _ in range(3):
        line = server.readline(timeout=20)
        match = re.match(r"metrics on (http://\S+/metrics)$", line)
        if match:
            return match[1]
    pytest.fail("serve did not say where its metrics are")


@pytest.fixture
def supervised():
    server = Server("--workers", "2", "--port", "0", "--protocol", "http", "--metrics", "127.0.0.1:0")
    try:
        assert server.match, server.first_line
        pids = [int(pid) for pid in server.readline().split("pids=")[1].split()]
        yield server, pids, metrics_url(server)
    finally:
        server.kill()


def wait_for(condition, timeout: float = 20.0):
    deadline = time.monotonic() + timeout
    while True:
        value = condition()
        if value or time.monotonic() > deadline:
            return value
        time.sleep(0.1)  # the workers report every 0.25 s; nothing to wait on


def test_counters_are_per_worker_and_survive_a_restart(supervised):
    server, pids, url = supervised
    for _ in range(20):
        http_get(server.port)

    def accepted() -> float:
        samples = scrape(url)
        return sum(v for k, v in samples.items() if k.startswith('reactor_accepted_total{worker='))

    assert wait_for(lambda: accepted() == 20), scrape(url)
    samples = scrape(url)
    assert {'reactor_accepted_total{worker="0"}', 'reactor_accepted_total{worker="1"}'} <= set(samples)
    assert samples['reactor_listen_queue_max{worker="0"}'] > 0
    assert 'reactor_listen_queue{worker="1"}' in samples and "reactor_kernel_listen_overflows_total" in samples
    assert samples["reactor_restarts_total"] == 0 and samples["reactor_reloads_total"] == 0
    assert samples["reactor_workers"] == 2
    # A worker dies: its slot's counters stay (never go down), the restart is counted.
    os.kill(pids[0], signal.SIGKILL)
    assert wait_for(lambda: scrape(url)["reactor_restarts_total"] == 1)
    http_get(server.port)
    assert wait_for(lambda: accepted() == 21), scrape(url)
    server.send_signal(signal.SIGHUP)
    assert server.readline(timeout=20).startswith("reloaded: ")
    assert wait_for(lambda: scrape(url)["reactor_reloads_total"] == 1)
    code, _out, err = server.stop()
    assert code == 0, err


def test_a_real_prometheus_scrapes_it(supervised, tmp_path):
    binary = shutil.which("prometheus")
    if binary is None:
        pytest.skip("Prometheus is not installed (Debian: apt-get install prometheus)")
    server, _, url = supervised
    target = urllib.parse.urlsplit(url).netloc
    (tmp_path / "prometheus.yml").write_text(
        "global:\n  scrape_interval: 1s\n  evaluation_interval: 1s\n"
        f"scrape_configs:\n  - job_name: reactor\n    static_configs:\n      - targets: ['{target}']\n")
    with socket.socket() as probe:  # a free port for Prometheus' own web server
        probe.bind(("127.0.0.1", 0))
        web = probe.getsockname()[1]
    prometheus = subprocess.Popen(
        [binary, f"--config.file={tmp_path / 'prometheus.yml'}", f"--storage.tsdb.path={tmp_path / 'data'}",
         f"--web.listen-address=127.0.0.1:{web}"],
        stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        for _ in range(30):
            http_get(server.port)
        query = urllib.parse.quote('sum(reactor_accepted_total{job="reactor"})')

        def answer() -> float | None:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{web}/api/v1/query?query={query}",
                                            timeout=5) as response:
                    result = json.load(response)["data"]["result"]
            except OSError:
                return None  # not listening yet
            return float(result[0]["value"][1]) if result else None

        assert wait_for(lambda: answer() == 30, timeout=60), answer()
    finally:
        prometheus.terminate()
        try:
            prometheus.wait(20)
        except subprocess.TimeoutExpired:
            prometheus.kill()
            prometheus.wait()
        prometheus.stderr.close()
    code, _out, err = server.stop()
    assert code == 0, err


def test_single_process_serves_metrics_too(tmp_path):
    server = Server("--port", "0", "--protocol", "http", "--metrics", "127.0.0.1:0", "--proxy-protocol",
                    "--proxy-from", "127.0.0.2/32")
    try:
        url = metrics_url(server)
        with socket.create_connection((server.host, server.port), timeout=10) as sock:  # not a trusted balancer
            sock.sendall(b"PROXY TCP4 192.0.2.7 198.51.100.1 56324 443\r\n")
            try:
                assert sock.recv(100) == b""  # closed unread: EOF, or RST if the header had arrived
            except ConnectionResetError:
                pass
        samples = scrape(url)
        assert samples['reactor_proxy_refused_total{worker="0"}'] == 1
        assert samples['reactor_accepted_total{worker="0"}'] == 1
        with urllib.request.urlopen(url.replace("/metrics", "/other"), timeout=10) as response:
            pytest.fail(f"expected 404, got {response.status}")
    except urllib.error.HTTPError as exc:
        assert exc.code == 404
    finally:
        code, out, err = server.stop()
        server.kill()
    assert code == 0, err
    assert "proxy_refused=1" in out
