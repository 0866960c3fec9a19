"""Nothing lost, nothing silently wrong (issue 22: items 1, 2, 7, 11, 12, 13).

- An ``output`` that is not a folder this tool wrote is never replaced: refused with exit 2 before
  planning, the folder left byte for byte as it was.
- A table present but unreadable as a file is refused naming it (``run`` and ``check``); a folder
  of Parquet parts is read as the table.
- Killed history appends' temporary files are removed by the next append.
- Environment failures exit 3 with a message (read-only place, file size limit, disk full,
  unreadable input folder), out of memory exits 4, bad paths and knobs exit 2; never a traceback.
- An address space limit too small to start fails fast with exit 4; the memory limit reads the
  process's and the cgroup's limits.
- A history whose IDs match nothing warns on stderr, in the manifest and in the report.

Tests run as root, for whom permissions do not fail: the read-only place is one that fails for
root too (``/proc`` and ``/sys``, where no folder can be made); the unreadable input folder and a
full disk are simulated by making ``os.listdir`` and the CSV writer raise the errors the kernel
gives (EACCES, ENOSPC); the file size limit is real (``RLIMIT_FSIZE`` in a subprocess).
"""
from __future__ import annotations

import errno
import json
import os
import resource
import subprocess
import sys
import time
from pathlib import Path

import polars as pl
import pytest
from click.testing import CliRunner, Result

from optimizer.cli import main
from optimizer.core import allocator
from optimizer.core.config import load_scenario
from optimizer.io.memory import memory_limit
from tests.tiny_world import base_world, offer, score, tree_bytes, write_scenario, write_world


def world_with_history() -> dict:
    world = base_world(customers=6)
    world["offers"] = [offer(1), offer(2, "DAIRY"), offer(3, "PORK")]
    world["scores"] = [score(c, o, p=0.1 * o, value=float(o + c % 3)) for c in range(1, 7)
                       for o in (1, 2, 3)]
    world["history"] = [{"customer_id": c, "offer_id": 3, "week": 39} for c in range(1, 7)]
    world["restrictions"] = [{"customer_id": 2, "category": "dairy", "rule": "exclude"}]
    return world


@pytest.fixture()
def root(tmp_path: Path) -> Path:
    write_world(tmp_path / "data", world_with_history(), fmt="parquet")
    write_scenario(tmp_path / "scenario.toml", rules={"max_offers_per_customer": 2,
                                                       "cooldown_weeks": 4})
    return tmp_path


def invoke(*args: str) -> Result:
    return CliRunner().invoke(main, list(args))


def flat(text: str) -> str:
    return " ".join(text.split())


def assert_exit(result: Result, code: int, *phrases: str) -> None:
    message = flat(result.stderr or result.output)
    assert result.exit_code == code, (result.exit_code, result.output, result.exception)
    assert isinstance(result.exception, SystemExit), result.exception  # no traceback
    assert "Traceback" not in message
    for phrase in phrases:
        assert flat(phrase) in message, (phrase, message)


# --------------------------------------------------------------------------------------------------
# item 1: an output this tool did not write is never replaced


def _sentinel(folder: Path) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "precious.txt").write_text("do not delete")


OUTPUT_CASES = {
    # name: (scenario edit as --set, files to create under root before the run)
    "set-output-empty-is-cwd": ("output=", lambda r: _sentinel(r / "cwd")),
    "output-dot": ("output=.", lambda r: _sentinel(r / "cwd")),
    "data-folder": ("output=data", lambda r: None),
    "parent-of-data": ("output=" + ".", lambda r: None),
    "folder-holding-runs": ("output=runs", lambda r: [_sentinel(r / "runs" / "a"),
                                                       _sentinel(r / "runs" / "b")]),
    "foreign-folder": ("output=mine", lambda r: _sentinel(r / "mine")),
    "existing-file": ("output=notes.txt", lambda r: (r / "notes.txt").write_text("keep")),
    "inside-data": ("output=data/run", lambda r: None),
}


@pytest.mark.parametrize("case", sorted(OUTPUT_CASES))
def test_output_not_written_by_this_tool_is_refused_and_left_untouched(root, case, monkeypatch):
    override, prepare = OUTPUT_CASES[case]
    prepare(root)
    # the cases naming the current folder run from a folder of the user's own files
    monkeypatch.chdir(root / "cwd" if (root / "cwd").is_dir() else root)
    before = tree_bytes(root)
    result = invoke("run", str(root / "scenario.toml"), "--set", override)
    assert_exit(result, 2, "output")
    assert "load ..." not in result.output  # refused before planning
    assert tree_bytes(root) == before
    assert not [p for p in root.rglob(".*tmp-*")]


def test_output_a_folder_this_tool_wrote_is_replaced(root):
    first = invoke("run", str(root / "scenario.toml"), "--quiet")
    assert first.exit_code == 0, first.output
    (root / "run" / "manifest.json").write_text(
        (root / "run" / "manifest.json").read_text())  # still ours
    again = invoke("run", str(root / "scenario.toml"), "--quiet", "--set",
                   "rules.max_offers_per_customer=1")
    assert again.exit_code == 0, again.output
    assert pl.read_parquet(root / "run" / "assignments.parquet").group_by(
        "customer_id").len().get_column("len").max() == 1


def test_output_with_a_foreign_manifest_is_refused(root):
    _sentinel(root / "run")
    (root / "run" / "manifest.json").write_text('{"something": "else"}')
    before = tree_bytes(root / "run")
    assert_exit(invoke("run", str(root / "scenario.toml")), 2, "did not write")
    assert tree_bytes(root / "run") == before


def test_sweep_refuses_a_foreign_output_before_solving(root):
    _sentinel(root / "mine")
    result = invoke("sweep", str(root / "scenario.toml"), "--budget-scale", "0.5,1",
                    "--out", str(root / "mine"))
    assert_exit(result, 2, "did not write")
    assert (root / "mine" / "precious.txt").read_text() == "do not delete"


# --------------------------------------------------------------------------------------------------
# item 2: present but unreadable tables are refused; datasets are read


def _folder_for(name: str):
    def edit(data: Path) -> None:
        (data / f"{name}.parquet").unlink()
        (data / f"{name}.parquet").mkdir()
    return edit


def _link(name: str, target: str):
    def edit(data: Path) -> None:
        (data / f"{name}.parquet").unlink()
        (data / f"{name}.parquet").symlink_to(target)
    return edit


UNREADABLE = {
    "restrictions-folder": ("restrictions", _folder_for("restrictions"), "no .parquet parts"),
    "scores-folder": ("scores", _folder_for("scores"), "no .parquet parts"),
    "history-dangling-link": ("history", _link("history", "gone.parquet"), "does not exist"),
    "history-link-loop": ("history", _link("history", "history.parquet"), "loop"),
    "csv-folder": ("history", lambda d: ((d / "history.parquet").unlink(),
                                         (d / "history.csv").mkdir()), "is a folder"),
    "file-and-dataset": ("history", lambda d: ((d / "history").mkdir(), pl.DataFrame(
        {"customer_id": [1], "offer_id": [1], "week": [30]}).write_parquet(
            d / "history" / "part-0.parquet")), "keep one"),
}


@pytest.mark.parametrize("case", sorted(UNREADABLE))
def test_present_but_unreadable_table_is_refused_by_run_and_check(root, case):
    table, edit, phrase = UNREADABLE[case]
    good = invoke("run", str(root / "scenario.toml"), "--quiet")
    assert good.exit_code == 0, good.output
    before = tree_bytes(root / "run")
    edit(root / "data")
    assert_exit(invoke("run", str(root / "scenario.toml")), 2, f"table '{table}'", phrase)
    assert tree_bytes(root / "run") == before
    assert_exit(invoke("check", str(root / "scenario.toml")), 2, f"table '{table}'", phrase)


@pytest.mark.parametrize("layout", ["NAME.parquet/", "NAME/"])
def test_folder_of_parquet_parts_is_read_as_the_table(root, layout):
    whole = invoke("run", str(root / "scenario.toml"), "--quiet", "--set", f"output={root / 'whole'}")
    assert whole.exit_code == 0, whole.output
    data = root / "data"
    for name in ("scores", "history"):
        frame = pl.read_parquet(data / f"{name}.parquet")
        (data / f"{name}.parquet").unlink()
        folder = data / layout.replace("NAME", name).rstrip("/")
        (folder / "sub").mkdir(parents=True)
        half = frame.height // 2
        frame[:half].write_parquet(folder / "part-0.parquet")
        frame[half:].write_parquet(folder / "sub" / "part-1.parquet")
        (folder / "_SUCCESS").write_text("")
    parts = invoke("run", str(root / "scenario.toml"), "--quiet", "--set", f"output={root / 'parts'}")
    assert parts.exit_code == 0, parts.output
    for file in ("assignments.csv", "offers_summary.csv"):
        assert (root / "whole" / file).read_bytes() == (root / "parts" / file).read_bytes()
    manifest = json.loads((root / "parts" / "manifest.json").read_text())
    assert manifest["inputs"]["history"]["rows"] == 6
    # the cooldown of the history dataset holds: offer 3 went to nobody
    assert 3 not in pl.read_parquet(root / "parts" / "assignments.parquet")["offer_id"].to_list()
    checked = invoke("check", str(root / "scenario.toml"), str(root / "parts"))
    assert checked.exit_code == 0, checked.output


# --------------------------------------------------------------------------------------------------
# item 7: temporary files of killed history appends are removed


def test_stale_history_temp_files_are_removed_by_the_next_append(root):
    data = root / "data"
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    stale = data / f".history.tmp-{dead.pid}-0123abcd.parquet"
    old_style = data / ".history.tmp-89abcdef.parquet"  # before the pid was in the name
    live = data / f".history.tmp-{os.getpid()}-4567cdef.parquet"
    for path in (stale, old_style, live):
        path.write_bytes(b"half written")
    hour_ago = time.time() - 7200
    os.utime(old_style, (hour_ago, hour_ago))
    result = invoke("run", str(root / "scenario.toml"), "--quiet", "--append-history")
    assert result.exit_code == 0, result.output
    assert not stale.exists() and not old_style.exists()
    assert live.exists()  # its writer (this process) is alive
    assert pl.read_parquet(data / "history.parquet").filter(pl.col("week") == 40).height > 0


# --------------------------------------------------------------------------------------------------
# item 11: clear messages and distinct exit codes, never a traceback


@pytest.mark.parametrize("place", ["/proc/offeropt-test/run", "/sys/offeropt-test-run"])
def test_output_where_no_folder_can_be_made_exits_3_before_planning(root, place):
    if not Path(place).parts[1:2] or not Path("/" + Path(place).parts[1]).is_dir():
        pytest.skip(f"no {place.split('/')[1]} here")
    result = invoke("run", str(root / "scenario.toml"), "--set", f"output={place}")
    assert_exit(result, 3, "cannot write the output", "nothing was planned")
    assert "load ..." not in result.output


def _limit_file_size() -> None:
    resource.setrlimit(resource.RLIMIT_FSIZE, (4096, 4096))


def test_file_size_limit_exits_3_and_leaves_the_earlier_run(root):
    first = invoke("run", str(root / "scenario.toml"), "--quiet")
    assert first.exit_code == 0, first.output
    before = tree_bytes(root / "run")
    proc = subprocess.run([sys.executable, "-m", "optimizer", "run", str(root / "scenario.toml"),
                           "--quiet", "--set", "rules.max_offers_per_customer=3"],
                          capture_output=True, text=True, preexec_fn=_limit_file_size,
                          timeout=120)
    assert proc.returncode == 3, proc.stderr
    assert "file size limit" in flat(proc.stderr) and "EFBIG" in proc.stderr
    assert "Traceback" not in proc.stderr
    assert tree_bytes(root / "run") == before
    assert [p.name for p in root.iterdir() if p.name.startswith(".run")] == []


def test_disk_full_exits_3_with_no_partial_output(root, monkeypatch):
    def full(self, path, *args, **kwargs):
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), str(path))
    monkeypatch.setattr(pl.DataFrame, "write_csv", full)
    result = invoke("run", str(root / "scenario.toml"), "--quiet")
    assert_exit(result, 3, "disk is full", "ENOSPC", "nothing was written")
    assert not (root / "run").exists()
    assert [p.name for p in root.iterdir() if p.name.startswith(".run")] == []


def test_unreadable_input_folder_exits_3(root, monkeypatch):
    import optimizer.io.load as load

    real = os.listdir

    def denied(path="."):
        if Path(path) == root / "data":
            raise PermissionError(errno.EACCES, os.strerror(errno.EACCES), str(path))
        return real(path)
    monkeypatch.setattr(load.os, "listdir", denied)
    result = invoke("run", str(root / "scenario.toml"))
    assert_exit(result, 3, "cannot read the input folder", "permission denied")


@pytest.mark.parametrize("which", ["scenario", "data", "output"])
def test_symlink_loop_exits_2(root, which):
    loop = root / "loop"
    loop.symlink_to(loop)
    args = ["run", str(loop if which == "scenario" else root / "scenario.toml")]
    if which != "scenario":
        args += ["--set", f"{which}={loop}"]
    assert_exit(invoke(*args), 2, "cannot be resolved")


@pytest.mark.parametrize("override", ["week=9223372036854775807",
                                      "rules.max_offers_per_customer=9223372036854775807",
                                      "rules.max_offers_per_category=9223372036854775807",
                                      "rules.cooldown_weeks=9223372036854775807",
                                      "solver.seed=9223372036854775807"])
def test_huge_whole_numbers_exit_2(root, override):
    assert_exit(invoke("run", str(root / "scenario.toml"), "--set", override), 2,
                override.split("=")[0].split(".")[-1], "out of range")


def test_largest_allowed_caps_run(root):
    result = invoke("run", str(root / "scenario.toml"), "--quiet",
                    "--set", "rules.max_offers_per_category=2147483647",
                    "--set", "rules.max_offers_per_customer=2147483647")
    assert result.exit_code == 0, (result.output, result.exception)


def test_deep_extends_chain_exits_2(root):
    base = root / "scenario.toml"
    for k in range(1, 1501):
        (root / f"s{k}.toml").write_text(
            f'extends = "{"scenario.toml" if k == 1 else f"s{k - 1}.toml"}"\n')
    assert_exit(invoke("run", str(root / "s1500.toml")), 2, "'extends' chains more than")
    assert base.exists()


def test_allocation_failure_exits_4(root, monkeypatch):
    import optimizer.apps.pipeline as pipeline

    def fail(*args, **kwargs):
        raise MemoryError()
    monkeypatch.setattr(pipeline, "_run", fail)
    assert_exit(invoke("run", str(root / "scenario.toml")), 4, "out of memory")


def test_help_documents_the_exit_codes():
    text = flat(invoke("--help").output)
    for phrase in ("Exit codes", "2 bad input", "3 the environment refuses", "4 out of memory"):
        assert phrase in text


# --------------------------------------------------------------------------------------------------
# item 12: process and container memory limits


def _small_address_space() -> None:
    limit = int(1.5 * 1024 ** 3)
    resource.setrlimit(resource.RLIMIT_AS, (limit, resource.getrlimit(resource.RLIMIT_AS)[1]))


def test_small_address_space_limit_fails_fast_with_exit_4(root):
    start = time.monotonic()
    proc = subprocess.run([sys.executable, "-m", "optimizer", "run", str(root / "scenario.toml")],
                          capture_output=True, text=True, preexec_fn=_small_address_space,
                          timeout=60)
    assert proc.returncode == 4, proc.stderr[-2000:]
    assert "address space limit" in flat(proc.stderr)
    assert "jemalloc" not in proc.stderr and len(proc.stderr) < 2000
    assert time.monotonic() - start < 30
    assert not (root / "run").exists()


def test_memory_limit_reads_the_process_and_cgroup_limits(root, tmp_path, monkeypatch):
    scenario = load_scenario(root / "scenario.toml")
    cgroup = tmp_path / "memory.max"
    cgroup.write_text(f"{512 * 1024 ** 2}\n")
    monkeypatch.setattr(allocator, "CGROUP_MEMORY_FILES", (str(cgroup),))
    assert memory_limit(scenario) == (512 * 1024 ** 2, "the container's memory limit (cgroup)")
    cgroup.write_text("max\n")
    real = allocator._rlimit
    monkeypatch.setattr(allocator, "_rlimit",
                        lambda name: 256 * 1024 ** 2 if name == "RLIMIT_DATA" else real(name))
    limit, source = memory_limit(scenario)
    assert limit == 256 * 1024 ** 2 and "ulimit -d" in source


def test_estimate_above_a_process_limit_exits_4(root, monkeypatch):
    monkeypatch.setattr(allocator, "_rlimit", lambda name: 1024 if name == "RLIMIT_DATA" else None)
    assert_exit(invoke("run", str(root / "scenario.toml")), 4, "ulimit -d")
    assert not (root / "run").exists()


@pytest.mark.parametrize("quota, expected", [("150000 100000", 2), ("50000 100000", 1),
                                             ("max 100000", None)])
def test_threads_follow_the_cgroup_cpu_quota(tmp_path, monkeypatch, quota, expected):
    cpu_max = tmp_path / "cpu.max"
    cpu_max.write_text(quota + "\n")
    monkeypatch.setattr(allocator, "CGROUP_CPU_FILES", (str(cpu_max),))
    monkeypatch.setattr(allocator, "CGROUP_V1_CPU", (str(tmp_path / "a"), str(tmp_path / "b")))
    monkeypatch.setattr(allocator.os, "sched_getaffinity", lambda pid: set(range(8)))
    assert allocator.usable_cpus() == (expected or 8)


# --------------------------------------------------------------------------------------------------
# item 13: a history that matches nothing warns


def test_history_matching_nothing_warns_in_stderr_manifest_and_report(tmp_path):
    world = world_with_history()
    world["history"] = [{"customer_id": c, "offer_id": "0003", "week": 39} for c in range(1, 7)]
    write_world(tmp_path / "data", world)  # CSV: '0003' stays text, offers are integers
    path = write_scenario(tmp_path / "scenario.toml", rules={"cooldown_weeks": 4})
    # a subprocess: the warning goes through logging to the real stderr
    proc = subprocess.run([sys.executable, "-m", "optimizer", "run", str(path), "--quiet"],
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert "table 'history': all of its rows (6 of 6) match no customer or offer" in flat(
        proc.stderr)
    manifest = json.loads((tmp_path / "run" / "manifest.json").read_text())
    assert any("'0003'" in w for w in manifest["input_warnings"])
    assert "match no customer or offer" in (tmp_path / "run" / "report.html").read_text()
    # --quiet keeps warnings: its help said "nothing but errors"
    assert proc.stdout == ""
    for command in ("run", "sweep"):
        assert "nothing but warnings and errors" in flat(invoke(command, "--help").output)


def test_history_with_a_few_gone_offers_does_not_warn(root, caplog):
    history = pl.read_parquet(root / "data" / "history.parquet")
    gone = history.head(2).with_columns(pl.lit(99, dtype=pl.Int64).alias("offer_id"))
    pl.concat([history, gone]).write_parquet(root / "data" / "history.parquet")  # 2 of 8 gone
    result = invoke("run", str(root / "scenario.toml"), "--quiet")
    assert result.exit_code == 0
    manifest = json.loads((root / "run" / "manifest.json").read_text())
    assert manifest["dropped_rows"]["history_unknown_customer_or_offer"] == 2
    assert manifest["input_warnings"] == []
    assert "match no customer" not in caplog.text
