"""A scenario's timeline: each step is a call one side made, what the kernel
answered, and then, for every socket of the scenario, its TCP state and what
each readiness backend reports for it. Printed as text for people and as
JSON for programs (and the tests, which assert on the same records)."""

from __future__ import annotations

import textwrap
from dataclasses import asdict, dataclass, field
from typing import Any

__all__ = ["SockView", "Step", "Segment", "Wire", "Outcome", "format_outcome"]

#: the TCP_INFO fields a step keeps for each socket (the rest is noise here)
INFO_FIELDS = ("retransmits", "total_retrans", "backoff", "rto", "rtt", "unacked", "sacked",
               "bytes_acked", "bytes_received", "last_data_recv")


@dataclass
class SockView:
    """One socket at one instant."""

    name: str
    #: the TCP state (TCP_INFO while we hold the fd, sock_diag after), "closed"
    #: for a socket of ours the kernel no longer has
    state: str
    #: True while we hold its fd
    fd: bool
    #: a few words: the accept queue, a timer, retransmissions
    detail: str = ""
    #: backend -> the flags it reports; empty once the fd is closed
    ready: dict[str, tuple[str, ...]] = field(default_factory=dict)
    #: some TCP_INFO fields (INFO_FIELDS), while we hold the fd
    info: dict[str, Any] | None = None


@dataclass
class Step:
    """One call and the world right after it."""

    t: float  # seconds since the scenario began
    side: str  # client, server, kernel (what it reports), lab (what the lab does to the world)
    call: str
    result: str
    errno: str | None  # the errno name, when the kernel answered with one
    sockets: list[SockView]
    note: str = ""
    #: when the call began and when it returned (s since the scenario began);
    #: ``t`` is when the world was looked at, after any settling wait
    began: float | None = None
    returned: float | None = None

    @property
    def start(self) -> float:
        return self.t if self.began is None else self.began

    @property
    def end(self) -> float:
        return self.t if self.returned is None else self.returned

    def sock(self, name: str) -> SockView:
        for view in self.sockets:
            if view.name == name:
                return view
        raise KeyError(f"no socket {name!r} in step {self.call!r}; have {[v.name for v in self.sockets]}")


#: the two directions of a connection
TO_SERVER, TO_CLIENT = "→", "←"


@dataclass
class Segment:
    """One TCP segment of the scenario's own connections (or an ICMP error
    about one), as the kernel's packet tap saw it."""

    t: float  # seconds since the scenario began, the kernel's own stamp
    #: the connection: the name of its client socket
    conn: str
    #: TO_SERVER (from the socket that called connect) or TO_CLIENT
    way: str
    #: "SYN", "SYN/ACK", "PSH/ACK", "RST", ... or "ICMP host unreachable"
    flags: str
    #: relative to the sender's ISN; ack relative to the receiver's (None: no ACK flag)
    seq: int
    ack: int | None
    #: the window, scaled once both SYNs have been seen
    win: int
    #: payload bytes
    length: int
    #: the options of a SYN (mss, sackOK, TS, wscale)
    options: str = ""
    #: it repeats sequence space this side had sent already
    retransmission: bool = False
    #: the addresses as ip:port, sender first
    src: str = ""
    dst: str = ""

    def text(self, conn: bool = True) -> str:
        """``cli → SYN seq 0 win 65495 <mss 65495,sackOK,TS,wscale 7>``"""
        parts = [f"{self.conn} {self.way}" if conn else self.way, self.flags]
        if self.flags.startswith("ICMP"):
            parts.append(f"from {self.src} (about seq {self.seq})")
        else:
            parts.append(f"seq {self.seq}")
            if self.ack is not None:
                parts.append(f"ack {self.ack}")
            parts.append(f"win {self.win}")
            if self.length:
                parts.append(f"len {self.length}")
        if self.options:
            parts.append(f"<{self.options}>")
        if self.retransmission:
            parts.append("(retransmission)")
        return " ".join(parts)


@dataclass
class Wire:
    """The scenario's segments and whether the kernel produced what the
    scenario's script says it must."""

    #: where the tap was: "lo" (this host), or the client namespace's interfaces
    where: str
    #: "matched", "differed", "incomplete" (the kernel dropped captured
    #: packets), "not captured" (no tap could be opened: ``reason`` says why)
    status: str
    reason: str = ""
    segments: list[Segment] = field(default_factory=list)
    #: the script: one line per expected segment (or run of them), by connection
    expected: list[str] = field(default_factory=list)
    #: what did not match, one line each
    problems: list[str] = field(default_factory=list)
    #: how many segments each line of the script matched (optional and repeated lines vary)
    counts: list[int] = field(default_factory=list)
    #: segments the tap kept that belong to none of the scenario's connections
    foreign: int = 0


@dataclass
class Outcome:
    """What running one scenario gave."""

    name: str
    title: str
    status: str  # ok, skipped, failed
    reason: str = ""  # why skipped, or the error that failed it
    duration: float = 0.0
    steps: list[Step] = field(default_factory=list)
    #: the scenario's findings by name (errnos, states, measured delays)
    facts: dict[str, Any] = field(default_factory=dict)
    #: its segments and the verdict on them; None where the scenario did not run
    wire: Wire | None = None
    #: each socket's side, "client" (it called connect) or "server"
    sides: dict[str, str] = field(default_factory=dict)

    def step(self, call_prefix: str, side: str | None = None, nth: int = 0) -> Step:
        """The ``nth`` step whose call starts with ``call_prefix``."""
        found = [s for s in self.steps if s.call.startswith(call_prefix) and (side is None or s.side == side)]
        if len(found) <= nth:
            calls = [s.call for s in self.steps]
            raise KeyError(f"{self.name}: no step #{nth} starting {call_prefix!r}; calls: {calls}")
        return found[nth]

    def states(self, name: str) -> list[str]:
        """The states socket ``name`` went through, in order, without repeats."""
        seen: list[str] = []
        for step in self.steps:
            for view in step.sockets:
                if view.name == name and (not seen or seen[-1] != view.state):
                    seen.append(view.state)
        return seen

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def _flags(flags: tuple[str, ...], backend: str) -> str:
    if not flags:
        return "-"
    return "".join(flags) if backend == "select" else "|".join(flags)


#: notes and findings are wrapped to this width (a terminal's, with room)
_WRAP = 110
#: column widths of the socket lines
_NAME_W, _STATE_W, _DETAIL_W = 5, 12, 22
_READY_W = {"select": 3, "poll": 21, "epoll": 21}


def format_outcome(outcome: Outcome, backends: list[str]) -> str:
    """The timeline as text: one line per call (at the time it returned),
    one per socket under it, and the scenario's segments between them, at
    the kernel's time for each."""
    lines = [f"== {outcome.name}: {outcome.title}"]
    if outcome.status == "skipped":
        lines.append(f"   skipped: {outcome.reason}")
        return "\n".join(lines)
    lines.append(f"{'ms':>9}  {'side':<6}  call -> result")
    indent = " " * 19
    segments = outcome.wire.segments if outcome.wire is not None else []
    shown = 0

    def wire_until(t: float) -> None:
        nonlocal shown
        while shown < len(segments) and segments[shown].t <= t:
            segment = segments[shown]
            lines.append(f"{segment.t * 1000:9.1f}  {'wire':<6}  {segment.text()}")
            shown += 1

    for step in outcome.steps:
        wire_until(step.end)  # what the kernel sent before the call returned (on loopback: inside it)
        lines.append(f"{step.end * 1000:9.1f}  {step.side:<6}  {step.call} -> {step.result}")
        wire_until(step.t)  # and while the lab waited for the world to settle
        if step.note:
            lines += textwrap.wrap(step.note, _WRAP, initial_indent=f"{indent}# ", subsequent_indent=f"{indent}  ")
        for view in step.sockets:
            text = f"{indent}{view.name:<{_NAME_W}} {view.state:<{_STATE_W}} {view.detail:<{_DETAIL_W}}"
            if view.fd:
                text += " ".join(f"{b} {_flags(view.ready.get(b, ()), b):<{_READY_W[b]}}" for b in backends)
            else:
                text += "(no fd)"
            lines.append(text.rstrip())
    wire_until(float("inf"))
    facts = {key: value for key, value in outcome.facts.items() if key != "traceback"}
    if facts:
        lines += textwrap.wrap(", ".join(f"{key}={_fact(value)}" for key, value in facts.items()), _WRAP,
                               initial_indent="   found: ", subsequent_indent=" " * 10)
    if outcome.wire is not None:
        lines += _wire_verdict(outcome.wire)
    if outcome.status == "failed":
        lines.append(f"   FAILED: {outcome.reason}")
    lines.append(f"   ({outcome.duration:.2f} s)")
    return "\n".join(lines)


def _wire_verdict(wire: Wire) -> list[str]:
    if wire.status == "not captured":
        return [f"   wire: not captured: {wire.reason}"]
    script = "; ".join(wire.expected)
    lines = textwrap.wrap(script, _WRAP, initial_indent="   script: ", subsequent_indent=" " * 11)
    head = f"   wire ({wire.where}): {len(wire.segments)} segments, "
    if wire.status == "matched":
        lines.append(head + "as the script says")
    else:
        lines.append(head + f"{wire.status.upper()}: {wire.reason}")
        for problem in wire.problems:
            lines += textwrap.wrap(problem, _WRAP, initial_indent="     - ", subsequent_indent=" " * 7)
    return lines


def _fact(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.3f}"
    if isinstance(value, (list, tuple)):
        return "[" + ", ".join(_fact(v) for v in value) + "]"
    if isinstance(value, dict):
        return "{" + ", ".join(f"{k}: {_fact(v)}" for k, v in value.items()) + "}"
    return str(value)
