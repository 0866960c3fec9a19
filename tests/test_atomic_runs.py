"""Run folders are written whole or not at all, even when the run is SIGKILLed while writing.

``offeropt run`` is started as a subprocess through tests/slow_writer_cli.py (the run folder's
writers sleep after each file written into the temporary sibling), killed with SIGKILL once its
temporary folder holds k files, and the output folder must then be the earlier run byte for byte
(or absent when there was none). A run left to
finish replaces it whole (``offeropt check`` passes). Kills at random moments without the hook must
leave one of the two. The next run removes the temporary siblings that killed runs left behind.
"""
from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from click.testing import CliRunner

from optimizer.cli import main
from optimizer.io.runfolder import remove_stale_temps
from tests.tiny_world import base_world, offer, score, tree_bytes, write_scenario, write_world

SLOW_WRITER = Path(__file__).parent / "slow_writer_cli.py"
RUN_FILES = {"assignments.parquet", "assignments.csv", "offers_summary.parquet",
             "offers_summary.csv", "report.html", "manifest.json"}


@pytest.fixture()
def scenario(tmp_path: Path) -> Path:
    world = base_world(customers=6)
    world["offers"] = [offer(1), offer(2, "DAIRY", budget=2.0), offer(3, "PORK")]
    world["scores"] = [score(c, o, p=0.1 * o, value=float(o + c % 3)) for c in range(1, 7)
                       for o in (1, 2, 3)]
    write_world(tmp_path / "data", world)
    return write_scenario(tmp_path / "scenario.toml", rules={"max_offers_per_customer": 2})


def _start(scenario: Path, *overrides: str, delay: float | None) -> subprocess.Popen:
    args = [sys.executable, "-m", "optimizer", "run", str(scenario), "--quiet"]
    if delay is not None:  # the same command, each file written `delay` seconds apart
        args[1:3] = [str(SLOW_WRITER), str(delay)]
    for text in overrides:
        args += ["--set", text]
    return subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)


def _temps(run: Path) -> list[Path]:
    return sorted(run.parent.glob(f".{run.name}.tmp-*"))


def _kill_when_temp_holds(proc: subprocess.Popen, run: Path, files: int,
                          timeout: float = 60.0) -> None:
    """SIGKILL ``proc`` once its temporary sibling of ``run`` holds ``files`` files."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        assert proc.poll() is None, f"run ended before the kill: {proc.stderr.read().decode()}"
        # its own folder (the name holds its pid): a starting run clears the killed runs'
        # folders, so another's may vanish between the glob and the listing
        mine = sorted(run.parent.glob(f".{run.name}.tmp-{proc.pid}-*"))
        try:
            held = sum(1 for _ in mine[-1].iterdir()) if mine else -1
        except FileNotFoundError:
            held = -1
        if held >= files:
            proc.send_signal(signal.SIGKILL)
            proc.wait()
            return
        time.sleep(0.01)
    proc.kill()
    raise AssertionError("the run never wrote into its temporary folder")


def _assert_complete_run(scenario: Path, run: Path, *overrides: str) -> None:
    assert RUN_FILES <= {p.name for p in run.iterdir()}
    json.loads((run / "manifest.json").read_text())
    sets = [arg for text in overrides for arg in ("--set", text)]
    checked = CliRunner().invoke(main, ["check", str(scenario), str(run), *sets])
    assert checked.exit_code == 0, checked.output


def test_sigkill_while_writing_leaves_the_earlier_run_untouched(scenario: Path):
    run = scenario.parent / "run"
    first = CliRunner().invoke(main, ["run", str(scenario), "--quiet"])
    assert first.exit_code == 0, first.output
    before = tree_bytes(run)
    for files in (0, 3, len(RUN_FILES)):  # before the first file ... after the manifest
        proc = _start(scenario, "rules.max_offers_per_customer=1", delay=0.3)
        _kill_when_temp_holds(proc, run, files)
        assert proc.returncode == -signal.SIGKILL
        assert tree_bytes(run) == before, f"killed after {files} files"
        assert _temps(run), "the killed run's temporary folder is expected to be left behind"
    # the next run clears the killed runs' temporary siblings and replaces the folder whole
    proc = _start(scenario, "rules.max_offers_per_customer=1", delay=None)
    assert proc.wait(timeout=120) == 0, proc.stderr.read().decode()
    assert _temps(run) == []
    assert tree_bytes(run) != before
    _assert_complete_run(scenario, run, "rules.max_offers_per_customer=1")
    manifest = json.loads((run / "manifest.json").read_text())
    assert manifest["scenario"]["rules"]["max_offers_per_customer"] == 1


def test_sigkill_of_a_first_run_leaves_no_folder(scenario: Path):
    run = scenario.parent / "run"
    proc = _start(scenario, delay=0.3)
    _kill_when_temp_holds(proc, run, 2)
    assert not run.exists()
    checked = CliRunner().invoke(main, ["check", str(scenario)])
    assert checked.exit_code == 2  # no run folder: the temporary sibling is not read as a run
    assert "run folder not found" in " ".join(checked.output.split())


def test_sigkill_at_random_moments_leaves_old_or_new_whole(scenario: Path):
    run = scenario.parent / "run"
    # the first run also measures how long a run takes (import, solve and write), to spread the
    # kills over the part of it where the folder is written
    tick = time.monotonic()
    assert _start(scenario, delay=None).wait(timeout=120) == 0
    duration = time.monotonic() - tick
    old = tree_bytes(run)
    rng = random.Random(7)
    outcomes = []
    for _ in range(3):
        proc = _start(scenario, "rules.max_offers_per_customer=1", delay=None)
        time.sleep(rng.uniform(0.6, 1.1) * duration)
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        now = tree_bytes(run)
        if now == old:
            outcomes.append("old")
        else:
            _assert_complete_run(scenario, run, "rules.max_offers_per_customer=1")
            outcomes.append("new")
            assert CliRunner().invoke(main, ["run", str(scenario), "--quiet"]).exit_code == 0
            old = tree_bytes(run)
    assert set(outcomes) <= {"old", "new"}


def test_remove_stale_temps_keeps_live_writers(tmp_path: Path):
    run = tmp_path / "run"
    done = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"],
                          capture_output=True, text=True, check=True)
    dead_pid = int(done.stdout)
    dead = tmp_path / f".run.tmp-{dead_pid}-deadbeef"
    live = tmp_path / f".run.tmp-{os.getpid()}-cafef00d"
    legacy = tmp_path / ".run.tmp-0123abcd"  # older naming without a pid: removed after an hour
    other = tmp_path / f".other.tmp-{dead_pid}-deadbeef"
    for folder in (dead, live, legacy, other):
        folder.mkdir()
        (folder / "assignments.csv").write_text("x\n")
    old_time = time.time() - 7200
    os.utime(legacy, (old_time, old_time))
    removed = remove_stale_temps(run)
    assert set(removed) == {dead, legacy}
    assert live.exists() and other.exists() and not dead.exists() and not legacy.exists()
