"""Shared fixtures: a reactor per backend that fails the test when a callback
raises unexpectedly, and client sockets that are always closed. Plain helpers
live in ``tests/support.py``."""

from __future__ import annotations

import shutil
import tempfile
from collections.abc import Iterator

import pytest

import reactor

from .support import LOOP_BACKENDS, Clients, ErrorLog


@pytest.fixture
def clients() -> Iterator[Clients]:
    """Plain blocking client sockets, all closed after the test."""
    pool = Clients()
    yield pool
    pool.close_all()


@pytest.fixture
def short_dir() -> Iterator[str]:
    """A new directory under /tmp: Unix socket paths are limited to 107
    bytes, and pytest's tmp_path can be longer."""
    path = tempfile.mkdtemp(prefix="rx-", dir="/tmp")
    yield path
    shutil.rmtree(path, ignore_errors=True)


@pytest.fixture(params=LOOP_BACKENDS)
def backend(request: pytest.FixtureRequest) -> str:
    return request.param


@pytest.fixture
def errors() -> ErrorLog:
    return ErrorLog()


@pytest.fixture
def loop(backend: str, errors: ErrorLog) -> Iterator[reactor.Reactor]:
    """A reactor on ``backend``; the test fails if a callback raised and the
    test did not ``errors.take()`` it."""
    r = reactor.Reactor(backend=backend)
    r.set_exception_handler(errors)
    yield r
    r.close()
    unexpected = errors.take()
    assert not unexpected, f"unexpected exceptions in callbacks: {unexpected}"
