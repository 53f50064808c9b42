"""The counts of the asyncio conformance runs (``test_conformance.py``):
each run hands its lines to ``record_summary``, and they are printed at the
end of the session, e.g.

    test.test_asyncio (whole package) [reactor epoll native]: 2101 passed (812 on its loop), 0 failed, ...
    test.test_asyncio (whole package) [stock epoll]: 2110 passed (821 on its loop), 0 failed, ...
"""

from __future__ import annotations

import pytest

_LINES: list[str] = []


def record_summary(lines: list[str]) -> None:
    """Lines to print in this session's summary."""
    _LINES.extend(lines)


def pytest_configure(config: pytest.Config) -> None:
    _LINES.clear()


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter, config: pytest.Config) -> None:
    if not _LINES:
        return
    terminalreporter.write_sep("-", "asyncio conformance (CPython's test.test_asyncio, beside stock asyncio)")
    for line in _LINES:
        terminalreporter.write_line(line)
