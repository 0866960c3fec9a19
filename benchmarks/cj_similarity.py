"""Collaborative-filtering candidates on purchases for the feature diagnostic (``cj_features.py``,
benchmarks/README.md "Feature diagnostic"): does a coupon on products she never bought, but that
other households buy together with hers, deserve a higher rank?

Every table is built from the purchase lines before the planning week only (point in time), over
all households, for the coupons open at the week:

- ``item_cf``: item-item cosine on the household x product incidence (``co(q, p) / sqrt(b_q
  b_p)``, ``b`` = a product's buyers; a neighbour needs >= ``MIN_BUYERS`` buyers and >=
  ``MIN_CO`` co-buyers), the top ``K_ITEM`` neighbours of each coupon product summed over the
  coupon's products, the coupon's own products left out (her purchases of them are used up);
  pair feature = the similarity-weighted mean of her share of shopping weeks buying each
  neighbour.
- ``item_cf_any``: the same neighbours, weighted share of them she ever bought (binary).
- ``brand_weeks``: her share of shopping weeks buying each manufacturer, weighted by the share
  of the coupon's products of that manufacturer.
- ``user_knn``: household-household cosine on the incidence, her top ``K_USER`` neighbours;
  pair feature = their similarity-weighted share that bought any of the coupon's products.

``item_cf`` and ``brand_weeks`` have long right tails and are taken as ``log1p(x / median of
the positive x)``. Each feature is divided by its standard deviation over the rows (so the diagnostic's weights
of -1 to 1 mean the same for each); within a household only the order and spread matter.
"""
from __future__ import annotations

import numpy as np
import polars as pl
import scipy.sparse as sp

from optimizer.io.validate import Inputs

K_ITEM = 30
K_USER = 50
MIN_BUYERS = 5
MIN_CO = 3
CHUNK = 400


def _top_k_rows(dense: np.ndarray, k: int) -> sp.csr_matrix:
    """The ``k`` largest positive entries of each row of ``dense`` as a sparse matrix."""
    k = min(k, dense.shape[1])
    idx = np.argpartition(-dense, k - 1, axis=1)[:, :k]
    val = np.take_along_axis(dense, idx, axis=1)
    rows = np.repeat(np.arange(dense.shape[0]), k)
    keep = val.ravel() > 0
    return sp.csr_matrix((val.ravel()[keep], (rows[keep], idx.ravel()[keep])),
                         shape=dense.shape)


def _item_neighbours(binary: sp.csc_matrix, products: np.ndarray) -> sp.csr_matrix:
    """Rows ``products``: each one's top ``K_ITEM`` cosine neighbours among all products (itself
    left out), from co-purchase across households."""
    buyers = np.asarray(binary.sum(axis=0)).ravel()
    inv = np.where(buyers >= MIN_BUYERS, 1.0 / np.sqrt(np.maximum(buyers, 1)), 0.0)
    xt = binary.T.tocsr()
    parts = []
    for lo in range(0, products.size, CHUNK):  # chunks of products: bounded memory
        q = products[lo:lo + CHUNK]
        co = (xt[q] @ binary).toarray()
        co[co < MIN_CO] = 0.0
        sim = co * inv[None, :] / np.sqrt(np.maximum(buyers[q], 1))[:, None]
        sim[np.arange(q.size), q] = 0.0
        parts.append(_top_k_rows(sim, K_ITEM))
    return sp.vstack(parts).tocsr()


def similarity_candidates(inputs: Inputs, week: int, c: np.ndarray,
                          o: np.ndarray) -> dict[str, np.ndarray]:
    """The candidates of the module docstring for the rows ``(c, o)`` (``o`` open at ``week``)."""
    n, n_products = inputs.n_customers, inputs.products.height
    tx = inputs.transactions.filter(pl.col("week") < week).select("c", "p", "week")
    cp = tx.unique().group_by("c", "p").agg(pl.len().alias("weeks"))
    hc, hp = cp.get_column("c").to_numpy(), cp.get_column("p").to_numpy()
    weeks = sp.csr_matrix((cp.get_column("weeks").to_numpy().astype(float), (hc, hp)),
                          shape=(n, n_products))
    binary = sp.csr_matrix((np.ones(hc.size), (hc, hp)), shape=(n, n_products))
    shop = tx.group_by("c").agg(pl.col("week").n_unique().alias("n"))
    n_weeks = np.zeros(n)
    n_weeks[shop.get_column("c").to_numpy()] = shop.get_column("n").to_numpy()
    share = sp.diags(1.0 / np.maximum(n_weeks, 1)) @ weeks  # her share of weeks per product

    offers, o_idx = np.unique(o, return_inverse=True)
    op = inputs.offer_products.filter(pl.col("o").is_in(offers.tolist()))
    a = sp.csr_matrix((np.ones(op.height), (np.searchsorted(offers, op.get_column("o").to_numpy()),
                                            op.get_column("p").to_numpy())),
                      shape=(offers.size, n_products))
    a.data[:] = 1.0
    own = a.copy()

    products = np.unique(a.indices)
    nb = _item_neighbours(binary.tocsc(), products)
    lift = sp.csr_matrix((np.ones(products.size), (products, np.arange(products.size))),
                         shape=(n_products, products.size))
    neigh = (a @ lift @ nb).tocsr()  # coupon x product: summed neighbour similarity
    neigh = (neigh - neigh.multiply(own)).tocsr()  # her own products of the coupon: used up
    norm = 1.0 / np.maximum(np.asarray(neigh.sum(axis=1)).ravel(), 1e-12)
    item_cf = (share @ neigh.T).toarray() * norm[None, :]
    item_any = (binary @ neigh.T).toarray() * norm[None, :]

    brand_of = inputs.products.select("p", "brand").join(
        inputs.products.select("brand").unique().sort("brand").with_row_index("b"), on="brand")
    n_brands = int(brand_of.get_column("b").max()) + 1
    brands = sp.csr_matrix((np.ones(brand_of.height), (brand_of.get_column("p").to_numpy(),
                                                       brand_of.get_column("b").to_numpy())),
                           shape=(n_products, n_brands))
    coupon_brand = a @ brands
    coupon_brand = sp.diags(1.0 / np.maximum(np.asarray(coupon_brand.sum(axis=1)).ravel(), 1)) \
        @ coupon_brand
    cb = (tx.join(brand_of.select("p", "b"), on="p").select("c", "b", "week").unique()
          .group_by("c", "b").agg(pl.len().alias("weeks")))
    her_brand = sp.csr_matrix(
        (cb.get_column("weeks").to_numpy() / np.maximum(n_weeks[cb.get_column("c").to_numpy()], 1),
         (cb.get_column("c").to_numpy(), cb.get_column("b").to_numpy())),
        shape=(n, n_brands))
    brand_weeks = (her_brand @ coupon_brand.T).toarray()

    rows = sp.diags(1.0 / np.maximum(np.sqrt(np.asarray(binary.sum(axis=1)).ravel()), 1e-12)) \
        @ binary
    hh = (rows @ rows.T).toarray()
    np.fill_diagonal(hh, 0.0)
    knn = _top_k_rows(hh, K_USER)
    bought = ((binary @ a.T) > 0).astype(float)
    user_knn = (knn @ bought).toarray() / np.maximum(np.asarray(knn.sum(axis=1)), 1e-12)

    out = {}
    for name, full in (("item_cf", item_cf), ("item_cf_any", item_any),
                       ("brand_weeks", brand_weeks), ("user_knn", user_knn)):
        x = np.asarray(full)[c, o_idx]
        if name in ("item_cf", "brand_weeks"):  # long right tails: on a log scale
            x = np.log1p(x / max(float(np.median(x[x > 0])) if (x > 0).any() else 1.0, 1e-12))
        out[name] = x / max(float(x.std()), 1e-12)
    return out
