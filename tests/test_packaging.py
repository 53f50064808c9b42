"""The packaging says one thing in one place: the version, the licence, the
Python version, what goes into the sdist, and no oversized files committed."""

from __future__ import annotations

import importlib.metadata
import importlib.util
import re
import shutil
import subprocess
import sys
import tarfile
import tomllib
from pathlib import Path
from typing import Any

import pytest

import reactor

ROOT = Path(__file__).resolve().parent.parent
DIST_NAME = "reactor-loop"
MAX_TRACKED_BYTES = 1024 * 1024


def pyproject() -> dict[str, Any]:
    path = ROOT / "pyproject.toml"
    if not path.exists():
        pytest.skip("no pyproject.toml beside the tests (not a source tree)")
    with path.open("rb") as f:
        return tomllib.load(f)


def python_range(project: dict[str, Any]) -> tuple[tuple[int, int], tuple[int, int]]:
    """(lowest, highest) CPython requires-python admits: '>=3.N,<3.M'."""
    spec = project["requires-python"]
    match = re.fullmatch(r"\s*>=\s*(\d+)\.(\d+)\s*,\s*<\s*(\d+)\.(\d+)\s*", spec)
    assert match, f"requires-python should be '>=3.N,<3.M' (what CI tests), not {spec!r}"
    low_major, low_minor, high_major, high_minor = (int(n) for n in match.groups())
    return (low_major, low_minor), (high_major, high_minor - 1)


def minimum_python(project: dict[str, Any]) -> tuple[int, int]:
    return python_range(project)[0]


def ci_versions() -> list[tuple[int, int]]:
    """The versions CI tests: the one .ci/run installs into .venv (this
    project's main interpreter, the minimum) and the ones .ci/pythons runs."""
    text = (ROOT / ".ci" / "pythons").read_text()
    match = re.search(r"^\[ \$\{#versions\[@\]\} -gt 0 \] \|\| versions=\(([\d. ]+)\)$", text, re.M)
    assert match, ".ci/pythons names no default versions"
    others = [tuple(int(n) for n in v.split(".")) for v in match.group(1).split()]
    return [minimum_python(pyproject()["project"]), *others]  # type: ignore[list-item]


# ---------------------------------------------------------------- version


def test_the_version_is_declared_once_in_reactor_version():
    data = pyproject()
    project = data["project"]
    assert "version" not in project, "pyproject.toml must not spell the version: it is dynamic"
    assert "version" in project.get("dynamic", [])
    assert data["tool"]["setuptools"]["dynamic"]["version"] == {"attr": "reactor.version.__version__"}
    setup_py = (ROOT / "setup.py").read_text()
    assert not re.search(r"\bversion\s*=", setup_py), "setup.py must not set a version"
    assert re.fullmatch(r"\d+\.\d+\.\d+", reactor.__version__)


def test_the_installed_distribution_has_the_package_version():
    try:
        installed = importlib.metadata.version(DIST_NAME)
    except importlib.metadata.PackageNotFoundError:
        pytest.skip(f"the {DIST_NAME} distribution is not installed (pip install -e .)")
    assert installed == reactor.__version__, (
        f"{DIST_NAME} {installed} is installed but reactor/version.py says {reactor.__version__}: "
        "reinstall (pip install -e .)"
    )


def test_the_distribution_is_named_in_one_place():
    assert pyproject()["project"]["name"] == DIST_NAME


# ---------------------------------------------------------------- licence


def test_license_file_is_mit():
    pyproject()  # skips outside a source tree (the sdist has LICENSE too)
    text = (ROOT / "LICENSE").read_text()
    assert text.startswith("MIT License")
    assert "Copyright (c) 2026 the reactor authors" in text
    assert 'THE SOFTWARE IS PROVIDED "AS IS"' in text


def test_metadata_declares_the_license():
    project = pyproject()["project"]
    assert project["license"] == "MIT"
    assert project["license-files"] == ["LICENSE"]
    # setuptools>=77 refuses a License classifier beside a license expression
    assert not [c for c in project["classifiers"] if c.startswith("License ::")]


def test_the_installed_metadata_carries_the_license():
    try:
        meta = importlib.metadata.metadata(DIST_NAME)
    except importlib.metadata.PackageNotFoundError:
        pytest.skip(f"the {DIST_NAME} distribution is not installed (pip install -e .)")
    assert meta["License-Expression"] == "MIT"
    def clauses(spec: str) -> set[str]:  # the metadata writer may reorder them
        return {clause.replace(" ", "") for clause in spec.split(",")}

    assert clauses(meta["Requires-Python"]) == clauses(pyproject()["project"]["requires-python"])


# ---------------------------------------------------------------- one Python version


def test_project_metadata_is_complete():
    project = pyproject()["project"]
    for key in ("name", "description", "readme", "requires-python", "license", "authors", "urls",
                "classifiers", "dependencies", "optional-dependencies", "scripts"):
        assert project.get(key), f"[project] has no {key}"
    assert project["scripts"] == {"reactor": "reactor.tools.cli:main"}
    assert set(project["optional-dependencies"]) >= {"test", "lint", "plot", "peers"}
    assert any(req.startswith("mypy") for req in project["optional-dependencies"]["lint"])
    assert "Typing :: Typed" in project["classifiers"]
    assert (ROOT / "reactor" / "py.typed").exists()
    assert "py.typed" in pyproject()["tool"]["setuptools"]["package-data"]["reactor"]


def test_one_python_version_everywhere():
    data = pyproject()
    major, minor = minimum_python(data["project"])
    assert (major, minor) >= (3, 11)
    assert data["tool"]["ruff"]["target-version"] == f"py{major}{minor}"
    assert data["tool"]["mypy"]["python_version"] == f"{major}.{minor}"
    assert sys.version_info[:2] >= (major, minor)


def test_the_pythons_claimed_are_the_pythons_ci_tests():
    """requires-python, the classifiers and the README say exactly what CI
    runs: a version claimed that CI does not test, or tested and not
    claimed, fails here."""
    data = pyproject()
    low, high = python_range(data["project"])
    claimed = sorted(
        tuple(int(n) for n in c.rsplit("::", 1)[1].strip().split("."))
        for c in data["project"]["classifiers"]
        if re.fullmatch(r"Programming Language :: Python :: \d+\.\d+", c)
    )
    admitted = [(3, minor) for minor in range(low[1], high[1] + 1)]
    assert claimed == admitted == sorted(ci_versions()), (claimed, admitted, ci_versions())
    readme = (ROOT / "README.md").read_text()
    assert f"CPython {low[0]}.{low[1]} to {high[0]}.{high[1]}" in readme


def test_the_extension_is_built_for_the_stable_abi():
    # The wheel is tagged abi3 (setup.py) because cffi builds with py_limited_api.
    spec = importlib.util.find_spec("reactor._accel")
    if spec is None or spec.origin is None:
        pytest.skip("the C accelerator is not built here")
    if hasattr(sys, "gettotalrefcount") or sys.implementation.name != "cpython":
        pytest.skip("cffi does not use the limited API on this interpreter")
    assert spec.origin.endswith(".abi3.so"), spec.origin


# ---------------------------------------------------------------- repository hygiene


def tracked_files() -> list[Path]:
    if shutil.which("git") is None or not (ROOT / ".git").exists():
        pytest.skip("not a git checkout")
    out = subprocess.run(["git", "ls-files", "-z"], cwd=ROOT, capture_output=True, check=True, timeout=30).stdout
    return [ROOT / name for name in out.decode().split("\0") if name]


def test_no_tracked_file_is_over_1_mib():
    sizes = {path: path.stat().st_size for path in tracked_files() if path.is_file()}
    assert sizes, "git ls-files listed nothing"
    big = {str(path.relative_to(ROOT)): size for path, size in sizes.items() if size > MAX_TRACKED_BYTES}
    assert not big, f"files over 1 MiB are tracked (keep summaries, not raw samples): {big}"


# ---------------------------------------------------------------- sdist


@pytest.mark.slow
def test_the_sdist_has_the_c_sources_and_the_license(tmp_path: Path):
    if importlib.util.find_spec("build") is None:
        pytest.skip("`build` is not installed (pip install build)")
    pyproject()
    done = subprocess.run(
        [sys.executable, "-m", "build", "--sdist", "--outdir", str(tmp_path), str(ROOT)],
        cwd=tmp_path, capture_output=True, text=True, timeout=100,
    )
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    (sdist,) = tmp_path.glob("*.tar.gz")
    assert sdist.name == f"{DIST_NAME.replace('-', '_')}-{reactor.__version__}.tar.gz"
    with tarfile.open(sdist) as tar:
        names = {name.split("/", 1)[1] for name in tar.getnames() if "/" in name}
    for needed in ("LICENSE", "README.md", "pyproject.toml", "setup.py", "PKG-INFO",
                   "_native/build.py", "_native/accel.c", "_native/accel.cdef", "_native/loadgen.c",
                   "reactor/tools/peers/asyncio_server.py", "reactor/py.typed", "reactor/version.py",
                   "reactor/_core/handles.pxd", "reactor/_core/core.pxd"):
        assert needed in names, f"{needed} is not in the sdist"
    assert not [n for n in names if n.endswith((".so", ".o", ".pyc"))], "build products in the sdist"
    assert not [n for n in names if n.startswith("bench/results/")], "saved results in the sdist"
