"""reactor: a selectors-based event loop that accepts and connects without ever
blocking, with an optional C accelerator for draining the accept queue.

The package has three floors, each importing only from the ones below:
``reactor._core`` (the event loop: callbacks, timers, fds, signals; no
sockets), ``reactor._net`` (listeners and the accept drain, connect,
transports) and ``reactor.tools`` (the command line, serve, bench), which the
library never imports. The public API is re-exported here; everything else is
internal.
"""

from __future__ import annotations

# first: it decides whether the data path's modules run compiled or pure
from . import _compiled  # noqa: F401
from ._core.backends import FD_SETSIZE as FD_SETSIZE
from ._core.backends import available_backends as available_backends
from ._core.handles import Handle as Handle
from ._core.handles import TimerHandle as TimerHandle
from ._net.connector import ConnectAttempt as ConnectAttempt
from ._net.listener import Listener as Listener
from ._net.reactor import Reactor as Reactor
from ._net.stats import ListenerStats as ListenerStats
from ._net.transport import Transport as Transport
from .errors import BackendLimitError as BackendLimitError
from .errors import CancelledError as CancelledError
from .errors import ConnectTimeout as ConnectTimeout
from .errors import InvalidStateError as InvalidStateError
from .errors import NativeUnavailableError as NativeUnavailableError
from .errors import ReactorError as ReactorError
from .errors import ReactorStateError as ReactorStateError
from .errors import UnreachableError as UnreachableError
from .native import native_available as native_available
from .native import native_error as native_error
from .protocols import Protocol as Protocol
from .version import __version__ as __version__

__all__ = [
    "FD_SETSIZE",
    "BackendLimitError",
    "CancelledError",
    "ConnectAttempt",
    "ConnectTimeout",
    "Handle",
    "InvalidStateError",
    "Listener",
    "ListenerStats",
    "NativeUnavailableError",
    "Protocol",
    "Reactor",
    "ReactorError",
    "ReactorStateError",
    "TimerHandle",
    "Transport",
    "UnreachableError",
    "__version__",
    "available_backends",
    "native_available",
    "native_error",
]
