"""Fit the customer-first scoring for a planning week: features, lifetime value, propensity.

``fit_scoring(inputs, scenario, cats, week)`` returns the :class:`~optimizer.scoring.affinity.AffinityModel`
that scores chunks of customers, each customer's lifetime value, and what the manifest records
(``lifetime_value`` and ``propensity``: parameters, log-likelihoods, convergence, fallbacks).

The propensity is fitted as a forecast: purchase features as of ``week - label_weeks``
(transactions before then), labels from the ``label_weeks`` weeks that follow, up to ``week``, and
each training send's response history (:mod:`optimizer.scoring.response`) as of the week it was sent; the
planning week is scored with the history as of ``week``. Training pairs are, in
order of preference, (1) offers sent in those weeks (``history``) labelled by ``redemptions``, (2)
sampled customer x offer pairs labelled by whether she bought any of the offer's categories, (3)
none: the heuristic formula. Each step down is logged as a warning and recorded as ``fallback``.
The default repurchase model (:mod:`optimizer.scoring.repurchase_fit`) also steps down to the
heuristic formula, calibrated on its training sends (Platt scaling), and no further, where the
formula ranks its held-out sends better with confidence (a paired bootstrap over customers).
Sensitive offers never enter the training pairs, so sensitive purchases cannot move the fitted
coefficients and thereby anyone's scores for other offers (privacy by design).
"""
from __future__ import annotations

import dataclasses
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import polars as pl
import scipy.sparse as sp

from optimizer.core.config import Scenario
from optimizer.core.parallel import thread_count
from optimizer.core.schemas import normalize_category_name
from optimizer.io.validate import Inputs
from optimizer.scoring.affinity import AffinityModel
from optimizer.scoring.clv import LifetimeValue, clv_factor, rfm_summary, with_given_clv
from optimizer.scoring.features import (
    CustomerFeatures,
    OfferCategories,
    PurchaseLines,
    customer_features,
    purchase_lines,
)
from optimizer.scoring.propensity import Propensity
from optimizer.scoring.repurchase import Repurchase, Sources, as_affinity
from optimizer.scoring.repurchase import sources as repurchase_sources
from optimizer.scoring.repurchase_fit import HeuristicWins, fit_repurchase, proxy_pairs
from optimizer.scoring.response import ResponseLog, first_weeks, response_history

log = logging.getLogger(__name__)


@dataclass
class Scoring:
    """The fitted scoring of one week: the model, lifetime values and the manifest entries."""

    model: AffinityModel
    clv: np.ndarray
    lifetime_value: dict[str, Any]
    propensity: dict[str, Any]
    seconds: dict[str, float] = field(default_factory=dict)


def sensitive_offers(cats: OfferCategories, sensitive_categories: tuple[str, ...]) -> np.ndarray:
    """Indices of the offers with a sensitive category."""
    names = [normalize_category_name(c) for c in sensitive_categories]
    return np.unique(cats.pairs.filter(pl.col("category").is_in(names)).get_column("o")
                     .to_numpy()).astype(np.int64)


def fit_scoring(inputs: Inputs, scenario: Scenario, cats: OfferCategories, week: int,
                lines: PurchaseLines | None = None) -> Scoring:
    """Fit features, lifetime value and propensity on data before ``week`` (module docstring).

    ``lines``: the :func:`~optimizer.scoring.features.purchase_lines` of ``inputs`` before
    ``week`` with the scenario's sensitive categories, when the caller made them; the fit then
    reads no ``inputs.transactions`` (a run lets them go before fitting)."""
    seconds: dict[str, float] = {}
    tick = time.perf_counter()
    aff, obj, rules = scenario.affinity, scenario.objective, scenario.rules
    if lines is None:
        lines = purchase_lines(inputs, rules.sensitive_categories, week)
        seconds["purchase_lines"] = time.perf_counter() - tick
    tick = time.perf_counter()
    features = customer_features(inputs, week, aff.half_life_weeks, rules.sensitive_categories,
                                 lines, threads=thread_count(scenario.solver.threads))
    seconds["features"] = time.perf_counter() - tick
    tick = time.perf_counter()
    rfm = rfm_summary(inputs, week, rules.sensitive_categories, lines)
    seconds["rfm"] = time.perf_counter() - tick
    ltv = LifetimeValue(obj.clv_horizon_weeks, obj.clv_min_repeat_customers).fit(rfm, features)
    seconds.update(ltv.seconds_)
    clv = with_given_clv(inputs, ltv.predict(rfm, features))
    factor = clv_factor(clv, obj.clv_weight, obj.clv_floor, obj.clv_cap)
    tick = time.perf_counter()
    info: dict[str, Any] = {"model": "heuristic", "fallback": None}
    # the formula's model: the heuristic itself, and the offer side the repurchase model reads
    # (the fitted model is fitted once, with its propensity, below)
    base = (AffinityModel(aff, obj).fit(inputs, features, cats, factor, lines=lines)
            if aff.model != "fitted" else None)
    repurchase, propensity, calibrated = None, None, None
    if base is not None and aff.model == "repurchase":
        repurchase, info, calibrated = _fit_repurchase(inputs, scenario, cats, week, base, lines)
    # no model where the held-out check switched to the formula (the plan uses it, calibrated,
    # as the manifest says); no other step down follows
    if aff.model == "fitted" or (aff.model == "repurchase" and repurchase is None
                                 and calibrated is None):
        reason = info.get("fallback")
        propensity, info = _fit_propensity(inputs, scenario, cats, week, lines, features)
        if reason:
            info["fallback"] = "; ".join(r for r in (reason, info.get("fallback")) if r)
    model = (base if base is not None and propensity is None
             else AffinityModel(aff, obj).fit(inputs, features, cats, factor, propensity,
                                              lines=lines))
    model.platt_ = calibrated
    if repurchase is not None:
        fitted, sources_ = repurchase
        model = as_affinity(model, fitted, sources_, inputs.n_customers, week)
        info = fitted.describe()  # with what scoring the planning week adds (the popularity)
    elif model.propensity_ is not None:
        model.history_ = response_history(inputs, week, _plain(inputs, cats, rules),
                                          model.offer_categories_)
    seconds["propensity"] = time.perf_counter() - tick
    return Scoring(model, clv, ltv.describe(), info, seconds)


def _fit_repurchase(inputs: Inputs, scenario: Scenario, cats: OfferCategories, week: int,
                    base: AffinityModel, lines: PurchaseLines
                    ) -> tuple[tuple[Repurchase, Sources] | None, dict[str, Any],
                               tuple[float, float] | None]:
    """The repurchase model (:mod:`optimizer.scoring.repurchase`) on the sends of the ``train_weeks``
    before ``week`` labelled by redemptions, else on sampled pairs labelled by a purchase of the
    offer's products in the ``label_weeks`` before ``week`` (recorded as the fallback); what the
    manifest records; and the heuristic formula's Platt calibration ``(a, b)`` where the held-out
    check switched to the formula (then no model)."""
    aff, rules = scenario.affinity, scenario.rules
    plain = _plain(inputs, cats, rules)
    sent_first = first_weeks(inputs.history, plain, week)  # read by both, made once
    s = repurchase_sources(inputs, lines, base.offer_categories_, base.depth_, plain, week,
                           thread_count(scenario.solver.threads), sent_first)
    rng = np.random.default_rng(scenario.solver.seed)
    reasons = []
    pairs = _sent_pairs(inputs, plain, week - aff.train_weeks, week, sent_first)
    del sent_first
    if not isinstance(pairs, str):
        c, o, t, y = pairs
        if c.size > aff.max_training_pairs:
            keep = np.sort(rng.choice(c.size, aff.max_training_pairs, replace=False))
            c, o, t, y = c[keep], o[keep], t[keep], y[keep]
        pairs = fit_repurchase(s, c, o, t, y, aff.min_positives, 1.0, "redemption",
                               _heuristic_scorer(inputs, scenario, base, lines),
                               scenario.solver.seed)
    if isinstance(pairs, HeuristicWins):  # the formula ranks the held-out sends better
        log.warning("propensity: %s", pairs.info["fallback"])
        return (None, {**pairs.info, "train_weeks": [week - aff.train_weeks, week - 1]},
                pairs.platt)
    if isinstance(pairs, str):
        reasons.append(pairs)
        start = week - aff.label_weeks
        c, o, t, y = proxy_pairs(s, inputs.n_customers, plain, start, week,
                                 aff.max_training_pairs, rng)
        pairs = fit_repurchase(s, c, o, t, y, aff.min_positives, aff.proxy_redemption_rate,
                               "product purchase")
    if isinstance(pairs, str):
        reasons.append(pairs)
        reason = "repurchase: " + "; ".join(reasons)
        log.warning("propensity: the repurchase model cannot be fitted (%s)", reason)
        return None, {"model": "heuristic", "fallback": reason}, None
    if reasons:
        pairs.info["fallback"] = "; ".join(
            r for r in (f"no redemption labels ({reasons[0]}): purchases of the offer's "
                        "products stand in for redemptions", pairs.info.get("fallback")) if r)
        log.warning("propensity: %s", pairs.info["fallback"])
    elif pairs.info.get("fallback"):
        log.warning("propensity: %s", pairs.info["fallback"])
    pairs.info.setdefault("fallback", None)
    pairs.info["train_weeks"] = [week - aff.train_weeks, week - 1]
    return (pairs, s), pairs.describe(), None


def _heuristic_scorer(inputs: Inputs, scenario: Scenario, base: AffinityModel,
                      lines: PurchaseLines
                      ) -> Callable[[np.ndarray, np.ndarray, np.ndarray], np.ndarray]:
    """The heuristic formula's ``p_redeem`` of pairs (``c``, ``o``) as of weeks ``t``, for the
    repurchase fit's held-out check: point in time as the model's features, each send scored
    with her customer features as of the week it was sent (the plan of that week would have
    scored it so), the offer side of ``base`` (which does not depend on the week)."""
    aff, sensitive = scenario.affinity, scenario.rules.sensitive_categories

    def score(c: np.ndarray, o: np.ndarray, t: np.ndarray) -> np.ndarray:
        out = np.empty(c.size)
        who = np.zeros(inputs.n_customers, dtype=bool)
        who[c] = True
        # their purchase lines only: one pass over all lines, then one over theirs a week
        theirs = np.flatnonzero(who[lines.c])
        mine = dataclasses.replace(lines, **{
            f.name: getattr(lines, f.name)[theirs] for f in dataclasses.fields(lines)
            if isinstance(getattr(lines, f.name), np.ndarray)})
        for w in np.unique(t):
            rows = np.flatnonzero(t == w)
            who[:] = False
            who[c[rows]] = True
            then = customer_features(inputs, int(w), aff.half_life_weeks, sensitive, mine,
                                     customers=who)
            out[rows] = base.heuristic_pairs(c[rows], o[rows], then)
        return out
    return score


def _plain(inputs: Inputs, cats: OfferCategories, rules: Any) -> np.ndarray:
    return np.setdiff1d(np.arange(inputs.n_offers),
                        sensitive_offers(cats, rules.sensitive_categories))


def _columns(then_model: AffinityModel, inputs: Inputs, plain: np.ndarray, c: np.ndarray,
             o: np.ndarray, sent_week: np.ndarray) -> list[np.ndarray]:
    """Feature columns of the training pairs, each with its response history as of the week it
    was sent (point in time: a pair never sees its own outcome)."""
    out: list[np.ndarray] = []
    log = ResponseLog.read(inputs, plain, int(sent_week.max(initial=0)))
    for w in np.unique(sent_week):
        rows = np.flatnonzero(sent_week == w)
        history = response_history(inputs, int(w), plain, then_model.offer_categories_, log)
        cols = then_model.pair_columns(c[rows], o[rows], history)
        out = out or [np.empty(c.size) for _ in cols]
        for column, col in zip(out, cols):
            column[rows] = col
    return out


def _fit_propensity(inputs: Inputs, scenario: Scenario, cats: OfferCategories, week: int,
                    lines: PurchaseLines, features: CustomerFeatures
                    ) -> tuple[Propensity | None, dict[str, Any]]:
    aff, rules = scenario.affinity, scenario.rules
    start = week - aff.label_weeks
    ones = np.ones(inputs.n_customers)
    # the offer side (categories, incidences) is the same at any week: sample pairs with it, then
    # build the features as of ``start`` for the sampled customers only
    offer_side = AffinityModel(aff, scenario.objective).fit(inputs, features, cats, ones,
                                                             lines=lines)
    plain = _plain(inputs, cats, rules)
    rng = np.random.default_rng(scenario.solver.seed)
    reasons = []
    for target in ("redemption", "category purchase"):
        pairs = (_sent_pairs(inputs, plain, start, week) if target == "redemption"
                 else _purchase_pairs(inputs, lines, offer_side, plain, start, week,
                                      aff.max_training_pairs, rng))
        if isinstance(pairs, str):
            reasons.append(pairs)
            continue
        c, o, sent_week, y = pairs
        if c.size > aff.max_training_pairs:
            keep = np.sort(rng.choice(c.size, aff.max_training_pairs, replace=False))
            c, o, sent_week, y = c[keep], o[keep], sent_week[keep], y[keep]
        if y.sum() < aff.min_positives or y.sum() == y.size:
            reasons.append(f"{target}: {int(y.sum())} positives of {y.size} pairs "
                           f"(needs {aff.min_positives} and some negatives)")
            continue
        rate = 1.0 if target == "redemption" else aff.proxy_redemption_rate
        sampled = np.zeros(inputs.n_customers, dtype=bool)
        sampled[c] = True
        then = customer_features(inputs, start, aff.half_life_weeks, rules.sensitive_categories,
                                 lines, customers=sampled)
        then_model = AffinityModel(aff, scenario.objective).fit(
            inputs, then, cats, ones, lines=lines)
        columns = _columns(then_model, inputs, plain, c, o, sent_week)
        model = Propensity(rate=rate, target=target).fit(columns, y)
        if not model.converged_:
            reasons.append(f"{target}: the fit did not converge ({model.message_})")
            continue
        info = model.describe()
        info.update(label_weeks=[start, week - 1], fallback="; ".join(reasons) or None)
        if reasons:
            log.warning("propensity: fitted on %s because %s", target, info["fallback"])
        return model, info
    reason = "; ".join(reasons)
    log.warning("propensity: using the heuristic formula because %s", reason)
    return None, {"model": "heuristic", "fallback": reason}


def _sent_pairs(inputs: Inputs, plain: np.ndarray, start: int, week: int,
                sent_first: pl.DataFrame | None = None
                ) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray] | str:
    """Non-sensitive offers sent in weeks ``start .. week - 1``: customer, offer, the week of
    the first send, and whether she redeemed it in that week or later (before ``week``).
    ``sent_first``: the history's :func:`~optimizer.scoring.response.first_weeks` before
    ``week``, read when no send is older than ``start`` (then the same pairs and weeks)."""
    if inputs.history is None or inputs.redemptions is None:
        return "redemption: no history and redemptions tables"
    window = (pl.col("week") >= start) & (pl.col("week") < week) & pl.col("o").is_in(plain.tolist())
    oldest = inputs.history.get_column("week").min()
    redeemed = (inputs.redemptions.filter(window).group_by("c", "o")
                .agg(pl.col("week").max().alias("redeemed")))
    if sent_first is not None and (oldest is None or oldest >= start):  # type: ignore[operator]
        sent = sent_first.sort("c", "o")
        redeemed = redeemed.with_columns(pl.col("c", "o").cast(pl.Int64))
    else:
        sent = (inputs.history.filter(window).group_by("c", "o").agg(pl.col("week").min())
                .sort("c", "o"))
    if sent.height == 0:
        return f"redemption: no offers sent in weeks {start}..{week - 1}"
    sent = sent.join(redeemed, on=["c", "o"], how="left", maintain_order="left")
    y = (sent.get_column("redeemed") >= sent.get_column("week")).fill_null(False)
    return (sent.get_column("c").to_numpy().astype(np.int64),
            sent.get_column("o").to_numpy().astype(np.int64),
            sent.get_column("week").to_numpy().astype(np.int64), y.to_numpy().astype(float))


def bought_categories(lines: PurchaseLines, n_customers: int, start: int, stop: int
                      ) -> sp.csr_matrix:
    """``(n_customers, K)`` 0/1: she bought category k (``lines.categories``) in weeks
    ``start .. stop - 1``, from the purchase ``lines`` (sensitive ones included)."""
    n_k = len(lines.categories)
    keep = (lines.week >= start) & (lines.week < stop)
    key = np.unique(lines.c[keep].astype(np.int64) * max(n_k, 1) + lines.k[keep])
    return sp.csr_matrix((np.ones(key.size), (key // max(n_k, 1), key % max(n_k, 1))),
                         shape=(n_customers, n_k))


def _purchase_pairs(inputs: Inputs, lines: PurchaseLines, then_model: AffinityModel,
                    plain: np.ndarray, start: int, week: int, n_pairs: int,
                    rng: np.random.Generator
                    ) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray] | str:
    """Sampled customer x non-sensitive offer pairs (as of ``start``), labelled by a purchase in
    their categories."""
    if plain.size == 0 or inputs.n_customers == 0:
        return "category purchase: no non-sensitive offers"
    bought = bought_categories(lines, inputs.n_customers, start, week)
    if bought.nnz == 0:
        return f"category purchase: no purchases in weeks {start}..{week - 1}"
    n = int(min(n_pairs, inputs.n_customers * plain.size))
    c = np.sort(rng.integers(0, inputs.n_customers, n))
    o = plain[rng.integers(0, plain.size, n)]
    hits = bought[c].multiply(then_model.offer_categories_.T.tocsr()[o]).sum(axis=1)
    return c, o, np.full(n, start, np.int64), (np.asarray(hits).ravel() > 0).astype(float)
