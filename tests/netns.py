"""Network namespaces for tests that need a real network path: an ICMP
unreachable from a router, a link that goes down under a connection.

Everything happens inside namespaces the test creates and deletes: traffic
never leaves them, never touches the host's interfaces. Creating them needs
root (CAP_SYS_ADMIN, CAP_NET_ADMIN) and iproute2's ``ip``; where either is
missing, or the kernel or a sandbox refuses (``ip netns add`` fails), the
tests skip with the reason.

Code that must run *inside* a namespace runs in a child process started
with ``ip netns exec NAME python -c ...`` (Python 3.11 has no ``os.setns``),
and reports on its stdout, one JSON object per line.

Usage::

    pytestmark = netns.mark            # or @netns.mark on each test

    def test_x():
        with netns.Namespaces() as ns:  # skips if not permitted
            a, b = ns.add(), ns.add()
            ns.veth(a, "10.200.0.1/24", b, "10.200.0.2/24")
            proc = ns.popen_python(a, CODE)
"""

from __future__ import annotations

import itertools
import json
import os
import queue
import subprocess
import sys
import threading
import time
from typing import Any

import pytest

# One probe for the lab and the tests: can a namespace be made (and entered) here?
from reactor.tools.lab.netns import cable, unavailable_reason

__all__ = ["mark", "unavailable_reason", "require", "Namespaces", "ChildLines", "REPO_ROOT"]

#: the marker declared in pyproject.toml
mark = pytest.mark.netns

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
#: bound on any one ``ip`` command
IP_TIMEOUT = 10.0

_names = itertools.count()


def _ip(*args: str, check: bool = True) -> subprocess.CompletedProcess:
    return subprocess.run(["ip", *args], capture_output=True, text=True, timeout=IP_TIMEOUT, check=check)


def require() -> None:
    """Skip the calling test unless namespaces can be made here."""
    reason = unavailable_reason()
    if reason is not None:
        pytest.skip(reason)


class Namespaces:
    """Namespaces, veth pairs and child processes of one test; all removed
    on exit (processes killed by pid first, then namespaces deleted, which
    also deletes the veth ends inside them)."""

    def __init__(self) -> None:
        self._names: list[str] = []
        self._procs: list[subprocess.Popen] = []

    def __enter__(self) -> Namespaces:
        require()
        return self

    def __exit__(self, *exc_info: Any) -> None:
        self.close()

    def add(self) -> str:
        """A new namespace with only ``lo``, up; returns its name."""
        name = f"rtest{os.getpid()}n{next(_names)}"
        _ip("netns", "add", name)
        self._names.append(name)
        self.ip(name, "link", "set", "lo", "up")
        return name

    def ip(self, name: str, *args: str) -> str:
        """Run ``ip -n NAME ARGS`` (fails the test on error); its stdout."""
        done = _ip("-n", name, *args, check=False)
        if done.returncode != 0:
            raise RuntimeError(f"ip -n {name} {' '.join(args)}: {done.stderr.strip()}")
        return done.stdout

    def exec(self, name: str, *cmd: str) -> str:
        """Run a command inside the namespace; its stdout."""
        done = _ip("netns", "exec", name, *cmd, check=False)
        if done.returncode != 0:
            raise RuntimeError(f"ip netns exec {name} {' '.join(cmd)}: {done.stderr.strip()}")
        return done.stdout

    def veth(self, ns_a: str, cidr_a: str, ns_b: str, cidr_b: str) -> tuple[str, str]:
        """Join two namespaces with a veth pair, address both ends and bring
        them up; returns the interface names (in ns_a, in ns_b)."""
        n = next(_names)
        tag = os.getpid() % 100000
        return cable(self.ip, ns_a, cidr_a, ns_b, cidr_b, f"rv{tag}x{n}a", f"rv{tag}x{n}b")

    def sysctl(self, name: str, key: str, value: str) -> None:
        """Set a per-namespace sysctl (e.g. ``net/ipv4/ip_forward``)."""
        self.exec(name, "sh", "-c", f"echo {value} > /proc/sys/{key}")

    def popen_python(self, name: str, code: str, *args: str) -> subprocess.Popen:
        """Start ``python -c code args...`` inside the namespace (this
        interpreter, this checkout importable), stdout piped as text; killed
        on exit."""
        env = dict(os.environ, PYTHONPATH=REPO_ROOT, PYTHONUNBUFFERED="1")
        proc = subprocess.Popen(["ip", "netns", "exec", name, sys.executable, "-c", code, *args],
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env, cwd=REPO_ROOT)
        self._procs.append(proc)
        return proc

    def run_python(self, name: str, code: str, *args: str, timeout: float = 30.0) -> list[dict]:
        """Run ``python -c code args...`` inside the namespace to the end;
        the JSON objects it printed, one per line."""
        proc = self.popen_python(name, code, *args)
        try:
            out, err = proc.communicate(timeout=timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            out, err = proc.communicate()
            raise AssertionError(f"child in {name} did not finish within {timeout} s; stderr: {err}") from None
        if proc.returncode != 0:
            raise AssertionError(f"child in {name} exited {proc.returncode}; stderr: {err}")
        return [json.loads(line) for line in out.splitlines() if line.strip()]

    def close(self) -> None:
        for proc in self._procs:
            if proc.poll() is None:
                proc.kill()  # our own child, by its pid
            try:
                proc.communicate(timeout=5)
            except subprocess.TimeoutExpired:
                pass
        self._procs.clear()
        for name in reversed(self._names):
            # Retried briefly: the kernel may still be tearing down a child's sockets.
            for _ in range(10):
                if _ip("netns", "del", name, check=False).returncode == 0:
                    break
                time.sleep(0.1)
        self._names.clear()


class ChildLines:
    """The JSON lines a child prints, read by a thread so a test can wait
    for the next one with a bound (a pipe read alone cannot time out)."""

    def __init__(self, proc: subprocess.Popen) -> None:
        self._proc = proc
        self._lines: queue.Queue[str | None] = queue.Queue()
        self._thread = threading.Thread(target=self._pump, daemon=True)
        self._thread.start()

    def _pump(self) -> None:
        assert self._proc.stdout is not None
        for line in self._proc.stdout:
            if line.strip():
                self._lines.put(line)
        self._lines.put(None)  # EOF

    def next(self, timeout: float) -> dict:
        """The next JSON object, or fail after ``timeout`` seconds."""
        try:
            line = self._lines.get(timeout=timeout)
        except queue.Empty:
            raise AssertionError(f"no output from the child within {timeout} s") from None
        if line is None:
            self._proc.wait(timeout=5)
            err = self._proc.stderr.read() if self._proc.stderr is not None else ""
            raise AssertionError(f"the child exited ({self._proc.returncode}) without more output; stderr: {err}")
        return json.loads(line)
