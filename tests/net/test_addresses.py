"""reactor._net.addresses: the local address a listener's accepted
connections have, as the kernel gives it to each accepted socket."""

from __future__ import annotations

import socket

import pytest

from reactor._net.addresses import local_address_of_accepted

BINDS = [
    pytest.param(socket.AF_INET, ("127.0.0.1", 0), True, id="ipv4"),
    pytest.param(socket.AF_INET, ("0.0.0.0", 0), False, id="ipv4-wildcard"),
    pytest.param(socket.AF_INET6, ("::1", 0), True, id="ipv6"),
    pytest.param(socket.AF_INET6, ("::", 0), False, id="ipv6-wildcard"),
    pytest.param(socket.AF_UNIX, "path", True, id="unix"),
    pytest.param(socket.AF_UNIX, "\0reactor-test-abstract", True, id="unix-abstract"),
]


@pytest.mark.parametrize(("family", "address", "fixed"), BINDS)
def test_the_listener_names_what_every_accepted_socket_says(family, address, fixed, tmp_path):
    """Where the bind fixes it, the answer is the accepted socket's own
    getsockname(); on a wildcard bind (the address the client reached
    varies) there is none."""
    if family == socket.AF_INET6 and not socket.has_ipv6:
        pytest.skip("no IPv6 here")
    if address == "path":
        address = str(tmp_path / "s.sock")
    with socket.socket(family) as listener:
        listener.bind(address)
        listener.listen()
        known = local_address_of_accepted(listener)
        target = listener.getsockname()
        if family == socket.AF_INET and not fixed:
            target = ("127.0.0.1", target[1])
        elif family == socket.AF_INET6 and not fixed:
            target = ("::1", target[1])
        with socket.socket(family) as client:
            client.connect(target)
            accepted, _ = listener.accept()
            with accepted:
                if fixed:
                    assert known == accepted.getsockname()
                else:
                    assert known is None


def test_an_unbound_or_closed_socket_names_nothing():
    with socket.socket(socket.AF_UNIX) as unbound:
        assert local_address_of_accepted(unbound) is None  # getsockname() is ''
    closed = socket.socket()
    closed.close()
    assert local_address_of_accepted(closed) is None
