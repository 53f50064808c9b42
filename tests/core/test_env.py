"""REACTOR_NATIVE and REACTOR_BACKEND are read when a Reactor is made, not
once per process (DESIGN section 2): each test changes the environment
*after* reactor was imported and a first Reactor made, and the next Reactor
must follow it."""

from __future__ import annotations

import pytest

import reactor
from reactor import native
from reactor._core.loop import EventLoop
from reactor.errors import NativeUnavailableError

needs_extension = pytest.mark.skipif(
    native.extension() is None, reason=f"C accelerator not built: {native.extension_error()}")


def make(**kwargs) -> reactor.Reactor:
    r = reactor.Reactor(**kwargs)
    r.close()
    return r


@pytest.fixture
def hidden_extension(monkeypatch: pytest.MonkeyPatch) -> None:
    """The extension as if it were not built (the cached import says so)."""
    monkeypatch.setattr(native, "_ext", None)
    monkeypatch.setattr(native, "_ext_error", "the C accelerator is not built (hidden by the test)")
    monkeypatch.setattr(native, "_ext_loaded", True)


# ------------------------------------------------------------ REACTOR_NATIVE

@needs_extension
def test_reactor_native_0_is_read_by_each_new_reactor(monkeypatch):
    monkeypatch.delenv("REACTOR_NATIVE", raising=False)
    assert make().native is True
    monkeypatch.setenv("REACTOR_NATIVE", "0")
    assert make().native is False
    assert not reactor.native_available()
    assert reactor.native_error() == "disabled by REACTOR_NATIVE=0"
    monkeypatch.delenv("REACTOR_NATIVE")
    assert make().native is True
    assert reactor.native_available() and reactor.native_error() is None


@needs_extension
def test_reactor_native_0_refuses_native_true(monkeypatch):
    monkeypatch.delenv("REACTOR_NATIVE", raising=False)
    assert make(native=True).native is True
    monkeypatch.setenv("REACTOR_NATIVE", "0")
    with pytest.raises(NativeUnavailableError, match="disabled by REACTOR_NATIVE=0"):
        reactor.Reactor(native=True)


def test_reactor_native_1_requires_the_extension(monkeypatch, hidden_extension):
    monkeypatch.delenv("REACTOR_NATIVE", raising=False)
    assert make().native is False  # "auto": the pure path, quietly
    monkeypatch.setenv("REACTOR_NATIVE", "1")
    with pytest.raises(NativeUnavailableError, match="REACTOR_NATIVE=1 requires the accelerator.*hidden"):
        reactor.Reactor()
    assert make(native=False).native is False  # an explicit False is still allowed


def test_native_error_says_why_the_extension_is_missing(monkeypatch, hidden_extension):
    monkeypatch.delenv("REACTOR_NATIVE", raising=False)
    assert not reactor.native_available()
    assert "hidden by the test" in reactor.native_error()
    with pytest.raises(NativeUnavailableError, match="native=True but"):
        reactor.Reactor(native=True)


# ----------------------------------------------------------- REACTOR_BACKEND

@pytest.mark.parametrize("cls", [reactor.Reactor, EventLoop])
def test_reactor_backend_is_read_by_each_new_loop(monkeypatch, cls):
    monkeypatch.setenv("REACTOR_BACKEND", "poll")
    with cls() as r:
        assert r.backend == "poll"
    monkeypatch.setenv("REACTOR_BACKEND", " select ")
    with cls() as r:
        assert r.backend == "select"
    monkeypatch.setenv("REACTOR_BACKEND", "")
    with cls() as r:
        assert r.backend == reactor.available_backends()[0]
    monkeypatch.delenv("REACTOR_BACKEND")
    with cls() as r:
        assert r.backend == reactor.available_backends()[0]


@pytest.mark.parametrize("value, why", [("bogus", "unknown backend 'bogus'"), ("kqueue", "not available")])
def test_a_bad_reactor_backend_names_the_variable_and_the_choices(monkeypatch, value, why):
    if value in reactor.available_backends():
        pytest.skip(f"{value} is available here")
    monkeypatch.setenv("REACTOR_BACKEND", value)
    with pytest.raises(ValueError) as info:
        reactor.Reactor()
    message = str(info.value)
    assert "REACTOR_BACKEND" in message and why in message
    for name in reactor.available_backends():
        assert name in message


def test_an_explicit_backend_wins_over_the_environment(monkeypatch):
    monkeypatch.setenv("REACTOR_BACKEND", "poll")
    with reactor.Reactor(backend="select") as r:
        assert r.backend == "select"
    monkeypatch.setenv("REACTOR_BACKEND", "bogus")  # not even looked at
    with reactor.Reactor(backend="auto") as r:
        assert r.backend == reactor.available_backends()[0]
