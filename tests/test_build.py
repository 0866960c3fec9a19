"""The build step (``optimizer.model.build.build_problem``) is the run's: the problem the
pipeline hands its solver is the one ``build_problem`` builds, and the blocks built for one
customer alone (``explain``'s) are her rows of the whole build."""
from __future__ import annotations

from pathlib import Path

import pytest

from optimizer.apps.explain import explain_customer
from optimizer.apps.pipeline import score_inputs
from optimizer.core.config import load_scenario
from optimizer.io.validate import load_inputs
from optimizer.model.build import build_problem
from tests.random_world import run_with_problem
from tests.tiny_world import write_scenario


@pytest.fixture(scope="module")
def scenario(demo_500: Path, tmp_path_factory: pytest.TempPathFactory):
    root = tmp_path_factory.mktemp("build")
    path = write_scenario(root / "s.toml", data=demo_500.as_posix(),
                          output=(root / "run").as_posix(), week=40,
                          rules={"max_offers_per_customer": 3, "global_budget": 400},
                          solver={"chunk_size": 128},
                          extra="\n[affinity]\ncandidates_per_customer = 6\n")
    return load_scenario(path)


def _rows(problem) -> dict[int, tuple]:
    out = {}
    for block in problem.blocks:
        for r, c in enumerate(block.customers):
            live = block.offer[r] >= 0
            out[int(c)] = (block.offer[r][live].tolist(), block.value[r][live].tolist(),
                           block.cost[r][live].tolist(), int(block.cap[r]))
    return out


@pytest.mark.slow
def test_the_pipeline_solves_the_built_problem_and_explain_sees_its_rows(scenario) -> None:
    _, solved = run_with_problem(scenario)
    inputs = load_inputs(scenario.data)
    scored = score_inputs(inputs, scenario, scenario.week)
    built = build_problem(inputs, scenario, scored.cats, scored.model)
    whole = _rows(built.problem)
    assert whole == _rows(solved)
    assert built.problem.n_pairs == solved.n_pairs
    for c in (0, 127, 128, 499):  # chunk edges: a customer's row depends on her row only
        alone = build_problem(inputs, scenario, scored.cats, scored.model, rows=(c, c + 1))
        assert _rows(alone.problem) == {c: whole[c]}
    # explain's candidates are the built ones
    customer = str(inputs.customers.get_column("customer_id")[5])
    shown = explain_customer(scenario, customer)
    candidate = {str(r["offer_id"]) for r in shown.offers
                 if r["status"] not in ("ineligible", "no_value", "not_candidate")}
    ids = inputs.offers.get_column("offer_id").cast(str).to_list()
    assert candidate == {ids[o] for o in whole[5][0]}

