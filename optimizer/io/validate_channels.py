"""Validation of the optional channel tables: ``channels`` (channel_id, capacity,
cost_per_contact) and ``customer_channels`` (customer_id, channel_id: the consent). Each bad row
stops the run with the table, the column and sample rows (exit 2), as every other table's checks
do (:mod:`optimizer.io.validate`)."""
from __future__ import annotations

import polars as pl

from optimizer.core.errors import InputError
from optimizer.io.load import RawTable


def validate_channels(channels: RawTable | None, consent: RawTable | None,
                      customers: pl.DataFrame) -> tuple[pl.DataFrame | None, pl.DataFrame | None]:
    """The ``channels`` rows (``channel_id`` trimmed, ``capacity`` empty = no cap,
    ``cost_per_contact`` empty = 0) and the ``customer_channels`` rows with the customer index
    ``c`` and the channel index ``k`` (row of ``channels``); ``(None, None)`` without the tables.

    The two tables come together; ``channel_id`` is required, non-empty and unique in
    ``channels``; ``capacity`` is a whole number >= 0, ``cost_per_contact`` finite and >= 0;
    every consent row names a known customer and a known channel, once."""
    from optimizer.io import validate as v  # local: validate imports this module

    if channels is None and consent is None:
        return None, None
    if channels is None or consent is None:
        given, missing = (("customer_channels", "channels") if channels is None
                          else ("channels", "customer_channels"))
        raise InputError(missing, None, f"table missing: the {given} table needs it (channels "
                         "and customer_channels come together)")
    frame = channels.frame.with_columns(pl.col("channel_id").cast(pl.Utf8).str.strip_chars())
    for column, dtype in (("capacity", pl.Int64), ("cost_per_contact", pl.Float64)):
        if column not in frame.columns:
            frame = frame.with_columns(pl.lit(None, dtype=dtype).alias(column))
    v._require_not_null("channels", frame, ["channel_id"])
    v._require_unique("channels", frame, ["channel_id"])
    for column in ("capacity", "cost_per_contact"):
        v._range("channels", frame, column, pl.col(column) < 0, ">= 0")
    frame = frame.with_columns(pl.col("cost_per_contact").fill_null(0.0)).with_row_index("k")
    rows = consent.frame.with_columns(pl.col("channel_id").cast(pl.Utf8).str.strip_chars())
    v._require_not_null("customer_channels", rows, ["customer_id", "channel_id"])
    rows = v._attach(rows, "customer_id", customers)
    v._references("customer_channels", rows, "customer_id")
    rows = rows.join(frame.select("channel_id", pl.col("k").cast(pl.Int32)), on="channel_id",
                     how="left", maintain_order="left")
    v._fail_rows("customer_channels", "channel_id", rows, pl.col("k").is_null(),
                 "channel_id not found in table 'channels'")
    v._require_unique("customer_channels", rows.select("customer_id", "channel_id", "c", "k"),
                      ["customer_id", "channel_id"])
    return (frame.select("channel_id", "capacity", "cost_per_contact"),
            rows.select("customer_id", "channel_id", "c", "k"))
