"""``python -m reactor bench``: short real runs, the table, JSON and the
FD_SETSIZE rule. (Speed itself is measured in bench/, never asserted here.)"""

from __future__ import annotations

import json
import os
import re
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from reactor.tools.benchmark import (
    PEERS,
    SCHEMA_VERSION,
    BenchOptions,
    ConfigResult,
    RunResult,
    Target,
    _check_engine,
    check_output_paths,
    format_table,
    measure,
    plan,
)


def run_cli(*args: str, timeout: float = 120) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "reactor", "bench", *args], capture_output=True, text=True,
                          timeout=timeout)


def test_accept_run_with_json(tmp_path):
    path = tmp_path / "accept.json"
    done = run_cli("accept", "--backends", "epoll,select", "--native", "off", "--idle", "0,1000",
                   "--peers", "asyncio", "--duration", "0.3", "--repeat", "2", "--json", str(path))
    assert done.returncode == 0, done.stderr
    assert "[1/8] reactor epoll pure, idle 0, run 1/2:" in done.stdout
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
    # interleaved: each group's servers in turn, repeat after repeat, then the latency pass at idle 0
    order = [(r["server"], r["idle"], r["pass"]) for r in document["run_order"]]
    group0 = [("reactor epoll pure", 0), ("reactor select pure", 0), ("asyncio", 0)]
    assert order == ([(*pair, "cpu") for pair in group0] * 2 + [(*pair, "latency") for pair in group0] * 2
                     + [("reactor epoll pure", 1000, "cpu")] * 2)
    # the latency pass: the same offered load for every server, percentiles pooled over its runs
    offered = {rows[pair]["latency"]["offered_rate"] for pair in group0}
    assert len(offered) == 1 and offered.pop() > 0
    assert rows[("reactor epoll pure", 0)]["latency"]["p99_us"] > 0
    assert rows[("reactor epoll pure", 1000)]["latency"] is None  # at the first idle count only


def test_the_table_leads_with_cpu_and_shows_a_rate_only_where_the_server_was_the_limit():
    busy = fake_run(20000, 45)
    busy.server_busy = 0.95  # the server used its whole CPU: it set the rate
    idle = fake_run(30000, 20)
    idle.server_busy = 0.4  # the client did
    results = [ConfigResult(Target("reactor", backend="epoll", native=True), 0, runs=[idle]),
               ConfigResult(Target("peer", peer="asyncio"), 0, runs=[busy])]
    lines = format_table(results, BenchOptions(workload="accept")).splitlines()
    header = next(line for line in lines if line.startswith("server "))
    assert header.split()[:3] == ["server", "idle", "CPU"]  # the deciding figure first
    reactor_row = next(line for line in lines if line.startswith("reactor epoll native "))
    asyncio_row = next(line for line in lines if line.startswith("asyncio "))
    assert "client-bound" in reactor_row and "30,000" not in reactor_row
    assert "20,000" in asyncio_row and "client-bound" not in asyncio_row
    assert reactor_row.split()[4] == "20.0" and "2.25x" in reactor_row  # CPU, and asyncio's / this
    assert not any(line.startswith("listen overflows") for line in lines)  # the counter did not move


def test_listen_overflows_are_explained_where_they_appear(monkeypatch, tmp_path):
    """A server that listens with a backlog of 1 and never accepts: the
    client's handshakes overflow its queue, and the table says what that means."""
    import reactor.tools.benchmark as benchmark

    (tmp_path / "stuck.py").write_text(
        "import signal, socket\n"
        "s = socket.socket()\n"
        "s.bind(('127.0.0.1', 0))\n"
        "s.listen(1)\n"
        "print(f'listening on 127.0.0.1:{s.getsockname()[1]}', flush=True)\n"
        "signal.pause()\n")
    monkeypatch.setattr(benchmark, "PEERS_DIR", tmp_path)
    monkeypatch.setitem(benchmark.PEERS, "stuck", ("stuck.py", [], "socket"))
    options = BenchOptions(workload="accept", duration=0.3, warmup=0.05, repeat=1, concurrency=32)
    result = measure(Target("peer", peer="stuck"), 0, options)
    assert result.status == "ok", result.status
    (run,) = result.runs
    if run.listen_overflows is None:
        pytest.skip("/proc/net/netstat cannot be read here")
    assert run.listen_overflows > 0 and run.units == 0
    table = format_table([result], options)
    note = next(line for line in table.splitlines() if line.startswith("listen overflows"))
    assert f"stuck idle 0: {run.listen_overflows:,}" in note
    assert "the client outran accept" in note and "accept queue" in note


def test_echo_run_verifies_bytes():
    done = run_cli("echo", "--backends", "epoll", "--native", "off", "--idle", "0", "--peers", "none",
                   "--duration", "0.3", "--repeat", "1", "--size", "512")
    assert done.returncode == 0, done.stderr
    assert "CPU µs/req" in done.stdout
    row = next(line for line in done.stdout.splitlines() if line.startswith("reactor epoll pure"))
    assert float(row.split()[4]) > 0  # CPU µs per request, the first figure


def test_echo_on_aio_and_aio_streams_verifies_bytes(tmp_path):
    path = tmp_path / "echo.json"
    done = run_cli("echo", "--api", "aio,aio-streams", "--backends", "epoll", "--native", "off", "--idle", "0",
                   "--duration", "0.3", "--repeat", "1", "--peers", "asyncio", "--json", str(path), timeout=60)
    assert done.returncode == 0, done.stderr
    assert "[1/3] aio epoll pure, idle 0, run 1/1:" in done.stdout
    assert "[2/3] aio-streams epoll pure, idle 0, run 1/1:" in done.stdout
    assert "ECHO DATA DIFFERED" not in done.stdout
    for label in ("aio epoll pure", "aio-streams epoll pure"):
        row = next(line for line in done.stdout.splitlines() if line.startswith(label + " "))
        assert float(row.split()[4]) > 0, row  # CPU µs per request
    rows = {r["server"]: r for r in json.loads(path.read_text())["results"]}
    assert set(rows) == {"aio epoll pure", "aio-streams epoll pure", "asyncio"}
    for label, api in (("aio epoll pure", "aio"), ("aio-streams epoll pure", "aio-streams")):
        row = rows[label]
        assert row["status"] == "ok", row["status"]
        assert (row["kind"], row["api"], row["backend"], row["native"]) == ("reactor", api, "epoll", False)
        run = row["runs"][0]
        # every round trip counted came back byte for byte (a mismatch is an error, not a unit)
        assert run["units"] > 0 and run["errors"] == {}, run
        assert run["cpu_us_per_unit"] > 0
    assert rows["asyncio"]["api"] is None and rows["asyncio"]["status"] == "ok"


def test_accept_on_aio_streams_reads_the_servers_stats():
    done = run_cli("accept", "--api", "aio-streams", "--backends", "epoll", "--native", "off", "--idle", "0",
                   "--duration", "0.3", "--repeat", "1", "--peers", "asyncio-streams", timeout=60)
    assert done.returncode == 0, done.stderr
    row = next(line for line in done.stdout.splitlines() if line.startswith("aio-streams epoll pure "))
    cells = row.split()
    assert float(cells[4]) > 0, row  # CPU µs per connection
    assert cells[-3] != "-", row  # acc/wake: the aio server answered SIGUSR1 with server.stats
    assert re.search(r"^asyncio-streams +0 +[\d.]+ ", done.stdout, re.M), done.stdout


def test_aio_rows_and_asyncio_peers_run_one_script():
    aio = Target("reactor", backend="epoll", native=True, api="aio").command("echo", idle=True)
    streams = Target("reactor", backend="poll", native=False, api="aio-streams").command("close", idle=False)
    peer = Target("peer", peer="uvloop-streams").command("close", idle=False)
    assert aio[1] == streams[1] == peer[1] and aio[1].endswith("reactor/tools/peers/asyncio_server.py")
    assert PEERS["asyncio"][0] == PEERS["asyncio-streams"][0] == PEERS["uvloop"][0] == "asyncio_server.py"
    assert aio[2:] == ["--loop", "reactor", "--api", "protocol", "--backend", "epoll", "--native", "on",
                       "--mode", "echo", "--port", "0", "--idle-listener"]
    assert streams[2:6] == ["--loop", "reactor", "--api", "streams"] and "--idle-listener" not in streams
    assert peer[2:6] == ["--loop", "uvloop", "--api", "streams"]
    assert Target("reactor", backend="epoll").command("echo", idle=False)[1:4] == ["-m", "reactor", "serve"]


def test_the_peers_are_found_in_the_installed_package(tmp_path):
    import reactor
    import reactor.tools.benchmark as benchmark

    package = Path(reactor.__file__).resolve().parent
    assert benchmark.PEERS_DIR == package / "tools" / "peers"
    for name, (script, _, _) in PEERS.items():
        assert (benchmark.PEERS_DIR / script).is_file(), name
    # the bench runs a peer by its path in the package, and it serves
    server = benchmark.ServerProcess(Target("peer", peer="asyncio").command("echo", idle=False), None)
    try:
        with socket.create_connection(("127.0.0.1", server.port), timeout=5) as sock:
            sock.sendall(b"ping")
            assert sock.recv(16) == b"ping"
    finally:
        server.stop()
    assert server.proc.returncode == 0
    # and each is a module of the package, found from any directory
    done = subprocess.run([sys.executable, "-m", "reactor.tools.peers.asyncio_server", "--help"], cwd=tmp_path,
                          capture_output=True, text=True, timeout=30)
    assert done.returncode == 0 and "--loop" in done.stdout, done.stderr


def c_server_built() -> bool:
    from reactor import native

    built = native.extension()
    return built is not None and hasattr(built.lib, "reactor_cserver_run")


needs_c_server = pytest.mark.skipif(not c_server_built(), reason="the C accelerator (with cserver.c) is not built")


@needs_c_server
def test_quick_run_with_the_c_peer_has_a_row_and_a_versioned_json(tmp_path):
    path = tmp_path / "echo.json"
    done = run_cli("echo", "--quick", "--backends", "epoll", "--native", "off", "--peers", "c", "--json", str(path),
                   timeout=60)
    assert done.returncode == 0, done.stderr
    row = next(line for line in done.stdout.splitlines() if line.startswith("c "))
    assert float(row.split()[2]) > 0, row  # CPU µs per request
    assert "user µs" in done.stdout and "sys µs" in done.stdout
    assert "columns: CPU µs/req: the figure that compares servers" in done.stdout  # the legend
    document = json.loads(path.read_text())
    assert document["schema_version"] == SCHEMA_VERSION and isinstance(document["schema_version"], int)
    rows = {r["server"]: r for r in document["results"]}
    assert set(rows) == {"reactor epoll pure", "c"}
    for label, result in rows.items():
        assert result["status"] == "ok", (label, result["status"])
        (run,) = result["runs"]
        assert run["units"] > 0 and run["errors"] == {}, run  # every byte came back
        assert run["server_user_s"] >= 0 and run["server_sys_s"] >= 0
        assert run["server_user_s"] + run["server_sys_s"] == pytest.approx(run["server_cpu_s"])
        assert run["user_us_per_unit"] + run["sys_us_per_unit"] == pytest.approx(run["cpu_us_per_unit"])
        median = result["median"]
        assert median["user_us_per_unit"] + median["sys_us_per_unit"] == pytest.approx(median["cpu_us_per_unit"])
        assert set(result["spread"]) >= {"user_us_per_unit", "sys_us_per_unit"}
    assert rows["c"]["kind"] == "peer" and rows["c"]["runs"][0]["sys_us_per_unit"] > 0


@needs_c_server
def test_the_c_peer_accepts_and_closes():
    result = measure(Target("peer", peer="c"), 0, BenchOptions(workload="accept", duration=0.3, warmup=0.1,
                                                                 repeat=1, concurrency=8))
    assert result.status == "ok", result.status
    (run,) = result.runs
    assert run.units > 0 and run.errors == {}, run
    assert run.cpu_us_per_unit is not None and run.cpu_us_per_unit > 0


@needs_c_server
def test_the_c_peer_holds_idle_connections_and_stops_on_sigterm():
    import reactor.tools.benchmark as benchmark

    # small send buffers on the server's connections, a small receive buffer on ours: a 64 KiB
    # read cannot be echoed by one send(), so the server must keep the rest, wait for EPOLLOUT
    # and stop reading meanwhile
    command = Target("peer", peer="c").command("echo", idle=True) + ["--sndbuf", "4096"]
    server = benchmark.ServerProcess(command, None, Target("peer", peer="c").env())
    try:
        idle_port = int(server.next_line("idle listener on ", timeout=10).rsplit(":", 1)[1])
        sock = socket.socket()
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        sock.settimeout(5)
        with socket.create_connection(("127.0.0.1", idle_port), timeout=5) as held, sock:
            sock.connect(("127.0.0.1", server.port))
            held.sendall(b"not echoed")
            payload = bytes(range(256)) * 16384  # 4 MiB, sent by a thread while this one reads
            sender = threading.Thread(target=lambda: (sock.sendall(payload), sock.shutdown(socket.SHUT_WR)))
            sender.start()
            received = []
            while chunk := sock.recv(1 << 20):
                received.append(chunk)
            sender.join(10)
            assert b"".join(received) == payload  # the server closed after the FIN, having flushed every byte
            held.settimeout(0.2)
            with pytest.raises(TimeoutError):
                held.recv(1)  # the idle connection is read, never answered, never closed
            server.proc.send_signal(signal.SIGTERM)
            line = server.next_line("stopped: ", timeout=10)
            server.proc.wait(10)  # exits by itself; a second signal during its shutdown would kill it
    finally:
        server.stop()
    assert server.proc.returncode == 0
    assert "accepted=2 " in line and "open_at_end=1" in line, line  # the held connection, closed by the stop
    assert int(re.search(r"deferred=(\d+)", line).group(1)) > 0, line


def test_bad_output_paths_are_named_before_the_run(tmp_path):
    missing = tmp_path / "no" / "such" / "dir" / "out.json"
    assert "does not exist" in check_output_paths(str(missing), None)
    assert "is a directory" in check_output_paths(str(tmp_path), None)
    assert "does not exist" in check_output_paths(None, str(tmp_path / "nope" / "plot.png"))
    assert check_output_paths(str(tmp_path / "out.json"), None) is None
    assert check_output_paths(None, None) is None


def test_a_bad_json_dir_exits_2_at_once(tmp_path):
    import inspect

    from reactor.tools import cli

    if "check_output_paths" not in inspect.getsource(cli.run_bench):
        pytest.skip("reactor/tools/cli.py does not call benchmark.check_output_paths yet")
    started = time.monotonic()
    # a full default run would take minutes: exit 2 must come before any of it
    done = run_cli("accept", "--json", str(tmp_path / "missing" / "out.json"), timeout=30)
    elapsed = time.monotonic() - started
    assert done.returncode == 2, done.stdout + done.stderr
    assert "does not exist" in done.stderr and "usage:" in done.stderr
    assert "[1/" not in done.stdout  # nothing was measured
    assert elapsed < 5, elapsed


def fake_run(rate: float, cpu_us: float) -> RunResult:
    units = int(rate)
    return RunResult(units=units, wall_s=1.0, rate=rate, server_cpu_s=cpu_us * units / 1e6,
                     server_user_s=cpu_us * units / 2e6, server_sys_s=cpu_us * units / 2e6, cpu_us_per_unit=cpu_us,
                     user_us_per_unit=cpu_us / 2, sys_us_per_unit=cpu_us / 2, p50_us=100.0, p99_us=200.0,
                     connect_p50_us=None, connect_p99_us=None, accepted_per_s=None, accepts_per_wakeup=None,
                     empty_wakeups=None, listen_overflows=0, listen_drops=0, loadgen_cpu_s=0.5,
                     loadgen_saturated=False, errors={})


def test_user_and_sys_split_the_median_cpu_in_the_pooled_proportion():
    runs = [fake_run(1000, 10), fake_run(1000, 30), fake_run(1000, 20)]
    runs[0].server_user_s, runs[0].server_sys_s = 0.0, 0.01  # one run's ticks all fell in the kernel
    result = ConfigResult(Target("peer", peer="c"), 0, runs=runs)
    user, system = result.cpu_split()
    assert user + system == pytest.approx(20.0)  # the median total
    pooled_user = 0.015 + 0.01  # runs 2 and 3: half user each
    assert user == pytest.approx(20.0 * pooled_user / (pooled_user + 0.01 + 0.015 + 0.01))
    assert (result.median("user_us_per_unit"), result.median("sys_us_per_unit")) == (user, system)
    row = next(line for line in format_table([result], BenchOptions(workload="echo")).splitlines()
               if line.startswith("c "))
    assert f" {user:.1f} " in row and f" {system:.1f} " in row


def test_the_plot_leads_with_cpu_has_error_bars_and_draws_peers_only_where_measured(tmp_path):
    pytest.importorskip("matplotlib")
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from reactor.tools import loadgen
    from reactor.tools.benchmark import plot_figure, write_plot

    options = BenchOptions(workload="echo", idle=[0, 800], repeat=2)
    epoll = Target("reactor", backend="epoll", native=True)
    hist = [0] * loadgen.NBUCKETS
    for us in [100] * 98 + [1000, 5000]:
        hist[loadgen.bucket(us)] += 1
    latency = fake_run(500, 20)
    latency.offered_rate = 500.0
    results = [ConfigResult(epoll, 0, runs=[fake_run(1000, 10), fake_run(1200, 12)], latency_runs=[latency],
                            latency_hist=hist),
               ConfigResult(epoll, 800, runs=[fake_run(900, 11), fake_run(1100, 13)]),
               ConfigResult(Target("peer", peer="c"), 0, runs=[fake_run(2000, 4), fake_run(2200, 5)]),
               ConfigResult(Target("peer", peer="asyncio"), 0, status="skipped: not installed")]
    machine = {"cpu_model": "Test CPU 9000", "cpus": 2, "kernel": "6.0", "python": "CPython 3.11",
               "reactor": "0.0.0", "loadgen": "c"}
    figure = plot_figure(results, options, machine, date="2026-01-02 03:04 UTC")
    try:
        ax_cpu, ax_lat = figure.axes
        assert "CPU" in ax_cpu.get_ylabel() and "CPU" not in ax_lat.get_ylabel()  # CPU per request first
        assert not any("/ s" in axis.get_ylabel() or "throughput" in axis.get_title() for axis in figure.axes)
        assert "Test CPU 9000" in figure._suptitle.get_text() and "2026-01-02" in figure._suptitle.get_text()
        assert any("Linux 6.0" in text.get_text() for text in figure.texts)  # the footer
        assert not ax_cpu.texts  # no labels drawn over the data
        series = {bars.get_label(): bars for bars in ax_cpu.containers}  # one errorbar container each
        assert set(series) == {"epoll native", "c (the floor)"}  # the skipped peer is not drawn
        assert list(series["c (the floor)"].lines[0].get_xdata()) == [0]  # at its idle count only, not across
        assert list(series["epoll native"].lines[0].get_xdata()) == [0, 800]
        low, high = ax_cpu.containers[1].lines[1]  # c's error bar caps: 4.5 ± 0.5
        assert low.get_ydata()[0] == pytest.approx(4.0) and high.get_ydata()[0] == pytest.approx(5.0)
        assert figure.legends and {text.get_text() for text in figure.legends[0].get_texts()} == {
            "epoll native", "c (the floor)"}
        # the latency panel: only the row with a latency pass, at the offered load of the run
        assert [label.get_text() for label in ax_lat.get_xticklabels()] == ["reactor epoll native"]
        assert "500" in ax_lat.get_title()
    finally:
        plt.close(figure)
    path = tmp_path / "echo.png"
    write_plot(str(path), results, options)
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_a_server_on_another_engine_than_asked_fails_the_row():
    target = Target("reactor", backend="epoll", native=False, api="aio")
    _check_engine("listening on 127.0.0.1:5000 backend=epoll native=off", target)
    with pytest.raises(RuntimeError, match="asked for backend=epoll native=off"):
        _check_engine("listening on 127.0.0.1:5000 backend=poll native=off", target)
    with pytest.raises(RuntimeError, match="server says nothing"):
        _check_engine("listening on 127.0.0.1:5000", target)


def test_a_server_that_never_listens_is_killed_and_named(monkeypatch):
    import reactor.tools.benchmark as benchmark

    monkeypatch.setattr(benchmark, "START_TIMEOUT", 1.0)
    code = "import os, sys, time; print('pid', os.getpid(), file=sys.stderr, flush=True); time.sleep(60)"
    with pytest.raises(RuntimeError, match="printed no 'listening on ' line within 1 s; its stderr: pid ") as info:
        benchmark.ServerProcess([sys.executable, "-c", code], None)
    pid = int(str(info.value).rsplit(" ", 1)[1])
    assert not os.path.exists(f"/proc/{pid}")  # killed and reaped, not left running


def test_missing_peer_is_skipped_not_fatal(monkeypatch):
    import reactor.tools.benchmark as benchmark

    monkeypatch.setitem(benchmark.PEERS, "nosuchpeer", ("asyncio_server.py", [], "nosuch_module_xyz"))
    result = measure(Target("peer", peer="nosuchpeer"), 0, BenchOptions(duration=0.1, repeat=1))
    assert result.status.startswith("skipped: nosuch_module_xyz is not installed")


def test_plan_puts_peers_at_the_first_idle_count_only():
    options = BenchOptions(backends=["epoll"], natives=[False], idle=[0, 100], peers=["asyncio"])
    assert [(t.label, idle) for t, idle in plan(options)] == [
        ("reactor epoll pure", 0), ("asyncio", 0), ("reactor epoll pure", 100)]


def test_plan_orders_idle_then_api_then_backend_then_accept_path():
    options = BenchOptions(backends=["poll", "epoll"], natives=[True, False], idle=[0, 100],
                           apis=["reactor", "aio", "aio-streams"], peers=["asyncio", "uvloop-streams"])
    labels = [(t.label, idle) for t, idle in plan(options)]
    expected = [(f"{api} {backend} {path}", idle) for idle in (0, 100) for api in ("reactor", "aio", "aio-streams")
                for backend in ("poll", "epoll") for path in ("native", "pure")]
    assert labels == expected[:12] + [("asyncio", 0), ("uvloop-streams", 0)] + expected[12:]
    assert BenchOptions().apis == ["reactor"]  # today's rows unless asked


def test_a_failure_is_one_line_in_the_table():
    status = "failed: server exited with code 1: Traceback\n  File 'x'\nNameError: name 'x' is not defined"
    table = format_table([ConfigResult(Target("reactor", backend="epoll", api="aio"), 0, status=status)],
                         BenchOptions())
    assert "aio epoll pure     0  failed: server exited with code 1: Traceback NameError: name 'x'" in table
    assert "File 'x'" not in table


def test_table_shows_status_rows():
    options = BenchOptions()
    table = format_table([ConfigResult(Target("reactor", backend="select"), 10000, status="n/a (FD_SETSIZE)")],
                         options)
    assert "n/a (FD_SETSIZE)" in table


@pytest.mark.parametrize("args", [["accept", "--idle", "x"], ["accept", "--backends", "iocp"],
                                  ["accept", "--native", "maybe"], ["teleport"], ["echo", "--rate", "0"],
                                  ["accept", "--repeat", "0"], ["accept", "--duration", "-1"],
                                  ["accept", "--peers", "nodejs"], ["echo", "--api", "bogus"],
                                  ["echo", "--api", ""], ["echo", "--peers", "asyncio,uvloop-protocol"]])
def test_bad_arguments_exit_2(args):
    done = run_cli(*args)
    assert done.returncode == 2
    assert "usage:" in done.stderr


def test_bad_api_names_the_choices():
    done = run_cli("echo", "--api", "reactor,bogus")
    assert done.returncode == 2
    assert "argument --api: choose from reactor,aio,aio-streams, not 'reactor,bogus'" in done.stderr


def test_overflows_outside_the_runs_are_set_beside_those_in_them():
    from reactor.tools.benchmark import Background

    run = fake_run(1000, 20)
    run.listen_overflows = 2
    result = ConfigResult(Target("reactor", backend="epoll", native=True), 0, runs=[run])
    options = BenchOptions(workload="accept", duration=1.0)
    # 30 in 10 s outside the runs: 3 a run is other programs', 2 in one run is not this server's
    table = format_table([result], options, Background(overflows=30, seconds=10.0))
    note = next(line for line in table.splitlines() if line.startswith("listen overflows"))
    assert note.startswith("listen overflows, a few (reactor epoll native idle 0: 2): no more than other programs")
    assert "30 in 10 s, about 3.0 per 1 s run" in note and "outran accept" not in table
    # quiet outside the runs: 5 in one run are the server's, and explained as such
    run.listen_overflows = 5
    table = format_table([result], options, Background(overflows=0, seconds=10.0))
    note = next(line for line in table.splitlines() if line.startswith("listen overflows"))
    assert note.startswith("listen overflows (reactor epoll native idle 0: 5)") and "the client outran accept" in note
    assert Background().per_run(1.0) == 0.0  # nothing measured outside the runs: no claim


def test_open_loop_runs_the_latency_pass_alone_at_the_rate_asked(tmp_path):
    path = tmp_path / "open.json"
    done = run_cli("accept", "--open-loop", "--rate", "400", "--backends", "epoll", "--native", "off",
                   "--idle", "0", "--peers", "none", "--duration", "0.5", "--repeat", "2", "--json", str(path),
                   timeout=60)
    assert done.returncode == 0, done.stderr
    assert "saturation:" not in done.stdout
    assert "latency at a fixed offered load: 400 conn/s to every server" in done.stdout
    document = json.loads(path.read_text())
    (row,) = document["results"]
    assert row["runs"] == [] and len(row["latency"]["runs"]) == 2
    assert [r["pass"] for r in document["run_order"]] == ["latency", "latency"]
    for run in row["latency"]["runs"]:
        assert run["offered_rate"] == 400
        # open loop: the schedule, not the server, set how many there were: 400/s for 0.3 s is 120 starts
        # (a closed loop would make thousands); a few may still be open at the end on a busy machine
        assert 30 <= run["units"] <= 121, run
