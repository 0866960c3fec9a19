"""Customer-first affinity: how likely each customer is to redeem each offer, and what it is worth.

For customer i and offer j the affinity components are her own behaviour (shares of her
recency-decayed spend, see :mod:`optimizer.scoring.features`):

    category[i, j] = sum_{k in cats(j)} category_share[i, k]
    brand[i, j]    = brand_share[i, brand(j)]
    product[i, j]  = sum_{p in products(j)} product_share[i, p]

``p_redeem`` comes from the fitted :class:`~optimizer.scoring.propensity.Propensity` model when one is
given (``affinity.model = "fitted"``, or the default ``"repurchase"``, whose terms
:func:`optimizer.scoring.repurchase.as_affinity` puts into these same slots), else from the first,
unfitted formula
(``"heuristic"``, and the stated fallback when no propensity can be fitted):

    a = w_cat * category + w_brand * brand + w_product * product
    p_redeem = (p_floor + (p_max - p_floor) * a / (a + h)) * (0.75 + 0.5 * discount_share[i])

and the score the solver maximises is

    score[i, j] = p_redeem * max(margin_weight * margin[j] + redemption_value
                                 - discount_weight * discount[j], 0) * clv_factor[i]

When the default model's held-out check switches to the formula
(:mod:`optimizer.scoring.repurchase_fit`), its ``p_redeem`` is calibrated on the training sends by
Platt scaling (``platt_ = (A, B)``: ``1 / (1 + exp(-(A + B * logit(p_redeem))))``,
:func:`optimizer.scoring._pair_kernels.platt`), so that budgets and expected redemptions price
sends at rates seen in the data; the ranking within a customer's offers is the formula's.

``score`` works on chunks of customers against every offer: dense ``(chunk, n_offers)`` arrays,
no loops over customers.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import polars as pl
import scipy.sparse as sp

from optimizer.core.config import Affinity, Objective
from optimizer.core.schemas import normalize_category
from optimizer.io.validate import Inputs
from optimizer.scoring._pair_kernels import Selection, csr_arrays, platt_array, score_select
from optimizer.scoring.features import (
    CustomerFeatures,
    OfferCategories,
    PurchaseLines,
    purchase_lines,
)
from optimizer.scoring.propensity import Propensity, design
from optimizer.scoring.response import ResponseHistory


@dataclass
class AffinityModel:
    """Scores chunks of customers against every offer (see the module docstring)."""

    settings: Affinity
    objective: Objective

    def fit(self, inputs: Inputs, features: CustomerFeatures, cats: OfferCategories,
            clv_factor: np.ndarray, propensity: Propensity | None = None,
            history: ResponseHistory | None = None, lines: PurchaseLines | None = None
            ) -> "AffinityModel":
        """Build the offer-side incidence matrices and depths (fitted attributes end in ``_``);
        ``propensity``: the fitted redemption model (``None``: the heuristic formula);
        ``history``: the response history as of the planning week (``None``: none);
        ``lines``: the :func:`~optimizer.scoring.features.purchase_lines` to reuse for offer prices."""
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
        discount = offers.get_column("discount").to_numpy()
        worth = (self.objective.margin_weight * offers.get_column("margin").to_numpy()
                 + self.objective.redemption_value - self.objective.discount_weight * discount)
        self.redemption_worth_ = np.maximum(worth, 0.0)
        self.depth_ = discount / self._offer_price(inputs, features, lines)
        self.features_ = features
        self.clv_factor_ = clv_factor
        self.propensity_ = propensity
        self.history_ = history
        self.platt_: tuple[float, float] | None = None  # the formula's calibration, when set
        f = features
        self.customer_ = {"discount_share": f.discount_share,
                          **{k: (getattr(f, k) if getattr(f, k) is not None
                                 else np.zeros(inputs.n_customers))
                             for k in ("recency", "visits", "tenure_weeks")}}
        return self

    def _offer_price(self, inputs: Inputs, features: CustomerFeatures,
                     lines: PurchaseLines | None) -> np.ndarray:
        """Average gross line value (sales + discount) over each offer's categories (1 if none),
        from the purchases before the features' week only."""
        if lines is None or lines.categories != features.categories:
            lines = purchase_lines(inputs, (), features.week)
        k, gross = lines.k, lines.gross
        if features.week is not None and lines.week.size and lines.week.max() >= features.week:
            keep = lines.week < features.week
            k, gross = k[keep], gross[keep]
        n_k = len(features.categories)
        # bincount adds in row order: the same prices on every run
        total = np.bincount(k, weights=gross, minlength=n_k)
        price = total / np.maximum(np.bincount(k, minlength=n_k), 1)
        counts = np.asarray(self.offer_categories_.sum(axis=0)).ravel()
        mean = (self.offer_categories_.T @ price) / np.maximum(counts, 1)
        return np.where(mean > 0, mean, 1.0)

    def pair_columns(self, c: np.ndarray, o: np.ndarray, history: ResponseHistory | None = None
                     ) -> list[np.ndarray]:
        """Propensity feature columns of the pairs (``c[n]``, ``o[n]``), for fitting, with the
        response ``history`` as of the week they were sent (default: the model's own)."""
        history = history if history is not None else self.history_
        return design(*self.pair_components(c, o),
                      {k: v[c] for k, v in self.customer_.items()}, self.depth_[o],
                      history.pair_values(c, o, self.offer_categories_)
                      if history is not None else None)

    def pair_components(self, c: np.ndarray, o: np.ndarray,
                        features: CustomerFeatures | None = None
                        ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Category, brand and product affinities of the pairs (``c[n]``, ``o[n]``): the entries
        of :meth:`components`, from ``features`` (default: the model's own)."""
        f = features if features is not None else self.features_

        def rowdot(share: sp.csr_matrix, incidence: sp.csr_matrix) -> np.ndarray:
            return np.asarray(share[c].multiply(incidence.T.tocsr()[o]).sum(axis=1)).ravel()
        return (rowdot(f.category_share, self.offer_categories_),
                rowdot(f.brand_share, self.offer_brands_),
                rowdot(f.product_share, self.offer_products_))

    def heuristic_pairs(self, c: np.ndarray, o: np.ndarray,
                        features: CustomerFeatures | None = None) -> np.ndarray:
        """The heuristic formula's ``p_redeem`` of the pairs (``c[n]``, ``o[n]``) from
        ``features`` (default: the model's own; customer features as of an earlier week score
        the pairs as a plan of that week would): what :meth:`p_redeem` gives without a
        propensity and before any calibration (``platt_``), pair by pair."""
        f = features if features is not None else self.features_
        return self._formula(self._weighted(*self.pair_components(c, o, f)),
                             f.discount_share[c])

    def _weighted(self, cat: np.ndarray, brand: np.ndarray, product: np.ndarray) -> np.ndarray:
        s = self.settings
        return cat * s.category_weight + brand * s.brand_weight + product * s.product_weight

    def _formula(self, a: np.ndarray, discount_share: np.ndarray) -> np.ndarray:
        """``p_redeem`` of the heuristic formula (module docstring) from the affinity ``a`` and
        her ``discount_share`` (broadcast against ``a``)."""
        s = self.settings
        sensitivity = 0.75 + 0.5 * discount_share
        p = (s.p_floor + (s.p_max - s.p_floor) * a / (a + s.half_saturation)) * sensitivity
        return np.clip(p, 0.0, 1.0)

    def components(self, start: int, stop: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Dense ``(stop - start, n_offers)`` category, brand and product affinities."""
        f = self.features_
        rows = slice(start, stop)
        return ((f.category_share[rows] @ self.offer_categories_).toarray(),
                (f.brand_share[rows] @ self.offer_brands_).toarray(),
                (f.product_share[rows] @ self.offer_products_).toarray())

    def affinity(self, start: int, stop: int) -> np.ndarray:
        """``(stop - start, n_offers)`` heuristic affinity ``a`` of customers ``start .. stop - 1``."""
        return self._weighted(*self.components(start, stop))

    def p_redeem(self, start: int, stop: int) -> np.ndarray:
        """``(stop - start, n_offers)`` redemption probabilities."""
        if self.propensity_ is not None:
            cat, brand, product = self.components(start, stop)
            customer = {k: v[start:stop] for k, v in self.customer_.items()}
            history = (self.history_.block_values(start, stop, self.offer_categories_)
                       if self.history_ is not None else None)
            if history is not None:
                history = {**history, "response": history["response"].ravel(),
                           "offer_lift": history["offer_lift"].ravel()}
            return self.propensity_.predict_block(cat, brand, product, customer, self.depth_,
                                                  history)
        p = self._formula(self.affinity(start, stop),
                          self.features_.discount_share[start:stop, None])
        if self.platt_ is None:
            return p
        return platt_array(np.ascontiguousarray(p).ravel(), *self.platt_).reshape(p.shape)

    def kernel_arrays(self, rows: np.ndarray) -> dict[str, Any]:
        """What :func:`~optimizer.scoring._pair_kernels.score_select` needs to score customers ``rows``
        (the model's sparse matrices as they are stored, and the rows' own terms)."""
        f = self.features_
        shared = self.__dict__.get("_kernel_shared")
        if shared is None:  # once per model (the first call is made before any thread starts)
            h = self.history_
            empty = (np.zeros(1, dtype=np.int32), np.zeros(0, dtype=np.int32), np.zeros(0))
            history = ([csr_arrays(m) for m in (h.redeemed, h.sent, h.category_redeemed,
                                                  h.category_sent)]
                       if h is not None else [empty] * 4)
            shared = {"csr": (csr_arrays(f.category_share), csr_arrays(self.offer_categories_),
                              csr_arrays(f.brand_share), csr_arrays(self.offer_brands_),
                              csr_arrays(f.product_share), csr_arrays(self.offer_products_),
                              *history, csr_arrays(self.offer_categories_))}
            self.__dict__["_kernel_shared"] = shared
        s = self.settings
        n, m = rows.shape[0], self.redemption_worth_.shape[0]
        ds = np.asarray(f.discount_share[rows], dtype=float)
        heuristic = self.propensity_ is None
        if heuristic:
            customer_part, offer_part, coef, rate = np.zeros(n), np.zeros(m), np.zeros(17), 1.0
        else:
            customer = {k: v[rows] for k, v in self.customer_.items()}
            history = ({"response": self.history_.response[rows],
                        "offer_lift": self.history_.offer_lift}
                       if self.history_ is not None else None)
            customer_part, offer_part = self.propensity_.linear_parts(
                customer, self.depth_, history, n, m)
            coef, rate = np.asarray(self.propensity_.coef_, float), float(self.propensity_.rate)
        return {**shared, "has_history": self.history_ is not None and not heuristic,
                "heuristic": heuristic, "coef": coef, "rate": rate,
                "customer_part": customer_part, "offer_part": offer_part, "ds": ds,
                "depth": np.asarray(self.depth_, float),
                "weights": np.array([s.category_weight, s.brand_weight, s.product_weight]),
                "shape": np.array([s.p_floor, s.p_max, s.half_saturation,
                                   *(self.platt_ or ())]),
                "sensitivity": 0.75 + 0.5 * ds, "worth": np.asarray(self.redemption_worth_, float),
                "clv": np.asarray(self.clv_factor_[rows], float)}

    def select(self, rows: np.ndarray, allowed: np.ndarray, keep: int | None,
               primary: np.ndarray, top: int = 0) -> Selection:
        """Score customers ``rows`` (``(n,)`` increasing indices) against every offer and keep
        each one's ``keep`` best ``allowed`` candidates of positive value, with what they
        dropped (:func:`~optimizer.scoring._pair_kernels.score_select`): the pairs of :meth:`score` that
        ``tests.oracles.block_from_candidates`` (the numpy oracle) keeps, without the dense arrays."""
        return score_select(self.kernel_arrays(rows), rows, allowed, keep, primary, top)

    def score(self, start: int, stop: int) -> tuple[np.ndarray, np.ndarray]:
        """``p_redeem`` and ``score`` of customers ``start .. stop - 1`` against every offer."""
        p = self.p_redeem(start, stop)
        value = p * self.redemption_worth_[None, :] * self.clv_factor_[start:stop, None]
        return p, value
