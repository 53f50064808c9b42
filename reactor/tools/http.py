"""A strict HTTP/1.1 server protocol: the benchmark's server and a health-check
target, for curl, ab, wrk and load balancers.

The parser is sans-IO (``RequestParser.feed(bytes) -> [Request]``): it knows
nothing of sockets, so it is tested on byte strings alone. A request is
returned once its head and its body (read and dropped) are complete;
pipelined requests come out in order.

Some facts from RFC 9112 (HTTP/1.1 messages) and RFC 9110 (semantics), and
what we do with each. Where the RFC lets a recipient choose, we choose what
cannot be read two ways: a proxy in front of us that frames a message one way
while we frame it another is request smuggling, and a refusal never is.

- Lines end with CRLF (9112 §2.2). A recipient MAY take a bare LF as a line
  end; a bare CR MUST be refused or replaced by SP. **We refuse both (400)**,
  in the head, the trailers and the chunk lines, and as soon as the bytes
  arrive: a client that ends lines with LF alone gets its 400 at once, never a
  wait for a terminator it will not send. (Every benchmark client and health
  checker sends CRLF; a server that accepts bare LF behind a proxy that does
  not is the "LF as header separator" smuggling.)
- A server SHOULD ignore at least one empty line before the request line
  (§2.2): we ignore one; more is 400.
- request-line = method SP request-target SP HTTP-version (§3), single spaces.
  The method is a token (tchar, RFC 9110 §5.6.2), the target visible ASCII
  (no CTL, SP or byte over 0x7E), the version ``HTTP/`` DIGIT ``.`` DIGIT,
  case-sensitive (§2.3). We serve major version 1 only: ``HTTP/2.0``,
  ``HTTP/0.9``, ``HTTP/1.banana``, ``http/1.1`` and ``HTTP/1.10`` are 400. A
  minor version above 1 is handled as 1.1 (RFC 9110 §2.5 SHOULD).
- field-line = field-name ":" OWS field-value OWS (§5). The name is a token:
  a NUL, a space or any other byte outside tchar is 400, and so is whitespace
  between the name and the colon (§5.1 MUST) and a line folded onto the
  previous one (obs-fold, §5.2: refused or unfolded; we refuse). A value holds
  visible bytes, obs-text (0x80-0xFF), SP and HTAB; CR, LF and NUL MUST be
  refused or replaced (RFC 9110 §5.5): we refuse them and every other control
  byte (400).
- Host (§3.2): an HTTP/1.1 request without it, any request with two, or one
  whose value is not ``uri-host [":" port]`` MUST get 400. HTTP/1.0 may omit
  it.
- Content-Length (§6.2, RFC 9110 §8.6) is 1*DIGIT. Several values that differ
  (two lines, or a list ``5, 7``) MUST be 400: a proxy taking the first and a
  server taking the last is the classic smuggling. Identical values (``5, 5``
  or two ``5`` lines) MAY be taken as one, since an upstream may have
  duplicated the field: **we accept identical values**, as h11 does; every
  reading of them frames the body the same way. A value of more than 12
  digits is 400, a body over ``MAX_BODY`` 413.
- Transfer-Encoding with Content-Length (§6.3 rule 3): "ought to be handled
  as an error", and the server MUST close after responding: **400** and
  close. Transfer-Encoding in an HTTP/1.0 request (§6.1: the framing is
  faulty) is 400 too.
- Transfer-Encoding (§6.1, §6.3 rule 4): if the final coding of a request is
  not ``chunked`` the length cannot be known and the server MUST answer 400:
  ``gzip``, ``chunked, gzip``, an empty list element at the end, and
  ``chunked`` given twice are **400**. A final ``chunked`` after another
  coding (``gzip, chunked``) is framed but uses a coding we do not
  implement: **501** (§6.1 SHOULD).
- Chunked body (§7.1): chunk-size is hex, followed by optional chunk
  extensions, CRLF, the data, CRLF. The size line must match the grammar
  (extensions are checked, then ignored; a line over ``MAX_CHUNK_LINE`` is
  400); the data must be followed by exactly CRLF (400 otherwise); the sum of
  the sizes may not pass ``MAX_BODY`` (413, as soon as a size line says so).
  The trailer section is checked as field lines are (400) and dropped; it may
  not pass ``MAX_HEAD`` (431).
- ``Expect: 100-continue`` on an HTTP/1.1 request with a body (RFC 9110
  §10.1.1): the server either answers the final status at once, if the head
  decides it, or sends ``100 Continue``. We send ``100 Continue`` for GET and
  HEAD when the body has not arrived with the head, and the 405 at once for
  other methods (the client then need not send the body). The expectation is
  ignored on HTTP/1.0 (MUST); other expectations are ignored (417 is a MAY).
- Connection (§9.3, §9.6): HTTP/1.1 keeps the connection unless the
  ``close`` option is given; HTTP/1.0 closes it unless ``keep-alive`` is
  given and ``close`` is not. Options are matched as list tokens, case
  insensitive.
- A head over ``MAX_HEAD`` is 431 (RFC 6585), even before it is complete.
- Responses carry Date (RFC 9110 §6.6.1: an origin server with a clock MUST
  send it in 2xx-4xx) in IMF-fixdate form, formatted once a second; a 405
  carries Allow (RFC 9110 §15.5.6 MUST). Every refusal is answered, then the
  connection is closed; after a refusal the parser refuses everything, so no
  later bytes can be read as a request.

Speed: a usual keep-alive GET (a Host, at most one ``Connection:
keep-alive`` or ``close``, and fields we do not act on) costs one ``find``
for the end of the head, one regular expression that checks the whole head
(request line and every field line, in C) and captures Host and Connection,
and one small tuple; no dict of headers is built, and the response is bytes
built once a second. Any other head takes the general path: the same
grammar, then a search for the five fields we act on (Host, Content-Length,
Transfer-Encoding, Connection, Expect). Per request, through
``HttpProtocol.data_received`` with a fake transport (curl's GET): 3.2 ->
1.9 us, 34,300 -> 20,700 instructions (cachegrind); wrk's 27,800 -> 18,100,
ab -k's 38,600 -> 25,500, a browser's 50,100 -> 33,600. A 26-line responder
that only finds the end of the head: 0.35 us, 5,300 instructions.

The parser is a table of states with one handler each (``RequestParser``):
a call per step instead of one loop with a branch per state. What that
costs, ``RequestParser.feed`` alone, per request (cachegrind, the same bytes
before and after): a keep-alive GET 17,729 -> 18,127 instructions (+2%), 16
pipelined 15,637 -> 16,127, a POST with a 5-byte body 37,339 -> 40,582, a
chunked body with trailers 78,388 -> 86,700 (two calls and a move per chunk).

Time limits (a slow or silent client must not pin an fd):

- The request head (``HeaderTimeout``, ``serve --header-timeout S``): a head
  not complete within S seconds of its first byte -- for a connection's first
  request, of the connection itself -- is answered ``408 Request Timeout``
  with ``Connection: close``, and the connection closed. That is what ends a
  slowloris client, which sends a head a byte at a time and never finishes
  it. Every protocol of a server is a member of one ``Sweep``
  (``reactor._core.sweep``) for its life: a protocol remembers
  ``sweep.ticks`` when a head starts, and the sweep, every
  ``interval_for(S)`` seconds, compares; no clock is read and no timer moved
  per request. A limit of S fires between S and S + interval seconds (10 s:
  within 11 s; 2 s: within 2.5 s). A head is not timed while we are not
  reading (our write buffer is over its high mark: the delay is ours), and
  a body is not timed at all (the idle timeout bounds a body that stalls).
- The keep-alive wait between requests, and a body that stalls, are the
  listener's ``idle_timeout`` (``serve --idle-timeout``, no byte either way
  for S seconds: closed); nothing here.

The head clock costs a connection a set add and discard, and each
``data_received`` an attribute test and a store; nothing per request. Per
request through ``data_received`` with a fake transport (cachegrind,
PYTHONHASHSEED=0), without the clock -> with it: curl's GET, one a read,
21,414 (before the clock existed) -> 21,488 off -> 21,736 on (+1.5%); 16
pipelined a read 16,998 -> 17,051 -> 17,065 (+0.4%); a head split over two
reads 44,426 -> 44,552 -> 45,215 (+1.8%). Wall time moved less than the
noise of a shared 2-CPU machine (about 2 us either way).
"""

from __future__ import annotations

import enum
import math
import os
import re
import time
from collections.abc import Callable
from functools import partial
from typing import TYPE_CHECKING, Any, NamedTuple

from .._core.checks import check_duration
from .._core.states import TransitionError
from .._core.sweep import Sweep, interval_for
from ..protocols import Protocol

if TYPE_CHECKING:
    from .._net.transport import Transport

__all__ = ["Request", "RequestParser", "HttpError", "HttpProtocol", "HeaderTimeout", "response", "http_date"]

#: request line plus fields (and, apart, the trailer section); more is
#: refused (431) so a client cannot make the server buffer without limit
MAX_HEAD = 16 * 1024
#: bodies we read and drop (Content-Length, or the sum of the chunk sizes);
#: larger ones are refused (413)
MAX_BODY = 1024 * 1024
#: a chunk-size line with its extensions; longer is 400 (the extensions are
#: ignored, so there is no reason to buffer many of them)
MAX_CHUNK_LINE = 4096
#: Content-Length digits: a 1 MiB limit needs 7; past 12, int() would only
#: work harder on a value we refuse anyway
MAX_LENGTH_DIGITS = 12
#: the methods HttpProtocol answers; a 405 lists them in its Allow header
ALLOWED_METHODS = (b"GET", b"HEAD")
_ALLOW = ", ".join(method.decode() for method in ALLOWED_METHODS)

# tchar (RFC 9110 §5.6.2), for a bytes character class
_TCHAR = rb"!#$%&'*+\-.^_`|~0-9A-Za-z"
# field-vchar / SP / HTAB (RFC 9110 §5.5): anything but the controls and DEL
_VALUE = rb"\t \x21-\x7e\x80-\xff"
_FIELD_LINE = rb"[" + _TCHAR + rb"]++:[" + _VALUE + rb"]*+\r\n"

_REQUEST_LINE = rb"(?:\r\n)?([" + _TCHAR + rb"]++) ([!-~]++) HTTP/1\.([0-9])\r\n"  # one empty line before it is ignored
# uri-host [":" port] (RFC 3986: IP-literal / IPv4address / reg-name); empty
# is allowed (§3.2)
_HOST_VALUE = rb"(?:\[[0-9A-Za-z:.%]++\]|[0-9A-Za-z\-._~!$&'()*+,;=%]*+)(?::[0-9]*+)?"


def _any_case(*words: bytes) -> bytes:
    """The alternatives ``words``, matched in any case, as a class per letter
    (``[hH][oO]...``): sre tries a ``(?i:...)`` alternative byte by byte on a
    slower path, and this one is about 15% cheaper in the usual head."""
    return b"|".join(b"".join(b"[%c%c]" % (c, c ^ 0x20) if chr(c).isalpha() else re.escape(bytes([c])) for c in word)
                     for word in words)


# the fields that change what we do
_ACTED_ON = rb"host|content-length|transfer-encoding|connection|expect"
_ACTED_ON_ANY_CASE = _any_case(*_ACTED_ON.split(b"|"))

#: the head up to (not including) its final empty line. Possessive
#: quantifiers: a head is read one way or refused, never backtracked (and it
#: is faster).
_HEAD = re.compile(_REQUEST_LINE + rb"(?:" + _FIELD_LINE + rb")*+")
#: the trailer section, up to its final empty line
_FIELD_LINES = re.compile(rb"(?:" + _FIELD_LINE + rb")++")
#: in a checked head, the only fields we act on (each line follows a "\n")
_FIELDS = re.compile(rb"\n(" + _ACTED_ON_ANY_CASE + rb"):[\t ]*+([^\r]*+)")
_HOST = re.compile(_HOST_VALUE + rb"[\t ]*+")
# a field line whose name is none of those we act on
_OTHER_LINES = rb"(?:(?!(?:" + _ACTED_ON_ANY_CASE + rb"):)" + _FIELD_LINE + rb")*+"
_HOST_LINE = _any_case(b"host") + rb":[\t ]*+(" + _HOST_VALUE + rb")[\t ]*+\r\n"
_CONNECTION_LINE = _any_case(b"connection") + rb":[\t ]*+(" + _any_case(b"keep-alive", b"close") + rb")[\t ]*+\r\n"
#: The usual head in one pass: _HEAD's grammar, where the only fields we act
#: on are at most one Host with a valid value and at most one Connection
#: that is ``keep-alive`` or ``close``, in either order (captured: groups 4
#: and 5 in one order, 7 and 6 in the other). A head it does not match takes
#: the general path (_HEAD, _FIELDS, _HOST), which refuses it or reads the
#: other fields; on a head both read they agree (tested). One regular
#: expression instead of three: about a fifth less per request.
_USUAL_HEAD = re.compile(
    _REQUEST_LINE + _OTHER_LINES
    + rb"(?:" + _HOST_LINE + _OTHER_LINES + rb"(?:" + _CONNECTION_LINE + _OTHER_LINES + rb")?"
    + rb"|" + _CONNECTION_LINE + _OTHER_LINES + rb"(?:" + _HOST_LINE + _OTHER_LINES + rb")?)?"
)
#: chunk-size [chunk-ext] (§7.1.1): *( BWS ";" BWS name [ BWS "=" BWS value ] ),
#: value a token or a quoted-string
_CHUNK_LINE = re.compile(
    rb"([0-9A-Fa-f]++)"
    rb"(?:[\t ]*+;[\t ]*+[" + _TCHAR + rb"]++"
    rb"(?:[\t ]*+=[\t ]*+(?:[" + _TCHAR + rb"]++|\"(?:[\t !#-\[\]-~\x80-\xff]|\\[\t -~\x80-\xff])*+\"))?)*+"
)
#: a CR not followed by LF, or an LF not preceded by CR; a CR at the very end
#: may still get its LF
_BARE_CR_OR_LF = re.compile(rb"\r[^\n]|(?<!\r)\n")

#: the version's minor digit -> the version (any minor digit is HTTP/1)
_VERSIONS = {b"%d" % minor: b"HTTP/1.%d" % minor for minor in range(10)}



# --------------------------------------------------------- the parser's states
#
# As the transport's lifecycle (reactor/_net/transport.py): StrEnums, one
# table, every move through it.

class ParserState(enum.StrEnum):
    """Where ``RequestParser`` is in the byte stream."""

    HEAD = "head"                # a request head (or the empty line before one)
    LENGTH_BODY = "length-body"  # Content-Length bytes to drop
    CHUNK_SIZE = "chunk-size"    # a chunk-size line (and its extensions)
    CHUNK_DATA = "chunk-data"    # a chunk's bytes to drop
    CHUNK_END = "chunk-end"      # the CRLF after a chunk's data
    TRAILERS = "trailers"        # the trailer section after the last chunk
    FAILED = "failed"            # refused: every later feed() raises


class ParserEvent(enum.StrEnum):
    """What moves the parser on (a request without a body moves nothing)."""

    LENGTH = "length"          # a head with Content-Length > 0
    CHUNKED = "chunked"        # a head with Transfer-Encoding: chunked
    CHUNK = "chunk"            # a chunk-size line of size > 0
    LAST_CHUNK = "last-chunk"  # the chunk-size line of size 0
    DATA_DONE = "data-done"    # a chunk's bytes are all there
    CRLF = "crlf"              # the CRLF after them
    BODY_DONE = "body-done"    # the body (and trailers) are done: the request is complete
    REFUSE = "refuse"          # an HttpError


HEAD, LENGTH_BODY, CHUNK_SIZE, CHUNK_DATA, CHUNK_END, TRAILERS, FAILED = ParserState
LENGTH, CHUNKED, CHUNK, LAST_CHUNK, DATA_DONE, CRLF, BODY_DONE, REFUSE = ParserEvent

#: Every legal move: state -> {event: next state}.
#:
#:     HEAD --length--> LENGTH_BODY --body-done--> HEAD
#:     HEAD --chunked--> CHUNK_SIZE --chunk--> CHUNK_DATA --data-done--> CHUNK_END --crlf--> CHUNK_SIZE
#:                       CHUNK_SIZE --last-chunk--> TRAILERS --body-done--> HEAD
#:     any but FAILED --refuse--> FAILED
_TRANSITIONS: dict[ParserState, dict[ParserEvent, ParserState]] = {
    HEAD: {LENGTH: LENGTH_BODY, CHUNKED: CHUNK_SIZE, REFUSE: FAILED},
    LENGTH_BODY: {BODY_DONE: HEAD, REFUSE: FAILED},
    CHUNK_SIZE: {CHUNK: CHUNK_DATA, LAST_CHUNK: TRAILERS, REFUSE: FAILED},
    CHUNK_DATA: {DATA_DONE: CHUNK_END, REFUSE: FAILED},
    CHUNK_END: {CRLF: CHUNK_SIZE, REFUSE: FAILED},
    TRAILERS: {BODY_DONE: HEAD, REFUSE: FAILED},
    FAILED: {},
}


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


def _bad_request() -> HttpError:
    return HttpError(400, "Bad Request")


class Request(NamedTuple):
    """What the server acts on, and no more: the other fields are checked but
    not kept (no dict of headers is built). Bytes, as they came (a sans-IO
    parser decodes nothing it does not need): ``b"GET"``, ``b"/path?q=1"``,
    ``b"HTTP/1.1"``."""

    method: bytes
    target: bytes
    version: bytes
    keep_alive: bool


# tuple.__new__ straight from C: NamedTuple's own __new__ is a Python
# function, about 0.1 us more per request
_new_request = tuple.__new__


class RequestParser:
    """Feed bytes, get complete requests; raises ``HttpError``, and once it
    has, every later ``feed()`` raises it again (the connection is to be
    closed: no later byte may be read as a request).

    ``awaiting_continue``: after a ``feed()`` that completed the head of a
    request asking for ``100 Continue`` but not its body, that request (the
    caller decides: 100, or the final status at once); else None.

    A state machine as data (``ParserState``, ``ParserEvent``,
    ``_TRANSITIONS``; a move the table does not have raises
    ``TransitionError``), and one small handler per state (``_HANDLERS``):
    ``feed`` only calls the current state's handler until the bytes run
    out. A handler takes one step -- a head, a stretch of body, a chunk
    line, the CRLF after a chunk, the trailers -- and returns the position
    after it; a step always takes at least one byte, so a handler that
    returns the position it was given is waiting for more bytes."""

    def __init__(self) -> None:
        self._buffer = bytearray()  # bytes not parsed yet, kept between feeds
        self._state = HEAD
        self._left = 0  # body bytes still to drop (Content-Length or chunk data)
        self._body_size = 0  # chunked: the sum of the chunk sizes so far
        self._pending: Request | None = None  # the request whose body we are reading
        # A head (or trailers) not complete yet: how many bytes at the start
        # of _buffer were already searched for the terminator and checked for
        # bare CR/LF, so a client that sends a byte at a time costs linear
        # time, not quadratic.
        self._scanned = 0
        self._failed: HttpError | None = None
        self.awaiting_continue: Request | None = None

    def feed(self, data: bytes) -> list[Request]:
        self.awaiting_continue = None
        if self._failed is not None:
            raise HttpError(self._failed.status, self._failed.reason)
        buffer = self._buffer
        if buffer:
            buffer += data
            buf: bytes | bytearray = buffer
        else:
            buf = data  # the usual case: parsed where it lies, no copy
        requests: list[Request] = []
        pos = 0
        size = len(buf)
        try:
            handlers = _HANDLERS
            while pos < size:
                after = handlers[self._state](self, buf, pos, requests)
                if after == pos:
                    break  # the handler waits for more bytes
                pos = after
        except HttpError as exc:
            exc.requests = requests
            self._failed = exc
            self._move(REFUSE)
            raise
        if buffer:
            del buffer[:pos]
        elif pos < size:
            self._buffer = bytearray(memoryview(buf)[pos:])
        return requests

    def _move(self, event: ParserEvent) -> None:
        # The table looked up here, not through states.next_state: a move
        # per body, chunk line and chunk end, where a call costs about 5%.
        try:
            self._state = _TRANSITIONS[self._state][event]
        except KeyError:
            raise TransitionError(f"HTTP request parser: no move from state {self._state} on {event}") from None

    # ---------------------------------------------------- one handler a state

    def _on_head(self, buf: bytes | bytearray, pos: int, requests: list[Request]) -> int:
        """HEAD: a request head; a request without a body is complete."""
        # Leftover bytes start at 0: resume where the last look stopped.
        end = buf.find(b"\r\n\r\n", pos if self._scanned < 3 else self._scanned - 3)
        if end < 0 or end - pos > MAX_HEAD:
            return self._unfinished(buf, pos, end)
        self._scanned = 0
        head = _USUAL_HEAD.fullmatch(buf, pos, end + 2)
        if head is not None:
            method, target, minor, host, connection, connection_first, host_after = head.groups()
            if host is None:
                if minor != b"0" and host_after is None:
                    raise _bad_request()
                connection = connection_first
            # one option, keep-alive or close, decides for 1.0 and 1.1 alike
            keep_alive = minor != b"0" if connection is None else connection.lower() == b"keep-alive"
            requests.append(_new_request(Request, (method, target, _VERSIONS[minor], keep_alive)))
            return end + 4
        head = _HEAD.fullmatch(buf, pos, end + 2)
        if head is None:
            raise _bad_request()
        request = self._request(buf, head, pos, end)
        if self._state is HEAD:
            requests.append(request)
        else:
            self._pending = request
        return end + 4

    def _on_length_body(self, buf: bytes | bytearray, pos: int, requests: list[Request]) -> int:
        """LENGTH_BODY: Content-Length bytes, dropped; then the request is complete."""
        pos = self._skip_body(buf, pos)
        if not self._left:
            self._complete(requests)
        return pos

    def _on_chunk_data(self, buf: bytes | bytearray, pos: int, requests: list[Request]) -> int:
        """CHUNK_DATA: a chunk's bytes, dropped; then its CRLF."""
        pos = self._skip_body(buf, pos)
        if not self._left:
            self._move(DATA_DONE)
        return pos

    def _skip_body(self, buf: bytes | bytearray, pos: int) -> int:
        available = len(buf) - pos
        if available < self._left:
            self._left -= available
            return len(buf)
        pos += self._left
        self._left = 0
        return pos

    def _on_chunk_end(self, buf: bytes | bytearray, pos: int, requests: list[Request]) -> int:
        """CHUNK_END: exactly CRLF after a chunk's data."""
        if buf.startswith(b"\r\n", pos):
            self._move(CRLF)
            return pos + 2
        if buf[pos] != 13 or len(buf) - pos > 1:  # not CR; or CR, then not LF
            raise _bad_request()
        return pos  # a CR; its LF is still to come

    def _on_chunk_size(self, buf: bytes | bytearray, pos: int, requests: list[Request]) -> int:
        """CHUNK_SIZE: the chunk-size line; a size of 0 ends the chunks."""
        crlf = buf.find(b"\r\n", pos, pos + MAX_CHUNK_LINE + 2)
        if crlf < 0:
            if len(buf) - pos > MAX_CHUNK_LINE:
                raise _bad_request()
            # No CRLF yet, so any LF is bare, and so is a CR but at the very
            # end. (The line is short, so looking again each time costs little.)
            if buf.find(b"\n", pos) >= 0 or buf.find(b"\r", pos, len(buf) - 1) >= 0:
                raise _bad_request()
            return pos  # kept until its CRLF comes
        line = _CHUNK_LINE.fullmatch(buf, pos, crlf)
        if line is None:
            raise _bad_request()
        chunk = int(line.group(1), 16)
        self._body_size += chunk
        if self._body_size > MAX_BODY:
            raise HttpError(413, "Content Too Large")
        if chunk:
            self._left = chunk
            self._move(CHUNK)
        else:
            self._move(LAST_CHUNK)
        return crlf + 2

    def _on_trailers(self, buf: bytes | bytearray, pos: int, requests: list[Request]) -> int:
        """TRAILERS: the trailer section, checked and dropped; then the request is complete."""
        if buf.startswith(b"\r\n", pos):  # there are none
            self._complete(requests)
            return pos + 2
        end = buf.find(b"\r\n\r\n", pos if self._scanned < 3 else self._scanned - 3)
        if end < 0 or end - pos > MAX_HEAD:
            return self._unfinished(buf, pos, end)
        if _FIELD_LINES.fullmatch(buf, pos, end + 2) is None:
            raise _bad_request()
        self._complete(requests)
        return end + 4

    # ---------------------------------------------------------------- helpers

    def _unfinished(self, buf: bytes | bytearray, pos: int, end: int) -> int:
        """The lines from ``pos`` (a head, or the trailers) end at ``end``
        (their closing CRLF CRLF), which is past ``MAX_HEAD`` (431), or -1:
        not there yet. Returns ``pos``: the handler waits for more bytes."""
        if end >= 0:
            raise HttpError(431, "Request Header Fields Too Large")
        self._incomplete_head(buf, pos)
        return pos

    def _incomplete_head(self, buf: bytes | bytearray, pos: int) -> None:
        """No terminator yet in ``buf[pos:]``: refuse now what no more bytes
        can mend (a bare CR or LF, a head already too large); else remember
        how far we looked."""
        # The buffer may end with the first 3 bytes of the terminator: only
        # past that is the head surely too large.
        if len(buf) - pos > MAX_HEAD + 3:
            raise HttpError(431, "Request Header Fields Too Large")
        # From one byte back, so a CR at the end of the last look meets its
        # next byte. At pos itself the lookbehind would see the previous
        # message's last byte, so a leading LF is checked apart.
        if buf.startswith(b"\n", pos) or _BARE_CR_OR_LF.search(buf, max(pos, self._scanned - 1)) is not None:
            raise _bad_request()
        self._scanned = len(buf) - pos

    def _request(self, buf: bytes | bytearray, head: re.Match[bytes], start: int, end: int) -> Request:
        """The request of the checked head ``buf[start:end]``; moves to the
        state that reads its body, if it has one."""
        method, target, minor = head.groups()
        host = length = None
        codings: list[bytes] | None = None
        options: set[bytes] | None = None
        expect = False
        # The request line holds no LF but its last byte, so searching from
        # the head's start finds field lines only.
        for name, value in _FIELDS.findall(buf, start, end):
            name = name.lower()
            if name == b"host":
                if host is not None or _HOST.fullmatch(value) is None:
                    raise _bad_request()
                host = value
            elif name == b"content-length":
                length = _content_length(value, length)
            elif name == b"transfer-encoding":
                codings = (codings or []) + [coding.strip(b" \t").lower() for coding in value.split(b",")]
            elif name == b"connection":
                options = (options or set()) | {option.strip(b" \t").lower() for option in value.split(b",")}
            else:
                expect = expect or value.rstrip(b" \t").lower() == b"100-continue"
        if minor == b"0":
            keep_alive = options is not None and b"keep-alive" in options and b"close" not in options
            expect = False  # RFC 9110 §10.1.1: ignored on HTTP/1.0
        else:
            if host is None:
                raise _bad_request()
            keep_alive = options is None or b"close" not in options
        if codings is not None:
            if length is not None or minor == b"0" or codings[-1] != b"chunked" or b"chunked" in codings[:-1]:
                raise _bad_request()
            if len(codings) > 1:
                raise HttpError(501, "Not Implemented")
            self._move(CHUNKED)
        elif length:
            self._left = length
            self._move(LENGTH)
        request: Request = _new_request(Request, (method, target, _VERSIONS[minor], keep_alive))
        if expect and self._state is not HEAD:
            self.awaiting_continue = request
        return request

    def _complete(self, requests: list[Request]) -> None:
        """The pending request's body is done."""
        assert self._pending is not None
        requests.append(self._pending)
        if self.awaiting_continue is self._pending:
            self.awaiting_continue = None  # the body came with the head: no 100 needed
        self._pending = None
        self._move(BODY_DONE)
        self._body_size = 0
        self._scanned = 0


#: one handler per state that reads bytes (FAILED reads none: feed raises)
_HANDLERS: dict[ParserState, Callable[[RequestParser, bytes | bytearray, int, list[Request]], int]] = {
    HEAD: RequestParser._on_head,
    LENGTH_BODY: RequestParser._on_length_body,
    CHUNK_SIZE: RequestParser._on_chunk_size,
    CHUNK_DATA: RequestParser._on_chunk_data,
    CHUNK_END: RequestParser._on_chunk_end,
    TRAILERS: RequestParser._on_trailers,
}


def _content_length(value: bytes, previous: int | None) -> int:
    """A Content-Length value (one line of it); ``previous`` is what earlier
    lines said. Identical values are one value; different ones are 400."""
    # bytes.isdigit() is ASCII only: no '²', no sign, no space, no '_' (which
    # int() would accept)
    value = value.rstrip(b" \t")
    if value.isdigit() and len(value) <= MAX_LENGTH_DIGITS:
        length = int(value)
    else:  # maybe a list, "5, 5"
        items = {item.strip(b" \t") for item in value.split(b",")}
        item = items.pop()
        if items or not item.isdigit() or len(item) > MAX_LENGTH_DIGITS:
            raise _bad_request()
        length = int(item)
    if previous is not None and previous != length:
        raise _bad_request()
    if length > MAX_BODY:
        raise HttpError(413, "Content Too Large")
    return length


# ----------------------------------------------------------------- responses

#: the interim answer to "Expect: 100-continue" (no Date: RFC 9110 §6.6.1
#: makes it optional on 1xx)
CONTINUE = b"HTTP/1.1 100 Continue\r\n\r\n"

# IMF-fixdate (RFC 9110 §5.6.7) uses these English names whatever the
# locale, which is why not strftime("%a %b")
_WEEKDAYS = ("Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun")
_MONTHS = ("Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec")
#: distinct responses kept for the current second before the cache is
#: emptied (a handful are used: 200 GET/HEAD x keep-alive/close and refusals)
_CACHE_SIZE = 64


#: the wall clock the Date header reads (a name of ours, so a test can move it)
_wall_clock = time.time


def http_date(seconds: float) -> str:
    """``seconds`` since the epoch as an IMF-fixdate: ``Sun, 06 Nov 1994 08:49:37 GMT``."""
    t = time.gmtime(seconds)
    return (f"{_WEEKDAYS[t.tm_wday]}, {t.tm_mday:02d} {_MONTHS[t.tm_mon - 1]} {t.tm_year} "
            f"{t.tm_hour:02d}:{t.tm_min:02d}:{t.tm_sec:02d} GMT")


class _Second:
    """The responses of the current wall-clock second, built once each:
    the Date header is all that changes from one second to the next, so a
    request costs a lookup, not a format."""

    def __init__(self) -> None:
        self.start = self.end = 0.0
        self.date = ""
        self.pid = os.getpid()  # getpid() is a syscall (glibc no longer caches it)
        self.responses: dict[tuple[int, str, bytes, bool, bool], bytes] = {}

    def now(self) -> _Second:
        now = _wall_clock()
        # Also when the clock stepped back: the date must not stay in the future.
        if not self.start <= now < self.end:
            # The date and a new dict first, the range last: another thread
            # that looks meanwhile sees the old range, misses, and rebuilds
            # too; none caches a stale date under the new range.
            start = float(int(now))
            self.date = http_date(start)
            self.responses = {}
            self.start, self.end = start, start + 1.0
        return self

    def forked(self) -> None:
        self.pid = os.getpid()
        self.end = 0.0  # rebuild: the responses name the process


_second = _Second()
os.register_at_fork(after_in_child=_second.forked)


def response(status: int, reason: str, body: bytes, keep_alive: bool, head_only: bool = False) -> bytes:
    """A complete HTTP/1.1 response (built once per second for each shape)."""
    second = _second.now()
    key = (status, reason, body, keep_alive, head_only)
    raw = second.responses.get(key)
    if raw is None:
        if len(second.responses) >= _CACHE_SIZE:
            second.responses.clear()
        allow = f"Allow: {_ALLOW}\r\n" if status == 405 else ""
        head = (
            f"HTTP/1.1 {status} {reason}\r\n"
            f"Date: {second.date}\r\n"
            f"Content-Type: text/plain\r\n"
            f"Content-Length: {len(body)}\r\n"
            f"{allow}"
            f"X-Reactor-Pid: {second.pid}\r\n"
            f"Connection: {'keep-alive' if keep_alive else 'close'}\r\n\r\n"
        ).encode("ascii")
        raw = second.responses[key] = head if head_only else head + body
    return raw


class HeaderTimeout:
    """The request-head time limit of one server: ``seconds`` after a head's
    first byte (or the connection's start, for its first request), a head
    still not complete is answered 408 and closed. One ``Sweep`` on ``loop``
    checks every protocol made by ``factory()``; see the module docs.
    ``timed_out`` counts the 408s."""

    def __init__(self, loop: Any, seconds: float) -> None:
        seconds = check_duration(seconds, "header timeout")
        interval = interval_for(seconds)
        self.seconds = seconds
        # A head that starts just after sweep t has waited only (k - t - 1)
        # intervals at sweep k: the first sweep sure to be ``seconds`` later
        # is this many ticks on (a limit fires between S and S + interval).
        self.ticks = math.ceil(seconds / interval - 1e-9) + 1
        self.sweep = Sweep(loop, interval, self._check)
        self.timed_out = 0

    def factory(self) -> Callable[[], HttpProtocol]:
        """The protocol factory for the listener."""
        return partial(HttpProtocol, self)

    def close(self) -> None:
        self.sweep.close()

    def _check(self, protocol: HttpProtocol, ticks: int) -> None:
        since = protocol._head_since
        # Not while we are not reading: then the wait is ours, not the client's.
        if since is not None and ticks - since >= self.ticks and protocol.transport.is_reading():
            self.timed_out += 1
            protocol._head_timed_out()


class HttpProtocol(Protocol):
    """Answers ``GET`` and ``HEAD`` with 200 and a short body, other methods
    with 405; the ``X-Reactor-Pid`` header names the serving process (useful
    with ``serve --workers``). With a ``HeaderTimeout``, a request head not
    complete in time is answered 408 (``HeaderTimeout.factory()``)."""

    body = b"Hello from reactor\n"

    # This second's 200 responses, indexed by 2 * is_head + keep_alive, and
    # the second they are for: one clock read per data_received, and no
    # lookup per request.
    _ok: tuple[bytes, ...] = ()
    _ok_start = _ok_end = 0.0
    # also for a subclass whose __init__ does not call this one's
    _header_timeout: HeaderTimeout | None = None
    _head_since: int | None = None
    #: a graceful stop began (``drain()``): the next response says
    #: ``Connection: close`` and the connection closes after it
    _draining = False
    #: a request has been answered here (after one, a connection with
    #: nothing in progress is an idle keep-alive one)
    _answered = False

    def __init__(self, header_timeout: HeaderTimeout | None = None) -> None:
        self._header_timeout = header_timeout
        #: the sweep's ticks when the head now awaited began (its first
        #: byte, or the connection's start); None while no head is awaited
        self._head_since: int | None = None

    def connection_made(self, transport: Transport) -> None:
        self.transport = transport
        self.parser = RequestParser()
        clock = self._header_timeout
        if clock is not None:
            clock.sweep.add(self)
            self._head_since = clock.sweep.ticks  # the first head: from the connection on

    def connection_lost(self, exc: Exception | None) -> None:
        if self._header_timeout is not None:
            self._header_timeout.sweep.discard(self)

    def data_received(self, data: bytes) -> None:
        parser = self.parser
        error = None
        try:
            requests = parser.feed(data)
        except HttpError as exc:
            requests, error = exc.requests, exc
        clock = self._header_timeout
        if clock is not None:
            # The parser's own state, read in its module: a head completed
            # (a request, or a body begun) stops the clock, and a partial
            # head left after it starts it again; bytes that complete
            # nothing start it only if it is not running. (Bytes left over
            # are rare: tested first.)
            if requests or parser._state is not HEAD:
                self._head_since = clock.sweep.ticks if parser._buffer and parser._state is HEAD else None
            elif self._head_since is None:
                self._head_since = clock.sweep.ticks
        transport = self.transport
        if requests:
            now = _wall_clock()
            ok = self._ok if self._ok_start <= now < self._ok_end else self._new_second()
            draining = self._draining
            self._answered = True
            for method, _, _, keep_alive in requests:
                if draining:
                    keep_alive = False  # a graceful stop: this answer is the last
                if method == b"GET":
                    transport.write(ok[keep_alive])
                elif method == b"HEAD":
                    transport.write(ok[2 + keep_alive])
                else:
                    self._refuse(405, "Method Not Allowed")
                    return
                if not keep_alive:
                    transport.close()
                    return
        if error is not None:
            self._refuse(error.status, error.reason)
        elif parser.awaiting_continue is not None:
            if parser.awaiting_continue.method in ALLOWED_METHODS:
                transport.write(CONTINUE)
            else:
                # The head decides the answer: give it now, and the client
                # need not send the body (RFC 9110 §10.1.1).
                self._refuse(405, "Method Not Allowed")

    def drain(self, settled: bool) -> bool:
        """A graceful stop began: take no new request. Returns True if the
        connection can be closed now: nothing is in progress, and it is an
        idle keep-alive connection (it has been answered) or ``settled`` (the
        stop's first pause is over and its first request has not begun).
        Otherwise the request in progress is answered with ``Connection:
        close`` and the connection closes after it."""
        self._draining = True
        parser = self.parser
        in_progress = bool(parser._buffer) or parser._state is not HEAD
        return not in_progress and (self._answered or settled)

    def _new_second(self) -> tuple[bytes, ...]:
        second = _second.now()
        body = self.body
        self._ok = tuple(response(200, "OK", body, keep_alive, head_only)
                         for head_only in (False, True) for keep_alive in (False, True))
        self._ok_start, self._ok_end = second.start, second.end
        return self._ok

    def _refuse(self, status: int, reason: str) -> None:
        self.transport.write(response(status, reason, reason.encode() + b"\n", False))
        self.transport.close()

    def _head_timed_out(self) -> None:
        self._head_since = None
        self.transport.write(response(408, "Request Timeout", b"Request Timeout\n", False))
        # Over TLS, close_notify and close now: a client too slow to send its
        # head will not answer ours, and waiting would hold the fd.
        self.transport.close_without_waiting()

    # A client that pipelines requests and does not read the responses would
    # otherwise grow the write buffer without limit: stop reading while it is
    # over the high-water mark (the kernel's buffers then slow the client).
    def pause_writing(self) -> None:
        self.transport.pause_reading()

    def resume_writing(self) -> None:
        self.transport.resume_reading()
        clock = self._header_timeout
        if clock is not None and self._head_since is not None:
            self._head_since = clock.sweep.ticks  # the head was not timed while we did not read
