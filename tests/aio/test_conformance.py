"""CPython's own asyncio event loop tests, run on reactor.aio.

The mixins CPython binds to its Select/Poll/EPoll loops (test_events,
test_sock_lowlevel, test_sendfile, test_server, test_buffered_proto,
test_streams, test_sslproto, test_ssl: see ``conformance.GROUPS``) are bound
here to ``reactor.aio.new_event_loop(backend=..., native=...)``, one class
per group and combo: ``TestEventsEpollNative``, ``TestSockPollNative``, ...

Combos: every backend with the C accept path and with the pure-Python one
(``DEFAULT_COMBOS``); the native classes skip where the accelerator is not
available. ``REACTOR_CONFORMANCE_LOOP=stock`` binds the same mixins to
``asyncio.SelectorEventLoop(selectors.XSelector())`` instead, CPython's own
binding, for comparison (``... [epoll stock]``); ``REACTOR_CONFORMANCE_COMBOS``
(e.g. ``epoll-native,epoll-pure,poll-pure``) picks other combos;
``REACTOR_CONFORMANCE_SKIPS=0`` runs the tests of ``conformance.SKIPS`` too.
conftest.py prints one count line per combo at the end of the session.

The mixins come from the interpreter's ``test`` package; where it is not
installed (some distributions split it out) everything here skips.
"""

from __future__ import annotations

import importlib.util
import os
import unittest

import pytest

import reactor

pytestmark = [
    # The slowest of these tests takes 1.5 s on stock asyncio: 30 s means a
    # hang, and bounds what a hanging loop costs CI (pyproject says 120 s).
    pytest.mark.timeout(30),
    # On 3.11 CPython's mixins run clean under the project-wide "error"; 3.12
    # deprecates the child watchers that UnixEventLoopTestsMixin installs
    # (asyncio.SafeChildWatcher, set_child_watcher), which is CPython's test
    # setup, not the loop's behaviour. Every other warning still fails.
    pytest.mark.filterwarnings(r"ignore:'asyncio\..*[Cc]hild_?[Ww]atcher' is deprecated:DeprecationWarning"),
]

try:
    import test.support  # noqa: F401
    import test.test_asyncio.utils  # noqa: F401
except (ImportError, unittest.SkipTest) as exc:
    pytest.skip(f"CPython's test.test_asyncio package is not importable here ({type(exc).__name__}: {exc}); "
                "install the interpreter's test package to run the asyncio conformance suite",
                allow_module_level=True)

from .conformance import SKIPS, Combo, build_classes, reactor_factory, stock_factory  # noqa: E402

BACKENDS = [name for name in ("select", "poll", "epoll") if name in reactor.available_backends()]

#: Every backend, with the C accept path and with the pure-Python one, as the
#: issue asks ("once per backend and native on/off"). Each combo costs about
#: 35 s here (stock asyncio: 27 s per backend): all six keep CI's whole run
#: under ten minutes. REACTOR_CONFORMANCE_COMBOS picks fewer for a quick look.
DEFAULT_COMBOS = [Combo(b, native) for b in BACKENDS for native in (True, False)]


def _combos_from_env(value: str) -> list[Combo]:
    combos = []
    for item in value.split(","):
        backend, _, path = item.strip().partition("-")
        if backend not in ("select", "poll", "epoll") or path not in ("native", "pure"):
            raise ValueError(f"REACTOR_CONFORMANCE_COMBOS: {item!r} is not <select|poll|epoll>-<native|pure>")
        combos.append(Combo(backend, path == "native"))
    return combos


LOOP = os.environ.get("REACTOR_CONFORMANCE_LOOP", "reactor")
if LOOP == "stock":
    COMBOS = [(Combo(b, None), None) for b in BACKENDS]
    FACTORY = stock_factory
    APPLIED_SKIPS: dict[str, str] = {}
elif LOOP == "reactor":
    if importlib.util.find_spec("reactor.aio") is None:
        pytest.skip("reactor.aio does not exist yet (REACTOR_CONFORMANCE_LOOP=stock runs the harness on "
                    "asyncio's own loops)", allow_module_level=True)
    wanted = (_combos_from_env(os.environ["REACTOR_CONFORMANCE_COMBOS"])
              if os.environ.get("REACTOR_CONFORMANCE_COMBOS") else DEFAULT_COMBOS)
    COMBOS = []
    for combo in wanted:
        reason = None
        if combo.backend not in BACKENDS:
            reason = f"backend {combo.backend!r} is not available here"
        elif combo.native and not reactor.native_available():
            reason = f"the C accelerator is not available: {reactor.native_error()}"
        COMBOS.append((combo, reason))
    FACTORY = reactor_factory
    APPLIED_SKIPS = SKIPS if os.environ.get("REACTOR_CONFORMANCE_SKIPS", "1") != "0" else {}
    try:
        import reactor.aio  # noqa: F401
        IMPORT_ERROR: BaseException | None = None
    except Exception as exc:  # reported by test_reactor_aio_imports, not as a collection error
        IMPORT_ERROR = exc
        COMBOS = []

    def test_reactor_aio_imports() -> None:
        """reactor.aio exists, so it must import; while it does not, the
        conformance classes are not built and this is the one failure."""
        if IMPORT_ERROR is not None:
            raise IMPORT_ERROR
else:
    raise ValueError(f"REACTOR_CONFORMANCE_LOOP must be 'reactor' or 'stock', not {LOOP!r}")

globals().update(build_classes(COMBOS, FACTORY, __name__, APPLIED_SKIPS))
