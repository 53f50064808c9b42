"""asyncio's private names that reactor.aio reads, checked against the
interpreter running the tests (reactor/aio/_private/, one module per
concern). Each test states what the module assumes of this version; a
CPython that changes the name fails here, naming it, instead of breaking a
connection somewhere in the loop. CI runs this on every supported version.
"""

from __future__ import annotations

import asyncio
import inspect
import sys
import warnings
from asyncio import base_events, events, futures, selector_events, unix_events

import pytest

import reactor.aio
from reactor.aio._private import children, coroutines, pipes, policy, ready_queue, servers
from reactor.aio._private.futures import set_result_unless_cancelled


def parameters(function: object) -> list[str]:
    return list(inspect.signature(function).parameters)  # type: ignore[arg-type]


# ------------------------------------------------------------------ futures

def test_set_result_unless_cancelled_is_asyncios():
    assert set_result_unless_cancelled is futures._set_result_unless_cancelled  # type: ignore[attr-defined]
    assert parameters(set_result_unless_cancelled) == ["fut", "result"]


# --------------------------------------------------------------- coroutines

def test_the_coroutine_function_test_is_asyncio_loops_own_and_does_not_warn():
    from asyncio import coroutines as aio_coroutines

    assert coroutines.PRIVATE_TEST == (sys.version_info >= (3, 14))
    expected = (aio_coroutines._iscoroutinefunction if coroutines.PRIVATE_TEST  # type: ignore[attr-defined]
                else aio_coroutines.iscoroutinefunction)
    assert coroutines.iscoroutinefunction is expected

    async def coroutine_function() -> None:
        pass

    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert coroutines.iscoroutinefunction(coroutine_function)
        assert not coroutines.iscoroutinefunction(lambda: None)


# -------------------------------------------------------------------- pipes

def test_the_pipe_and_subprocess_transports_take_what_the_loop_passes():
    assert parameters(pipes.UnixReadPipeTransport.__init__) == ["self", "loop", "pipe", "protocol", "waiter",
                                                                "extra"]
    assert parameters(pipes.UnixWritePipeTransport.__init__) == ["self", "loop", "pipe", "protocol", "waiter",
                                                                 "extra"]
    assert parameters(pipes.UnixSubprocessTransport.__init__)[:9] == [
        "self", "loop", "protocol", "args", "shell", "stdin", "stdout", "stderr", "bufsize"]
    assert {"_process_exited", "_wait", "get_pid"} <= set(dir(pipes.UnixSubprocessTransport))


# ------------------------------------------------------------------ servers

def test_how_the_server_counts_its_connections():
    expected = ["self", "transport"] if servers.TRACKS_TRANSPORTS else ["self"]
    assert parameters(base_events.Server._attach) == expected
    assert parameters(base_events.Server._detach) == expected
    assert hasattr(base_events.Server, "close_clients") == servers.TRACKS_TRANSPORTS
    assert sys.version_info >= (3, 13) or not servers.TRACKS_TRANSPORTS


def test_which_versions_pass_each_connection_a_context():
    # asyncio's own loop takes it where the server passes it
    for method in (selector_events.BaseSelectorEventLoop._start_serving,
                   selector_events.BaseSelectorEventLoop._make_socket_transport,
                   selector_events.BaseSelectorEventLoop._make_ssl_transport):
        assert ("context" in parameters(method)) == servers.CONNECTION_CONTEXTS, method
    # and ours takes it on every version
    loop = reactor.aio.new_event_loop()
    try:
        for name in ("_start_serving", "_make_socket_transport", "_make_ssl_transport", "_add_reader",
                     "_add_writer"):
            assert "context" in parameters(getattr(loop, name)), name
    finally:
        loop.close()


def test_a_server_is_open_until_it_is_closed_serving_or_not():
    # is_open() reads Server._sockets: a list, None once closed. (asyncio's
    # is_serving() would say False for a server not started yet, whose
    # connections wait_closed() must still wait for.)
    loop = reactor.aio.new_event_loop()
    try:
        async def check() -> None:
            server = await loop.create_server(asyncio.Protocol, "127.0.0.1", 0, start_serving=False)
            assert servers.is_open(server) and not server.is_serving()
            server.close()
            assert not servers.is_open(server)
            await server.wait_closed()

        loop.run_until_complete(check())
    finally:
        loop.close()


def test_create_unix_server_cleanup_socket_default_is_the_versions():
    stock = inspect.signature(unix_events._UnixSelectorEventLoop.create_unix_server).parameters  # type: ignore[attr-defined]
    assert ("cleanup_socket" in stock) == servers.UNIX_CLEANUP_DEFAULT
    ours = inspect.signature(reactor.aio.ReactorEventLoop.create_unix_server).parameters
    assert ours["cleanup_socket"].default is servers.UNIX_CLEANUP_DEFAULT


# ----------------------------------------------------------------- children

def test_where_the_child_watcher_lives():
    if children.WATCHERS_IN_POLICY:
        assert hasattr(events, "get_child_watcher")
        assert sys.version_info < (3, 14)
    else:
        assert not hasattr(events, "get_child_watcher")
        for name in ("can_use_pidfd", "_PidfdChildWatcher", "_ThreadedChildWatcher"):
            assert hasattr(unix_events, name), name
        assert parameters(unix_events._PidfdChildWatcher.add_child_handler) == [  # type: ignore[attr-defined]
            "self", "pid", "callback", "args"]
        stock = asyncio.SelectorEventLoop()
        try:
            assert isinstance(stock._watcher, (unix_events._PidfdChildWatcher,  # type: ignore[attr-defined]
                                               unix_events._ThreadedChildWatcher))  # type: ignore[attr-defined]
        finally:
            stock.close()


def test_a_subprocess_on_reactor_aio():
    async def main():
        process = await asyncio.create_subprocess_exec(sys.executable, "-c", "print('hi')",
                                                       stdout=asyncio.subprocess.PIPE)
        out, _ = await process.communicate()
        return process.returncode, out

    assert reactor.aio.run(main()) == (0, b"hi\n")


# ------------------------------------------------------------------- policy

def test_the_policy_base_and_its_deprecation():
    assert policy.DefaultPolicy is unix_events._UnixDefaultEventLoopPolicy  # type: ignore[attr-defined]
    assert policy.DEPRECATED == (sys.version_info >= (3, 14))
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        stock = asyncio.DefaultEventLoopPolicy  # noqa: F841 - the access is the test
        ours = reactor.aio.EventLoopPolicy
    deprecations = [str(w.message) for w in caught if issubclass(w.category, DeprecationWarning)]
    assert len(deprecations) == (2 if policy.DEPRECATED else 0), deprecations
    assert issubclass(ours, policy.DefaultPolicy)
    assert ("EventLoopPolicy" in reactor.aio.__all__) == (not policy.DEPRECATED)


def test_the_unwarned_accessors_are_asyncios_own():
    with warnings.catch_warnings():
        warnings.simplefilter("error", DeprecationWarning)
        saved = policy.get_policy()
        policy.set_policy(saved)
    assert policy.get_policy() is saved


@pytest.mark.filterwarnings("ignore::DeprecationWarning")
def test_the_reactor_policy_makes_reactor_loops():
    loop = reactor.aio.EventLoopPolicy().new_event_loop()
    try:
        assert isinstance(loop, reactor.aio.ReactorEventLoop)
    finally:
        loop.close()


# -------------------------------------------------------------- ready queue

def test_the_handle_fields_call_soon_sets_are_asyncios():
    # ready_queue.call_soon sets these slots itself, as Handle.__init__ does
    assert set(events.Handle.__slots__) >= {"_callback", "_args", "_cancelled", "_loop", "_source_traceback",
                                            "_repr", "_context"}
    assert parameters(events.Handle.__init__) == ["self", "callback", "args", "loop", "context"]
    assert parameters(base_events.BaseEventLoop.call_soon) == ["self", "callback", "args", "context"]


def test_what_the_iteration_reads_of_base_events_is_there():
    assert ready_queue._MIN_SCHEDULED == base_events._MIN_SCHEDULED_TIMER_HANDLES  # type: ignore[attr-defined]
    assert 0 < ready_queue._MIN_CANCELLED_FRACTION < 1
    assert ready_queue._MAXIMUM_TIMEOUT == base_events.MAXIMUM_SELECT_TIMEOUT  # type: ignore[attr-defined]
    assert callable(base_events._format_handle)  # type: ignore[attr-defined]
    assert ready_queue._INLINE_OK  # asyncio's own Handle._run, unpatched
    assert ready_queue._DESCRIBE_TAKES_DEBUG == (sys.version_info >= (3, 13))
    assert ready_queue._END_TIME_ULP == (sys.version_info >= (3, 15))
    # the iteration's steps read these of the loop; BaseEventLoop sets them all
    loop = asyncio.new_event_loop()
    try:
        for name in ("_scheduled", "_timer_cancelled_count", "_ready", "_stopping", "_selector",
                     "_clock_resolution", "_debug", "_current_handle", "_closed"):
            assert hasattr(loop, name), name
    finally:
        loop.close()


def test_the_version_differences_of_the_iteration_are_the_ones_named():
    # 3.15 bounds the due timers by max(resolution, ulp(now)); before, by the
    # resolution alone (ready_queue reads the version once, at import)
    source = inspect.getsource(base_events.BaseEventLoop._run_once)
    assert ("math.ulp" in source) == ready_queue._END_TIME_ULP
    run_source = inspect.getsource(events.Handle._run)
    assert ("debug=" in run_source) == ready_queue._DESCRIBE_TAKES_DEBUG
