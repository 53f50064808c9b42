"""Fixtures and helpers shared by the core floor's tests."""

from __future__ import annotations

import socket
from collections.abc import Iterator

import pytest


@pytest.fixture
def pairs() -> Iterator[list[socket.socket]]:
    """Sockets made by the test, all closed at the end (already closed ones too)."""
    made: list[socket.socket] = []
    yield made
    for sock in made:
        sock.close()


def socketpair(pairs: list[socket.socket]) -> tuple[socket.socket, socket.socket]:
    """A connected pair, the first end non-blocking, closed with ``pairs``."""
    a, b = socket.socketpair()
    a.setblocking(False)
    pairs += (a, b)
    return a, b
