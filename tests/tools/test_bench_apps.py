"""``python -m reactor bench apps``: its arguments, a real run of the HTTP
apps on reactor.aio and stock asyncio, the database rows where PostgreSQL,
Redis and their clients are installed, and the rows that cannot run (a
missing binary, a server that will not start) skipped with their reason.

Runs are tiny (0.3 s windows at 200 operations/s): these tests check that
the figures are made and reported, not what they are. Every process a run
starts is stopped by the bench itself (its ``finally``); each test checks
that nothing it started is left (no child of this process).
"""

from __future__ import annotations

import importlib.util
import json
import os
import stat
import sys
from pathlib import Path

import pytest

from reactor.tools import dbservers
from reactor.tools.apps._paced import Tally
from reactor.tools.bench_apps import AppRow, AppsOptions, _measure, format_apps_table, run_apps_bench, write_apps_json
from reactor.tools.cli import main

TINY = ["--quick", "--duration", "0.3", "--rate", "200", "--concurrency", "4"]


def _tiny(**changes: object) -> AppsOptions:
    options = AppsOptions(duration=0.3, repeat=1, warmup=0.1, concurrency=4, rate=200.0)
    for name, value in changes.items():
        setattr(options, name, value)
    return options


def _children() -> set[int]:
    """The PIDs of this process's children still running (zombies aside)."""
    found = set()
    for task in Path(f"/proc/{os.getpid()}/task").iterdir():
        try:
            found |= {int(pid) for pid in (task / "children").read_text().split()}
        except OSError:
            pass
    return found


@pytest.fixture
def no_leftovers():
    before = _children()
    yield
    assert _children() <= before, "a process the bench started is still running"


# ---------------------------------------------------------------- the window

def test_the_window_counts_what_completed_between_the_edges_as_they_ran():
    """Operations and errors are counted between the edges' actual times
    (a late edge does not count CPU without its operations); latency is from
    sending, late is more than 1 ms after the due time."""
    tally = Tally(cpu_start=(1.0, 0.5, 1.5), cpu_end=(1.25, 0.75, 2.0), window_start=10.0, window_end=12.5)
    tally.completed = [(9.0, 9.0, 9.9),          # before the window
                       (10.0, 10.0, 10.0001),    # in, on time: 100 µs
                       (11.0, 11.002, 11.003),   # in, 2 ms late: 1,000 µs
                       (12.0, 12.0, 12.4),       # after the scheduled end (12.0) but before the edge ran
                       (12.4, 12.4, 12.5)]       # at the edge: out
    tally.failed = [(9.5, "OSError: before"), (11.5, "OSError: in"), (12.6, "OSError: after")]
    figures = tally.as_dict()
    assert figures["ops"] == 3 and figures["latencies_us"] == [100, 1000, 400000]
    assert figures["late"] == 1
    assert figures["errors"] == 1 and figures["first_error"] == "OSError: in"
    assert figures["window_s"] == 2.5
    assert (figures["user_s"], figures["sys_s"], figures["cpu_s"]) == (0.25, 0.25, 0.5)


# ---------------------------------------------------------------- arguments

@pytest.mark.parametrize(("argv", "flag"), [
    (["bench", "apps", "--apps", "nginx"], "--apps"),
    (["bench", "apps", "--apps", ""], "--apps"),
    (["bench", "apps", "--loops", "trio"], "--loops"),
    (["bench", "apps", "--duration", "0"], "--duration"),
    (["bench", "apps", "--repeat", "many"], "--repeat"),
    (["bench", "apps", "--concurrency", "500"], "--concurrency"),
    (["bench", "apps", "--backends", "epoll"], "--backends"),
    (["bench", "apps", "--peers", "uvloop"], "--peers"),
    (["bench", "apps", "--open-loop"], "--open-loop"),
    (["bench", "accept", "--apps", "uvicorn"], "--apps"),
    (["bench", "echo", "--loops", "uvloop"], "--loops"),
])
def test_a_bad_argument_exits_2_naming_the_flag(argv, flag, capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(argv)
    assert exit_info.value.code == 2
    err = capsys.readouterr().err
    assert "usage:" in err and flag in err, err


# ---------------------------------------------------------------- real runs

def _check_ok(rows, apps, loops):
    assert [(row.app, row.loop) for row in rows] == [(app, loop) for app in apps for loop in loops]
    for row in rows:
        assert row.status == "ok", (row.app, row.loop, row.status)
        assert row.errors == 0, row.first_error
        assert len(row.runs) == 1 and row.runs[0].ops > 0
        assert row.median("cpu_us_per_op") > 0
        assert 0 < row.percentile(0.5) <= row.percentile(0.99)


@pytest.mark.parametrize("app", ["uvicorn", "aiohttp"])
def test_an_http_app_on_reactor_aio_and_asyncio(app, tmp_path, capsys, no_leftovers):
    """The whole command, as a user runs it: every row ok with 0 errors, the
    table led by CPU per operation, and the JSON with every figure."""
    if importlib.util.find_spec(app) is None:
        pytest.skip(f"{app} is not installed (pip install -e '.[aio-apps]')")
    path, plot = tmp_path / "apps.json", tmp_path / "apps.png"
    with_plot = ["--plot", str(plot)] if importlib.util.find_spec("matplotlib") else []
    assert main(["bench", "apps", "--apps", app, "--loops", "reactor.aio,asyncio", *TINY,
                 "--json", str(path), *with_plot]) == 0
    out = capsys.readouterr().out
    if with_plot:
        assert plot.read_bytes().startswith(b"\x89PNG")
    header = next(line for line in out.splitlines() if line.startswith("app "))
    assert header.split()[:4] == ["app", "loop", "CPU", "µs/op"]
    for word in ("×uvloop", "×asyncio", "p50 µs", "p99 µs", "errors"):
        assert word in header
    document = json.loads(path.read_text())
    assert document["workload"] == "apps" and document["machine"]["cpus"] >= 1 and "app_packages" in document["machine"]
    assert [(r["app"], r["loop"]) for r in document["results"]] == [(app, "reactor.aio"), (app, "asyncio")]
    assert [(r["app"], r["loop"]) for r in document["run_order"]] == [(app, "reactor.aio"), (app, "asyncio")]
    for result in document["results"]:
        assert result["status"] == "ok" and result["errors"] == 0
        assert result["cpu_us_per_op"] > 0 and result["p99_us"] >= result["p50_us"] > 0
        assert result["runs"][0]["ops"] > 0


@pytest.mark.parametrize("app", ["asyncpg", "redis"])
def test_a_database_client_on_reactor_aio_and_asyncio(app, no_leftovers):
    """Runs where the server binary and the client library are here; else
    skipped with the reason the bench itself gives."""
    kind = "postgres" if app == "asyncpg" else "redis"
    if importlib.util.find_spec(app) is None:
        pytest.skip(f"{app} is not installed (pip install -e '.[aio-apps]')")
    _, reason = dbservers.find(kind)
    if reason:
        pytest.skip(reason)
    loops = ["reactor.aio", "asyncio"]
    rows = run_apps_bench(_tiny(apps=[app], loops=loops), progress=lambda line: None)
    _check_ok(rows, [app], loops)


# ---------------------------------------------------------------- rows that cannot run

def test_a_missing_binary_names_itself(tmp_path):
    _, reason = dbservers.find("redis", str(tmp_path))
    assert reason is not None and "redis-server" in reason and str(tmp_path) in reason
    _, reason = dbservers.find("postgres", str(tmp_path))
    assert reason is not None and "initdb" in reason


def test_missing_binaries_give_skipped_rows_not_a_crash(tmp_path, no_leftovers):
    lines: list[str] = []
    options = _tiny(apps=["asyncpg", "redis"], loops=["reactor.aio"], bin_path=str(tmp_path))
    rows = run_apps_bench(options, progress=lines.append)
    assert [row.status.startswith("skipped: ") for row in rows] == [True, True]
    assert all(not row.runs for row in rows)
    table = format_apps_table(rows, options)
    assert "asyncpg  reactor.aio  skipped: " in table and "redis    reactor.aio  skipped: " in table
    assert len(lines) == 2
    write_apps_json(str(tmp_path / "skipped.json"), rows, options)
    assert [r["status"] for r in json.loads((tmp_path / "skipped.json").read_text())["results"]] == \
        [row.status for row in rows]


def test_a_program_that_fails_makes_its_row_failed_with_the_reason(no_leftovers):
    """A load or client process that exits without its tally (here: the
    client with its required arguments missing) fails the row, not the bench."""
    row = AppRow("redis", "asyncio")
    _measure(row, [sys.executable, "-m", "reactor.tools.apps.db_client"], _tiny())
    assert row.status.startswith("failed: reactor.tools.apps.db_client exited with 2: "), row.status
    assert "required" in row.status and not row.runs
    line = next(line for line in format_apps_table([row], _tiny()).splitlines() if line.startswith("redis"))
    assert line.split()[:3] == ["redis", "asyncio", "failed:"]


def test_a_server_that_will_not_start_gives_a_skipped_row(tmp_path, no_leftovers):
    """A redis-server that exits at once: the row says so, with its output."""
    if importlib.util.find_spec("redis") is None:
        pytest.skip("redis is not installed (pip install -e '.[aio-apps]')")
    fake = tmp_path / "redis-server"
    fake.write_text("#!/bin/sh\necho 'fake redis-server: will not start'\nexit 3\n")
    fake.chmod(fake.stat().st_mode | stat.S_IXUSR)
    rows = run_apps_bench(_tiny(apps=["redis"], loops=["reactor.aio"], bin_path=str(tmp_path)),
                          progress=lambda line: None)
    assert rows[0].status.startswith("skipped: redis did not start"), rows[0].status
    assert "will not start" in rows[0].status
