"""Lifecycles as data: the helpers behind every transition table.

A state machine here is a table, ``state -> {event: next state}``, and
everything that affects the machine lives in that table (h11's rule): the
transport's (``reactor._net.transport``), the listener's, the connect attempt's
and the HTTP request parser's. A move the table does not have is a bug in
reactor, never a user error, and raises ``TransitionError`` at once, where
it happens, instead of leaving an object in a state nobody meant. Public
calls that may come twice (``close()``, ``pause()``) look their move up
with ``.get`` and do nothing where there is none.

``by_event`` turns a table around, ``event -> {state: next state}``: a
machine whose moves are on a hot path looks them up with one dict lookup
on a cached str hash (``_ON_X[state]``), as the transport does.
"""

from __future__ import annotations

from collections.abc import Hashable, Iterable, Mapping
from typing import Any, TypeVar

__all__ = ["TransitionError", "by_event", "next_state", "check_table"]

S = TypeVar("S", bound=Hashable)
E = TypeVar("E", bound=Hashable)


class TransitionError(RuntimeError):
    """A move its table does not have (a bug in reactor, never a user error)."""


def next_state(table: Mapping[S, Mapping[E, S]], state: S, event: E, owner: object) -> S:
    """The state ``event`` moves ``owner`` to from ``state``; raises
    ``TransitionError`` naming all three if the table has no such move
    (``owner``'s repr is made only then: a move costs two lookups)."""
    try:
        return table[state][event]
    except KeyError:
        raise TransitionError(f"{owner!r}: no move from state {state!s} on {event!s}") from None


def by_event(table: Mapping[S, Mapping[E, S]]) -> dict[E, dict[S, S]]:
    """The same table by event: ``event -> {state: next state}``."""
    columns: dict[E, dict[S, S]] = {}
    for state, row in table.items():
        for event, target in row.items():
            columns.setdefault(event, {})[state] = target
    return columns


def check_table(table: Mapping[Any, Mapping[Any, Any]], states: Iterable[Any], events: Iterable[Any]) -> None:
    """Raise ``TransitionError`` unless ``table`` has a row for every one of
    ``states`` (an enum), and every move goes from one of ``states``, on one
    of ``events``, to one of ``states`` (for the tests of each machine)."""
    state_set, event_set = set(states), set(events)
    missing = state_set - set(table)
    if missing:
        raise TransitionError(f"no row for {sorted(map(str, missing))}")
    for state, row in table.items():
        for event, target in row.items():
            if state not in state_set or event not in event_set or target not in state_set:
                raise TransitionError(f"bad move {state!s} --{event!s}--> {target!s}")
