"""Running scenarios: each on a fresh workbench with a tap on its wire,
skipped with the reason where it needs namespaces that cannot be made,
failed (not crashed) if it raises; its segments checked against its
script; printed as timelines, written as JSON, drawn as ladders."""

from __future__ import annotations

import json
import time
import traceback
from collections.abc import Callable, Iterable
from typing import Any, TextIO

from .expect import check
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
        if not scenario.netns:
            lab.open_wire()  # a namespace scenario taps its client host's interfaces itself
        scenario.run(lab)
    except ScenarioSkipped as exc:
        outcome.status, outcome.reason = "skipped", str(exc)
    except Exception as exc:  # a scenario that breaks is reported, and the others run
        outcome.status = "failed"
        outcome.reason = "".join(traceback.format_exception_only(type(exc), exc)).strip()
        outcome.facts["traceback"] = traceback.format_exc()
    finally:
        captured = lab.finish_wire()  # before the clean-up's RSTs
        lab.cleanup()
        outcome.duration = time.monotonic() - start
        outcome.steps = lab.steps
        outcome.facts = {**lab.facts, **outcome.facts}
        outcome.sides = lab.sides()
    if outcome.status != "skipped":
        outcome.wire = check(scenario.script, captured, outcome.steps)
    return outcome


def list_text() -> str:
    lines = []
    width = max(len(name) for name in SCENARIOS)
    for scenario in SCENARIOS.values():
        where = " [netns]" if scenario.netns else ""
        lines.append(f"{scenario.name:<{width}}  {scenario.title}{where}")
        lines.append(f"{'':<{width}}    {scenario.shows}")
        lines.append(f"{'':<{width}}    wire: {scenario.script.checks}")
    return "\n".join(lines)


#: a scenario's wire verdicts, in the summary's order
WIRE_STATUSES = ("matched", "differed", "incomplete", "not captured")
#: the verdicts that make the lab exit 1: the kernel did not do what the script says, or we cannot tell
#: (a tap that cannot be opened is said, not failed: the rest of the lab runs as before)
WIRE_FAILURES = ("differed", "incomplete")


def run_lab(names: list[str], backends: list[str] | None, out: TextIO, json_path: str | None = None,
            progress: Callable[[Outcome], None] | None = None, draw_dir: str | None = None) -> int:
    """Run ``names`` (every scenario if empty), print each timeline; 0
    unless one failed or its wire parted from its script. ``draw_dir``:
    write each scenario's ladder diagram there (SVG and PNG)."""
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
    verdicts = [o.wire.status for o in outcomes if o.wire is not None]
    wire = {status: verdicts.count(status) for status in WIRE_STATUSES if verdicts.count(status)}
    wire_text = ", ".join(f"{count} {status}" for status, count in wire.items()) or "none"
    print(f"lab: {counts['ok']} ran, {counts['skipped']} skipped, {counts['failed']} failed; wire: {wire_text}; "
          f"in {time.monotonic() - start:.1f} s (backends: {', '.join(chosen)})", file=out, flush=True)
    if json_path:
        document: dict[str, Any] = {"backends": chosen, "scenarios": [o.as_dict() for o in outcomes]}
        with open(json_path, "w") as f:
            json.dump(document, f, indent=1, default=str)
    if draw_dir:
        from .ladder import draw_all

        for path in draw_all(outcomes, draw_dir):
            print(f"wrote {path}", file=out, flush=True)
    return 1 if counts["failed"] or any(status in WIRE_FAILURES for status in verdicts) else 0
