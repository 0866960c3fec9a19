"""SIGTERM (``kill``, ``timeout``) behaves as Ctrl-C: the command stops with exit 130, removes its
temporary files and folders, and leaves the earlier output as it was.

The commands run as subprocesses; each test polls the output's folder until the command's
temporary file or folder appears (so the signal lands while it is writing, however loaded the
machine) and then sends SIGTERM. The commit holding a SIGTERM is tested in-process.
"""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Callable

import pytest
from click.testing import CliRunner

from optimizer.cli import main
from optimizer.core.interrupt import (
    InterruptedAfterCommit,
    signal_name,
    terminate_as_interrupt,
)
from optimizer.io.runfolder import write_run_folder
from tests.tiny_world import tree_bytes

SLOW_WRITER = Path(__file__).parent / "slow_writer_cli.py"

def _temps(*folders: Path) -> list[str]:
    """Temporary files and folders (the demo's ``.NAME.parquet.tmp``, the run folder's
    ``.out.tmp-*``, a swapped-out ``.out.old-*``) in ``folders``."""
    return sorted(p.name for folder in folders if folder.exists() for p in folder.iterdir()
                  if ".tmp" in p.name or ".old-" in p.name)


def _terminate_when(program: list[str], ready: Callable[[], bool], log: Path
                    ) -> tuple[int, str]:
    """Start ``program``, poll until ``ready()`` (its temporary output exists), send SIGTERM;
    return the exit code and stderr."""
    with log.open("w") as err:
        proc = subprocess.Popen(program, stdout=subprocess.DEVNULL, stderr=err,
                                env=dict(os.environ))
        deadline = time.monotonic() + 300
        while not ready():
            if proc.poll() is not None or time.monotonic() > deadline:
                proc.kill()
                proc.wait()
                raise AssertionError(f"exit {proc.returncode} before the temporary output "
                                     "appeared: " + log.read_text())
            time.sleep(0.02)
        proc.send_signal(signal.SIGTERM)
        code = proc.wait(timeout=300)
    return code, log.read_text()


def test_sigterm_stops_demo_data_and_removes_its_temporary_files(tmp_path):
    """``.NAME.parquet.tmp`` files were left behind: SIGTERM killed the process outright."""
    out = tmp_path / "data"
    result = CliRunner().invoke(main, ["demo-data", str(out), "--customers", "50",
                                       "--offers", "5", "--seed", "0"])
    assert result.exit_code == 0, result.output
    before = tree_bytes(out)
    code, err = _terminate_when(
        [sys.executable, "-m", "optimizer", "demo-data", str(out), "--customers", "100000",
         "--offers", "50", "--seed", "1"],
        lambda: (out / ".customers.parquet.tmp").exists(), tmp_path / "err.txt")
    assert code == 130, err
    assert "interrupted (SIGTERM)" in err and "Traceback" not in err
    assert _temps(out) == []
    assert tree_bytes(out) == before


@pytest.mark.slow
def test_sigterm_while_a_run_writes_removes_the_temporary_folder(earlier, tmp_path):
    """The temporary run folder was left behind; the earlier run and history stay as they were."""
    args = ["run", str(earlier), "--quiet", "--set", "solver.max_iterations=2"]
    before = {k: v for k, v in tree_bytes(tmp_path).items() if not k.startswith("err")}
    # each run-folder file is written 0.5 s apart (tests/slow_writer_cli.py)
    code, err = _terminate_when(
        [sys.executable, str(SLOW_WRITER), "0.5", *args, "--append-history"],
        lambda: any(".out.tmp-" in p.name for p in tmp_path.iterdir()), tmp_path / "err.txt")
    assert code == 130, err
    assert "interrupted (SIGTERM)" in err and "Traceback" not in err
    assert _temps(tmp_path, tmp_path / "data", tmp_path / "out") == []
    after = {k: v for k, v in tree_bytes(tmp_path).items()
             if not k.startswith("err") and not k.endswith(".history.lock")}
    assert after == {k: v for k, v in before.items() if not k.endswith(".history.lock")}


def test_sigterm_during_the_commit_is_held_until_it_is_done(tmp_path):
    """As Ctrl-C: a SIGTERM during the folder swap is acted on once the swap is done."""
    out = tmp_path / "out"

    def then() -> None:
        os.kill(os.getpid(), signal.SIGTERM)  # delivered now, held by the commit

    with terminate_as_interrupt(), pytest.raises(InterruptedAfterCommit) as caught:
        write_run_folder(out, {"a.txt": lambda p: p.write_text("new")}, then=then)
    assert signal_name(caught.value) == "SIGTERM"
    assert (out / "a.txt").read_text() == "new"
    assert [p.name for p in tmp_path.iterdir()] == ["out"]


def test_the_sigterm_handler_is_only_installed_while_a_command_runs(tmp_path):
    """Importing the command line installs nothing; a command puts the handler back after it."""
    code = ("import signal, optimizer.cli; "
            "assert signal.getsignal(signal.SIGTERM) is signal.SIG_DFL")
    subprocess.run([sys.executable, "-c", code], check=True)
    before = signal.getsignal(signal.SIGTERM)
    result = CliRunner().invoke(main, ["demo-data", str(tmp_path / "d"), "--customers", "5",
                                       "--offers", "2"])
    assert result.exit_code == 0, result.output
    assert signal.getsignal(signal.SIGTERM) is before
