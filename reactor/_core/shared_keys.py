"""Keep a class's instances on CPython's shared attribute table.

CPython (3.11 and later) stores the attribute names of a class's instances
once, in a table shared by all of them; each instance holds only an array
of values. The table takes new names only while the class is young: every
new instance lowers how many names may still be added (3.11's
``init_inline_values``), and at most 30 in all. An instance that is given a
name the table does not hold gets a dict of its own -- about 270 bytes more
per instance, made on the spot, and attribute reads that take the slower
dict path from then on.

A connection that keeps its initial state in class attributes (so that
accepting and closing it stores little) sets most names late: ``_sock`` and
``_io_seen`` on its first read, ``_buffer`` when a write is queued. If 64
clients connect before the first of them sends a byte, those names come too
late for the table, and every connection after that pays for its own dict
(measured: +271 B per connection on the first read). ``share_keys`` puts the
names in the table when the class is made, in the order given (the most
common first: past the table's size, the last ones miss).
"""

from __future__ import annotations

import inspect
from collections.abc import Iterable

__all__ = ["share_keys"]


def share_keys(cls: type, names: Iterable[str]) -> None:
    """Enter ``names`` in ``cls``'s shared attribute table, now: set each on a
    throwaway instance made without ``__init__``, then delete it again (the
    table keeps the name), so the instance dies in the class's initial state
    (a ``__del__`` sees the class defaults). Names that a subclass made
    properties are skipped: their values never live in the dict."""
    probe: object = object.__new__(cls)
    for name in names:
        if hasattr(inspect.getattr_static(cls, name, None), "__set__"):
            continue  # a property or slot: never stored in the instance's dict
        object.__setattr__(probe, name, None)
        object.__delattr__(probe, name)
