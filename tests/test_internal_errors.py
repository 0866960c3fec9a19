"""A bug is not bad input nor violations found (docs/contract.md, "Exit codes"): an exception that
:func:`optimizer.core.errors.exit_code` does not map ends the command with exit code 70, its
traceback on stderr (for the bug report) and a one-line ``error: internal error`` message. Before,
it re-raised and Python exited 1, which ``offeropt check`` uses for "the run breaks a rule": a
script read a crashing ``check`` (or ``compare``, audit28 finding 1) as violations.
"""
from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from optimizer.core.errors import EXIT_INTERNAL, EXIT_VIOLATIONS, exit_code
from tests.test_io_safety import flat, invoke, root  # noqa: F401  (the fixture)


def _boom(*args, **kwargs):
    raise KeyError("a bug's own message")


def _assert_internal(result) -> None:
    err = result.stderr
    assert result.exit_code == EXIT_INTERNAL == 70, (result.exit_code, result.output)
    assert isinstance(result.exception, SystemExit), result.exception
    assert "Traceback (most recent call last)" in err and "_boom" in err, err   # where it broke
    assert "error: internal error" in flat(err) and "KeyError" in err, err
    assert "a bug's own message" in err


def test_a_crashing_check_exits_70_not_1(root, monkeypatch):  # noqa: F811
    import optimizer.check.verify as verify

    ran = invoke("run", str(root / "scenario.toml"), "--quiet")
    assert ran.exit_code == 0, ran.output
    monkeypatch.setattr(verify, "check_run", _boom)
    result = invoke("check", str(root / "scenario.toml"))
    _assert_internal(result)
    assert result.exit_code != EXIT_VIOLATIONS


def test_a_crashing_run_exits_70_and_writes_nothing(root, monkeypatch):  # noqa: F811
    import optimizer.apps.pipeline as pipeline

    monkeypatch.setattr(pipeline, "_run", _boom)
    _assert_internal(invoke("run", str(root / "scenario.toml")))
    assert not (root / "run").exists() and not list(root.glob(".run.*"))


def test_mapped_errors_keep_their_codes():
    """70 is only for what no rule maps: bad input, the environment and memory keep theirs."""
    from optimizer.core.errors import InputError

    assert exit_code(InputError("offers", "discount", "negative")) == 2
    assert exit_code(PermissionError(13, "denied")) == 3
    assert exit_code(MemoryError()) == 4
    assert exit_code(KeyError("x")) is None


@pytest.mark.parametrize("module, name", [("optimizer.apps.explain", "explain_customer")])
def test_the_program_itself_exits_70(root, module, name):  # noqa: F811
    """The installed entry point (not only click's test runner): the process's own exit code."""
    code = (f"import {module} as m\n"
            "def _boom(*a, **k):\n    raise KeyError(\"a bug's own message\")\n"
            f"m.{name} = _boom\n"
            "import sys\nfrom optimizer.cli import entry\n"
            f"sys.argv = ['offeropt', 'explain', {str(root / 'scenario.toml')!r}, '1']\n"
            "entry()\n")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          timeout=120, cwd=Path(root))
    assert proc.returncode == 70, (proc.returncode, proc.stderr)
    assert "Traceback (most recent call last)" in proc.stderr
    assert "error: internal error" in flat(proc.stderr) and "KeyError" in proc.stderr
