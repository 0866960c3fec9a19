"""Customer lifetime value: BG/NBD x Gamma-Gamma, with the run-rate model as a stated fallback.

``LifetimeValue`` fits the BG/NBD model of repeat purchases (:mod:`optimizer.scoring.bgnbd`) and the
Gamma-Gamma model of spend per purchase (:mod:`optimizer.scoring.gamma_gamma`) on each customer's
sufficient statistics (``rfm_summary``: frequency, recency, T and mean repeat spend, computed with
polars from non-sensitive purchases before the planning week, counted per distinct day when
transactions carry ``date``, else per week). A customer's value is her expected number of purchases
over ``clv_horizon_weeks`` times her expected spend per purchase (undiscounted); a customer without
purchases is worth 0.

When the fit cannot run (too few repeat customers, no convergence, q <= 1) the run-rate model
``RunRateCLV`` (average weekly spend x horizon) is used instead, a warning is logged and
``describe()`` records ``"fallback": reason``. A ``clv`` column in ``customers`` overrides the
model customer by customer.
"""
from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import polars as pl

from optimizer.core import numerics as nx
from optimizer.io.validate import Inputs
from optimizer.scoring._feature_kernels import purchase_days
from optimizer.scoring.bgnbd import BGNBD
from optimizer.scoring.features import CustomerFeatures, PurchaseLines, purchase_lines
from optimizer.scoring.gamma_gamma import GammaGamma

log = logging.getLogger(__name__)


@dataclass
class RunRateCLV:
    """Run-rate lifetime value: ``spend / weeks_observed * horizon_weeks`` (the fallback).

    horizon_weeks: weeks of future spend a customer is valued at.
    """

    horizon_weeks: int = 52
    weeks_: int = field(default=0, init=False)

    def fit(self, features: CustomerFeatures) -> "RunRateCLV":
        """Record the length of the history (nothing else to estimate)."""
        self.weeks_ = max(features.weeks_observed, 1)
        return self

    def predict(self, features: CustomerFeatures) -> np.ndarray:
        """Expected spend of each customer over the horizon."""
        return features.spend / self.weeks_ * self.horizon_weeks

    def describe(self) -> dict[str, object]:
        """What the manifest records about the fit."""
        return {"model": "run_rate", "horizon_weeks": self.horizon_weeks,
                "weeks_observed": self.weeks_, "converged": True}


@dataclass(frozen=True)
class RFMSummary:
    """Per-customer sufficient statistics (arrays indexed by ``c``), time in ``unit``s.

    frequency: repeat purchases (distinct purchase days or weeks after the first); recency: time
    of the last purchase after the first; T: time from the first purchase to the end of the
    observation; monetary_value: mean spend of the repeat purchases (0 without); active: has at
    least one purchase; unit: "day" or "week".
    """

    frequency: np.ndarray
    recency: np.ndarray
    T: np.ndarray
    monetary_value: np.ndarray
    active: np.ndarray
    unit: str


def rfm_summary(inputs: Inputs, week: int, sensitive_categories: tuple[str, ...],
                lines: PurchaseLines | None = None) -> RFMSummary:
    """Sufficient statistics from non-sensitive transactions of weeks before ``week``, from the
    :func:`~optimizer.scoring.features.purchase_lines` (sorted by customer and day, so every sum adds in
    a fixed order whatever the threads); a line without a date counts on its week's first day."""
    lines = lines or purchase_lines(inputs, sensitive_categories, week)
    by_day = lines.dated
    keep = ~lines.sensitive & (lines.week < week)
    lt = lines.day if by_day else lines.week
    n_customers = inputs.n_customers
    n_days, first, last, total, first_value = purchase_days(lines.c, lt, lines.sales, keep,
                                                            n_customers)
    kept_t = lt[keep]
    end = int(kept_t.max()) + 1 if by_day and kept_t.size else week
    c = np.flatnonzero(n_days)
    n = n_days[c].astype(float)
    out = {name: np.zeros(n_customers) for name in ("frequency", "recency", "T", "monetary")}
    out["frequency"][c] = n - 1
    out["recency"][c] = (last[c] - first[c]).astype(float)
    out["T"][c] = end - first[c].astype(float)
    out["monetary"][c] = np.where(n > 1, (total[c] - first_value[c]) / np.maximum(n - 1, 1),
                                  0.0)
    active = np.zeros(n_customers, dtype=bool)
    active[c] = True
    return RFMSummary(out["frequency"], out["recency"], out["T"], out["monetary"], active,
                      "day" if by_day else "week")


@dataclass
class LifetimeValue:
    """BG/NBD x Gamma-Gamma lifetime value with a recorded run-rate fallback (module docstring).

    horizon_weeks: weeks of future purchases valued; min_repeat_customers: fewest customers with
    a repeat purchase needed to fit (else the run-rate fallback).
    """

    horizon_weeks: int = 52
    min_repeat_customers: int = 30
    bgnbd_: BGNBD | None = field(default=None, init=False)
    gamma_gamma_: GammaGamma | None = field(default=None, init=False)
    fallback_: str | None = field(default=None, init=False)
    unit_: str = field(default="week", init=False)
    run_rate_: RunRateCLV | None = field(default=None, init=False)
    seconds_: dict[str, float] = field(default_factory=dict, init=False)

    def fit(self, rfm: RFMSummary, features: CustomerFeatures) -> "LifetimeValue":
        """Fit both models; on failure fall back to the run rate and say why."""
        self.unit_ = rfm.unit
        self.run_rate_ = RunRateCLV(self.horizon_weeks).fit(features)
        n_repeat = int((rfm.frequency > 0).sum())
        if n_repeat < self.min_repeat_customers:
            return self._fall_back(f"only {n_repeat} customers with a repeat purchase "
                                   f"(needs {self.min_repeat_customers})")
        a = rfm.active
        pooled = (pl.DataFrame({"x": rfm.frequency[a], "tx": rfm.recency[a], "T": rfm.T[a]})
                  .group_by("x", "tx", "T").len().sort("x", "tx", "T"))  # deterministic sums
        tick = time.perf_counter()
        self.bgnbd_ = BGNBD().fit(pooled.get_column("x").to_numpy(),
                                  pooled.get_column("tx").to_numpy(),
                                  pooled.get_column("T").to_numpy(),
                                  pooled.get_column("len").to_numpy())
        self.seconds_["bg_nbd"] = time.perf_counter() - tick
        tick = time.perf_counter()
        self.gamma_gamma_ = GammaGamma().fit(rfm.frequency, rfm.monetary_value)
        self.seconds_["gamma_gamma"] = time.perf_counter() - tick
        if not self.bgnbd_.converged_:
            return self._fall_back(f"BG/NBD did not converge: {self.bgnbd_.message_}")
        if not self.gamma_gamma_.converged_:
            return self._fall_back(f"Gamma-Gamma did not converge: {self.gamma_gamma_.message_}")
        if self.gamma_gamma_.params_["q"] <= 1:
            return self._fall_back("Gamma-Gamma q <= 1: mean spend per purchase undefined")
        return self

    def _fall_back(self, reason: str) -> "LifetimeValue":
        log.warning("lifetime value: using the run-rate model because %s", reason)
        self.fallback_ = reason
        return self

    def predict(self, rfm: RFMSummary, features: CustomerFeatures) -> np.ndarray:
        """Expected spend of each customer over the horizon (0 without purchases)."""
        if self.fallback_ is not None or self.bgnbd_ is None or self.gamma_gamma_ is None:
            assert self.run_rate_ is not None, "fit first"
            return self.run_rate_.predict(features)
        t = self.horizon_weeks * (7 if rfm.unit == "day" else 1)
        purchases = self.bgnbd_.predict(t, rfm.frequency, rfm.recency, rfm.T)
        spend = self.gamma_gamma_.predict(rfm.frequency, rfm.monetary_value)
        return np.where(rfm.active, purchases * spend, 0.0)

    def describe(self) -> dict[str, Any]:
        """What the manifest records: models, parameters, log-likelihoods, convergence."""
        info: dict[str, Any] = {"model": "bg_nbd x gamma_gamma", "unit": self.unit_,
                                "horizon_weeks": self.horizon_weeks, "fallback": self.fallback_}
        if self.bgnbd_ is not None:
            info["bg_nbd"] = self.bgnbd_.describe()
        if self.gamma_gamma_ is not None:
            info["gamma_gamma"] = self.gamma_gamma_.describe()
        if self.fallback_ is not None and self.run_rate_ is not None:
            info["model"] = "run_rate (fallback)"
            info["run_rate"] = self.run_rate_.describe()
        info["converged"] = self.fallback_ is None
        return info


def with_given_clv(inputs: Inputs, modelled: np.ndarray) -> np.ndarray:
    """Replace modelled values by the ``customers.clv`` column where it is given."""
    if "clv" not in inputs.customers.columns:
        return modelled
    given = inputs.customers.get_column("clv").cast(pl.Float64).to_numpy()
    return np.where(np.isnan(given), modelled, given)


def clv_factor(clv: np.ndarray, weight: float, floor: float, cap: float) -> np.ndarray:
    """Relative value of each customer: ``(clv / mean clv) ** weight`` clipped to [floor, cap]."""
    mean = float(clv.mean()) if clv.size else 0.0
    if mean <= 0:
        return np.ones_like(clv)
    return np.clip(nx.power(clv / mean, weight), floor, cap)
