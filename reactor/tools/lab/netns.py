"""Network namespaces for the scenarios that need a real network path: a
router that answers with ICMP, a link that is pulled, a host that reboots.

Facts this module relies on:

- A network namespace is a whole network stack: its own interfaces,
  routes, sockets, sysctls and TcpExt counters. ``ip netns add NAME`` makes
  one and pins it at ``/run/netns/NAME``; a veth pair is a cable between two
  of them. Traffic in them never touches the host's interfaces.
- ``setns(fd, CLONE_NEWNET)`` moves the *calling thread* into a namespace
  (CAP_SYS_ADMIN); a socket belongs to the namespace it was created in for
  its whole life, wherever the thread goes next. So one process, on one
  thread, can hold sockets of several namespaces and watch them all with one
  select/poll/epoll: the lab steps into a namespace to create a socket (or to
  read its counters, or to ask its sock_diag) and steps straight back.
  Python 3.11 has no ``os.setns``, so it is called through ctypes.
- ``/proc/thread-self/net/...`` and ``/proc/sys/net/...`` show the namespace
  of the thread that opens them.
- A user socket holds a reference on its namespace: ``ip netns del`` only
  unpins it, and the stack (and a veth end in it, and so the veth's other
  end) goes only once its last socket is gone. A socket closed normally may
  live on as an orphan (FIN_WAIT1, LAST_ACK) for minutes when its peer is
  unreachable; closed with SO_LINGER {1, 0} it is gone at once. So the lab
  aborts what it holds in a namespace before it deletes it.

- A packet can be lost without anyone's help: a classic-BPF program on
  an interface's ingress that returns TC_ACT_SHOT (2) drops every packet
  that arrives (``tc filter ... bpf da bytecode "1,6 0 0 2,"``: one
  instruction, "return 2"), and the sender's kernel sees no error -- a cable
  cut somewhere on the path. Taking a veth end *down* is not that: the
  carrier goes at both ends, so the sender's own transmissions fail
  locally (no retransmission is counted, a FIN waits on the persist timer).
  Neither netem nor iptables is needed.

Creating namespaces needs root and iproute2's ``ip``; where either is
missing, or a sandbox refuses, ``unavailable_reason()`` says why and the
scenarios that need them are skipped with that reason.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import itertools
import os
import re
import shutil
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

__all__ = ["unavailable_reason", "Namespaces"]

#: bound on any one ``ip`` command
IP_TIMEOUT = 10.0
#: bound on waiting for a deleted namespace's interfaces to go
TEARDOWN_TIMEOUT = 5.0
#: sched.h
_CLONE_NEWNET = 0x40000000
#: classic BPF, one instruction: BPF_RET|BPF_K 2 (TC_ACT_SHOT, drop)
_DROP_ALL = "1,6 0 0 2,"

_counter = itertools.count()
_probe: list[str | None] = []  # the cached answer of unavailable_reason()
_libc: list[ctypes.CDLL] = []


def _setns(fd: int) -> None:
    if not _libc:
        _libc.append(ctypes.CDLL(ctypes.util.find_library("c") or None, use_errno=True))
    if _libc[0].setns(fd, _CLONE_NEWNET) != 0:
        err = ctypes.get_errno()
        raise OSError(err, f"setns: {os.strerror(err)}")


def _ip(*args: str, check: bool = True) -> str:
    done = subprocess.run(["ip", *args], capture_output=True, text=True, timeout=IP_TIMEOUT)
    if check and done.returncode != 0:
        raise OSError(f"ip {' '.join(args)}: {done.stderr.strip()}")
    return done.stdout


def unavailable_reason() -> str | None:
    """Why namespaces cannot be used here, or None if they can (probed once:
    a throw-away namespace is made, entered and deleted)."""
    if _probe:
        return _probe[0]
    reason: str | None = None
    if not sys.platform.startswith("linux"):
        reason = "network namespaces are Linux-only"
    elif os.geteuid() != 0:
        reason = "network namespaces need root (CAP_SYS_ADMIN, CAP_NET_ADMIN)"
    elif shutil.which("ip") is None:
        reason = "no `ip` command (install iproute2)"
    else:
        name = f"rlabprobe{os.getpid()}"
        try:
            _ip("netns", "add", name)
            try:
                with _entered(name):
                    pass
            finally:
                _ip("netns", "del", name, check=False)
        except (OSError, subprocess.SubprocessError) as exc:
            reason = f"cannot create and enter a network namespace here: {exc}"
    _probe.append(reason)
    return reason


@contextmanager
def _entered(name: str) -> Iterator[None]:
    home = os.open("/proc/thread-self/ns/net", os.O_RDONLY)
    try:
        target = os.open(f"/run/netns/{name}", os.O_RDONLY)
        try:
            _setns(target)
        finally:
            os.close(target)
        try:
            yield
        finally:
            _setns(home)
    finally:
        os.close(home)


class Namespaces:
    """The namespaces and veth pairs of one scenario; ``close()`` deletes
    what is left (the caller has aborted its sockets in them first)."""

    def __init__(self) -> None:
        self._names: list[str] = []
        self._tag = f"{os.getpid() % 100000}"

    def add(self, role: str) -> str:
        """A new namespace with only ``lo``, up; returns its name."""
        name = f"rlab{self._tag}{role}{next(_counter)}"
        _ip("netns", "add", name)
        self._names.append(name)
        self.ip(name, "link", "set", "lo", "up")
        return name

    def ip(self, name: str, *args: str) -> str:
        """``ip -n NAME ARGS``; its stdout (OSError on failure)."""
        return _ip("-n", name, *args)

    def veth(self, ns_a: str, cidr_a: str, ns_b: str, cidr_b: str) -> tuple[str, str]:
        """A cable between two namespaces, addressed and up; the interface
        names (in ns_a, in ns_b). Made inside ns_a: never in the host's."""
        n = next(_counter)
        return cable(self.ip, ns_a, cidr_a, ns_b, cidr_b, f"rl{self._tag}x{n}a", f"rl{self._tag}x{n}b")

    def has_link(self, name: str, link: str) -> bool:
        return link in _ip("-n", name, "-o", "link", "show", check=False)

    def blackhole(self, name: str, link: str) -> None:
        """Drop every packet arriving on ``link`` in ``name`` (see the module docs)."""
        self._tc(name, "qdisc", "add", "dev", link, "ingress")
        self._tc(name, "filter", "add", "dev", link, "ingress", "bpf", "da", "bytecode", _DROP_ALL)

    def dropped(self, name: str, link: str) -> int | None:
        """How many packets ``blackhole`` has dropped on ``link`` so far (the
        ingress qdisc's counter), or None if it cannot be read."""
        try:
            with self.inside(name):
                done = subprocess.run(["tc", "-s", "qdisc", "show", "dev", link, "ingress"], capture_output=True,
                                      text=True, timeout=IP_TIMEOUT)
        except (OSError, subprocess.SubprocessError):
            return None
        found = re.search(r"\(dropped (\d+)", done.stdout)
        return int(found.group(1)) if found else None

    def unblock(self, name: str, link: str) -> None:
        """Undo ``blackhole``: the packets get through again."""
        self._tc(name, "qdisc", "del", "dev", link, "ingress")

    def _tc(self, name: str, *args: str) -> None:
        if shutil.which("tc") is None:
            raise OSError("no `tc` command (iproute2)")
        with self.inside(name):
            done = subprocess.run(["tc", *args], capture_output=True, text=True, timeout=IP_TIMEOUT)
        if done.returncode != 0:
            raise OSError(f"tc {' '.join(args)} (in {name}): {done.stderr.strip()}")

    def sysctl(self, name: str, key: str, value: str) -> None:
        """Write a per-namespace sysctl, e.g. ``net/ipv4/ip_forward``."""
        with self.inside(name), open(f"/proc/sys/{key}", "w") as f:
            f.write(value)

    @contextmanager
    def inside(self, name: str | None) -> Iterator[None]:
        """This thread in namespace ``name`` for the block (None: stay)."""
        if name is None:
            yield
            return
        with _entered(name):
            yield

    def delete(self, name: str) -> None:
        if name in self._names:
            self._names.remove(name)
            _ip("netns", "del", name, check=False)

    def wait_gone(self, name: str, link: str) -> bool:
        """Wait (bounded) until ``link`` has left namespace ``name``: the
        kernel tears a deleted namespace down in a work queue."""
        deadline = time.monotonic() + TEARDOWN_TIMEOUT
        while time.monotonic() < deadline:
            if not self.has_link(name, link):
                return True
            time.sleep(0.01)
        return False

    def close(self) -> None:
        for name in reversed(self._names):
            _ip("netns", "del", name, check=False)
        self._names.clear()


def cable(ip: Callable[..., Any], ns_a: str, cidr_a: str, ns_b: str, cidr_b: str,
          end_a: str, end_b: str) -> tuple[str, str]:
    """A veth pair ``end_a`` (in ns_a) -- ``end_b`` (in ns_b), addressed and
    up, through ``ip(namespace, *args)``. Made inside ns_a, so the pair never
    exists in the host's namespace."""
    ip(ns_a, "link", "add", end_a, "type", "veth", "peer", "name", end_b, "netns", ns_b)
    ip(ns_a, "addr", "add", cidr_a, "dev", end_a)
    ip(ns_b, "addr", "add", cidr_b, "dev", end_b)
    ip(ns_a, "link", "set", end_a, "up")
    ip(ns_b, "link", "set", end_b, "up")
    return end_a, end_b
