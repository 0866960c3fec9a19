"""What each stage of a run still holds: the stages after fitting never see the transactions
(the largest input table), so a million customers' 40 M lines are not carried through
eligibility, the solve and the bound over all candidates."""
from __future__ import annotations

from pathlib import Path

import pytest

from optimizer.apps import pipeline
from optimizer.core.config import load_scenario
from tests.tiny_world import write_scenario


def test_stages_after_fitting_get_no_transactions(tmp_path: Path, demo_500: Path,
                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    seen: dict[str, int] = {}
    build = pipeline.build_problem

    def spy(inputs, *args, **kwargs):  # noqa: ANN001, ANN002, ANN003 - the wrapped signature
        seen["lines"] = inputs.transactions.height
        seen["columns"] = len(inputs.transactions.columns)
        return build(inputs, *args, **kwargs)
    monkeypatch.setattr(pipeline, "build_problem", spy)
    scenario = load_scenario(write_scenario(tmp_path / "s.toml", data=str(demo_500),
                                            output=str(tmp_path / "run")))
    result = pipeline.run_scenario(scenario)
    assert seen["lines"] == 0 and seen["columns"] > 0  # emptied, its columns kept
    assert result.assignments.height > 0
