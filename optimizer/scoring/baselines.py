"""Honest baselines for the backtest and the real-data benchmark, all point in time (only rows of
weeks before ``week`` are read).

* ``buy_again``: her share of past shopping weeks with a purchase of the offer's own products
  (``offer_products``), then, to order what that leaves tied, of its categories:
  ``(product_share + TIE * category_share) / (1 + TIE)``, in ``[0, 1]``.
* ``popularity``: one ranking of the offers for everyone: its past redemptions, ties ordered by
  how many customers bought its products (its categories where it lists none) before ``week``.
* ``random``: seeded uniform scores.
* ``offer_first``: the habit customer-first replaces: each offer, on its own, picks its best
  customers by a score (the product's own ``p_redeem``) up to its quota
  (:func:`offer_quotas`), with no regard to what the other offers pick.

Every matrix is ``(n_customers, n_offers)`` sparse, built with polars group-bys (no loop over
customers or pairs).
"""
from __future__ import annotations

from typing import Callable

import numpy as np
import polars as pl
import scipy.sparse as sp

from optimizer.core.schemas import normalize_category
from optimizer.io.validate import Inputs
from optimizer.scoring.features import OfferCategories

TIE = 0.01  # weight of the category share in buy_again: it only orders ties of the product share


def _pair_weeks(lines: pl.DataFrame, links: pl.DataFrame, key: str, n: int, m: int
                ) -> sp.csr_matrix:
    """``(n, m)``: per customer and offer, the distinct weeks with a line linked to the offer
    through ``key`` (``links``: ``o`` and ``key``)."""
    if links.height == 0 or lines.height == 0:
        return sp.csr_matrix((n, m))
    counts = (lines.join(links, on=key).select("c", "o", "week").unique()
              .group_by("c", "o").agg(pl.len().alias("n")))
    return sp.csr_matrix((counts.get_column("n").to_numpy().astype(float),
                          (counts.get_column("c").to_numpy(), counts.get_column("o").to_numpy())),
                         shape=(n, m))


def shopping_weeks(inputs: Inputs, week: int) -> np.ndarray:
    """``(n_customers,)`` the number of distinct weeks before ``week`` with a purchase."""
    counts = (inputs.transactions.filter(pl.col("week") < week).group_by("c")
              .agg(pl.col("week").n_unique().alias("n")))
    out = np.zeros(inputs.n_customers)
    out[counts.get_column("c").to_numpy()] = counts.get_column("n").to_numpy()
    return out


def week_shares(inputs: Inputs, cats: OfferCategories, week: int
                ) -> tuple[sp.csr_matrix, sp.csr_matrix]:
    """Her share of shopping weeks before ``week`` with a purchase of the offer's own products,
    and of its categories: two ``(n_customers, n_offers)`` sparse matrices in ``[0, 1]``."""
    n, m = inputs.n_customers, inputs.n_offers
    lines = (inputs.transactions.filter(pl.col("week") < week)
             .select(pl.col("c").cast(pl.Int64), pl.col("p").cast(pl.Int64), "week").unique())
    op = (inputs.offer_products.select(pl.col("o").cast(pl.Int64), pl.col("p").cast(pl.Int64))
          if inputs.offer_products is not None else pl.DataFrame(schema={"o": pl.Int64,
                                                                          "p": pl.Int64}))
    product = _pair_weeks(lines, op, "p", n, m)
    product_category = inputs.products.select(pl.col("p").cast(pl.Int64),
                                              normalize_category(pl.col("category")))
    category_lines = (lines.join(product_category, on="p").select("c", "category", "week")
                      .unique())
    links = cats.pairs.select(pl.col("o").cast(pl.Int64), "category")
    category = _pair_weeks(category_lines, links, "category", n, m)
    inverse = sp.diags(1.0 / np.maximum(shopping_weeks(inputs, week), 1.0))
    return (inverse @ product).tocsr(), (inverse @ category).tocsr()


def buy_again(inputs: Inputs, cats: OfferCategories, week: int) -> sp.csr_matrix:
    """The ``buy_again`` score of every pair (module docstring)."""
    product, category = week_shares(inputs, cats, week)
    return ((product + TIE * category) / (1.0 + TIE)).tocsr()


def popularity(inputs: Inputs, cats: OfferCategories, week: int) -> np.ndarray:
    """``(n_offers,)`` in ``[0, 1]``, the same ranking for everyone (module docstring)."""
    m = inputs.n_offers
    redeemed = np.zeros(m)
    if inputs.redemptions is not None:
        o = inputs.redemptions.filter(pl.col("week") < week).get_column("o").to_numpy()
        redeemed = np.bincount(o, minlength=m).astype(float)
    product, category = week_shares(inputs, cats, week)
    buyers = np.where(np.diff(product.tocsc().indptr) > 0, np.diff(product.tocsc().indptr),
                      np.diff(category.tocsc().indptr) / max(inputs.n_customers, 1))
    key = redeemed + buyers / max(inputs.n_customers + 1, 1)
    return key / max(float(key.max(initial=0.0)), 1e-12)


def offer_quotas(max_customers: np.ndarray, eligible: np.ndarray, slots: int) -> np.ndarray:
    """Each eligible offer's quota for ``offer_first``: an equal share of the ``slots`` (the
    customers' caps summed), at most its ``max_customers`` (NaN = no cap); 0 when not eligible."""
    share = int(np.ceil(slots / max(int(eligible.sum()), 1)))
    cap = np.where(np.isnan(max_customers), share, max_customers)
    return np.where(eligible, np.minimum(share, cap), 0).astype(np.int64)


def offer_first(score_chunk: Callable[[int, int], np.ndarray], n_customers: int,
                quotas: np.ndarray, chunk_size: int) -> tuple[np.ndarray, np.ndarray]:
    """The ``(customer, offer)`` pairs ``offer_first`` picks: each offer ``j``'s ``quotas[j]``
    customers of highest score (``score_chunk(start, stop)``: ``(stop - start, n_offers)``, -inf
    where not allowed; ties: lower customer index first). Chunks keep each offer's best
    ``max(quotas)`` so far, vectorised over offers."""
    q = int(quotas.max(initial=0))
    m = quotas.size
    if q == 0 or n_customers == 0:
        return np.zeros(0, np.int64), np.zeros(0, np.int64)
    best_s = np.full((0, m), -np.inf)
    best_c = np.zeros((0, m), np.int64)
    for start in range(0, n_customers, chunk_size):
        stop = min(start + chunk_size, n_customers)
        s = np.concatenate([best_s, score_chunk(start, stop)])
        c = np.concatenate([best_c, np.broadcast_to(np.arange(start, stop)[:, None],
                                                    (stop - start, m))])
        order = np.lexsort((c, -s), axis=0)[:q]  # per offer: best score, then lower customer
        best_s, best_c = np.take_along_axis(s, order, 0), np.take_along_axis(c, order, 0)
    rank = np.arange(best_s.shape[0])[:, None]
    take = np.isfinite(best_s) & (rank < quotas[None, :])
    offer = np.broadcast_to(np.arange(m), best_s.shape)
    order = np.lexsort((offer[take], best_c[take]))
    return best_c[take][order], offer[take][order]
