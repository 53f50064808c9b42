"""reactor.aio's ready queue (``reactor.aio._private.ready_queue``): ``call_soon``
and the loop's iteration keep asyncio's semantics -- each scenario runs on
stock asyncio and on reactor.aio and must give the same record -- and the
fast paths step aside where a tool has patched asyncio's ``Handle``.

Run compiled where the module was built and pure under REACTOR_NATIVE=0
(``make test-pure``): the same tests hold both."""

from __future__ import annotations

import asyncio
import contextvars
import logging
import sys
from asyncio import events
from collections.abc import Callable, Iterator
from typing import Any

import pytest

import reactor.aio
from reactor import _compiled
from reactor.aio._private import ready_queue

LOOPS = {"stock": asyncio.new_event_loop, "reactor": reactor.aio.new_event_loop}

VAR: contextvars.ContextVar[str] = contextvars.ContextVar("VAR", default="unset")


@pytest.fixture(params=sorted(LOOPS))
def new_loop(request: pytest.FixtureRequest) -> Iterator[Callable[[], asyncio.AbstractEventLoop]]:
    made: list[asyncio.AbstractEventLoop] = []

    def make() -> asyncio.AbstractEventLoop:
        made.append(LOOPS[request.param]())
        return made[-1]

    yield make
    for loop in made:
        if not loop.is_closed():
            loop.close()


def both(scenario: Callable[[asyncio.AbstractEventLoop], Any]) -> dict[str, Any]:
    """``scenario``'s record on a fresh stock loop and a fresh reactor.aio loop."""
    records = {}
    for name, factory in LOOPS.items():
        loop = factory()
        try:
            records[name] = scenario(loop)
        finally:
            loop.close()
    return records


def test_the_loop_uses_the_ready_queue_module():
    loop = reactor.aio.new_event_loop()
    try:
        assert type(loop)._run_once is ready_queue.run_once
        assert type(loop).call_soon is ready_queue.call_soon
        assert "reactor.aio._private.ready_queue" in _compiled.MODULES
    finally:
        loop.close()


# ------------------------------------------------------------ order and time

def _order(loop: asyncio.AbstractEventLoop) -> list[Any]:
    """Callbacks, the callbacks they add, timers due at once and later:
    which iteration runs each shows in the record's order."""
    seen: list[Any] = []

    def later(tag: str) -> None:
        seen.append(tag)
        if tag == "t2":
            loop.stop()

    def first(n: int) -> None:
        seen.append(("first", n))
        if n < 3:
            loop.call_soon(first, n + 1)  # the next iteration, after the others
        loop.call_soon(seen.append, ("added by", n))

    loop.call_soon(first, 0)
    loop.call_soon(seen.append, "second")
    loop.call_later(0, later, "t0")
    loop.call_later(0.01, later, "t1")
    loop.call_later(0.02, later, "t2")
    cancelled = loop.call_soon(seen.append, "cancelled")
    cancelled.cancel()
    loop.run_forever()
    return seen


def test_callbacks_run_in_asyncio_order_iteration_by_iteration():
    records = both(_order)
    assert records["reactor"] == records["stock"]
    assert records["stock"][:3] == [("first", 0), "second", "t0"]


def _many_cancelled_timers(loop: asyncio.AbstractEventLoop) -> tuple[int, int, int]:
    """More than 100 timers, most cancelled: asyncio rebuilds its heap
    without them at the next iteration (its thresholds)."""
    timers = [loop.call_later(3600 + i, print) for i in range(300)]
    for timer in timers[:200]:
        timer.cancel()
    before = len(loop._scheduled)  # type: ignore[attr-defined]
    loop.run_until_complete(asyncio.sleep(0))
    after = len(loop._scheduled)  # type: ignore[attr-defined]
    for timer in timers:
        timer.cancel()
    return before, after, loop._timer_cancelled_count  # type: ignore[attr-defined]


def test_cancelled_timers_are_swept_as_asyncio_sweeps_them():
    records = both(_many_cancelled_timers)
    assert records["reactor"] == records["stock"]
    assert records["stock"][:2] == (300, 100)


def _head_cancelled(loop: asyncio.AbstractEventLoop) -> tuple[int, bool]:
    """Few timers: only the cancelled ones at the head of the heap go."""
    first = loop.call_later(0.001, print)
    second = loop.call_later(3600, print)
    first.cancel()
    loop.run_until_complete(asyncio.sleep(0))
    kept = len(loop._scheduled)  # type: ignore[attr-defined]
    second.cancel()
    return kept, first._scheduled  # type: ignore[attr-defined]


def test_a_cancelled_timer_at_the_head_is_dropped_as_asyncio_drops_it():
    records = both(_head_cancelled)
    assert records["reactor"] == records["stock"] == (1, False)


def test_a_due_timer_waits_no_longer_than_asked(new_loop):
    loop = new_loop()
    fired: list[float] = []
    start = loop.time()
    loop.call_later(0.05, lambda: (fired.append(loop.time()), loop.stop()))
    loop.call_later(5, loop.stop)  # the bound
    loop.run_forever()
    assert fired and 0.05 <= fired[0] - start < 4


# ------------------------------------------------------------ call_soon

def test_call_soon_makes_the_handle_asyncio_makes(new_loop):
    loop = new_loop()
    handle = loop.call_soon(print, 1, 2)
    assert type(handle) is events.Handle
    assert handle._callback is print and handle._args == (1, 2)  # type: ignore[attr-defined]
    assert handle._loop is loop and not handle.cancelled()  # type: ignore[attr-defined]
    assert handle._source_traceback is None  # type: ignore[attr-defined]
    assert isinstance(handle._context, contextvars.Context)  # type: ignore[attr-defined]
    # (3.13+ shows a callback's arguments only in debug mode)
    assert repr(handle).startswith("<Handle print(")
    handle.cancel()


def test_call_soon_on_a_closed_loop_raises_as_asyncio_does(new_loop):
    loop = new_loop()
    loop.close()
    with pytest.raises(RuntimeError, match="Event loop is closed"):
        loop.call_soon(print)


def _contexts(loop: asyncio.AbstractEventLoop) -> list[str]:
    seen: list[str] = []
    given = contextvars.copy_context()
    given.run(VAR.set, "given")
    token = VAR.set("caller")
    try:
        loop.call_soon(lambda: (seen.append(VAR.get()), VAR.set("changed by the callback")))
        loop.call_soon(lambda: seen.append(VAR.get()))  # a copy: the first one's change is not seen
        loop.call_soon(lambda: seen.append(VAR.get()), context=given)
        loop.call_soon(lambda: seen.append(VAR.get()), context=None)
        loop.call_soon(loop.stop)
        loop.run_forever()
    finally:
        VAR.reset(token)
    seen.append(VAR.get())
    return seen


def test_callbacks_run_in_the_context_asyncio_gives_them():
    records = both(_contexts)
    assert records["reactor"] == records["stock"] == ["caller", "caller", "given", "caller", "unset"]


def _odd_contexts_and_arguments(loop: asyncio.AbstractEventLoop) -> list[Any]:
    """What the compiled iteration must not take for granted: a context
    that is not a ``contextvars.Context`` (asyncio calls its ``run``), a
    context already entered (``Context.run`` refuses it), and a handle made
    by hand with a list for its arguments."""
    seen: list[Any] = []

    class Runner:
        def run(self, callback: Any, *args: Any) -> Any:
            seen.append(("runner", args))
            return callback(*args)

    entered = contextvars.copy_context()
    loop.call_soon(seen.append, "through a runner", context=Runner())
    loop.set_exception_handler(lambda _, context: seen.append(type(context["exception"]).__name__))
    entered.run(loop.call_soon, seen.append, "in its own context", context=entered)
    loop._ready.append(events.Handle(seen.extend, [["listed", "arguments"]], loop))  # type: ignore[attr-defined]
    loop.call_soon(loop.stop)
    entered.run(loop.run_forever)  # the second callback's context is entered already
    return seen


def test_odd_contexts_and_arguments_run_as_asyncio_runs_them():
    records = both(_odd_contexts_and_arguments)
    assert records["reactor"] == records["stock"]
    # The entered context's callback fails with RuntimeError; from 3.12
    # asyncio runs the exception handler in that same context, which fails
    # too (logged as an unhandled error in the handler), so only 3.11's
    # handler records it.
    failure = ["RuntimeError"] if sys.version_info < (3, 12) else []
    assert records["stock"] == [("runner", ("through a runner",)), "through a runner", *failure,
                                "listed", "arguments"]


def test_create_future_get_debug_and_time_are_asyncio_s(new_loop):
    loop = new_loop()
    future = loop.create_future()
    assert type(future) is asyncio.Future and future.get_loop() is loop
    assert loop.get_debug() is False
    loop.set_debug(True)
    assert loop.get_debug() is True
    before = loop.time()
    assert loop.time() >= before


# ------------------------------------------------------------ failures

def _failure(loop: asyncio.AbstractEventLoop) -> tuple[Any, ...]:
    contexts: list[dict[str, Any]] = []
    loop.set_exception_handler(lambda _loop, context: contexts.append(context))
    ran: list[str] = []

    def boom(arg: int) -> None:
        raise ValueError(f"bad {arg}")

    handle = loop.call_soon(boom, 7)
    loop.call_soon(ran.append, "after the failure")
    loop.call_soon(loop.stop)
    loop.run_forever()
    (context,) = contexts
    return (sorted(context), context["message"], repr(context["exception"]), context["handle"] is handle,
            ran)


def test_a_failing_callback_is_reported_as_asyncio_reports_it_and_the_loop_goes_on():
    records = both(_failure)
    assert records["reactor"] == records["stock"]
    keys, message, exc, same_handle, ran = records["stock"]
    assert keys == ["exception", "handle", "message"] and same_handle and ran == ["after the failure"]
    # (the arguments, "boom(7)", only before 3.13 or in debug mode)
    assert message.startswith("Exception in callback ") and "boom(" in message
    assert exc == "ValueError('bad 7')"


def _failure_without_arguments(loop: asyncio.AbstractEventLoop) -> str:
    messages: list[str] = []
    loop.set_exception_handler(lambda _loop, context: messages.append(context["message"]))

    def boom() -> None:
        raise ValueError

    loop.call_soon(boom)
    loop.call_soon(loop.stop)
    loop.run_forever()
    return messages[0]


def test_a_failing_callback_without_arguments_is_described_as_asyncio_describes_it():
    records = both(_failure_without_arguments)
    assert records["reactor"] == records["stock"]


@pytest.mark.parametrize("exc_type", [KeyboardInterrupt, SystemExit])
def test_keyboard_interrupt_and_system_exit_leave_the_loop_as_in_asyncio(exc_type):
    def scenario(loop: asyncio.AbstractEventLoop) -> tuple[bool, list[str]]:
        ran: list[str] = []

        def interrupt() -> None:
            raise exc_type

        loop.call_soon(interrupt)
        loop.call_soon(ran.append, "queued behind it")
        raised = False
        try:
            loop.run_forever()
        except exc_type:
            raised = True
        # what was queued behind it is still there, run by the next run
        loop.call_soon(loop.stop)
        loop.run_forever()
        return raised, ran

    records = both(scenario)
    assert records["reactor"] == records["stock"] == (True, ["queued behind it"])


# ------------------------------------------------------------ patched asyncio

def test_a_patched_handle_run_is_honoured(new_loop, monkeypatch):
    calls: list[Any] = []
    stock_run = events.Handle._run

    def counting_run(self: events.Handle) -> None:
        calls.append(self)
        stock_run(self)

    monkeypatch.setattr(events.Handle, "_run", counting_run)
    loop = new_loop()
    ran: list[int] = []
    loop.call_soon(ran.append, 1)
    loop.call_later(0, ran.append, 2)
    loop.call_soon(loop.stop)
    loop.run_forever()
    assert ran == [1, 2]
    assert len(calls) >= 3  # the three handles, each through the patched _run


def test_a_patched_handle_init_is_honoured(new_loop, monkeypatch):
    made: list[Any] = []
    stock_init = events.Handle.__init__

    def recording_init(self: events.Handle, *args: Any, **kwargs: Any) -> None:
        made.append(self)
        stock_init(self, *args, **kwargs)

    loop = new_loop()
    monkeypatch.setattr(events.Handle, "__init__", recording_init)
    handle = loop.call_soon(print)
    assert made == [handle]
    handle.cancel()


def test_a_handle_subclass_runs_through_its_own_run(new_loop):
    loop = new_loop()
    ran: list[str] = []

    class Traced(events.Handle):
        __slots__ = ()

        def _run(self) -> None:
            ran.append("traced")
            super()._run()

    loop._ready.append(Traced(ran.append, ("callback",), loop, None))  # type: ignore[attr-defined]
    loop.call_soon(loop.stop)
    loop.run_forever()
    assert ran == ["traced", "callback"]


# ------------------------------------------------------------ debug mode

def test_debug_mode_logs_a_slow_callback_and_sets_the_current_handle(new_loop, caplog):
    loop = new_loop()
    loop.set_debug(True)
    loop.slow_callback_duration = 0.0  # every callback is "slow": no timing needed
    current: list[Any] = []
    handle = loop.call_soon(lambda: current.append(loop._current_handle))  # type: ignore[attr-defined]
    assert handle._source_traceback  # type: ignore[attr-defined]  # debug call_soon: asyncio's own
    loop.call_soon(loop.stop)
    with caplog.at_level(logging.WARNING, logger="asyncio"):
        loop.run_forever()
    assert current == [handle]
    assert loop._current_handle is None  # type: ignore[attr-defined]
    assert any(record.getMessage().startswith("Executing <Handle") for record in caplog.records)


def test_debug_mode_reports_a_failure_with_the_source_traceback(new_loop):
    loop = new_loop()
    loop.set_debug(True)
    contexts: list[dict[str, Any]] = []
    loop.set_exception_handler(lambda _loop, context: contexts.append(context))

    def boom() -> None:
        raise ValueError

    loop.call_soon(boom)
    loop.call_soon(loop.stop)
    loop.run_forever()
    (context,) = contexts
    assert "source_traceback" in context and context["message"].startswith("Exception in callback")


@pytest.mark.skipif(sys.version_info < (3, 13), reason="the debug argument of asyncio's callback description is 3.13+")
def test_on_3_13_and_later_the_description_takes_the_debug_flag():
    assert ready_queue._DESCRIBE_TAKES_DEBUG


def test_a_debug_handle_s_source_traceback_ends_at_the_caller(new_loop):
    # asyncio's call_soon drops its own frames; run as Python, ours is one
    # more frame to drop (CPython's test_events checks the same)
    loop = new_loop()
    loop.set_debug(True)
    handle = loop.call_soon(print)
    line = sys._getframe().f_lineno - 1
    last = handle._source_traceback[-1]  # type: ignore[attr-defined]
    assert (last.filename, last.lineno, last.name) == (__file__, line, sys._getframe().f_code.co_name)
    handle.cancel()
