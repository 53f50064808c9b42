"""Bind CPython's own asyncio loop test mixins to an event loop factory.

CPython tests its selector loops by mixing loop-agnostic test classes from
``test.test_asyncio`` into one ``unittest.TestCase`` per selector, each with a
``create_event_loop()`` (or ``new_loop()``) that returns that loop; see the
bottom of ``test_events.py``, ``test_sock_lowlevel.py`` and
``test_sendfile.py``. This module does the same for any loop factory: it
imports the mixins from the interpreter's ``test`` package at test time (their
code is never copied here) and builds one class per (group, combo) with
``type()``.

The classes are built by :func:`build_classes` and placed in the calling test
module, so that pytest collects them there. Nothing here is collected itself.
"""

from __future__ import annotations

import asyncio
import fnmatch
import importlib
import selectors
import unittest
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

from reactor.aio._private.policy import DefaultPolicy, get_policy, set_policy

#: the prefix of every skip reason that comes from :data:`SKIPS`; the summary
#: in conftest.py counts these as "skipped (internals)"
INTERNALS = "internals: "

#: Tests that read private internals of asyncio's selector loop (not of
#: ``BaseEventLoop``, which reactor.aio is built on) and so say nothing about
#: another loop. ``{"<group>.<test name glob>": reason}``; the reason names
#: the internal. Applied to the reactor.aio binding only: the stock binding
#: runs everything (it has those internals). Not here, on purpose:
#: ``test_utils.TestCase.close_loop`` reads ``loop._default_executor``, which
#: ``BaseEventLoop`` has; ``_sendfile_native``, ``_start_serving`` and
#: ``_stop_serving`` are ``BaseEventLoop`` hooks (``base_events.Server`` calls
#: the last two), so the tests that patch them are kept.
SKIPS: dict[str, str] = {
    # CPython skips it itself on a loop that is not a BaseSelectorEventLoop;
    # listed so that the count says why
    "events.test_internal_fds": (
        "reads loop._internal_fds, loop._ssock and loop._csock, asyncio.BaseSelectorEventLoop's "
        "self-pipe bookkeeping"
    ),
}


@dataclass(frozen=True)
class Combo:
    """One loop configuration: a backend and the accept path (``native``:
    True, False, or None for a loop without one, i.e. stock asyncio)."""

    backend: str
    native: bool | None

    @property
    def label(self) -> str:
        """``epoll native`` / ``epoll pure`` / ``epoll stock``: the summary's key."""
        if self.native is None:
            return f"{self.backend} stock"
        return f"{self.backend} {'native' if self.native else 'pure'}"

    @property
    def suffix(self) -> str:
        """``EpollNative`` / ``EpollPure`` / ``EpollStock``: the class-name tail."""
        return "".join(word.capitalize() for word in self.label.split())


@dataclass(frozen=True)
class Group:
    """One mixin group: CPython's module, the bases to mix (resolved in that
    module, in order), and the name the loop is asked for by."""

    name: str  # the class-name stem: Events -> TestEventsEpollNative
    key: str  # the skip-list prefix: "events"
    module: str  # under test.test_asyncio
    bases: tuple[str, ...]  # dotted names in that module ("test_utils.TestCase"), or "unittest.TestCase"


#: What CPython binds per selector loop on Linux, the same bases as its own
#: EPollEventLoopTests / SelectorStartServerTests / ... classes. StreamTests
#: and TestSSL are TestCases that call ``asyncio.new_event_loop()`` in setUp;
#: they get our loop through the event loop policy (see ``_Binding``).
#: BaseStartServer is bound through SelectorStartServerTests, which adds the
#: AF_UNIX twin of its one test (test_start_unix_server_1).
GROUPS: tuple[Group, ...] = (
    Group("Events", "events", "test_events",
          ("UnixEventLoopTestsMixin", "SubprocessTestsMixin", "test_utils.TestCase")),
    Group("Sock", "sock", "test_sock_lowlevel", ("BaseSockTestsMixin", "test_utils.TestCase")),
    Group("Sendfile", "sendfile", "test_sendfile", ("SendfileTestsBase", "test_utils.TestCase")),
    Group("Server", "server", "test_server", ("SelectorStartServerTests",)),
    Group("BufferedProto", "buffered_proto", "test_buffered_proto",
          ("BaseTestBufferedProtocol", "unittest.TestCase")),
    Group("Streams", "streams", "test_streams", ("StreamTests",)),
    Group("StartTLS", "start_tls", "test_sslproto", ("BaseStartTLS", "unittest.TestCase")),
    Group("SSL", "ssl", "test_ssl", ("TestSSL",)),
)


def stock_factory(combo: Combo) -> Callable[[], asyncio.AbstractEventLoop]:
    """CPython's own binding: ``asyncio.SelectorEventLoop(selectors.XSelector())``."""
    selector_class = {
        "select": selectors.SelectSelector,
        "poll": getattr(selectors, "PollSelector", None),
        "epoll": getattr(selectors, "EpollSelector", None),
    }[combo.backend]
    if selector_class is None:
        raise unittest.SkipTest(f"selectors has no {combo.backend} selector here")

    def factory() -> asyncio.AbstractEventLoop:
        return asyncio.SelectorEventLoop(selector_class())

    return factory


def reactor_factory(combo: Combo) -> Callable[[], asyncio.AbstractEventLoop]:
    """``reactor.aio.new_event_loop(backend=..., native=...)``, checked: a loop
    that ignored the request would make every result here meaningless."""
    import reactor.aio

    def factory() -> asyncio.AbstractEventLoop:
        loop = reactor.aio.new_event_loop(backend=combo.backend, native=combo.native)
        got = (getattr(loop, "backend", None), getattr(loop, "native", None))
        if got != (combo.backend, combo.native):
            loop.close()
            raise AssertionError(
                f"reactor.aio.new_event_loop(backend={combo.backend!r}, native={combo.native!r}) "
                f"made a loop with .backend={got[0]!r}, .native={got[1]!r}")
        return loop

    return factory


class _Policy(DefaultPolicy):  # type: ignore[misc]
    """The default policy (child watchers included, before 3.14) with our
    loop factory, so that ``asyncio.new_event_loop()`` inside CPython's tests
    makes our loop. (From 3.14 asyncio deprecates its policies; these are
    its unwarned names, which its own tests use too.)"""

    def __init__(self, factory: Callable[[], asyncio.AbstractEventLoop]) -> None:
        super().__init__()
        self._conformance_factory = factory

    def new_event_loop(self) -> asyncio.AbstractEventLoop:
        return self._conformance_factory()


class _Binding:
    """First in every generated class's MRO: hands out the combo's loop under
    every name CPython's mixins ask for, and checks that the test's
    ``self.loop`` is one of ours (a mixin that made its own loop would
    silently test stock asyncio)."""

    conformance_combo: Combo
    conformance_group: Group
    _conformance_factory: Callable[[], asyncio.AbstractEventLoop]  # set per class

    def _conformance_new_loop(self) -> asyncio.AbstractEventLoop:
        loop = type(self)._conformance_factory()
        self._conformance_loops.append(loop)
        return loop

    # test_events, test_sock_lowlevel, test_sendfile
    def create_event_loop(self) -> asyncio.AbstractEventLoop:
        return self._conformance_new_loop()

    # functional.FunctionalTestCaseMixin: test_server, test_buffered_proto, test_sslproto
    def new_loop(self) -> asyncio.AbstractEventLoop:
        return self._conformance_new_loop()

    def setUp(self) -> None:
        self._conformance_loops: list[asyncio.AbstractEventLoop] = []
        saved = get_policy()
        # registered first, so it runs last among the cleanups (close_loop and
        # the child-watcher reset still see our policy)
        self.addCleanup(set_policy, saved)  # type: ignore[attr-defined]
        set_policy(_Policy(self._conformance_new_loop))
        super().setUp()  # type: ignore[misc]
        loop = getattr(self, "loop", None)
        if not any(loop is ours for ours in self._conformance_loops):
            raise AssertionError(
                f"{type(self).__name__}: self.loop is {loop!r}, not a loop of the "
                f"[{self.conformance_combo.label}] factory: the binding did not take")


def _resolve(module: Any, dotted: str) -> type:
    obj: Any = module
    for part in dotted.split("."):
        obj = getattr(obj, part)
    return obj


def _unavailable(name: str, reason: str, combo: Combo, group: Group, module_name: str) -> type:
    def test_unavailable(self: unittest.TestCase) -> None:
        raise unittest.SkipTest(reason)

    return type(name, (unittest.TestCase,), {
        "__module__": module_name,
        "__qualname__": name,
        "conformance_combo": combo,
        "conformance_group": group,
        "conformance_unavailable": reason,
        "test_unavailable": test_unavailable,
    })


def skips_for(group: Group, test_names: Iterable[str], skips: dict[str, str]) -> dict[str, str]:
    """``{test name: reason}`` for the tests of ``group`` that ``skips`` names."""
    out = {}
    for test in test_names:
        for pattern, reason in skips.items():
            if fnmatch.fnmatchcase(f"{group.key}.{test}", pattern):
                out[test] = reason
                break
    return out


def build_classes(
    combos: Iterable[tuple[Combo, str | None]],
    loop_factory: Callable[[Combo], Callable[[], asyncio.AbstractEventLoop]],
    module_name: str,
    skips: dict[str, str] | None = None,
    groups: Iterable[Group] = GROUPS,
) -> dict[str, type]:
    """One ``unittest.TestCase`` per (group, combo), named
    ``Test<Group><Combo>`` and living in ``module_name``.

    ``combos`` pairs each combo with None, or with the reason the whole combo
    is unavailable (then its classes hold one skipping test).
    ``loop_factory(combo)`` returns a zero-argument callable making that
    combo's loop. ``skips`` (see :data:`SKIPS`) skips single tests, each with
    its reason prefixed by :data:`INTERNALS`.
    """
    classes: dict[str, type] = {}
    loader = unittest.TestLoader()
    combos = list(combos)
    for group in groups:
        try:
            module = importlib.import_module(f"test.test_asyncio.{group.module}")
            bases = tuple(_resolve(module, b) if not b.startswith("unittest.") else _resolve(unittest, b[9:])
                          for b in group.bases)
            module_error = None
        except (ImportError, unittest.SkipTest) as exc:
            bases = ()
            module_error = f"test.test_asyncio.{group.module} is unavailable: {type(exc).__name__}: {exc}"
        for combo, unavailable in combos:
            name = f"Test{group.name}{combo.suffix}"
            if module_error or unavailable:
                classes[name] = _unavailable(name, module_error or unavailable or "", combo, group, module_name)
                continue
            ns: dict[str, Any] = {
                "__module__": module_name,
                "__qualname__": name,
                "__doc__": f"CPython's {' + '.join(group.bases)} on [{combo.label}].",
                "conformance_combo": combo,
                "conformance_group": group,
            }
            probe = type("probe", (_Binding, *bases), {})
            names = loader.getTestCaseNames(probe)
            for test, reason in skips_for(group, names, skips or {}).items():
                ns[test] = unittest.skip(INTERNALS + reason)(getattr(probe, test))
            cls = type(name, (_Binding, *bases), ns)
            try:
                cls._conformance_factory = staticmethod(loop_factory(combo))
            except unittest.SkipTest as exc:
                classes[name] = _unavailable(name, str(exc), combo, group, module_name)
                continue
            classes[name] = cls
    return classes
