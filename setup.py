"""Build reactor: what pyproject.toml cannot say.

The metadata is in pyproject.toml ``[project]``. This file adds the C
accelerator (``_native/``, cffi out-of-line API mode) and tags the wheel for
what it holds.

The accelerator is optional: without a C compiler the build warns and installs
the pure-Python package, which has the same behaviour. ``REACTOR_NATIVE=1`` at
build time makes a failed compile fatal, so CI cannot pass on the fallback by
accident (``_native/build.py`` passes ``optional=`` to the Extension).

cffi builds the extension against the stable ABI (``py_limited_api``), so the
module is ``reactor/_accel.abi3.so`` and one wheel serves every CPython from
``requires-python`` up: it is tagged ``cp311-abi3-<platform>``, not
``cp311-cp311``. A wheel built where the compile failed holds no compiled code
and is tagged ``py3-none-any``.
"""

from __future__ import annotations

import os
import re
import tomllib
from pathlib import Path

from setuptools import setup
from setuptools.command.bdist_wheel import bdist_wheel

HERE = Path(__file__).resolve().parent


def _limited_api_tag() -> str:
    """``cp311`` from pyproject's ``requires-python = ">=3.11,<3.16"``: the
    oldest CPython the abi3 wheel is for, said once, in pyproject.toml."""
    with open(HERE / "pyproject.toml", "rb") as f:
        requires = tomllib.load(f)["project"]["requires-python"]
    match = re.fullmatch(r"\s*>=\s*3\.(\d+)\s*(,\s*<\s*3\.\d+\s*)?", requires)
    if match is None:
        raise ValueError(f"setup.py expects requires-python '>=3.N' or '>=3.N,<3.M', not {requires!r}")
    return f"cp3{match.group(1)}"


class TaggedWheel(bdist_wheel):
    """A wheel tagged for what it holds: abi3 when every extension built is a
    stable-ABI one, pure when the optional compile failed."""

    def _built_extensions(self) -> list[str]:
        build_ext = self.get_finalized_command("build_ext")
        paths = [build_ext.get_ext_fullpath(ext.name) for ext in build_ext.extensions]
        return [path for path in paths if os.path.exists(path)]

    def get_tag(self) -> tuple[str, str, str]:
        built = self._built_extensions()
        if not built:
            # The files are at the archive's root either way; say they are purelib.
            self.root_is_pure = True
            return ("py3", "none", "any")
        if all(path.endswith(".abi3.so") for path in built):
            self.py_limited_api = _limited_api_tag()
        return super().get_tag()


setup(
    cffi_modules=["_native/build.py:ffibuilder"],
    cmdclass={"bdist_wheel": TaggedWheel},
)
