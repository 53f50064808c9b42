"""cffi build script (out-of-line API mode) for the ``reactor._accel`` module.

The declarations cffi needs are in ``accel.cdef``, the C code in ``accel.c``
(the accept drain) and ``loadgen.c`` (the benchmark load generator); all are
plain files that C tools can read and compile on their own. They are joined
into one translation unit, with ``#line`` markers so that compiler messages
name the real file and line. setup.py names this file in ``cffi_modules``.
The extension is optional unless REACTOR_NATIVE=1 at build time:
``optional=True`` is passed through to setuptools' Extension, which then
turns a failed compile into a warning.
"""

import os
import pathlib

from cffi import FFI

HERE = pathlib.Path(__file__).resolve().parent
REQUIRED = os.environ.get("REACTOR_NATIVE", "").strip().lower() in ("1", "on", "true", "yes")
SOURCES = ["accel.c", "loadgen.c"]


def _source() -> str:
    parts = []
    for name in SOURCES:
        path = HERE / name
        parts.append(f'#line 1 "_native/{name}"\n{path.read_text()}')
    return "\n".join(parts)


ffibuilder = FFI()
ffibuilder.cdef((HERE / "accel.cdef").read_text())
ffibuilder.set_source(
    "reactor._accel",
    _source(),
    extra_compile_args=["-O2", "-std=gnu11", "-Wall"],
    optional=not REQUIRED,
)

if __name__ == "__main__":
    ffibuilder.compile(verbose=True)
