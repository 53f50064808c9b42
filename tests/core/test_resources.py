"""What the loop closes for its owners (``reactor._core.resources``), with
fake resources: closed in close_order, including what closing opens, in a
bounded number of rounds; failures reported, the rest still closed; what was
closed logged at INFO, what could not be at ERROR; nothing ever dropped
silently. The loop core (``reactor._core.core``) does it for both loops, so
each test runs on both: reactor's and reactor.aio's (whose close was once a
bare ten rounds that logged a count and stopped at the first
KeyboardInterrupt with the rest dropped)."""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

import pytest

import reactor
import reactor.aio
from reactor._core import core
from reactor._core.resources import CLOSE_FIRST, CLOSE_LAST, CLOSE_NORMAL, Resource
from reactor.errors import ReactorStateError

from ..support import ErrorLog


class FakeResource:
    """Records its closing in ``log``; ``on_close`` runs inside it (a
    connection_lost that opens something, or fails)."""

    close_order = CLOSE_NORMAL

    def __init__(self, loop: Any, log: list, on_close: Callable[[], Any] | None = None) -> None:
        self.loop = loop
        self.log = log
        self.on_close = on_close
        loop.track_resource(self)

    def close_for_loop(self) -> None:
        self.log.append(self)
        self.loop.untrack_resource(self)
        if self.on_close is not None:
            self.on_close()

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {id(self):#x}>"


class FakeListener(FakeResource):
    close_order = CLOSE_FIRST


class FakeAttempt(FakeResource):
    close_order = CLOSE_NORMAL


class FakeConnection(FakeResource):
    close_order = CLOSE_LAST


@pytest.fixture
def errors() -> ErrorLog:
    return ErrorLog()


def make_loop(kind: str) -> Any:
    return reactor.Reactor() if kind == "reactor" else reactor.aio.new_event_loop()


@pytest.fixture(params=["reactor", "aio"])
def loop(request: pytest.FixtureRequest, errors: ErrorLog):
    r = make_loop(request.param)
    r.set_exception_handler(errors)
    yield r
    r.close()


def reactor_records(caplog: pytest.LogCaptureFixture, level: int) -> list[logging.LogRecord]:
    return [rec for rec in caplog.records if rec.name == "reactor" and rec.levelno == level]


def test_fakes_are_resources(loop):
    assert isinstance(FakeConnection(loop, []), Resource)


def test_closed_in_close_order(loop):
    log: list = []
    made = [FakeConnection(loop, log), FakeListener(loop, log), FakeAttempt(loop, log),
            FakeConnection(loop, log), FakeListener(loop, log)]
    loop.close()
    assert sorted(log, key=id) == sorted(made, key=id)
    assert [r.close_order for r in log] == [CLOSE_FIRST, CLOSE_FIRST, CLOSE_NORMAL, CLOSE_LAST, CLOSE_LAST]


def test_untracked_resources_are_left_alone(loop):
    log: list = []
    kept = FakeConnection(loop, log)
    loop.untrack_resource(kept)
    loop.untrack_resource(kept)  # harmless twice
    loop.close()
    assert log == []


def test_what_closing_opens_is_closed_too(loop):
    log: list = []
    opened: list = []
    # a connection whose connection_lost opens a listener (a reconnecting client)
    FakeConnection(loop, log, on_close=lambda: opened.append(FakeListener(loop, log)))
    loop.close()
    assert len(opened) == 1 and opened[0] in log
    assert [type(r).__name__ for r in log] == ["FakeConnection", "FakeListener"]


def test_a_resource_that_opens_another_forever_is_bounded_and_what_is_left_is_named(loop, caplog):
    log: list = []
    made: list = []

    def reopen() -> None:
        made.append(FakeAttempt(loop, log, on_close=reopen))

    made.append(FakeAttempt(loop, log, on_close=reopen))
    with caplog.at_level(logging.INFO, logger="reactor"):
        loop.close()  # returns
    assert len(log) == core.CLOSE_ROUNDS
    [error] = reactor_records(caplog, logging.ERROR)
    message = error.getMessage()
    assert f"after {core.CLOSE_ROUNDS} rounds 1 are left open: 1 FakeAttempt" in message
    # nothing dropped silently: every resource made was closed or is named
    left = [r for r in made if r not in log]
    assert len(left) == 1 and repr(left[0]) in message


def test_a_failing_close_is_reported_and_the_others_are_still_closed(loop, errors, caplog):
    log: list = []

    def fail() -> None:
        raise RuntimeError("close failed")

    bad = FakeListener(loop, log, on_close=fail)
    good = [FakeConnection(loop, log), FakeAttempt(loop, log)]
    with caplog.at_level(logging.INFO, logger="reactor"):
        loop.close()
    assert all(r in log for r in good) and bad in log
    [context] = errors.take()
    assert str(context["exception"]) == "close failed"
    assert context["resource"] is bad
    # the one that failed is reported, not counted as closed
    [info] = reactor_records(caplog, logging.INFO)
    assert info.getMessage().endswith("closed what was still open: 1 FakeAttempt, 1 FakeConnection")


def test_what_was_closed_is_logged_with_counts_per_type(loop, caplog):
    log: list = []
    for _ in range(3):
        FakeConnection(loop, log)
    FakeListener(loop, log)
    with caplog.at_level(logging.INFO, logger="reactor"):
        loop.close()
    [info] = reactor_records(caplog, logging.INFO)
    assert info.getMessage().endswith("closed what was still open: 3 FakeConnection, 1 FakeListener")
    assert not reactor_records(caplog, logging.ERROR)


@pytest.mark.parametrize("kind", ["reactor", "aio"])
def test_nothing_tracked_nothing_logged(caplog, kind):
    with caplog.at_level(logging.DEBUG, logger="reactor"):
        make_loop(kind).close()
    assert [rec for rec in caplog.records if rec.name == "reactor"] == []


def test_an_interrupted_close_keeps_the_rest_for_the_next_close(loop):
    log: list = []

    def interrupt() -> None:
        raise KeyboardInterrupt

    FakeListener(loop, log, on_close=interrupt)
    rest = [FakeConnection(loop, log), FakeConnection(loop, log)]
    with pytest.raises(KeyboardInterrupt):
        loop.close()
    assert not loop.is_closed()
    assert not any(r in log for r in rest)
    loop.close()  # finishes the job
    assert all(r in log for r in rest)
    assert loop.is_closed()


def test_a_closed_loop_refuses_to_track(loop):
    loop.close()
    with pytest.raises(ReactorStateError, match="closed"):
        FakeConnection(loop, [])
