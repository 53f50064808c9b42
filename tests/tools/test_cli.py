"""``python -m reactor``: info, and argument errors."""

from __future__ import annotations

import json
import os
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


# ---------------------------------------- serve's limits, TLS and socket options

@pytest.mark.parametrize("args, message", [
    (("--idle-timeout", "-1"), "argument --idle-timeout: must be 0 (off) or a finite number >= 0.04"),
    (("--idle-timeout", "0.001"), "argument --idle-timeout: must be 0 (off)"),
    (("--idle-timeout", "nan"), "argument --idle-timeout: must be 0 (off)"),
    (("--idle-timeout", "soon"), "argument --idle-timeout: expected a number of seconds"),
    (("--protocol", "http", "--header-timeout", "-3"), "argument --header-timeout: must be 0 (off)"),
    (("--protocol", "http", "--header-timeout", "inf"), "argument --header-timeout: must be 0 (off)"),
    (("--header-timeout", "5"), "--header-timeout applies to --protocol http, not echo"),
    (("--protocol", "discard", "--header-timeout", "0"), "--header-timeout applies to --protocol http"),
    (("--max-connections", "0"), "argument --max-connections: must be >= 1"),
    (("--max-connections", "many"), "argument --max-connections: expected a whole number"),
    (("--user-timeout", "0"), "argument --user-timeout: must be a finite number > 0"),
    (("--user-timeout", "-5"), "argument --user-timeout: must be a finite number > 0"),
    (("--keepalive", "--unix", "/tmp/reactor-cli-test.sock"), "--keepalive applies to TCP connections"),
    (("--user-timeout", "3", "--unix", "/tmp/reactor-cli-test.sock"), "--user-timeout applies to TCP connections"),
    (("--unix-mode", "600"), "--unix-mode needs --unix PATH"),
    (("--unix", "/tmp/reactor-cli-test.sock", "--unix-mode", "999"), "argument --unix-mode: expected an octal mode"),
    (("--unix", "/tmp/reactor-cli-test.sock", "--unix-mode", "1777"), "argument --unix-mode: must be in 0..777"),
    (("--unix", "/tmp/reactor-cli-test.sock", "--unix-mode", "rw"), "argument --unix-mode: expected an octal mode"),
    (("--tls-cert", "/nonexistent/cert.pem"), "--tls-cert and --tls-key go together"),
    (("--tls-key", "/nonexistent/key.pem"), "--tls-cert and --tls-key go together"),
    (("--tls-cert", "/nonexistent/cert.pem", "--tls-key", "/nonexistent/key.pem"),
     "--tls-cert /nonexistent/cert.pem: No such file or directory"),
    (("--proxy-from", "10.0.0.0/8"), "--proxy-from applies with --proxy-protocol"),
    (("--proxy-protocol", "--proxy-from", "10.0.0.1/8"), "argument --proxy-from: '10.0.0.1/8' is not a network"),
    (("--proxy-protocol", "--proxy-from", "balancer"), "argument --proxy-from: 'balancer' is not a network"),
    (("--tls-handshake-timeout", "5"), "--tls-handshake-timeout applies with --tls-cert and --tls-key"),
    (("--tls-shutdown-timeout", "5"), "--tls-shutdown-timeout applies with --tls-cert and --tls-key"),
    (("--tls-handshake-timeout", "0"), "argument --tls-handshake-timeout: must be a finite number > 0"),
    (("--metrics", "9100"), "argument --metrics: expected HOST:PORT"),
    (("--metrics", "127.0.0.1:99999"), "argument --metrics: expected HOST:PORT"),
])
def test_bad_limits_and_options_exit_2_naming_the_flag(args, message):
    done = run_cli("serve", "--port", "0", *args)
    assert done.returncode == 2, (done.stdout, done.stderr)
    assert message in done.stderr and "usage:" in done.stderr
    assert "Traceback" not in done.stderr
    assert not os.path.exists("/tmp/reactor-cli-test.sock")  # refused before any bind


@pytest.fixture(scope="module")
def pems(tmp_path_factory):
    """Two certificates with their keys, a file that is not PEM, an
    encrypted key, and an unreadable one."""
    from ..tlscerts import self_signed

    base = tmp_path_factory.mktemp("pems")
    first, second = base / "first", base / "second"
    first.mkdir()
    second.mkdir()
    cert, key = self_signed(first)
    _other_cert, other_key = self_signed(second)
    junk = base / "junk.pem"
    junk.write_text("not a PEM file\n")
    encrypted = base / "encrypted.pem"
    done = subprocess.run(["openssl", "pkey", "-in", key, "-aes256", "-passout", "pass:secret", "-out",
                           str(encrypted)], capture_output=True, text=True, timeout=30)
    assert done.returncode == 0, done.stderr
    unreadable = base / "unreadable.pem"
    with open(key, "rb") as source:
        unreadable.write_bytes(source.read())
    unreadable.chmod(0)
    return {"cert": cert, "key": key, "other_key": other_key, "junk": str(junk), "encrypted": str(encrypted),
            "unreadable": str(unreadable), "dir": str(base)}


@pytest.mark.parametrize("cert, key, message", [
    ("junk", "key", "--tls-cert {junk}: no PEM certificate in it"),
    ("key", "key", "--tls-cert {key}: no PEM certificate in it"),
    ("dir", "key", "--tls-cert {dir}: Is a directory"),
    ("cert", "junk", "--tls-key {junk}: no PEM private key in it"),
    ("cert", "cert", "--tls-key {cert}: no PEM private key in it"),
    ("cert", "other_key", "--tls-key {other_key} is not the key of --tls-cert {cert}"),
    ("cert", "encrypted", "--tls-key {encrypted}: the key is encrypted"),  # never a passphrase prompt
    ("cert", "unreadable", "--tls-key {unreadable}: Permission denied"),
])
def test_a_bad_certificate_or_key_exits_2_naming_the_file(pems, cert, key, message):
    if key == "unreadable" and os.geteuid() == 0:
        pytest.skip("root reads a file of mode 000")
    done = subprocess.run([sys.executable, "-m", "reactor", "serve", "--port", "0", "--protocol", "http",
                           "--tls-cert", pems[cert], "--tls-key", pems[key]],
                          capture_output=True, text=True, timeout=30, stdin=subprocess.DEVNULL)
    assert done.returncode == 2, (done.stdout, done.stderr)
    assert message.format(**pems) in done.stderr and "usage:" in done.stderr
    assert "Traceback" not in done.stderr


def test_help_says_what_the_defaults_are():
    done = run_cli("serve", "--help")
    text = " ".join(done.stdout.split())  # argparse wraps the lines
    assert done.returncode == 0
    assert "IPv6 only" in text  # --host ::
    assert "777 minus the umask" in text  # --unix-mode's default
    assert "0 = off (default: 60)" in text  # --idle-timeout
    assert "0 = off (default: 10)" in text  # --header-timeout
