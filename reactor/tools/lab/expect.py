"""Holding the kernel to a script, packetdrill-style.

Each scenario has a script (``expected``): for each of its connections,
named by the client socket, the segments the kernel must put on the wire,
in order. The check is strict, as packetdrill's is: every captured segment
of a scripted connection must be taken by a line of the script, in order,
and a connection the script does not name must send nothing. What the
kernel may do either way is said as such, never left loose:

- a line may take a range of segments (``times=(1, None)``: a SYN and its
  retransmissions), or none (``times=(0, 1)``: a delayed ACK that may
  ride on the next segment instead);
- ``before="lsn: accept"``: the segment was sent before that call
  returned; ``after="kill"``: after that call began (the first step whose
  call starts so);
- ``gap=(lo, hi)``: seconds since the previous segment the same way (the
  retransmission timer);
- flags are compared as a set, PSH aside (the kernel sets it on the last
  segment of a write, which a script does not care about) unless the line
  names it; ``data`` says whether the segment carries bytes.

The verdict (:class:`~.timeline.Wire`) says which segments matched, how
many each line took, and otherwise the first place the wire and the
script part, in words.
"""

from __future__ import annotations

from dataclasses import dataclass

from .session import WireCapture
from .timeline import TO_CLIENT, TO_SERVER, Segment, Step, Wire

__all__ = ["Line", "Script", "to_server", "to_client", "check"]


@dataclass(frozen=True)
class Line:
    """One line of a script: a segment (or a run of them) one way."""

    way: str
    #: "SYN", "SYN/ACK", "ACK", "FIN/ACK", "RST", "RST/ACK", "ICMP host unreachable" (a prefix: "ICMP")
    flags: str
    #: True: carries bytes; False: none; None: either
    data: bool | None = False
    #: how many segments in a row it takes: (at least, at most; None: no limit)
    times: tuple[int, int | None] = (1, 1)
    #: True: each must repeat sequence space already sent; False: none may
    retransmission: bool | None = None
    #: sent before this call returned (a prefix of the step's call)
    before: str = ""
    #: sent after this call began
    after: str = ""
    #: seconds since the previous segment sent the same way (at least, at most; None: no limit)
    gap: tuple[float, float | None] | None = None

    def describe(self) -> str:
        text = f"{self.way} {self.flags}"
        if self.data:
            text += "+data"
        low, high = self.times
        if (low, high) != (1, 1):
            text += f" x{low}{'+' if high is None else '' if high == low else f'-{high}'}"
        if self.retransmission:
            text += " (retransmitted)"
        if self.gap is not None:
            low_gap, high_gap = self.gap
            text += (f" {low_gap:g}-{high_gap:g} s" if high_gap is not None else f" {low_gap:g}+ s") + \
                " after the last one"
        if self.before:
            text += f" before `{self.before}` returns"
        if self.after:
            text += f" after `{self.after}`"
        return text


def to_server(flags: str, **kw: object) -> Line:
    """A segment from the socket that called connect() to its peer."""
    return Line(TO_SERVER, flags, **kw)  # type: ignore[arg-type]


def to_client(flags: str, **kw: object) -> Line:
    """A segment from the server end (or a router, for ICMP) to the client."""
    return Line(TO_CLIENT, flags, **kw)  # type: ignore[arg-type]


@dataclass(frozen=True)
class Script:
    """A scenario's expectations on the wire."""

    #: one sentence: what the script holds the kernel to
    checks: str
    #: by connection (its client socket's name), in order
    conns: dict[str, tuple[Line, ...]]


def _flag_set(text: str, keep_psh: bool) -> frozenset[str]:
    names = frozenset(text.split("/"))
    return names if keep_psh else names - {"PSH"}


def _find(steps: list[Step], prefix: str) -> Step | None:
    return next((step for step in steps if step.call.startswith(prefix)), None)


class _Matcher:
    """One connection's segments against its lines."""

    def __init__(self, lines: tuple[Line, ...], segments: list[Segment], steps: list[Step]) -> None:
        self.lines = lines
        self.segments = segments
        self.steps = steps
        # the gap of each segment: since the previous one the same way
        last: dict[str, float] = {}
        self.gaps: list[float | None] = []
        for segment in segments:
            self.gaps.append(segment.t - last[segment.way] if segment.way in last else None)
            last[segment.way] = segment.t
        self._memo: dict[tuple[int, int], list[int] | None] = {}
        #: the furthest segment the script reached, and why each line it tried there did not take it
        self.stuck: tuple[int, dict[int, str]] = (-1, {})

    def misfit(self, line: Line, j: int) -> str:
        """Why segment j does not fit the line ("" if it does)."""
        segment = self.segments[j]
        if segment.way != line.way:
            return "the other way"
        if line.flags.startswith("ICMP") or segment.flags.startswith("ICMP"):
            if not segment.flags.startswith(line.flags):
                return "other flags"
        elif _flag_set(segment.flags, "PSH" in line.flags) != _flag_set(line.flags, "PSH" in line.flags):
            return "other flags"
        if line.data is not None and (segment.length > 0) != line.data:
            return "carries bytes" if segment.length else "carries no bytes"
        if line.retransmission is not None and segment.retransmission != line.retransmission:
            return "is a retransmission" if segment.retransmission else "is not a retransmission"
        if line.gap is not None:
            gap, (low, high) = self.gaps[j], line.gap
            if gap is None or gap < low or (high is not None and gap > high):
                return f"comes {'first' if gap is None else f'{gap:.3f} s after the last one'}"
        for prefix, before in ((line.before, True), (line.after, False)):
            if not prefix:
                continue
            step = _find(self.steps, prefix)
            if step is None:
                return f"no step `{prefix}` in the timeline"
            if before and not segment.t < step.end:
                return f"comes after `{prefix}` returned"
            if not before and not segment.t > step.start:
                return f"comes before `{prefix}` began"
        return ""

    def match(self, i: int = 0, j: int = 0) -> list[int] | None:
        """How many segments each line from i on takes of those from j on,
        or None if they cannot all be taken."""
        key = (i, j)
        if key in self._memo:
            return self._memo[key]
        result: list[int] | None = None
        if i == len(self.lines):
            if j == len(self.segments):
                result = []
            else:
                self._stuck(j, i, "the script has ended")
        else:
            line = self.lines[i]
            low, high = line.times
            most = 0
            limit = len(self.segments) - j if high is None else high
            while most < limit and j + most < len(self.segments):
                why = self.misfit(line, j + most)
                if why:
                    self._stuck(j + most, i, why)
                    break
                most += 1
            if most < low and j + most == len(self.segments):
                self._stuck(j + most, i, "the capture has ended")
            for take in range(most, low - 1, -1):  # the most first: a run is one line's while it fits
                rest = self.match(i + 1, j + take)
                if rest is not None:
                    result = [take, *rest]
                    break
        self._memo[key] = result
        return result

    def _stuck(self, j: int, i: int, why: str) -> None:
        if j > self.stuck[0]:
            self.stuck = (j, {})
        if j == self.stuck[0]:
            self.stuck[1].setdefault(i, why)

    def explain(self) -> str:
        """Where the wire and the script part: the furthest segment any way
        of matching reached, and why each line tried there did not take it
        (the last line first: the one the script was furthest along)."""
        j, tried = self.stuck
        seen = f"segment {j + 1}" if j < len(self.segments) else f"after {len(self.segments)} segments"
        got = f"`{self.segments[j].text(conn=False)}`" if j < len(self.segments) else "nothing more"
        parts = []
        for i in sorted(tried, reverse=True):
            wanted = f"`{self.lines[i].describe()}`" if i < len(self.lines) else "nothing more"
            parts.append(f"{wanted} ({tried[i]})")
        return f"{seen}: the wire has {got}, the script {'; or '.join(parts)}"


def check(script: Script, captured: WireCapture, steps: list[Step]) -> Wire:
    """The verdict on a scenario's capture."""
    expected = [f"{conn}: " + ", ".join(line.describe() for line in lines) for conn, lines in script.conns.items()]
    wire = Wire(captured.where, "matched", segments=captured.segments, expected=expected, foreign=captured.foreign)
    if captured.unavailable:
        wire.status, wire.reason = "not captured", captured.unavailable
        return wire
    for conn, lines in script.conns.items():
        matcher = _Matcher(lines, [s for s in captured.segments if s.conn == conn], steps)
        counts = matcher.match()
        if counts is None:
            wire.problems.append(f"{conn}: {matcher.explain()}")
            counts = [0] * len(lines)
        wire.counts += counts
    for conn in sorted({s.conn for s in captured.segments} - set(script.conns)):
        count = sum(1 for s in captured.segments if s.conn == conn)
        wire.problems.append(f"{conn}: {count} segments, where the script has none")
    if captured.drops or captured.unstamped:
        wire.status = "incomplete"
        wire.reason = (f"the kernel dropped {captured.drops} packets for the tap (its queue was full)"
                       if captured.drops else f"{captured.unstamped} packets came without the kernel's time")
    elif wire.problems:
        wire.status = "differed"
        wire.reason = f"{len(wire.problems)} connection(s) parted from the script"
    return wire
