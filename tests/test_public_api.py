"""The public names match the design document's API (DESIGN.md section 2)."""

from __future__ import annotations

import reactor

PINNED_NAMES = {
    "Reactor", "Protocol", "available_backends", "native_available", "native_error",
    "ReactorError", "ConnectTimeout", "UnreachableError",
}
PINNED_REACTOR_METHODS = {
    "call_soon", "call_later", "call_at", "call_soon_threadsafe", "add_reader", "remove_reader",
    "add_writer", "remove_writer", "add_signal_handler", "remove_signal_handler", "run", "stop",
    "close", "set_exception_handler", "listen", "listen_unix", "connect", "connect_unix", "time",
}
PINNED_PROTOCOL_METHODS = {
    "connection_made", "data_received", "eof_received", "connection_lost", "pause_writing", "resume_writing",
}


def test_all_is_explicit_and_importable():
    assert PINNED_NAMES <= set(reactor.__all__)
    for name in reactor.__all__:
        assert hasattr(reactor, name), name


def test_reactor_and_protocol_methods():
    assert PINNED_REACTOR_METHODS <= set(dir(reactor.Reactor))
    assert PINNED_PROTOCOL_METHODS <= set(dir(reactor.Protocol))


def test_error_hierarchy():
    assert issubclass(reactor.ConnectTimeout, TimeoutError)
    assert issubclass(reactor.UnreachableError, ConnectionError)
    assert issubclass(reactor.ConnectTimeout, reactor.ReactorError)
