"""A scenario as a ladder diagram: the picture of the TCP lifecycle from
the lecture notes, drawn from what this machine's kernel did.

Two columns, client and server. Time runs down, one row per event --
a segment, a call, something the lab or the kernel reported -- in the
order they happened, with the time of each at the left (the rows are
evenly spaced, not to scale: a handshake takes 50 µs and a retransmission
a second; a gap longer than ``GAP`` is written out). Each segment is an
arrow from its sender's column to its receiver's, labelled with its flags
and relative seq/ack (dashed: a retransmission; colours: SYN blue, FIN
green, RST red, data black, ICMP orange). Each call is written on its
side at the row it returned, after a bar that spans the rows of the
segments the kernel sent while it ran (on loopback a whole handshake
happens inside ``connect()``). Each socket's TCP state, as the kernel
reported it after a step, is written beside its column where it changes.

Every element carries a ``gid`` (``segment-N``, ``segment-label-N``,
``call-N``, ``state-NAME-N``, ``note-N``), which is the SVG element's id
too: the tests find the picture's parts by it.
"""

from __future__ import annotations

import os
import platform
from collections.abc import Iterable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from .timeline import TO_SERVER, Outcome, Segment, Step

if TYPE_CHECKING:
    from matplotlib.figure import Figure

__all__ = ["ladder", "draw_all", "save", "rows", "Row", "CLIENT_X", "SERVER_X"]

#: the columns, in axes coordinates (0 left, 1 right)
CLIENT_X, SERVER_X = 0.36, 0.64
#: where the calls' text ends (client, right-aligned) and starts (server):
#: between them and the columns, the states
_CLIENT_CALLS, _SERVER_CALLS = 0.285, 0.715
#: an arrow drops this much of a row: the segment's time on the wire
_SLANT = 0.6
#: inches per row, and around the rows
_ROW_IN, _HEAD_IN, _FOOT_IN = 0.3, 1.0, 0.5
_WIDTH_IN = 14.0
#: a silence longer than this (s) is written beside the next row's time
GAP = 0.05
#: text longer than this many characters is cut
_CALL_CHARS, _LAB_CHARS = 52, 64
_COLOURS = {"SYN": "#1f5fbf", "FIN": "#2e8b3a", "RST": "#c62828", "ICMP": "#e07b00"}


@dataclass
class Row:
    """One event of the picture: a segment or a step."""

    t: float
    segment: Segment | None = None
    step: Step | None = None
    index: int = 0  # the segment's or the step's index in the outcome


def rows(outcome: Outcome) -> list[Row]:
    """The events in time order: each segment at its time, each step at
    the time its call returned (a segment sent inside a call comes first)."""
    events = [Row(seg.t, segment=seg, index=i) for i, seg in enumerate(outcome.wire.segments if outcome.wire else [])]
    events += [Row(step.end, step=step, index=i) for i, step in enumerate(outcome.steps)]
    # segments before steps at the same instant; otherwise stable
    events.sort(key=lambda row: (row.t, 0 if row.segment is not None else 1))
    return events


def _cut(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[:limit - 1] + "…"


def _colour(flags: str, length: int) -> str:
    for key in ("RST", "SYN", "FIN", "ICMP"):
        if key in flags:
            return _COLOURS[key]
    return "black" if length else "#555555"


def _time(t: float) -> str:
    return f"{t * 1000:.1f} ms" if t < 1 else f"{t:.3f} s"


def _segment_label(segment: Segment, several: bool) -> str:
    parts = [f"{segment.conn}:"] if several else []
    parts.append(segment.flags)
    if segment.flags.startswith("ICMP"):
        parts.append(f"from {segment.src}")
    else:
        parts.append(f"seq {segment.seq}")
        if segment.ack is not None:
            parts.append(f"ack {segment.ack}")
        if segment.length:
            parts.append(f"len {segment.length}")
        parts.append(f"win {segment.win}")
    if segment.retransmission:
        parts.append("(again)")
    return " ".join(parts)


def ladder(outcome: Outcome) -> Figure:
    """The scenario's ladder diagram, as a matplotlib Figure (no pyplot:
    nothing global is kept)."""
    from matplotlib.figure import Figure
    from matplotlib.patches import FancyArrowPatch

    events = rows(outcome)
    n = max(len(events), 1)
    height = _HEAD_IN + n * _ROW_IN + _FOOT_IN
    fig = Figure(figsize=(_WIDTH_IN, height), dpi=100)
    ax = fig.add_axes((0.0, _FOOT_IN / height, 1.0, n * _ROW_IN / height))
    ax.set_xlim(0, 1)
    ax.set_ylim(n, -0.5)  # row 0 at the top
    ax.axis("off")
    top = 1 - 0.25 / height
    fig.text(0.01, top, f"{outcome.name}: {outcome.title}", fontsize=13, weight="bold", va="top", gid="title")
    fig.text(0.01, top - 0.3 / height, _subtitle(outcome), fontsize=8.5, va="top", color="#444444", gid="subtitle")
    for x, name in ((CLIENT_X, "client"), (SERVER_X, "server")):
        ax.plot([x, x], [-0.4, n], color="#999999", lw=1.2, zorder=1, gid=f"column-{name}")
        ax.text(x, -0.45, name, ha="center", va="bottom", fontsize=11, weight="bold", gid=f"header-{name}")
    several = len({s.conn for s in (outcome.wire.segments if outcome.wire else [])}) > 1
    states: dict[str, str] = {}
    last_t: float | None = None
    for y, row in enumerate(events):
        gap = row.t - last_t if last_t is not None else 0.0
        last_t = row.t
        label = _time(row.t) + (f"   (+{gap:.2f} s)" if gap > GAP else "")
        ax.text(0.005, y, label, fontsize=7, va="center", color="#777777", family="monospace", gid=f"time-{y}")
        if row.segment is not None:
            _draw_segment(ax, FancyArrowPatch, row.segment, row.index, y, several)
        elif row.step is not None:
            _draw_step(ax, row.step, row.index, y, events)
            _draw_states(ax, row.step, row.index, y, outcome.sides, states)
    return fig


def _subtitle(outcome: Outcome) -> str:
    kernel = f"Linux {platform.release()}" if platform.system() == "Linux" else platform.system()
    wire = outcome.wire
    if wire is None:
        return f"{kernel}: not run ({outcome.reason})"
    if wire.status == "not captured":
        return f"{kernel}; the wire was not captured: {wire.reason}"
    verdict = "as the script says" if wire.status == "matched" else f"{wire.status.upper()}: {wire.reason}"
    return (f"{kernel}, captured on {wire.where}: {len(wire.segments)} segments, {verdict}.  "
            "Rows in time order, not to scale; dashed: a retransmission")


def _draw_segment(ax: Any, arrow_class: Any, segment: Segment, index: int, y: float, several: bool) -> None:
    start, end = (CLIENT_X, SERVER_X) if segment.way == TO_SERVER else (SERVER_X, CLIENT_X)
    colour = _colour(segment.flags, segment.length)
    arrow = arrow_class((start, y), (end, y + _SLANT), arrowstyle="-|>", mutation_scale=12, color=colour,
                        lw=1.4, linestyle="--" if segment.retransmission else "-", zorder=3, gid=f"segment-{index}")
    ax.add_patch(arrow)
    ax.text((start + end) / 2, y + _SLANT / 2 - 0.12, _segment_label(segment, several), ha="center", va="center",
            fontsize=7.5, color=colour, zorder=4, rotation=0, gid=f"segment-label-{index}",
            bbox={"boxstyle": "round,pad=0.15", "facecolor": "white", "edgecolor": "none", "alpha": 0.85})


def _draw_step(ax: Any, step: Step, index: int, y: float, events: list[Row]) -> None:
    text = f"{step.call} → {step.result}"
    if step.side in ("client", "server"):
        client = step.side == "client"
        x = _CLIENT_CALLS if client else _SERVER_CALLS
        ax.text(x, y, _cut(text, _CALL_CHARS), ha="right" if client else "left", va="center", fontsize=7,
                family="monospace", gid=f"call-{index}", color="black")
        # the bar: from the first row at or after the call began, to this row
        first = next((i for i, row in enumerate(events) if row.t >= step.start), None)
        if first is not None and first < y:
            bar = x + (0.006 if client else -0.006)
            ax.plot([bar, bar], [first - 0.3, y], color="#333333", lw=2, solid_capstyle="butt",
                    gid=f"call-span-{index}")
    else:  # the lab acting on the world, or the kernel reporting: between the columns
        ax.text((CLIENT_X + SERVER_X) / 2, y, _cut(f"[{step.side}] {text}", _LAB_CHARS), ha="center", va="center",
                fontsize=7, style="italic", color="#666666", gid=f"note-{index}",
                bbox={"boxstyle": "round,pad=0.2", "facecolor": "#f4f4f4", "edgecolor": "none"})


def _draw_states(ax: Any, step: Step, index: int, y: float, sides: dict[str, str], states: dict[str, str]) -> None:
    """Each socket's state where it changed, beside its column."""
    changed: dict[str, list[str]] = {"client": [], "server": []}
    for view in step.sockets:
        if states.get(view.name) == view.state:
            continue
        states[view.name] = view.state
        changed[sides.get(view.name, "server")].append(f"{view.name} {view.state}")
    for side, labels in changed.items():
        if not labels:
            continue
        client = side == "client"
        x = CLIENT_X - 0.008 if client else SERVER_X + 0.008
        ax.text(x, y + 0.5, "\n".join(labels), ha="right" if client else "left", va="center",
                fontsize=6.5, color="#5a3e85", weight="bold", gid=f"state-{side}-{index}",
                bbox={"boxstyle": "round,pad=0.15", "facecolor": "#efe9f7", "edgecolor": "none"})


def draw_all(outcomes: Iterable[Outcome], directory: str) -> list[str]:
    """One SVG and one PNG per scenario that ran, in ``directory``
    (made if missing); the paths written."""
    os.makedirs(directory, exist_ok=True)
    written = []
    for outcome in outcomes:
        if outcome.status == "skipped":
            continue
        fig = ladder(outcome)
        for ext in ("svg", "png"):
            path = os.path.join(directory, f"{outcome.name}.{ext}")
            save(fig, path)
            written.append(path)
    return written


def save(fig: Figure, path: str) -> None:
    """Write the figure; the format is the path's extension. SVG keeps its
    text as text (a fifth of the size of glyph outlines, and searchable)."""
    from matplotlib import rc_context

    with rc_context({"svg.fonttype": "none", "svg.hashsalt": "reactor-lab"}):
        fig.savefig(path, format=os.path.splitext(path)[1][1:] or "png")
