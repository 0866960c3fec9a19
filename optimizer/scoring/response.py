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

from optimizer.core import numerics as nx
from optimizer.io.validate import Inputs

OFFER_PRIOR_SENDS = 50.0
CUSTOMER_PRIOR_SENDS = 5.0



def first_weeks(table: pl.DataFrame | None, plain: np.ndarray, week: int) -> pl.DataFrame:
    """Each (customer ``c``, offer ``o``) pair's first ``week`` in ``table`` (``history`` or
    ``redemptions``) before ``week``, offers ``plain`` only, as Int64 columns in no set order
    (empty without the table). The repurchase model's sources and its training sends read the
    same one (a group-by of every send before the week)."""
    if table is None:
        return pl.DataFrame(schema={"c": pl.Int64, "o": pl.Int64, "week": pl.Int64})
    rows = (table.filter(pl.col("week") < week)
            .select(pl.col("c").cast(pl.Int64), pl.col("o").cast(pl.Int64),
                    pl.col("week").cast(pl.Int64)))
    rows = rows.filter(pl.col("o").is_in(plain.tolist()))
    return rows.group_by("c", "o").agg(pl.col("week").min())

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


@dataclass(frozen=True)
class ResponseLog:
    """The sends and redemptions of the offers ``plain`` before ``until``, as numpy arrays (read
    once with polars; each :func:`response_history` then masks by week)."""

    sends: tuple[np.ndarray, np.ndarray, np.ndarray]  # c, o, week
    redemptions: tuple[np.ndarray, np.ndarray, np.ndarray]

    @staticmethod
    def read(inputs: Inputs, plain: np.ndarray, until: int) -> "ResponseLog":
        """Rows of ``history`` and ``redemptions`` of weeks before ``until`` for offers ``plain``."""
        keep = np.zeros(inputs.n_offers, dtype=bool)
        keep[plain] = True

        def arrays(table: pl.DataFrame | None) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
            if table is None:
                return (np.zeros(0, np.int64),) * 3
            rows = table.filter(pl.col("week") < until)
            c, o, w = (rows.get_column(n).to_numpy().astype(np.int64) for n in ("c", "o", "week"))
            ok = keep[o]
            return c[ok], o[ok], w[ok]
        return ResponseLog(arrays(inputs.history), arrays(inputs.redemptions))


def response_history(inputs: Inputs, as_of: int, plain: np.ndarray, offer_cats: sp.csr_matrix,
                     log: ResponseLog | None = None) -> ResponseHistory:
    """The :class:`ResponseHistory` of weeks before ``as_of`` for the offers ``plain``.

    Sends and redemptions count once per customer and offer (a repeat send of the same offer adds
    no information about a different outcome). ``offer_cats``: ``(K, M)`` category incidence;
    ``log``: a :class:`ResponseLog` of the same offers read up to ``as_of`` or later, to reuse.
    """
    n, m = inputs.n_customers, inputs.n_offers
    log = log or ResponseLog.read(inputs, plain, as_of)

    def matrix(rows: tuple[np.ndarray, np.ndarray, np.ndarray]) -> sp.csr_matrix:
        c, o, w = rows
        early = w < as_of
        return sp.csr_matrix((np.ones(int(early.sum())), (c[early], o[early])), shape=(n, m))
    redeemed = matrix(log.redemptions).sign().tocsr()
    sent = (matrix(log.sends) + redeemed).sign().tocsr()  # a redemption implies a send
    sent_o = np.asarray(sent.sum(axis=0)).ravel()
    red_o = np.asarray(redeemed.sum(axis=0)).ravel()
    total_sent = float(sent_o.sum())
    base = float(red_o.sum()) / total_sent if total_sent else 0.0

    def lift(red: np.ndarray, sends: np.ndarray, prior: float) -> np.ndarray:
        if base <= 0:
            return np.zeros(sends.size)
        return nx.log((red + prior * base) / (sends + prior) / base)
    sent_c = np.asarray(sent.sum(axis=1)).ravel()
    red_c = np.asarray(redeemed.sum(axis=1)).ravel()
    incidence = offer_cats.T.tocsr()  # (M, K)
    return ResponseHistory(
        as_of, base, lift(red_o, sent_o, OFFER_PRIOR_SENDS),
        lift(red_c, sent_c, CUSTOMER_PRIOR_SENDS), redeemed, sent,
        (redeemed @ incidence).tocsr(), (sent @ incidence).tocsr())
