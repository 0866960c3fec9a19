"""Check the input tables once, at the boundary, and hand later steps only what passed.

`load_inputs` reads the folder (through :mod:`optimizer.io.load`), checks types, ranges, uniqueness and
references as docs/contract.md states them, and returns :class:`Inputs`: every table with dense integer
indices added (``c`` for customers, ``p`` for products, ``o`` for offers, in the master tables' row
order) and category names normalised. Later steps trust these frames and never re-check user data.
"""
from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import numba as nb
import numpy as np
import polars as pl

from optimizer.core.config import MAX_AMOUNT
from optimizer.core.errors import InputError
from optimizer.core.schemas import ID, ID_MASTER, INPUT_TABLES, normalize_category
from optimizer.io.load import (
    RawTable,
    TableBatches,
    master_id_type,
    padded_ids,
    read_required,
    read_tables,
    unify_id_type,
)

INDEX_OF = {"customer_id": "c", "product_id": "p", "offer_id": "o"}


@dataclass(frozen=True)
class Inputs:
    """Validated input tables. Optional tables are ``None`` when absent.

    Attributes
    ----------
    customers, products, offers: master tables with their index column (``c``, ``p``, ``o``).
    transactions: rows with a known customer and product: ``c``, ``p``, ``week``,
        ``sales_value`` and, when given, ``date`` and ``discount``.
    offer_products: rows with ``o`` and ``p``.
    restrictions: ``c``, normalised ``category``, ``rule`` in {"exclude", "opt_in"}.
    history, redemptions: ``c``, ``o`` and ``week`` of rows naming known customers and offers
        (history also ``expected_cost`` when the table has it).
    spend, forecast: ``o``, ``week`` and ``amount`` (``demand``) of the optional flight tables.
    flights: ``flight_id``, ``flight_budget``, ``flight_start_week``, ``flight_end_week`` of the
        optional group flights table (``offers.flight_id`` names its rows).
    scores: ``c``, ``o``, ``p_redeem``, ``value``; ``None`` without a scores table, and when the
        table is read in batches instead (``scores_batches``, see :mod:`optimizer.io.scores_stream`).
    scores_batches: the parquet scores table opened for reading in batches, when asked for.
    offer_groups: ``group_id``, ``offer_id``, ``o``, ``max_per_customer`` of the optional
        ``offer_groups`` table (:mod:`optimizer.io.validate_rules`).
    funders: ``funded_by``, ``budget``, ``min_redemptions`` of the optional ``funders`` table.
    channels, customer_channels: the optional channel tables, the consent with the customer
        index ``c`` and channel index ``k`` (:mod:`optimizer.io.validate_channels`).
    customer_attributes: the extra ``customers`` columns asked for (``customer_columns``), one
        row per customer in index order, as stored.
    row_counts, sha256: per table as read from disk (for the manifest).
    dropped: rows left out by rule (unknown customer or product in transactions, ...).
    warnings: what the user should know about the inputs although they are valid (most of a
        history or redemptions table matching nothing).
    id_is_int: whether each ID kind (customer_id, product_id, offer_id) is integer-typed.
    scores_sorted: whether ``scores`` rows are already in (customer, offer) index order.
    scores_padded_ids: whether the ``scores`` table read whole stored a text ``customer_id``
        with surrounding spaces (read trimmed); see :attr:`scores_ids_trimmed`.
    """

    customers: pl.DataFrame
    products: pl.DataFrame
    offers: pl.DataFrame
    transactions: pl.DataFrame
    offer_products: pl.DataFrame | None
    restrictions: pl.DataFrame | None
    history: pl.DataFrame | None
    redemptions: pl.DataFrame | None
    scores: pl.DataFrame | None
    row_counts: dict[str, int] = field(default_factory=dict)
    sha256: dict[str, str] = field(default_factory=dict)
    dropped: dict[str, int] = field(default_factory=dict)
    warnings: list[str] = field(default_factory=list)
    id_is_int: dict[str, bool] = field(default_factory=dict)
    scores_sorted: bool = False
    scores_batches: TableBatches | None = None
    scores_padded_ids: bool = False
    # flights and pacing (optimizer/io/validate_flights.py): o, week, amount / demand
    spend: pl.DataFrame | None = None
    forecast: pl.DataFrame | None = None
    offer_groups: pl.DataFrame | None = None
    customer_attributes: pl.DataFrame | None = None
    funders: pl.DataFrame | None = None
    channels: pl.DataFrame | None = None
    customer_channels: pl.DataFrame | None = None
    flights: pl.DataFrame | None = None

    @property
    def has_scores(self) -> bool:
        """Whether the run is planned from a ``scores`` table (whole or in batches)."""
        return self.scores is not None or self.scores_batches is not None

    @property
    def scores_ids_trimmed(self) -> bool:
        """Whether some stored ``customer_id`` of the ``scores`` table had surrounding spaces
        that reading trimmed (a table read in batches: of the batches read so far). A reader of
        its rows by customer must then trim too, and cannot skip row groups by the statistics
        of the stored text (:func:`optimizer.io.load.read_table_rows`)."""
        return self.scores_padded_ids or (self.scores_batches is not None
                                          and self.scores_batches.padded_customer_ids)

    @property
    def n_customers(self) -> int:
        return self.customers.height

    @property
    def n_offers(self) -> int:
        return self.offers.height


def _evaluate(frame: pl.DataFrame, expr: pl.Expr) -> pl.Series:
    """``expr`` over ``frame`` through the lazy engine: an eager ``select`` first rechunks every
    column of a frame whose columns are chunked differently (a table read in row groups with an
    index column added), a copy of the whole table (1.5 GB at 50 M score rows)."""
    return frame.lazy().select(expr).collect().to_series()


def _fail_rows(table: str, column: str | None, frame: pl.DataFrame, bad: pl.Series | pl.Expr,
               problem: str) -> None:
    mask = _evaluate(frame, bad) if isinstance(bad, pl.Expr) else bad
    if not mask.any():  # the usual case: a scan of the mask, not a filter of every column
        return
    rows = frame.filter(mask)
    if rows.height:
        # samples show the user's columns, not the dense indices added here
        shown = rows.head(5).drop([c for c in INDEX_OF.values() if c in rows.columns])
        raise InputError(table, column, problem, sample=shown.rows(named=True),
                         count=rows.height)


def _require_not_null(table: str, frame: pl.DataFrame, columns: list[str]) -> None:
    for column in columns:
        if column not in frame.columns:
            continue
        series = frame.get_column(column)
        bad = series.is_null()
        if series.dtype == pl.Utf8:
            bad = bad | (series.str.strip_chars() == "")
        _fail_rows(table, column, frame, bad, "empty values are not allowed")


# MAX_AMOUNT: the largest magnitude of any number in an input table (docs/contract.md, "Values"):
# amounts this size still add up over billions of pairs without overflowing, and each offer's
# budget is kept in sums of its own scale (solvers/repair.py), so a huge amount cannot spoil
# another's budget


def _require_finite(table: str, frame: pl.DataFrame, columns: list[str]) -> None:
    """Numbers finite and at most :data:`MAX_AMOUNT` in absolute value."""
    for column in columns:
        if column not in frame.columns or not frame.get_column(column).dtype.is_numeric():
            continue
        series = frame.get_column(column)
        if series.dtype == pl.Float64:
            _fail_rows(table, column, frame, series.is_not_null() & ~series.is_finite(),
                       "numbers must be finite (NaN and infinity are not allowed)")
        _fail_rows(table, column, frame,
                   ~series.is_between(-MAX_AMOUNT, MAX_AMOUNT).fill_null(True),
                   f"numbers must be at most {MAX_AMOUNT:.0e} in absolute value (larger amounts "
                   "cannot be summed exactly enough to enforce budgets)")


def _require_unique(table: str, frame: pl.DataFrame, columns: list[str]) -> None:
    dup = frame.select(columns).is_duplicated()
    what = " and ".join(columns)
    _fail_rows(table, columns[-1], frame, dup, f"{what} must be unique; duplicates found")


def _require_unique_pairs(table: str, frame: pl.DataFrame, n_offers: int) -> bool:
    """A (customer, offer) pair at most once; returns whether the rows are already sorted by
    (customer, offer) index. One integer key per pair: far cheaper than hashing two columns when
    the table has tens of millions of rows, and a table written sorted needs no sort at all."""
    key = pl.col("c").cast(pl.Int64) * max(n_offers, 1) + pl.col("o").cast(pl.Int64)
    if frame.height < 2 or _evaluate(frame, (key.diff().slice(1) > 0).all()).item():
        return True
    keys = _evaluate(frame, key).to_numpy()
    ordered = np.sort(keys)
    repeated = ordered[1:][ordered[1:] == ordered[:-1]]
    if repeated.size:
        bad = np.isin(keys, repeated)
        _fail_rows(table, "offer_id", frame, pl.Series(bad),
                   "customer_id and offer_id must be unique; duplicates found")
    return False


def _range(table: str, frame: pl.DataFrame, column: str, bad: pl.Expr, rule: str) -> None:
    if column in frame.columns:
        _fail_rows(table, column, frame, bad.fill_null(False), f"values must be {rule}")


def _master(raw: RawTable, id_col: str, index: str) -> pl.DataFrame:
    frame = raw.frame
    ids = master_id_type(frame.get_column(id_col), raw.path.suffix == ".csv")
    frame = frame.with_columns(ids).with_row_index(index)
    # empty IDs: refused by check_rows, which load_inputs runs first (trimming empties none)
    _require_unique(raw.name, frame, [id_col])
    return frame.with_columns(pl.col(index).cast(pl.Int32))


_DENSE_SPAN = 2**24


def _dense_lookup(ids: pl.Series, master: pl.DataFrame, id_col: str, index: str
                  ) -> pl.Series | None:
    """The master index of integer ``ids`` through a direct table, when the master's IDs fill a
    range not much wider than their count (the usual case of surrogate keys); ``None`` otherwise.
    A gather per row instead of a hash join: the scores table has tens of millions of rows."""
    master_ids = master.get_column(id_col)
    if master_ids.len() == 0 or ids.null_count():
        return None
    low, high = int(master_ids.min()), int(master_ids.max())  # type: ignore[arg-type]
    # a table of up to 16 M entries (64 MB) is cheap next to a hash join of tens of millions of
    # rows (4 s for 40 M transactions against 5,000 products with IDs spread over 150,000)
    if high - low + 1 > max(4 * master_ids.len() + 1024, _DENSE_SPAN):
        return None
    span = high - low + 1
    table = np.full(span, -1, dtype=np.int32)
    table[master_ids.to_numpy() - low] = master.get_column(index).to_numpy()
    # one compiled pass: the polars expression took 2.7 s over a 50 M-row scores table
    found = np.empty(ids.len(), dtype=np.int32)
    # chunk by chunk, each a view: one array of a table read in row groups is a copy (1.6 s for
    # 50 M IDs on the development VM, where fresh pages are slow)
    pieces, start = [], 0
    for chunk in ids.get_chunks():
        values = chunk.to_numpy()
        pieces.append((values, start))
        start += values.shape[0]
    if len(pieces) == 1:  # two halves, one per thread
        values, half = pieces[0][0], pieces[0][0].shape[0] // 2
        pieces = [(values[:half], 0), (values[half:], half)]
    # on two threads (the kernel releases the GIL): 50 M IDs take about a second
    with ThreadPoolExecutor(2) as pool:
        parts = [pool.submit(_gather_ids, values, low, table,
                             found[lo:lo + values.shape[0]]) for values, lo in pieces]
        missing = sum(part.result() for part in parts)
    series = pl.Series(index, found)
    if missing:  # unknown IDs become nulls, reported by the caller
        series = pl.select(pl.when(series >= 0).then(series).otherwise(None).alias(index)
                           ).to_series()
    return series


@nb.njit(cache=True, nogil=True)
def _gather_ids(ids, low, table, out):  # pragma: no cover - compiled
    missing = 0
    for i in range(ids.shape[0]):
        offset = ids[i] - low
        out[i] = table[offset] if 0 <= offset < table.shape[0] else -1
        missing += out[i] < 0
    return missing


def _attach(frame: pl.DataFrame, id_col: str, master: pl.DataFrame) -> pl.DataFrame:
    """Add the master's index column for ``id_col`` (null where the ID is unknown)."""
    index = INDEX_OF[id_col]
    master_is_int = master.get_column(id_col).dtype == pl.Int64
    ids = unify_id_type(frame.get_column(id_col), master_is_int)
    if master_is_int:
        dense = _dense_lookup(ids, master, id_col, index)
        if dense is not None:
            return frame.with_columns(dense)
    keyed = frame.with_columns(ids.alias("__key"))
    lookup = master.select(pl.col(id_col).alias("__key"), pl.col(index))
    return keyed.join(lookup, on="__key", how="left", maintain_order="left").drop("__key")


def _references(table: str, frame: pl.DataFrame, id_col: str) -> None:
    index = INDEX_OF[id_col]
    master = ID_MASTER[id_col]
    if frame.get_column(index).null_count() == 0:
        return  # every ID found; no need to filter tens of millions of rows for none
    _fail_rows(table, id_col, frame, pl.col(index).is_null(),
               f"{id_col} not found in table '{master}'")


def check_rows(name: str, frame: pl.DataFrame) -> None:
    """The checks of table ``name``'s rows that need no other table (docs/contract.md, "Values"):
    IDs not empty; every number but IDs finite and within :data:`MAX_AMOUNT`; ``week`` (and a
    transaction's ``sales_value``) given; a transaction's ``sales_value`` and ``discount`` >= 0."""
    _require_not_null(name, frame, [c for c in frame.columns if c in INDEX_OF])
    _require_finite(name, frame, [c for c, kind in INPUT_TABLES[name].columns.items()
                                  if kind != ID])
    if name == "transactions":
        _require_not_null(name, frame, ["week", "sales_value"])
        _range(name, frame, "sales_value", pl.col("sales_value") < 0, ">= 0")
        _range(name, frame, "discount", pl.col("discount") < 0, ">= 0")
    elif name in ("history", "redemptions"):
        _require_not_null(name, frame, ["week"])


def read_checked(folder: Path, name: str, why: str = "") -> pl.DataFrame:
    """Table ``name`` read and its rows checked (:func:`check_rows`) outside load_inputs."""
    frame = read_required(folder, name, why).frame
    check_rows(name, frame)
    return frame


def load_inputs(folder: str | Path, stream_scores: bool = False,
                customer_columns: tuple[str, ...] = (), scores_url: str | None = None) -> Inputs:
    """Read and validate the input folder; raise :class:`InputError` on any breach of the contract.

    ``stream_scores``: a parquet ``scores`` table is opened for reading in batches
    (``Inputs.scores_batches``) instead of read whole; its rows are checked as they are read.
    ``customer_columns``: extra ``customers`` columns to read (``Inputs.customer_attributes``).
    ``scores_url``: the ``scores`` table at this fsspec URL (read whole), the data folder holding
    none."""
    folder = Path(folder)
    raw, batches = read_tables(folder, stream_scores, scores_url)
    for name, table in raw.items():
        check_rows(name, table.frame)

    customers = _master(raw["customers"], "customer_id", "c")
    if customers.height == 0:
        raise InputError("customers", "customer_id", "the table is empty; a plan needs customers")
    _range("customers", customers, "clv", pl.col("clv") < 0, ">= 0")

    products = _master(raw["products"], "product_id", "p")
    _require_not_null("products", products, ["category"])
    products = products.with_columns(normalize_category(pl.col("category")).alias("category"))

    from optimizer.io import validate_flights as flights  # builds on this module's checks

    offers = flights.validate_offer_flights(_validate_offers(_master(raw["offers"], "offer_id",
                                                                     "o")))

    dropped: dict[str, int] = {}
    transactions = _validate_transactions(raw["transactions"].frame, customers, products, dropped)

    from optimizer.io import validate_rules  # it imports this module
    offer_products = validate_rules.validate_offer_products(raw.get("offer_products"), offers,
                                                            products)
    restrictions = validate_rules.validate_restrictions(raw.get("restrictions"), customers)

    warnings: list[str] = []
    history = _validate_sends("history", raw.get("history"), customers, offers, dropped, warnings)
    redemptions = _validate_sends("redemptions", raw.get("redemptions"), customers, offers,
                                  dropped, warnings)

    weekly = {name: flights.validate_weekly(name, value, raw[name].frame, offers)
              for name, value in (("spend", "amount"), ("forecast", "demand")) if name in raw}

    scores, scores_sorted, scores_padded = None, False, False
    if "scores" in raw:
        scores_padded = padded_ids(raw["scores"].frame.get_column("customer_id"))
        scores = checked_scores(raw["scores"].frame, customers, offers, with_ids=True)
        scores_sorted = _require_unique_pairs("scores", scores, offers.height)
        # the ID columns are checked and never read again: drop them (0.8 GB at 50 M rows)
        scores = scores.lazy().select("c", "o", "p_redeem", "value").collect()
    offer_groups = validate_rules.validate_offer_groups(raw.get("offer_groups"), offers)
    attributes = validate_rules.read_customer_columns(folder, customer_columns, customers.height)
    funders = validate_rules.validate_funders(raw.get("funders"))
    group_flights, offers = flights.validate_flight_table(raw.get("flights"), offers, funders)
    from optimizer.io.validate_channels import validate_channels  # it imports this module
    channels, consent = validate_channels(raw.get("channels"), raw.get("customer_channels"),
                                          customers)
    row_counts = {name: t.frame.height for name, t in raw.items()}
    sha256 = {name: t.sha256 for name, t in raw.items()}
    if batches is not None:
        row_counts["scores"], sha256["scores"] = batches.rows, batches.sha256

    return Inputs(
        customers=customers, products=products, offers=offers, transactions=transactions,
        offer_products=offer_products, restrictions=restrictions, history=history,
        redemptions=redemptions, scores=scores,
        row_counts=row_counts, sha256=sha256, dropped=dropped, warnings=warnings,
        id_is_int={k: (customers if k == "customer_id" else products if k == "product_id"
                       else offers).get_column(k).dtype == pl.Int64 for k in INDEX_OF},
        scores_sorted=scores_sorted, scores_batches=batches, scores_padded_ids=scores_padded,
        spend=weekly.get("spend"), forecast=weekly.get("forecast"), offer_groups=offer_groups,
        customer_attributes=attributes, funders=funders, channels=channels,
        flights=group_flights, customer_channels=consent,
    )


def checked_scores(frame: pl.DataFrame, customers: pl.DataFrame, offers: pl.DataFrame,
                   with_ids: bool = False) -> pl.DataFrame:
    """The ``scores`` table's row checks, on the whole table or on one batch of its rows: known
    customers and offers, ``p_redeem`` in [0, 1], ``value`` >= 0, no empty or infinite number.
    Returns the rows with ``c`` and ``o``; ``with_ids`` keeps the ID columns too (the whole
    table, whose numbers :func:`load_inputs` checked with every table's). Uniqueness of pairs
    needs every row and is checked by the caller."""
    if not with_ids:  # a batch: the whole-table path checks every table's IDs in load_inputs
        _require_not_null("scores", frame, ["customer_id", "offer_id"])
    scores = _attach(_attach(frame, "customer_id", customers), "offer_id", offers)
    _references("scores", scores, "customer_id")
    _references("scores", scores, "offer_id")
    _require_not_null("scores", scores, ["p_redeem", "value"])
    if not with_ids:  # the whole table's numbers are checked with every table's in load_inputs
        _require_finite("scores", scores, ["p_redeem", "value"])
    _range("scores", scores, "p_redeem", (pl.col("p_redeem") < 0) | (pl.col("p_redeem") > 1),
           "between 0 and 1")
    _range("scores", scores, "value", pl.col("value") < 0, ">= 0")
    return scores if with_ids else scores.lazy().select("c", "o", "p_redeem", "value").collect()


def _validate_offers(offers: pl.DataFrame) -> pl.DataFrame:
    _require_not_null("offers", offers, ["discount"])
    _range("offers", offers, "discount", pl.col("discount") <= 0, "> 0 (cost of one redemption)")
    _range("offers", offers, "budget", pl.col("budget") < 0, ">= 0 or empty (no cap)")
    _range("offers", offers, "min_customers", pl.col("min_customers") < 0, ">= 0")
    _range("offers", offers, "max_customers", pl.col("max_customers") < 0, ">= 0")
    if {"start_week", "end_week"} <= set(offers.columns):
        _range("offers", offers, "end_week", pl.col("start_week") > pl.col("end_week"),
               ">= start_week")
    if {"min_customers", "max_customers"} <= set(offers.columns):
        _range("offers", offers, "max_customers", pl.col("min_customers") > pl.col("max_customers"),
               ">= min_customers")
    defaults: dict[str, pl.Expr] = {
        "category": pl.lit(None, pl.Utf8), "brand": pl.lit(None, pl.Utf8),
        "margin": pl.lit(0.0), "min_customers": pl.lit(None, pl.Int64),
        "max_customers": pl.lit(None, pl.Int64), "start_week": pl.lit(None, pl.Int64),
        "end_week": pl.lit(None, pl.Int64), "funded_by": pl.lit(None, pl.Utf8),
        "budget": pl.lit(None, pl.Float64),
    }
    offers = offers.with_columns([v.alias(k) for k, v in defaults.items() if k not in offers.columns])
    category = normalize_category(pl.col("category"))
    return offers.with_columns(
        pl.when(category == "").then(None).otherwise(category).alias("category"),
        pl.col("margin").fill_null(0.0),
    )


_TRANSACTION_COLUMNS = ("c", "p", "week", "sales_value", "date", "discount")


def _validate_transactions(frame: pl.DataFrame, customers: pl.DataFrame, products: pl.DataFrame,
                           dropped: dict[str, int]) -> pl.DataFrame:
    if "discount" in frame.columns:  # an empty discount cell: no discount on that line
        frame = frame.with_columns(pl.col("discount").fill_null(0.0))
    frame = _attach(_attach(frame, "customer_id", customers), "product_id", products)
    unknown_customer = frame.get_column("c").is_null()
    unknown_product = frame.get_column("p").is_null() & ~unknown_customer
    dropped["transactions_unknown_customer"] = int(unknown_customer.sum())
    dropped["transactions_unknown_product"] = int(unknown_product.sum())
    # only what the features read: the ID columns and quantity would be 24 bytes a line (1 GB
    # at 40 M lines) carried through the filter and every later stage
    frame = frame.select([c for c in _TRANSACTION_COLUMNS if c in frame.columns])
    if not (unknown_customer.any() or unknown_product.any()):
        return frame  # a filter that keeps every row still copies all of them
    return frame.filter(pl.col("c").is_not_null() & pl.col("p").is_not_null())


# above this share of a history or redemptions table's rows naming no known customer or offer,
# the run warns: rows of gone customers and offers are normal, most of the table is a mismatch
UNMATCHED_WARNING_SHARE = 0.5


def _unmatched_warning(name: str, frame: pl.DataFrame, known: pl.Series) -> str | None:
    """A warning when most of a ``history`` or ``redemptions`` table's rows match nothing (for
    example zero-padded text IDs against integer offers): their rules and models would silently
    lose those rows."""
    rows, unmatched = frame.height, int((~known).sum())
    if rows == 0 or unmatched / rows <= UNMATCHED_WARNING_SHARE:
        return None
    parts = []
    for id_col, index, master in (("customer_id", "c", "customers"), ("offer_id", "o", "offers")):
        missing = frame.filter(pl.col(index).is_null())
        if missing.height:
            sample = ", ".join(repr(v) for v in missing.get_column(id_col).unique(maintain_order=True)
                               .head(3).to_list())
            parts.append(f"{missing.height:,} name {id_col}s not in {master} (e.g. {sample})")
    rule = ("cooldowns and the frequency window do not see them" if name == "history"
            else "the models do not learn from them")
    return (f"table '{name}': {'all' if unmatched == rows else 'most'} of its rows "
            f"({unmatched:,} of {rows:,}) match no customer or offer and are left out, so {rule}: "
            f"{'; '.join(parts)}. IDs must equal the master tables' IDs (text such as '00123' "
            "is not the integer 123)")


def _validate_sends(name: str, table: RawTable | None, customers: pl.DataFrame,
                    offers: pl.DataFrame, dropped: dict[str, int], warnings: list[str]
                    ) -> pl.DataFrame | None:
    """History and redemptions may name customers and offers that are gone: those rows are
    dropped (counted in ``dropped``; a warning added to ``warnings`` when they are most rows)."""
    if table is None:
        return None
    frame = table.frame
    frame = _attach(_attach(frame, "customer_id", customers), "offer_id", offers)
    known = frame.get_column("c").is_not_null() & frame.get_column("o").is_not_null()
    dropped[f"{name}_unknown_customer_or_offer"] = int((~known).sum())
    warning = _unmatched_warning(name, frame, known)
    if warning:
        warnings.append(warning)
    # the rules and models read c, o and week only (flights a history's expected_cost): the ID
    # columns would be 16 bytes a row (1.2 GB of history at ten million customers)
    if "expected_cost" in frame.columns:
        from optimizer.io.validate_flights import validate_history_cost

        validate_history_cost(frame)
    frame = frame.select("c", "o", "week", *[c for c in ("expected_cost",) if c in frame.columns])
    return frame if known.all() else frame.filter(known)
