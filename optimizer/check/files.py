"""The run folder holds every file a run publishes (rule ``missing_output``; part of
``offeropt check``, see :mod:`optimizer.check`).

docs/contract.md, "Outputs", lists what a run folder holds, and the run writes it whole or not at
all; a folder that lacks one of its files is not the run it claims to be (a copy cut short, a
file deleted by hand), so ``check`` reports each missing file as a violation (exit 1), one per
file, naming it:

- ``manifest.json`` and ``report.html``, always;
- ``assignments`` and ``offers_summary``, always, and ``pacing`` when the manifest records the
  flights covering the week (``flights``: the run wrote their pacing table), each as both its
  ``.parquet`` and its ``.csv`` copy, except in a *CSV-only* folder, one holding no Parquet copy
  of any of these tables (the contract's "run folder holding only the CSV copies", checked at
  the CSV's precision), where the ``.csv`` copy is required;
- ``controls``: written by every run of this version, required (as the ``controls`` rule of
  :mod:`optimizer.check.controls` reports) when ``[measurement]`` holds customers out; when a
  copy is present, its twin is required as for the tables above (a run written before controls
  existed holds neither, and is not blamed for it);
- ``customers.parquet`` is written only when the run had lifetime values: it is checked when
  present (rule ``customers_table``), never required.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any

from optimizer.check.base import Violation

# the tables published as a Parquet and a CSV copy (docs/contract.md, "Outputs")
TWO_COPY_TABLES = ("assignments", "offers_summary", "controls", "pacing")
ALWAYS = ("manifest.json", "report.html")


def _required_tables(manifest: dict[str, Any] | None, present: set[str]) -> list[str]:
    tables = ["assignments", "offers_summary"]
    if isinstance(manifest, dict) and isinstance(manifest.get("flights"), dict):
        tables.append("pacing")
    if "controls" in present:  # its twin is required; its absence is the controls rule's
        tables.append("controls")
    return tables


def missing_outputs(run_dir: Path, manifest: dict[str, Any] | None) -> list[Violation]:
    """One ``missing_output`` violation per file the run folder ``run_dir`` should hold and does
    not (module docstring). ``manifest``: the run's ``manifest.json`` as read, or ``None``."""
    run_dir = Path(run_dir)
    present = {t for t in TWO_COPY_TABLES
               if any((run_dir / f"{t}.{ext}").is_file() for ext in ("parquet", "csv"))}
    parquet = sorted(f"{t}.parquet" for t in TWO_COPY_TABLES
                     if (run_dir / f"{t}.parquet").is_file())
    csv_only = not parquet
    out = [Violation("missing_output", f"the run folder lacks {name} (every run writes it)", 1)
           for name in ALWAYS if not (run_dir / name).is_file()]
    for table in _required_tables(manifest, present):
        for ext in (("csv",) if csv_only else ("parquet", "csv")):
            name = f"{table}.{ext}"
            if (run_dir / name).is_file():
                continue
            why = ("a run folder holding only the CSV copies needs this one" if csv_only else
                   f"the folder holds {parquet[0]}, so it is not CSV-only: every table has "
                   "both copies" if ext == "parquet" else "every table has both copies")
            if table == "pacing":
                why += "; the manifest records flights covering the week"
            out.append(Violation("missing_output", f"the run folder lacks {name} ({why})", 1))
    return out


__all__ = ["missing_outputs"]
