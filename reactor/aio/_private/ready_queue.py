"""asyncio's ready queue, for reactor.aio: what puts a callback in (``call_soon``) and
what runs the loop's iterations (``run_once``), and the one-line methods
every future calls, with asyncio's semantics, in
a module the data path compiles (``reactor._compiled``).

Stock asyncio does both as Python bytecode: ``call_soon`` is three Python
frames (``call_soon``, ``_call_soon``, ``Handle.__init__``, which also asks
``get_debug()``), and every ready callback runs through ``Handle._run``, a
frame of its own -- on a busy loop that is every transport's readiness and
every future's wake-up of a task. Here they are the same steps in the same
order, compiled by Cython where it was built (plain Python where it was
not: the same text, so the two cannot drift):

- ``create_future``, ``get_debug`` and ``time`` are asyncio's one-liners,
  without a frame each: every ``await`` on a stream makes a future, and
  the future asks the loop ``get_debug()``.
- ``call_soon`` makes the same ``asyncio.Handle`` (its fields as
  ``Handle.__init__`` sets them: the context given or a copy of the
  current one, no source traceback outside debug mode) and appends it to
  the ready queue. In debug mode, or once a tool has patched
  ``Handle.__init__``, it is asyncio's own ``call_soon``.
- ``run_once`` is ``BaseEventLoop._run_once``: the cancelled-timer cleanup,
  the wait's timeout, the wait, the due timers moved to the ready queue,
  then the callbacks ready at that moment. A ``Handle`` or ``TimerHandle``
  whose class runs asyncio's own ``Handle._run`` has that body run inline:
  its callback called in its context, a failure reported to the loop's
  exception handler with asyncio's message and context keys, ``SystemExit``
  and ``KeyboardInterrupt`` let through. Any other handle (a subclass, or
  any handle once a tool has patched ``Handle._run``) runs through its
  ``_run``. Debug mode runs each through ``_run``, timed, with
  ``_current_handle`` set and slow callbacks logged, as asyncio does.

What differs by interpreter is read once, at import: 3.13 added the
``debug`` argument of the callback's description; 3.15 keeps the due-timer
bound strictly increasing where the clock's resolution is below the float's
step (``math.ulp``).
"""

from __future__ import annotations

import contextvars
import heapq
import inspect
import math
import sys
import time
from asyncio import base_events, events, format_helpers, futures
from typing import Any

__all__ = ["call_soon", "create_future", "get_debug", "monotonic_time", "run_once"]

# asyncio's private helpers and values, as Any: typeshed declares none of
# them (tests/aio/test_private.py checks each on the running interpreter)
_base: Any = base_events
_describe: Any = format_helpers._format_callback_source

# asyncio's thresholds for the cleanup of cancelled timers (its own values,
# read from it rather than restated)
_MIN_SCHEDULED = _base._MIN_SCHEDULED_TIMER_HANDLES
_MIN_CANCELLED_FRACTION = _base._MIN_CANCELLED_TIMER_HANDLES_FRACTION
_MAXIMUM_TIMEOUT = _base.MAXIMUM_SELECT_TIMEOUT

#: asyncio's own ``Handle._run``: a ``Handle`` or ``TimerHandle`` whose
#: class still has it is run inline
_HANDLE: Any = events.Handle
_TIMER: Any = events.TimerHandle
_STOCK_RUN = events.Handle._run
#: and its ``__init__``: while the class has it, call_soon sets the fields
_STOCK_INIT = events.Handle.__init__
_STOCK_CALL_SOON: Any = base_events.BaseEventLoop.call_soon
_new_handle = events.Handle.__new__
_copy_context = contextvars.copy_context
_INLINE_OK = _STOCK_RUN.__module__ == "asyncio.events" and _STOCK_RUN.__qualname__ == "Handle._run"
_DESCRIBE_TAKES_DEBUG = "debug" in inspect.signature(_describe).parameters
_END_TIME_ULP = sys.version_info >= (3, 15)
#: this module's source, as a debug-mode source traceback names it when the
#: module runs as Python (compiled, it makes no frame)
_THIS_FILE = __file__


_Future = futures.Future
_monotonic = time.monotonic
_Context = contextvars.Context

try:
    import cython
except ImportError:  # no Cython here: this module runs as Python
    _COMPILED = False
else:
    # True only in the compiled module, where run_once reads a Handle's
    # fields at their slots' offsets and runs its callback with
    # PyContext_Enter/Exit (ready_queue.pxd's C functions: names the Python
    # run never looks up, hence "noqa: F821" where they are used)
    _COMPILED = cython.compiled
#: the compiled fast paths may read Handle's fields at their offsets (and
#: TimerHandle, a subclass that adds slots, has them at the same ones), and
#: call_soon set a new Handle's there
_SLOTS_READ = _SLOTS_WRITTEN = False
if _COMPILED:
    _cancelled_at = _slot_offset(_HANDLE, "_cancelled")  # type: ignore[name-defined]  # noqa: F821
    _callback_at = _slot_offset(_HANDLE, "_callback")  # type: ignore[name-defined]  # noqa: F821
    _args_at = _slot_offset(_HANDLE, "_args")  # type: ignore[name-defined]  # noqa: F821
    _context_at = _slot_offset(_HANDLE, "_context")  # type: ignore[name-defined]  # noqa: F821
    _SLOTS_READ = min(_cancelled_at, _callback_at, _args_at, _context_at) >= 0
    _loop_at = _slot_offset(_HANDLE, "_loop")  # type: ignore[name-defined]  # noqa: F821
    _repr_at = _slot_offset(_HANDLE, "_repr")  # type: ignore[name-defined]  # noqa: F821
    _source_traceback_at = _slot_offset(_HANDLE, "_source_traceback")  # type: ignore[name-defined]  # noqa: F821
    _SLOTS_WRITTEN = _SLOTS_READ and min(_loop_at, _repr_at, _source_traceback_at) >= 0


def create_future(loop: Any) -> Any:
    """``loop.create_future()``: an ``asyncio.Future`` of the loop."""
    return _Future(loop=loop)


def get_debug(loop: Any) -> bool:
    """``loop.get_debug()``: asked by every future asyncio's C module makes."""
    return loop._debug


def monotonic_time(loop: Any) -> float:
    """``loop.time()``: the monotonic clock, as ``BaseEventLoop.time``."""
    return _monotonic()


def call_soon(loop: Any, callback: Any, *args: Any, context: Any = None) -> Any:
    """``loop.call_soon(callback, *args, context=None)``: a handle at the
    end of the ready queue, as ``BaseEventLoop.call_soon`` makes it
    (module docs)."""
    if loop._debug or _HANDLE.__init__ is not _STOCK_INIT:
        handle = _STOCK_CALL_SOON(loop, callback, *args, context=context)
        traceback = handle._source_traceback
        if traceback and traceback[-1].filename == _THIS_FILE:
            # run as Python, this function is a frame of the caller's stack
            # too: asyncio's call_soon drops its own frames, this drops ours
            del traceback[-1]
        return handle
    if loop._closed:
        raise RuntimeError("Event loop is closed")
    handle = _new_handle(_HANDLE)
    if _COMPILED and _SLOTS_WRITTEN:
        # the same seven fields, stored at their slots (ready_queue.pxd)
        given = _copy_context() if context is None else context
        _slot_store(handle, _context_at, given)  # type: ignore[name-defined]  # noqa: F821
        _slot_store(handle, _loop_at, loop)  # type: ignore[name-defined]  # noqa: F821
        _slot_store(handle, _callback_at, callback)  # type: ignore[name-defined]  # noqa: F821
        _slot_store(handle, _args_at, args)  # type: ignore[name-defined]  # noqa: F821
        _slot_store(handle, _cancelled_at, False)  # type: ignore[name-defined]  # noqa: F821
        _slot_store(handle, _repr_at, None)  # type: ignore[name-defined]  # noqa: F821
        _slot_store(handle, _source_traceback_at, None)  # type: ignore[name-defined]  # noqa: F821
    else:
        handle._context = _copy_context() if context is None else context
        handle._loop = loop
        handle._callback = callback
        handle._args = args
        handle._cancelled = False
        handle._repr = None
        handle._source_traceback = None
    loop._ready.append(handle)
    return handle


def run_once(loop: Any) -> None:
    """One iteration of ``loop`` (a ``BaseEventLoop``): what
    ``BaseEventLoop._run_once`` does, in its order (module docs)."""
    scheduled = loop._scheduled
    count = len(scheduled)
    if count > _MIN_SCHEDULED and loop._timer_cancelled_count / count > _MIN_CANCELLED_FRACTION:
        # many cancelled timers: rebuild the heap without them
        kept = []
        for timer in scheduled:
            if timer._cancelled:
                timer._scheduled = False
            else:
                kept.append(timer)
        heapq.heapify(kept)
        loop._scheduled = scheduled = kept
        loop._timer_cancelled_count = 0
    else:
        # otherwise only those at the head of the heap
        while scheduled and scheduled[0]._cancelled:
            loop._timer_cancelled_count -= 1
            timer = heapq.heappop(scheduled)
            timer._scheduled = False

    ready = loop._ready
    timeout = None
    if ready or loop._stopping:
        timeout = 0
    elif scheduled:
        timeout = scheduled[0]._when - loop.time()
        if timeout > _MAXIMUM_TIMEOUT:
            timeout = _MAXIMUM_TIMEOUT
        elif timeout < 0:
            timeout = 0

    loop._process_events(loop._selector.select(timeout))

    # due timers, in order of their time
    now = loop.time()
    resolution = loop._clock_resolution
    if _END_TIME_ULP:
        end_time = now + max(resolution, math.ulp(now))
    else:
        end_time = now + resolution
    while scheduled:
        if scheduled[0]._when >= end_time:
            break
        timer = heapq.heappop(scheduled)
        timer._scheduled = False
        ready.append(timer)

    # The callbacks ready now, not those they add (next iteration, after a
    # wait): a count taken first, as asyncio does.
    ntodo = len(ready)
    if loop._debug:
        _run_debug(loop, ready, ntodo)
        return
    # Which classes run inline, checked once per iteration (a tool may
    # patch Handle._run at any time): an identity test per handle then,
    # instead of looking up its class's _run.
    inline_handle = _HANDLE if _INLINE_OK and _HANDLE._run is _STOCK_RUN else None
    inline_timer = _TIMER if inline_handle is not None and _TIMER._run is _STOCK_RUN else None
    if _COMPILED and _SLOTS_READ:
        # (compiled, the bound popleft is looked up once; run as Python,
        # ready.popleft() is the cheaper call: 3.11 specialises it)
        _run_ready_compiled(ready.popleft, ntodo, inline_handle, inline_timer)
        return
    for _ in range(ntodo):
        handle = ready.popleft()
        if handle._cancelled:
            continue
        kind = type(handle)
        if kind is inline_handle or kind is inline_timer:
            args = handle._args
            try:
                if args:
                    handle._context.run(handle._callback, *args)
                else:
                    # most ready callbacks (a transport's readiness) take
                    # none: a call without building an argument tuple
                    handle._context.run(handle._callback)
            except (SystemExit, KeyboardInterrupt):
                raise
            except BaseException as exc:
                _report_failure(handle, exc)
        else:
            handle._run()
    # Run as Python, this frame outlives the iteration as the f_back of any
    # callback frame an exception's traceback holds: its last handle and
    # arguments would keep that callback's future, and the future the
    # exception, alive in a cycle (asyncio clears its local the same way).
    handle = args = None


def _run_ready_compiled(popleft: Any, ntodo: int, inline_handle: Any, inline_timer: Any) -> None:
    """run_once's loop over the ready callbacks, compiled: the same steps,
    with a stock Handle's fields read at their slots and its callback run
    in its context by PyContext_Enter/Exit when the context is a
    ``contextvars.Context`` (asyncio calls whatever ``run`` another has)."""
    for _ in range(ntodo):
        handle = popleft()
        kind = type(handle)
        if kind is inline_handle or kind is inline_timer:
            if _slot(handle, _cancelled_at):  # type: ignore[name-defined]  # noqa: F821
                continue
            callback = _slot(handle, _callback_at)  # type: ignore[name-defined]  # noqa: F821
            args = _slot(handle, _args_at)  # type: ignore[name-defined]  # noqa: F821
            context = _slot(handle, _context_at)  # type: ignore[name-defined]  # noqa: F821
            try:
                if type(context) is _Context:
                    _run_in(context, callback, args)  # type: ignore[name-defined]  # noqa: F821
                else:
                    context.run(callback, *args)
            except (SystemExit, KeyboardInterrupt):
                raise
            except BaseException as exc:
                _report_failure(handle, exc)
        elif not handle._cancelled:
            handle._run()


def _run_debug(loop: Any, ready: Any, ntodo: int) -> None:
    """The ready callbacks in debug mode: each through its ``_run``, timed,
    one over ``slow_callback_duration`` logged, as asyncio's debug mode."""
    for _ in range(ntodo):
        handle = ready.popleft()
        if handle._cancelled:
            continue
        try:
            loop._current_handle = handle
            started = loop.time()
            handle._run()
            took = loop.time() - started
            if took >= loop.slow_callback_duration:
                _base.logger.warning("Executing %s took %.3f seconds", _base._format_handle(handle), took)
        finally:
            loop._current_handle = None
    handle = None  # (run_once's reason)


def _report_failure(handle: Any, exc: BaseException) -> None:
    """A callback run inline raised ``exc``: to the loop's exception
    handler, with the message and context keys ``Handle._run`` gives."""
    loop = handle._loop
    if _DESCRIBE_TAKES_DEBUG:
        source = _describe(handle._callback, handle._args, debug=loop.get_debug())
    else:
        source = _describe(handle._callback, handle._args)
    context: dict[str, Any] = {"message": f"Exception in callback {source}", "exception": exc, "handle": handle}
    if handle._source_traceback:
        context["source_traceback"] = handle._source_traceback
    loop.call_exception_handler(context)
