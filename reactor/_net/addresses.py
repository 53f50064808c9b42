"""How the library writes a socket address in messages and output lines."""

from __future__ import annotations

import os
from typing import Any

__all__ = ["format_address"]


def format_address(sockaddr: Any) -> str:
    """``127.0.0.1:80``, ``[::1]:80``, or a Unix path (``@name`` if abstract)."""
    if isinstance(sockaddr, tuple):
        host, port = sockaddr[0], sockaddr[1]
        return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
    if isinstance(sockaddr, bytes):
        sockaddr = os.fsdecode(sockaddr)
    if sockaddr.startswith("\0"):
        return "@" + sockaddr[1:]
    return sockaddr
