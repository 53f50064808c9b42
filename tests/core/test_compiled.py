"""The data path runs compiled where it was built, and pure under the switch
(``reactor._compiled``; DESIGN section 4): a run that should test the
compiled modules cannot pass on the pure ones by accident, nor the other way."""

from __future__ import annotations

import importlib
import importlib.machinery
import os
import pathlib
import subprocess
import sys

import pytest

import reactor
from reactor import _compiled

PACKAGE = pathlib.Path(reactor.__file__).parent


def _built(name: str) -> bool:
    """True if an extension of module ``name`` sits beside its source."""
    stem = PACKAGE.joinpath(*name.split(".")[1:])
    return any(stem.with_name(stem.name + suffix).exists() for suffix in importlib.machinery.EXTENSION_SUFFIXES)


def _run(code: str, native: str | None) -> str:
    env = {key: value for key, value in os.environ.items() if key != "REACTOR_NATIVE"}
    if native is not None:
        env["REACTOR_NATIVE"] = native
    return subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True,
                          check=True, timeout=60).stdout


def test_every_module_named_has_its_source():
    for name in _compiled.MODULES:
        assert PACKAGE.joinpath(*name.split(".")[1:]).with_suffix(".py").exists(), name


@pytest.mark.parametrize("name", _compiled.MODULES)
def test_a_built_module_runs_compiled_unless_the_switch_says_pure(name):
    module = importlib.import_module(name)
    if _compiled.pure_forced():
        assert not _compiled.is_compiled(module), module.__file__
    else:
        assert _compiled.is_compiled(module) == _built(name), module.__file__


def test_reactor_native_0_runs_every_module_pure():
    out = _run("from reactor import _compiled; print(sorted(_compiled.compiled_modules().items()))", "0")
    assert out.strip() == str(sorted((name, False) for name in _compiled.MODULES))


@pytest.mark.parametrize("native", [None, "auto", "1"])
def test_otherwise_every_built_module_runs_compiled(native):
    out = _run("from reactor import _compiled; print(sorted(_compiled.compiled_modules().items()))", native)
    assert out.strip() == str(sorted((name, _built(name)) for name in _compiled.MODULES))


def test_info_says_which_modules_run_compiled():
    code = "import sys; sys.argv = ['reactor', 'info']; from reactor.tools.cli import main; main()"
    pure = _run(code, "0")
    assert "compiled modules (Cython): none; pure: " + ", ".join(_compiled.MODULES) in pure
    default = _run(code, None)
    line = next(line for line in default.splitlines() if line.startswith("compiled modules (Cython): "))
    for name in _compiled.MODULES:
        assert (name in line.partition("; pure:")[0]) == _built(name), line
