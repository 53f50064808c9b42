"""anyio tests that pass on stock asyncio and may fail on reactor.aio, each with why.

Both tables map an ``fnmatch`` glob over the test's stock node id (as anyio's
suite names it on stock asyncio: ``tests/test_sockets.py::TestTCPStream::
test_x[asyncio-ipv4]``) to the reason. One file for every interpreter and
backend: ``anyio_suite.py`` applies it to each, and prints the entries that
no longer match a failure.

- :data:`KNOWN`: the test reads an asyncio internal that reactor.aio does
  not have; the reason names it.
- :data:`FLAKY`: the test's outcome depends on what earlier tests left
  behind, on any loop; the reason says what, and where it was seen failing
  on stock asyncio.

A test that fails on reactor.aio for any other reason is a bug in
reactor.aio: it is not listed here.
"""

from __future__ import annotations

KNOWN: dict[str, str] = {}

FLAKY: dict[str, str] = {
    "tests/test_to_thread.py::TestBlockingPortalProvider::test_single_thread[[]asyncio*]": (
        "asserts threading.active_count() is the same before and after; an idle 'AnyIO worker thread' "
        "that an earlier test left (anyio's workers idle out after 10 s, or leave when their loop's root "
        "task ends) and that exits meanwhile lowers it. Seen failing on stock asyncio too in this session "
        "(3.11: 'assert 3 == 4'), the worker left by test_asyncio_cancel_native_task on either loop"),
}
