"""Seeded generator of realistic synthetic input folders (``offeropt demo-data``).

The data imitate a grocery retailer's loyalty-card data: ~44 commodity categories with Zipf-like
popularity, a few thousand products with national and private-label brands, customers in life-stage
segments with heavy-tailed activity, their own category preferences, brand loyalty and price
sensitivity, a campaign history with a contact frequency that makes cooldown and frequency caps
bind, observed redemptions, restrictions (excludes and sensitive-category opt-ins) and offers with
budgets, targets, caps and eligibility windows.

Design:

* All randomness flows from one ``numpy.random.SeedSequence(seed)``: the catalogue and offers use
  one spawned child, and customer chunk ``k`` uses the ``k``-th child of another, so the same
  arguments always give byte-identical files and chunk ``k`` does not depend on how many chunks
  follow it. No global random state is used.
* Customers are generated in chunks of ``CHUNK_CUSTOMERS`` with vectorised numpy (no Python loop
  over customers or rows); each chunk becomes one Parquet row group (or is appended to the CSV),
  so memory stays bounded at any number of customers.
* Files are written under a temporary name and renamed into place together at the end, so an
  interrupted run (Ctrl-C or SIGTERM; held during the renames) leaves the previous tables untouched.

Calendar: week 1 starts on Monday 2024-01-01 (``WEEK1_START``); a transaction of week ``w`` is dated
``WEEK1_START + 7 * (w - 1) + day``, with weekend days more frequent.
"""
from __future__ import annotations

import datetime as _dt
from collections import deque
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path
from typing import Callable

import numpy as np
import polars as pl
import pyarrow as pa
import pyarrow.parquet as pq

from optimizer.apps.synthetic_size import checked_arguments
from optimizer.apps.synthetic_world import (  # noqa: F401 (re-exported)
    CATEGORIES,
    PRIVATE_LABEL,
    SEGMENTS,
    SENSITIVE_CATEGORIES,
    _Catalog,
    _customer_latents,
    _Offers,
)
from optimizer.core import numerics as nx
from optimizer.core.interrupt import deferred_interrupt
from optimizer.io.atomic import publish
from optimizer.io.runfolder import check_files_folder
from optimizer.io.stale import remove_input_tables

__all__ = ["write_demo_data", "check_demo_arguments", "CATEGORIES", "SENSITIVE_CATEGORIES", "WEEK1_START"]

CHUNK_CUSTOMERS = 100_000
WEEK1_START = _dt.date(2024, 1, 1)  # a Monday
_EPOCH = _dt.date(1970, 1, 1)
_COMPRESSION = "zstd"


# --------------------------------------------------------------------------------------------
# Output sinks
# --------------------------------------------------------------------------------------------
SCHEMAS = {
    "customers": pa.schema([("customer_id", pa.int64()), ("segment", pa.string())]),
    "transactions": pa.schema([("customer_id", pa.int64()), ("product_id", pa.int64()),
                               ("week", pa.int64()), ("sales_value", pa.float64()),
                               ("date", pa.date32()), ("quantity", pa.float64()),
                               ("discount", pa.float64())]),
    "restrictions": pa.schema([("customer_id", pa.int64()), ("category", pa.string()),
                               ("rule", pa.string())]),
    "history": pa.schema([("customer_id", pa.int64()), ("offer_id", pa.int64()),
                          ("week", pa.int64())]),
    "redemptions": pa.schema([("customer_id", pa.int64()), ("offer_id", pa.int64()),
                              ("week", pa.int64())]),
    "scores": pa.schema([("customer_id", pa.int64()), ("offer_id", pa.int64()),
                         ("p_redeem", pa.float64()), ("value", pa.float64())]),
}


class _Background:
    """One writer thread: compression and file output overlap with the next chunk's generation.

    Tasks run in submission order (one thread), so files are the same as with direct writes; at
    most ``max_pending`` tasks are queued, which bounds the memory held by tables in flight.
    """

    def __init__(self, max_pending: int = 8):
        self._pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="offeropt-demo-write")
        self._pending: deque[Future] = deque()
        self._max = max_pending

    def submit(self, fn, *args) -> None:
        while len(self._pending) >= self._max:
            self._pending.popleft().result()
        self._pending.append(self._pool.submit(fn, *args))

    def drain(self) -> None:
        while self._pending:
            self._pending.popleft().result()

    def shutdown(self) -> None:
        try:
            for f in self._pending:
                f.cancel()
        finally:
            self._pool.shutdown(wait=True)


class _Sink:
    """Appends chunks of one table to NAME.parquet (a row group each) or NAME.csv."""

    def __init__(self, out_dir: Path, name: str, schema: pa.Schema, file_format: str,
                 background: _Background | None = None):
        self.name, self.schema, self.fmt = name, schema, file_format
        self._bg = background
        self.final = out_dir / f"{name}.{file_format}"
        self.tmp = out_dir / f".{name}.{file_format}.tmp"
        self.rows = 0
        self._writer = None
        self._fh = None
        if file_format == "parquet":
            self._writer = pq.ParquetWriter(self.tmp, schema, compression=_COMPRESSION)
        else:
            self._fh = open(self.tmp, "wb")
            self._header = True

    def write(self, table: pa.Table) -> None:
        table = table.cast(self.schema) if table.schema != self.schema else table
        self.rows += table.num_rows
        if self._bg is not None:
            self._bg.submit(self._write, table)
        else:
            self._write(table)

    def _write(self, table: pa.Table) -> None:
        if self._writer is not None:
            if table.num_rows:
                self._writer.write_table(table, row_group_size=table.num_rows)
        else:
            if table.num_rows or self._header:
                _frame(table).write_csv(self._fh, include_header=self._header)
                self._header = False

    def close(self) -> None:
        if self._writer is not None:
            self._writer.close()
        else:
            if self._header:  # nothing written: header only
                _frame(self.schema.empty_table()).write_csv(self._fh, include_header=True)
            if self._fh is not None:
                self._fh.close()

    def commit(self) -> None:
        publish(self.tmp, self.final)

    def abort(self) -> None:
        try:
            self.close()
        except Exception:  # pragma: no cover - best effort cleanup
            pass
        self.tmp.unlink(missing_ok=True)


def _frame(table: pa.Table) -> pl.DataFrame:
    """``table`` as a polars frame (a table converts to a frame, never a series)."""
    frame = pl.from_arrow(table)
    assert isinstance(frame, pl.DataFrame)
    return frame


def _write_whole(out_dir: Path, name: str, table: pa.Table, file_format: str) -> _Sink:
    sink = _Sink(out_dir, name, table.schema, file_format)
    sink.write(table)
    sink.close()
    return sink


# --------------------------------------------------------------------------------------------
# Per-chunk generation
# --------------------------------------------------------------------------------------------
def _customers_chunk(ids: np.ndarray, lat: dict) -> pa.Table:
    return pa.table({"customer_id": pa.array(ids, pa.int64()),
                     "segment": pa.array(SEGMENTS).take(pa.array(lat["seg"]))})


def _transactions_chunk(rng: np.random.Generator, ids: np.ndarray, lat: dict, cat: _Catalog,
                        weeks: int, planning_week: int) -> pa.Table:
    n = len(ids)
    C = cat.C
    n_lines = rng.poisson(lat["mean_lines"])
    # lines per (customer, category); the most popular category goes last in the multinomial,
    # which gives the last column what rounding leaves over
    last_first = np.r_[1:C, 0]
    counts = np.empty((n, C), np.int64)
    counts[:, last_first] = rng.multinomial(n_lines, lat["pref"][:, last_first])
    flat = np.repeat(np.arange(n * C, dtype=np.int64), counts.ravel())
    cust = flat // C
    k = flat - cust * C
    L = len(flat)
    # brand: the customer's favourite with her loyalty probability, else by brand share
    loyal = rng.random(L) < lat["loyalty"][cust]
    group = np.where(loyal, lat["fav_group"][cust, k], cat.sample_group(k, rng.random(L)))
    # product within the brand: a few SKUs sell most
    u = rng.random(L)
    prod = cat.group_start[group] + (u * u * cat.group_size[group]).astype(np.int64)
    # weeks: most customers active all along, some lapsed (stop early), some new (start late)
    first_week = planning_week - weeks
    state = rng.random(n)
    a = np.zeros(n, np.int64)
    b = np.full(n, weeks - 1, np.int64)
    lapsed = state < 0.10
    new = (state >= 0.10) & (state < 0.18)
    b[lapsed] = rng.integers(0, weeks, int(lapsed.sum()))
    a[new] = rng.integers(0, weeks, int(new.sum()))
    span = b - a + 1
    week = first_week + a[cust] + (rng.random(L) * span[cust]).astype(np.int64)
    dow_w = np.array([0.11, 0.11, 0.12, 0.13, 0.16, 0.20, 0.17])
    dow = np.searchsorted(np.cumsum(dow_w), rng.random(L) * 0.999999).astype(np.int64)
    day0 = (WEEK1_START - _EPOCH).days
    date = day0 + (week - 1) * 7 + dow
    # order each customer's lines by day
    if L:
        key = cust * (7 * weeks + 7) + (date - date.min())
        if n * (7 * weeks + 7) < 2**31:
            key = key.astype(np.int32)
        order = np.argsort(key, kind="stable")
    else:
        order = np.zeros(0, np.int64)
    cust, prod, week, date = cust[order], prod[order], week[order], date[order]

    quantity = 1.0 + rng.poisson(0.3, L)
    full = cat.prod_price[prod] * quantity * rng.uniform(0.95, 1.05, L)
    on_disc = rng.random(L) < lat["price_sens"][cust]
    disc = np.round(np.where(on_disc, full * rng.uniform(0.1, 0.4, L), 0.0), 2)
    full = np.round(full, 2)
    sales = np.maximum(np.round(full - disc, 2), 0.0)
    pid = cat.prod_id[prod]
    # a product master lags the tills: ~0.01% of lines name a product not (yet) in products
    n_unknown = int(rng.binomial(L, 1e-4)) if L else 0
    if n_unknown:
        pid[rng.integers(0, L, n_unknown)] = cat.max_product_id + 1 + rng.integers(0, 500, n_unknown)
    return pa.table({
        "customer_id": pa.array(ids[cust], pa.int64()),
        "product_id": pa.array(pid, pa.int64()),
        "week": pa.array(week, pa.int64()),
        "sales_value": pa.array(sales, pa.float64()),
        "date": pa.array(date.astype(np.int32), pa.int32()).cast(pa.date32()),
        "quantity": pa.array(quantity, pa.float64()),
        "discount": pa.array(disc, pa.float64()),
    })


def _restrictions_chunk(rng: np.random.Generator, ids: np.ndarray, lat: dict,
                        cat: _Catalog) -> pa.Table:
    n = len(ids)
    cust_parts, cat_parts, rule_parts = [], [], []

    def add(mask, k, rule):
        idx = np.flatnonzero(mask)
        cust_parts.append(idx)
        cat_parts.append(np.broadcast_to(np.asarray(k), idx.shape)[...] if np.ndim(k) == 0
                         else k[idx])
        rule_parts.append(np.full(len(idx), rule))

    add(lat["ex_pork"], cat.index["PORK"], 0)
    add(lat["ex_beer"], cat.index["BEERS/ALES"], 0)
    add(lat["ex_other"], lat["ex_other_cat"], 0)
    for name in SENSITIVE_CATEGORIES:  # consent, far more likely from the category's buyers
        p = np.where(lat["buyers"][name], 0.35, 0.015)
        add(rng.random(n) < p, cat.index[name], 1)
    cust = np.concatenate(cust_parts)
    k = np.concatenate(cat_parts).astype(np.int64)
    rule = np.concatenate(rule_parts)
    order = np.lexsort((rule, k, cust))
    cust, k, rule = cust[order], k[order], rule[order]
    # spelling variants (names compare trimmed and case-insensitively): ~15% of rows
    variant = np.where(rng.random(len(k)) < 0.15, rng.integers(1, 5, len(k)), 0)
    spell = []
    for name in cat.names:
        spell += [name, name.lower(), name.title(), f" {name.title()} ", f"{name.lower()} "]
    names = pa.array(spell).take(pa.array(k * 5 + variant))
    return pa.table({"customer_id": pa.array(ids[cust], pa.int64()), "category": names,
                     "rule": pa.array(["exclude", "opt_in"]).take(pa.array(rule))})


def _history_chunk(rng: np.random.Generator, ids: np.ndarray, lat: dict, offers: _Offers,
                   planning_week: int) -> tuple[pa.Table, pa.Table]:
    n = len(ids)
    H = 6
    M = offers.M
    # 85% of customers receive campaigns; each such customer is contacted in a week with her own
    # probability q and then gets 2..6 offers (her usual number +-1)
    contactable = rng.random(n) < 0.85
    q = rng.beta(2.0, 3.0, n) * contactable
    usual = 2 + rng.binomial(4, 0.4, n)
    sent = rng.random((n, H)) < q[:, None]
    k = np.clip(usual[:, None] + rng.integers(-1, 2, (n, H)), 2, 6) * sent
    flat = np.repeat(np.arange(n * H, dtype=np.int64), k.ravel())
    cust = flat // H
    wk = flat - cust * H
    R = len(flat)
    # offers picked by campaign use (appeal), ~0.5% of rows are offers since retired
    w = offers.appeal * np.where(offers.active, 1.0, 0.5)
    cum = np.cumsum(w / w.sum())
    cum[-1] = 1.0
    oi = np.searchsorted(cum, rng.random(R), side="right")
    oi = np.minimum(oi, M - 1)
    G = len(offers.ghost_ids)
    ghost = rng.random(R) < 0.005
    oi = np.where(ghost, M + rng.integers(0, G, R), oi)
    key = np.sort((cust * H + wk) * (M + G) + oi)  # one send per (customer, week, offer)
    if len(key):
        key = key[np.r_[True, key[1:] != key[:-1]]]
    oi = key % (M + G)
    cw = key // (M + G)
    cust = cw // H
    wk = cw - cust * H
    all_ids = np.concatenate([offers.ids, offers.ghost_ids])
    week = planning_week - H + wk
    hist = pa.table({"customer_id": pa.array(ids[cust], pa.int64()),
                     "offer_id": pa.array(all_ids[oi], pa.int64()),
                     "week": pa.array(week, pa.int64())})
    # redemptions: ~8% of sends, more likely where the customer likes the offer's category
    prim = np.concatenate([offers.primary, np.zeros(G, np.int64)])
    aff = np.where(oi < M, lat["pref"][cust, prim[oi]] * len(lat["pref"][0]), 1.0)
    r = 0.3 + np.minimum(aff, 6.0)
    p = np.minimum(0.08 * r / max(float(r.mean()) if len(r) else 1.0, 1e-9), 0.9)
    red = rng.random(len(p)) < p
    redm = pa.table({"customer_id": pa.array(ids[cust[red]], pa.int64()),
                     "offer_id": pa.array(all_ids[oi[red]], pa.int64()),
                     "week": pa.array(week[red], pa.int64())})
    return hist, redm


def _scores_chunk(rng: np.random.Generator, ids: np.ndarray, lat: dict, offers: _Offers,
                  K: int) -> pa.Table:
    n = len(ids)
    M = offers.M
    C = lat["pref"].shape[1]
    block = max(1, min(n, 2_000_000 // M))
    parts = []
    for s in range(0, n, block):  # bounded memory: block x M keys at a time
        e = min(n, s + block)
        rel = lat["pref"][s:e][:, offers.primary] * C  # (b, M) affinity relative to uniform
        w = (rel + 0.1) * offers.appeal[None, :]
        if K < M:  # K distinct offers drawn by weight (Efraimidis-Spirakis: smallest Exp/w)
            keys = rng.standard_exponential(w.shape) / w
            pick = np.argpartition(keys, K - 1, axis=1)[:, :K]
            pick.sort(axis=1)
        else:
            pick = np.broadcast_to(np.arange(M), (e - s, M))
        rows = np.arange(e - s)[:, None]
        r = np.minimum(rel[rows, pick], 3.0).ravel()
        p = np.clip(rng.beta(1.6, 18.4, r.shape) * (0.45 + 0.25 * r), 0.0, 1.0)
        vf = np.repeat(lat["value_factor"][s:e], K)
        value = p * offers.margin[pick.ravel()] * vf
        parts.append(pa.table({
            "customer_id": pa.array(np.repeat(ids[s:e], K), pa.int64()),
            "offer_id": pa.array(offers.ids[pick.ravel()], pa.int64()),
            "p_redeem": pa.array(p, pa.float64()),
            "value": pa.array(value, pa.float64()),
        }))
    return pa.concat_tables(parts) if parts else SCHEMAS["scores"].empty_table()


def _write_chunk(sinks: dict[str, _Sink], ss: np.random.SeedSequence, ids: np.ndarray,
                 cat: _Catalog, off: _Offers, weeks: int, planning_week: int, K: int | None
                 ) -> None:
    """One chunk of customers ``ids``, every table's rows of them, from the chunk's own seed
    ``ss`` (so a chunk does not depend on the chunks after it)."""
    s_lat, s_tx, s_res, s_hist, s_sc = ss.spawn(5)
    lat = _customer_latents(np.random.default_rng(s_lat), ids.size, cat, weeks)
    sinks["customers"].write(_customers_chunk(ids, lat))
    if K is None:
        sinks["transactions"].write(_transactions_chunk(
            np.random.default_rng(s_tx), ids, lat, cat, weeks, planning_week))
    else:
        sinks["scores"].write(_scores_chunk(np.random.default_rng(s_sc), ids, lat, off, K))
    sinks["restrictions"].write(_restrictions_chunk(np.random.default_rng(s_res), ids, lat,
                                                    cat))
    hist, redm = _history_chunk(np.random.default_rng(s_hist), ids, lat, off, planning_week)
    sinks["history"].write(hist)
    sinks["redemptions"].write(redm)


def _commit(out_dir: Path, sinks: list[_Sink]) -> None:
    """Rename every table into place, held together against Ctrl-C/SIGTERM. Every other form of
    an input table in ``out_dir`` (:func:`optimizer.io.load.table_forms`: the other format's
    copy or a folder of Parquet parts of a table written now, and any form of an input table not
    written, such as a stale ``scores``, ``offer_groups``, ``funders``, ``channels`` or a
    ``transactions/`` folder of parts) would be read instead of or besides the new tables: each
    is removed first (:func:`optimizer.io.stale.remove_input_tables`), so the folder plans as
    the tables written now."""
    with deferred_interrupt():
        remove_input_tables(out_dir, keep={s.final for s in sinks})
        for s in sinks:
            s.commit()


# --------------------------------------------------------------------------------------------
# Public API
# --------------------------------------------------------------------------------------------
def check_demo_arguments(customers: int, offers: int, seed: int = 0, *,
                         scores_per_customer: int | None = None, weeks: int = 26,
                         planning_week: int = 40, file_format: str = "parquet",
                         out_dir: Path | None = None) -> None:
    """Raise ``ValueError`` naming the first bad argument of :func:`write_demo_data` (the same
    checks it makes before writing anything), so a caller can report it as a usage error."""
    checked_arguments(customers, offers, scores_per_customer, weeks, planning_week, file_format,
                      seed, CHUNK_CUSTOMERS, out_dir)


def write_demo_data(out_dir: Path, customers: int, offers: int, seed: int = 0, *,
                    scores_per_customer: int | None = None, weeks: int = 26,
                    planning_week: int = 40, file_format: str = "parquet",
                    progress: Callable[[str], None] | None = None) -> dict[str, int]:
    """Write a realistic, deterministic synthetic input folder and return each table's row count.

    Writes ``customers, transactions, products, offers, offer_products, restrictions, history,
    redemptions`` (and ``scores`` when ``scores_per_customer`` is given: exactly that many distinct
    offers per customer; ``transactions`` is then written empty, with its columns) as
    ``NAME.parquet`` or ``NAME.csv`` into ``out_dir`` (created if needed). Tables already there
    under the same names are replaced, in any form the reader reads (either format, or a folder
    of Parquet parts), and every form of every other input table (a stale ``scores``, which would
    replace the affinity scoring, ``offer_groups``, ``funders``, ``channels``...) is removed:
    the folder plans as the tables written now (:mod:`optimizer.io.stale`). Transactions
    cover weeks ``planning_week - weeks .. planning_week - 1``, history and redemptions the six
    weeks before ``planning_week``. The same arguments give byte-identical files.
    """
    N, M, K, weeks, planning_week = checked_arguments(
        customers, offers, scores_per_customer, weeks, planning_week, file_format, seed,
        CHUNK_CUSTOMERS, out_dir)
    report = progress or (lambda _msg: None)

    out_dir = Path(out_dir)
    # not in a run's (sweep's, ...) folder: its tables would replace the run's customers.parquet,
    # and the next run into that folder would delete them (ScenarioError, exit 2, nothing written)
    check_files_folder(out_dir, "OUT_DIR")
    out_dir.mkdir(parents=True, exist_ok=True)
    root = np.random.SeedSequence(int(seed))
    ss_static, ss_sample, ss_chunks = root.spawn(3)
    rng = np.random.default_rng(ss_static)

    n_products = max(2000, 10 * M)
    cat = _Catalog(rng, n_products)
    # expected number of buyers per category, from a sample of customers (sizes the budgets)
    n_sample = min(N, 20_000)
    sample = _customer_latents(np.random.default_rng(ss_sample), n_sample, cat, weeks)
    p_buy = 1.0 - nx.exp(-sample["mean_lines"][:, None] * sample["pref"])
    buyers = p_buy.mean(axis=0) * N
    off = _Offers(rng, M, N, cat, buyers, planning_week)
    report(f"catalogue: {cat.P} products in {cat.C} categories, {M} offers")

    sinks: list[_Sink] = []
    background = _Background()
    names = ["customers", "transactions", "restrictions", "history", "redemptions"]
    if K is not None:
        names.append("scores")
    try:
        sinks.append(_write_whole(out_dir, "products", cat.products_table(), file_format))
        sinks.append(_write_whole(out_dir, "offers", off.offers_table(), file_format))
        sinks.append(_write_whole(out_dir, "offer_products", off.offer_products_table(cat),
                                  file_format))
        chunk_sinks = {nm: _Sink(out_dir, nm, SCHEMAS[nm], file_format, background)
                       for nm in names}
        sinks += list(chunk_sinks.values())
        n_chunks = -(-N // CHUNK_CUSTOMERS)
        for c, ss in enumerate(ss_chunks.spawn(n_chunks)):
            lo, hi = c * CHUNK_CUSTOMERS, min(N, (c + 1) * CHUNK_CUSTOMERS)
            _write_chunk(chunk_sinks, ss, np.arange(lo + 1, hi + 1, dtype=np.int64), cat, off,
                         weeks, planning_week, K)
            report(f"customers {hi:,}/{N:,}")
        background.drain()
        for s in chunk_sinks.values():
            s.close()
    except BaseException:
        background.shutdown()
        for s in sinks:
            s.abort()
        # a sink interrupted while it was being made is not in ``sinks``: its file goes too
        for nm in ["products", "offers", "offer_products", *names]:
            (out_dir / f".{nm}.{file_format}.tmp").unlink(missing_ok=True)
        raise
    background.shutdown()
    _commit(out_dir, sinks)
    counts = {s.name: s.rows for s in sinks}
    report("done: " + ", ".join(f"{k}={v:,}" for k, v in counts.items()))
    return counts
