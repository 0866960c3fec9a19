"""Removing an input folder's tables (``offeropt demo-data``, which makes the folder plan as the
tables it writes): every form the reader reads a table in (:func:`optimizer.io.load.table_forms`),
and nothing else.
"""
from __future__ import annotations

import os
import shutil
from pathlib import Path
from typing import Collection

from optimizer.core.errors import InputError
from optimizer.core.schemas import INPUT_TABLES
from optimizer.io.load import dataset_parts, table_forms


def remove_table_form(path: Path, name: str) -> bool:
    """Remove ``path`` when it holds table ``name`` as the reader would read it: a
    ``NAME.parquet`` or ``NAME.csv`` file (or a link), or a folder of Parquet parts
    (``NAME.parquet/`` or ``NAME/``, or a link to one: the link goes, not its target); returns
    whether it did. Anything else there is no table's form (a bare ``NAME`` file, a folder holding
    other files, which the reader refuses naming it) and is left alone."""
    if not os.path.lexists(path):
        return False
    if path.suffix in (".parquet", ".csv") and (path.is_symlink() or path.is_file()):
        path.unlink()
        return True
    if path.suffix == ".csv" or not path.is_dir():
        return False
    try:
        dataset_parts(path, name)
    except InputError:
        return False  # not a dataset: not a table's, not ours to delete
    if path.is_symlink():
        path.unlink()
    else:
        shutil.rmtree(path)
    return True


def remove_input_tables(folder: Path, keep: Collection[Path] = ()) -> list[Path]:
    """Remove every form of every input table of docs/contract.md in ``folder``
    (:func:`remove_table_form`) but the files in ``keep`` (those about to be replaced in place;
    a folder there is removed all the same, as a file cannot replace it); returns the paths
    removed. Files and folders of other names are never touched."""
    removed = []
    for name in sorted(INPUT_TABLES):
        for path in table_forms(Path(folder), name):
            if (path not in keep or path.is_dir()) and remove_table_form(path, name):
                removed.append(path)
    return removed


__all__ = ["remove_input_tables", "remove_table_form"]
