"""docs/contract.md is the single source of the interface: it names every scenario knob the code
accepts, with its section, and every column of every output table."""
from __future__ import annotations

from pathlib import Path

import pytest

from optimizer.core.config import Affinity, Measurement, Objective, Rules, Solver
from optimizer.core.schemas import ASSIGNMENT_COLUMNS, OFFER_SUMMARY_COLUMNS
from optimizer.model.holdout import CONTROL_COLUMNS

DOC = Path(__file__).resolve().parents[1] / "docs" / "contract.md"


@pytest.mark.parametrize("section, model", [("rules", Rules), ("objective", Objective),
                                            ("affinity", Affinity), ("solver", Solver),
                                            ("measurement", Measurement)])
def test_every_knob_is_documented(section, model) -> None:
    text = DOC.read_text()
    missing = [k for k in model.model_fields if f"`{section}.{k}`" not in text]
    assert not missing, f"docs/contract.md lacks {section} knobs {missing}"


def test_every_output_column_is_documented() -> None:
    text = DOC.read_text()
    missing = [c for c in (*ASSIGNMENT_COLUMNS, *OFFER_SUMMARY_COLUMNS, *CONTROL_COLUMNS) if c not in text]
    assert not missing, missing
