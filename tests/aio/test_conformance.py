"""CPython's own asyncio test suite on reactor.aio, beside stock asyncio.

``test.test_asyncio`` from the interpreter's ``test`` package is bound to
``reactor.aio.new_event_loop(backend=..., native=...)`` by
``cpython_suite`` (how: its module docs) and run in child processes; the
same package bound to asyncio's own ``SelectorEventLoop`` is the oracle.
Each test here is one run:

- ``package-<backend>-<path>``: the whole package;
- ``mixins-<backend>-<path>``: the modules of CPython's loop mixins
  (test_events, test_sock_lowlevel, test_sendfile, test_server,
  test_buffered_proto, test_streams, test_sslproto, test_ssl), which CPython
  binds per selector, for the combos the whole package is not run on.

A run fails if a test that passes on stock asyncio fails on reactor.aio
twice (a second time in a fresh child) and passes on stock asyncio with the
same selector in a fresh child too, unless ``known.py`` lists it with the
asyncio internal it reads. Stock asyncio runs the same tests on the same
backend beside each run; the counts of both are printed at the end of the
session (conftest.py).

``REACTOR_CPYTHON_RUNS`` picks the runs, e.g. ``package:epoll-native,mixins:poll-pure``;
by default the whole package on every backend (C accept path) and the
mixins on the pure accept path. Where the ``test`` package is missing
(some distributions split it out), everything here skips.
"""

from __future__ import annotations

import os
import threading
import unittest
from pathlib import Path

import pytest

import reactor

from . import cpython_suite
from .conftest import record_summary
from .cpython_suite import RunConfig

try:
    import test.test_asyncio  # noqa: F401
except (ImportError, unittest.SkipTest) as exc:
    pytest.skip(f"CPython's test.test_asyncio package is not importable here ({type(exc).__name__}: {exc}); "
                "install the interpreter's test package to run the asyncio conformance suite",
                allow_module_level=True)

BACKENDS = [name for name in ("select", "poll", "epoll") if name in reactor.available_backends()]
DEFAULT_RUNS = ([f"package:{backend}-native" for backend in BACKENDS]
                + [f"mixins:{backend}-pure" for backend in BACKENDS])


def _runs(value: str) -> list[tuple[str, RunConfig]]:
    runs = []
    for item in filter(None, (part.strip() for part in value.split(","))):
        scope, _, combo = item.partition(":")
        backend, _, path = combo.partition("-")
        if scope not in ("package", "mixins") or backend not in ("select", "poll", "epoll") \
                or path not in ("native", "pure"):
            raise ValueError(f"REACTOR_CPYTHON_RUNS: {item!r} is not <package|mixins>:<backend>-<native|pure>")
        modules = cpython_suite.MIXIN_MODULES if scope == "mixins" else ()
        runs.append((item.replace(":", "-"), RunConfig("reactor", backend, path == "native", modules)))
    return runs


RUNS = _runs(os.environ.get("REACTOR_CPYTHON_RUNS") or ",".join(DEFAULT_RUNS))

pytestmark = [
    # A run is minutes of CPython's tests in child processes, each test
    # bounded by cpython_suite.DEFAULT_TIMEOUT; this bounds the whole run.
    pytest.mark.timeout(1800),
    pytest.mark.slow,
]


class _StockRun:
    """The same run on stock asyncio (``asyncio.SelectorEventLoop`` with the
    backend's selector), in a thread beside the reactor.aio run: the suite
    mostly waits. Runs of the mixin modules reuse the whole package's where
    it ran on the same backend."""

    def __init__(self, config: RunConfig, workdir: Path, package: _StockRun | None = None) -> None:
        self.config = config
        self.results: cpython_suite.Results | None = None
        self.error: BaseException | None = None
        self._package = package
        self._thread = threading.Thread(target=self._run, args=(workdir,), name=f"stock {config.label}",
                                        daemon=True)
        self._thread.start()

    def _run(self, workdir: Path) -> None:
        try:
            if self._package is not None:
                whole = self._package.get()
                modules = {f"test.test_asyncio.{module}." for module in self.config.modules}
                records = {test_id: record for test_id, record in whole.records.items()
                           if any(test_id.startswith(prefix) for prefix in modules)}
                self.results = cpython_suite.Results(self.config, records, whole.seconds, whole.logs)
            else:
                self.results = cpython_suite.run(self.config, workers=2, workdir=workdir)
        except BaseException as exc:  # handed to the test that waits for it
            self.error = exc

    def get(self) -> cpython_suite.Results:
        self._thread.join()
        if self.error is not None:
            raise self.error
        assert self.results is not None
        return self.results


_STOCK: dict[tuple[str, tuple[str, ...]], _StockRun] = {}


def stock_run(config: RunConfig, tmp_path_factory: pytest.TempPathFactory) -> _StockRun:
    """Stock asyncio's run for ``config``'s backend and modules, started once."""
    key = (config.backend, config.modules)
    if key not in _STOCK:
        stock = RunConfig("stock", config.backend, True, config.modules)
        package = _STOCK.get((config.backend, ())) if config.modules else None
        _STOCK[key] = _StockRun(stock, tmp_path_factory.mktemp("cpython-" + stock.label.replace(" ", "-")), package)
    return _STOCK[key]


@pytest.mark.parametrize("config", [config for _, config in RUNS], ids=[name for name, _ in RUNS])
def test_cpython_asyncio(config: RunConfig, tmp_path_factory: pytest.TempPathFactory) -> None:
    if config.backend not in BACKENDS:
        pytest.skip(f"backend {config.backend!r} is not available here")
    if config.native and not reactor.native_available():
        pytest.skip(f"the C accelerator is not available: {reactor.native_error()}")
    stock = stock_run(config, tmp_path_factory)
    workdir = tmp_path_factory.mktemp("cpython-" + config.label.replace(" ", "-"))
    results = cpython_suite.run(config, workers=3, workdir=workdir)
    comparison = cpython_suite.compare(results, stock.get(), workdir=workdir)
    record_summary(comparison.summary())
    if comparison.regressions:
        details = "\n\n".join(f"--- {test_id}\n{detail}" for test_id, detail in sorted(comparison.regressions.items()))
        pytest.fail(f"{len(comparison.regressions)} tests of test.test_asyncio pass on stock asyncio and fail on "
                    f"reactor.aio [{config.label}] (each failed twice, and passed on stock asyncio with the same "
                    f"selector):\n{details}", pytrace=False)
