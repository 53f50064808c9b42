"""``python -m reactor lab``: the TCP lifecycle, shown on this machine's kernel.

Each scenario makes real sockets -- on loopback, or in network namespaces it
creates and deletes where a lost link, a router's ICMP or a rebooted host is
needed -- and records a timeline: what each side called, what the kernel
answered (the errno), each socket's TCP state after it (TCP_INFO while we
hold the fd, sock_diag after), and what select, poll and epoll report for
each fd at that moment; and, from a packet tap, every TCP segment of its
connections between the calls. Each scenario's segments are held to its
script, packetdrill-style. The same records are what the tests assert.

Modules: ``probe`` (the three readiness backends side by side), ``netns``
(namespaces, entered per call with setns), ``wire`` (the packet tap and its
parser), ``session`` (the workbench a scenario runs on), ``timeline`` (the
records, as text and JSON), ``loopback`` and ``netpath`` (the scenarios),
``expect`` (scripts and their check) and ``expected`` (each scenario's
script), ``scenarios`` (the list), ``runner`` (running and printing them),
``ladder`` (a scenario drawn as a ladder diagram, with matplotlib).
"""

from __future__ import annotations

from .runner import list_text, run_lab, run_scenario
from .scenarios import SCENARIOS, Scenario
from .timeline import Outcome, Segment, SockView, Step, Wire, format_outcome

__all__ = ["SCENARIOS", "Scenario", "Outcome", "Step", "SockView", "Segment", "Wire", "run_scenario", "run_lab",
           "list_text", "format_outcome"]
