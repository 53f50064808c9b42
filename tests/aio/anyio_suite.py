"""anyio's own test suite on reactor.aio, beside stock asyncio: fetch, run, compare.

anyio (the library under Starlette, FastAPI's test client, httpx...) runs its
suite on asyncio with every loop it supports, through the ``loop_factory``
option of its pytest plugin. Here that suite runs on this interpreter twice
in one session, on stock asyncio and on ``reactor.aio.new_event_loop`` (one
run per reactor backend), and the outcomes are compared per test: every test
that passes on stock asyncio must pass on reactor.aio, or be listed in
``known.py`` (``ANYIO_KNOWN``) with the asyncio internal it reads.

- **Fetch.** The anyio sdist carries its tests. The version is the installed
  anyio's (pinned by the ``anyio-suite`` extra in pyproject.toml, so that the
  tests match the library they test); ``pip download`` fetches its sdist,
  checked against :data:`SDIST_SHA256`, into a cache outside the sources
  (``$REACTOR_ANYIO_CACHE``, default ``.cache/anyio`` in the checkout, which
  git ignores and which the Debian roots of ``.ci/pyroot`` share through the
  checkout's bind mount). Only ``tests/`` and ``pyproject.toml`` (its pytest
  configuration) are extracted; the tests import the installed anyio.
- **Run.** ``anyio_session.py`` runs pytest in the extracted tree, as anyio's
  own CI does (its configuration, ``PYTEST_DISABLE_PLUGIN_AUTOLOAD=1``), plus
  ``-p no:cacheprovider`` and ``-m "not network"`` (those tests need the
  Internet). How the reactor loops join anyio's parametrization, and which
  tests are deselected (trio, uvloop, tests that take no ``anyio_backend``),
  is said there.
- **Compare.** Per reactor backend, against the one stock run.

``python -m tests.aio.anyio_suite [--backends epoll,poll] [--eager]`` runs it
by hand and prints the counts and every test that passes on stock only;
``test_anyio_suite.py`` is what CI runs. Environment: ``REACTOR_ANYIO_BACKENDS``
(default: every backend on 3.11, the interpreter the whole suite runs on, and
epoll elsewhere; ``stock-poll`` and ``stock-select`` add stock asyncio on that
selector, compared like a reactor loop, to tell a backend's failure from
reactor.aio's), ``REACTOR_ANYIO_EAGER=1`` (also anyio's eager-task-factory
loop, 3.12+), ``REACTOR_ANYIO_BUDGET`` (seconds; default 600),
``REACTOR_ANYIO_CACHE``.
"""

from __future__ import annotations

import argparse
import fnmatch
import importlib.metadata
import importlib.util
import json
import os
import re
import signal
import subprocess
import sys
import tarfile
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import reactor

from .known import ANYIO_FLAKY as FLAKY
from .known import ANYIO_KNOWN as KNOWN

ROOT = Path(__file__).resolve().parents[2]
SESSION = Path(__file__).resolve().with_name("anyio_session.py")

#: The sdist of each anyio version this harness has been checked against. A
#: new pin in pyproject.toml needs its hash here (pip download --no-binary
#: :all: --no-deps anyio==X, then sha256sum): the tests then run only on the
#: file that was read.
SDIST_SHA256 = {
    "4.16.0": "59bb03251907983d1603d27c3087ddb1e93299ea2163adcdba37899a4fb12ffb",
}

#: What a test can end as: a failure in any phase is "failed"; a test that
#: was collected but never finished (a crash, the budget) is "not run".
OUTCOMES = ("passed", "failed", "skipped", "xfailed", "not run")

#: Seconds after which the session stops starting tests. Measured on the
#: loaded 2-core machine, the whole test_anyio_suite: stock + select, poll,
#: epoll 96 s (3.11); stock + epoll 49 s (3.12), 43 s (3.13), 44 s (3.14)
#: and 50 s (3.15) once reactor.aio imports there, 118-151 s while it fails
#: every test. A loop that hangs costs anyio's 20 s per test: the budget
#: bounds that.
DEFAULT_BUDGET = 600.0


#: The lines test_anyio_suite.py leaves for conftest.py to print at the end
#: of the session (a test's own output shows only when it fails).
SUMMARY: list[str] = []


class AnyioSuiteUnavailable(Exception):
    """anyio's suite cannot run here (not installed, sdist not fetchable)."""


def default_backends() -> list[str]:
    """``REACTOR_ANYIO_BACKENDS``, else every backend on 3.11 and epoll
    elsewhere (issue 18: every backend on 3.11, epoll on the others)."""
    available = reactor.available_backends()
    wanted = os.environ.get("REACTOR_ANYIO_BACKENDS")
    if wanted:
        names = [b.strip() for b in wanted.split(",") if b.strip()]
        bad = [b for b in names if b.removeprefix("stock-") not in ("select", "poll", "epoll")]
        if bad:
            raise ValueError(f"REACTOR_ANYIO_BACKENDS: {bad} not among select, poll, epoll "
                             "(or stock-select, stock-poll: stock asyncio on that selector, to compare)")
        return [b for b in names if b.removeprefix("stock-") in available]
    if sys.version_info[:2] == (3, 11):
        return [b for b in ("epoll", "poll", "select") if b in available]
    return ["epoll"] if "epoll" in available else available[:1]


def eager_default() -> bool:
    """``REACTOR_ANYIO_EAGER=1``: also anyio's eager-task-factory loop."""
    return os.environ.get("REACTOR_ANYIO_EAGER", "0") == "1"


def cache_dir() -> Path:
    return Path(os.environ.get("REACTOR_ANYIO_CACHE") or ROOT / ".cache" / "anyio")


# ------------------------------------------------------------------- fetch

def installed_version() -> str:
    """The installed anyio's version; its test dependencies must be there too."""
    try:
        version = importlib.metadata.version("anyio")
    except importlib.metadata.PackageNotFoundError:
        raise AnyioSuiteUnavailable("anyio is not installed: pip install -e '.[anyio-suite]'") from None
    missing = [name for name in ("trustme", "hypothesis", "blockbuster", "psutil", "pytest_mock", "pytest_timeout")
               if importlib.util.find_spec(name) is None]
    if missing:
        raise AnyioSuiteUnavailable(f"anyio's test dependencies {missing} are not installed: "
                                    "pip install -e '.[anyio-suite]'")
    return version


def fetch(version: str, cache: Path | None = None) -> Path:
    """The tree of anyio ``version``'s sdist that the suite needs
    (``pyproject.toml`` and ``tests/``), downloaded and extracted once."""
    cache = cache or cache_dir()
    digest = SDIST_SHA256.get(version)
    if digest is None:
        raise ValueError(f"anyio {version} is not in anyio_suite.SDIST_SHA256: pin a listed version "
                         f"({', '.join(SDIST_SHA256)}) or add its sdist's sha256")
    tree = cache / f"anyio-{version}"
    if (tree / ".extracted").exists():
        return tree
    cache.mkdir(parents=True, exist_ok=True)
    sdist = cache / f"anyio-{version}.tar.gz"
    if not sdist.exists():
        requirement = cache / f"anyio-{version}.requirement.txt"
        requirement.write_text(f"anyio=={version} --hash=sha256:{digest}\n")
        proc = subprocess.run(
            [sys.executable, "-m", "pip", "download", "--quiet", "--no-deps", "--no-binary", ":all:",
             "--require-hashes", "-r", str(requirement), "-d", str(cache)],
            capture_output=True, text=True, timeout=300)
        if proc.returncode != 0 or not sdist.exists():
            raise AnyioSuiteUnavailable(f"pip download of the anyio {version} sdist failed "
                                        f"(exit {proc.returncode}): {proc.stderr.strip()[-800:]}")
    import hashlib

    got = hashlib.sha256(sdist.read_bytes()).hexdigest()
    if got != digest:
        sdist.unlink()
        raise AssertionError(f"{sdist}: sha256 {got}, expected {digest}")
    prefix = f"anyio-{version}/"
    with tarfile.open(sdist) as tar:
        members = [m for m in tar.getmembers()
                   if m.name == prefix + "pyproject.toml" or m.name.startswith(prefix + "tests/")]
        # extract beside, then rename: a run killed halfway leaves no half tree
        partial = cache / f".anyio-{version}.partial"
        _rmtree(partial)
        tar.extractall(partial, members=members, filter="data")
    _rmtree(tree)
    (partial / f"anyio-{version}").rename(tree)
    _rmtree(partial)
    (tree / ".extracted").write_text(digest + "\n")
    return tree


def _rmtree(path: Path) -> None:
    import shutil

    shutil.rmtree(path, ignore_errors=True)


# --------------------------------------------------------------------- run

@dataclass
class Case:
    """One test of anyio's suite on one loop."""

    nodeid: str
    label: str  # "stock", "epoll", "poll", ... ("+eager" with --eager)
    key: str  # the stock twin's node id
    outcome: str = "not run"
    message: str = ""
    seconds: float = 0.0


@dataclass
class Run:
    backends: list[str]
    tests: dict[str, Case]  # nodeid -> Case
    deselected: int
    seconds: float
    returncode: int
    log: Path
    running: str | None = None  # the test that started and never finished (crash, hang)
    loops_made: dict[str, int] = field(default_factory=dict)  # reactor loops anyio made, per label
    stopped: str = ""  # why the session stopped early, if it did

    def labels(self) -> list[str]:
        return list(dict.fromkeys(t.label for t in self.tests.values()))


def run(tree: Path, backends: list[str], *, eager: bool = False, budget: float = DEFAULT_BUDGET,
        workdir: Path | None = None, pytest_args: list[str] | None = None) -> Run:
    """One pytest session of anyio's suite in ``tree`` on stock asyncio and
    on reactor.aio with each of ``backends``; ``pytest_args`` narrow it
    (``-k``, paths under ``tests``)."""
    workdir = workdir or cache_dir() / "runs"
    workdir.mkdir(parents=True, exist_ok=True)
    tag = f"py{sys.version_info[0]}.{sys.version_info[1]}-{'-'.join(backends)}{'-eager' if eager else ''}"
    results, log = workdir / f"{tag}.jsonl", workdir / f"{tag}.log"
    env = {k: v for k, v in os.environ.items() if k not in ("PYTEST_ADDOPTS", "PYTEST_PLUGINS")}
    env["PYTEST_DISABLE_PLUGIN_AUTOLOAD"] = "1"  # as anyio's tox.ini: only the plugins its addopts name
    cmd = [sys.executable, str(SESSION), "--results", str(results), "--backends", ",".join(backends),
           "--budget", str(budget), *(["--eager"] if eager else []),
           "--", "-p", "no:cacheprovider", "-m", "not network", "-q", *(pytest_args or ["tests"])]
    started = time.monotonic()
    with log.open("w") as out:
        proc = subprocess.Popen(cmd, cwd=tree, env=env, stdout=out, stderr=subprocess.STDOUT,
                                stdin=subprocess.DEVNULL, start_new_session=True)
        try:
            # the session stops itself at the budget; this bounds one test past it
            returncode = proc.wait(timeout=budget + 120)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            returncode = proc.wait()
    seconds = time.monotonic() - started
    return _read(results, log, backends, returncode, seconds)


def _read(results: Path, log: Path, backends: list[str], returncode: int, seconds: float) -> Run:
    tests: dict[str, Case] = {}
    deselected, running, loops_made = 0, None, {}
    lines = results.read_text().splitlines() if results.exists() else []
    for line in lines:
        record = json.loads(line)
        if "collected" in record:
            tests = {nodeid: Case(nodeid, d["label"], d["key"]) for nodeid, d in record["collected"].items()}
            deselected = record["deselected"]
        elif "start" in record:
            running = record["start"]
        elif "loops_made" in record:
            loops_made = record["loops_made"]
        else:
            test = tests[record["nodeid"]]
            test.outcome, test.message, test.seconds = record["outcome"], record["message"], record["seconds"]
            running = None
    text = log.read_text(errors="replace") if log.exists() else ""
    stopped = next((ln.strip() for ln in text.splitlines() if "time budget" in ln), "")
    if not tests:
        raise AssertionError(f"anyio's suite collected nothing (exit {returncode}); the end of {log}:\n"
                             + "\n".join(text.splitlines()[-30:]))
    if returncode not in (0, 1) and not stopped:
        stopped = f"pytest exited {returncode}" + (f" while running {running}" if running else "")
    return Run(backends, tests, deselected, seconds, returncode, log, running=running, stopped=stopped,
               loops_made=loops_made)


# ----------------------------------------------------------------- compare

@dataclass
class Comparison:
    label: str  # the reactor loop: "epoll", "select+eager", ...
    base: str  # its stock loop: "stock" or "stock+eager"
    reactor: Counter[str] = field(default_factory=Counter)
    stock: Counter[str] = field(default_factory=Counter)
    regressions: list[tuple[Case, Case]] = field(default_factory=list)  # (stock, reactor): not listed
    known: list[tuple[Case, str]] = field(default_factory=list)  # (reactor, reason)
    flaky: list[tuple[Case, str]] = field(default_factory=list)  # (reactor, reason)
    better: list[Case] = field(default_factory=list)  # pass on reactor.aio, not on stock
    both: list[Case] = field(default_factory=list)  # failed on reactor.aio and on stock

    def line(self) -> str:
        name = self.label.replace("+eager", "")
        eager = " eager tasks" if "+eager" in self.label else ""
        loop = "reactor.aio"
        if name.startswith("stock-"):  # a diagnosis: stock asyncio on another selector
            name, loop = name.removeprefix("stock-"), "stock asyncio"
        return (f"anyio [{name}{eager}] {loop}: {_counts(self.reactor)}; "
                f"stock asyncio: {_counts(self.stock)}")


def compare(result: Run, known: dict[str, str] | None = None, flaky: dict[str, str] | None = None
            ) -> list[Comparison]:
    known = KNOWN if known is None else known
    flaky = FLAKY if flaky is None else flaky
    by_label: dict[str, dict[str, Case]] = {}
    for test in result.tests.values():
        by_label.setdefault(test.label, {})[test.key] = test
    comparisons = []
    for label in result.labels():
        if label in ("stock", "stock+eager"):
            continue
        base = "stock+eager" if label.endswith("+eager") else "stock"
        stock, mine = by_label.get(base, {}), by_label[label]
        comparison = Comparison(label, base, Counter(t.outcome for t in mine.values()),
                                Counter(t.outcome for t in stock.values()))
        for key, test in sorted(mine.items()):
            twin = stock.get(key)
            if twin is None:
                raise AssertionError(f"{test.nodeid} has no stock twin {key}: anyio_session.py's ids are off")
            if twin.outcome == "passed" and test.outcome != "passed":
                if reason := _match(key, known):
                    comparison.known.append((test, reason))
                elif reason := _match(key, flaky):
                    comparison.flaky.append((test, reason))
                else:
                    comparison.regressions.append((twin, test))
            elif test.outcome == "passed" and twin.outcome not in ("passed", "not run"):
                comparison.better.append(test)
            elif test.outcome == twin.outcome == "failed":
                comparison.both.append(test)
        comparisons.append(comparison)
    return comparisons


def _match(key: str, table: dict[str, str]) -> str | None:
    """The reason of the entry that names ``key`` exactly or as a glob (a
    glob writes a literal ``[`` as ``[[]``)."""
    if key in table:
        return table[key]
    return next((why for pattern, why in table.items() if fnmatch.fnmatchcase(key, pattern)), None)


def stale_known(comparisons: list[Comparison], result: Run, known: dict[str, str] | None = None) -> list[str]:
    """Entries of ``known`` that match no test failing on reactor.aio here:
    listed, yet passing (or no longer in the suite)."""
    known = KNOWN if known is None else known
    used = {pattern for c in comparisons for t, _ in c.known for pattern in known
            if pattern == t.key or fnmatch.fnmatchcase(t.key, pattern)}
    return [pattern for pattern in known if pattern not in used]


def _counts(c: Counter[str]) -> str:
    text = f"{c['passed']} passed, {c['failed']} failed, {c['skipped']} skipped"
    for extra in ("xfailed", "not run"):
        if c[extra]:
            text += f", {c[extra]} {extra}"
    return text


#: test ids shown per failure message in the report (all are in the log)
EXAMPLES = 8


def _shape(message: str) -> str:
    """A failure message with its fds, ports and addresses masked, so that
    one cause reads as one message."""
    message = re.sub(r"0x[0-9a-f]+", "0x...", message)
    message = re.sub(r"\d+\.\d+\.\d+\.\d+|\b\d+\b", "N", message)
    return message[:240]


def report(result: Run, comparisons: list[Comparison]) -> list[str]:
    """The lines CI prints: the counts per loop, then what differs."""
    py = ".".join(map(str, sys.version_info[:3]))
    lines = [c.line() for c in comparisons]
    try:
        version = installed_version()
    except AnyioSuiteUnavailable:  # a report of results read back, without the suite's packages
        version = "(not installed)"
    lines.append(f"anyio suite: Python {py}, anyio {version}, {len(result.tests)} tests run "
                 f"({result.deselected} deselected: trio, uvloop, no anyio_backend, network) "
                 f"in {result.seconds:.0f} s")
    if result.stopped:
        lines.append(f"anyio suite stopped early: {result.stopped}")
    for c in comparisons:
        # grouped by message, so that one cause that fails a thousand tests
        # reads as one line with its count
        groups: dict[str, list[Case]] = {}
        for _, test in c.regressions:
            groups.setdefault(_shape(f"{test.outcome}: {test.message}"), []).append(test)
        for shape, tests in sorted(groups.items(), key=lambda item: -len(item[1])):
            lines.append(f"  [{c.label}] passes on stock only, {len(tests)}x {shape}")
            lines += [f"      {t.key}" for t in tests[:EXAMPLES]]
            if len(tests) > EXAMPLES:
                lines.append(f"      ... and {len(tests) - EXAMPLES} more")
        if c.known:
            lines.append(f"  [{c.label}] {len(c.known)} listed in known.ANYIO_KNOWN")
        for test, _ in c.flaky:
            lines.append(f"  [{c.label}] failed, listed in known.ANYIO_FLAKY: {test.key}: {test.message}")
        if c.better:
            lines.append(f"  [{c.label}] {len(c.better)} pass on reactor.aio only: "
                         + ", ".join(t.key for t in c.better[:5]) + (" ..." if len(c.better) > 5 else ""))
        lines += [f"  [{c.label}] failed on both loops: {t.key}: {t.message[:200]}" for t in c.both[:EXAMPLES]]
    return lines


def problems(result: Run, comparisons: list[Comparison], eager: bool = False) -> list[str]:
    """Why this run does not meet the bar; empty when it does."""
    found = []
    if result.stopped:
        found.append(f"the session stopped early: {result.stopped}")
    stock = Counter(t.label for t in result.tests.values())
    for backend in result.backends:
        for label, base in [(backend, "stock")] + ([(f"{backend}+eager", "stock+eager")] if eager else []):
            if base not in stock:
                continue  # no eager loop before 3.12
            if stock[label] != stock[base]:
                found.append(f"[{label}] {stock[label]} tests, stock asyncio {stock[base]}: the reactor.aio loop "
                             "did not join anyio's parametrization (anyio_session.py)")
            elif not result.loops_made.get(label):
                found.append(f"[{label}] anyio never called the reactor.aio loop factory")
    for c in comparisons:
        if c.regressions:
            found.append(f"[{c.label}] {len(c.regressions)} tests pass on stock asyncio and not on reactor.aio, "
                         "none listed in known.py (the report below)")
    return found


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="anyio's test suite on reactor.aio beside stock asyncio")
    parser.add_argument("--backends", help="comma-separated (default: REACTOR_ANYIO_BACKENDS, or "
                        "every backend on 3.11 and epoll elsewhere)")
    parser.add_argument("--eager", action="store_true", default=eager_default(),
                        help="also anyio's eager-task-factory loop (3.12+; REACTOR_ANYIO_EAGER=1)")
    parser.add_argument("--budget", type=float, default=float(os.environ.get("REACTOR_ANYIO_BUDGET", DEFAULT_BUDGET)))
    parser.add_argument("pytest_args", nargs="*", help="after --: narrow the run (-k EXPR, tests/test_sockets.py)")
    args = parser.parse_args(argv)
    if args.backends:
        os.environ["REACTOR_ANYIO_BACKENDS"] = args.backends
    tree = fetch(installed_version())
    result = run(tree, default_backends(), eager=args.eager, budget=args.budget, pytest_args=args.pytest_args)
    comparisons = compare(result)
    for line in report(result, comparisons):
        print(line)
    for pattern in stale_known(comparisons, result):
        print(f"  listed in known.py, not failing here: {pattern}")
    print(f"log: {result.log}")
    return 1 if problems(result, comparisons, args.eager) else 0


if __name__ == "__main__":
    sys.exit(main())
