"""Input tables read outside :func:`optimizer.io.validate.load_inputs` (``measure``,
``demo-outcomes``), their IDs typed as ``load_inputs`` types them.

``run`` accepts a folder whose tables store one kind of ID in different types (a
``transactions`` table with text ``customer_id`` beside integer ``customers``, or a CSV's plain
integers): ``load_inputs`` reads a master table's own IDs with :func:`master_id_type` and every
other table's as the master's type (:func:`unify_id_type`). Readers that joined the tables as
stored failed on such a folder (a join of text and integer keys: exit 70); these read them the
way the run did, so that the run folder's IDs, typed as the run's inputs, join them too.
"""
from __future__ import annotations

from pathlib import Path

import polars as pl

from optimizer.io.load import master_id_type, read_required, unify_id_type
from optimizer.io.validate import check_rows

# the master table of each kind of ID (docs/contract.md, "References between tables")
MASTER_OF = {"customers": "customer_id", "products": "product_id", "offers": "offer_id"}


def read_master(folder: Path, name: str) -> pl.DataFrame:
    """Master table ``name`` (``customers``, ``products`` or ``offers``), its rows checked
    (:func:`check_rows`) and its own ID column typed as ``load_inputs`` types it."""
    raw = read_required(Path(folder), name)
    check_rows(name, raw.frame)
    column = MASTER_OF[name]
    return raw.frame.with_columns(master_id_type(raw.frame.get_column(column),
                                                 raw.path.suffix == ".csv"))


def ids_are_int(**masters: pl.DataFrame) -> dict[str, bool]:
    """Whether each kind of ID is an integer, from master tables read by :func:`read_master`
    (keyword: the ID column, e.g. ``customer_id=customers``)."""
    return {column: frame.schema[column].is_integer() for column, frame in masters.items()}


def read_referencing(folder: Path, name: str, ids_int: dict[str, bool],
                     why: str = "") -> pl.DataFrame:
    """Table ``name``, its rows checked, each ID column that ``ids_int`` names read as its
    master's type (:func:`unify_id_type`: text trimmed, or integers); a row whose ID no master's
    can be (a text ``"06"`` beside integer IDs) is left out, as ``load_inputs`` leaves out rows
    naming unknown customers or products."""
    frame = read_required(Path(folder), name, why).frame
    check_rows(name, frame)
    typed = [c for c in ids_int if c in frame.columns]
    frame = frame.with_columns(unify_id_type(frame.get_column(c), ids_int[c]) for c in typed)
    return frame.drop_nulls(typed) if typed else frame


__all__ = ["MASTER_OF", "ids_are_int", "read_master", "read_referencing"]
