"""``simulate``: every seed's closed loop, then ``simulate.json`` and the page written whole.

The result folder (``--out``) is written like a run folder (:func:`optimizer.io.runfolder.
write_run_folder`): into a temporary sibling renamed into place, replacing only a folder this
tool wrote. The strategies' worlds (their input folders and weekly run folders) live in a
working folder next to it that is removed at the end, unless ``worlds`` names a folder to keep
them in (for ``offeropt check`` and ``offeropt measure`` on the simulated weeks).
"""
from __future__ import annotations

import shutil
import tempfile
from pathlib import Path
from typing import Any, Callable

from optimizer.apps.simulate.loop import Verify, run_seed
from optimizer.apps.simulate.report import render_page, settings_record, summarise
from optimizer.apps.simulate.strategies import STRATEGIES
from optimizer.core.config import MAX_WEEK, Scenario, scenario_to_dict
from optimizer.core.errors import OptimizerError, ScenarioError
from optimizer.io.runfolder import (
    check_files_folder,
    check_output,
    json_writer,
    write_run_folder,
)


def parse_strategies(text: str) -> tuple[str, ...]:
    """``a,b,c`` -> the strategies, each known and named once, no entry empty (``ScenarioError``
    otherwise)."""
    names = tuple(part.strip() for part in text.split(","))
    if "" in names and any(names):
        # "a,,b" or "a,": an empty entry is a typo (a strategy left out?), not "no strategy"
        raise ScenarioError(f"--strategies {text!r}: an empty entry between the commas; name "
                            f"each strategy once, from {', '.join(STRATEGIES)}")
    names = tuple(n for n in names if n)
    unknown = [n for n in names if n not in STRATEGIES]
    if not names or unknown:
        raise ScenarioError(f"--strategies {text!r}: unknown {unknown or 'empty list'}; choose "
                            f"from {', '.join(STRATEGIES)}")
    if len(set(names)) != len(names):
        raise ScenarioError(f"--strategies {text!r}: a strategy is named twice")
    return names


def _worlds_folder(worlds: Path, out: Path | None) -> tuple[Path, bool]:
    """The ``--worlds`` folder, made if new, and whether it was new. Not in a command's output
    folder, nor the ``--out`` folder, above it or inside it (``--out`` is replaced whole at the
    end: the worlds would be lost, or the result refused after the whole simulation)."""
    check_files_folder(worlds, "--worlds")
    worlds = Path(worlds).resolve()
    if out is not None:
        result = Path(out).resolve()
        if worlds == result or worlds in result.parents or result in worlds.parents:
            raise ScenarioError(f"--worlds {worlds} and --out {result} overlap: --out is "
                                "replaced whole by the result; give them separate folders")
    if worlds.exists() and (not worlds.is_dir() or any(worlds.iterdir())):
        raise ScenarioError(f"--worlds {worlds}: not a new or empty folder; the simulated "
                            "worlds are written only into a folder of their own")
    made = not worlds.exists()
    worlds.mkdir(parents=True, exist_ok=True)
    return worlds, made


def _undo_worlds(worlds: Path, made: bool) -> None:
    """Leave the ``--worlds`` folder as it was found: removed if the simulation made it, else
    emptied (a bad scenario or an interrupt leaves no half-simulated worlds behind)."""
    if made:
        shutil.rmtree(worlds, ignore_errors=True)
        return
    for child in worlds.iterdir():
        shutil.rmtree(child, ignore_errors=True) if child.is_dir() else child.unlink()


def simulate(scenario: Scenario, customers: int, offers: int, weeks: int,
             strategies: tuple[str, ...], seeds: int, out: Path | None = None,
             worlds: Path | None = None, verify: Verify | None = None,
             progress: Callable[[str], None] | None = None, first_seed: int = 0,
             workers: int = 1) -> dict[str, Any]:
    """Simulate ``weeks`` weeks for seeds ``first_seed .. first_seed + seeds - 1`` and return
    ``simulate.json``'s content; write it and the page into ``out`` when given. ``workers``:
    processes planning a week's strategies side by side (the result does not depend on it)."""
    for name, value, low in (("customers", customers, 1), ("offers", offers, 1),
                             ("weeks", weeks, 1), ("seeds", seeds, 1),
                             ("first-seed", first_seed, 0), ("workers", workers, 1)):
        if isinstance(value, bool) or int(value) != value or value < low:
            raise ScenarioError(f"--{name} must be an integer >= {low}, got {value!r}")
    if scenario.week + weeks - 1 > MAX_WEEK:  # each simulated week is a run's `week` knob
        raise ScenarioError(f"--weeks {weeks} from week {scenario.week} plans up to week "
                            f"{scenario.week + weeks - 1}; week knobs are at most {MAX_WEEK:,}")
    if out is not None:
        check_output(Path(out), kind="simulate")
    keep, made = _worlds_folder(worlds, out) if worlds is not None else (None, False)
    place = None
    if out is not None:  # the working folder goes beside the result, whose folder may be new
        place = Path(out).resolve().parent
        place.mkdir(parents=True, exist_ok=True)
    base = keep if keep is not None else Path(tempfile.mkdtemp(prefix=".offeropt-simulate-",
                                                               dir=place))
    results = []
    try:
        for seed in range(first_seed, first_seed + seeds):
            work = base / f"seed{seed}"
            work.mkdir()
            results.append(run_seed(scenario, seed, customers, offers, weeks, strategies, work,
                                    verify, progress, workers))
    except (OptimizerError, KeyboardInterrupt):  # a --check violation keeps them: the evidence
        if keep is not None:
            _undo_worlds(keep, made)
        raise
    finally:
        if keep is None:
            shutil.rmtree(base, ignore_errors=True)
    settings = settings_record(scenario.name, customers, offers, weeks, strategies,
                               [r.seed for r in results], _portable(scenario))
    summary = summarise(results, settings)
    if out is not None:
        page = render_page(summary)
        write_run_folder(Path(out), {"simulate.json": json_writer(summary),
                                     "report.html": lambda p: p.write_text(page, "utf-8")},
                         kind="simulate")
    summary_seconds = {f"seed{r.seed}": r.seconds for r in results}
    if progress:
        progress(f"seconds: {summary_seconds}")
    return summary


def _portable(scenario: Scenario) -> dict[str, Any]:
    """The scenario's knobs without its folders (the simulator supplies data and output), so
    the file does not depend on where it was run."""
    data = scenario_to_dict(scenario)
    for key in ("data", "output"):
        data.pop(key, None)
    data["week"] = scenario.week
    return data


__all__ = ["parse_strategies", "simulate"]
