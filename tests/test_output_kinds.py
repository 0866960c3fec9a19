"""A command writing a folder replaces only its own earlier output (optimizer/io/runfolder.py,
``_refuse_foreign``): ``sweep``, ``backtest``, ``simulate`` and ``run`` pointed at another
command's output (last week's run folder under a sweep's ``--out``) exit 2 before any work,
naming what the folder holds, and leave it byte for byte; re-running a command into its own
folder still replaces it, with the same bytes.
"""
from __future__ import annotations

import json
from pathlib import Path

import pytest

from optimizer.io.runfolder import folder_kinds, is_run_folder
from tests.test_io_safety import assert_exit, invoke, root  # noqa: F401  (the fixture)
from tests.tiny_world import tree_bytes


def _run(root: Path) -> Path:  # noqa: F811
    result = invoke("run", str(root / "scenario.toml"), "--quiet")
    assert result.exit_code == 0, result.output
    assert folder_kinds(root / "run") == {"run"}
    return root / "run"


def _sweep(root: Path, out: Path):  # noqa: F811
    return invoke("sweep", str(root / "scenario.toml"), "--budget-scale", "0.5,1", "--quiet",
                  "--out", str(out))


# each command with a folder output, pointed at a run's folder: (arguments, the command's kind)
ONTO_A_RUN = {
    "sweep": (lambda r: ["sweep", str(r / "scenario.toml"), "--budget-scale", "0.5,1",
                         "--out", str(r / "run")]),
    "backtest": (lambda r: ["backtest", str(r / "scenario.toml"), "--holdout-weeks", "1",
                            "--out", str(r / "run")]),
    "simulate": (lambda r: ["simulate", str(r / "scenario.toml"), "--customers", "50",
                            "--offers", "5", "--weeks", "1", "--seeds", "1",
                            "--out", str(r / "run")]),
}


@pytest.mark.parametrize("command", sorted(ONTO_A_RUN))
def test_a_command_refuses_a_run_folder(root, command):  # noqa: F811
    run = _run(root)
    before = tree_bytes(run)
    result = invoke(*ONTO_A_RUN[command](root))
    assert_exit(result, 2, "a run's output (manifest.json)", f"not a {command}'s")
    assert tree_bytes(run) == before
    assert not list(root.glob(".run.*"))


def test_run_refuses_a_sweep_folder(root):  # noqa: F811
    result = _sweep(root, root / "run")
    assert result.exit_code == 0, result.output
    before = tree_bytes(root / "run")
    assert_exit(invoke("run", str(root / "scenario.toml")), 2, "a sweep's output (sweep.json)")
    assert tree_bytes(root / "run") == before


def _data_files(out: Path) -> dict[str, bytes]:
    """The folder's files but ``timings.json`` (the one file the clock reaches), byte for byte."""
    return {name: data for name, data in tree_bytes(out).items() if name != "timings.json"}


def test_a_sweep_replaces_its_own_folder(root):  # noqa: F811
    """A re-run replaces the folder with the same bytes: sweep.csv, sweep.json and sweep.html
    are compared whole (they held each point's ``solve_seconds``; the seconds are in
    timings.json alone)."""
    out = root / "curve"
    first = _sweep(root, out)
    assert first.exit_code == 0, first.output
    before = _data_files(out)
    again = _sweep(root, out)
    assert again.exit_code == 0, again.output
    assert sorted(before) == ["sweep.csv", "sweep.html", "sweep.json"]
    assert _data_files(out) == before
    assert sorted(p.name for p in out.iterdir()) == [
        "sweep.csv", "sweep.html", "sweep.json", "timings.json"]
    timings = json.loads((out / "timings.json").read_text())["points"]
    assert [p["budget_scale"] for p in timings] == [0.5, 1.0]
    assert all(p["seconds"]["solve"] >= 0 for p in timings)
    assert is_run_folder(out, "sweep") and not is_run_folder(out, "run")


def test_a_folder_holding_two_commands_outputs_is_nobodys(root):  # noqa: F811
    run = _run(root)
    (run / "sweep.json").write_text('{"scenario": {}, "points": []}')
    assert folder_kinds(run) == {"run", "sweep"}
    before = tree_bytes(run)
    assert_exit(invoke("run", str(root / "scenario.toml")), 2, "a sweep's output")
    assert tree_bytes(run) == before


# each command with an output, pointed inside a run's folder (a run replaces its folder whole, so
# the next run deleted what they wrote there; before, each was accepted)
INSIDE_A_RUN = {
    "run": lambda r: ["run", str(r / "scenario.toml"), "--quiet", "--set",
                      f"output={json.dumps(str(r / 'run' / 'nested'))}"],
    "sweep": lambda r: ["sweep", str(r / "scenario.toml"), "--budget-scale", "1", "--quiet",
                        "--out", str(r / "run" / "curve")],
    "backtest": lambda r: ["backtest", str(r / "scenario.toml"), "--holdout-weeks", "1",
                           "--out", str(r / "run" / "bt")],
    "compare": lambda r: ["compare", str(r / "run"), str(r / "run"),
                          "--html", str(r / "run" / "compare.html")],
}


@pytest.mark.parametrize("command", sorted(INSIDE_A_RUN))
def test_nothing_is_written_inside_a_run_folder(root, command):  # noqa: F811
    run = _run(root)
    before = tree_bytes(run)
    result = invoke(*INSIDE_A_RUN[command](root))
    assert_exit(result, 2, "a run's output (manifest.json)", "replaces that folder whole")
    assert tree_bytes(run) == before


def test_a_run_beside_another_is_still_fine(root):  # noqa: F811
    """Only the folders above count: a sibling of a run folder (the backtest's default) is not
    inside it."""
    _run(root)
    result = invoke("compare", str(root / "run"), str(root / "run"), "--html",
                    str(root / "compare.html"))
    assert result.exit_code == 0, result.output
    assert (root / "compare.html").is_file()
