"""``asyncio.futures._set_result_unless_cancelled`` (every version from 3.11):
set a waiter's result unless it was cancelled meanwhile, in which case it
stays cancelled."""

from __future__ import annotations

from asyncio import futures
from typing import Any

__all__ = ["set_result_unless_cancelled"]

set_result_unless_cancelled: Any = futures._set_result_unless_cancelled  # type: ignore[attr-defined]
