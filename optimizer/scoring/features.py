"""Customer and offer features, built once from the validated tables: the purchase lines with
polars and numpy, the customer side in one compiled pass over them
(:mod:`optimizer.scoring._feature_kernels`), the offer side as sparse incidence matrices.

Customer side (customer first): each customer's recency-decayed spend by category, brand and
product, as shares of her decayed spend, and her price sensitivity. A purchase of week ``w``
weighs ``0.5 ** ((week - w) / half_life_weeks)``; purchases of the planning week or later are left
out (they have not happened when the plan is made).

Privacy by design: spend in sensitive categories is left out of every denominator and of brand and
price-sensitivity features, so it can only raise the share of its own category and its own
products, i.e. the scores of offers in that same category; it never moves her scores elsewhere.

Offer side: every offer's categories (its own ``category`` plus those of its listed products,
normalised, primary first), brand, and product list, as incidence matrices.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import polars as pl
import scipy.sparse as sp

from optimizer.core.schemas import normalize_category, normalize_category_name
from optimizer.io.validate import Inputs
from optimizer.scoring._feature_kernels import customer_sums, sorted_by_customer_day


@dataclass(frozen=True)
class OfferCategories:
    """Every offer's categories: its own ``category`` plus those of its listed products."""

    pairs: pl.DataFrame  # columns o (Int32), category (Utf8): one row per (offer, category)
    names: list[str]  # category index -> normalised name
    table: np.ndarray  # (n_offers, width) category indices, -1 padded, primary first


def offer_categories(inputs: Inputs) -> OfferCategories:
    """Collect each offer's categories (normalised), primary first: its own ``category`` if set,
    else its products' most common category."""
    own = inputs.offers.filter(pl.col("category").is_not_null()).select(
        pl.col("o"), pl.col("category"), pl.lit(0).alias("rank"), pl.lit(0, pl.Int64).alias("n"))
    frames = [own]
    if inputs.offer_products is not None:
        listed = (inputs.offer_products.join(inputs.products.select("p", "category"), on="p")
                  .group_by(["o", "category"]).agg(pl.len().alias("n"))
                  .select(pl.col("o"), pl.col("category"), pl.lit(1).alias("rank"),
                          (-pl.col("n").cast(pl.Int64)).alias("n")))
        frames.append(listed)
    pairs = (pl.concat(frames, how="vertical_relaxed")
             .sort(["o", "rank", "n", "category"])
             .unique(["o", "category"], keep="first", maintain_order=True)
             .select(pl.col("o").cast(pl.Int32), "category"))
    names = sorted(pairs.get_column("category").unique().to_list())
    index = {name: i for i, name in enumerate(names)}
    cat_idx = pairs.get_column("category").replace_strict(index, return_dtype=pl.Int64).to_numpy()
    offer_idx = pairs.get_column("o").to_numpy().astype(np.int64)
    n_offers = inputs.n_offers
    counts = np.bincount(offer_idx, minlength=n_offers)
    width = max(1, int(counts.max()) if counts.size else 1)
    table = np.full((n_offers, width), -1, dtype=np.int64)
    starts = np.concatenate([[0], np.cumsum(counts)[:-1]])
    position = np.arange(offer_idx.size) - starts[offer_idx]
    table[offer_idx, position] = cat_idx
    return OfferCategories(pairs, names, table)


@dataclass(frozen=True)
class CustomerFeatures:
    """Per-customer behaviour, rows indexed by the customer index ``c``.

    category_share: ``(C, K)`` decayed spend per product category / decayed non-sensitive spend.
    brand_share: ``(C, B)`` decayed non-sensitive spend per brand / the same denominator.
    product_share: ``(C, P)`` decayed spend per product / the same denominator.
    discount_share: ``(C,)`` share of her decayed non-sensitive spend bought on discount.
    spend: ``(C,)`` undecayed non-sensitive spend over the history; weeks_observed: weeks the
    history spans.
    last_week: ``(C,)`` her last non-sensitive purchase week (``-1`` if none).
    categories, brands: names of the columns of the share matrices.
    visits: ``(C,)`` recency-decayed count of her distinct purchase days (weeks without ``date``).
    recency: ``(C,)`` ``0.5 ** ((week - last_week) / half_life)``, 0 without purchases.
    cadence_weeks: ``(C,)`` mean weeks between her purchase days (0 with fewer than two).
    tenure_weeks: ``(C,)`` weeks since her first purchase (0 without purchases).
    response: unused (kept for callers; the response history is :mod:`optimizer.scoring.response`).
    All of these use non-sensitive purchases and offers only (privacy by design).
    """

    category_share: sp.csr_matrix
    brand_share: sp.csr_matrix
    product_share: sp.csr_matrix
    discount_share: np.ndarray
    spend: np.ndarray
    weeks_observed: int
    last_week: np.ndarray
    categories: list[str]
    brands: list[str]
    visits: np.ndarray | None = None
    recency: np.ndarray | None = None
    cadence_weeks: np.ndarray | None = None
    tenure_weeks: np.ndarray | None = None
    response: np.ndarray | None = None
    week: int | None = None  # the features are as of this week (purchases before it)


@dataclass(frozen=True)
class PurchaseLines:
    """Every purchase line joined to its product, as compact numpy arrays sorted by customer and
    day (stably: lines of one day keep their input order, so sums never depend on threads).

    c, p: customer and product index; k: category index (``categories``); brand: brand index
    (``brands``, -1 = none); sensitive: a sensitive category's line; week; day: the date as days
    (``week * 7`` without one); sales, gross: ``sales_value`` and ``sales_value + discount``;
    discounted: bought on discount. dated: the transactions carry dates (a ``date`` column
    that is not all empty), so ``day`` is the line's own day.
    """

    c: np.ndarray
    p: np.ndarray
    k: np.ndarray
    brand: np.ndarray
    sensitive: np.ndarray
    week: np.ndarray
    day: np.ndarray
    sales: np.ndarray
    gross: np.ndarray
    discounted: np.ndarray
    categories: list[str]
    brands: list[str]
    dated: bool = False


def purchase_lines(inputs: Inputs, sensitive_categories: tuple[str, ...],
                   week: int | None = None) -> PurchaseLines:
    """``transactions`` (of weeks before ``week``, all if ``None``) with their products' category,
    brand and sensitivity (gathered by product index), as :class:`PurchaseLines`."""
    products = inputs.products
    categories = sorted(products.get_column("category").unique().to_list())
    cat_index = {name: i for i, name in enumerate(categories)}
    sensitive = [normalize_category_name(c) for c in sensitive_categories]
    brand_col = (normalize_category(pl.col("brand")) if "brand" in products.columns
                 else pl.lit(None, pl.Utf8))
    product_info = products.select(
        "p", pl.col("category").replace_strict(cat_index, return_dtype=pl.Int32).alias("k"),
        pl.col("category").is_in(sensitive).alias("sensitive"), brand_col.alias("brand"))
    brands = sorted(b for b in product_info.get_column("brand").unique().to_list() if b)
    brand_index = {name: i for i, name in enumerate(brands)}
    product_info = product_info.with_columns(
        pl.col("brand").replace_strict(brand_index, default=-1, return_dtype=pl.Int32))
    # the product side is looked up by index: a join of 40 M lines cost 2 s, these gathers 0.1 s
    p_index = product_info.get_column("p").to_numpy()
    by_product = {}
    for name in ("k", "brand", "sensitive"):
        column = product_info.get_column(name).to_numpy()
        by_product[name] = np.zeros(int(p_index.max(initial=-1)) + 1, dtype=column.dtype)
        by_product[name][p_index] = column
    tx = inputs.transactions
    discount = pl.col("discount").fill_null(0.0) if "discount" in tx.columns else pl.lit(0.0)
    day = (pl.col("date").cast(pl.Int64) if "date" in tx.columns
           else pl.col("week").cast(pl.Int64) * 7).fill_null(pl.col("week") * 7)
    frame = (tx.lazy().filter(pl.lit(True) if week is None else pl.col("week") < week)
             .select(pl.col("c").cast(pl.Int32), pl.col("p").cast(pl.Int32),
                     pl.col("week").cast(pl.Int32), day.cast(pl.Int32).alias("day"),
                     pl.col("sales_value").alias("sales"),
                     (pl.col("sales_value") + discount).alias("gross"),
                     (discount > 0).alias("discounted"))
             .collect())
    arrays = {name: frame.get_column(name).to_numpy() for name in frame.columns}
    arrays.update({name: values[arrays["p"]] for name, values in by_product.items()})
    if not sorted_by_customer_day(arrays["c"], arrays["day"]):  # tills usually write in order
        key = arrays["c"].astype(np.int64) * 2**32 + (arrays["day"].astype(np.int64) + 2**31)
        order = np.argsort(key, kind="stable")
        arrays = {name: values[order] for name, values in arrays.items()}
    dated = "date" in tx.columns and tx.get_column("date").null_count() < tx.height
    return PurchaseLines(**arrays, categories=categories, brands=brands, dated=dated)


def customer_features(inputs: Inputs, week: int, half_life_weeks: float,
                      sensitive_categories: tuple[str, ...],
                      lines: PurchaseLines | None = None,
                      customers: np.ndarray | None = None, threads: int = 1
                      ) -> CustomerFeatures:
    """Build :class:`CustomerFeatures` from ``inputs.transactions`` (see the module docstring);
    ``lines``: the :func:`purchase_lines` to reuse (any later weeks are left out here);
    ``customers``: a boolean mask of the customers to build (the others get empty features);
    ``threads``: threads over ranges of customers (the same features for any number)."""
    lines = lines or purchase_lines(inputs, sensitive_categories, week)
    keep = lines.week < week
    if customers is not None:
        keep &= customers[lines.c]
    sums = customer_sums(lines.c, lines.k, lines.brand, lines.p, lines.sensitive, lines.week,
                         lines.day, lines.sales, lines.discounted, keep, inputs.n_customers,
                         (len(lines.categories), len(lines.brands), inputs.products.height),
                         week, half_life_weeks, threads)
    denominator = sums.denominator
    discount_share = np.where(denominator > 0,
                              sums.discount_spend / np.maximum(denominator, 1e-300), 0)
    weeks_observed = int(week - sums.first_week) if sums.first_week is not None else 0
    behaviour = dict(sums.behaviour)
    return CustomerFeatures(sums.category_share, sums.brand_share, sums.product_share,
                            discount_share, sums.spend, weeks_observed,
                            behaviour.pop("last_week"), lines.categories, lines.brands,
                            **behaviour, week=week)
