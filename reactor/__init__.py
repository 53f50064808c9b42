"""reactor: a selectors-based event loop that accepts and connects without ever
blocking, with an optional C accelerator for draining the accept queue.

The public API is re-exported here; everything else is internal.
"""

from __future__ import annotations

from ._handles import Handle as Handle
from ._handles import TimerHandle as TimerHandle
from .backends import FD_SETSIZE as FD_SETSIZE
from .backends import available_backends as available_backends
from .connector import ConnectAttempt as ConnectAttempt
from .errors import BackendLimitError as BackendLimitError
from .errors import CancelledError as CancelledError
from .errors import ConnectTimeout as ConnectTimeout
from .errors import InvalidStateError as InvalidStateError
from .errors import NativeUnavailableError as NativeUnavailableError
from .errors import ReactorError as ReactorError
from .errors import ReactorStateError as ReactorStateError
from .errors import UnreachableError as UnreachableError
from .loop import Reactor as Reactor
from .native import native_available as native_available
from .native import native_error as native_error
from .protocols import Protocol as Protocol

__version__ = "0.1.0"

__all__ = [
    "FD_SETSIZE",
    "BackendLimitError",
    "CancelledError",
    "ConnectAttempt",
    "ConnectTimeout",
    "Handle",
    "InvalidStateError",
    "NativeUnavailableError",
    "Protocol",
    "Reactor",
    "ReactorError",
    "ReactorStateError",
    "TimerHandle",
    "UnreachableError",
    "available_backends",
    "native_available",
    "native_error",
]
