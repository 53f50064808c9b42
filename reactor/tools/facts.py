"""What this machine is, as ``info`` prints it and the benchmarks record it."""

from __future__ import annotations

import os
import platform
from typing import Any

from .. import __version__, _compiled, kernel, native
from .._core.backends import available_backends, backend_info

__all__ = ["machine_facts"]


def machine_facts() -> dict[str, Any]:
    """What ``info`` reports, as a dict (also recorded by the benchmarks)."""
    soft, hard = kernel.fd_limits()
    backends = available_backends()
    return {
        "reactor": __version__,
        "python": f"{platform.python_implementation()} {platform.python_version()}",
        "platform": platform.platform(),
        "kernel": platform.release(),
        "cpus": _cpu_count(),
        "backends": {
            name: {
                "max_fd": backend_info(name).max_fd,
                "scaling": backend_info(name).scaling,
                "resolution_s": backend_info(name).resolution,
            }
            for name in backends
        },
        "default_backend": backends[0],
        "somaxconn": kernel.somaxconn(),
        "fd_limit_soft": soft,
        "fd_limit_hard": hard,
        "native": native.native_available(),
        "native_error": native.native_error(),
        "native_env": native.env_setting(),
        "compiled_modules": _compiled.compiled_modules(),
    }


def _cpu_count() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        return os.cpu_count() or 1
