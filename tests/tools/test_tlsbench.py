"""bench tls (reactor/tools/tlsbench.py): a short real run yields a row per
server with handshakes and server CPU, the JSON carries its schema, and
options that mean nothing for TLS are refused before any run."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys

import pytest

pytestmark = pytest.mark.skipif(shutil.which("openssl") is None, reason="bench tls makes its certificate with openssl")


def bench(*args: str, timeout: float = 120) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "reactor", "bench", "tls", *args], capture_output=True, text=True,
                          timeout=timeout, stdin=subprocess.DEVNULL)


def test_a_short_run_measures_reactor_and_asyncio(tmp_path):
    out = tmp_path / "tls.json"
    done = bench("--api", "reactor", "--peers", "asyncio", "--duration", "0.5", "--repeat", "1",
                 "--concurrency", "2", "--json", str(out))
    assert done.returncode == 0, done.stderr
    rows = {line.split()[0]: line for line in done.stdout.splitlines() if line.startswith(("reactor ", "asyncio "))}
    assert set(rows) == {"reactor", "asyncio"} and "failed" not in done.stdout
    document = json.loads(out.read_text())
    assert document["schema_version"] == 1 and document["workload"] == "tls"
    for result in document["results"]:
        assert result["status"] == "ok" and result["median_handshakes_per_s"] > 0
        assert result["median_server_cpu_us"] > 0 and result["errors"] == 0


@pytest.mark.parametrize("args, message", [
    (["--plot", "x.png"], "--plot"),
    (["--idle", "0"], "--idle"),
    (["--peers", "tornado"], "asyncio and uvloop"),
])
def test_options_that_do_not_apply_exit_2_at_once(args, message):
    done = bench(*args, timeout=20)
    assert done.returncode == 2 and message in done.stderr and "usage:" in done.stderr
