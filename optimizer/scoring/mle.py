"""What every maximum-likelihood model of the package records about its fit (lifetimes-style)."""
from __future__ import annotations

from dataclasses import dataclass, field


@dataclass
class MaximumLikelihoodFit:
    """``penalizer``: L2 weight on the parameters (0 = plain maximum likelihood). Fitted
    attributes end in ``_``: parameters, log-likelihood, whether the optimiser converged, its
    iterations and message, and how many customers the fit used."""

    penalizer: float = 0.0
    params_: dict[str, float] = field(default_factory=dict, init=False)
    log_likelihood_: float = field(default=float("nan"), init=False)
    converged_: bool = field(default=False, init=False)
    iterations_: int = field(default=0, init=False)
    message_: str = field(default="", init=False)
    n_customers_: int = field(default=0, init=False)
