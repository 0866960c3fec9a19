"""Whether a run folder was made from the scenario and inputs given: the one list of what differs.

``manifest.json`` records the resolved scenario and each input table's SHA-256. Compared: every
setting (after ``--set``) but ``data`` and ``output`` (the inputs are compared by content, a run
folder may move), ``extends``, ``name`` and the ``solver`` knobs (they decide which plan is made,
never which rules hold), except ``solver.scores_per_customer`` (unless the run set it itself to
fit memory); and every input's SHA-256, where a ``history`` that only gained rows of the planning
week or later is the same history (``history_before_week_sha256``).

A manifest without a ``scenario`` (an older one) gives one line, :data:`SETTINGS_UNKNOWN`, in
place of one per setting: the run's settings are unknown, not each of them different.

``offeropt check`` refuses a run that differs (:mod:`optimizer.check.outputs`); ``offeropt
explain`` explains it against the numbers given and warns with the same lines.
"""
from __future__ import annotations

import json
from typing import Any

from optimizer.core.config import Scenario, scenario_to_dict
from optimizer.io.history import history_digest
from optimizer.io.validate import Inputs

NOT_COMPARED = ("data", "output", "extends", "name")
# the solver's knobs decide which plan is made, not which rules hold nor any figure check reads;
# solver.scores_per_customer narrows what the pin rule reads (optimizer/check/pins.py)
SOLVER_COMPARED = ("solver.scores_per_customer",)
_MISSING = object()
# the one line for a run whose manifest records no scenario (see the module docstring)
SETTINGS_UNKNOWN = ("settings: unknown, the run's manifest.json records no 'scenario' (an older "
                    "manifest), so they could not be compared with these")


def _flatten(data: Any, prefix: str = "") -> dict[str, Any]:
    if not isinstance(data, dict):
        return {prefix: data}
    out: dict[str, Any] = {}
    for key, value in data.items():
        out.update(_flatten(value, f"{prefix}.{key}" if prefix else str(key)))
    return out


def _sha(entry: Any) -> str | None:
    return entry.get("sha256") if isinstance(entry, dict) else None


def run_differences(manifest: dict[str, Any], scenario: Scenario, inputs: Inputs) -> list[str]:
    """One line per setting and input table in which the run whose ``manifest.json`` holds
    ``manifest`` differs from ``scenario`` and ``inputs`` (module docstring); empty when it was
    made from them."""
    differences = (_setting_differences(manifest, scenario)
                   if isinstance(manifest.get("scenario"), dict) else [SETTINGS_UNKNOWN])
    recorded = manifest.get("inputs", {}) if isinstance(manifest.get("inputs"), dict) else {}
    for name in sorted(set(recorded) | set(inputs.sha256)):
        was, now = _sha(recorded.get(name)), inputs.sha256.get(name)
        if was == now:
            continue
        if name == "history" and manifest.get("history_before_week_sha256") == history_digest(
                inputs.history, scenario.week):
            continue  # only rows of the planning week or later changed: no rule reads them
        if was is None:
            differences.append(f"input '{name}': not read by the run, present now "
                               f"(SHA-256 {now})")
        elif now is None:
            differences.append(f"input '{name}': read by the run (SHA-256 {was}), absent now")
        else:
            differences.append(f"input '{name}': SHA-256 {was} in the run, {now} now")
    return differences


def _setting_differences(manifest: dict[str, Any], scenario: Scenario) -> list[str]:
    """One line per compared setting (module docstring) in which the run's recorded scenario
    differs from ``scenario``."""
    mine = _flatten(json.loads(json.dumps(scenario_to_dict(scenario))))
    theirs = _flatten(manifest["scenario"])
    skip = set(NOT_COMPARED)
    if isinstance(manifest.get("candidates"), dict) and \
            manifest["candidates"].get("kept_to_fit_memory"):
        skip.add("solver.scores_per_customer")
    differences = []
    for key in sorted(set(mine) | set(theirs)):
        if key in skip or (key.startswith("solver.") and key not in SOLVER_COMPARED):
            continue
        was, now = theirs.get(key, _MISSING), mine.get(key, _MISSING)
        if was != now:
            shown = ["(not set)" if v is _MISSING else json.dumps(v) for v in (was, now)]
            differences.append(f"setting {key}: the run had {shown[0]}, here {shown[1]}")
    return differences


__all__ = ["NOT_COMPARED", "SETTINGS_UNKNOWN", "SOLVER_COMPARED", "run_differences"]
