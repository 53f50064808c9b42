"""``python -m reactor``: info, and argument errors."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

import reactor


def run_cli(*args: str, timeout: float = 30) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "reactor", *args], capture_output=True, text=True, timeout=timeout)


def test_info_names_backends_limits_and_native():
    done = run_cli("info")
    assert done.returncode == 0, done.stderr
    assert "backends (best first): " + ", ".join(reactor.available_backends()) in done.stdout
    assert "somaxconn:" in done.stdout
    assert "fd limit: soft" in done.stdout
    assert "native accelerator:" in done.stdout


def test_info_json():
    done = run_cli("info", "--json")
    facts = json.loads(done.stdout)
    assert facts["default_backend"] == reactor.available_backends()[0]
    assert facts["backends"]["select"]["max_fd"] == 1024
    assert isinstance(facts["somaxconn"], int)


def test_unknown_command_exits_2_with_usage():
    done = run_cli("frobnicate")
    assert done.returncode == 2
    assert "usage:" in done.stderr


def test_no_command_exits_2():
    done = run_cli()
    assert done.returncode == 2
    assert "usage:" in done.stderr


def test_a_closed_stdout_ends_quietly():
    # `python -m reactor lab --list | head -1`: no BrokenPipeError traceback
    proc = subprocess.Popen([sys.executable, "-m", "reactor", "lab", "--list"], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE)
    assert proc.stdout is not None
    proc.stdout.close()  # before the child writes: its first write gets EPIPE
    _, stderr = proc.communicate(timeout=30)
    assert b"Traceback" not in stderr and b"BrokenPipeError" not in stderr


@pytest.mark.parametrize("args, message", [
    (("serve", "--unix", ""), "expected a path, not an empty string"),  # it used to serve TCP silently
    (("serve", "--unix", "/tmp/" + "x" * 120), "at most 107 bytes"),  # it used to say "[Errno None] ... None"
    (("serve", "--stats-interval", "1e-300"), ">= 0.01"),  # it used to print 2,314 lines/s at 71% CPU
    (("bench", "accept", "--concurrency", "99999999999"), "in 1..100000"),  # it used to end in a traceback
])
def test_bad_serve_and_bench_arguments_exit_2_naming_the_rule(args, message):
    done = run_cli(*args)
    assert done.returncode == 2, done.stderr
    assert message in done.stderr and "usage:" in done.stderr
    assert "Traceback" not in done.stderr
