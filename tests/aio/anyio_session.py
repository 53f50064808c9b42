"""One pytest session of anyio's own test suite, stock asyncio and reactor.aio side by side.

Run by ``anyio_suite.py`` as a script, with anyio's extracted sdist as the
working directory (its ``pyproject.toml`` is the pytest configuration, as in
anyio's own CI)::

    python tests/aio/anyio_session.py --results FILE --backends epoll[,select,...] [--eager]
        [--budget SECONDS] -- [pytest arguments]

It imports nothing from this project's ``tests`` package: anyio's tests are
the package ``tests`` in that session.

How the loops get in. anyio's ``tests/conftest.py`` lists the asyncio loops
its suite runs on in ``asyncio_params`` (stock asyncio, uvloop through its
``loop_factory`` option, and from 3.12 an eager-task-factory loop); the
``anyio_backend`` fixture is parametrized over that list plus the other
backends (``backend_params``), and the asyncio-only tests parametrize
``anyio_backend`` with ``asyncio_params`` directly. This plugin appends one
reactor.aio entry per backend to both lists, with the options of anyio's
stock ``asyncio`` entry plus ``loop_factory``, when pytest registers that
conftest (before any test module is imported and before its fixtures are
parsed), and makes the ``anyio_backend`` fixture anew over the longer list
(a fixture's params are frozen when it is defined). Every test anyio runs on
stock asyncio thus gets a reactor.aio twin whose id differs only in that
parameter: ``test_x[asyncio-ipv4]`` and ``test_x[asyncio+reactor_epoll-ipv4]``.

Kept: the items whose ``anyio_backend`` is one of the loops asked for.
Deselected: trio and uvloop (other projects' loops), and the tests that do
not take ``anyio_backend`` (anyio's pytest-plugin tests run inner sessions
with anyio's default loop; the rest never start a loop): they say nothing
about the loop under test.

Each finished test is appended to ``--results`` as one JSON line, so a crash
of the interpreter loses only the test it was running; the first line lists
every kept item, so the tests that never ran are known too.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import json
import os
import socket
import sys
import threading
import time
import traceback
from collections.abc import Callable
from pathlib import Path
from types import TracebackType
from typing import Any

import pytest

#: anyio's id of its stock asyncio entry, and of the eager-task-factory one
STOCK_ID = "asyncio"
EAGER_ID = "asyncio+eager"

#: anyio's test_sockets.py skips its IPv6 tests (this skipif reason) when ::1
#: cannot be bound, but the tests then bind and connect to "localhost": where
#: /etc/hosts gives localhost no IPv6 address (this machine), they fail on
#: every loop, and the sockets their fixtures leave unclosed reach whichever
#: test collects garbage next as a ResourceWarning. Where localhost has no
#: IPv6 address, the variants with these parameter ids are skipped.
ANYIO_IPV6_SKIP_REASON = "IPv6 is not available"
IPV6_IDS = frozenset({"ipv6", "dualstack", "both", "multi"})
NO_LOCALHOST_V6 = "localhost has no IPv6 address here (/etc/hosts); anyio's IPv6 tests connect to localhost"

#: Seconds a failed test's own threads get to end at its teardown (see
#: AnyioLoops._leftovers); they end within milliseconds once their peer's
#: socket is freed, and the wait is paid by failed tests only.
THREAD_GRACE = 2.0


class LoopFactory:
    """The loop of one twin: ``reactor.aio.new_event_loop(backend=...)``,
    checked (a loop on another backend would make the comparison
    meaningless); or, for a backend named ``stock-poll`` / ``stock-select``,
    stock asyncio on that selector (``asyncio.SelectorEventLoop(
    selectors.PollSelector())``, as CPython's own tests bind it), to tell a
    failure of the backend from one of reactor.aio. Optionally with asyncio's
    eager task factory, as anyio's ``asyncio+eager`` entry has it."""

    #: loops made per label, written at the end of the session: proof that
    #: anyio called the factory rather than making its own loop
    made: dict[str, int] = {}

    def __init__(self, backend: str, eager: bool) -> None:
        self.backend = backend
        self.eager = eager
        self.label = backend + ("+eager" if eager else "")

    def __call__(self) -> asyncio.AbstractEventLoop:
        loop: asyncio.AbstractEventLoop
        if self.backend.startswith("stock-"):
            import selectors

            name = self.backend.removeprefix("stock-").capitalize() + "Selector"
            loop = asyncio.SelectorEventLoop(getattr(selectors, name)())
        else:
            import reactor.aio

            loop = reactor.aio.new_event_loop(backend=self.backend)
            if loop.backend != self.backend:
                loop.close()
                raise AssertionError(f"new_event_loop(backend={self.backend!r}) made a {loop.backend!r} loop")
        if self.eager:
            loop.set_task_factory(asyncio.eager_task_factory)  # type: ignore[attr-defined]  # 3.12+
        LoopFactory.made[self.label] = LoopFactory.made.get(self.label, 0) + 1
        return loop

    def param_id(self, base: str) -> str:
        """``asyncio+reactor_epoll``, ``asyncio+eager+reactor_poll``, ``asyncio+selector_poll``"""
        if self.backend.startswith("stock-"):
            return f"{base}+selector_{self.backend.removeprefix('stock-')}"
        return f"{base}+reactor_{self.backend}"

    def __repr__(self) -> str:
        return f"<loop factory {self.label}>"


class AnyioLoops:
    """The pytest plugin: adds the reactor.aio loops, keeps their items and
    their stock twins, writes the outcomes."""

    def __init__(self, backends: list[str], eager: bool, results: Path, budget: float) -> None:
        self.backends = backends
        self.eager = eager
        self.results = results
        self.budget = budget
        self.started = time.monotonic()
        # (param value, label, its param id, the stock param id it stands for)
        self.loops: list[tuple[object, str, str, str]] = []
        self.items: dict[str, dict[str, str]] = {}  # nodeid -> {"label", "key"}
        self.phases: dict[str, dict[str, Any]] = {}  # nodeid -> outcome so far
        self.deselected = 0  # by -m and by this plugin
        self.threads_before: set[threading.Thread] = set()  # alive when the current test started
        self.failed = False  # a phase of the current test failed
        self.out = results.open("w", encoding="utf-8")

    # -- the loops ---------------------------------------------------------

    def pytest_plugin_registered(self, plugin: object, plugin_name: str | None) -> None:
        if not plugin_name or Path(plugin_name) != Path.cwd() / "tests" / "conftest.py":
            return
        asyncio_params = getattr(plugin, "asyncio_params", None)
        backend_params = getattr(plugin, "backend_params", None)
        if not isinstance(asyncio_params, list) or not isinstance(backend_params, list) or not hasattr(
                plugin, "anyio_backend"):
            raise pytest.UsageError(
                "anyio's tests/conftest.py no longer has the asyncio_params and backend_params lists and the "
                "anyio_backend fixture this harness extends: read it and update tests/aio/anyio_session.py")
        by_id = {getattr(p, "id", None): p for p in asyncio_params}
        bases = [STOCK_ID] + ([EAGER_ID] if self.eager and EAGER_ID in by_id else [])
        if STOCK_ID not in by_id:
            raise pytest.UsageError(f"anyio's asyncio_params has no {STOCK_ID!r} entry: update anyio_session.py")
        twins = []
        for base in bases:
            (value,) = by_id[base].values
            self.loops.append((value, "stock" if base == STOCK_ID else "stock+eager", base, base))
            name, options = value
            for backend in self.backends:
                factory = LoopFactory(backend, base == EAGER_ID)
                twin_value = (name, {**options, "loop_factory": factory})
                twin_id = factory.param_id(base)
                self.loops.append((twin_value, factory.label, twin_id, base))
                twins.append(pytest.param(twin_value, id=twin_id))
        # Test modules read asyncio_params when they are imported (later);
        # the fixture must be made again over the longer list.
        asyncio_params.extend(twins)
        backend_params.extend(twins)
        plugin.anyio_backend = _backend_fixture(backend_params)  # type: ignore[attr-defined]

    # -- which items run ---------------------------------------------------

    @pytest.hookimpl(trylast=True)  # after -m/-k have deselected theirs
    def pytest_collection_modifyitems(self, config: Any, items: list[Any]) -> None:
        if not self.loops:
            raise pytest.UsageError("anyio's tests/conftest.py was not seen: run from anyio's sdist root")
        kept, dropped = [], []
        no_v6 = not _localhost_has_ipv6()
        for item in items:
            loop = self._loop_of(item)
            if loop is None:
                dropped.append(item)
                continue
            _, label, param_id, base = loop
            self.items[item.nodeid] = {"label": label, "key": _stock_key(item, param_id, base)}
            if no_v6 and _needs_ipv6(item):
                item.add_marker(pytest.mark.skip(reason=NO_LOCALHOST_V6))
            kept.append(item)
        if dropped:
            config.hook.pytest_deselected(items=dropped)
        # The order stays anyio's: each test on its loops one after the
        # other. Its tests depend on it: TestTLSListener.test_extra_attributes
        # makes the session's server_context require client certificates,
        # which fails the TestTLSStream tests that come before it in the file
        # whenever they run after it (one loop after the other did that).
        items[:] = kept
        self._write({"collected": self.items, "deselected": self.deselected})
        # What collection made (test modules, hypothesis, the fixtures) lives
        # as long as the session: freezing it takes it out of every later
        # collection, which then costs ~0 ms instead of ~100 ms here (the
        # cleanup of a failed test below collects; so do some of anyio's
        # tests). Objects the tests make are collected as before.
        gc.freeze()

    def pytest_deselected(self, items: list[Any]) -> None:
        self.deselected += len(items)

    def _loop_of(self, item: Any) -> tuple[object, str, str, str] | None:
        callspec = getattr(item, "callspec", None)
        if callspec is None or "anyio_backend" not in callspec.params:
            return None
        value = callspec.params["anyio_backend"]
        for loop in self.loops:
            if loop[0] is value:
                return loop
        return None

    # -- outcomes ----------------------------------------------------------

    @pytest.hookimpl(wrapper=True)
    def pytest_runtest_makereport(self, item: Any, call: Any) -> Any:
        report = yield
        # A failed test's traceback keeps its frames, so its sockets and
        # transports, alive (pytest keeps the ExceptionInfo); the report is
        # written by now: free them (teardown collects them, see below).
        if call.excinfo is not None and item.nodeid in self.items:
            _free_frames(call.excinfo.tb)
            self.failed = True
        return report

    def pytest_runtest_logreport(self, report: Any) -> None:
        if report.nodeid not in self.items:
            return
        state = self.phases.setdefault(report.nodeid, {"outcome": "passed", "message": "", "seconds": 0.0})
        state["seconds"] += report.duration
        if report.failed:
            if state["outcome"] != "failed":
                state["outcome"] = "failed"
                state["message"] = f"{report.when}: {_message(report)}"
        elif report.skipped and state["outcome"] == "passed":
            xfail = hasattr(report, "wasxfail")
            state["outcome"] = "xfailed" if xfail else "skipped"
            state["message"] = report.wasxfail if xfail else _message(report)

    def pytest_runtest_logstart(self, nodeid: str, location: object) -> None:
        if nodeid in self.items:
            self._write({"start": nodeid})

    def pytest_runtest_logfinish(self, nodeid: str, location: object) -> None:
        state = self.phases.pop(nodeid, None)
        if state is not None:
            state["seconds"] = round(state["seconds"], 3)
            self._write({"nodeid": nodeid, **state})

    @pytest.hookimpl(tryfirst=True)
    def pytest_runtest_setup(self, item: Any) -> None:
        self.threads_before = set(threading.enumerate())
        self.failed = False

    @pytest.hookimpl(trylast=True)  # after the fixtures' teardown, before pytest's own collectors
    def pytest_runtest_teardown(self, item: Any, nextitem: object) -> None:
        try:
            if self.failed:
                self._leftovers(item)
        finally:
            # The budget bounds what a hanging loop costs CI: past it the
            # session stops after this test and the rest count as not run.
            if time.monotonic() - self.started > self.budget:
                item.session.shouldstop = f"anyio suite: time budget of {self.budget:.0f} s spent"

    def _leftovers(self, item: Any) -> None:
        """What a failed test left behind fails it, not the next test.

        Its sockets and transports (freed from its frames above) are
        collected now, and the helper threads it started (anyio's TLS tests
        serve in one, which fails once its peer's socket is closed) get
        ``THREAD_GRACE`` to end. Then pytest's two collectors, of unraisable
        exceptions (a ResourceWarning) and of thread exceptions, both run
        here: pytest runs them after this hook, one after the other, and the
        first that finds something raises, so the other's finds were
        reported at the next test's setup, the stock twin of another test,
        whose pass is the bar."""
        gc.collect()
        threads = set(threading.enumerate()) - self.threads_before
        if threads:
            deadline = time.monotonic() + THREAD_GRACE
            for thread in threads:
                thread.join(max(0.0, deadline - time.monotonic()))
            gc.collect()  # what the threads held
        errors = []
        for name in ("unraisableexception", "threadexception"):
            collector = getattr(item.config.pluginmanager.get_plugin(name), "pytest_runtest_teardown", None)
            if collector is None:
                continue  # another pytest: its collector runs after this hook as usual
            try:
                collector(item)
            except BaseException as exc:  # what each reports: a warning turned into an error
                errors.append(exc)
        if len(errors) == 1:
            raise errors[0]
        if errors:
            raise BaseExceptionGroup("left behind by this failed test", errors)

    def pytest_sessionfinish(self) -> None:
        self._write({"loops_made": LoopFactory.made})
        self.out.close()

    def _write(self, record: dict[str, Any]) -> None:
        self.out.write(json.dumps(record) + "\n")
        self.out.flush()


def _free_frames(tb: TracebackType | None) -> None:
    traceback.clear_frames(tb)
    # Formatting the report read the frames' f_locals, a snapshot that
    # frame.clear() leaves alone; reading it again re-syncs it with the now
    # empty locals, which drops the snapshot's references.
    while tb is not None:
        snapshot = tb.tb_frame.f_locals
        del snapshot
        tb = tb.tb_next


def _localhost_has_ipv6() -> bool:
    try:
        return bool(socket.getaddrinfo("localhost", None, socket.AF_INET6))
    except OSError:
        return False


def _needs_ipv6(item: Any) -> bool:
    marked = any(mark.kwargs.get("reason") == ANYIO_IPV6_SKIP_REASON for mark in item.iter_markers("skipif"))
    return marked and not IPV6_IDS.isdisjoint(item.callspec.id.split("-"))


def _backend_fixture(params: list[Any]) -> Callable[..., Any]:
    @pytest.fixture(name="anyio_backend", params=params)
    def anyio_backend(request: Any) -> Any:
        return request.param

    return anyio_backend  # type: ignore[no-any-return]


def _stock_key(item: Any, param_id: str, base: str) -> str:
    """The node id of ``item``'s stock twin: its id with this loop's param id
    put back to the stock one's (``asyncio+reactor_epoll`` -> ``asyncio``)."""
    callspec_id = item.callspec.id
    head = item.nodeid[: -len(callspec_id) - 2]  # nodeid ends with "[<callspec id>]"
    parts = [base if part == param_id else part for part in callspec_id.split("-")]
    return f"{head}[{'-'.join(parts)}]"


def _message(report: Any) -> str:
    crash = getattr(report.longrepr, "reprcrash", None)
    if crash is not None:
        text = crash.message
    elif isinstance(report.longrepr, tuple):  # a skip: (path, line, reason)
        text = report.longrepr[2]
    else:
        text = str(report.longrepr)
    text = " ".join(text.split())
    return text if len(text) <= 300 else text[:297] + "..."


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--results", type=Path, required=True)
    parser.add_argument("--backends", required=True,
                        help="comma-separated reactor backends, or stock-poll / stock-select")
    parser.add_argument("--eager", action="store_true", help="also anyio's eager-task-factory loop (3.12+)")
    parser.add_argument("--budget", type=float, default=float("inf"), help="stop starting tests after SECONDS")
    parser.add_argument("pytest_args", nargs="*")
    args = parser.parse_args(argv)
    # Run as a script, this file's directory (tests/aio) is sys.path[0]: it
    # must not shadow anything anyio's tests import.
    here = str(Path(__file__).resolve().parent)
    sys.path[:] = [p for p in sys.path if os.path.abspath(p or ".") != here]
    plugin = AnyioLoops([b for b in args.backends.split(",") if b], args.eager, args.results, args.budget)
    return int(pytest.main(args.pytest_args, plugins=[plugin]))


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
