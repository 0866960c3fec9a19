"""Customer lifetime value: the run-rate model (first version).

``RunRateCLV`` values a customer at her average weekly spend over the observed history times a
horizon: ``clv = spend / weeks_observed * horizon_weeks``. It is the baseline that the BG/NBD and
Gamma-Gamma models (Fader, Hardie & Lee 2005; Fader, Hardie & Lee 2005b) will replace; it needs no
fitting. A ``clv`` column in ``customers`` overrides the model customer by customer.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import polars as pl

from .features import CustomerFeatures
from .validate import Inputs


@dataclass
class RunRateCLV:
    """horizon_weeks: weeks of future spend a customer is valued at."""

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
    return np.clip((clv / mean) ** weight, floor, cap)
