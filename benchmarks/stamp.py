"""Stamped benchmark result files: every figure the README and docs/performance.md quote comes
from one of these (``benchmarks/report.py`` renders the tables from them).

A result file is JSON in ``benchmarks/results/`` named ``{benchmark}_{instance}_{commit8}.json``
and carries the commit it measured (``dirty``: whether tracked files other than documents had
uncommitted changes), the versions of the packages that decide plans and speed, the machine and
its load average, and the date. The stamp is taken when the benchmark starts, so it names the
code that ran.
"""
from __future__ import annotations

import datetime as dt
import json
import os
import platform
import re
import subprocess
from importlib import metadata
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
RESULTS = Path(__file__).resolve().parent / "results"
PACKAGES = ("offeropt", "numpy", "numba", "ortools", "polars", "pyarrow", "scipy")


def _git(*args: str) -> str:
    return subprocess.run(["git", *args], cwd=ROOT, capture_output=True, text=True
                          ).stdout.strip()


def stamp(packages: tuple[str, ...] = PACKAGES) -> dict[str, Any]:
    """Commit, dirty flag, package versions, Python, machine (with load average) and date."""
    versions: dict[str, str | None] = {}
    for package in packages:
        try:
            versions[package] = metadata.version(package)
        except metadata.PackageNotFoundError:
            versions[package] = None
    load = list(os.getloadavg()) if hasattr(os, "getloadavg") else None
    # uncommitted changes to what runs; documents and result files change nothing measured
    changes = [line for line in _git("status", "--porcelain", "--untracked-files=no").splitlines()
               if not (line[3:].endswith(".md") or line[3:].startswith("benchmarks/results/"))]
    return {"commit": _git("rev-parse", "HEAD"), "dirty": bool(changes),
            "versions": versions, "python": platform.python_version(),
            "machine": {"platform": platform.platform(), "cpus": os.cpu_count(),
                        "load_average": load},
            "date": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds")}


def safe_name(text: str) -> str:
    """``text`` as a file-name part: letters, digits, dots and dashes."""
    return re.sub(r"[^A-Za-z0-9.]+", "-", text).strip("-")


def write_result(benchmark: str, instance: str, result: dict[str, Any],
                 folder: Path = RESULTS) -> Path:
    """Write ``result`` (which holds a :func:`stamp`) as ``{benchmark}_{instance}_{commit8}.json``
    in ``folder``; a later run at the same commit replaces the earlier file."""
    if "commit" not in result or "versions" not in result:
        raise ValueError("a result file needs the stamp (commit and versions)")
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{benchmark}_{safe_name(instance)}_{result['commit'][:8]}.json"
    path.write_text(json.dumps({"benchmark": benchmark, "instance": instance, **result},
                               indent=1, default=str) + "\n")
    return path
