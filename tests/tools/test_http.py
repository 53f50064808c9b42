"""The HTTP/1.1 stock protocol: the sans-IO parser on byte strings, then
HttpProtocol over real sockets (a blocking client, and curl)."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import threading
from collections.abc import Callable
from typing import Any

import pytest

import reactor
from reactor._net.transport import DEFAULT_HIGH_WATER, READ_SIZE
from reactor.tools.http import MAX_BODY, MAX_HEAD, HttpError, HttpProtocol, Request, RequestParser, response

from ..support import BackgroundReader, Clients, Factory, run_until

# ---------------------------------------- helpers used by this suite only

class LoopThread:
    """Runs a reactor in a background thread, so the test's own thread can be
    a blocking client (or wait for curl). Only the loop's thread touches the
    reactor while it runs; ``call`` runs a function there and returns its
    result."""

    def __init__(self, loop: reactor.Reactor) -> None:
        self.loop = loop
        self.thread = threading.Thread(target=loop.run, daemon=True)

    def __enter__(self) -> LoopThread:
        self.thread.start()
        return self

    def call(self, fn: Callable[[], Any], timeout: float = 5.0) -> Any:
        done = threading.Event()
        box: list[Any] = []

        def run() -> None:
            try:
                box.append(fn())
            finally:
                done.set()

        self.loop.call_soon_threadsafe(run)
        assert done.wait(timeout), "the loop did not run the call"
        return box[0]

    def __exit__(self, *exc_info: Any) -> None:
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(10)
        assert not self.thread.is_alive(), "loop thread did not stop"


BODY = HttpProtocol.body


def feed_all(data: bytes) -> list[Request]:
    return RequestParser().feed(data)


def feed_bytewise(data: bytes) -> list[Request]:
    parser = RequestParser()
    requests = []
    for i in range(len(data)):
        requests += parser.feed(data[i:i + 1])
    return requests


def refused(data: bytes) -> int:
    with pytest.raises(HttpError) as info:
        RequestParser().feed(data)
    return info.value.status


# -------------------------------------------------------------------- parser

class TestParser:
    def test_a_simple_get(self):
        (req,) = feed_all(b"GET /path?q=1 HTTP/1.1\r\nHost: x\r\nUser-Agent:  curl \r\n\r\n")
        assert (req.method, req.target, req.version) == ("GET", "/path?q=1", "HTTP/1.1")
        assert req.headers == {"host": "x", "user-agent": "curl"}

    def test_incomplete_head_waits(self):
        parser = RequestParser()
        assert parser.feed(b"GET / HTTP/1.1\r\nHost: x\r\n") == []
        assert parser.feed(b"\r\n")[0].target == "/"

    def test_pipelined_requests_in_one_feed(self):
        data = b"GET /a HTTP/1.1\r\n\r\nHEAD /b HTTP/1.1\r\n\r\nGET /c HTTP/1.1\r\nConnection: close\r\n\r\n"
        reqs = feed_all(data)
        assert [(r.method, r.target, r.keep_alive) for r in reqs] == [
            ("GET", "/a", True), ("HEAD", "/b", True), ("GET", "/c", False)]

    def test_content_length_bodies_are_skipped(self):
        data = (b"POST /a HTTP/1.1\r\nContent-Length: 11\r\n\r\nhello\r\n\r\nx"
                b"GET /b HTTP/1.1\r\nContent-Length: 0\r\n\r\nGET /c HTTP/1.1\r\n\r\n")
        assert [r.target for r in feed_all(data)] == ["/a", "/b", "/c"]

    def test_body_split_across_feeds(self):
        parser = RequestParser()
        assert len(parser.feed(b"PUT / HTTP/1.1\r\nContent-Length: 10\r\n\r\n01234")) == 1
        assert parser.feed(b"567") == []
        assert parser.feed(b"89GET /next HTTP/1.1\r\n\r\n")[0].target == "/next"

    @pytest.mark.parametrize("data", [
        b"GET / HTTP/1.1\r\nHost: a\r\nX-Long: " + b"v" * 1000 + b"\r\n\r\nGET /2 HTTP/1.0\r\n\r\n",
        b"POST / HTTP/1.1\r\nContent-Length: 7\r\n\r\n\r\n\r\n\r\nxGET /after HTTP/1.1\r\n\r\n",
        b"GET /" + b"p" * (MAX_HEAD - len(b"GET / HTTP/1.1")) + b" HTTP/1.1\r\n\r\n",  # exactly MAX_HEAD
    ], ids=["headers", "body-looks-like-terminator", "head-of-max-size"])
    def test_any_split_gives_the_same_requests(self, data):
        whole = feed_all(data)
        assert whole
        assert feed_bytewise(data) == whole

    def test_head_of_exactly_max_size_is_accepted(self):
        target = b"/" + b"p" * (MAX_HEAD - len(b"GET / HTTP/1.1"))
        head = b"GET " + target + b" HTTP/1.1"
        assert len(head) == MAX_HEAD
        assert feed_all(head + b"\r\n\r\n")[0].target == target.decode()
        assert feed_bytewise(head + b"\r\n\r\n")[0].target == target.decode()
        assert refused(b"GET /p" + head[5:] + b"\r\n\r\n") == 431  # one byte more

    @pytest.mark.parametrize("version, connection, keep_alive", [
        ("HTTP/1.1", None, True),
        ("HTTP/1.1", "close", False),
        ("HTTP/1.1", "Close", False),
        ("HTTP/1.1", "keep-alive", True),
        ("HTTP/1.0", None, False),
        ("HTTP/1.0", "keep-alive", True),
        ("HTTP/1.0", "Keep-Alive", True),
        ("HTTP/1.0", "close", False),
    ])
    def test_keep_alive_rules(self, version, connection, keep_alive):
        head = f"GET / {version}\r\n"
        if connection:
            head += f"Connection: {connection}\r\n"
        (req,) = feed_all((head + "\r\n").encode())
        assert req.keep_alive is keep_alive

    @pytest.mark.parametrize("data", [
        b"GET /\r\n\r\n",
        b"GET / HTTP/1.1 extra\r\n\r\n",
        b"GET / FTP/1.0\r\n\r\n",
        b"GET / HTTP/2.0\r\n\r\n",
        b"GET / HTTP/1.1\r\nno colon here\r\n\r\n",
        b"GET / HTTP/1.1\r\n: empty name\r\n\r\n",
        b"GET / HTTP/1.1\r\nName : space before colon\r\n\r\n",
        b"GET / HTTP/1.1\r\n folded: header\r\n\r\n",
        b"POST / HTTP/1.1\r\nContent-Length: abc\r\n\r\n",
        b"POST / HTTP/1.1\r\nContent-Length: -1\r\n\r\n",
        b"\r\n\r\n",
    ])
    def test_malformed_is_400(self, data):
        assert refused(data) == 400

    def test_oversized_head_is_431(self):
        assert refused(b"GET / HTTP/1.1\r\nX: " + b"a" * MAX_HEAD) == 431
        assert refused(b"GET / HTTP/1.1\r\nX: " + b"a" * MAX_HEAD + b"\r\n\r\n") == 431

    def test_oversized_head_fed_slowly_is_431_before_the_terminator(self):
        parser = RequestParser()
        parser.feed(b"GET / HTTP/1.1\r\n")
        with pytest.raises(HttpError) as info:
            for _ in range(MAX_HEAD // 100 + 2):
                parser.feed(b"X-Pad: " + b"a" * 91 + b"\r\n")
        assert info.value.status == 431

    def test_body_framing_refusals(self):
        assert refused(b"POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n") == 501
        assert refused(b"POST / HTTP/1.1\r\nContent-Length: %d\r\n\r\n" % (MAX_BODY + 1)) == 413

    def test_requests_before_an_error_are_not_lost(self):
        with pytest.raises(HttpError) as info:
            RequestParser().feed(b"GET /ok HTTP/1.1\r\n\r\nBROKEN\r\n\r\n")
        assert info.value.status == 400
        assert [r.target for r in info.value.requests] == ["/ok"]

    def test_response_bytes(self):
        raw = response(200, "OK", b"hi", keep_alive=True)
        head, _, body = raw.partition(b"\r\n\r\n")
        assert head.startswith(b"HTTP/1.1 200 OK\r\n") and body == b"hi"
        assert b"Content-Length: 2" in head and b"Connection: keep-alive" in head
        head_only = response(200, "OK", b"hi", keep_alive=False, head_only=True)
        assert head_only.endswith(b"\r\n\r\n") and b"Content-Length: 2" in head_only
        assert b"Connection: close" in head_only


# ---------------------------------------------------------- over real sockets

def read_response(f, head_only=False):
    """(status, headers, body) of one response from a file object."""
    status_line = f.readline()
    assert status_line, "EOF instead of a response"
    version, status, _ = status_line.decode().split(" ", 2)
    assert version == "HTTP/1.1"
    headers = {}
    while True:
        line = f.readline().decode()
        if line == "\r\n":
            break
        name, _, value = line.partition(":")
        headers[name.lower()] = value.strip()
    body = b"" if head_only else f.read(int(headers["content-length"]))
    return int(status), headers, body


@pytest.fixture
def http(loop):
    """An HttpProtocol server and a loop running in a thread; yields a
    function that opens client connections (closed at the end)."""
    factory = Factory(HttpProtocol)
    lst = loop.listen(factory)
    pool = Clients()
    files = []

    def client():
        sock = pool.connect(lst.address)
        f = sock.makefile("rb")
        files.append(f)
        return sock, f

    client.listener = lst
    client.factory = factory
    with LoopThread(loop):
        yield client
    for f in files:
        f.close()
    pool.close_all()


class TestHttpProtocol:
    def test_get_keeps_the_connection_alive(self, http):
        sock, f = http()
        for _ in range(3):
            sock.sendall(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
            status, headers, body = read_response(f)
            assert (status, body) == (200, BODY)
            assert headers["connection"] == "keep-alive"
            assert headers["content-length"] == str(len(BODY))
            assert headers["x-reactor-pid"] == str(os.getpid())
        assert len(http.factory.protocols) == 1

    def test_head_has_no_body(self, http):
        sock, f = http()
        sock.sendall(b"HEAD / HTTP/1.1\r\n\r\nGET / HTTP/1.1\r\n\r\n")
        status, headers, _ = read_response(f, head_only=True)
        assert status == 200 and headers["content-length"] == str(len(BODY))
        # no body followed the HEAD's head: the next bytes are the GET's response
        status, _, body = read_response(f)
        assert (status, body) == (200, BODY)

    def test_pipelined_requests_are_answered_in_order(self, http):
        sock, f = http()
        sock.sendall(b"GET /1 HTTP/1.1\r\n\r\nHEAD /2 HTTP/1.1\r\n\r\nGET /3 HTTP/1.1\r\nConnection: close\r\n\r\n")
        assert read_response(f)[0] == 200
        status, headers, _ = read_response(f, head_only=True)
        assert status == 200
        status, headers, body = read_response(f)
        assert (status, headers["connection"], body) == (200, "close", BODY)
        assert f.read() == b""  # closed after the last

    @pytest.mark.parametrize("request_head, closes", [
        (b"GET / HTTP/1.0\r\n\r\n", True),
        (b"GET / HTTP/1.0\r\nConnection: keep-alive\r\n\r\n", False),
        (b"GET / HTTP/1.1\r\nConnection: close\r\n\r\n", True),
        (b"GET / HTTP/1.1\r\n\r\n", False),
    ])
    def test_keep_alive_decides_the_close(self, http, request_head, closes):
        sock, f = http()
        sock.sendall(request_head)
        status, headers, body = read_response(f)
        assert (status, body) == (200, BODY)
        assert headers["connection"] == ("close" if closes else "keep-alive")
        if closes:
            assert f.read() == b""
        else:
            sock.sendall(b"GET / HTTP/1.1\r\n\r\n")
            assert read_response(f)[0] == 200

    @pytest.mark.parametrize("request_bytes, status", [
        (b"POST / HTTP/1.1\r\nContent-Length: 3\r\n\r\nabc", 405),
        (b"DELETE / HTTP/1.1\r\n\r\n", 405),
        (b"NONSENSE\r\n\r\n", 400),
        (b"GET / HTTP/1.1\r\nX: " + b"a" * (MAX_HEAD + 10), 431),
        (b"GET / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n", 501),
    ])
    def test_refusals_answer_then_close(self, http, request_bytes, status):
        sock, f = http()
        sock.sendall(request_bytes)
        got, headers, body = read_response(f)
        assert got == status and headers["connection"] == "close"
        assert body.endswith(b"\n")
        assert f.read() == b""

    def test_an_error_after_good_pipelined_requests_answers_them_first(self, http):
        sock, f = http()
        sock.sendall(b"GET /ok HTTP/1.1\r\n\r\nBROKEN\r\n\r\n")
        assert read_response(f)[:1] == (200,)
        assert read_response(f)[0] == 400
        assert f.read() == b""

    def test_curl_gets_200_with_the_body(self, http):
        curl = shutil.which("curl")
        if curl is None:
            pytest.skip("curl is not installed")
        host, port = http.listener.address
        url = f"http://{host}:{port}/"
        out = subprocess.run([curl, "-sS", "--max-time", "10", "-i", url, url], capture_output=True, timeout=20)
        assert out.returncode == 0, out.stderr
        text = out.stdout.replace(b"\r\n", b"\n")
        assert text.count(b"HTTP/1.1 200 OK\n") == 2
        assert text.count(b"\n\n" + BODY) == 2
        assert len(http.factory.protocols) == 1  # curl reused the connection


def test_a_client_that_does_not_read_cannot_grow_the_server_buffer(loop):
    """Pipelined requests from a client that does not read its responses: the
    server stops reading once its write buffer is over the high-water mark,
    so what it buffers is bounded by one read's worth of responses."""
    request = b"GET / HTTP/1.1\r\nX-Pad: " + b"p" * 200 + b"\r\n\r\n"
    count = 3 * (1 << 20) // len(request)
    one_response = len(response(200, "OK", BODY, True))

    class Measured(HttpProtocol):
        peak = 0

        def connection_made(self, transport):
            super().connection_made(transport)
            transport.get_extra_info("socket").setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 4096)

        def data_received(self, data):
            super().data_received(data)
            Measured.peak = max(Measured.peak, self.transport.get_write_buffer_size())

    factory = Factory(Measured)
    lst = loop.listen(factory)
    client = socket.socket()
    client.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    client.settimeout(30)
    client.connect(lst.address)
    try:
        payload = request * (count - 1) + b"GET / HTTP/1.1\r\nConnection: close\r\n\r\n"
        sender = threading.Thread(target=client.sendall, args=(payload,), daemon=True)
        sender.start()
        reader = BackgroundReader(client, delay=0.5)
        run_until(loop, lambda: reader.done, timeout=60)
        sender.join(10)
        reader.join()
        assert reader.error is None
        assert reader.data.count(b"HTTP/1.1 200 OK\r\n") == count
        bound = DEFAULT_HIGH_WATER + (READ_SIZE // len(request) + 2) * one_response
        assert Measured.peak <= bound, (Measured.peak, bound)
    finally:
        client.close()


@pytest.mark.parametrize("length", ["\u00b2", "1" * 5000, "-1", "+5", " 5x"])
def test_content_length_that_is_not_a_short_ascii_number_is_400(length):
    head = f"POST / HTTP/1.1\r\nContent-Length: {length}\r\n\r\n".encode("latin-1", "replace")
    with pytest.raises(HttpError) as info:
        RequestParser().feed(head)
    assert info.value.status == 400


def test_responses_name_this_process():
    assert f"X-Reactor-Pid: {os.getpid()}".encode() in response(200, "OK", b"x", True)
