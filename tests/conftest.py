"""Fixtures shared by the test modules."""
from __future__ import annotations

from pathlib import Path

import pytest
from click.testing import CliRunner

from optimizer.cli import main


@pytest.fixture(scope="session")
def demo_500(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A 500-customer, 30-offer demo input folder (seed 0), written once for the session.
    Read-only: a test that changes inputs copies it first."""
    root = tmp_path_factory.mktemp("demo-500")
    result = CliRunner().invoke(main, ["demo-data", str(root / "data"), "--customers", "500",
                                       "--offers", "30", "--seed", "0"])
    assert result.exit_code == 0, result.output
    return root / "data"
