"""The ``scores`` table by chunks of customers, read whole or streamed in batches of rows.

A table of tens of millions of rows fits in memory and is read whole (``Inputs.scores``). At
ten million customers x 50 scored offers (500 M rows, 12 GB as numbers) it does not: it is then
read in batches (``Inputs.scores_batches``, ``solver.stream_scores``), every batch checked as
:func:`~optimizer.io.validate.checked_scores` checks a whole table, and handed on one chunk of
customers at a time, so that memory holds one batch and one chunk, not the table.

Streaming needs each customer's rows together, customers in the order of the ``customers``
table (a table sorted by customer, with the customers table sorted the same way, is); a table
out of that order is refused with the rows that break it. Within a customer the rows may come in
any order. Either way :func:`scores_chunks` yields the same chunks: each customer's rows in offer
order, so the solver sees the same problem whether the table was streamed or read whole.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

import numpy as np
import polars as pl

from optimizer.core.errors import InputError
from optimizer.io.load import read_table_rows
from optimizer.io.validate import Inputs, _attach, checked_scores


@dataclass(frozen=True)
class ScoresChunk:
    """The scored pairs of customers ``start .. stop - 1``, sorted by (``c``, ``o``)."""

    start: int
    stop: int
    c: np.ndarray
    o: np.ndarray
    p_redeem: np.ndarray
    value: np.ndarray


def scores_chunks(inputs: Inputs, bounds: list[tuple[int, int]], consume: bool = False
                  ) -> Iterator[ScoresChunk]:
    """One :class:`ScoresChunk` per ``(start, stop)`` of ``bounds`` (consecutive, in order).

    ``consume`` (a table held whole, read once): the table's columns are moved out of
    ``inputs.scores`` (left without columns) into one copy per chunk, a column at a time, and
    each chunk's rows are let go once handed on, so the memory of the rows not yet handed on
    shrinks as the caller's grows (the blocks built from them), instead of the whole table
    staying beside them to the end. The chunks are the same either way."""
    if inputs.scores_batches is not None:
        yield from _streamed_chunks(inputs, bounds)
    elif consume:
        yield from _consumed_chunks(inputs, bounds)
    else:
        yield from _table_chunks(inputs, bounds)


def _table_chunks(inputs: Inputs, bounds: list[tuple[int, int]]) -> Iterator[ScoresChunk]:
    scores = inputs.scores
    assert scores is not None  # only on the scores path
    table = scores.lazy().select("c", "o", "p_redeem", "value").collect()
    if not inputs.scores_sorted:  # slots are laid out in offer order within each customer
        table = table.sort(["c", "o"])
    c = table.get_column("c").to_numpy()
    for start, stop in bounds:
        # bounds in c's own dtype: a mixed-type search would convert all of c each time
        lo, hi = np.searchsorted(c, np.array([start, stop], dtype=c.dtype))
        # a chunk's rows at a time: whole columns copied out of a table read in row groups
        # would hold a second copy of the table (1.2 GB at 50 M rows)
        part = table.slice(int(lo), int(hi - lo))
        yield ScoresChunk(start, stop, c[lo:hi], part.get_column("o").to_numpy(),
                          part.get_column("p_redeem").to_numpy(),
                          part.get_column("value").to_numpy())


_COLUMNS = ("c", "o", "p_redeem", "value")


def _consumed_chunks(inputs: Inputs, bounds: list[tuple[int, int]]) -> Iterator[ScoresChunk]:
    scores = inputs.scores
    assert scores is not None  # only on the scores path
    table = scores
    if not inputs.scores_sorted:  # slots are laid out in offer order within each customer
        table = scores.lazy().select(_COLUMNS).collect().sort(["c", "o"])
    if not bounds:
        return
    c = table.get_column("c").to_numpy()
    # bounds in c's own dtype: a mixed-type search would convert all of c
    cuts = np.searchsorted(c, np.array([b[0] for b in bounds] + [bounds[-1][1]], dtype=c.dtype))
    del c
    if table is not scores:  # sorted into a copy: the caller's frame lets go of its columns
        for name in list(scores.columns):
            scores.drop_in_place(name)
    parts: dict[str, list[np.ndarray | None]] = {}
    for name in _COLUMNS:  # one column at a time: memory holds the table and one column
        column = table.drop_in_place(name)
        # copies: a view would keep the whole column (or its row group) alive
        parts[name] = [np.array(column.slice(int(lo), int(hi - lo)).to_numpy(), copy=True)
                       for lo, hi in zip(cuts[:-1], cuts[1:])]
        del column
    del table, scores
    for k, (start, stop) in enumerate(bounds):
        arrays = [parts[name][k] for name in _COLUMNS]
        assert all(a is not None for a in arrays)  # each chunk is handed on once
        chunk = ScoresChunk(start, stop, *arrays)  # type: ignore[arg-type]
        for name in _COLUMNS:
            parts[name][k] = None
        yield chunk
        del chunk


def _streamed_chunks(inputs: Inputs, bounds: list[tuple[int, int]]) -> Iterator[ScoresChunk]:
    batches = inputs.scores_batches
    assert batches is not None
    carry = {name: np.zeros(0, dtype=np.float64 if name in ("p_redeem", "value") else np.int32)
             for name in _COLUMNS}
    source = iter(batches)
    exhausted, last = False, -1
    for start, stop in bounds:
        while not exhausted and (carry["c"].size == 0 or carry["c"][-1] < stop):
            frame = next(source, None)
            if frame is None:
                exhausted = True
                break
            rows = checked_scores(frame, inputs.customers, inputs.offers)
            arrays = {name: rows.get_column(name).to_numpy() for name in _COLUMNS}
            _require_customer_order(inputs, arrays, last)
            if arrays["c"].size:
                last = int(arrays["c"][-1])
            carry = {name: np.concatenate([carry[name], arrays[name]]) for name in _COLUMNS}
        # the bound in c's own dtype: a mixed-type search converts all of c first
        cut = int(np.searchsorted(carry["c"], carry["c"].dtype.type(stop)))
        part = {name: values[:cut] for name, values in carry.items()}
        carry = {name: values[cut:] for name, values in carry.items()}
        yield _in_offer_order(inputs, start, stop, part)
    if carry["c"].size or (not exhausted and next(source, None) is not None):
        raise ValueError("scores rows past the last chunk: bounds must cover every customer")


def scores_of_customers(path: Path | str, customers: pl.DataFrame, offers: pl.DataFrame,
                        trim: bool = False) -> pl.DataFrame:
    """The ``scores`` rows of ``customers`` (a stretch of the customers table, with its ``c``),
    read from the table at ``path`` (a local path or an fsspec URL) and checked as a batch is
    (:func:`checked_scores`): ``c``, ``o``, ``p_redeem``, ``value``. A Dask worker reads its
    shard's rows so (the uniqueness of pairs was checked when the driver read the table);
    ``trim``: the driver found stored IDs with surrounding spaces
    (:attr:`~optimizer.io.validate.Inputs.scores_ids_trimmed`), compared trimmed then."""
    rows = read_table_rows(path, "scores", "customer_id", customers.get_column("customer_id"),
                           trim)
    return checked_scores(rows, customers, offers)


def checked_rows(inputs: Inputs, bounds: list[tuple[int, int]]) -> None:
    """Every row of the table checked as the local run checks it (:func:`scores_chunks` over
    ``bounds``, nothing kept): raises the local run's error, if any."""
    for _ in scores_chunks(inputs, bounds):
        pass


def checked_customer_ids(inputs: Inputs, bounds: list[tuple[int, int]]) -> None:
    """The checks of a streamed table that no Dask worker can make of its own rows, made on its
    ``customer_id`` column alone (batch by batch, the others unread): every row's customer is
    in the customers table (a worker reads its customers' rows only) and customers come in that
    table's order (each worker's rows alone cannot show it). Reading them also finds stored
    text IDs with surrounding spaces (:attr:`Inputs.scores_ids_trimmed`), which the workers
    then trim. A row that fails either: the table is checked as the local run checks it
    (:func:`scores_chunks` over ``bounds``), which raises the local run's error."""
    batches = inputs.scores_batches
    assert batches is not None  # only a streamed table
    last = -1
    for frame in batches.read(("customer_id",)):
        c = _attach(frame, "customer_id", inputs.customers).get_column("c")  # null: unknown
        positions = c.to_numpy() if c.null_count() == 0 else None
        if positions is None or (positions.size and (
                positions[0] < last or bool((positions[1:] < positions[:-1]).any()))):
            checked_rows(inputs, bounds)  # the error the local run gives
            raise InputError("scores", "customer_id", "a row's customer_id is empty, not in "
                             "the customers table or out of its order")  # pragma: no cover
        if positions.size:
            last = int(positions[-1])


def _require_customer_order(inputs: Inputs, arrays: dict[str, np.ndarray], last: int) -> None:
    c = arrays["c"]
    if c.size == 0:
        return
    previous = np.concatenate([[last], c[:-1]])
    broken = np.flatnonzero(c < previous)
    if broken.size == 0:
        return
    at = int(broken[0])
    sample = [_row(inputs, arrays, k) for k in (at - 1, at) if k >= 0]
    raise InputError(
        "scores", "customer_id",
        f"the table ({inputs.row_counts.get('scores', 0):,} rows) is read in batches "
        "(solver.stream_scores), which needs each customer's rows together and customers in "
        "the order of the customers table; these rows break that order. Sort the scores table "
        "by customer in that order, or set solver.stream_scores = false to read it whole",
        sample=sample, count=int(broken.size))


def _row(inputs: Inputs, arrays: dict[str, np.ndarray], k: int) -> dict[str, object]:
    """Row ``k`` of a checked batch as the user wrote it (IDs, not indices)."""
    return row_of(inputs.customers, inputs.offers, arrays, k)


def row_of(customers: pl.DataFrame, offers: pl.DataFrame, arrays: dict[str, np.ndarray], k: int
           ) -> dict[str, object]:
    """Row ``k`` of checked rows ``arrays`` as the user wrote it: ``customers`` a stretch of
    the customers table (IDs and ``c``, from its first ``c``), ``offers`` the offers' IDs."""
    first = int(customers.get_column("c")[0]) if customers.height else 0
    return {"customer_id": customers.get_column("customer_id")[int(arrays["c"][k]) - first],
            "offer_id": offers.get_column("offer_id")[int(arrays["o"][k])],
            "p_redeem": float(arrays["p_redeem"][k]), "value": float(arrays["value"][k])}


def require_unique_pairs(customers: pl.DataFrame, offers: pl.DataFrame,
                         arrays: dict[str, np.ndarray], key: np.ndarray) -> None:
    """Refuse rows ``arrays`` (sorted by ``key``, ``c * n_offers + o``) listing a pair twice,
    with the first repeated rows (:func:`row_of`)."""
    repeated = np.flatnonzero(key[1:] == key[:-1])
    if repeated.size:
        sample = [row_of(customers, offers, arrays, int(k)) for k in repeated[:5]]
        raise InputError("scores", "offer_id",
                         "customer_id and offer_id must be unique; duplicates found",
                         sample=sample, count=int(repeated.size))


def _in_offer_order(inputs: Inputs, start: int, stop: int, part: dict[str, np.ndarray]
                    ) -> ScoresChunk:
    """The chunk with each customer's rows in offer order; a pair listed twice is refused."""
    key = part["c"].astype(np.int64) * max(inputs.n_offers, 1) + part["o"]
    if key.size > 1 and not bool((key[1:] > key[:-1]).all()):
        order = np.argsort(key, kind="stable")
        part = {name: values[order] for name, values in part.items()}
        require_unique_pairs(inputs.customers, inputs.offers, part, key[order])
    return ScoresChunk(start, stop, part["c"], part["o"], part["p_redeem"], part["value"])


__all__ = ["ScoresChunk", "checked_customer_ids", "checked_rows", "require_unique_pairs", "row_of",
           "scores_chunks", "scores_of_customers"]
