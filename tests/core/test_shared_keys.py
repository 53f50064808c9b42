"""share_keys: late attribute names stay in CPython's shared table.

Measured with tracemalloc: an instance given a name its class's table lacks
gets a dict of its own (~270 B) on the spot; with the name shared first, the
same store allocates nothing."""

from __future__ import annotations

import sys
import tracemalloc

from reactor._core.shared_keys import share_keys

#: instances made before the late name is set: enough to close the table
BURST = 64


def late_store_cost(cls: type) -> int:
    """Bytes allocated by giving a fresh instance, made after ``BURST``
    others, the name ``late`` its ``__init__`` never sets."""
    crowd = [cls() for _ in range(BURST)]
    crowd[0].spill = 1  # another late name takes the one place left
    fresh = cls()
    tracemalloc.start()
    try:
        before = tracemalloc.get_traced_memory()[0]
        fresh.late = 1
        return tracemalloc.get_traced_memory()[0] - before
    finally:
        tracemalloc.stop()
        del crowd


def make_class() -> type:
    class Connection:
        late = 0  # the initial state as a class attribute, as the transport keeps it

        def __init__(self) -> None:
            self.early = 1

    return Connection


def test_a_late_name_gives_the_instance_a_dict_of_its_own():
    # What share_keys prevents: this is CPython's behaviour, not ours. From
    # 3.13 CPython adds a late name to the class's table itself (no dict of
    # the instance's own), and share_keys is harmless and moot there.
    cost = late_store_cost(make_class())
    if sys.version_info >= (3, 13):
        assert cost < 64, cost
    else:
        assert cost > 200, cost


def test_a_shared_late_name_costs_no_dict():
    cls = make_class()
    share_keys(cls, ("early", "late"))
    assert late_store_cost(cls) < 64


def test_the_probe_leaves_the_class_defaults_alone():
    cls = make_class()
    share_keys(cls, ("early", "late"))
    assert cls.late == 0 and cls().late == 0 and not hasattr(cls(), "other")


def test_a_name_a_subclass_made_a_property_is_left_alone():
    cls = make_class()

    class Sub(cls):  # type: ignore[misc, valid-type]
        @property
        def late(self) -> int:  # read-only: setting it would raise
            return 7

    share_keys(Sub, ("early", "late"))
    assert Sub().late == 7
