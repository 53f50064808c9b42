"""The asyncio conformance counts: at the end of the session, one line per
backend/accept-path combo for the tests of ``test_conformance.py``, e.g.

    asyncio conformance [epoll native]: 205 passed, 3 failed, 1 skipped (internals)

and a total. A test counts once: failed if any of its phases failed, else
skipped if it was skipped, else passed. "internals" are the skips of
``conformance.SKIPS``; CPython's own skips (a missing feature, a platform)
are counted apart as "skipped (other)" when there are any."""

from __future__ import annotations

import gc
import os
import traceback
from collections.abc import Generator
from dataclasses import dataclass, field
from types import TracebackType

import pytest

from . import anyio_suite
from .conformance import INTERNALS

_MODULE = os.path.join("tests", "aio", "test_conformance.py")


@dataclass
class _Tally:
    combos: dict[str, str | None] = field(default_factory=dict)  # label -> why not run (None: it ran)
    nodes: dict[str, str] = field(default_factory=dict)  # nodeid -> combo label
    outcome: dict[str, str] = field(default_factory=dict)  # nodeid -> passed/failed/internals/other


_TALLY = _Tally()  # one per session: pytest_configure renews it
_RANK = {"passed": 0, "other": 1, "internals": 1, "failed": 2}


def pytest_configure(config: pytest.Config) -> None:
    global _TALLY
    _TALLY = _Tally()


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    tally = _TALLY
    for item in items:
        combo = getattr(getattr(item, "cls", None), "conformance_combo", None)
        if combo is None or not str(item.path).endswith(_MODULE):
            continue
        tally.nodes[item.nodeid] = combo.label
        unavailable = getattr(item.cls, "conformance_unavailable", None)
        if tally.combos.get(combo.label) is None:
            tally.combos[combo.label] = unavailable


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Generator[None, object, object]:
    report = yield
    # A failed test's traceback keeps its frames, so its loop, transports and
    # sockets, alive (pytest keeps the ExceptionInfo): they would be collected
    # during a later test, and their ResourceWarning (an error here) counted
    # against that one. The report is written by now: free them and collect,
    # so that what leaked shows at this test's teardown. (A unittest test's
    # setUp and tearDown run in its call phase: its loop is closed by now.)
    if call.excinfo is not None and item.nodeid in _TALLY.nodes and not item.config.getoption("usepdb", False):
        _free_frames(call.excinfo.tb)
        gc.collect()
    return report


def _free_frames(tb: TracebackType | None) -> None:
    traceback.clear_frames(tb)
    # Formatting the report read the frames' f_locals, a dict snapshot that
    # frame.clear() leaves alone; reading it again re-syncs it with the now
    # empty locals, which drops the snapshot's references.
    while tb is not None:
        snapshot = tb.tb_frame.f_locals
        del snapshot
        tb = tb.tb_next


def _outcome(report: pytest.TestReport) -> str | None:
    if report.failed:
        return "failed"
    if report.skipped:
        reason = report.longrepr[2] if isinstance(report.longrepr, tuple) else str(report.longrepr)
        return "internals" if INTERNALS in reason else "other"
    if report.when == "call":
        return "passed"
    return None


@pytest.hookimpl(trylast=True)
def pytest_runtest_logreport(report: pytest.TestReport) -> None:
    tally = _TALLY
    if report.nodeid not in tally.nodes:
        return
    outcome = _outcome(report)
    if outcome is None:
        return
    before = tally.outcome.get(report.nodeid)
    if before is None or _RANK[outcome] > _RANK[before]:
        tally.outcome[report.nodeid] = outcome


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter, config: pytest.Config) -> None:
    if anyio_suite.SUMMARY:
        terminalreporter.write_sep("-", "anyio's test suite, reactor.aio beside stock asyncio (test_anyio_suite.py)")
        for line in anyio_suite.SUMMARY:
            terminalreporter.write_line(line)
    tally = _TALLY
    if not tally.outcome and not tally.combos:
        return
    totals = dict.fromkeys(("passed", "failed", "internals", "other"), 0)
    lines = []
    for label, unavailable in tally.combos.items():
        counts = dict.fromkeys(totals, 0)
        for nodeid, outcome in tally.outcome.items():
            if tally.nodes[nodeid] == label:
                counts[outcome] += 1
        if unavailable and not counts["passed"] and not counts["failed"]:
            lines.append(f"asyncio conformance [{label}]: not run ({unavailable})")
            continue
        for key in totals:
            totals[key] += counts[key]
        lines.append(f"asyncio conformance [{label}]: {_counts(counts)}")
    lines.append(f"asyncio conformance [total]: {_counts(totals)}")
    terminalreporter.write_sep("-", "asyncio conformance (CPython's test.test_asyncio mixins)")
    for line in lines:
        terminalreporter.write_line(line)


def _counts(c: dict[str, int]) -> str:
    text = f"{c['passed']} passed, {c['failed']} failed, {c['internals']} skipped (internals)"
    if c["other"]:
        text += f", {c['other']} skipped (other)"
    return text
