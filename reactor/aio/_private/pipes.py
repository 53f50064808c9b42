"""asyncio's Unix pipe and subprocess transports (``unix_events``), private
classes of every version from 3.11. They need nothing of a loop but
``_add_reader``/``_add_writer``/``_remove_reader``/``_remove_writer``,
``call_soon`` and ``create_future``: reactor.aio reuses them as they are."""

from __future__ import annotations

from asyncio import unix_events
from typing import Any

__all__ = ["UnixReadPipeTransport", "UnixWritePipeTransport", "UnixSubprocessTransport"]

UnixReadPipeTransport: Any = unix_events._UnixReadPipeTransport  # type: ignore[attr-defined]
UnixWritePipeTransport: Any = unix_events._UnixWritePipeTransport  # type: ignore[attr-defined]
UnixSubprocessTransport: Any = unix_events._UnixSubprocessTransport  # type: ignore[attr-defined]
