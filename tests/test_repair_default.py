"""``solver.repair``'s default follows the backend (docs/contract.md, docs/distributed.md): unset,
it is ``shards`` with ``solver.backend = "dask"``, where the driver can then hold no pair, and
``driver`` locally, where it is a little faster; a given value is kept. It is resolved
once, when the scenario is read, so the build, the memory check, the solve and the manifest's
scenario all see the same value, whether the backend comes from the TOML, ``--set`` or
``--scheduler``. No cluster is started here.
"""
from __future__ import annotations

from typing import Any

import pytest
from click.testing import CliRunner

from optimizer.cli import main
from optimizer.core.config import Solver, load_scenario, scenario_from_dict, scenario_to_dict
from tests.tiny_world import base_world, write_scenario, write_world


@pytest.mark.parametrize("knobs, repair", [
    ({}, "driver"),
    ({"backend": "local"}, "driver"),
    ({"backend": "dask"}, "shards"),
    ({"backend": "dask", "repair": "driver"}, "driver"),
    ({"backend": "local", "repair": "shards"}, "shards"),
    ({"backend": "dask", "scheduler": "tcp://127.0.0.1:8786"}, "shards"),
])
def test_unset_repair_follows_the_backend_and_a_given_one_is_kept(knobs, repair):
    solver = Solver.model_validate(knobs)
    assert solver.repair == repair
    assert ("repair" in solver.model_fields_set) == ("repair" in knobs)  # unset stays unset
    scenario = scenario_from_dict({"name": "t", "week": 1, "data": "/d", "output": "/o",
                                   "solver": knobs})
    assert scenario.solver.repair == repair
    # the manifest records the resolved value
    assert scenario_to_dict(scenario)["solver"]["repair"] == repair


@pytest.fixture()
def scenario(tmp_path):
    write_world(tmp_path / "data", base_world())
    return tmp_path


@pytest.mark.parametrize("solver, overrides, repair", [
    (None, [], "driver"),
    ({"backend": "dask"}, [], "shards"),
    ({"backend": "dask", "repair": "driver"}, [], "driver"),
    (None, ["solver.backend=dask"], "shards"),  # the backend set on the command line
    ({"backend": "dask"}, ["solver.repair=driver"], "driver"),
    ({"backend": "dask", "repair": "driver"}, ["solver.backend=local"], "driver"),
    ({"repair": "shards"}, ["solver.backend=dask"], "shards"),
])
def test_scenario_files_and_overrides(scenario, solver, overrides, repair):
    path = write_scenario(scenario / "s.toml", solver=solver)
    assert load_scenario(path, overrides).solver.repair == repair


class _Stop(Exception):
    pass


@pytest.mark.parametrize("args, repair", [
    ([], "driver"),
    (["--scheduler", "tcp://127.0.0.1:1"], "shards"),
    (["--set", "solver.backend=dask"], "shards"),
    (["--scheduler", "tcp://127.0.0.1:1", "--set", "solver.repair=driver"], "driver"),
])
def test_run_on_the_command_line_gets_the_backends_default(scenario, monkeypatch, args, repair):
    """``offeropt run --scheduler`` (or ``--set solver.backend=dask``) hands the run a scenario
    whose repair is on the shards; the run itself is stopped before it starts (by an exception
    the command reports as an internal error)."""
    seen: dict[str, Any] = {}

    def run_scenario(loaded: Any, **_: Any) -> None:
        seen["solver"] = loaded.solver
        raise _Stop

    monkeypatch.setattr("optimizer.apps.pipeline.run_scenario", run_scenario)
    path = write_scenario(scenario / "s.toml")
    done = CliRunner().invoke(main, ["run", str(path), "--json", *args])
    assert done.exit_code == 70 and "_Stop" in done.output, done.output  # stopped, as a bug
    assert seen["solver"].repair == repair
    assert seen["solver"].backend == ("local" if not args else "dask")
