"""The paced schedule and the measured window shared by ``http_load`` and
``db_client``.

Why paced and not as-fast-as-possible: every loop is offered the same load
(``rate`` operations per second, spread over ``connections`` workers), so
CPU per operation and the latency percentiles of different loops are taken
at the same work per second, and no row's latency is the queue that a
saturating client builds. Worker ``k`` issues its ``j``-th operation at
``start + (j * connections + k) / rate``; a worker that falls behind issues
at once and the operation counts as ``late`` (more than ``LATE_S`` behind).

Latency is from when an operation was sent to when its answer was complete:
a timer on a stock loop wakes up to 1 ms after the due time (epoll_wait's
resolution), which would otherwise land on every figure alike. The window
opens ``warmup`` seconds after the start; operations completing inside it
are counted, and the CPU time of the measured process (the server, or this
process) is read by callbacks at its two edges.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

#: an operation issued more than this after its due time counts as late
LATE_S = 0.001
#: the first operation is due this long after the workers are made, so that none is late at once
START_DELAY_S = 0.01


def cpu_of(pid: int) -> tuple[float, float, float]:
    """(user s, system s, total s) of process ``pid``. user and system come
    from /proc/PID/stat in clock ticks (10 ms, split by sampling); the total
    from the sum of each thread's /proc/PID/task/TID/schedstat, in
    nanoseconds, so that a window of a few hundred operations is not
    rounded to a tick (falls back to user + system without schedstat)."""
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    tick = os.sysconf("SC_CLK_TCK")
    user, system = int(fields[11]) / tick, int(fields[12]) / tick
    total_ns = 0
    try:
        for task in Path(f"/proc/{pid}/task").iterdir():
            total_ns += int((task / "schedstat").read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return user, system, user + system
    return user, system, total_ns / 1e9


@dataclass
class Tally:
    """What one paced run saw: every operation's times, and the window's edges."""

    #: (due, sent, done) of each operation that completed
    completed: list[tuple[float, float, float]] = field(default_factory=list)
    #: (when, what) of each operation that failed
    failed: list[tuple[float, str]] = field(default_factory=list)
    cpu_start: tuple[float, float, float] | None = None
    cpu_end: tuple[float, float, float] | None = None
    window_start: float = 0.0
    window_end: float = 0.0

    def as_dict(self) -> dict[str, Any]:
        """The JSON line a program prints for the bench: the operations that
        completed (or failed) between the edges as they actually ran, not as
        they were scheduled, so that a late edge on a loaded machine does not
        count CPU time without its operations."""
        assert self.cpu_start is not None and self.cpu_end is not None  # both edges ran
        user, system, total = (end - start for start, end in zip(self.cpu_start, self.cpu_end, strict=True))
        inside = [(due, sent, done) for due, sent, done in self.completed
                  if self.window_start <= done < self.window_end]
        errors = [what for when, what in self.failed if self.window_start <= when < self.window_end]
        return {"ops": len(inside), "errors": len(errors), "late": sum(sent - due > LATE_S for due, sent, _ in inside),
                "first_error": errors[0] if errors else None, "window_s": self.window_end - self.window_start,
                "cpu_s": total, "user_s": user, "sys_s": system,
                "latencies_us": [round((done - sent) * 1e6) for _, sent, done in inside]}


async def run_paced(ops: Sequence[Callable[[], Awaitable[object]]], rate: float, warmup: float, duration: float,
                    pid: int) -> Tally:
    """Run ``ops[k]`` (one per connection) on the paced schedule for
    ``warmup + duration`` seconds; measure the window and ``pid``'s CPU."""
    # One clock for the schedule and the latencies, not loop.time(): uvloop's
    # is libuv's, in whole milliseconds, which would round every latency.
    clock = time.perf_counter
    loop = asyncio.get_running_loop()
    tally = Tally()
    ended = asyncio.Event()
    start = clock() + START_DELAY_S
    opens, closes = start + warmup, start + warmup + duration

    def edge(which: str) -> None:
        # a callback at the edge, so that the CPU reading and the window are one instant
        if which == "start":
            tally.cpu_start, tally.window_start = cpu_of(pid), clock()
        else:
            tally.cpu_end, tally.window_end = cpu_of(pid), clock()
            ended.set()

    loop.call_later(opens - clock(), edge, "start")
    loop.call_later(closes - clock(), edge, "end")

    async def worker(k: int, op: Callable[[], Awaitable[object]]) -> None:
        for j in range(1 << 62):
            due = start + (j * len(ops) + k) / rate
            if due >= closes:
                return
            now = clock()
            if due > now:
                await asyncio.sleep(due - now)
            sent = clock()
            try:
                await op()
            except Exception as exc:  # a failed operation is a figure, not a crash
                tally.failed.append((clock(), f"{type(exc).__name__}: {exc}"))
                continue
            tally.completed.append((due, sent, clock()))

    await asyncio.gather(*(worker(k, op) for k, op in enumerate(ops)))
    # the last operations may finish before the end edge's callback ran
    await ended.wait()
    return tally


def new_loop(name: str) -> asyncio.AbstractEventLoop:
    """A new event loop: ``reactor.aio``, ``uvloop`` or ``asyncio`` (stock)."""
    if name == "reactor.aio":
        import reactor.aio

        return reactor.aio.new_event_loop()
    if name == "uvloop":
        import uvloop

        return uvloop.new_event_loop()
    if name == "asyncio":
        return asyncio.new_event_loop()
    raise ValueError(f"unknown loop {name!r}: choose reactor.aio, uvloop or asyncio")


def pin(cpu: int | None) -> None:
    """Keep this process on ``cpu`` (None: anywhere)."""
    if cpu is not None:
        os.sched_setaffinity(0, {cpu})


def add_pacing_arguments(parser: argparse.ArgumentParser) -> None:
    """The options every paced program takes: where its peer is, how many
    connections, the offered rate, the window and the CPU to pin to."""
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--connections", type=int, default=16)
    parser.add_argument("--rate", type=float, required=True)
    parser.add_argument("--warmup", type=float, default=0.5)
    parser.add_argument("--duration", type=float, required=True)
    parser.add_argument("--cpu", type=int, default=None)


def print_outcome(loop: asyncio.AbstractEventLoop, main: Awaitable[dict[str, object]]) -> None:
    """Run ``main`` on ``loop``, print its tally as one JSON line (what
    the bench reads), and close the loop."""
    try:
        print(json.dumps(loop.run_until_complete(main)), flush=True)
    finally:
        loop.close()
