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

The data path (``reactor._compiled.MODULES``: the fd watchers, the loop
core's dispatch and its handles, the transport) is compiled by Cython in pure-Python mode when
Cython is installed: each ``.py`` file stays the source and runs as it is
where no extension was built. Those extensions are optional too: no Cython,
a Cython that cannot translate for this interpreter, or no compiler -- a
warning, and the pure modules are installed (``REACTOR_NATIVE=1`` at build
time makes any of these fatal). They use the full C API, so a wheel holding
them is tagged for one CPython (``cp311-cp311``), not abi3.
"""

from __future__ import annotations

import os
import re
import tomllib
from pathlib import Path

from setuptools import Extension, setup
from setuptools.command.bdist_wheel import bdist_wheel

HERE = Path(__file__).resolve().parent

#: REACTOR_NATIVE=1 at build time: every optional extension must build.
REQUIRED = os.environ.get("REACTOR_NATIVE", "").strip().lower() in ("1", "on", "true", "yes")

#: The modules Cython compiles, as paths: reactor/_compiled.py's MODULES,
#: read from its text (setup.py must not import the package it builds).
_MODULES_SOURCE = (HERE / "reactor" / "_compiled.py").read_text()

#: Cython's directives for every compiled module. annotation_typing off:
#: the annotations are for mypy and readers, and Cython would otherwise turn
#: ``x: float`` into a C double that refuses an int subclass or None -- a
#: behaviour the pure module does not have. The ``.pxd`` beside a module
#: declares what is typed. binding on (Cython 3's default): functions keep
#: their Python face (``__name__``, ``__qualname__``, ``inspect``).
CYTHON_DIRECTIVES = {
    "language_level": 3,
    "annotation_typing": False,
    "binding": True,
    "embedsignature": False,
}


def _compiled_module_names() -> list[str]:
    block = re.search(r"^MODULES = \(\n(.*?)^\)", _MODULES_SOURCE, re.S | re.M)
    if block is None:
        raise ValueError("setup.py: reactor/_compiled.py has no MODULES = (...) tuple")
    return re.findall(r'"([\w.]+)"', block.group(1))


def _cython_extensions() -> list[Extension]:
    """The data path's extensions, or none (with a warning) when Cython is
    missing or cannot translate them here."""
    names = _compiled_module_names()
    try:
        from Cython.Build import cythonize
    except ImportError:
        if REQUIRED:
            raise
        print("warning: Cython is not installed: reactor's data path is installed pure-Python "
              "(pip install cython, then reinstall, to compile it)")
        return []
    extensions = [Extension(name, [name.replace(".", "/") + ".py"]) for name in names]
    try:
        built = list(cythonize(extensions, compiler_directives=CYTHON_DIRECTIVES, quiet=True))
    except Exception as exc:  # a Cython that does not know this Python, a translation error
        if REQUIRED:
            raise
        print(f"warning: Cython could not translate reactor's data path ({exc!r}): installed pure-Python")
        return []
    for extension in built:
        # cythonize makes new Extension objects and drops `optional`: without
        # it, a missing compiler would fail the install instead of warning
        extension.optional = not REQUIRED
    return built


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
    ext_modules=_cython_extensions(),
    cffi_modules=["_native/build.py:ffibuilder"],
    cmdclass={"bdist_wheel": TaggedWheel},
)
