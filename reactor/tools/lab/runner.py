"""Running scenarios: each on a fresh workbench, skipped with the reason
where it needs namespaces that cannot be made, failed (not crashed) if it
raises; printed as timelines, written as JSON."""

from __future__ import annotations

import json
import time
import traceback
from collections.abc import Callable, Iterable
from typing import Any, TextIO

from .netns import Namespaces, unavailable_reason
from .probe import available
from .scenarios import SCENARIOS, Scenario
from .session import Lab, ScenarioSkipped
from .timeline import Outcome, format_outcome

__all__ = ["run_scenario", "run_lab", "list_text"]


def run_scenario(scenario: Scenario, backends: Iterable[str] | None = None) -> Outcome:
    """Run one scenario; never raises for what the scenario does."""
    chosen = [name for name in available() if backends is None or name in set(backends)]
    outcome = Outcome(scenario.name, scenario.title, "ok")
    namespaces: Namespaces | None = None
    if scenario.netns:
        reason = unavailable_reason()
        if reason is not None:
            outcome.status, outcome.reason = "skipped", reason
            return outcome
        namespaces = Namespaces()
    lab = Lab(chosen, namespaces)
    start = time.monotonic()
    try:
        scenario.run(lab)
    except ScenarioSkipped as exc:
        outcome.status, outcome.reason = "skipped", str(exc)
    except Exception as exc:  # a scenario that breaks is reported, and the others run
        outcome.status = "failed"
        outcome.reason = "".join(traceback.format_exception_only(type(exc), exc)).strip()
        outcome.facts["traceback"] = traceback.format_exc()
    finally:
        lab.cleanup()
        outcome.duration = time.monotonic() - start
        outcome.steps = lab.steps
        outcome.facts = {**lab.facts, **outcome.facts}
    return outcome


def list_text() -> str:
    lines = []
    width = max(len(name) for name in SCENARIOS)
    for scenario in SCENARIOS.values():
        where = " [netns]" if scenario.netns else ""
        lines.append(f"{scenario.name:<{width}}  {scenario.title}{where}")
        lines.append(f"{'':<{width}}    {scenario.shows}")
    return "\n".join(lines)


def run_lab(names: list[str], backends: list[str] | None, out: TextIO, json_path: str | None = None,
            progress: Callable[[Outcome], None] | None = None) -> int:
    """Run ``names`` (every scenario if empty), print each timeline; 0 unless one failed."""
    chosen = [name for name in available() if backends is None or name in backends]
    outcomes: list[Outcome] = []
    start = time.monotonic()
    for name in names or list(SCENARIOS):
        outcome = run_scenario(SCENARIOS[name], chosen)
        outcomes.append(outcome)
        print(format_outcome(outcome, chosen), file=out, flush=True)
        print(file=out)
        if progress is not None:
            progress(outcome)
    counts = {status: sum(1 for o in outcomes if o.status == status) for status in ("ok", "skipped", "failed")}
    print(f"lab: {counts['ok']} ran, {counts['skipped']} skipped, {counts['failed']} failed "
          f"in {time.monotonic() - start:.1f} s (backends: {', '.join(chosen)})", file=out, flush=True)
    if json_path:
        document: dict[str, Any] = {"backends": chosen, "scenarios": [o.as_dict() for o in outcomes]}
        with open(json_path, "w") as f:
            json.dump(document, f, indent=1, default=str)
    return 1 if counts["failed"] else 0
