"""Customer-first affinity: how likely each customer is to redeem each offer, and what it is worth.

Model (first version, documented in README "How offers are scored"). For customer i and offer j:

    a[i, j] = w_cat * sum_{k in cats(j)} category_share[i, k]
            + w_brand * brand_share[i, brand(j)]
            + w_product * sum_{p in products(j)} product_share[i, p]
    p_redeem[i, j] = (p_floor + (p_max - p_floor) * a / (a + h)) * (0.75 + 0.5 * discount_share[i])
    score[i, j] = p_redeem * max(margin_weight * margin[j] + redemption_value, 0) * clv_factor[i]

``a`` is her own behaviour (shares of her recency-decayed spend), ``h`` the half-saturation
affinity, and ``discount_share`` her price sensitivity (a deal-prone customer redeems more).
``fit`` learns nothing in this version beyond the offer incidence matrices; the fitted propensity
model of issue 5 will keep the same ``fit``/``score`` shape.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import polars as pl
import scipy.sparse as sp

from .config import Affinity, Objective
from .features import CustomerFeatures, OfferCategories
from .schemas import normalize_category
from .validate import Inputs


@dataclass
class AffinityModel:
    """Scores chunks of customers against every offer (see the module docstring)."""

    settings: Affinity
    objective: Objective

    def fit(self, inputs: Inputs, features: CustomerFeatures, cats: OfferCategories,
            clv_factor: np.ndarray) -> "AffinityModel":
        """Build the offer-side incidence matrices (fitted attributes end in ``_``)."""
        n_offers = inputs.n_offers
        k_index = {name: i for i, name in enumerate(features.categories)}
        pairs = cats.pairs.filter(pl.col("category").is_in(list(k_index)))
        rows = pairs.get_column("category").replace_strict(k_index, return_dtype=pl.Int64)
        self.offer_categories_ = sp.csr_matrix(
            (np.ones(pairs.height), (rows.to_numpy(), pairs.get_column("o").to_numpy())),
            shape=(len(features.categories), n_offers))
        b_index = {name: i for i, name in enumerate(features.brands)}
        offer_brand = (inputs.offers.select("o", normalize_category(pl.col("brand")).alias("b"))
                       .filter(pl.col("b").is_in(list(b_index))))
        self.offer_brands_ = sp.csr_matrix(
            (np.ones(offer_brand.height),
             (offer_brand.get_column("b").replace_strict(b_index, return_dtype=pl.Int64).to_numpy(),
              offer_brand.get_column("o").to_numpy())),
            shape=(features.brand_share.shape[1], n_offers))
        if inputs.offer_products is not None:
            op = inputs.offer_products
            self.offer_products_ = sp.csr_matrix(
                (np.ones(op.height), (op.get_column("p").to_numpy(), op.get_column("o").to_numpy())),
                shape=(inputs.products.height, n_offers))
        else:
            self.offer_products_ = sp.csr_matrix((inputs.products.height, n_offers))
        offers = inputs.offers
        worth = (self.objective.margin_weight * offers.get_column("margin").to_numpy()
                 + self.objective.redemption_value)
        self.redemption_worth_ = np.maximum(worth, 0.0)
        self.features_ = features
        self.clv_factor_ = clv_factor
        return self

    def affinity(self, start: int, stop: int) -> np.ndarray:
        """``(stop - start, n_offers)`` affinity ``a`` of customers ``start .. stop - 1``."""
        f, s = self.features_, self.settings
        rows = slice(start, stop)
        result = (f.category_share[rows] @ self.offer_categories_).toarray() * s.category_weight
        if s.brand_weight:
            result += (f.brand_share[rows] @ self.offer_brands_).toarray() * s.brand_weight
        if s.product_weight:
            result += (f.product_share[rows] @ self.offer_products_).toarray() * s.product_weight
        return result

    def score(self, start: int, stop: int) -> tuple[np.ndarray, np.ndarray]:
        """``p_redeem`` and ``score`` of customers ``start .. stop - 1`` against every offer."""
        s = self.settings
        a = self.affinity(start, stop)
        sensitivity = 0.75 + 0.5 * self.features_.discount_share[start:stop]
        p = (s.p_floor + (s.p_max - s.p_floor) * a / (a + s.half_saturation)) * sensitivity[:, None]
        p = np.clip(p, 0.0, 1.0)
        value = p * self.redemption_worth_[None, :] * self.clv_factor_[start:stop, None]
        return p, value
