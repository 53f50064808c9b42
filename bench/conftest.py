"""pytest-benchmark settings for the micro-benchmarks in bench/.

Saved results keep each benchmark's summary (min, max, mean, stddev, median,
quartiles, rounds, ...) and drop its raw samples: ``--benchmark-json`` writes
every round's timing under ``stats.data`` (hundreds of thousands of floats,
tens of MB for one run), which is not a figure anyone reads and not something
to commit. Pass ``--benchmark-save-data`` to keep them for a one-off analysis.
"""

from __future__ import annotations

from typing import Any

import pytest


def strip_samples(output_json: dict[str, Any]) -> dict[str, Any]:
    """Remove ``stats.data`` (the raw per-round timings) from every benchmark
    of a pytest-benchmark JSON document, in place; returns the document."""
    for bench in output_json.get("benchmarks", []):
        stats = bench.get("stats")
        if isinstance(stats, dict):
            stats.pop("data", None)
    return output_json


@pytest.hookimpl(optionalhook=True)  # pytest-benchmark may not be installed
def pytest_benchmark_update_json(config: pytest.Config, benchmarks: Any, output_json: dict[str, Any]) -> None:
    if not config.getoption("benchmark_save_data", default=False):
        strip_samples(output_json)
