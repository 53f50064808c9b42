"""Socket activation: ``serve --fd N`` and systemd's LISTEN_FDS/LISTEN_PID.

The parent plays systemd: it binds and listens, passes the fd, and keeps its
own copy (as systemd does). The inherited socket must be used as it is."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys

import pytest

import reactor
from reactor import kernel
from reactor.tools.serve import SD_LISTEN_FDS_START, activation_fd

from ..support import Factory, Server, run_until


@pytest.fixture
def spawn():
    started: list[Server] = []

    def start(argv: list[str], **kwargs) -> Server:
        server = Server(argv=argv, **kwargs)
        started.append(server)
        return server

    yield start
    for server in started:
        server.kill()


def serve_argv(*args: str) -> list[str]:
    return [sys.executable, "-m", "reactor", "serve", *args]


#: what systemd does between fork and exec: the socket on fd 3, LISTEN_PID
#: the pid that will exec serve (so it must be set in the child itself)
SYSTEMD_LIKE = (
    "import os, sys\n"
    "fd = int(sys.argv[1])\n"
    "if fd != 3:\n"
    "    os.dup2(fd, 3); os.close(fd)\n"
    "os.environ['LISTEN_PID'] = str(os.getpid()); os.environ['LISTEN_FDS'] = '1'\n"
    "os.execv(sys.executable, [sys.executable, '-m', 'reactor', 'serve', *sys.argv[2:]])\n"
)


def tcp_listener(backlog: int = 16) -> socket.socket:
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    sock.listen(backlog)
    return sock


def echo_once(address, family=socket.AF_INET, payload: bytes = b"activated") -> bytes:
    with socket.socket(family, socket.SOCK_STREAM) as client:
        client.settimeout(10)
        client.connect(address)
        client.sendall(payload)
        client.shutdown(socket.SHUT_WR)
        data = b""
        while chunk := client.recv(65536):
            data += chunk
    return data


def test_serve_fd_uses_the_inherited_tcp_socket(spawn):
    with tcp_listener() as held:
        fd = held.fileno()
        server = spawn(serve_argv("--fd", str(fd), "--protocol", "echo"), pass_fds=(fd,))
        assert server.match, server.first_line
        assert (server.host, server.port) == held.getsockname()
        for _ in range(3):
            assert echo_once(held.getsockname()) == b"activated"
        code, out, err = server.stop()
        assert code == 0, err
        assert "stopped: accepted=3 " in out
        # The socket is still ours and still listening: serve only closed its copy.
        assert held.getsockopt(socket.SOL_SOCKET, socket.SO_ACCEPTCONN) == 1


@pytest.mark.parametrize("backlog", [None, 5])
def test_the_inherited_backlog_is_kept_unless_asked(spawn, backlog):
    with tcp_listener(backlog=16) as held:
        fd = held.fileno()
        extra = ["--backlog", str(backlog)] if backlog else []
        server = spawn(serve_argv("--fd", str(fd), *extra), pass_fds=(fd,))
        assert server.match, server.first_line
        # one socket, two fds: the parent sees what serve did to it
        assert kernel.listen_queue(held) == (0, backlog or 16)
        assert server.stop()[0] == 0


def test_listen_fds_from_systemd(spawn):
    with tcp_listener() as held:
        fd = held.fileno()
        env = {k: v for k, v in os.environ.items() if not k.startswith("LISTEN_")}
        server = spawn([sys.executable, "-c", SYSTEMD_LIKE, str(fd), "--protocol", "echo"], pass_fds=(fd,), env=env)
        assert server.match, server.first_line
        assert server.port == held.getsockname()[1]
        assert echo_once(held.getsockname()) == b"activated"
        with open(f"/proc/{server.proc.pid}/environ", "rb") as f:
            initial = f.read()  # the environment at exec: it had them
        assert b"LISTEN_FDS=1" in initial
        code, out, err = server.stop()
        assert code == 0, err
        assert "stopped: accepted=1 " in out


def test_an_inherited_unix_socket_keeps_its_file(spawn, tmp_path):
    path = str(tmp_path / "activated.sock")
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as held:
        held.bind(path)
        held.listen(16)
        fd = held.fileno()
        server = spawn(serve_argv("--fd", str(fd)), pass_fds=(fd,))
        assert server.first_line.startswith(f"listening on {path} backend="), server.first_line
        assert echo_once(path, socket.AF_UNIX) == b"activated"
        code, _, err = server.stop(signal.SIGTERM)
        assert code == 0, err
        assert os.path.exists(path), "serve unlinked a socket file it did not create"
        # still the live socket the parent holds
        with socket.socket(socket.AF_UNIX) as probe:
            probe.connect(path)  # queued on the parent's socket: not refused


def run_serve(*args: str, pass_fds: tuple[int, ...] = (), env=None) -> subprocess.CompletedProcess:
    return subprocess.run(serve_argv(*args), capture_output=True, text=True, timeout=30, pass_fds=pass_fds,
                          env=env)


def test_fd_that_is_not_a_socket_exits_2(tmp_path):
    read, write = os.pipe()
    try:
        done = run_serve("--fd", str(read), pass_fds=(read,))
    finally:
        os.close(read)
        os.close(write)
    assert done.returncode == 2
    assert f"--fd {read}: not a socket" in done.stderr


def test_fd_that_is_not_listening_exits_2():
    with socket.socket() as bound:
        bound.bind(("127.0.0.1", 0))
        done = run_serve("--fd", str(bound.fileno()), pass_fds=(bound.fileno(),))
    assert done.returncode == 2
    assert "not listening" in done.stderr


def test_fd_that_is_not_open_exits_2():
    done = run_serve("--fd", "987")
    assert done.returncode == 2
    assert "--fd 987" in done.stderr


@pytest.mark.parametrize("extra", [["--port", "0"], ["--host", "127.0.0.1"], ["--unix", "/tmp/x.sock"],
                                   ["--workers", "2"]])
def test_fd_with_an_address_of_its_own_is_a_usage_error(extra):
    with tcp_listener() as held:
        done = run_serve("--fd", str(held.fileno()), *extra, pass_fds=(held.fileno(),))
    assert done.returncode == 2
    assert "usage:" in done.stderr and "--fd" in done.stderr


def test_activation_fd_reads_and_unsets_the_variables():
    environ = {"LISTEN_PID": str(os.getpid()), "LISTEN_FDS": "1", "LISTEN_FDNAMES": "web", "OTHER": "x"}
    assert activation_fd(environ) == SD_LISTEN_FDS_START == 3
    assert environ == {"OTHER": "x"}


def test_activation_fd_ignores_another_process_variables():
    environ = {"LISTEN_PID": str(os.getpid() + 1), "LISTEN_FDS": "1"}
    assert activation_fd(environ) is None
    assert activation_fd({}) is None


def test_activation_fd_refuses_more_than_one_socket():
    with pytest.raises(ValueError, match="LISTEN_FDS=2"):
        activation_fd({"LISTEN_PID": str(os.getpid()), "LISTEN_FDS": "2"})


def test_listen_on_a_listening_unix_socket_keeps_its_path_and_backlog(tmp_path):
    path = str(tmp_path / "s")
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    sock.bind(path)
    sock.listen(3)
    with reactor.Reactor() as loop:
        factory = Factory()
        lst = loop.listen(factory, sock=sock)
        assert lst.address == path
        with socket.socket(socket.AF_UNIX) as client:
            client.connect(path)
            run_until(loop, lambda: factory.made == 1)
        lst.close()
    assert os.path.exists(path)


def test_listen_on_a_listening_tcp_socket_keeps_its_backlog():
    sock = tcp_listener(backlog=7)
    with reactor.Reactor() as loop:
        lst = loop.listen(Factory(), sock=sock)
        assert lst.backlog == 7  # not listened again with the default
        lst.close()
