"""The README's performance table and docs/performance.md's tables are what
``benchmarks/report.py`` renders from the committed, stamped result files (issue 23): a figure
edited by hand, or a result file added without rendering again, fails here."""
from __future__ import annotations

import importlib.util
import json
import re
from pathlib import Path

import pytest

BENCH = Path(__file__).resolve().parent.parent / "benchmarks"


def _module(name: str):
    spec = importlib.util.spec_from_file_location(f"bench_{name}", BENCH / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


report = _module("report")


def test_readme_and_performance_doc_equal_their_rendering_from_the_result_files():
    for path, (now, rendered) in report.rendered().items():
        assert now == rendered, (f"{path.name} differs from what `python benchmarks/report.py` "
                                 "renders from benchmarks/results/: run it (never edit by hand)")


def test_every_summary_row_has_a_stamped_result_file():
    results = report.load_results()
    for key in report.SUMMARY_ROWS:
        assert key in results, f"no result file for {key}"
        result = results[key]
        assert re.fullmatch(r"[0-9a-f]{40}", result["commit"])
        assert result["versions"]["numpy"] and result["versions"]["polars"]
        assert result["file"].endswith(f"_{result['commit'][:8]}.json")
        assert result["runs"] and all(r["peak_rss_gb"] > 0 for r in result["runs"])


def test_a_hand_edited_figure_is_caught(tmp_path):
    for path, (now, _) in report.rendered().items():
        table = re.search(r"<!-- report\.py: (summary|runs) -->\n(.*?)\n<!-- report", now, re.S)
        if table is None:
            continue
        figure = re.search(r"\| ([0-9][0-9.,]*) GB", table.group(2))
        edited = now.replace(figure.group(0), "| 1.00 GB", 1)
        assert edited != now
        sections = report.SECTIONS[path.relative_to(report.ROOT).as_posix()]
        assert report.render_text(edited, sections, report.load_results()) == now


def test_the_newest_result_of_an_instance_wins(tmp_path):
    old = {"benchmark": "e2e", "instance": "x", "date": "2026-01-01T00:00:00+00:00", "v": 1}
    new = {**old, "date": "2026-02-01T00:00:00+00:00", "v": 2}
    (tmp_path / "e2e_x_bbbbbbbb.json").write_text(json.dumps(old))
    (tmp_path / "e2e_x_aaaaaaaa.json").write_text(json.dumps(new))
    assert report.load_results(tmp_path)[("e2e", "x")]["v"] == 2


def test_missing_markers_are_an_error():
    with pytest.raises(ValueError, match="markers"):
        report.render_text("no markers here", {"summary": report.render_summary}, {}, "X.md")


def test_a_result_file_without_its_stamp_is_refused(tmp_path):
    stamp = _module("stamp")
    with pytest.raises(ValueError, match="stamp"):
        stamp.write_result("e2e", "x", {"runs": []}, tmp_path)
    path = stamp.write_result("e2e", "a b/c", {**stamp.stamp(), "runs": []}, tmp_path)
    assert path.name.startswith("e2e_a-b-c_") and json.loads(path.read_text())["versions"]


def _simulate_file(folder, commit: str, date: str, seeds: dict[int, float], size=(20000, 200, 12)):
    rows = [{"seed": s, "seconds": 500.0, "cpu_seconds": 400.0, "peak_memory_gb": 2.5,
             "strategies": {name: {"incremental_margin": m if name == "customer_first" else 0.0,
                                   "spend": 100.0} for name in report._STRATEGIES}}
            for s, m in seeds.items()]
    result = {"commit": commit * 5, "dirty": False, "date": date, "machine": {},
              "setup": dict(zip(("customers", "offers", "weeks"), size)), "seeds": rows}
    (folder / f"simulate_{'x'.join(map(str, size))}_{commit}.json").write_text(json.dumps(result))


def test_the_simulate_table_gathers_seeds_across_files_newest_first(tmp_path):
    # seed 0 measured twice (the newer file wins), seed 1 only in the older file, and a file of
    # another size that the table must ignore
    _simulate_file(tmp_path, "aaaaaaaa", "2026-01-01T00:00:00+00:00", {0: -5.0, 1: 7.0})
    _simulate_file(tmp_path, "bbbbbbbb", "2026-02-01T00:00:00+00:00", {0: 3.0})
    _simulate_file(tmp_path, "cccccccc", "2026-03-01T00:00:00+00:00", {0: -9.0, 2: -9.0},
                   size=(2000, 50, 12))
    seeds = report.simulate_seeds(report.load_results(tmp_path))
    assert [(row["seed"], r["file"][-13:-5]) for row, r in seeds] == [(0, "bbbbbbbb"),
                                                                       (1, "aaaaaaaa")]
    table = report.render_simulate(report.load_results(tmp_path))
    assert "| 0 | 3 / 100 |" in table and "| 1 | 7 / 100 |" in table
    assert "| mean | 5 / 100 |" in table and "in 2 of 2 seeds" in table
