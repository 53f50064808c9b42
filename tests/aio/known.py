"""The one list of tests from other projects' suites that pass on stock
asyncio and are allowed to fail, or are not run, on reactor.aio -- each with
the asyncio internal it reads, or why its outcome does not depend on the
loop. A test that fails on reactor.aio for any other reason is a bug in
reactor.aio, and is not listed here.

- CPython's ``test.test_asyncio`` (``KNOWN``): one list for every
  interpreter, an entry may name the versions it is for.
  ``known_differences()`` gives ``{test id glob: reason}`` for the running
  interpreter; ``cpython_suite`` skips them on reactor.aio (the skip reason
  starts with "known: ") and runs them on stock asyncio as usual.
- anyio's suite (``ANYIO_KNOWN``, ``ANYIO_FLAKY``): ``fnmatch`` globs over
  the test's stock node id (``tests/test_sockets.py::TestTCPStream::
  test_x[asyncio-ipv4]``), for every interpreter and backend;
  ``anyio_suite`` applies them and prints the entries that no longer match
  a failure. ``ANYIO_KNOWN``: reads an asyncio internal reactor.aio does not
  have. ``ANYIO_FLAKY``: the outcome depends on what earlier tests left
  behind, on any loop (the reason says what, and where it failed on stock).
"""

from __future__ import annotations

import sys

#: (test id glob, the versions it applies to (min, max) inclusive, reason)
KNOWN: list[tuple[str, tuple[tuple[int, int], tuple[int, int]], str]] = [
    ("test.test_asyncio.test_events.*EventLoopTests.test_internal_fds", ((3, 11), (3, 99)),
     "reads loop._internal_fds, loop._ssock and loop._csock: asyncio.BaseSelectorEventLoop's self-pipe "
     "bookkeeping (CPython skips it itself on a loop that is not one)"),
    *((f"test.test_asyncio.test_unix_events.SelectorEventLoopUnixSockSendfileTests.test_sock_sendfile_{name}",
       ((3, 11), (3, 99)),
       "calls loop._sock_sendfile_native_impl or patches asyncio.unix_events.os: internals of "
       "_UnixSelectorEventLoop's sendfile (reactor.aio's is in reactor/aio/sockets.py; the rest of this "
       "class and test_sendfile run on it)")
      for name in ("not_available", "cancel1", "cancel2", "blocking_error", "os_error_first_call",
                   "os_error_next_call", "exception")),
    ("test.test_asyncio.test_ssl.TestSSL.test_remote_shutdown_receives_trailing_data_on_slow_socket",
     ((3, 13), (3, 99)),
     "reads the raw transport's _read_ready_cb and replaces its _sock with a wrapper: "
     "_SelectorSocketTransport internals (gh-115514's code path in its write()); on reactor.aio the "
     "wrapper is never installed and the test waits forever. test_remote_shutdown_receives_trailing_data, "
     "the same exchange without the wrapper, runs"),
]


def known_differences(version: tuple[int, int] | None = None) -> dict[str, str]:
    """``{glob: reason}`` for ``version`` (default: this interpreter)."""
    here = version or sys.version_info[:2]
    return {glob: reason for glob, (low, high), reason in KNOWN if low <= here <= high}


ANYIO_KNOWN: dict[str, str] = {}

ANYIO_FLAKY: dict[str, str] = {
    "tests/test_to_thread.py::TestBlockingPortalProvider::test_single_thread[[]asyncio*]": (
        "asserts threading.active_count() is the same before and after; an idle 'AnyIO worker thread' "
        "that an earlier test left (anyio's workers idle out after 10 s, or leave when their loop's root "
        "task ends) and that exits meanwhile lowers it. Seen failing on stock asyncio too "
        "(3.11: 'assert 3 == 4'), the worker left by test_asyncio_cancel_native_task on either loop"),
}
