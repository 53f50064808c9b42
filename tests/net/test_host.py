"""The host interface (``reactor._net.host``): what the net floor needs of a
loop, given by ``Reactor`` and by reactor.aio's ``LoopHost`` and
``ContextHost``. mypy checks the signatures where each is passed; these
tests check what mypy cannot: that every member is there at run time, and
that the per-loop state lives in the declared attributes, not attached from
outside."""

from __future__ import annotations

import contextvars
import inspect

import pytest

import reactor
import reactor.aio
from reactor._net import host as host_mod
from reactor._net.host import Host, LoopState, check_open
from reactor._net.resolver import pool_for
from reactor._net.tls import loop_view
from reactor.aio.host import ContextHost, LoopHost
from reactor.errors import ReactorStateError

from ..support import Factory, Recorder, run_until

#: every member of the Protocol (its methods and properties)
MEMBERS = sorted(name for name, _ in inspect.getmembers(Host) if not name.startswith("_"))


@pytest.fixture
def aio_loop():
    loop = reactor.aio.new_event_loop()
    yield loop
    loop.close()


def test_the_interface_names_what_the_net_floor_uses():
    assert MEMBERS == sorted([
        "add_reader", "add_writer", "backend", "call_exception_handler", "call_later", "call_soon",
        "call_soon_threadsafe", "forget_fd", "is_closed", "is_closing", "max_fd", "native", "net_state",
        "read_buffer", "remove_reader", "remove_writer", "time", "track_resource", "untrack_resource",
    ])
    assert all(not name.startswith("_") for name in MEMBERS)


def test_each_host_gives_every_member(aio_loop):
    with reactor.Reactor() as r:
        loop_host = aio_loop._host
        hosts = [r, loop_host, ContextHost(loop_host, contextvars.copy_context())]
        for host in hosts:
            assert isinstance(host, Host), host
            missing = [name for name in MEMBERS if not hasattr(host, name)]
            assert not missing, (host, missing)
            assert host.read_buffer is (r if host is r else aio_loop).read_buffer
            assert isinstance(host.net_state, LoopState)


def test_a_connection_face_shares_its_loops_state(aio_loop):
    loop_host = aio_loop._host
    face = ContextHost(loop_host, contextvars.copy_context())
    assert face.net_state is loop_host.net_state and face.read_buffer is loop_host.read_buffer
    # asyncio's TLS layer is given the asyncio loop itself there
    assert loop_host.net_state.tls_loop is aio_loop
    assert isinstance(loop_host, LoopHost) and loop_host.is_closing() is False


def test_each_reactor_keeps_its_own_state_in_its_declared_attributes():
    # The resolver's pool, the client idle limits and the TLS layer's loop
    # were kept in a module-level dict or attached with setattr: a reactor
    # now gains no attribute by using them.
    with reactor.Reactor() as first, reactor.Reactor() as second:
        names = set(vars(first))
        assert pool_for(first) is pool_for(first) is first.net_state.resolver
        assert pool_for(second) is not pool_for(first)
        assert loop_view(first) is loop_view(first) is first.net_state.tls_loop
        lst = first.listen(Factory(Recorder))
        attempt = first.connect(Recorder, *lst.address, idle_timeout=30)
        run_until(first, attempt.done)
        assert list(first.net_state.client_idle_limits) == [30.0]
        assert set(vars(first)) == names
        attempt.result()[0].close()
        lst.close()
    # the pool is closed with its reactor, and forgotten
    assert first.net_state.resolver is None


def test_check_open_refuses_a_closed_host():
    r = reactor.Reactor()
    check_open(r)
    r.close()
    with pytest.raises(ReactorStateError, match="closed"):
        check_open(r)
    assert host_mod.__all__ == ["Host", "LoopState", "check_open"]
