"""A minimal HTTP/1.1 server protocol, enough for curl, ab and wrk.

The parser is sans-IO (``RequestParser.feed(bytes) -> [Request]``): it knows
nothing of sockets, so it is tested on byte strings alone. It handles
pipelined requests, ``Content-Length`` bodies (read and dropped), HTTP/1.0
vs 1.1 keep-alive defaults and ``Connection: close``. Anything else it refuses
with the status a client can act on: 400 malformed, 405 method, 411/501
bodies it cannot frame, 431 headers over 16 KiB.
"""

from __future__ import annotations

import functools
import os
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from ..protocols import Protocol

if TYPE_CHECKING:
    from .._net.transport import Transport

__all__ = ["Request", "RequestParser", "HttpError", "HttpProtocol"]

#: request line plus headers; more is refused (431) so a client cannot make
#: the server buffer without limit
MAX_HEAD = 16 * 1024
#: bodies we read and drop; larger ones are refused (413)
MAX_BODY = 1024 * 1024


class HttpError(Exception):
    """A request the parser refuses, with the status to answer.

    ``requests`` holds the complete requests that the same ``feed()`` parsed
    before the refused one: pipelined requests are answered in order, so they
    still get their responses before the error."""

    def __init__(self, status: int, reason: str) -> None:
        super().__init__(f"{status} {reason}")
        self.status = status
        self.reason = reason
        self.requests: list[Request] = []


@dataclass
class Request:
    method: str
    target: str
    version: str
    headers: dict[str, str] = field(default_factory=dict)

    @property
    def keep_alive(self) -> bool:
        connection = self.headers.get("connection", "").lower()
        if self.version == "HTTP/1.0":
            return "keep-alive" in connection
        return "close" not in connection


class RequestParser:
    """Feed bytes, get complete requests; raises ``HttpError``."""

    def __init__(self) -> None:
        self._buffer = bytearray()
        self._body_left = 0

    def feed(self, data: bytes) -> list[Request]:
        self._buffer += data
        requests: list[Request] = []
        try:
            self._parse(requests)
        except HttpError as exc:
            exc.requests = requests
            raise
        return requests

    def _parse(self, requests: list[Request]) -> None:
        while True:
            if self._body_left:
                dropped = min(self._body_left, len(self._buffer))
                del self._buffer[:dropped]
                self._body_left -= dropped
                if self._body_left:
                    return
            end = self._buffer.find(b"\r\n\r\n")
            if end < 0:
                # The buffer may end with the first 3 bytes of the terminator:
                # only past that is the head surely too large.
                if len(self._buffer) > MAX_HEAD + 3:
                    raise HttpError(431, "Request Header Fields Too Large")
                return
            if end > MAX_HEAD:
                raise HttpError(431, "Request Header Fields Too Large")
            head = bytes(self._buffer[:end])
            del self._buffer[: end + 4]
            request = self._parse_head(head)
            self._body_left = self._body_length(request)
            requests.append(request)

    @staticmethod
    def _parse_head(head: bytes) -> Request:
        try:
            text = head.decode("latin-1")
        except UnicodeDecodeError:  # pragma: no cover - latin-1 decodes everything
            raise HttpError(400, "Bad Request")
        lines = text.split("\r\n")
        parts = lines[0].split(" ")
        if len(parts) != 3 or not parts[2].startswith("HTTP/1."):
            raise HttpError(400, "Bad Request")
        headers = {}
        for line in lines[1:]:
            name, sep, value = line.partition(":")
            if not sep or not name or name != name.strip():
                raise HttpError(400, "Bad Request")
            headers[name.lower()] = value.strip()
        return Request(parts[0], parts[1], parts[2], headers)

    @staticmethod
    def _body_length(request: Request) -> int:
        if "transfer-encoding" in request.headers:
            raise HttpError(501, "Not Implemented")
        length = request.headers.get("content-length")
        if length is None:
            return 0
        # isdigit() alone admits '²' and other Unicode digits, and int() of a
        # few thousand digits raises ValueError: only short ASCII numbers.
        if not (length.isascii() and length.isdigit()) or len(length) > 12:
            raise HttpError(400, "Bad Request")
        if int(length) > MAX_BODY:
            raise HttpError(413, "Content Too Large")
        return int(length)


def response(status: int, reason: str, body: bytes, keep_alive: bool, head_only: bool = False) -> bytes:
    """A complete HTTP/1.1 response (built once per process for each shape)."""
    return _response(_pid, status, reason, body, keep_alive, head_only)


@functools.lru_cache(maxsize=64)
def _response(pid: int, status: int, reason: str, body: bytes, keep_alive: bool, head_only: bool) -> bytes:
    headers = (
        f"HTTP/1.1 {status} {reason}\r\n"
        f"Content-Type: text/plain\r\n"
        f"Content-Length: {len(body)}\r\n"
        f"X-Reactor-Pid: {pid}\r\n"
        f"Connection: {'keep-alive' if keep_alive else 'close'}\r\n\r\n"
    ).encode("ascii")
    return headers if head_only else headers + body


def _remember_pid() -> None:
    global _pid
    _pid = os.getpid()


# getpid() is a syscall (glibc no longer caches it): once, and again after a fork.
_pid = os.getpid()
os.register_at_fork(after_in_child=_remember_pid)


class HttpProtocol(Protocol):
    """Answers ``GET`` and ``HEAD`` with 200 and a short body; the
    ``X-Reactor-Pid`` header names the serving process (useful with
    ``serve --workers``)."""

    body = b"Hello from reactor\n"

    def connection_made(self, transport: Transport) -> None:
        self.transport = transport
        self.parser = RequestParser()

    def data_received(self, data: bytes) -> None:
        error = None
        try:
            requests = self.parser.feed(data)
        except HttpError as exc:
            requests, error = exc.requests, exc
        for request in requests:
            if request.method in ("GET", "HEAD"):
                self.transport.write(
                    response(200, "OK", self.body, request.keep_alive, head_only=request.method == "HEAD")
                )
            else:
                self.transport.write(response(405, "Method Not Allowed", b"Method Not Allowed\n", False))
                self.transport.close()
                return
            if not request.keep_alive:
                self.transport.close()
                return
        if error is not None:
            self.transport.write(response(error.status, error.reason, error.reason.encode() + b"\n", False))
            self.transport.close()

    # A client that pipelines requests and does not read the responses would
    # otherwise grow the write buffer without limit: stop reading while it is
    # over the high-water mark (the kernel's buffers then slow the client).
    def pause_writing(self) -> None:
        self.transport.pause_reading()

    def resume_writing(self) -> None:
        self.transport.resume_reading()
