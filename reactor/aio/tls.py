"""asyncio's TLS layer for reactor.aio, reading into the loop's one buffer.

``SharedBufferSSLProtocol`` is asyncio's ``sslproto.SSLProtocol`` with one
change: instead of a 256 KiB receive buffer per connection it reads into the
loop's read buffer (``reactor._net.tls.lend_receive_buffer`` says why that is
safe). ``create_server(ssl=)``, ``create_connection(ssl=)`` and the other
``_make_ssl_transport`` users get it; ``loop.start_tls`` is asyncio's own
code and keeps asyncio's buffer.
"""

from __future__ import annotations

from asyncio import sslproto
from typing import Any

from .._net.tls import lend_receive_buffer

__all__ = ["SharedBufferSSLProtocol"]


class SharedBufferSSLProtocol(sslproto.SSLProtocol):
    """``sslproto.SSLProtocol`` reading into ``loop._read_view``."""

    def __init__(self, loop: Any, *args: Any, **kwargs: Any) -> None:
        lend_receive_buffer(self, getattr(loop, "_read_view", None),
                            lambda: super(SharedBufferSSLProtocol, self).__init__(loop, *args, **kwargs))
