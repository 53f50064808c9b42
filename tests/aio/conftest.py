"""The counts of the suites other projects wrote, run on reactor.aio beside
stock asyncio, printed at the end of the session: CPython's
``test.test_asyncio`` (``test_conformance.py``: each run hands its lines to
``record_summary``), e.g.

    test.test_asyncio (whole package) [reactor epoll native]: 2101 passed (812 on its loop), 0 failed, ...
    test.test_asyncio (whole package) [stock epoll]: 2110 passed (821 on its loop), 0 failed, ...

and anyio's (``test_anyio_suite.py``: ``anyio_suite.SUMMARY``).
"""

from __future__ import annotations

import pytest

from . import anyio_suite

_LINES: list[str] = []


def record_summary(lines: list[str]) -> None:
    """Lines to print in this session's summary."""
    _LINES.extend(lines)


def pytest_configure(config: pytest.Config) -> None:
    _LINES.clear()


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter, config: pytest.Config) -> None:
    if _LINES:
        terminalreporter.write_sep("-", "asyncio conformance (CPython's test.test_asyncio, beside stock asyncio)")
        for line in _LINES:
            terminalreporter.write_line(line)
    if anyio_suite.SUMMARY:
        terminalreporter.write_sep("-", "anyio's test suite, reactor.aio beside stock asyncio (test_anyio_suite.py)")
        for line in anyio_suite.SUMMARY:
            terminalreporter.write_line(line)
