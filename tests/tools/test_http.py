"""The HTTP/1.1 stock protocol: the sans-IO parser on byte strings (one test
or more per RFC 9112 rule, each on raw bytes, whole and a byte at a time),
the responses, then HttpProtocol over real sockets (a blocking client, and
curl), where the smuggling and bare-LF cases are checked end to end."""

from __future__ import annotations

import email.utils
import os
import re
import shutil
import socket
import subprocess
import threading
import time
from collections.abc import Callable
from typing import Any

import pytest

import reactor
from reactor._core.states import TransitionError, check_table
from reactor._net.transport import DEFAULT_HIGH_WATER, READ_SIZE
from reactor.tools import http as http_module
from reactor.tools.http import (
    MAX_BODY,
    MAX_CHUNK_LINE,
    MAX_HEAD,
    HeaderTimeout,
    HttpError,
    HttpProtocol,
    ParserEvent,
    ParserState,
    Request,
    RequestParser,
    http_date,
    response,
)

from ..support import BackgroundReader, Clients, Factory, VirtualClock, record_moves, run_until

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


def refused_bytewise(data: bytes) -> tuple[int, int]:
    """(status, how many bytes had been fed when the parser refused)."""
    parser = RequestParser()
    for i in range(len(data)):
        try:
            parser.feed(data[i:i + 1])
        except HttpError as exc:
            return exc.status, i + 1
    pytest.fail("the parser never refused")


def get(target: str = "/", *fields: str, version: str = "HTTP/1.1", method: str = "GET") -> bytes:
    """A request head with a Host and ``fields`` ("Name: value")."""
    lines = [f"{method} {target} {version}", "Host: x", *fields]
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")


# -------------------------------------------------------------------- parser

class TestParser:
    def test_a_simple_get(self):
        (req,) = feed_all(b"GET /path?q=1 HTTP/1.1\r\nHost: x\r\nUser-Agent:  curl \r\n\r\n")
        assert req == Request(b"GET", b"/path?q=1", b"HTTP/1.1", True)

    def test_incomplete_head_waits(self):
        parser = RequestParser()
        assert parser.feed(b"GET / HTTP/1.1\r\nHost: x\r\n") == []
        assert parser.feed(b"\r\n")[0].target == b"/"

    def test_pipelined_requests_in_one_feed(self):
        data = get("/a") + get("/b", method="HEAD") + get("/c", "Connection: close")
        reqs = feed_all(data)
        assert [(r.method, r.target, r.keep_alive) for r in reqs] == [
            (b"GET", b"/a", True), (b"HEAD", b"/b", True), (b"GET", b"/c", False)]

    def test_content_length_bodies_are_skipped(self):
        data = (get("/a", "Content-Length: 11") + b"hello\r\n\r\nx"
                + get("/b", "Content-Length: 0") + get("/c"))
        assert [r.target for r in feed_all(data)] == [b"/a", b"/b", b"/c"]

    def test_a_request_comes_out_once_its_body_is_complete(self):
        parser = RequestParser()
        assert parser.feed(get("/", "Content-Length: 10") + b"01234") == []
        assert parser.feed(b"567") == []
        assert [r.target for r in parser.feed(b"89" + get("/next"))] == [b"/", b"/next"]

    @pytest.mark.parametrize("data", [
        b"GET / HTTP/1.1\r\nHost: a\r\nX-Long: " + b"v" * 1000 + b"\r\n\r\nGET /2 HTTP/1.0\r\n\r\n",
        get("/", "Content-Length: 7") + b"\r\n\r\n\r\nx" + get("/after"),
        b"GET /" + b"p" * (MAX_HEAD - len(b"GET / HTTP/1.0")) + b" HTTP/1.0\r\n\r\n",  # exactly MAX_HEAD
        get("/", "Transfer-Encoding: chunked") + b"5;a=b\r\nhello\r\n0\r\nX-T: 1\r\n\r\n" + get("/2"),
        b"\r\n" + get("/after-an-empty-line"),
        get("/", "Connection: keep-alive", "Content-Length: 2, 2") + b"ab" + get("/3", version="HTTP/1.0"),
    ], ids=["headers", "body-looks-like-terminator", "head-of-max-size", "chunked", "empty-line", "general-path"])
    def test_any_split_gives_the_same_requests(self, data):
        whole = feed_all(data)
        assert whole
        assert feed_bytewise(data) == whole

    def test_head_of_exactly_max_size_is_accepted(self):
        target = b"/" + b"p" * (MAX_HEAD - len(b"GET / HTTP/1.0"))
        head = b"GET " + target + b" HTTP/1.0"
        assert len(head) == MAX_HEAD
        assert feed_all(head + b"\r\n\r\n")[0].target == target
        assert feed_bytewise(head + b"\r\n\r\n")[0].target == target
        assert refused(b"GET /p" + head[5:] + b"\r\n\r\n") == 431  # one byte more

    @pytest.mark.parametrize("version, connection, keep_alive", [
        ("HTTP/1.1", None, True),
        ("HTTP/1.1", "close", False),
        ("HTTP/1.1", "Close", False),
        ("HTTP/1.1", "keep-alive", True),
        ("HTTP/1.1", "keep-alive, close", False),
        ("HTTP/1.1", "closed", True),  # a token, not a substring
        ("HTTP/1.0", None, False),
        ("HTTP/1.0", "keep-alive", True),
        ("HTTP/1.0", "Keep-Alive", True),
        ("HTTP/1.0", "close", False),
        ("HTTP/1.0", "keep-alive, close", False),
        ("HTTP/1.0", "keep-alive-ish", False),
        ("HTTP/1.2", None, True),  # a later minor version is read as 1.1 (RFC 9110 §2.5)
    ])
    def test_keep_alive_rules(self, version, connection, keep_alive):
        fields = [f"Connection: {connection}"] if connection else []
        (req,) = feed_all(get("/", *fields, version=version))
        assert req.keep_alive is keep_alive
        assert req.version == version.encode()

    @pytest.mark.parametrize("version, first, second", [
        ("HTTP/1.0", "close", "keep-alive"),
        ("HTTP/1.0", "keep-alive", "close"),
        ("HTTP/1.1", "close", "upgrade"),
    ])
    def test_two_connection_lines_are_one_list(self, version, first, second):
        # the close in either line counts (a dict of headers would keep the last)
        (req,) = feed_all(get("/", f"Connection: {first}", f"Connection: {second}", version=version))
        assert req.keep_alive is False

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

    def test_a_head_fed_a_byte_at_a_time_costs_linear_time(self):
        # Each feed looks only at the new bytes: a quadratic rescan of a 16 KiB
        # head would take about 10x this bound on a slow machine.
        data = b"GET / HTTP/1.1\r\nHost: x\r\n" + b"X-Pad: " + b"a" * (MAX_HEAD - 40) + b"\r\n\r\n"
        start = time.process_time()
        assert len(feed_bytewise(data)) == 1
        assert time.process_time() - start < 2.0

    def test_requests_before_an_error_are_not_lost(self):
        with pytest.raises(HttpError) as info:
            RequestParser().feed(get("/ok") + b"BROKEN\r\n\r\n")
        assert info.value.status == 400
        assert [r.target for r in info.value.requests] == [b"/ok"]

    def test_after_a_refusal_everything_is_refused(self):
        parser = RequestParser()
        with pytest.raises(HttpError):
            parser.feed(b"BROKEN\r\n\r\n")
        with pytest.raises(HttpError) as info:
            parser.feed(get("/next"))  # not read as a request
        assert info.value.status == 400 and info.value.requests == []


class TestStates:
    """The parser as a state machine (reactor/tools/http.py: _TRANSITIONS, _HANDLERS)."""

    def test_the_table_is_whole_and_every_reading_state_has_its_handler(self):
        check_table(http_module._TRANSITIONS, ParserState, ParserEvent)
        assert set(http_module._HANDLERS) == set(ParserState) - {ParserState.FAILED}
        assert all(row[ParserEvent.REFUSE] is ParserState.FAILED
                   for state, row in http_module._TRANSITIONS.items() if state is not ParserState.FAILED)

    def test_a_chunked_request_then_a_length_one_move_through_the_table(self, monkeypatch):
        moves = record_moves(monkeypatch, RequestParser)
        data = chunked(b"5\r\nhello\r\n0\r\nX-T: 1\r\n\r\n") + get("/p", "Content-Length: 3") + b"abc" + get("/last")
        for feed in (feed_all, feed_bytewise):  # the same moves however the bytes arrive
            moves.clear()
            assert [r.target for r in feed(data)] == [b"/c", b"/p", b"/last"]
            assert moves == [
                ("head", "chunked", "chunk-size"), ("chunk-size", "chunk", "chunk-data"),
                ("chunk-data", "data-done", "chunk-end"), ("chunk-end", "crlf", "chunk-size"),
                ("chunk-size", "last-chunk", "trailers"), ("trailers", "body-done", "head"),
                ("head", "length", "length-body"), ("length-body", "body-done", "head"),
            ]

    def test_a_refusal_is_final_and_an_illegal_move_raises(self):
        parser = RequestParser()
        with pytest.raises(TransitionError, match="no move from state head on crlf"):
            parser._move(ParserEvent.CRLF)
        with pytest.raises(HttpError):
            parser.feed(b"GET / HTTP/1.1\r\n\n")
        assert parser._state is ParserState.FAILED
        with pytest.raises(HttpError):
            parser.feed(get("/"))
        with pytest.raises(TransitionError, match="no move from state failed on body-done"):
            parser._move(ParserEvent.BODY_DONE)


class TestRequestLine:
    @pytest.mark.parametrize("line", [
        b"GET /",
        b"GET / HTTP/1.1 extra",
        b"GET / FTP/1.0",
        b"GET / HTTP/2.0",  # major version 2 is not this parser's
        b"PRI * HTTP/2.0",  # the HTTP/2 connection preface
        b"GET / HTTP/0.9",
        b"GET / HTTP/1.banana",
        b"GET / HTTP/1.",
        b"GET / HTTP/1.10",
        b"GET / HTTP/11",
        b"GET / http/1.1",  # the version is case-sensitive (§2.3)
        b"GET  / HTTP/1.1",  # single spaces only
        b"GET /  HTTP/1.1",
        b"GET\t/ HTTP/1.1",
        b" GET / HTTP/1.1",
        b"GET / HTTP/1.1 ",
        b"G(T / HTTP/1.1",  # the method is a token
        b"GET /a\x00b HTTP/1.1",  # the target is visible ASCII
        b"GET /a\x7fb HTTP/1.1",
        b"GET /caf\xe9 HTTP/1.1",
        b"",
    ])
    def test_malformed_request_line_is_400(self, line):
        assert refused(line + b"\r\nHost: x\r\n\r\n") == 400

    def test_one_empty_line_before_the_request_line_is_ignored(self):
        assert feed_all(b"\r\n" + get("/a"))[0].target == b"/a"
        assert refused(b"\r\n\r\n" + get("/a")) == 400  # two are not

    def test_a_later_minor_version_is_served_as_http_1_1(self):
        assert refused(b"GET / HTTP/1.7\r\n\r\n") == 400  # no Host, as for 1.1
        assert feed_all(get("/", version="HTTP/1.7"))[0].keep_alive is True


class TestLineEnds:
    """Bare CR and bare LF (RFC 9112 §2.2): 400, as soon as the byte arrives."""

    @pytest.mark.parametrize("data", [
        b"GET / HTTP/1.1\rHost: x\r\n\r\n",
        b"GET /a\rb HTTP/1.1\r\nHost: x\r\n\r\n",
        b"GET / HTTP/1.1\r\nHost: x\r\nX-A: 1\r2\r\n\r\n",
        b"GET / HTTP/1.1\r\nHost: x\r\nX\r-A: 1\r\n\r\n",
        b"GET / HTTP/1.1\r\nHost: x\r\r\n\r\n",
        b"GET / HTTP/1.1\r\nHost: x\r\n\r\r\n\r\n",
    ])
    def test_bare_cr_is_400(self, data):
        assert refused(data) == 400
        status, _ = refused_bytewise(data)
        assert status == 400

    @pytest.mark.parametrize("data", [
        b"GET / HTTP/1.1\nHost: x\n\n",
        b"GET / HTTP/1.1\r\nHost: x\n\n",
        b"GET / HTTP/1.1\r\nHost: x\r\n\n",
        b"GET / HTTP/1.1\r\nHost: x\nX-A: 1\r\n\r\n",
        b"\nGET / HTTP/1.1\r\nHost: x\r\n\r\n",
    ])
    def test_bare_lf_is_400_at_once(self, data):
        # fed whole: refused though no CRLFCRLF ever comes (the old parser
        # waited for 16 KiB)
        assert refused(data) == 400
        status, fed = refused_bytewise(data)
        assert status == 400
        assert data[fed - 1:fed] == b"\n" and data[fed - 2:fed - 1] != b"\r"  # at the bare LF itself

    def test_a_cr_at_the_end_of_a_feed_waits_for_its_lf(self):
        parser = RequestParser()
        assert parser.feed(b"GET / HTTP/1.1\r") == []
        assert parser.feed(b"\nHost: x\r") == []
        assert parser.feed(b"\n\r") == []
        assert len(parser.feed(b"\n")) == 1

    def test_an_lf_right_after_a_body_ending_in_cr_is_bare(self):
        # the LF at the start of the next head is not the body's line end
        data = get("/", "Content-Length: 1") + b"\r" + b"\nGET / HTTP/1.1\r\n"
        assert refused(data) == 400


class TestFieldLines:
    @pytest.mark.parametrize("line", [
        b"no colon here",
        b": empty name",
        b"Name : space before colon",  # §5.1 MUST
        b"Name\t: tab before colon",
        b" folded: header",  # obs-fold (§5.2)
        b"\tfolded: header",
        b"Na me: space in the name",
        b"Na\x00me: NUL in the name",
        b"Na(me): not a tchar",
        b"Na@me: not a tchar",
        b"Na\xe9me: not ASCII",
        b"X-A: NUL \x00 in the value",  # RFC 9110 §5.5
        b"X-A: DEL \x7f in the value",
        b"X-A: \x01",
        b"X-A: \x0b",
        b"X-A: \x1b[31m",
    ])
    def test_malformed_field_line_is_400(self, line):
        assert refused(b"GET / HTTP/1.1\r\nHost: x\r\n" + line + b"\r\n\r\n") == 400
        assert refused(b"GET / HTTP/1.1\r\n" + line + b"\r\nHost: x\r\n\r\n") == 400

    def test_obs_text_and_tabs_in_a_value_are_accepted(self):
        assert len(feed_all(get("/", "X-A: caf\xe9\tau\tlait", "X-Empty:", "X-!#$%&'*+-.^_`|~: tchar"))) == 1

    def test_a_fold_after_a_field_we_act_on_is_400(self):
        assert refused(b"GET / HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\n 5\r\n\r\n") == 400


class TestHost:
    def test_http_1_1_without_host_is_400(self):
        assert refused(b"GET / HTTP/1.1\r\n\r\n") == 400
        assert refused(b"GET / HTTP/1.1\r\nX-Host: x\r\nHostname: x\r\n\r\n") == 400

    def test_http_1_0_without_host_is_served(self):
        (req,) = feed_all(b"GET / HTTP/1.0\r\n\r\n")
        assert req.version == b"HTTP/1.0"

    @pytest.mark.parametrize("version", ["HTTP/1.1", "HTTP/1.0"])
    def test_two_hosts_are_400(self, version):
        assert refused(get("/", "Host: y", version=version)) == 400
        assert refused(get("/", "host: x", version=version)) == 400

    @pytest.mark.parametrize("value", ["a b", "a/b", "a@b", "a:b:c", "a:8080x", "[::1", "\"x\""])
    def test_an_invalid_host_is_400(self, value):
        assert refused(f"GET / HTTP/1.1\r\nHost: {value}\r\n\r\n".encode()) == 400

    @pytest.mark.parametrize("value", ["", "example.com", "127.0.0.1:8080", "[::1]:80", "[fe80::1%25eth0]",
                                       "xn--caf-dma.example", "x:"])
    def test_a_valid_host_is_accepted(self, value):
        for name in ("Host", "host", "HOST"):
            assert len(feed_all(f"GET / HTTP/1.1\r\n{name}: {value} \r\n\r\n".encode())) == 1


class TestContentLength:
    def test_the_smuggling_case_conflicting_lengths_is_400(self):
        # One reader takes 32 (the second request is body), another 0 (it is a
        # request): refused, so no reading of it is answered.
        data = get("/", "Content-Length: 32", "Content-Length: 0") + get("/smuggled")
        with pytest.raises(HttpError) as info:
            RequestParser().feed(data)
        assert info.value.status == 400 and info.value.requests == []
        assert refused(get("/", "Content-Length: 0", "Content-Length: 32")) == 400
        assert refused(get("/", "Content-Length: 5, 7")) == 400

    @pytest.mark.parametrize("fields", [
        ("Content-Length: 5", "Content-Length: 5"),
        ("Content-Length: 5, 5",),
        ("Content-Length: 5,5", "content-length: 05"),
    ])
    def test_identical_values_are_one_value(self, fields):
        # RFC 9110 §8.6 lets a recipient take them as one: they frame the
        # body the same way whoever reads them
        reqs = feed_all(get("/a", *fields) + b"hello" + get("/b"))
        assert [r.target for r in reqs] == [b"/a", b"/b"]

    @pytest.mark.parametrize("value", ["abc", "-1", "+5", "", "5 5", "0x10", "1_0", "5,", ",5", "5;", "1e3",
                                       "\u00b2", "1" * 13])
    def test_a_value_that_is_not_digits_is_400(self, value):
        assert refused(get("/", f"Content-Length: {value}")) == 400

    def test_thirteen_digits_are_400_twelve_are_413(self):
        assert refused(get("/", "Content-Length: " + "9" * 13)) == 400
        assert refused(get("/", "Content-Length: " + "9" * 12)) == 413

    def test_a_body_over_the_limit_is_413(self):
        assert refused(get("/", f"Content-Length: {MAX_BODY + 1}")) == 413
        assert len(feed_all(get("/", f"Content-Length: {MAX_BODY}") + b"x" * MAX_BODY)) == 1

    @pytest.mark.parametrize("fields", [
        ("Content-Length: 5", "Transfer-Encoding: chunked"),
        ("Transfer-Encoding: chunked", "Content-Length: 5"),
        ("Transfer-Encoding: chunked", "Content-Length: 0"),
    ])
    def test_content_length_with_transfer_encoding_is_400(self, fields):
        assert refused(get("/", *fields) + b"0\r\n\r\n") == 400


class TestTransferEncoding:
    @pytest.mark.parametrize("value, status", [
        ("gzip", 400),  # chunked is not final: the length cannot be known (§6.3)
        ("chunked, gzip", 400),
        ("identity", 400),
        ("chunked, chunked", 400),  # chunked once only (§7)
        ("chunked,", 400),
        ("", 400),
        ("chunked;q=1", 400),
        ("\"chunked\"", 400),
        ("gzip, chunked", 501),  # framed, but gzip is a coding we do not implement (§6.1)
        ("deflate,chunked", 501),
    ])
    def test_codings_other_than_a_final_chunked(self, value, status):
        assert refused(get("/", f"Transfer-Encoding: {value}")) == status

    def test_two_lines_are_one_list(self):
        assert refused(get("/", "Transfer-Encoding: gzip", "Transfer-Encoding: chunked")) == 501
        assert refused(get("/", "Transfer-Encoding: chunked", "Transfer-Encoding: chunked")) == 400
        assert refused(get("/", "Transfer-Encoding: chunked", "Transfer-Encoding: gzip")) == 400

    def test_on_http_1_0_it_is_400(self):
        assert refused(get("/", "Transfer-Encoding: chunked", version="HTTP/1.0") + b"0\r\n\r\n") == 400


def chunked(body: bytes, *rest: bytes) -> bytes:
    """A GET with a chunked body, and what follows it."""
    return get("/c", "Transfer-Encoding: chunked") + body + b"".join(rest)


class TestChunked:
    @pytest.mark.parametrize("body", [
        b"5\r\nhello\r\n6\r\n world\r\n0\r\n\r\n",
        b"A\r\n0123456789\r\n0\r\n\r\n",
        b"a\r\n0123456789\r\n000\r\n\r\n",
        b"0005\r\nhello\r\n0\r\n\r\n",
        b"5;name\r\nhello\r\n0;last\r\n\r\n",
        b"5 ; name = value ; other=\"quoted \\\" ; \"\r\nhello\r\n0\r\n\r\n",
        b"5\r\nhello\r\n0\r\nX-Trailer: 1\r\nX-Other: two words\r\n\r\n",
        b"0\r\n\r\n",
        b"2\r\n\r\n\r\n0\r\n\r\n",  # data that looks like line ends
    ])
    def test_chunked_bodies_are_read_and_dropped(self, body):
        data = chunked(body, get("/next"))
        whole = feed_all(data)
        assert [r.target for r in whole] == [b"/c", b"/next"]
        assert feed_bytewise(data) == whole

    def test_the_request_comes_out_when_the_last_chunk_and_trailers_are_in(self):
        parser = RequestParser()
        assert parser.feed(chunked(b"5\r\nhel")) == []
        assert parser.feed(b"lo\r\n0\r\n") == []
        assert parser.feed(b"X-T: 1\r\n") == []
        assert [r.target for r in parser.feed(b"\r\n")] == [b"/c"]

    @pytest.mark.parametrize("body", [
        b"g\r\nhello\r\n0\r\n\r\n",
        b"\r\nhello\r\n0\r\n\r\n",
        b"-5\r\nhello\r\n0\r\n\r\n",
        b"0x5\r\nhello\r\n0\r\n\r\n",
        b"+5\r\nhello\r\n0\r\n\r\n",
        b" 5\r\nhello\r\n0\r\n\r\n",
        b"5 \r\nhello\r\n0\r\n\r\n",  # whitespace only before a ';'
        b"5;\r\nhello\r\n0\r\n\r\n",
        b"5;a=\r\nhello\r\n0\r\n\r\n",
        b"5;a=\"open\r\nhello\r\n0\r\n\r\n",
        b"5;a\x00\r\nhello\r\n0\r\n\r\n",
        b"5\r\nhello!!\r\n0\r\n\r\n",  # the data is longer than its size
        b"5\r\nhellox\n0\r\n\r\n",
        b"5\r\nhello\r\n0\r\nbad trailer\r\n\r\n",
        b"5\r\nhello\r\n0\r\nX-T : 1\r\n\r\n",
        b"5\r\nhello\r\n0\r\nX-T: \x00\r\n\r\n",
    ])
    def test_malformed_chunked_bodies_are_400(self, body):
        assert refused(chunked(body)) == 400
        assert refused_bytewise(chunked(body))[0] == 400

    @pytest.mark.parametrize("body", [
        b"5\nhello\n0\n\n",
        b"5\r\nhello\r\n0\n\n",
        b"5;ext\nhello\r\n0\r\n\r\n",
        b"5\r\nhello\r\n0\r\nX-T: 1\n\n",
        b"5\rhello\r\n0\r\n\r\n",
    ])
    def test_bare_line_ends_in_a_chunked_body_are_400_at_once(self, body):
        # never a wait for a CRLF the client will not send
        assert refused(chunked(body)) == 400

    def test_a_chunk_line_over_the_limit_is_400(self):
        assert refused(chunked(b"5;" + b"a" * MAX_CHUNK_LINE)) == 400
        assert refused(chunked(b"5;" + b"a" * MAX_CHUNK_LINE + b"\r\nhello\r\n0\r\n\r\n")) == 400
        assert len(feed_all(chunked(b"5;" + b"a" * (MAX_CHUNK_LINE - 3) + b"\r\nhello\r\n0\r\n\r\n"))) == 1

    def test_a_body_over_the_limit_is_413_as_soon_as_a_size_says_so(self):
        half = MAX_BODY // 2
        parser = RequestParser()
        parser.feed(chunked(b"%x\r\n" % half + b"x" * half + b"\r\n"))
        with pytest.raises(HttpError) as info:
            parser.feed(b"%x\r\n" % (half + 1))  # no data sent yet
        assert info.value.status == 413
        assert refused(chunked(b"f" * 40 + b"\r\n")) == 413
        body = b"%x\r\n" % half + b"x" * half + b"\r\n"
        assert len(feed_all(chunked(body * 2 + b"0\r\n\r\n"))) == 1  # exactly MAX_BODY

    def test_trailers_over_the_limit_are_431(self):
        assert refused(chunked(b"0\r\nX-T: " + b"a" * MAX_HEAD + b"\r\n\r\n")) == 431
        assert refused(chunked(b"0\r\nX-T: " + b"a" * MAX_HEAD)) == 431


class TestExpectContinue:
    def test_a_head_asking_for_100_continue_whose_body_is_not_in_yet(self):
        parser = RequestParser()
        assert parser.feed(get("/", "Expect: 100-continue", "Content-Length: 5")) == []
        assert parser.awaiting_continue == Request(b"GET", b"/", b"HTTP/1.1", True)
        assert [r.target for r in parser.feed(b"hel")] == []
        assert parser.awaiting_continue is None  # asked once
        assert [r.target for r in parser.feed(b"lo")] == [b"/"]

    def test_chunked_too(self):
        parser = RequestParser()
        parser.feed(get("/", "Transfer-Encoding: chunked", "expect: 100-Continue"))
        assert parser.awaiting_continue is not None

    @pytest.mark.parametrize("data", [
        get("/", "Expect: 100-continue", "Content-Length: 5") + b"hello",  # the body came with it
        get("/", "Expect: 100-continue"),  # no body
        get("/", "Expect: 100-continue", "Content-Length: 5", version="HTTP/1.0"),  # ignored on 1.0
        get("/", "Expect: something-else", "Content-Length: 5"),
    ])
    def test_no_continue_needed(self, data):
        parser = RequestParser()
        parser.feed(data)
        assert parser.awaiting_continue is None


class TestUsualPath:
    """The usual head is read by one regular expression; every other head by
    the general path. On heads both read they must agree."""

    HEADS = [
        get("/"),
        get("/", "User-Agent: curl/8", "Accept: */*"),
        b"GET / HTTP/1.0\r\n\r\n",
        b"GET / HTTP/1.0\r\nUser-Agent: x\r\n\r\n",
        b"\r\nGET / HTTP/1.1\r\nhost: [::1]:80\r\n\r\n",
        b"GET / HTTP/1.1\r\nA: 1\r\nHOST:127.0.0.1:8080  \r\nB: 2\r\n\r\n",
        b"GET / HTTP/1.1\r\nHostx: 1\r\nX-Host: 2\r\nHost: y\r\nConnectionx: close\r\n\r\n",
        b"GET / HTTP/1.1\r\nA: 1\r\n\r\n",
        b"GET / HTTP/1.1\r\nHost: a b\r\n\r\n",
        b"GET / HTTP/1.1\r\nHost: x\r\nHost: x\r\n\r\n",
        b"GET / HTTP/1.1\r\nHost : x\r\n\r\n",
        b"GET / HTTP/1.1\r\nHost: x\r\n Host: y\r\n\r\n",
        b"GET / HTTP/1.1\r\nHost: x\r\nX: \x00\r\n\r\n",
        b"GET / HTTP/1.1\r\nHost: \xe9\r\n\r\n",
        b"HEAD /x HTTP/1.9\r\nHost:\r\n\r\n",
        get("/", "Connection: close"),
        b"GET / HTTP/1.1\r\nConnection: Close \r\nA: 1\r\nHost: x\r\n\r\n",
        b"GET / HTTP/1.0\r\nConnection:Keep-Alive\r\nHost: x\r\n\r\n",
        b"GET / HTTP/1.0\r\nHost: x\r\nConnection: keep-alive\r\n\r\n",
        b"GET / HTTP/1.0\r\nConnection: keep-alive\r\n\r\n",
        b"GET / HTTP/1.1\r\nConnection: keep-alive\r\n\r\n",
        b"GET / HTTP/1.1\r\nConnection: close\r\nHost: x\r\nHost: y\r\n\r\n",
        b"GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\nHost: y\r\n\r\n",
        get("/", "Connection: close", "Connection: keep-alive"),
        get("/", "Connection: keep-alive, close"),
        get("/", "Connection: closed"),
        get("/", "Connection: upgrade"),
        get("/", "Content-Length: 0"),
        get("/", "Expect: 100-continue"),
    ]

    @staticmethod
    def outcome(data: bytes) -> Any:
        try:
            return RequestParser().feed(data)
        except HttpError as exc:
            return exc.status

    @pytest.mark.parametrize("data", HEADS)
    def test_both_paths_agree(self, data, monkeypatch):
        usual = self.outcome(data)
        monkeypatch.setattr(http_module, "_USUAL_HEAD", re.compile(rb"(?!)"))  # matches nothing
        assert self.outcome(data) == usual

    @pytest.mark.parametrize("data, general", [
        (get("/", "User-Agent: x"), False),
        (b"GET / HTTP/1.0\r\nConnection: Keep-Alive\r\nHost: x\r\nAccept: */*\r\n\r\n", False),  # ab -k
        (get("/", "Connection: close"), False),
        (get("/", "Connection: keep-alive, close"), True),
        (get("/", "Content-Length: 0"), True),
    ])
    def test_the_usual_path_is_taken(self, monkeypatch, data, general):
        # so that test_both_paths_agree compares two paths, not one
        monkeypatch.setattr(http_module, "_HEAD", None)  # the general path would fail
        if general:
            with pytest.raises(AttributeError):
                RequestParser().feed(data)
        else:
            assert len(RequestParser().feed(data)) == 1


# ----------------------------------------------------------------- responses

class TestResponses:
    def test_response_bytes(self):
        raw = response(200, "OK", b"hi", keep_alive=True)
        head, _, body = raw.partition(b"\r\n\r\n")
        assert head.startswith(b"HTTP/1.1 200 OK\r\n") and body == b"hi"
        assert b"Content-Length: 2" in head and b"Connection: keep-alive" in head
        head_only = response(200, "OK", b"hi", keep_alive=False, head_only=True)
        assert head_only.endswith(b"\r\n\r\n") and b"Content-Length: 2" in head_only
        assert b"Connection: close" in head_only

    def test_responses_name_this_process(self):
        assert f"X-Reactor-Pid: {os.getpid()}".encode() in response(200, "OK", b"x", True)

    def test_http_date_is_imf_fixdate(self):
        assert http_date(784111777) == "Sun, 06 Nov 1994 08:49:37 GMT"  # RFC 9110 §5.6.7's example
        assert http_date(0) == "Thu, 01 Jan 1970 00:00:00 GMT"
        assert http_date(1709164800.9) == "Thu, 29 Feb 2024 00:00:00 GMT"

    def test_responses_carry_the_date_of_this_second(self):
        before = time.time()
        raw = response(200, "OK", b"x", True)
        after = time.time()
        (date,) = re.findall(rb"\r\nDate: ([^\r]*)\r\n", raw)
        assert date.decode() in {http_date(before), http_date(after)}

    def test_the_date_is_formatted_once_a_second(self, monkeypatch):
        now = [1_000_000_000.25]
        monkeypatch.setattr(http_module, "_wall_clock", lambda: now[0])
        first = response(200, "OK", b"x", True)
        assert b"Date: Sun, 09 Sep 2001 01:46:40 GMT\r\n" in first
        now[0] += 0.5
        assert response(200, "OK", b"x", True) is first  # the same bytes object, not rebuilt
        now[0] += 0.5
        assert b"Date: Sun, 09 Sep 2001 01:46:41 GMT\r\n" in response(200, "OK", b"x", True)
        now[0] -= 3600  # the clock stepped back: so does the date
        assert b"Date: Sun, 09 Sep 2001 00:46:41 GMT\r\n" in response(200, "OK", b"x", True)

    def test_the_protocol_sends_the_date_of_this_second(self, monkeypatch):
        now = [1_000_000_000.0]
        monkeypatch.setattr(http_module, "_wall_clock", lambda: now[0])
        written: list[bytes] = []

        class Transport:
            write = written.append

        protocol = HttpProtocol()
        protocol.connection_made(Transport())
        protocol.data_received(get("/"))
        now[0] += 1
        protocol.data_received(get("/"))
        assert b"01:46:40 GMT" in written[0] and b"01:46:41 GMT" in written[1]

    def test_405_carries_allow(self):
        raw = response(405, "Method Not Allowed", b"x\n", False)
        assert b"\r\nAllow: GET, HEAD\r\n" in raw
        assert b"Allow" not in response(400, "Bad Request", b"x\n", False)


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
    if head_only or int(status) < 200:
        return int(status), headers, b""
    return int(status), headers, f.read(int(headers["content-length"]))


def read_to_eof(sock: socket.socket) -> bytes:
    """Everything until the server closes (the socket's timeout bounds each
    wait: a server that leaves us hanging fails the test)."""
    data = bytearray()
    while chunk := sock.recv(65536):
        data += chunk
    return bytes(data)


def statuses(data: bytes) -> list[int]:
    return [int(status) for status in re.findall(rb"(?:^|\r\n)HTTP/1\.1 (\d{3}) ", data)]


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
            sock.sendall(get("/"))
            status, headers, body = read_response(f)
            assert (status, body) == (200, BODY)
            assert headers["connection"] == "keep-alive"
            assert headers["content-length"] == str(len(BODY))
            assert headers["x-reactor-pid"] == str(os.getpid())
        assert len(http.factory.protocols) == 1

    def test_head_has_no_body(self, http):
        sock, f = http()
        sock.sendall(get("/", method="HEAD") + get("/"))
        status, headers, _ = read_response(f, head_only=True)
        assert status == 200 and headers["content-length"] == str(len(BODY))
        # no body followed the HEAD's head: the next bytes are the GET's response
        status, _, body = read_response(f)
        assert (status, body) == (200, BODY)

    def test_pipelined_requests_are_answered_in_order(self, http):
        sock, f = http()
        sock.sendall(get("/1") + get("/2", method="HEAD") + get("/3", "Connection: close"))
        assert read_response(f)[0] == 200
        status, headers, _ = read_response(f, head_only=True)
        assert status == 200
        status, headers, body = read_response(f)
        assert (status, headers["connection"], body) == (200, "close", BODY)
        assert f.read() == b""  # closed after the last

    @pytest.mark.parametrize("request_head, closes", [
        (b"GET / HTTP/1.0\r\n\r\n", True),
        (b"GET / HTTP/1.0\r\nConnection: keep-alive\r\n\r\n", False),
        (get("/", "Connection: close"), True),
        (get("/"), False),
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
            sock.sendall(get("/"))
            assert read_response(f)[0] == 200

    def test_responses_carry_a_date(self, http):
        sock, f = http()
        sock.sendall(get("/") + b"BROKEN\r\n\r\n")
        for _ in range(2):
            date = read_response(f)[1]["date"]
            assert re.fullmatch(r"(Mon|Tue|Wed|Thu|Fri|Sat|Sun), \d\d (Jan|Feb|Mar|Apr|May|Jun|Jul|Aug|Sep|Oct|Nov|Dec)"
                                r" \d{4} \d\d:\d\d:\d\d GMT", date), date
            assert abs(email.utils.parsedate_to_datetime(date).timestamp() - time.time()) < 5

    @pytest.mark.parametrize("request_bytes, status", [
        (get("/", "Content-Length: 3", method="POST") + b"abc", 405),
        (get("/", method="DELETE"), 405),
        (b"NONSENSE\r\n\r\n", 400),
        (b"GET / HTTP/1.1\r\nX: " + b"a" * (MAX_HEAD + 10), 431),
        (get("/", "Transfer-Encoding: gzip, chunked"), 501),
        (get("/", "Transfer-Encoding: gzip"), 400),
        (get("/", f"Content-Length: {MAX_BODY + 1}"), 413),
        (get("/", "Transfer-Encoding: chunked") + b"%x\r\n" % (MAX_BODY + 1), 413),
    ])
    def test_refusals_answer_then_close(self, http, request_bytes, status):
        sock, f = http()
        sock.sendall(request_bytes)
        got, headers, body = read_response(f)
        assert got == status and headers["connection"] == "close"
        assert body.endswith(b"\n")
        assert f.read() == b""

    def test_405_says_what_is_allowed(self, http):
        sock, f = http()
        sock.sendall(get("/", method="POST"))
        status, headers, _ = read_response(f)
        assert (status, headers["allow"]) == (405, "GET, HEAD")

    def test_an_error_after_good_pipelined_requests_answers_them_first(self, http):
        sock, f = http()
        sock.sendall(get("/ok") + b"BROKEN\r\n\r\n")
        assert read_response(f)[:1] == (200,)
        assert read_response(f)[0] == 400
        assert f.read() == b""

    # -- RFC 9112 framing, end to end: each answered by exactly one response

    @pytest.mark.parametrize("smuggle", [
        get("/", "Content-Length: 32", "Content-Length: 0"),
        get("/", "Content-Length: 0", "Content-Length: 32"),
        get("/", "Content-Length: 0, 32"),
        get("/", "Content-Length: 32", "Transfer-Encoding: chunked") + b"0\r\n\r\n",
        get("/", "Transfer-Encoding: chunked", "Content-Length: 0") + b"0\r\n\r\n",
    ], ids=["cl-32-then-0", "cl-0-then-32", "cl-list", "cl-then-te", "te-then-cl"])
    def test_a_smuggling_attempt_gets_one_response_a_400_then_the_close(self, http, smuggle):
        # A front end that frames by the other header would pass the second
        # request inside the first's body; a server that answered it would
        # answer a request the front end never saw.
        sock, _ = http()
        sock.sendall(smuggle + get("/smuggled"))
        data = read_to_eof(sock)
        assert statuses(data) == [400], data

    @pytest.mark.parametrize("data", [
        b"GET / HTTP/1.1\nHost: x\n\n",
        b"GET / HTTP/1.1\r\nHost: x\n\n",
        get("/", "Transfer-Encoding: chunked") + b"5\nhello\n0\n\n",
    ], ids=["head", "mixed", "chunked"])
    def test_bare_lf_is_answered_400_not_left_hanging(self, http, data):
        sock, _ = http()
        sock.settimeout(2.0)  # the old server waited for 16 KiB: a timeout here
        start = time.monotonic()
        sock.sendall(data)
        answer = read_to_eof(sock)
        assert statuses(answer) == [400], answer
        assert time.monotonic() - start < 2.0

    @pytest.mark.parametrize("data", [
        b"GET / HTTP/1.1\r\n\r\n",
        get("/", "Host: y"),
        b"GET / HTTP/1.1\r\nHost: a b\r\n\r\n",
        b"GET / HTTP/1.banana\r\nHost: x\r\n\r\n",
        b"GET / HTTP/2.0\r\nHost: x\r\n\r\n",
        b"GET / HTTP/1.1\r\nHost: x\r\nX-Bad\x00Name: 1\r\n\r\n",
        b"GET / HTTP/1.1\r\nHost: x\r\nX-Name : 1\r\n\r\n",
        b"GET / HTTP/1.1\r\nHost: x\r\nX-A: 1\r2\r\n\r\n",
    ], ids=["no-host", "two-hosts", "bad-host", "banana", "http2", "nul-in-name", "space-before-colon", "bare-cr"])
    def test_malformed_heads_get_one_400(self, http, data):
        sock, _ = http()
        sock.sendall(data + get("/after"))
        answer = read_to_eof(sock)
        assert statuses(answer) == [400], answer

    def test_http_1_0_without_host_is_served(self, http):
        sock, f = http()
        sock.sendall(b"GET / HTTP/1.0\r\n\r\n")
        assert read_response(f)[0] == 200

    def test_a_chunked_body_is_read_before_the_response(self, http):
        sock, f = http()
        sock.sendall(get("/", "Transfer-Encoding: chunked") + b"5;x=y\r\nhello\r\n")
        # no response until the last chunk: a body error could not be answered
        # after a 200 already sent
        sock.settimeout(0.2)
        with pytest.raises(TimeoutError):
            sock.recv(1)
        sock.settimeout(5.0)
        sock.sendall(b"0\r\nX-Trailer: t\r\n\r\n" + get("/next"))
        assert read_response(f)[0] == 200
        assert read_response(f)[0] == 200

    def test_expect_100_continue_is_answered_before_the_body(self, http):
        sock, f = http()
        sock.sendall(get("/", "Expect: 100-continue", "Content-Length: 5"))
        assert f.readline() == b"HTTP/1.1 100 Continue\r\n" and f.readline() == b"\r\n"
        sock.sendall(b"hello" + get("/next"))
        assert read_response(f)[:3:2] == (200, BODY)
        assert read_response(f)[0] == 200

    def test_expect_100_continue_on_a_refused_method_gets_the_405_at_once(self, http):
        sock, f = http()
        sock.sendall(get("/", "Expect: 100-continue", "Content-Length: 5", method="POST"))
        # no 100: the client need not send the body it would be refused for
        status, headers, _ = read_response(f)
        assert (status, headers["allow"]) == (405, "GET, HEAD")
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

    def test_curl_sends_a_chunked_body_after_100_continue(self, http):
        curl = shutil.which("curl")
        if curl is None:
            pytest.skip("curl is not installed")
        host, port = http.listener.address
        url = f"http://{host}:{port}/"
        # --expect100-timeout: without our 100 curl would wait this long and
        # then send anyway; the test fails if it had to
        out = subprocess.run([curl, "-sS", "-v", "--max-time", "10", "--expect100-timeout", "8", "-X", "GET",
                              "-H", "Transfer-Encoding: chunked", "-H", "Expect: 100-continue",
                              "--data-binary", "@-", url],
                             input=b"x" * 5000, capture_output=True, timeout=20)
        assert out.returncode == 0, out.stderr
        assert b"HTTP/1.1 100 Continue" in out.stderr
        assert out.stdout == BODY


def test_a_client_that_does_not_read_cannot_grow_the_server_buffer(loop):
    """Pipelined requests from a client that does not read its responses: the
    server stops reading once its write buffer is over the high-water mark,
    so what it buffers is bounded by one read's worth of responses."""
    request = get("/", "X-Pad: " + "p" * 200)
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
        payload = request * (count - 1) + get("/", "Connection: close")
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


# ---------------------------------------------- the request head's time limit

class ClockedTransport:
    """What HttpProtocol and HeaderTimeout use of a transport, recorded."""

    def __init__(self) -> None:
        self.written: list[bytes] = []
        self.closed = False
        self.reading = True

    def write(self, data: bytes) -> None:
        self.written.append(bytes(data))

    def close(self) -> None:
        self.closed = True
        self.reading = False

    def close_without_waiting(self) -> None:  # a time limit's close (TLS: no wait for the peer)
        self.close()

    def is_reading(self) -> bool:
        return self.reading

    def pause_reading(self) -> None:
        self.reading = False

    def resume_reading(self) -> None:
        self.reading = True


class TestHeaderTimeout:
    """HeaderTimeout(loop, 2.0) on a virtual clock: its sweep runs every
    0.5 s, and a head not complete 2 s after it began gets its 408 at a
    sweep between 2.0 and 2.5 s later. The clock moves ``STEP`` at a time, a
    power of two, so that every sweep falls on a step exactly (a sweep
    re-arms itself from when it ran: a step that overshoots would make each
    sweep later than the last)."""

    LIMIT = 2.0
    STEP = 1 / 32
    LATEST = 2.5 + STEP  # S + the sweep interval, + one step

    @pytest.fixture
    def vclock(self) -> VirtualClock:
        return VirtualClock()

    @pytest.fixture
    def limit(self, vclock):
        with reactor.Reactor(clock=vclock) as loop:
            limit = HeaderTimeout(loop, self.LIMIT)
            limit.loop = loop
            limit.vclock = vclock
            yield limit
            limit.close()

    @staticmethod
    def connect(limit: HeaderTimeout) -> tuple[HttpProtocol, ClockedTransport]:
        protocol = limit.factory()()
        transport = ClockedTransport()
        protocol.connection_made(transport)  # type: ignore[arg-type]
        return protocol, transport

    @staticmethod
    def advance(limit: Any, seconds: float, until: Callable[[], bool] | None = None) -> float:
        """Move the virtual clock ``seconds`` on, a ``STEP`` at a time,
        running the loop each step; stop early once ``until()`` holds.
        Returns the virtual seconds that passed."""
        start = limit.vclock.now
        while limit.vclock.now - start < seconds - 1e-9:
            limit.vclock.advance(TestHeaderTimeout.STEP)
            limit.vclock.step(limit.loop)
            if until is not None and until():
                break
        return limit.vclock.now - start

    @staticmethod
    def timed_out(transport: ClockedTransport) -> bool:
        return transport.closed and transport.written[-1].startswith(b"HTTP/1.1 408 Request Timeout\r\n")

    def test_a_slow_head_gets_408_with_connection_close(self, limit):
        protocol, transport = self.connect(limit)
        # slowloris: a byte every 8 steps (0.25 s), a head that never ends;
        # the bytes themselves must not keep it alive
        head = get("/")[:-2]
        steps = 0

        def trickle() -> bool:
            nonlocal steps
            steps += 1
            if not transport.closed and steps % 8 == 0 and steps // 8 < len(head):
                protocol.data_received(head[steps // 8 - 1:steps // 8])
            return transport.closed

        took = self.advance(limit, 10, until=trickle)
        assert self.timed_out(transport), transport.written
        assert self.LIMIT <= took <= self.LATEST, took
        assert b"\r\nConnection: close\r\n" in transport.written[-1]
        assert transport.written[-1].endswith(b"\r\n\r\nRequest Timeout\n")
        assert limit.timed_out == 1
        protocol.connection_lost(None)
        assert len(limit.sweep) == 0

    def test_a_silent_connection_is_timed_from_its_start(self, limit):
        _, transport = self.connect(limit)
        took = self.advance(limit, 10, until=lambda: transport.closed)
        assert self.timed_out(transport)
        assert self.LIMIT <= took <= self.LATEST, took

    def test_a_head_in_time_is_served_and_the_keep_alive_wait_is_not_timed(self, limit):
        protocol, transport = self.connect(limit)
        self.advance(limit, 1.5)
        protocol.data_received(get("/"))
        assert transport.written[-1].startswith(b"HTTP/1.1 200 OK\r\n")
        # waiting for the next request is the idle timeout's business
        self.advance(limit, 10)
        assert not transport.closed and len(transport.written) == 1
        assert limit.timed_out == 0

    @pytest.mark.parametrize("together", [False, True], ids=["next-read", "same-read"])
    def test_the_next_head_is_timed_from_its_first_byte(self, limit, together):
        protocol, transport = self.connect(limit)
        partial = b"GET /next HTTP/1.1\r\nHo"
        protocol.data_received(get("/"))
        self.advance(limit, 5)  # the keep-alive wait
        if together:
            protocol.data_received(get("/") + partial)  # a response, then the next head begins
        else:
            protocol.data_received(partial)
        took = self.advance(limit, 10, until=lambda: transport.closed)
        assert self.timed_out(transport)
        assert self.LIMIT <= took <= self.LATEST, took
        assert [w[:15] for w in transport.written] == [b"HTTP/1.1 200 OK"] * (1 + together) + [b"HTTP/1.1 408 Re"]

    def test_a_head_finished_by_a_later_read_stops_the_clock(self, limit):
        protocol, transport = self.connect(limit)
        request = get("/", "X-Pad: " + "p" * 10)
        for i in range(len(request)):  # one byte a step: 1.4 s, in time
            protocol.data_received(request[i:i + 1])
            self.advance(limit, self.STEP)
        assert transport.written and transport.written[0].startswith(b"HTTP/1.1 200 OK")
        self.advance(limit, 10)
        assert not transport.closed

    def test_a_body_is_not_timed(self, limit):
        # A stalled body is the idle timeout's (the head is complete).
        protocol, transport = self.connect(limit)
        protocol.data_received(get("/", "Content-Length: 10") + b"abc")
        self.advance(limit, 10)
        assert not transport.closed and not transport.written
        protocol.data_received(b"defghij")
        assert transport.written[-1].startswith(b"HTTP/1.1 200 OK")

    def test_a_head_is_not_timed_while_we_do_not_read(self, limit):
        protocol, transport = self.connect(limit)
        protocol.data_received(b"GET / HT")
        protocol.pause_writing()  # our write buffer is full: the wait is ours
        self.advance(limit, 10)
        assert not transport.closed
        protocol.resume_writing()  # timed again, from now
        took = self.advance(limit, 10, until=lambda: transport.closed)
        assert self.timed_out(transport)
        assert self.LIMIT <= took <= self.LATEST, took

    def test_a_refused_head_is_answered_once(self, limit):
        protocol, transport = self.connect(limit)
        protocol.data_received(b"BROKEN\r\n\r\n")
        assert transport.closed and len(transport.written) == 1
        self.advance(limit, 5)
        assert len(transport.written) == 1 and limit.timed_out == 0

    def test_one_sweep_for_every_connection(self, limit):
        pairs = [self.connect(limit) for _ in range(50)]
        assert len(limit.sweep) == 50
        for protocol, _ in pairs[:25]:
            protocol.data_received(get("/"))  # served: the clock stops
        took = self.advance(limit, 10, until=lambda: all(t.closed for _, t in pairs[25:]))
        assert took <= self.LATEST
        assert [t.closed for _, t in pairs] == [False] * 25 + [True] * 25
        for protocol, _ in pairs:
            protocol.connection_lost(None)
        assert len(limit.sweep) == 0

    def test_the_limit_in_sweeps(self, limit):
        # 10 s: a sweep a second, fired at the 11th: within 11 s, never before 10
        ten = HeaderTimeout(limit.loop, 10.0)
        assert (ten.sweep.interval, ten.ticks) == (1.0, 11)
        assert (limit.sweep.interval, limit.ticks) == (0.5, 5)
        ten.close()

    @pytest.mark.parametrize("seconds", [0, -1, float("inf"), float("nan")])
    def test_a_bad_limit_is_refused(self, limit, seconds):
        with pytest.raises(ValueError, match="header timeout"):
            HeaderTimeout(limit.loop, seconds)


def test_a_slow_head_gets_408_over_a_real_socket(loop):
    limit = HeaderTimeout(loop, 0.2)
    lst = loop.listen(limit.factory())
    with socket.create_connection(lst.address, timeout=10) as client:
        client.sendall(b"GET / HTTP/1.1\r\nHost: x\r\n")
        reader = BackgroundReader(client)
        took = run_until(loop, lambda: reader.done, timeout=10)
        reader.join()
    assert reader.error is None
    assert statuses(bytes(reader.data)) == [408], reader.data
    assert took < 2
    limit.close()
