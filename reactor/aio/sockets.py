"""The ``loop.sock_*`` coroutines: one non-blocking call, and when the kernel
says EAGAIN, a watcher that retries it once the fd is ready.

Each operation tries the syscall at once (most reads and writes on a
connected socket succeed without waiting); only EAGAIN/EINTR registers a
reader or writer, and the future's done callback removes it again, also when
the waiting coroutine is cancelled -- a cancelled ``sock_recv`` must not leave
a watcher that later steals the bytes of the next one.

Kernel facts handled here, beyond what asyncio's selector loop does:

- A non-blocking ``connect()`` on TCP returns EINPROGRESS; writability then
  means "finished", and SO_ERROR says how. Errors are classified by reactor's
  table (``_net.connector.connect_error``): ECONNREFUSED is
  ``ConnectionRefusedError``, ETIMEDOUT ``TimeoutError``, EHOSTUNREACH and
  ENETUNREACH ``reactor.UnreachableError`` (a ``ConnectionError``).
- A Unix stream ``connect()`` to a listener whose backlog is full returns
  EAGAIN and leaves the socket *unconnected* -- yet it polls writable with
  SO_ERROR 0. Waiting for writability (what asyncio does) reports a
  connection that does not exist; the first read then fails with ENOTCONN.
  Here the connect is retried after a short backoff until it completes.
- ``os.sendfile`` sends from the page cache without copying through user
  space; a file it cannot send (not mmap-able) fails the first call, and the
  caller falls back to reads and writes.
"""

from __future__ import annotations

import errno
import functools
import os
import socket
from asyncio import exceptions, futures
from collections.abc import Callable
from typing import Any

from .._net.connector import connect_error

__all__ = ["SocketMethods"]

#: Unix connect retries on a full backlog: first delay, and the ceiling
UNIX_RETRY_INITIAL = 0.001
UNIX_RETRY_MAX = 0.05


class SocketMethods:
    """Mixed into the asyncio loop; relies on its ``_add_reader``,
    ``_add_writer``, ``remove_reader``, ``remove_writer``, ``create_future``,
    ``_ensure_fd_no_transport`` and ``_ensure_resolved``."""

    # The loop provides these (declared for the type checker).
    _debug: bool

    def _check_nonblocking(self, sock: socket.socket) -> None:
        _check_not_ssl(sock)
        if self._debug and sock.gettimeout() != 0:
            raise ValueError("the socket must be non-blocking")

    def _wait_readable(self, fut: futures.Future[Any], sock: socket.socket, callback: Any, *args: Any) -> None:
        fd = sock.fileno()
        self._ensure_fd_no_transport(fd)  # type: ignore[attr-defined]
        handle = self._add_reader(fd, callback, fut, sock, *args)  # type: ignore[attr-defined]
        fut.add_done_callback(functools.partial(self._read_done, fd, handle=handle))

    def _wait_writable(self, fut: futures.Future[Any], sock: socket.socket, callback: Any, *args: Any) -> None:
        fd = sock.fileno()
        self._ensure_fd_no_transport(fd)  # type: ignore[attr-defined]
        handle = self._add_writer(fd, callback, fut, sock, *args)  # type: ignore[attr-defined]
        fut.add_done_callback(functools.partial(self._write_done, fd, handle=handle))

    def _read_done(self, fd: int, fut: futures.Future[Any], handle: Any = None) -> None:
        # Only if the watcher is still ours: a later sock_recv may have
        # replaced it with its own.
        if handle is None or not handle.cancelled():
            self.remove_reader(fd)  # type: ignore[attr-defined]

    def _write_done(self, fd: int, fut: futures.Future[Any], handle: Any = None) -> None:
        if handle is None or not handle.cancelled():
            self.remove_writer(fd)  # type: ignore[attr-defined]

    # ------------------------------------------------------------- reading

    async def _now_or_when_ready(self, sock: socket.socket, method: str, args: tuple[Any, ...],
                                 readable: bool) -> Any:
        """``sock.method(*args)`` at once, or once the fd is ready if the
        kernel says EAGAIN: the shape of every ``sock_*`` call but sendall and
        connect, which make progress in steps."""
        self._check_nonblocking(sock)
        try:
            return getattr(sock, method)(*args)
        except (BlockingIOError, InterruptedError):
            pass
        fut = self.create_future()  # type: ignore[attr-defined]
        wait = self._wait_readable if readable else self._wait_writable
        wait(fut, sock, _retry_call, method, *args)
        return await fut

    async def sock_recv(self, sock: socket.socket, n: int) -> bytes:
        """Receive up to ``n`` bytes from the non-blocking ``sock``."""
        return await self._now_or_when_ready(sock, "recv", (n,), readable=True)

    async def sock_recv_into(self, sock: socket.socket, buf: Any) -> int:
        """Receive into ``buf``; the number of bytes received."""
        return await self._now_or_when_ready(sock, "recv_into", (buf,), readable=True)

    async def sock_recvfrom(self, sock: socket.socket, bufsize: int) -> tuple[bytes, Any]:
        """Receive a datagram of up to ``bufsize`` bytes: ``(data, address)``."""
        return await self._now_or_when_ready(sock, "recvfrom", (bufsize,), readable=True)

    async def sock_recvfrom_into(self, sock: socket.socket, buf: Any, nbytes: int = 0) -> tuple[int, Any]:
        """Receive a datagram into ``buf``: ``(nbytes, address)``."""
        return await self._now_or_when_ready(sock, "recvfrom_into", (buf, nbytes or len(buf)), readable=True)

    # ------------------------------------------------------------- writing

    async def sock_sendall(self, sock: socket.socket, data: Any) -> None:
        """Send all of ``data``; partial sends continue when writable."""
        self._check_nonblocking(sock)
        try:
            sent = sock.send(data)
        except (BlockingIOError, InterruptedError):
            sent = 0
        if sent == len(data):
            return
        fut = self.create_future()  # type: ignore[attr-defined]
        # [position]: the callback advances it; bytes-like of any item size
        view = memoryview(data).cast("B")
        self._wait_writable(fut, sock, self._sendall_ready, view, [sent])
        return await fut

    def _sendall_ready(self, fut: futures.Future[Any], sock: socket.socket, view: memoryview,
                       position: list[int]) -> None:
        if fut.done():
            return
        start = position[0]
        try:
            sent = sock.send(view[start:])
        except (BlockingIOError, InterruptedError):
            return
        except (SystemExit, KeyboardInterrupt):
            raise
        except BaseException as exc:
            fut.set_exception(exc)
            return
        start += sent
        if start == len(view):
            fut.set_result(None)
        else:
            position[0] = start

    async def sock_sendto(self, sock: socket.socket, data: Any, address: Any) -> int:
        """Send a datagram to ``address``; the number of bytes sent."""
        return await self._now_or_when_ready(sock, "sendto", (data, address), readable=False)

    # ------------------------------------------------------ connect/accept

    async def sock_connect(self, sock: socket.socket, address: Any) -> None:
        """Connect the non-blocking ``sock`` to ``address`` (resolved first
        for TCP when it is a name)."""
        self._check_nonblocking(sock)
        if sock.family in (socket.AF_INET, socket.AF_INET6):
            resolved = await self._ensure_resolved(  # type: ignore[attr-defined]
                address, family=sock.family, type=sock.type, proto=sock.proto, loop=self)
            address = resolved[0][4]
        fut = self.create_future()  # type: ignore[attr-defined]
        self._connect_now(fut, sock, address, UNIX_RETRY_INITIAL)
        try:
            return await fut
        finally:
            fut = None  # break the cycle through the traceback

    def _connect_now(self, fut: futures.Future[Any], sock: socket.socket, address: Any, retry: float) -> None:
        if fut.done():
            return
        try:
            sock.connect(address)
        except (BlockingIOError, InterruptedError) as exc:
            if sock.family == socket.AF_UNIX and exc.errno == errno.EAGAIN:
                # Full backlog: the socket is still unconnected (see above).
                timer = self.call_later(  # type: ignore[attr-defined]
                    retry, self._connect_now, fut, sock, address, min(retry * 2, UNIX_RETRY_MAX))
                fut.add_done_callback(lambda _: timer.cancel())
                return
            self._wait_writable(fut, sock, _retry_call, _connect_outcome, address)
        except (SystemExit, KeyboardInterrupt):
            raise
        except BaseException as exc:
            fut.set_exception(exc)
        else:
            fut.set_result(None)
        finally:
            del fut  # the error's traceback keeps this frame: see _retry_call

    async def sock_accept(self, sock: socket.socket) -> tuple[socket.socket, Any]:
        """Accept one connection: ``(conn, address)``, ``conn`` non-blocking."""
        self._check_nonblocking(sock)
        try:
            return _accept_nonblocking(sock)
        except (BlockingIOError, InterruptedError):
            pass
        fut = self.create_future()  # type: ignore[attr-defined]
        # Readiness can be stale (another acceptor took the connection): the
        # retry then sees EAGAIN again and keeps waiting.
        self._wait_readable(fut, sock, _retry_call, _accept_nonblocking)
        return await fut

    # ------------------------------------------------------------ sendfile

    async def _sock_sendfile_native(self, sock: socket.socket, file: Any, offset: int, count: int | None) -> int:
        """``os.sendfile`` from ``file`` to ``sock``: zero-copy."""
        try:
            fileno = file.fileno()
        except (AttributeError, OSError) as err:
            raise exceptions.SendfileNotAvailableError("not a regular file") from err
        try:
            size = os.fstat(fileno).st_size
        except OSError as err:
            raise exceptions.SendfileNotAvailableError("not a regular file") from err
        blocksize = count if count else size
        if not blocksize:
            return 0  # an empty file
        fut = self.create_future()  # type: ignore[attr-defined]
        fd = sock.fileno()
        self._ensure_fd_no_transport(fd)  # type: ignore[attr-defined]
        fut.add_done_callback(functools.partial(self._sendfile_cancelled, sock))
        self._sendfile_step(fut, sock, fileno, offset, count, blocksize, 0)
        return await fut

    def _sendfile_cancelled(self, sock: socket.socket, fut: futures.Future[Any]) -> None:
        if fut.cancelled() and sock.fileno() >= 0:
            self.remove_writer(sock.fileno())  # type: ignore[attr-defined]

    def _sendfile_step(self, fut: futures.Future[Any], sock: socket.socket, fileno: int, offset: int,
                       count: int | None, blocksize: int, total: int) -> None:
        if fut.cancelled():
            _restore_file_position(fileno, offset)
            return
        if count:
            blocksize = count - total
            if blocksize <= 0:
                self.remove_writer(sock.fileno())  # type: ignore[attr-defined]
                _restore_file_position(fileno, offset)
                fut.set_result(total)
                return
        try:
            sent = os.sendfile(sock.fileno(), fileno, offset, blocksize)
        except (BlockingIOError, InterruptedError):
            sent = -1
        except OSError as exc:
            self.remove_writer(sock.fileno())  # type: ignore[attr-defined]
            _restore_file_position(fileno, offset)
            if total == 0:
                # Nothing sent: the file is not one sendfile can read (the
                # caller falls back to read + send).
                fut.set_exception(exceptions.SendfileNotAvailableError("os.sendfile call failed"))
            elif exc.errno == errno.ENOTCONN and type(exc) is not ConnectionError:
                error = ConnectionError("socket is not connected", errno.ENOTCONN)
                error.__cause__ = exc
                fut.set_exception(error)
            else:
                fut.set_exception(exc)
            del fut  # the error's traceback keeps this frame: see _retry_call
            return
        except (SystemExit, KeyboardInterrupt):
            raise
        except BaseException as exc:
            self.remove_writer(sock.fileno())  # type: ignore[attr-defined]
            _restore_file_position(fileno, offset)
            fut.set_exception(exc)
            del fut  # (as above)
            return
        if sent == 0:  # end of file
            self.remove_writer(sock.fileno())  # type: ignore[attr-defined]
            _restore_file_position(fileno, offset)
            fut.set_result(total)
            return
        if sent > 0:
            offset += sent
            total += sent
        self._add_writer(sock.fileno(), self._sendfile_step, fut, sock, fileno,  # type: ignore[attr-defined]
                         offset, count, blocksize, total)


def _retry_call(fut: futures.Future[Any], sock: socket.socket, method: str | Callable[..., Any], *args: Any) -> None:
    """A watcher's callback: retry ``sock.method(*args)`` (or
    ``method(sock, *args)`` for a function) and settle ``fut``. A method is
    looked up on every try, not bound once: a wrapper socket (or a test's
    mock) may change it between tries."""
    if fut.done():
        return
    try:
        result = method(sock, *args) if callable(method) else getattr(sock, method)(*args)
    except (BlockingIOError, InterruptedError):
        return  # spurious readiness: wait for the next event
    except (SystemExit, KeyboardInterrupt):
        raise
    except BaseException as exc:
        fut.set_exception(exc)
    else:
        fut.set_result(result)
    finally:
        # The error's traceback keeps this frame, and the frame would keep
        # fut, which keeps the error: a cycle that outlives the failure until
        # the garbage collector runs (asyncio's _sock_connect_cb drops it the
        # same way; anyio's suite checks a refused connect leaves none).
        del fut


def _connect_outcome(sock: socket.socket, address: Any) -> None:
    """How a non-blocking connect ended, once the socket is writable: SO_ERROR
    (read once: reading clears it) is 0, or the errno, raised as reactor's
    connect errors classify it."""
    err = sock.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR)
    if err:
        raise connect_error(err, _show(address))


def _accept_nonblocking(sock: socket.socket) -> tuple[socket.socket, Any]:
    conn, address = sock.accept()
    conn.setblocking(False)
    return conn, address


def _restore_file_position(fileno: int, offset: int) -> None:
    # sendfile does not move the file position; leave it where a read would
    # have (at ``offset``, past what was sent), so the caller sees the same
    # state on both paths -- also when nothing was sent (asyncio did that
    # only after a byte was sent until 3.13.x and 3.14.x fixed it).
    os.lseek(fileno, offset, os.SEEK_SET)


def _check_not_ssl(sock: Any) -> None:
    import ssl

    if isinstance(sock, ssl.SSLSocket):
        raise TypeError("Socket cannot be of type SSLSocket")


def _show(address: Any) -> str:
    if isinstance(address, tuple) and len(address) >= 2:
        host, port = address[0], address[1]
        return f"[{host}]:{port}" if ":" in str(host) else f"{host}:{port}"
    return str(address)
