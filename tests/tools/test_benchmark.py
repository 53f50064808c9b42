"""``python -m reactor bench``: short real runs, the table, JSON and the
FD_SETSIZE rule. (Speed itself is measured in bench/, never asserted here.)"""

from __future__ import annotations

import json
import re
import subprocess
import sys

import pytest

from reactor.tools.benchmark import BenchOptions, ConfigResult, Target, format_table, measure, plan


def run_cli(*args: str, timeout: float = 120) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "reactor", "bench", *args], capture_output=True, text=True,
                          timeout=timeout)


def test_accept_run_with_json(tmp_path):
    path = tmp_path / "accept.json"
    done = run_cli("accept", "--backends", "epoll,select", "--native", "off", "--idle", "0,1000",
                   "--peers", "asyncio", "--duration", "0.3", "--repeat", "2", "--json", str(path))
    assert done.returncode == 0, done.stderr
    assert "[1/5] reactor epoll pure, idle 0:" in done.stdout
    assert re.search(r"^reactor select pure +1000  n/a \(FD_SETSIZE\)$", done.stdout, re.M), done.stdout
    document = json.loads(path.read_text())
    assert document["workload"] == "accept"
    assert document["machine"]["cpus"] >= 1 and "kernel" in document["machine"]
    rows = {(r["server"], r["idle"]): r for r in document["results"]}
    epoll = rows[("reactor epoll pure", 0)]
    assert epoll["status"] == "ok" and len(epoll["runs"]) == 2
    run = epoll["runs"][0]
    assert run["units"] > 0 and run["server_cpu_s"] > 0 and run["cpu_us_per_unit"] > 0
    # every connection the client completed was accepted by the server
    assert run["accepted_per_s"] == pytest.approx(run["rate"], rel=0.2)
    assert rows[("reactor epoll pure", 1000)]["status"] == "ok"
    assert rows[("reactor select pure", 1000)]["status"] == "n/a (FD_SETSIZE)"
    assert rows[("asyncio", 0)]["status"] == "ok"
    assert "1.00x" in done.stdout  # asyncio against itself


def test_echo_run_verifies_bytes():
    done = run_cli("echo", "--backends", "epoll", "--native", "off", "--idle", "0", "--peers", "none",
                   "--duration", "0.3", "--repeat", "1", "--size", "512")
    assert done.returncode == 0, done.stderr
    assert "CPU µs/req" in done.stdout
    row = next(line for line in done.stdout.splitlines() if line.startswith("reactor epoll pure"))
    assert int(row.split()[4].replace(",", "")) > 0  # requests/s


def test_missing_peer_is_skipped_not_fatal(monkeypatch):
    import reactor.tools.benchmark as benchmark

    monkeypatch.setitem(benchmark.PEERS, "nosuchpeer", ("asyncio_server.py", [], "nosuch_module_xyz"))
    result = measure(Target("peer", peer="nosuchpeer"), 0, BenchOptions(duration=0.1, repeat=1))
    assert result.status.startswith("skipped: nosuch_module_xyz is not installed")


def test_plan_puts_peers_at_the_first_idle_count_only():
    options = BenchOptions(backends=["epoll"], natives=[False], idle=[0, 100], peers=["asyncio"])
    assert [(t.label, idle) for t, idle in plan(options)] == [
        ("reactor epoll pure", 0), ("reactor epoll pure", 100), ("asyncio", 0)]


def test_table_shows_status_rows():
    options = BenchOptions()
    table = format_table([ConfigResult(Target("reactor", backend="select"), 10000, status="n/a (FD_SETSIZE)")],
                         options)
    assert "n/a (FD_SETSIZE)" in table


@pytest.mark.parametrize("args", [["accept", "--idle", "x"], ["accept", "--backends", "iocp"],
                                  ["accept", "--native", "maybe"], ["teleport"], ["echo", "--open-loop"],
                                  ["accept", "--peers", "nodejs"]])
def test_bad_arguments_exit_2(args):
    done = run_cli(*args)
    assert done.returncode == 2
    assert "usage:" in done.stderr
