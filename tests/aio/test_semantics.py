"""asyncio's observable semantics where other projects' suites check them,
with stock asyncio on the same interpreter as the oracle: each test runs on
asyncio's own selector loop and on reactor.aio, on every backend, and must
pass on both. Each names the reactor.aio behaviour it catches (found by
running anyio's and CPython's suites on reactor.aio)."""

from __future__ import annotations

import asyncio
import gc
import selectors
import socket
import sys

import pytest

import reactor
import reactor.aio

from ..support import LOOP_BACKENDS

LOOPS = [pytest.param(("stock", backend), id=f"stock-{backend}") for backend in LOOP_BACKENDS] + [
    pytest.param(("reactor", backend), id=f"reactor-{backend}") for backend in LOOP_BACKENDS]

_SELECTORS = {"select": "SelectSelector", "poll": "PollSelector", "epoll": "EpollSelector"}


@pytest.fixture(params=LOOPS)
def loop_factory(request):
    kind, backend = request.param
    if kind == "stock":
        return lambda: asyncio.SelectorEventLoop(getattr(selectors, _SELECTORS[backend])())
    return lambda: reactor.aio.new_event_loop(backend=backend)


def run(loop_factory, coro):
    with asyncio.Runner(loop_factory=loop_factory) as runner:
        return runner.run(coro)


def closed_port() -> int:
    probe = socket.socket()
    probe.bind(("127.0.0.1", 0))
    port = probe.getsockname()[1]
    probe.close()
    return port


# ----------------------------------------------- readers of a closed object


@pytest.mark.parametrize("event", ["reader", "writer"])
def test_remove_after_the_socket_is_closed_finds_the_watcher(loop_factory, event):
    """reactor.aio raised ``ValueError: fileobj has an invalid fd -1``: it
    looked the watcher up by the object's fd, which close() made -1; asyncio
    finds the registration by the object itself."""
    async def main():
        loop = asyncio.get_running_loop()
        left, right = socket.socketpair()
        add, remove = ((loop.add_reader, loop.remove_reader) if event == "reader"
                       else (loop.add_writer, loop.remove_writer))
        add(left, lambda: None)
        left.close()
        removed = remove(left)
        # now nothing has it: a closed object that is not watched is an error
        with pytest.raises(ValueError):
            remove(left)
        right.close()
        return removed

    assert run(loop_factory, main()) is True


@pytest.mark.parametrize("backend", LOOP_BACKENDS)
def test_remove_reader_after_close_on_the_native_api(backend):
    """The same rule on reactor's own loop: the watcher of a closed object
    goes, and the fd number is free for the next watcher."""
    with reactor.Reactor(backend=backend) as r:
        left, right = socket.socketpair()
        r.add_reader(left, lambda: None)
        left.close()
        assert r.remove_reader(left) is True
        with pytest.raises(ValueError):
            r.remove_reader(left)
        right.close()


def test_a_never_watched_closed_socket_is_still_an_error(loop_factory):
    async def main():
        loop = asyncio.get_running_loop()
        sock = socket.socket()
        sock.close()
        with pytest.raises(ValueError):
            loop.remove_reader(sock)

    run(loop_factory, main())


# ------------------------------------------------ a protocol that raises


@pytest.mark.parametrize("method", ["data_received", "eof_received"])
def test_the_exception_from_the_protocol_reaches_connection_lost(loop_factory, method):
    """reactor.aio closed the connection and called connection_lost(None);
    asyncio passes the exception, and reports it to the exception handler."""
    class Boom(Exception):
        pass

    async def main():
        loop = asyncio.get_running_loop()
        reports = []
        loop.set_exception_handler(lambda loop, context: reports.append(context))
        lost = loop.create_future()

        class Failing(asyncio.Protocol):
            def data_received(self, data):
                if method == "data_received":
                    raise Boom()

            def eof_received(self):
                raise Boom()

            def connection_lost(self, exc):
                lost.set_result(exc)

        server = await loop.create_server(Failing, "127.0.0.1", 0)
        _, writer = await asyncio.open_connection(*server.sockets[0].getsockname()[:2])
        if method == "data_received":
            writer.write(b"x")
        else:
            writer.write_eof()
        exc = await asyncio.wait_for(lost, 10)
        writer.close()
        server.close()
        await server.wait_closed()
        return exc, reports

    exc, reports = run(loop_factory, main())
    assert isinstance(exc, Boom)
    assert [type(context.get("exception")) for context in reports] == [Boom]


# ----------------------------------------------------------- TCP_NODELAY


def nodelay(sock) -> int:
    return sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY)


def test_nodelay_is_set_at_connect_and_accept(loop_factory):
    """reactor.aio set TCP_NODELAY at the first write; asyncio sets it when
    the transport is made, so connection_made already sees it."""
    async def main():
        loop = asyncio.get_running_loop()
        seen = {}
        made = loop.create_future()

        class Server(asyncio.Protocol):
            def connection_made(self, transport):
                seen["server"] = nodelay(transport.get_extra_info("socket"))
                made.set_result(None)

        server = await loop.create_server(Server, "127.0.0.1", 0)
        transport, _ = await loop.create_connection(asyncio.Protocol, *server.sockets[0].getsockname()[:2])
        seen["client"] = nodelay(transport.get_extra_info("socket"))
        await asyncio.wait_for(made, 10)
        transport.close()
        server.close()
        await server.wait_closed()
        return seen

    seen = run(loop_factory, main())
    assert seen["client"] and seen["server"], seen


@pytest.mark.parametrize("where", ["127.0.0.1", "::1", "0.0.0.0", "unix"])
def test_an_accepted_connection_knows_its_local_address_after_the_close(loop_factory, where, tmp_path):
    """asyncio's transports have ``sockname`` from their creation on, also
    after the close. reactor.aio takes an accepted connection's from the
    listener where that names it (a specific address, a Unix path) and
    asks the socket otherwise (a wildcard bind); both must give what
    getsockname() of the accepted socket gives."""
    if where == "::1" and not socket.has_ipv6:
        pytest.skip("no IPv6 here")

    async def main():
        loop = asyncio.get_running_loop()
        seen = []
        lost = loop.create_future()

        class Server(asyncio.Protocol):
            def connection_made(self, transport):
                seen.append(transport.get_extra_info("socket").getsockname())
                seen.append(transport.get_extra_info("sockname"))
                transport.close()
                seen.append(transport.get_extra_info("sockname"))

            def connection_lost(self, exc):
                lost.set_result(None)

        if where == "unix":
            path = str(tmp_path / "s.sock")
            server = await loop.create_unix_server(Server, path)
            _, writer = await asyncio.open_unix_connection(path)
        else:
            server = await loop.create_server(Server, where, 0)
            port = server.sockets[0].getsockname()[1]
            _, writer = await asyncio.open_connection("127.0.0.1" if where == "0.0.0.0" else where, port)
        await asyncio.wait_for(lost, 10)
        writer.close()
        server.close()
        await server.wait_closed()
        return seen

    kernel, before, after = run(loop_factory, main())
    assert before == after == kernel, (before, after, kernel)


def test_nodelay_on_a_socket_the_caller_holds(loop_factory):
    """``create_connection(sock=)``: the caller's own reference sees
    TCP_NODELAY set as soon as the transport exists (not at a first write).
    (asyncio sets it on sockets made with IPPROTO_TCP, as getaddrinfo's are.)"""
    async def main():
        loop = asyncio.get_running_loop()
        server = await loop.create_server(asyncio.Protocol, "127.0.0.1", 0)
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM, socket.IPPROTO_TCP)
        sock.setblocking(False)
        await loop.sock_connect(sock, server.sockets[0].getsockname()[:2])
        transport, _ = await loop.create_connection(asyncio.Protocol, sock=sock)
        value = nodelay(sock)
        transport.close()
        server.close()
        await server.wait_closed()
        return value

    assert run(loop_factory, main())


def test_the_users_nodelay_choice_stands(loop_factory):
    """A user who turns Nagle back on in connection_made keeps it: reactor.aio
    set TCP_NODELAY=1 again at the first write."""
    async def main():
        loop = asyncio.get_running_loop()
        after_write = loop.create_future()

        class Server(asyncio.Protocol):
            def connection_made(self, transport):
                sock = transport.get_extra_info("socket")
                sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 0)
                transport.write(b"hello")
                after_write.set_result(nodelay(sock))

        server = await loop.create_server(Server, "127.0.0.1", 0)
        reader, writer = await asyncio.open_connection(*server.sockets[0].getsockname()[:2])
        assert await reader.readexactly(5) == b"hello"
        value = await asyncio.wait_for(after_write, 10)
        writer.close()
        server.close()
        await server.wait_closed()
        return value

    assert run(loop_factory, main()) == 0


@pytest.mark.parametrize("backend", LOOP_BACKENDS)
def test_the_users_nodelay_choice_stands_on_the_native_api(backend):
    with reactor.Reactor(backend=backend) as r:
        values = []

        class Server(reactor.Protocol):
            def connection_made(self, transport):
                sock = transport.get_extra_info("socket")
                values.append(nodelay(sock))  # already set when the user sees it
                sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 0)
                transport.write(b"hello")
                values.append(nodelay(sock))
                transport.close()
                r.stop()

        listener = r.listen(Server)
        client = socket.create_connection(listener.address, timeout=10)
        r.call_later(10, r.stop)
        r.run()
        assert client.recv(5) == b"hello"
        client.close()
        listener.close()
    assert values[0] != 0 and values[1] == 0, values


# ------------------------------------------------ a refused connect's error


@pytest.mark.skipif(sys.version_info < (3, 14), reason="stock asyncio keeps the error in its happy-eyeballs "
                    "lists and a Future too before 3.14 (the oracle fails)")
def test_a_refused_connect_leaves_no_reference_to_its_error(loop_factory):
    """After a refused connect (happy eyeballs on), only the caller's frame
    holds the error: reactor.aio left it in a done Future (the frame of the
    writer callback that failed it held the future, and the error's
    traceback that frame), a reference that outlives the failure; suites
    that count an exception's referrers see it."""
    port = closed_port()
    found = {}

    async def main():
        exc = None
        try:
            await asyncio.open_connection("127.0.0.1", port, happy_eyeballs_delay=0.25)
        except OSError as error:
            exc = error
        assert exc is not None
        found["referrers"] = [type(r).__name__ for r in gc.get_referrers(exc)]

    coro = main()
    run(loop_factory, coro)
    assert found["referrers"] == ["coroutine"], found
