"""Binding a listening socket (reactor/_net/binding.py) on real loopback
sockets: the backlog and the kernel's queue, addresses and families, Unix
socket files (stale, live, not ours), and the arguments of listen and
listen_unix, each error naming its argument and leaking no fd."""

from __future__ import annotations

import errno
import os
import socket

import pytest

from reactor import kernel
from reactor._net.binding import DEFAULT_BACKLOG

from ..support import EchoRecorder, Factory, open_fds, recv_exactly, run_until

# ------------------------------------------------------------------- backlog

class TestBacklog:
    def test_default_is_4096_clamped_to_somaxconn_and_the_kernel_agrees(self, loop):
        lst = loop.listen(Factory())
        assert lst.backlog == min(DEFAULT_BACKLOG, kernel.somaxconn())
        assert kernel.listen_queue(lst.socket) == (0, lst.backlog)

    def test_small_backlog_is_used_as_given(self, loop):
        lst = loop.listen(Factory(), backlog=7)
        assert lst.backlog == 7
        assert kernel.listen_queue(lst.socket)[1] == 7

    def test_large_backlog_is_clamped_and_reported(self, loop):
        lst = loop.listen(Factory(), backlog=10 ** 6)
        assert lst.backlog == kernel.somaxconn()
        assert kernel.listen_queue(lst.socket)[1] == kernel.somaxconn()

    def test_unix_backlog_is_reported(self, loop, short_dir):
        lst = loop.listen_unix(Factory(), os.path.join(short_dir, "s"), backlog=3)
        assert lst.backlog == 3

    def test_queue_holds_the_backlog(self, loop, clients):
        lst = loop.listen(Factory(), backlog=4)
        lst.pause()
        for _ in range(4):
            clients.connect(lst.address)
        assert kernel.listen_queue(lst.socket) == (4, 4)


# ----------------------------------------------------------------- addresses

class TestAddresses:
    def test_empty_host_binds_every_ipv4_interface(self, loop, clients):
        factory = Factory()
        lst = loop.listen(factory, "")
        host, port = lst.address
        assert host == "0.0.0.0" and port > 0 and lst.socket.family == socket.AF_INET
        clients.connect(("127.0.0.1", port))  # loopback is one of them
        run_until(loop, lambda: factory.made == 1)

    def test_default_host_is_loopback_only(self, loop):
        assert loop.listen(Factory()).address[0] == "127.0.0.1"
        assert loop.listen(Factory(), None).address[0] == "127.0.0.1"

    @pytest.mark.parametrize("host", ["a" * 64 + ".example", "a..b", "\udcff.example"],
                             ids=["label-over-63", "empty-label", "lone-surrogate"])
    def test_a_name_that_cannot_be_idna_encoded_is_gaierror(self, loop, host):
        before = open_fds()
        with pytest.raises(socket.gaierror) as info:
            loop.listen(Factory(), host)
        assert type(info.value) is socket.gaierror and info.value.errno == socket.EAI_NONAME
        assert repr(host) in str(info.value) and "IDNA" in str(info.value)
        assert open_fds() == before

    def test_port_zero_reports_the_real_port(self, loop, clients):
        factory = Factory()
        lst = loop.listen(factory, "127.0.0.1", 0)
        host, port = lst.address
        assert host == "127.0.0.1" and port > 0
        assert lst.socket.getsockname() == ("127.0.0.1", port)
        clients.connect(("127.0.0.1", port))
        run_until(loop, lambda: factory.made == 1)

    def test_ipv6_loopback(self, loop, clients):
        if not socket.has_ipv6:
            pytest.skip("no IPv6")
        try:
            probe = socket.socket(socket.AF_INET6)
            probe.bind(("::1", 0))
            probe.close()
        except OSError:
            pytest.skip("::1 not available")
        factory = Factory(EchoRecorder)
        lst = loop.listen(factory, "::1", 0)
        assert lst.address[0] == "::1" and lst.address[1] > 0
        assert lst.socket.family == socket.AF_INET6
        client = clients.connect(lst.address)
        client.sendall(b"six")
        run_until(loop, lambda: factory.protocols and factory.protocols[0].data == b"six")
        assert recv_exactly(client, 3) == b"six"
        assert factory.protocols[0].transport.get_extra_info("peername")[0] == "::1"

    def test_address_in_use_names_the_address(self, loop):
        lst = loop.listen(Factory())
        port = lst.address[1]
        with pytest.raises(OSError) as info:
            loop.listen(Factory(), "127.0.0.1", port)
        assert info.value.errno == errno.EADDRINUSE
        assert f"127.0.0.1:{port}" in str(info.value)

    def test_reuse_port_lets_two_listeners_share_a_port(self, loop):
        if not hasattr(socket, "SO_REUSEPORT"):
            pytest.skip("no SO_REUSEPORT")
        first = loop.listen(Factory(), reuse_port=True)
        second = loop.listen(Factory(), port=first.address[1], reuse_port=True)
        assert second.address == first.address

    def test_an_already_bound_socket(self, loop, clients):
        sock = socket.socket()
        sock.bind(("127.0.0.1", 0))
        factory = Factory()
        lst = loop.listen(factory, sock=sock)
        assert lst.socket is sock and lst.address == sock.getsockname()
        clients.connect(lst.address)
        run_until(loop, lambda: factory.made == 1)
        lst.close()
        assert sock.fileno() == -1


class TestUnix:
    def test_serves_and_removes_its_path_on_close(self, loop, clients, short_dir):
        path = os.path.join(short_dir, "s")
        factory = Factory(EchoRecorder)
        lst = loop.listen_unix(factory, path)
        assert lst.address == path
        client = clients.connect(path)
        client.sendall(b"unix")
        run_until(loop, lambda: factory.protocols and factory.protocols[0].data == b"unix")
        assert recv_exactly(client, 4) == b"unix"
        lst.close()
        assert not os.path.exists(path)

    def test_stale_socket_file_is_replaced(self, loop, clients, short_dir):
        path = os.path.join(short_dir, "s")
        dead = socket.socket(socket.AF_UNIX)
        dead.bind(path)
        dead.listen(1)
        dead.close()  # leaves the file behind, nobody listening
        assert os.path.exists(path)
        factory = Factory()
        loop.listen_unix(factory, path)
        clients.connect(path)
        run_until(loop, lambda: factory.made == 1)

    def test_live_socket_is_refused_with_eaddrinuse(self, loop, short_dir):
        path = os.path.join(short_dir, "s")
        live = loop.listen_unix(Factory(), path)
        with pytest.raises(OSError) as info:
            loop.listen_unix(Factory(), path)
        assert info.value.errno == errno.EADDRINUSE
        assert path in str(info.value)
        assert live.state == "active" and os.path.exists(path)

    def test_a_file_that_is_not_a_socket_is_left_alone(self, loop, short_dir):
        path = os.path.join(short_dir, "f")
        with open(path, "w") as f:
            f.write("precious")
        with pytest.raises(FileExistsError):
            loop.listen_unix(Factory(), path)
        with open(path) as f:
            assert f.read() == "precious"

    def test_close_does_not_remove_another_servers_socket(self, loop, short_dir):
        path = os.path.join(short_dir, "s")
        first = loop.listen_unix(Factory(), path)
        os.unlink(path)
        second = loop.listen_unix(Factory(), path)
        first.close()
        assert os.path.exists(path)
        second.close()
        assert not os.path.exists(path)



# ---------------------------------------------------------------- arguments

class TestValidation:
    @pytest.mark.parametrize(
        "kwargs, exc, name",
        [
            (dict(protocol_factory=42), TypeError, "protocol_factory"),
            (dict(backlog="10"), TypeError, "backlog"),
            (dict(backlog=1.5), TypeError, "backlog"),
            (dict(backlog=True), TypeError, "backlog"),
            (dict(backlog=-1), ValueError, "backlog"),
            (dict(max_accepts="1"), TypeError, "max_accepts"),
            (dict(max_accepts=0), ValueError, "max_accepts"),
            (dict(on_exhausted="drop"), ValueError, "on_exhausted"),
            (dict(port=70000), ValueError, "port"),
            (dict(port=-1), ValueError, "port"),
            (dict(port="80"), TypeError, "port"),
            (dict(host=1), TypeError, "host"),
        ],
    )
    def test_tcp_arguments(self, loop, kwargs, exc, name):
        kwargs = dict(kwargs)
        factory = kwargs.pop("protocol_factory", Factory())
        before = open_fds()
        with pytest.raises(exc) as info:
            loop.listen(factory, **kwargs)
        assert name in str(info.value)
        assert open_fds() == before

    def test_a_datagram_socket_is_refused(self, loop):
        sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        try:
            with pytest.raises(ValueError, match="SOCK_STREAM"):
                loop.listen(Factory(), sock=sock)
        finally:
            sock.close()

    @pytest.mark.parametrize(
        "kwargs, exc, name",
        [
            (dict(path=1), TypeError, "path"),
            (dict(backlog="x"), TypeError, "backlog"),
            (dict(max_accepts=0), ValueError, "max_accepts"),
            (dict(protocol_factory=None), TypeError, "protocol_factory"),
        ],
    )
    def test_unix_arguments(self, loop, short_dir, kwargs, exc, name):
        kwargs = dict(kwargs)
        path = kwargs.pop("path", os.path.join(short_dir, "s"))
        factory = kwargs.pop("protocol_factory", Factory())
        with pytest.raises(exc) as info:
            loop.listen_unix(factory, path, **kwargs)
        assert name in str(info.value)
        if isinstance(path, str):
            assert not os.path.exists(path)
