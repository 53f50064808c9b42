"""cffi build script (out-of-line API mode) for the ``reactor._accel`` module.

The declarations cffi needs are in ``accel.cdef``, the C code in ``accel.c``;
both are plain files that C tools can read. setup.py names this file in
``cffi_modules``. The extension is optional unless REACTOR_NATIVE=1 at build
time: ``optional=True`` is passed through to setuptools' Extension, which then
turns a failed compile into a warning.
"""

import os
import pathlib

from cffi import FFI

HERE = pathlib.Path(__file__).resolve().parent
REQUIRED = os.environ.get("REACTOR_NATIVE", "").strip().lower() in ("1", "on", "true", "yes")

ffibuilder = FFI()
ffibuilder.cdef((HERE / "accel.cdef").read_text())
ffibuilder.set_source(
    "reactor._accel",
    (HERE / "accel.c").read_text(),
    extra_compile_args=["-O2", "-std=gnu11", "-Wall"],
    optional=not REQUIRED,
)

if __name__ == "__main__":
    ffibuilder.compile(verbose=True)
