"""A scenario's timeline: each step is a call one side made, what the kernel
answered, and then, for every socket of the scenario, its TCP state and what
each readiness backend reports for it. Printed as text for people and as
JSON for programs (and the tests, which assert on the same records)."""

from __future__ import annotations

import textwrap
from dataclasses import asdict, dataclass, field
from typing import Any

__all__ = ["SockView", "Step", "Outcome", "format_outcome"]

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

    def sock(self, name: str) -> SockView:
        for view in self.sockets:
            if view.name == name:
                return view
        raise KeyError(f"no socket {name!r} in step {self.call!r}; have {[v.name for v in self.sockets]}")


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
    """The timeline as text: one line per call, one per socket under it."""
    lines = [f"== {outcome.name}: {outcome.title}"]
    if outcome.status == "skipped":
        lines.append(f"   skipped: {outcome.reason}")
        return "\n".join(lines)
    lines.append(f"{'ms':>9}  {'side':<6}  call -> result")
    indent = " " * 19
    for step in outcome.steps:
        lines.append(f"{step.t * 1000:9.1f}  {step.side:<6}  {step.call} -> {step.result}")
        if step.note:
            lines += textwrap.wrap(step.note, _WRAP, initial_indent=f"{indent}# ", subsequent_indent=f"{indent}  ")
        for view in step.sockets:
            text = f"{indent}{view.name:<{_NAME_W}} {view.state:<{_STATE_W}} {view.detail:<{_DETAIL_W}}"
            if view.fd:
                text += " ".join(f"{b} {_flags(view.ready.get(b, ()), b):<{_READY_W[b]}}" for b in backends)
            else:
                text += "(no fd)"
            lines.append(text.rstrip())
    facts = {key: value for key, value in outcome.facts.items() if key != "traceback"}
    if facts:
        lines += textwrap.wrap(", ".join(f"{key}={_fact(value)}" for key, value in facts.items()), _WRAP,
                               initial_indent="   found: ", subsequent_indent=" " * 10)
    if outcome.status == "failed":
        lines.append(f"   FAILED: {outcome.reason}")
    lines.append(f"   ({outcome.duration:.2f} s)")
    return "\n".join(lines)


def _fact(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.3f}"
    if isinstance(value, (list, tuple)):
        return "[" + ", ".join(_fact(v) for v in value) + "]"
    if isinstance(value, dict):
        return "{" + ", ".join(f"{k}: {_fact(v)}" for k, v in value.items()) + "}"
    return str(value)
