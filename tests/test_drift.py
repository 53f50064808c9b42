"""Guards against drift between places that must say the same thing: the
repository paths the sources name, the C reference server's accept policy
and the library's, one SO_LINGER {1, 0}.

What each catches: a comment or docstring that sends its reader to a file
that was moved or never existed (``accel.c`` named an ``_accept.py`` at the
package's top and a ``test_native.py`` that were gone); an errno added to
``ACCEPT_SKIP`` and not to the C server (it lacked ETIMEDOUT and
ECONNRESET); another copy of the SO_LINGER {1, 0} value (there were six).
"""

from __future__ import annotations

import errno
import functools
import os
import pathlib
import re
import subprocess

from reactor._net.accept import ACCEPT_SKIP

ROOT = pathlib.Path(__file__).resolve().parent.parent
#: the repository's own top-level folders (a path starting with one of them is a repository path)
TOP = ("reactor", "tests", "_native", "bench", "docs", ".ci")
#: what counts as source: code, build and CI files (prose and data are not read)
SOURCE_SUFFIXES = {".py", ".c", ".h", ".cdef", ".toml", ".cfg", ".sh"}
SOURCE_NAMES = {"Makefile", "run", "pythons", "pyroot"}
SKIP_DIRS = {".git", ".venv", "build", "dist", "__pycache__", ".pytest_cache", ".mypy_cache", ".ruff_cache",
             ".benchmarks", ".ci-logs", "logs"}
#: paths a source names that are written, not read: outputs (with why)
OUTPUTS = {
    "bench/results/": "make bench / bench-micro write their JSON and plots here; never committed "
                      "(tests/test_packaging.py keeps them out of the sdist)",
}
#: files that name paths of another project's tree (with why): not ours to exist
FOREIGN_TREES = {
    "tests/aio/anyio_suite.py": "anyio's test node ids (its tests folder's files), in anyio's sdist",
    "tests/aio/test_anyio_suite.py": "anyio's test node ids, made up for the comparison's own tests",
    "tests/aio/known.py": "anyio's test node ids of the tests it lists",
}
#: a repository path: one of TOP, a slash, then path characters (a * is a glob)
_PATH = re.compile(r"(?<![\w./-])(?:" + "|".join(re.escape(top) for top in TOP) + r")/[\w./*-]*[\w*/]")


def _is_source(path: pathlib.Path) -> bool:
    return (path.parts[:1] == (".ci",) or path.name in SOURCE_NAMES or path.suffix in SOURCE_SUFFIXES)


@functools.cache
def source_files() -> tuple[pathlib.Path, ...]:
    """The project's own files: what git tracks where there is a checkout
    (never a cache or a fetched suite beside it, such as anyio's tests in
    .cache/), else a walk of the tree (an sdist)."""
    try:
        listed = subprocess.run(["git", "ls-files", "-z"], cwd=ROOT, capture_output=True, check=True,
                                timeout=30).stdout.decode().split("\0")
    except (OSError, subprocess.SubprocessError):
        listed = None
    if listed is not None:
        return tuple(ROOT / name for name in listed if name and _is_source(pathlib.Path(name))
                     and (ROOT / name).exists())
    found = []
    for folder, dirs, names in os.walk(ROOT):
        # not into virtualenvs (.venv, .venv-3.12, ...), caches and build output
        dirs[:] = [d for d in dirs if d not in SKIP_DIRS and not d.startswith(".venv")]
        here = pathlib.Path(folder)
        in_ci = here.relative_to(ROOT).parts[:1] == (".ci",)
        found += [here / name for name in names
                  if in_ci or name in SOURCE_NAMES or pathlib.Path(name).suffix in SOURCE_SUFFIXES]
    return tuple(found)


def exists(named: str) -> bool:
    if any(named.startswith(output) for output in OUTPUTS):
        return True
    if "*" in named:
        return any(ROOT.glob(named))
    return (ROOT / named).exists()


def test_every_repository_path_a_source_names_exists():
    missing = []
    files = source_files()
    assert len(files) > 100 and ROOT / "_native" / "accel.c" in files
    for path in files:
        if str(path.relative_to(ROOT)) in FOREIGN_TREES:
            continue
        text = path.read_text(errors="replace")
        for match in _PATH.finditer(text):
            named = match.group().rstrip(".")
            if not exists(named):
                line = text.count("\n", 0, match.start()) + 1
                missing.append(f"{path.relative_to(ROOT)}:{line}: {named}")
    assert missing == [], "these name files that do not exist (moved? renamed?)"


def c_function(source: str, name: str) -> str:
    """The body of C function ``name`` in ``source`` (up to its closing brace at column 0)."""
    start = re.search(rf"^(?:static\s+)?\w[\w\s*]*\b{name}\s*\([^)]*\)\s*\{{", source, re.MULTILINE)
    assert start is not None, f"no function {name}"
    end = source.index("\n}", start.end())
    return source[start.end():end]


def test_the_c_servers_accept_skip_set_is_accept_pys():
    """_native/cserver.c's cs_skip (the reference server of ``bench --peers c``)
    skips exactly the errnos reactor's drains skip; the C drain (accel.c) is
    given ACCEPT_SKIP itself, so it cannot differ."""
    body = c_function((ROOT / "_native" / "cserver.c").read_text(), "cs_skip")
    names = re.findall(r"case\s+(E[A-Z0-9]+)\s*:", body)
    assert len(names) == len(set(names))
    c_skip = {getattr(errno, name) for name in names if hasattr(errno, name)}
    assert c_skip == ACCEPT_SKIP, (
        f"only in C: {sorted(errno.errorcode[e] for e in c_skip - ACCEPT_SKIP)}; "
        f"only in accept.py: {sorted(errno.errorcode[e] for e in ACCEPT_SKIP - c_skip)}")


def test_so_linger_rst_is_defined_once():
    value = re.compile(r"""pack\(\s*["']ii["']\s*,\s*1\s*,\s*0\s*\)""")
    places = [str(path.relative_to(ROOT)) for path in source_files() if path.suffix == ".py"
              for _ in value.finditer(path.read_text(errors="replace"))]
    assert places == ["reactor/_net/sockopts.py"], "import LINGER_RST from reactor._net.sockopts"
