"""CPython's own ``test.test_asyncio``, bound to reactor.aio or to stock
asyncio, run in child processes and compared test by test.

How CPython binds its tests to a loop, and how this module rebinds them:

- A test class that makes its loop itself -- ``create_event_loop()``
  (test_events, test_sock_lowlevel, test_sendfile), ``new_loop()``
  (``functional.FunctionalTestCaseMixin``: test_server, test_buffered_proto,
  test_sslproto) or a ``loop_factory`` attribute (test_server_context,
  test_taskgroups, ``IsolatedAsyncioTestCase`` from 3.13) -- is probed once:
  its factory is called with ``selectors.DefaultSelector`` marked, and the
  loop it returns says which selector the class is for (CPython binds
  ``EPollEventLoopTests`` to epoll, ``PollEventLoopTests`` to poll, ...,
  and many classes to the default). In a run on backend B, the classes for
  B and for the default get the run's loop factory instead (an instance
  attribute); classes for another selector are left out of the run (they
  are another backend's); a factory that makes no selector loop (a mock, a
  ``TestLoop``) is left as it is.
- Every other test that makes a loop does it through the event loop policy
  (``asyncio.new_event_loop()``, ``asyncio.run()``, ``asyncio.Runner``,
  ``IsolatedAsyncioTestCase`` before 3.13): each test starts with a policy
  whose ``new_event_loop`` is the run's factory (``startTest``), and the
  old policy is back after it.
- Each test records whether it made a loop of the run's factory at all
  (``"ours"``): unit tests of asyncio's own classes (mocks, ``TestLoop``,
  an explicit ``asyncio.SelectorEventLoop()``) run the same code in both
  runs and are counted apart.

The same binding with ``asyncio.SelectorEventLoop(<the backend's
selector>())`` as the factory is the stock run: identical test ids, so the
two runs compare test by test. A test listed in ``known.py`` for the
interpreter is skipped on reactor.aio with the reason there.

Each module runs in a child process of its own (``python -m
tests.aio.cpython_suite child ...``), a few at a time, as CPython's regrtest
runs them with ``-j``: a module's monkeypatching (``asyncio.Future``
swapped for the pure-Python one, a policy left behind) reaches no other
module, and the suite, which mostly waits (timeouts, sleeps, subprocesses),
spreads over both CPUs. A child writes one JSON line when a test starts and
one with its outcome; a test still running after ``timeout`` seconds ends
the child (``faulthandler``, which prints every thread's stack to the
child's log), is recorded as ``hung``, and a new child goes on after it.

By hand::

    python -m tests.aio.cpython_suite --loop reactor --backend epoll [--native 0]
        [--modules test_events,test_streams] [-k PATTERN] [--workers 3] [--compare] [--json OUT]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import faulthandler
import fnmatch
import importlib
import json
import os
import pkgutil
import selectors
import subprocess
import sys
import tempfile
import time
import traceback
import unittest
import warnings
from collections import Counter
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]

#: the modules of CPython's loop mixins: what CPython binds per selector
MIXIN_MODULES = ("test_events", "test_sock_lowlevel", "test_sendfile", "test_server", "test_buffered_proto",
                 "test_streams", "test_sslproto", "test_ssl")

#: outcomes that count as a pass, and as a failure
PASSED = frozenset({"passed", "xfail"})
FAILED = frozenset({"failed", "error", "hung", "crashed", "xpass"})

#: seconds one test may take before its child is ended (CPython's own
#: tests bound their waits by support.SHORT_TIMEOUT, 30 s)
DEFAULT_TIMEOUT = 60.0

_SELECTOR_CLASSES = {
    "select": "SelectSelector",
    "poll": "PollSelector",
    "epoll": "EpollSelector",
}

FACTORY_ATTRIBUTES = ("create_event_loop", "new_loop", "loop_factory")


@dataclass(frozen=True)
class RunConfig:
    """One run: which loop, which backend, which accept path, which modules."""

    loop: str  # "reactor" | "stock"
    backend: str  # "select" | "poll" | "epoll"
    native: bool = True  # reactor's accept path (stock: ignored)
    modules: tuple[str, ...] = ()  # () = the whole package

    @property
    def label(self) -> str:
        path = "" if self.loop == "stock" else (" native" if self.native else " pure")
        return f"{self.loop} {self.backend}{path}"


# ---------------------------------------------------------------- the child


def _selector_class(backend: str) -> type[selectors.BaseSelector]:
    cls = getattr(selectors, _SELECTOR_CLASSES[backend], None)
    if cls is None:
        raise unittest.SkipTest(f"selectors has no {backend} selector here")
    return cls  # type: ignore[no-any-return]


class LoopFactory:
    """The run's loop factory; counts the loops it made."""

    def __init__(self, config: RunConfig) -> None:
        self.config = config
        self.made = 0

    def __call__(self) -> asyncio.AbstractEventLoop:
        self.made += 1
        config = self.config
        if config.loop == "stock":
            return asyncio.SelectorEventLoop(_selector_class(config.backend)())
        import reactor.aio

        loop = reactor.aio.new_event_loop(backend=config.backend, native=config.native)
        if (loop.backend, loop.native) != (config.backend, config.native):
            loop.close()
            raise AssertionError(f"new_event_loop(backend={config.backend!r}, native={config.native!r}) made "
                                 f"a loop with backend={loop.backend!r}, native={loop.native!r}")
        return loop


def _policy_class() -> type:
    from reactor.aio._private.policy import DefaultPolicy

    class RunPolicy(DefaultPolicy):  # type: ignore[misc,valid-type]
        """The default policy (child watchers included, before 3.14) with
        the run's loop factory."""

        def __init__(self, factory: LoopFactory) -> None:
            super().__init__()
            self._run_factory = factory

        def new_event_loop(self) -> asyncio.AbstractEventLoop:
            return self._run_factory()

    return RunPolicy


@contextlib.contextmanager
def _default_selector_marked() -> Iterator[type]:
    original = selectors.DefaultSelector
    marked = type("DefaultSelector", (original,), {})
    selectors.DefaultSelector = marked  # type: ignore[misc]
    try:
        yield marked
    finally:
        selectors.DefaultSelector = original  # type: ignore[misc]


def probe_binding(test: unittest.TestCase) -> tuple[str, str | None] | None:
    """``(attribute, selector)`` of the loop factory ``test``'s class
    defines: selector "default", "select", "poll", "epoll", or None for a
    factory that makes something else. None if the class defines none."""
    cls = type(test)
    for attribute in FACTORY_ATTRIBUTES:
        if not any(attribute in vars(klass) for klass in cls.__mro__ if klass.__module__.startswith("test.")):
            continue
        factory = getattr(test, attribute, None)
        if not callable(factory):
            continue
        with _default_selector_marked() as marked, warnings.catch_warnings():
            warnings.simplefilter("ignore")
            try:
                loop = factory()
            except Exception:
                continue  # an abstract mixin's NotImplementedError, a platform's loop
        try:
            selector = getattr(loop, "_selector", None)
            if type(selector) is marked:
                return attribute, "default"
            for backend, name in _SELECTOR_CLASSES.items():
                if type(selector) is getattr(selectors, name, None):
                    return attribute, backend
            return attribute, None
        finally:
            with contextlib.suppress(Exception):
                loop.close()
    return None


def _iter_tests(suite: Any) -> Iterator[unittest.TestCase]:
    for item in suite:
        if isinstance(item, unittest.TestSuite):
            yield from _iter_tests(item)
        else:
            yield item


def package_modules(selected: Iterable[str] = ()) -> list[str]:
    import test.test_asyncio as package

    names = sorted(info.name for info in pkgutil.iter_modules(package.__path__) if info.name.startswith("test_"))
    wanted = set(selected)
    if wanted:
        unknown = wanted - set(names)
        if unknown:
            raise ValueError(f"not modules of test.test_asyncio here: {sorted(unknown)}")
        names = [name for name in names if name in wanted]
    return names


@dataclass
class Collected:
    tests: list[unittest.TestCase] = field(default_factory=list)
    #: test id -> why it is not part of this run at all (another backend's class)
    excluded: dict[str, str] = field(default_factory=dict)
    #: module -> why it could not be loaded (a SkipTest at import: not this platform)
    module_skips: dict[str, str] = field(default_factory=dict)


def collect(config: RunConfig, factory: LoopFactory, pattern: str | None = None,
            only: set[str] | None = None) -> Collected:
    """Load the run's tests in order and bind them (module docs); only
    those matching ``pattern`` (a substring glob) and in ``only``, if given."""
    loader = unittest.TestLoader()
    out = Collected()
    probes: dict[type, tuple[str, str | None] | None] = {}
    for name in package_modules(config.modules):
        try:
            module = importlib.import_module(f"test.test_asyncio.{name}")
        except unittest.SkipTest as exc:
            out.module_skips[name] = str(exc)
            continue
        for test in _iter_tests(loader.loadTestsFromModule(module)):
            test_id = test.id()
            if pattern and not fnmatch.fnmatchcase(test_id, f"*{pattern}*"):
                continue
            if only is not None and test_id not in only:
                continue
            cls = type(test)
            if cls not in probes:
                probes[cls] = probe_binding(test) if isinstance(test, unittest.TestCase) else None
            binding = probes[cls]
            if binding is not None:
                attribute, selector = binding
                if selector in _SELECTOR_CLASSES and selector != config.backend:
                    out.excluded[test_id] = f"bound to {selector} (the {selector} run's)"
                    continue
                if selector is not None:
                    setattr(test, attribute, factory)
            out.tests.append(test)
    return out


def _skip_known(test: unittest.TestCase, reason: str) -> None:
    method = getattr(test, test._testMethodName)

    @unittest.skip(reason)
    def skipped(*args: Any, **kwargs: Any) -> None:  # pragma: no cover - never called
        method(*args, **kwargs)

    setattr(test, test._testMethodName, skipped)


def _process_signals() -> str:
    """What a test may leave behind for the whole process: the SIGINT and
    SIGCHLD handlers, and the signal wake-up fd."""
    import signal

    fd = signal.set_wakeup_fd(-1)
    signal.set_wakeup_fd(fd)
    handlers = [getattr(signal.getsignal(sig), "__qualname__", repr(signal.getsignal(sig)))
                for sig in (signal.SIGINT, signal.SIGCHLD)]
    return f"SIGINT={handlers[0]} SIGCHLD={handlers[1]} wakeup_fd={fd}"


class RecordingResult(unittest.TestResult):
    """Writes a JSON line when a test starts and one with its outcome; sets
    the run's policy around each test and arms the hang timer."""

    def __init__(self, out: Any, factory: LoopFactory, timeout: float) -> None:
        super().__init__()
        self._out = out
        self._factory = factory
        self._timeout = timeout
        self._policy_class = _policy_class()
        self._current: dict[str, Any] | None = None

    def _write(self, record: dict[str, Any]) -> None:
        self._out.write(json.dumps(record) + "\n")
        self._out.flush()

    def startTest(self, test: unittest.TestCase) -> None:  # unittest's names, camelCase
        from reactor.aio._private.policy import get_policy, set_policy

        super().startTest(test)
        self._current = {"id": test.id(), "outcome": "passed", "made": self._factory.made,
                         "start": time.monotonic()}
        self._write({"start": test.id()})
        self._saved_policy = get_policy()
        self._signals_before = _process_signals()
        set_policy(self._policy_class(self._factory))
        faulthandler.dump_traceback_later(self._timeout, exit=True)

    def stopTest(self, test: unittest.TestCase) -> None:
        from reactor.aio._private.policy import set_policy

        faulthandler.cancel_dump_traceback_later()
        set_policy(self._saved_policy)
        super().stopTest(test)
        current, self._current = self._current, None
        if current is None:
            return
        record = {"id": current["id"], "outcome": current["outcome"],
                  "ours": self._factory.made > current["made"],
                  "seconds": round(time.monotonic() - current["start"], 3)}
        after = _process_signals()
        if after != self._signals_before:
            # A loop left a signal handler or the wake-up fd behind: the
            # next test that relies on SIGINT (asyncio.Runner) would hang.
            record["leaked"] = f"{self._signals_before} -> {after}"
        for key in ("reason", "detail"):
            if key in current:
                record[key] = current[key]
        self._write(record)

    def _set(self, outcome: str, detail: str | None = None, reason: str | None = None) -> None:
        current = self._current
        if current is None:
            return
        # the worst outcome of a test and its subtests stands
        if current["outcome"] in FAILED and outcome not in FAILED:
            return
        current["outcome"] = outcome
        if detail is not None:
            current["detail"] = detail[-4000:]
        if reason is not None:
            current["reason"] = reason

    def _fixture_error(self, test: Any, err: Any) -> None:
        # setUpClass/setUpModule failures arrive with an _ErrorHolder
        self._write({"id": str(test), "outcome": "error", "ours": False, "seconds": 0.0,
                     "detail": self._exc_info_to_string(err, test)[-4000:]})  # type: ignore[attr-defined]

    def addError(self, test: Any, err: Any) -> None:
        if self._current is None or not isinstance(test, unittest.TestCase):
            self._fixture_error(test, err)
            return
        self._set("error", self._exc_info_to_string(err, test))  # type: ignore[attr-defined]

    def addFailure(self, test: Any, err: Any) -> None:
        self._set("failed", self._exc_info_to_string(err, test))  # type: ignore[attr-defined]

    def addSkip(self, test: Any, reason: str) -> None:
        if self._current is None:
            self._write({"id": str(test), "outcome": "skipped", "reason": reason, "ours": False, "seconds": 0.0})
            return
        self._set("skipped", reason=reason)

    def addExpectedFailure(self, test: Any, err: Any) -> None:
        self._set("xfail")

    def addUnexpectedSuccess(self, test: Any) -> None:
        self._set("xpass")

    def addSubTest(self, test: Any, subtest: Any, err: Any) -> None:
        if err is not None:
            failed = issubclass(err[0], test.failureException)
            self._set("failed" if failed else "error",
                      f"{subtest}: " + self._exc_info_to_string(err, test))  # type: ignore[attr-defined]


def child_main(args: argparse.Namespace) -> int:
    import signal

    # A child of a background job starts with SIGINT ignored, and
    # asyncio.Runner only takes SIGINT over Python's default handler: the
    # tests that interrupt a Runner would wait forever. regrtest's children
    # start with the default; so do these.
    signal.signal(signal.SIGINT, signal.default_int_handler)
    config = RunConfig(args.loop, args.backend, args.native, tuple(filter(None, args.modules.split(","))))
    factory = LoopFactory(config)
    only = set(Path(args.only).read_text().split()) if args.only else None
    collected = collect(config, factory, args.k or None, only)
    done: set[str] = set()
    results_path = Path(args.results)
    if results_path.exists():
        for line in results_path.read_text().splitlines():
            record = json.loads(line)
            done.add(record.get("start") or record["id"])
    mine = collected.tests
    known: dict[str, str] = {}
    if config.loop == "reactor":
        from .known import known_differences

        known = known_differences()
    todo = []
    for test in mine:
        if test.id() in done:
            continue
        reason = _known_reason(test.id(), known)
        if reason is not None:
            _skip_known(test, reason)
        todo.append(test)
    with results_path.open("a") as out:
        if not done:
            for test_id, why in collected.excluded.items():
                out.write(json.dumps({"id": test_id, "outcome": "excluded", "reason": why}) + "\n")
            for module, why in collected.module_skips.items():
                out.write(json.dumps({"id": f"test.test_asyncio.{module}", "outcome": "module-skipped",
                                      "reason": why}) + "\n")
        result = RecordingResult(out, factory, args.timeout)
        unittest.TestSuite(todo).run(result)
    return 0


def _known_reason(test_id: str, known: dict[str, str]) -> str | None:
    for pattern, reason in known.items():
        if fnmatch.fnmatchcase(test_id, pattern):
            return "known: " + reason
    return None


# --------------------------------------------------------------- the parent


@dataclass
class Results:
    config: RunConfig
    #: test id -> its record (the last one: a rerun replaces it)
    records: dict[str, dict[str, Any]]
    seconds: float
    logs: list[Path]

    def outcome(self, test_id: str) -> str | None:
        record = self.records.get(test_id)
        return None if record is None else record["outcome"]

    def counts(self, ids: Iterable[str] | None = None) -> Counter[str]:
        wanted = self.records if ids is None else {i: self.records[i] for i in ids if i in self.records}
        return Counter(record["outcome"] for record in wanted.values())


#: the modules that take longest, started first so that the workers end together
SLOW_FIRST = ("test_events", "test_ssl", "test_sendfile", "test_subprocess", "test_sock_lowlevel", "test_tasks",
              "test_streams", "test_base_events", "test_sslproto", "test_unix_events")


def run(config: RunConfig, *, workers: int = 3, timeout: float = DEFAULT_TIMEOUT, workdir: Path,
        pattern: str | None = None, only: Iterable[str] | None = None, python: str = sys.executable,
        deadline: float | None = None) -> Results:
    """Run ``config``: each module of the package in a child process of its
    own (as CPython's regrtest does with -j: a module's monkeypatching and
    leftovers reach no other module), ``workers`` children at a time; only
    the tests ``only`` names, if given. A child that hangs or crashes is
    started again past that test; the whole run is bounded by ``deadline``
    (time.monotonic) if given."""
    start = time.monotonic()
    workdir.mkdir(parents=True, exist_ok=True)
    slug = config.label.replace(" ", "-")
    modules = package_modules(config.modules)
    if only is not None:
        wanted = {test_id.split(".")[2] for test_id in only if test_id.startswith("test.test_asyncio.")}
        modules = [module for module in modules if module in wanted]
    modules.sort(key=lambda m: (SLOW_FIRST.index(m) if m in SLOW_FIRST else len(SLOW_FIRST), m))
    paths = {module: workdir / f"{slug}.{module}.jsonl" for module in modules}
    logs = {module: workdir / f"{slug}.{module}.log" for module in modules}
    for path in (*paths.values(), *logs.values()):
        path.unlink(missing_ok=True)
    only_file = None
    if only is not None:
        only_file = workdir / f"{slug}.only"
        only_file.write_text("\n".join(sorted(only)) + "\n")
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")])),
               PYTHONFAULTHANDLER="1")
    env.pop("REACTOR_BACKEND", None)

    def launch(module: str) -> subprocess.Popen[bytes]:
        argv = [python, "-X", "faulthandler", "-W", "default", "-m", "tests.aio.cpython_suite", "child",
                "--loop", config.loop, "--backend", config.backend, "--native", "1" if config.native else "0",
                "--modules", module, "--results", str(paths[module]), "--timeout", str(timeout)]
        if pattern:
            argv += ["-k", pattern]
        if only_file is not None:
            argv += ["--only", str(only_file)]
        with logs[module].open("ab") as log:
            # in the work directory: CPython's tests leave @test_<pid>_tmp
            # files and folders in theirs when a child is ended mid-test
            return subprocess.Popen(argv, cwd=workdir, env=env, stdin=subprocess.DEVNULL, stdout=log,
                                    stderr=subprocess.STDOUT)

    queue = list(reversed(modules))  # popped from the end: slowest first
    running: dict[str, subprocess.Popen[bytes]] = {}
    restarts = Counter[str]()
    while queue or running:
        while queue and len(running) < workers:
            module = queue.pop()
            running[module] = launch(module)
        for module, process in list(running.items()):
            code = process.poll()
            if code is None:
                if deadline is not None and time.monotonic() >= deadline:
                    process.kill()
                    process.wait()
                    _close_dangling(paths[module], "hung", "the run's deadline passed")
                    del running[module]
                    queue.clear()
                continue
            del running[module]
            if _close_dangling(paths[module], "hung" if code == 1 else "crashed",
                               f"the child ended with status {code} during this test (see {logs[module].name})"):
                restarts[module] += 1
                if restarts[module] <= 20:
                    running[module] = launch(module)
        time.sleep(0.05)
    records: dict[str, dict[str, Any]] = {}
    for path in paths.values():
        if path.exists():
            for line in path.read_text().splitlines():
                record = json.loads(line)
                if "outcome" in record:
                    records[record["id"]] = record
    return Results(config, records, time.monotonic() - start, list(logs.values()))


def _close_dangling(path: Path, outcome: str, detail: str) -> bool:
    """If the child's last started test has no outcome, record ``outcome``
    for it; True if it did (the child should be restarted past it)."""
    if not path.exists():
        return False
    started: dict[str, bool] = {}
    for line in path.read_text().splitlines():
        record = json.loads(line)
        if "start" in record:
            started[record["start"]] = False
        elif record["id"] in started:
            started[record["id"]] = True
    dangling = [test_id for test_id, finished in started.items() if not finished]
    if not dangling:
        return False
    with path.open("a") as out:
        for test_id in dangling:
            out.write(json.dumps({"id": test_id, "outcome": outcome, "ours": True, "detail": detail}) + "\n")
    return True


# --------------------------------------------------------------- comparing


#: how many tests that fail on both loops the summary names
BOTH_FAIL_SHOWN = 5


@dataclass
class Comparison:
    """reactor.aio against stock asyncio, test by test."""

    reactor: Results
    stock: Results
    #: passed on stock, failed on reactor.aio (after the rerun)
    regressions: dict[str, str] = field(default_factory=dict)
    #: failed on reactor.aio once, passed on the rerun
    flaky: list[str] = field(default_factory=list)
    #: failed on reactor.aio and on stock asyncio with the same selector
    both_fail: list[str] = field(default_factory=list)

    def summary(self) -> list[str]:
        def line(results: Results) -> str:
            counts = results.counts()
            ours = sum(1 for r in results.records.values() if r.get("ours") and r["outcome"] in PASSED)
            ran = {k: v for k, v in counts.items() if k not in ("excluded", "module-skipped")}
            failed = sum(v for k, v in ran.items() if k in FAILED)
            passed = sum(v for k, v in ran.items() if k in PASSED)
            known = sum(1 for r in results.records.values()
                        if r["outcome"] == "skipped" and str(r.get("reason", "")).startswith("known: "))
            skipped = ran.get("skipped", 0)
            return (f"{passed} passed ({ours} on its loop), {failed} failed, {skipped} skipped"
                    + (f" ({known} known differences)" if known else "")
                    + f" in {results.seconds:.0f} s")

        label = self.reactor.config.label
        scope = "mixin modules" if self.reactor.config.modules else "whole package"
        return ([f"test.test_asyncio ({scope}) [{label}]: {line(self.reactor)}",
                f"test.test_asyncio ({scope}) [{self.stock.config.label}]: {line(self.stock)}",
                f"  reactor-only failures: {len(self.regressions)}; failed on both: {len(self.both_fail)}; "
                f"passed on a rerun: {len(self.flaky)}"]
                + [f"  failed on both: {test_id}" for test_id in self.both_fail[:BOTH_FAIL_SHOWN]])


def compare(reactor_results: Results, stock_results: Results, *, workdir: Path, timeout: float = DEFAULT_TIMEOUT,
            python: str = sys.executable) -> Comparison:
    """Compare; tests that failed on reactor.aio but not on stock run again
    (in one child), then those that failed again run on stock asyncio with
    the same selector: a regression fails on reactor.aio twice and passes
    on stock asyncio."""
    comparison = Comparison(reactor_results, stock_results)
    comparison.both_fail += sorted(test_id for test_id, record in reactor_results.records.items()
                                   if record["outcome"] in FAILED and stock_results.outcome(test_id) in FAILED)
    suspects = {test_id for test_id, record in reactor_results.records.items()
                if record["outcome"] in FAILED and stock_results.outcome(test_id) not in FAILED}
    if not suspects:
        return comparison
    config = reactor_results.config
    again = run(config, workers=2, timeout=timeout, workdir=workdir / "rerun", only=suspects, python=python)
    still = set()
    for test_id in sorted(suspects):
        if again.outcome(test_id) in FAILED or again.outcome(test_id) is None:
            still.add(test_id)
        else:
            comparison.flaky.append(test_id)
    if still:
        stock_config = RunConfig("stock", config.backend, True, config.modules)
        stock_again = run(stock_config, workers=2, timeout=timeout, workdir=workdir / "rerun", only=still,
                          python=python)
        for test_id in sorted(still):
            if stock_again.outcome(test_id) in FAILED:
                comparison.both_fail.append(test_id)
            else:
                record = again.records.get(test_id) or reactor_results.records[test_id]
                comparison.regressions[test_id] = record.get("detail", "")
    return comparison


# --------------------------------------------------------------- command line


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tests.aio.cpython_suite", description=__doc__.split("\n\n")[0])
    sub = parser.add_subparsers(dest="command")
    child = sub.add_parser("child")
    for p in (parser, child):
        p.add_argument("--loop", choices=("reactor", "stock"), default="reactor")
        p.add_argument("--backend", choices=tuple(_SELECTOR_CLASSES), default="epoll")
        p.add_argument("--native", type=int, default=1)
        p.add_argument("--modules", default="")
        p.add_argument("-k", default="")
        p.add_argument("--timeout", type=float, default=DEFAULT_TIMEOUT)
    child.add_argument("--results", required=True)
    child.add_argument("--only", default="", help="a file of test ids, one a line")
    parser.add_argument("--workers", type=int, default=3)
    parser.add_argument("--compare", action="store_true", help="also run stock asyncio and compare")
    parser.add_argument("--json", default="")
    args = parser.parse_args(argv)
    if args.command == "child":
        args.native = bool(args.native)
        return child_main(args)
    config = RunConfig(args.loop, args.backend, bool(args.native), tuple(filter(None, args.modules.split(","))))
    with tempfile.TemporaryDirectory(prefix="cpython-suite-") as tmp:
        results = run(config, workers=args.workers, timeout=args.timeout, workdir=Path(tmp), pattern=args.k or None)
        failures = {i: r for i, r in results.records.items() if r["outcome"] in FAILED}
        for test_id, record in sorted(failures.items()):
            print(f"--- {record['outcome']}: {test_id}\n{record.get('detail', '')}")
        print(f"[{config.label}] {dict(results.counts())} in {results.seconds:.0f} s")
        if args.compare and config.loop == "reactor":
            stock = run(RunConfig("stock", config.backend, True, config.modules), workers=args.workers,
                        timeout=args.timeout, workdir=Path(tmp), pattern=args.k or None)
            comparison = compare(results, stock, workdir=Path(tmp), timeout=args.timeout)
            print("\n".join(comparison.summary()))
            for test_id in sorted(comparison.regressions):
                print(f"  reactor only: {test_id}")
        if args.json:
            Path(args.json).write_text(json.dumps({"config": config.label, "records": results.records}, indent=1))
    return 0


if __name__ == "__main__":
    try:
        sys.exit(main())
    except KeyboardInterrupt:
        traceback.print_exc()
        sys.exit(130)
