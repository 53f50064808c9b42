"""The public names, methods and keywords match the design document's API
(DESIGN.md section 2): what users receive (Listener, Transport,
ConnectAttempt) is importable and has the pinned methods, and listen/connect
spell their keywords out (no ``**options``) so readers, IDEs and mypy see them."""

from __future__ import annotations

import inspect

import pytest

import reactor

PINNED_NAMES = {
    "Reactor", "Protocol", "Listener", "ListenerStats", "Transport", "ConnectAttempt",
    "available_backends", "native_available", "native_error",
    "ReactorError", "ReactorStateError", "BackendLimitError", "NativeUnavailableError",
    "InvalidStateError", "CancelledError", "ConnectTimeout", "UnreachableError",
}
PINNED_METHODS = {
    reactor.Reactor: {
        "call_soon", "call_later", "call_at", "call_soon_threadsafe", "add_reader", "remove_reader",
        "add_writer", "remove_writer", "add_signal_handler", "remove_signal_handler", "run", "stop",
        "close", "set_exception_handler", "listen", "listen_unix", "connect", "connect_unix", "time",
        "__enter__", "__exit__",
    },
    reactor.Protocol: {
        "connection_made", "data_received", "eof_received", "connection_lost", "pause_writing", "resume_writing",
    },
    reactor.Listener: {"pause", "resume", "close", "is_serving", "socket", "state"},
    reactor.Transport: {
        "write", "writelines", "write_eof", "can_write_eof", "close", "abort", "is_closing",
        "pause_reading", "resume_reading", "is_reading", "get_write_buffer_size",
        "set_write_buffer_limits", "get_extra_info",
    },
    reactor.ConnectAttempt: {"done", "cancelled", "cancel", "add_done_callback", "result", "exception", "tried"},
}
#: attributes set per instance, checked on real objects
PINNED_ATTRIBUTES = {
    "Reactor": {"backend", "native"},
    "Listener": {"address", "backlog", "native", "stats"},
    "ConnectAttempt": {"address"},
}
PINNED_STATS = {"accepted", "aborted", "exhausted", "shed", "rejected", "wakeups", "batches", "max_batch",
                "empty_wakeups", "active", "histogram", "proxy_errors", "idle_closed", "tls_failed", "limited"}
#: keywords of section 2, with section 7's (TLS, limits, PROXY protocol)
PINNED_KEYWORDS = {
    "listen": {"backlog", "reuse_port", "max_accepts", "on_exhausted", "sock", "keepalive", "user_timeout",
               "ssl", "ssl_handshake_timeout", "ssl_shutdown_timeout", "idle_timeout", "max_connections",
               "proxy_protocol"},
    "listen_unix": {"backlog", "ssl", "idle_timeout", "max_connections", "proxy_protocol"},
    "connect": {"timeout", "local_addr", "happy_eyeballs_delay", "keepalive", "user_timeout", "resolver",
                "ssl", "server_hostname", "ssl_handshake_timeout", "idle_timeout"},
    "connect_unix": {"timeout"},
}


def test_all_is_explicit_and_importable():
    assert PINNED_NAMES <= set(reactor.__all__)
    for name in reactor.__all__:
        assert hasattr(reactor, name), name
    assert len(set(reactor.__all__)) == len(reactor.__all__)


@pytest.mark.parametrize("cls", list(PINNED_METHODS), ids=lambda cls: cls.__name__)
def test_pinned_methods(cls):
    missing = PINNED_METHODS[cls] - set(dir(cls))
    assert not missing, f"{cls.__name__} lacks {sorted(missing)}"


def test_pinned_attributes_of_real_objects():
    with reactor.Reactor() as r:
        listener = r.listen(reactor.Protocol)
        attempt = r.connect(reactor.Protocol, *listener.address)
        for name, obj in (("Reactor", r), ("Listener", listener), ("ConnectAttempt", attempt)):
            missing = {attr for attr in PINNED_ATTRIBUTES[name] if not hasattr(obj, attr)}
            assert not missing, f"{name} lacks {sorted(missing)}"
        attempt.cancel()
        listener.close()


def test_listener_stats_fields():
    assert PINNED_STATS <= set(reactor.ListenerStats.__slots__)


@pytest.mark.parametrize("method", list(PINNED_KEYWORDS))
def test_listen_and_connect_spell_out_their_keywords(method):
    parameters = inspect.signature(getattr(reactor.Reactor, method)).parameters
    assert not any(p.kind is p.VAR_KEYWORD for p in parameters.values()), f"{method} takes **kwargs"
    keyword_only = {name for name, p in parameters.items() if p.kind is p.KEYWORD_ONLY}
    assert PINNED_KEYWORDS[method] <= keyword_only, sorted(PINNED_KEYWORDS[method] - keyword_only)


def test_reactor_constructor_defaults():
    parameters = inspect.signature(reactor.Reactor).parameters
    assert parameters["backend"].default is None  # None: REACTOR_BACKEND, else "auto"
    assert parameters["native"].default == "auto"
    assert inspect.signature(reactor.Reactor.listen).parameters["host"].default == "127.0.0.1"


def test_with_returns_the_reactor_itself():
    with reactor.Reactor() as r:
        assert isinstance(r, reactor.Reactor) and r.backend in reactor.available_backends()
    assert r.is_closed()


def test_error_hierarchy():
    assert issubclass(reactor.ConnectTimeout, TimeoutError)
    assert issubclass(reactor.UnreachableError, ConnectionError)
    for name in ("ReactorStateError", "BackendLimitError", "NativeUnavailableError", "InvalidStateError",
                 "CancelledError", "ConnectTimeout", "UnreachableError"):
        assert issubclass(getattr(reactor, name), reactor.ReactorError), name


def test_the_kernel_loop_is_not_the_public_reactor():
    # Reactor is the kernel's loop plus the network facade; the kernel has no sockets.
    from reactor._core.loop import EventLoop

    assert issubclass(reactor.Reactor, EventLoop)
    assert not hasattr(EventLoop, "listen") and not hasattr(EventLoop, "connect")
