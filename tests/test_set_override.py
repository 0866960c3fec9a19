"""``--set`` takes one knob and a scalar or list value (issue 22, item 10).

``--set 'rules={...}'`` used to replace the whole ``[rules]`` table, silently dropping the knobs
it did not repeat (the sensitive categories), and ``--set extends=...`` was recorded in the
manifest but never followed. Both are refused now, with exit 2 and a message, and nothing is
written.
"""
from __future__ import annotations

import pytest
from click.testing import CliRunner

from optimizer.cli import main
from optimizer.core.config import load_scenario
from tests.tiny_world import base_world, write_scenario, write_world

RULES = {"max_offers_per_customer": 2, "sensitive_categories": ["INFANT FORMULA"]}


@pytest.fixture()
def scenario(tmp_path):
    write_world(tmp_path / "data", base_world())
    (tmp_path / "other.toml").write_text('name = "other"\nweek = 41\n[rules]\ncooldown_weeks = 9\n')
    return write_scenario(tmp_path / "scenario.toml", rules=RULES)


@pytest.mark.parametrize("override, phrase", [
    ("rules={max_offers_per_customer=1}", "'rules' is a table"),
    ("rules=3", "'rules' is a table"),
    ("solver={}", "'solver' is a table"),
    ("rules.max_offers_per_customer={value=1}", "the value is a table"),
    ("rules.sensitive_categories=[{a=1}]", "the value is a table"),
    ("rules.max_offers_per_customer.x=1", "is a knob, not a table"),
    ("name.x=1", "'name' is not a table"),
    ("extends=other.toml", "'extends' cannot be overridden"),
])
@pytest.mark.parametrize("command", ["run", "check"])
def test_table_values_and_extends_are_refused(tmp_path, scenario, override, phrase, command):
    result = CliRunner().invoke(main, [command, str(scenario), "--set", override])
    assert result.exit_code == 2, result.output
    message = " ".join(result.output.split())
    assert "error:" in message and phrase in message, message
    assert "Traceback" not in message
    assert not (tmp_path / "run").exists()


def test_leaf_scalars_and_lists_still_apply(scenario):
    loaded = load_scenario(scenario, ["rules.max_offers_per_customer=1",
                                      "rules.excluded_categories=['pork', 'dairy']", "week=41"])
    assert loaded.rules.max_offers_per_customer == 1
    assert loaded.rules.excluded_categories == ("pork", "dairy")
    assert loaded.rules.sensitive_categories == ("INFANT FORMULA",)   # the table's other knobs kept
    assert loaded.week == 41
