"""anyio's own test suite on reactor.aio, beside stock asyncio (``anyio_suite.py``).

``test_anyio_suite`` runs the suite of the pinned anyio (the ``anyio-suite``
extra) in one child pytest session on stock asyncio and on reactor.aio
(every backend on 3.11, epoll elsewhere; ``REACTOR_ANYIO_BACKENDS`` picks),
and fails when a test passes on stock asyncio and not on reactor.aio unless
``known.py`` lists it, when the reactor loops did not join anyio's
parametrization (fewer tests than stock, or the factory never called), or
when the session stopped early (a crash, a hang past the budget). The counts
are printed at the end of the session (conftest.py). Skipped when anyio or
its test dependencies are not installed (``pip install -e '.[anyio-suite]'``)
or its sdist cannot be downloaded.

The other tests check the comparison itself on made-up outcomes, so that a
harness that stopped seeing regressions would fail here.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from . import anyio_suite
from .anyio_suite import Case, Run

BUDGET = float(os.environ.get("REACTOR_ANYIO_BUDGET", anyio_suite.DEFAULT_BUDGET))


@pytest.mark.slow
@pytest.mark.timeout(BUDGET + 300)  # the session stops itself at BUDGET; the fetch and one test past it
def test_anyio_suite() -> None:
    try:
        tree = anyio_suite.fetch(anyio_suite.installed_version())
    except anyio_suite.AnyioSuiteUnavailable as exc:
        pytest.skip(str(exc))
    eager = anyio_suite.eager_default()
    result = anyio_suite.run(tree, anyio_suite.default_backends(), eager=eager, budget=BUDGET)
    comparisons = anyio_suite.compare(result)
    anyio_suite.SUMMARY[:] = anyio_suite.report(result, comparisons)
    found = anyio_suite.problems(result, comparisons, eager)
    assert not found, "\n".join(found + anyio_suite.SUMMARY + [f"log: {result.log}"])


# ------------------------------------------------- the comparison, made up

def _run(outcomes: dict[str, tuple[str, str]], backends: tuple[str, ...] = ("epoll",)) -> Run:
    """A run whose stock twin of test ``name`` ended as ``outcomes[name][0]``
    and whose reactor one (on each backend) as ``outcomes[name][1]``."""
    tests = {}
    for name, (stock, mine) in outcomes.items():
        key = f"tests/test_x.py::{name}[asyncio]"
        tests[key] = Case(key, "stock", key, stock)
        for backend in backends:
            nodeid = f"tests/test_x.py::{name}[asyncio+reactor_{backend}]"
            tests[nodeid] = Case(nodeid, backend, key, mine)
    return Run(list(backends), tests, 0, 1.0, 0, Path("log"), loops_made=dict.fromkeys(backends, 1))


def test_a_test_passing_on_stock_only_is_a_regression_unless_listed() -> None:
    result = _run({"test_a": ("passed", "failed"), "test_b": ("passed", "skipped"),
                   "test_c": ("passed", "not run"), "test_d": ("passed", "failed"),
                   "test_e": ("passed", "passed"), "test_f": ("failed", "failed"),
                   "test_g": ("failed", "passed"), "test_h": ("passed", "failed")})
    (c,) = anyio_suite.compare(result, known={"tests/test_x.py::test_d[[]asyncio]": "reads loop._x"},
                               flaky={"tests/test_x.py::test_h[asyncio]": "counts threads"})
    assert [t.key for _, t in c.regressions] == [f"tests/test_x.py::{n}[asyncio]" for n in ("test_a", "test_b",
                                                                                            "test_c")]
    assert [(t.key, why) for t, why in c.known] == [("tests/test_x.py::test_d[asyncio]", "reads loop._x")]
    assert [why for _, why in c.flaky] == ["counts threads"]
    assert [t.key for t in c.better] == ["tests/test_x.py::test_g[asyncio]"]
    assert [t.key for t in c.both] == ["tests/test_x.py::test_f[asyncio]"]
    assert "  [epoll] failed on both loops: tests/test_x.py::test_f[asyncio]: " in anyio_suite.report(result, [c])
    assert (c.reactor["passed"], c.reactor["failed"], c.stock["passed"]) == (2, 4, 6)
    assert c.line() == ("anyio [epoll] reactor.aio: 2 passed, 4 failed, 1 skipped, 1 not run; "
                        "stock asyncio: 6 passed, 2 failed, 0 skipped")
    assert anyio_suite.problems(result, [c]) == [
        "[epoll] 3 tests pass on stock asyncio and not on reactor.aio, none listed in known.py "
        "(the report below)"]


def test_each_backend_is_compared_with_the_one_stock_run() -> None:
    result = _run({"test_a": ("passed", "failed")}, backends=("epoll", "poll", "select"))
    assert [(c.label, len(c.regressions)) for c in anyio_suite.compare(result, known={}, flaky={})] == [
        ("epoll", 1), ("poll", 1), ("select", 1)]


def test_a_reactor_loop_missing_from_the_run_is_a_problem() -> None:
    result = _run({"test_a": ("passed", "passed")})
    result.backends.append("poll")  # asked for, never joined the parametrization
    assert anyio_suite.problems(result, anyio_suite.compare(result, known={}, flaky={})) == [
        "[poll] 0 tests, stock asyncio 1: the reactor.aio loop did not join anyio's parametrization "
        "(anyio_session.py)"]
    result = _run({"test_a": ("passed", "passed")})
    result.loops_made.clear()  # the twins ran, on some other loop
    assert anyio_suite.problems(result, []) == ["[epoll] anyio never called the reactor.aio loop factory"]


def test_a_session_stopped_early_is_a_problem() -> None:
    result = _run({"test_a": ("passed", "passed")})
    result.stopped = "anyio suite: time budget of 600 s spent"
    assert anyio_suite.problems(result, []) == [f"the session stopped early: {result.stopped}"]


def test_a_twin_is_keyed_by_its_stock_node_id() -> None:
    """The reactor twin's param id is put back to the stock one wherever it
    stands among the ids, and ids with dashes of their own survive."""
    from types import SimpleNamespace

    from .anyio_session import _stock_key

    def item(ids: str) -> SimpleNamespace:
        return SimpleNamespace(nodeid=f"tests/test_x.py::TestY::test_z[{ids}]", callspec=SimpleNamespace(id=ids))

    assert _stock_key(item("ipv6-asyncio+reactor_poll-0"), "asyncio+reactor_poll", "asyncio") == \
        "tests/test_x.py::TestY::test_z[ipv6-asyncio-0]"
    assert _stock_key(item("asyncio+eager+reactor_epoll--1"), "asyncio+eager+reactor_epoll", "asyncio+eager") == \
        "tests/test_x.py::TestY::test_z[asyncio+eager--1]"
