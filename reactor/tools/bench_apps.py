"""``python -m reactor bench apps``: real programs on reactor.aio, uvloop and stock asyncio.

The other workloads measure a loop under a protocol written for the bench;
this one measures libraries other people wrote, unchanged, on each loop:

- ``uvicorn``: uvicorn (its h11 protocol) serving a plain ASGI app;
- ``aiohttp``: an aiohttp web server; both answer ``GET /`` with 13 bytes,
  keep-alive (``reactor/tools/apps/http_server.py``);
- ``asyncpg``: a client doing ``SELECT $1::int + 1`` against a PostgreSQL
  server the bench starts;
- ``redis``: redis-py's asyncio client doing a SET and a GET against a Redis
  server the bench starts (``reactor/tools/apps/db_client.py``,
  ``reactor/tools/dbservers.py``).

How a figure is made, and why:

- The program under test runs in its own process pinned to one CPU; the
  other side (the HTTP load, or the database server) runs pinned to the
  other CPU. For the HTTP apps the program is the server; for asyncpg and
  redis it is the client, and the database is the other side.
- Every loop gets the same offered load: ``--concurrency`` connections, one
  operation in flight on each, paced to ``--rate`` operations per second in
  all (``reactor/tools/apps/_paced.py``). So CPU per operation and latency
  are taken at the same work per second for every row, and the p99 is not
  the queue a saturating client would build. An operation that could not
  start within 1 ms of its due time is ``late`` (the machine or the program
  fell behind); if most are late the offered load was above what the row
  could take, and its latencies include waiting.
- The figure that decides is the program's **CPU per operation**: its
  utime + stime over the measured window (the sum of its threads'
  ``/proc/.../schedstat``, in ns), read at the window's two edges by the
  process that paces the load, divided by the operations completed inside
  the window. It is shown beside the ratio to uvloop's and to stock
  asyncio's, then the user/system split, the p50 and p99 latency (from
  sending an operation to its complete answer, pooled over the runs), the
  rate reached, ``late`` and the errors (any error is a failed operation
  and is counted; the first one's text is kept).
- Interleaved: an app's three servers (or one database server) are started
  together and each loop is measured in turn, repeat after repeat
  (A B C A B C ...), so that drift on a shared machine lands on every loop
  alike. Medians over ``--repeat`` runs, ± half their range.
- A row that cannot run is skipped with the reason (a library not
  installed, no PostgreSQL or Redis binary, a server that would not start),
  never a crash; the table says why.
"""

from __future__ import annotations

import dataclasses
import importlib.util
import json
import math
import os
import statistics
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from . import dbservers
from .benchmark import ServerProcess, child_env, cpu_pair, layout_table, machine_description, spread_of

__all__ = ["APPS", "LOOPS", "AppsOptions", "AppRow", "AppRun", "run_apps_bench", "format_apps_table",
           "write_apps_json", "write_apps_plot", "SCHEMA_VERSION"]

#: the apps, in table order: name -> (kind, Python modules it needs)
APPS: dict[str, tuple[str, tuple[str, ...]]] = {
    "uvicorn": ("http", ("uvicorn",)),
    "aiohttp": ("http", ("aiohttp",)),
    "asyncpg": ("postgres", ("asyncpg",)),
    "redis": ("redis", ("redis",)),
}
#: the loops, in table order: name -> the module that must import
LOOPS: dict[str, str] = {"reactor.aio": "reactor.aio", "uvloop": "uvloop", "asyncio": "asyncio"}
SCHEMA_VERSION = 1
#: seconds a load or client process may take beyond its warm-up and window
#: (starting Python, connecting, closing)
RUN_MARGIN = 30.0


@dataclass
class AppsOptions:
    """What ``bench apps`` runs; the defaults take about 2 minutes on 2 cores."""

    apps: list[str] = field(default_factory=lambda: list(APPS))
    loops: list[str] = field(default_factory=lambda: list(LOOPS))
    duration: float = 2.0
    repeat: int = 3
    warmup: float = 0.5
    concurrency: int = 16
    #: operations per second offered to every row: well below what the
    #: costliest row (uvicorn on stock asyncio, ~230 µs a request here) can
    #: serve on one core, and what the Python load can send on the other
    rate: float = 1000.0
    #: where to look for the database binaries (None: the PATH, and Debian's
    #: PostgreSQL directory); a test points it at an empty directory
    bin_path: str | None = None


@dataclass
class AppRun:
    """One measured run of one app on one loop."""

    ops: int
    window_s: float
    cpu_s: float
    user_s: float
    sys_s: float
    errors: int
    late: int
    first_error: str | None = None

    @property
    def cpu_us_per_op(self) -> float | None:
        return self.cpu_s / self.ops * 1e6 if self.ops else None

    @property
    def rate(self) -> float:
        return self.ops / self.window_s if self.window_s > 0 else 0.0


@dataclass
class AppRow:
    """An app on a loop: its runs and pooled latencies, or why it did not run."""

    app: str
    loop: str
    status: str = "ok"
    runs: list[AppRun] = field(default_factory=list)
    latencies_us: list[int] = field(default_factory=list)

    def _values(self, name: str) -> list[float]:
        return [v for v in (getattr(run, name) for run in self.runs) if v is not None]

    def median(self, name: str) -> float | None:
        values = self._values(name)
        return statistics.median(values) if values else None

    def spread(self, name: str) -> float | None:
        """Half the range of the runs' ``name``, as a fraction of its median."""
        return spread_of(self._values(name))

    def split_us(self) -> tuple[float, float] | None:
        """(user, system) µs per operation over all runs (/proc's tick split)."""
        ops = sum(run.ops for run in self.runs)
        user, system = sum(run.user_s for run in self.runs), sum(run.sys_s for run in self.runs)
        if not ops or not user + system:
            return None
        total = sum(run.cpu_s for run in self.runs) / ops * 1e6
        return total * user / (user + system), total * system / (user + system)

    def percentile(self, q: float) -> float | None:
        """The ``q`` (0..1) percentile of the pooled latencies, nearest rank."""
        if not self.latencies_us:
            return None
        ordered = sorted(self.latencies_us)
        return float(ordered[min(len(ordered), max(1, math.ceil(q * len(ordered)))) - 1])

    @property
    def errors(self) -> int:
        return sum(run.errors for run in self.runs)

    @property
    def first_error(self) -> str | None:
        return next((run.first_error for run in self.runs if run.first_error), None)

    def as_dict(self) -> dict[str, Any]:
        return {
            "app": self.app, "loop": self.loop, "status": self.status,
            "cpu_us_per_op": self.median("cpu_us_per_op"), "cpu_spread": self.spread("cpu_us_per_op"),
            "user_sys_us_per_op": self.split_us(), "rate": self.median("rate"),
            "p50_us": self.percentile(0.5), "p99_us": self.percentile(0.99), "errors": self.errors,
            "first_error": self.first_error, "late": sum(run.late for run in self.runs),
            "runs": [{**dataclasses.asdict(run), "cpu_us_per_op": run.cpu_us_per_op} for run in self.runs],
        }


# ------------------------------------------------------------------ running

def _missing_module(names: Sequence[str]) -> str | None:
    for name in names:
        if importlib.util.find_spec(name) is None:
            return name
    return None


def why_skip(app: str, loop: str, options: AppsOptions) -> str | None:
    """Why ``app`` cannot run on ``loop`` here (None: it can)."""
    kind, modules = APPS[app]
    missing = _missing_module([*modules, LOOPS[loop]])
    if missing:
        return f"skipped: {missing} is not installed (pip install -e '.[bench-apps]')"
    if kind != "http":
        _, reason = dbservers.find(kind, options.bin_path)
        if reason:
            return f"skipped: {reason}"
    return None


def _run_child(command: list[str], options: AppsOptions) -> tuple[AppRun, list[int]]:
    """Run a load or client process to its end; its last stdout line is its
    tally: the run, and its latencies (µs) for the row to pool."""
    timeout = options.warmup + options.duration + RUN_MARGIN
    done = subprocess.run(command, capture_output=True, text=True, timeout=timeout, env=child_env(),
                          stdin=subprocess.DEVNULL)
    lines = done.stdout.strip().splitlines()
    if done.returncode != 0 or not lines:
        tail = " | ".join(done.stderr.strip().splitlines()[-3:])
        raise RuntimeError(f"{command[2]} exited with {done.returncode}: {tail}")
    tally = json.loads(lines[-1])
    run = AppRun(ops=tally["ops"], window_s=tally["window_s"], cpu_s=tally["cpu_s"], user_s=tally["user_s"],
                 sys_s=tally["sys_s"], errors=tally["errors"], late=tally["late"], first_error=tally["first_error"])
    return run, [int(value) for value in tally["latencies_us"]]


def _paced_args(options: AppsOptions, cpu: int | None) -> list[str]:
    args = ["--connections", str(options.concurrency), "--rate", str(options.rate),
            "--warmup", str(options.warmup), "--duration", str(options.duration)]
    return args + (["--cpu", str(cpu)] if cpu is not None else [])


def _measure(row: AppRow, command: list[str], options: AppsOptions) -> None:
    """One run into ``row``; a failed run makes the row failed, with the reason."""
    try:
        run, latencies = _run_child(command, options)
    except (RuntimeError, subprocess.TimeoutExpired, ValueError, KeyError) as exc:
        row.status = f"failed: {exc}"
        return
    row.latencies_us.extend(latencies)
    row.runs.append(run)


def _progress(row: AppRow, repeat: int, options: AppsOptions) -> str:
    if row.status != "ok" or not row.runs:
        return f"  {row.app} on {row.loop}, run {repeat + 1}/{options.repeat}: {row.status}"
    run = row.runs[-1]
    cpu = run.cpu_us_per_op
    return (f"  {row.app} on {row.loop}, run {repeat + 1}/{options.repeat}: "
            f"{'-' if cpu is None else f'{cpu:.1f}'} µs CPU/op, {run.rate:,.0f} ops/s, "
            f"{run.errors} errors, {run.late} late")


def _run_http(app: str, rows: list[AppRow], options: AppsOptions, progress: Callable[[str], None],
              order: list[dict[str, Any]]) -> None:
    """Start the app on every loop, then measure each loop in turn, repeat after repeat."""
    server_cpu, load_cpu = cpu_pair()
    servers: dict[str, ServerProcess] = {}
    try:
        for row in rows:
            command = [sys.executable, "-m", "reactor.tools.apps.http_server", "--server", app, "--loop", row.loop]
            try:
                servers[row.loop] = ServerProcess(command, server_cpu, env=child_env())
            except RuntimeError as exc:
                row.status = f"failed: {exc}"
        for repeat in range(options.repeat):
            for row in rows:
                if row.status != "ok":
                    continue
                server = servers[row.loop]
                command = [sys.executable, "-m", "reactor.tools.apps.http_load", "--port", str(server.port),
                           "--server-pid", str(server.proc.pid), *_paced_args(options, load_cpu)]
                _measure(row, command, options)
                order.append({"app": app, "loop": row.loop, "repeat": repeat})
                progress(_progress(row, repeat, options))
    finally:
        for server in servers.values():
            server.stop()


def _run_db(app: str, rows: list[AppRow], options: AppsOptions, progress: Callable[[str], None],
            order: list[dict[str, Any]]) -> None:
    """Start the database once, then run the client on each loop in turn, repeat after repeat."""
    client_cpu, server_cpu = cpu_pair()
    kind = APPS[app][0]
    binaries, _ = dbservers.find(kind, options.bin_path)
    try:
        service = dbservers.start(kind, binaries, server_cpu)
    except (RuntimeError, OSError, subprocess.SubprocessError) as exc:
        for row in rows:
            row.status = f"skipped: {kind} did not start: {exc}"
        progress(f"  {app}: {kind} did not start: {exc}")
        return
    try:
        for repeat in range(options.repeat):
            for row in rows:
                if row.status != "ok":
                    continue
                command = [sys.executable, "-m", "reactor.tools.apps.db_client", "--client", app,
                           "--loop", row.loop, "--port", str(service.port), "--user", dbservers.ROLE,
                           *_paced_args(options, client_cpu)]
                _measure(row, command, options)
                order.append({"app": app, "loop": row.loop, "repeat": repeat})
                progress(_progress(row, repeat, options))
    finally:
        service.stop()


def run_apps_bench(options: AppsOptions, progress: Callable[[str], None] = print,
                   order: list[dict[str, Any]] | None = None) -> list[AppRow]:
    """Every app on every loop; rows in app order, loops in ``options.loops`` order.
    ``order`` (if given) receives the runs as they were made."""
    order = [] if order is None else order
    results: list[AppRow] = []
    for app in options.apps:
        rows = [AppRow(app, loop) for loop in options.loops]
        for row in rows:
            row.status = why_skip(app, row.loop, options) or "ok"
            if row.status != "ok":
                progress(f"  {app} on {row.loop}: {row.status}")
        runnable = [row for row in rows if row.status == "ok"]
        if runnable:
            (_run_http if APPS[app][0] == "http" else _run_db)(app, runnable, options, progress, order)
        results.extend(rows)
    return results


# ------------------------------------------------------------------ output

def _ratio(row: AppRow, rows: Sequence[AppRow], loop: str) -> str:
    base = next((r for r in rows if r.app == row.app and r.loop == loop and r.status == "ok"), None)
    mine, theirs = row.median("cpu_us_per_op"), base.median("cpu_us_per_op") if base else None
    return "-" if mine is None or not theirs else f"{mine / theirs:.2f}"


def _figures(row: AppRow, rows: Sequence[AppRow]) -> list[str]:
    cpu, spread, split = row.median("cpu_us_per_op"), row.spread("cpu_us_per_op"), row.split_us()
    p50, p99 = row.percentile(0.5), row.percentile(0.99)
    return [
        "-" if cpu is None else f"{cpu:.1f}" + ("" if spread is None else f" ± {spread:.0%}"),
        _ratio(row, rows, "uvloop"), _ratio(row, rows, "asyncio"),
        "-" if split is None else f"{split[0]:.0f} / {split[1]:.0f}",
        "-" if p50 is None else f"{p50:,.0f}", "-" if p99 is None else f"{p99:,.0f}",
        f"{row.median('rate') or 0:,.0f}", f"{sum(run.late for run in row.runs):,}", str(row.errors),
    ]


HEADER = ["app", "loop", "CPU µs/op", "×uvloop", "×asyncio", "user/sys µs", "p50 µs", "p99 µs", "ops/s",
          "late", "errors"]


def format_apps_table(rows: Sequence[AppRow], options: AppsOptions) -> str:
    """The table: CPU per operation of the program under test first (± half
    the range of the runs, its ratio to uvloop's and stock asyncio's), then
    the latency at the same offered load, the rate, late starts and errors;
    a row that did not run says why."""
    cells = [HEADER] + [[row.app, row.loop] + (_figures(row, rows) if row.status == "ok" else [row.status])
                        for row in rows]
    lines = layout_table(cells, left=2)
    lines.append("")
    lines.append(f"medians of {options.repeat} run(s) of {options.duration:g} s after {options.warmup:g} s of "
                 f"warm-up; {options.concurrency} connections, {options.rate:,.0f} ops/s offered to every row. "
                 "CPU: the program under test (HTTP: the server; asyncpg/redis: the client), pinned to one CPU.")
    lines.append("latency: from sending to the whole answer, pooled over the runs; late: operations started "
                 "more than 1 ms after their due time.")
    for row in rows:
        if row.errors:
            lines.append(f"errors: {row.app} on {row.loop}: {row.errors}, the first: {row.first_error}")
    return "\n".join(lines)


def _versions() -> dict[str, str | None]:
    from importlib.metadata import PackageNotFoundError, version

    found: dict[str, str | None] = {}
    for package in ("uvicorn", "h11", "aiohttp", "asyncpg", "redis", "uvloop"):
        try:
            found[package] = version(package)
        except PackageNotFoundError:
            found[package] = None
    return found


def write_apps_json(path: str, rows: Sequence[AppRow], options: AppsOptions,
                    order: Sequence[dict[str, Any]] = ()) -> None:
    """Every figure, every run, the run order, the options and the machine, as JSON."""
    machine = machine_description()
    machine["app_packages"] = _versions()
    document = {
        "schema_version": SCHEMA_VERSION,
        "workload": "apps",
        "options": dataclasses.asdict(options),
        "machine": machine,
        "date": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "results": [row.as_dict() for row in rows],
        "run_order": list(order),
    }
    Path(path).write_text(json.dumps(document, indent=2))


def write_apps_plot(path: str, rows: Sequence[AppRow], options: AppsOptions) -> None:
    """A PNG: CPU per operation by app and loop (bars, whiskers: the runs'
    range) first, then the p99 latency. Needs matplotlib."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    apps = [app for app in options.apps if any(r.app == app and r.status == "ok" for r in rows)]
    figure, (cpu_axes, p99_axes) = plt.subplots(1, 2, figsize=(11, 4.2))
    width = 0.8 / max(len(options.loops), 1)
    for index, loop in enumerate(options.loops):
        mine = [next((r for r in rows if r.app == app and r.loop == loop and r.status == "ok"), None) for app in apps]
        xs = [n + (index - (len(options.loops) - 1) / 2) * width for n in range(len(apps))]
        cpu = [r.median("cpu_us_per_op") or 0 if r else 0 for r in mine]
        spans = [[x.cpu_us_per_op or 0 for x in r.runs] if r and r.runs else [0.0] for r in mine]
        low = [c - min(span) for c, span in zip(cpu, spans, strict=True)]
        high = [max(span) - c for c, span in zip(cpu, spans, strict=True)]
        cpu_axes.bar(xs, cpu, width, yerr=[low, high], capsize=3, label=loop, color=f"C{index}")
        p99_axes.bar(xs, [(r.percentile(0.99) or 0) / 1000 if r else 0 for r in mine], width, label=loop,
                     color=f"C{index}")
    for axes, title in ((cpu_axes, "CPU µs per operation (program under test)"),
                        (p99_axes, f"p99 latency, ms, at {options.rate:,.0f} ops/s")):
        axes.set_xticks(range(len(apps)), apps)
        axes.set_title(title, fontsize=10)
        axes.legend(fontsize=8)
    facts = machine_description()
    figure.suptitle(f"bench apps: {facts.get('cpu_model', '?')}, {os.cpu_count()} CPUs, "
                    f"{time.strftime('%Y-%m-%d')}", fontsize=10)
    try:
        figure.savefig(path, dpi=110, bbox_inches="tight")
    finally:
        plt.close(figure)
