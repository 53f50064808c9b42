"""Backend selection and the facts each backend reports."""

from __future__ import annotations

import pytest

import reactor
from reactor._core.backends import backend_info, resolve_backend, round_timeout


def test_available_best_first_on_linux():
    names = reactor.available_backends()
    assert names[-1] == "select"
    assert set(names) >= {"select", "poll"}
    if "epoll" in names:
        assert names[0] == "epoll"


def test_auto_is_the_best(monkeypatch):
    # Reactor() alone reads REACTOR_BACKEND: a CI run that sets it must not
    # fail this test for that reason.
    monkeypatch.delenv("REACTOR_BACKEND", raising=False)
    assert resolve_backend("auto") == reactor.available_backends()[0]
    for r in (reactor.Reactor(), reactor.Reactor(backend="auto")):
        with r:
            assert r.backend == reactor.available_backends()[0]


@pytest.mark.parametrize("name", ["select", "poll", "epoll"])
def test_each_backend_by_name(name):
    if name not in reactor.available_backends():
        pytest.skip(f"{name} not on this platform")
    with reactor.Reactor(backend=name) as r:
        assert r.backend == name


def test_unknown_backend_names_the_available_ones():
    with pytest.raises(ValueError) as info:
        reactor.Reactor(backend="iocp")
    for name in reactor.available_backends():
        assert name in str(info.value)
    assert "'iocp'" in str(info.value)


def test_unavailable_backend_says_so():
    missing = [n for n in ("kqueue", "devpoll") if n not in reactor.available_backends()]
    if not missing:
        pytest.skip("every backend is available here")
    with pytest.raises(ValueError, match="not available on this platform"):
        reactor.Reactor(backend=missing[0])


def test_backend_must_be_a_string():
    with pytest.raises(TypeError, match="backend"):
        reactor.Reactor(backend=3)


def test_select_knows_fd_setsize():
    assert backend_info("select").max_fd == reactor.FD_SETSIZE == 1024
    assert backend_info("poll").max_fd is None


@pytest.mark.parametrize(
    "timeout, resolution, expected",
    [(0.0, 1e-3, 0.0), (-1.0, 1e-3, 0.0), (0.0001, 1e-3, 1e-3), (0.0015, 1e-3, 2e-3), (0.002, 1e-3, 2e-3)],
)
def test_round_timeout_rounds_up(timeout, resolution, expected):
    assert round_timeout(timeout, resolution) == pytest.approx(expected)
    assert round_timeout(timeout, resolution) >= timeout


def test_native_argument_is_checked():
    with pytest.raises(ValueError, match="native"):
        reactor.Reactor(native="sometimes")
