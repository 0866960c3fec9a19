"""Point-in-time response history: what earlier offers did, as of a given week.

``response_history(inputs, as_of, plain, offer_categories)`` reads ``history`` (sends) and
``redemptions`` of weeks before ``as_of`` only, for the non-sensitive offers ``plain`` only
(privacy by design: a sensitive offer's sends and redemptions never feed any feature), and returns

* ``offer_lift[j] = log(rate_j / base)``: the offer's own redemption rate, target-encoded with
  shrinkage towards everyone's rate ``base`` (Micci-Barreca 2001: ``rate_j = (redeemed_j + m *
  base) / (sent_j + m)``, ``m = OFFER_PRIOR_SENDS``); 0 for offers never sent (unknown = average);
* ``response[i] = log(rate_i / base)``: her own redemption rate shrunk likewise
  (``m = CUSTOMER_PRIOR_SENDS``), 0 without sends;
* ``redeemed`` / ``sent``: ``(C, M)`` 0/1, she redeemed / was sent offer j before;
* ``category_redeemed`` / ``category_sent``: ``(C, K)`` counts of her earlier redemptions / sends
  of offers in category k (an offer counts in each of its categories).

The propensity is trained on sends of several weeks, each pair with its history as of the week it
was sent, and scores the planning week with the history as of that week: no pair ever sees its own
outcome or anything later (no leakage from held-out weeks).
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import polars as pl
import scipy.sparse as sp

from .validate import Inputs

OFFER_PRIOR_SENDS = 50.0
CUSTOMER_PRIOR_SENDS = 5.0


@dataclass(frozen=True)
class ResponseHistory:
    """Sends and redemptions before ``as_of`` (see the module docstring)."""

    as_of: int
    base_rate: float
    offer_lift: np.ndarray
    response: np.ndarray
    redeemed: sp.csr_matrix
    sent: sp.csr_matrix
    category_redeemed: sp.csr_matrix
    category_sent: sp.csr_matrix

    def pair_values(self, c: np.ndarray, o: np.ndarray, offer_cats: sp.csr_matrix
                    ) -> dict[str, np.ndarray]:
        """History features of the pairs (``c[n]``, ``o[n]``); ``offer_cats``: ``(K, M)``."""
        def pick(matrix: sp.csr_matrix) -> np.ndarray:
            return np.asarray(matrix[c, o]).ravel()

        def rowdot(matrix: sp.csr_matrix) -> np.ndarray:
            return np.asarray(matrix[c].multiply(offer_cats.T.tocsr()[o]).sum(axis=1)).ravel()
        return {"offer_lift": self.offer_lift[o], "response": self.response[c],
                "redeemed_offer": pick(self.redeemed), "sent_offer": pick(self.sent),
                "category_redeemed": rowdot(self.category_redeemed),
                "category_sent": rowdot(self.category_sent)}

    def block_values(self, start: int, stop: int, offer_cats: sp.csr_matrix
                     ) -> dict[str, np.ndarray]:
        """History features of customers ``start .. stop - 1`` against every offer (dense)."""
        rows = slice(start, stop)
        return {"offer_lift": self.offer_lift[None, :], "response": self.response[rows, None],
                "redeemed_offer": self.redeemed[rows].toarray(),
                "sent_offer": self.sent[rows].toarray(),
                "category_redeemed": (self.category_redeemed[rows] @ offer_cats).toarray(),
                "category_sent": (self.category_sent[rows] @ offer_cats).toarray()}


def _pairs(table: pl.DataFrame | None, as_of: int, plain: np.ndarray) -> tuple[np.ndarray, ...]:
    if table is None:
        return np.zeros(0, np.int64), np.zeros(0, np.int64)
    rows = (table.lazy().filter((pl.col("week") < as_of) & pl.col("o").is_in(plain.tolist()))
            .select(pl.col("c").cast(pl.Int64), pl.col("o").cast(pl.Int64)).unique()
            .sort("c", "o").collect())
    return rows.get_column("c").to_numpy(), rows.get_column("o").to_numpy()


def response_history(inputs: Inputs, as_of: int, plain: np.ndarray, offer_cats: sp.csr_matrix
                     ) -> ResponseHistory:
    """The :class:`ResponseHistory` of weeks before ``as_of`` for the offers ``plain``.

    Sends and redemptions count once per customer and offer (a repeat send of the same offer adds
    no information about a different outcome). ``offer_cats``: ``(K, M)`` category incidence.
    """
    n, m = inputs.n_customers, inputs.n_offers
    sc, so = _pairs(inputs.history, as_of, plain)
    rc, ro = _pairs(inputs.redemptions, as_of, plain)
    sent = sp.csr_matrix((np.ones(sc.size), (sc, so)), shape=(n, m))
    redeemed = sp.csr_matrix((np.ones(rc.size), (rc, ro)), shape=(n, m))
    sent = (sent + redeemed).sign().tocsr()  # a redemption implies a send
    sent_o = np.asarray(sent.sum(axis=0)).ravel()
    red_o = np.asarray(redeemed.sum(axis=0)).ravel()
    total_sent = float(sent_o.sum())
    base = float(red_o.sum()) / total_sent if total_sent else 0.0

    def lift(red: np.ndarray, sends: np.ndarray, prior: float) -> np.ndarray:
        if base <= 0:
            return np.zeros(sends.size)
        return np.log((red + prior * base) / (sends + prior) / base)
    sent_c = np.asarray(sent.sum(axis=1)).ravel()
    red_c = np.asarray(redeemed.sum(axis=1)).ravel()
    incidence = offer_cats.T.tocsr()  # (M, K)
    return ResponseHistory(
        as_of, base, lift(red_o, sent_o, OFFER_PRIOR_SENDS),
        lift(red_c, sent_c, CUSTOMER_PRIOR_SENDS), redeemed, sent,
        (redeemed @ incidence).tocsr(), (sent @ incidence).tocsr())
