"""Why one customer got her offers and not the next-best ones (``offeropt explain``).

Re-runs the cheap steps for one customer (load, features and scoring, eligibility) and reads the
run's assignments and dual prices (manifest ``dual_prices``); it never solves. Every offer gets a
status, with the numbers behind it:

- ``given``: in the plan, with its rank.
- ``ineligible``: a rule forbids the pair (``window``, ``exclude``, ``sensitive``, ``cooldown``).
- ``no_value``: its score is 0 (nothing to gain).
- ``not_candidate``: eligible, but not among her ``affinity.candidates_per_customer`` best scores
  (with ``affinity.pricing_rounds``, a round may have added it to her candidates: explain
  rebuilds her best few only, and the plan did not give it).
- ``priced_out``: its reduced value ``score - (budget price + shared price + global price) *
  expected_cost - count price - channel charge`` is at or below 0: the offer's budget (or
  ``max_customers``, the global budget, its funder's budget or its group flight's week share,
  or the channels' capacities and contact costs) is worth more spent on other customers. The
  shared price is the price of the funder's or group flight's budget the offer is under
  (manifest ``funders`` / ``group_flights`` ``shadow_price``); the channel charge is her
  cheapest consented channel's ``(1 + contact budget price) * cost_per_contact + channel price``
  (manifest ``channels`` / ``contact_budget``), the same for all her offers.
- ``category_cap``: a given offer in the same category (``max_offers_per_category``) is better.
- ``group_cap``: an offer group it belongs to (``offer_groups``) already holds its
  ``max_per_customer`` given offers, all with a reduced value at least as high (or the limit
  is 0).
- ``customer_cap`` / ``window_cap``: her per-customer cap (or her frequency-window room) is full
  of offers with higher reduced values.
- ``repair``: it beats the threshold under the prices, but the final repair step, which keeps
  budgets and caps exact, left it out (typically its budget filled up with other customers).
- ``control``: withheld by the run's ``[measurement]`` control groups (its ``controls`` table):
  a per-offer control pair the plan chose, or, for a customer in the universal control (all of
  whose sends were withheld, the plan's choice for her unrecorded), each offer that beats the
  threshold and fits her caps, best reduced value first (the others are then explained against
  them, as against given offers). ``Explanation.control`` names her universal control.

With ``rules.pin``, an offer on her list last week whose flight covers this week is a pin: a
given pin says so (``why`` ends in ``pinned``); a pin not given is ``pin_released``, with the
per-pair rule that forbids it, ``no_channel_consent`` (with channels, she consented to none),
``not a candidate``, or the capacity pass (caps, budgets, funder and global budgets, channel
capacities and the contact budget; the manifest's ``stability.pins`` counts those by reason,
which need every customer's pins) or a measurement control. Last week's lists are read where
the run read them (``history``, or the ``--previous-run`` folder the manifest names).

The solver's steering bonus for offers short of ``min_customers`` is not saved in the manifest,
so such offers can look ``priced_out`` although the plan gave them out.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl

from optimizer.apps.pipeline import Scored, score_inputs
from optimizer.core.config import Scenario
from optimizer.core.errors import OptimizerError
from optimizer.core.predicate import read_columns
from optimizer.io.manifest import Manifest
from optimizer.io.run_match import SETTINGS_UNKNOWN, run_differences
from optimizer.io.runview import read_run_arm, read_run_manifest, read_run_table
from optimizer.io.validate import Inputs, load_inputs
from optimizer.model.build import build_problem
from optimizer.model.groups import GroupData
from optimizer.model.holdout import PER_OFFER, UNIVERSAL
from optimizer.model.pins import in_flight
from optimizer.model.problem import AssignmentProblem, Prices
from optimizer.model.reduced import reduced_values

EPS = 1e-12


@dataclass
class Explanation:
    """The explanation of one customer's plan. ``offers``: one row per offer (see the module
    docstring for ``status``), given ones first by rank, then by score."""

    customer_id: Any
    run_dir: str
    cap: int
    max_offers_per_customer: int
    global_price: float
    offers: list[dict[str, Any]]
    warnings: list[str] = field(default_factory=list)
    control: str | None = None

    def to_json(self) -> dict[str, Any]:
        """Plain JSON-able data (for ``--json``)."""
        return {"customer_id": self.customer_id, "run_dir": self.run_dir, "cap": self.cap,
                "max_offers_per_customer": self.max_offers_per_customer,
                "global_price": self.global_price, "offers": self.offers,
                "warnings": self.warnings, "control": self.control}


def _her_controls(run: Path, customer_id: str, inputs: Inputs) -> tuple[bool, set[str]]:
    """Whether the customer is in the run's universal control, and the offers of her per-offer
    control pairs, from the run's ``controls`` table (:func:`~optimizer.io.runview.read_run_arm`,
    Parquet or CSV; none without it: an older run)."""
    ids_int = {name: frame.schema[name].is_integer()
               for name, frame in (("customer_id", inputs.customers), ("offer_id", inputs.offers))}
    rows = (read_run_arm(run, "controls", ids_int, ("reason",), required=False)
            .filter(pl.col("customer_id").cast(pl.Utf8) == str(customer_id).strip()))
    universal = bool((rows.get_column("reason") == UNIVERSAL).any())
    pairs = rows.filter(pl.col("reason") == PER_OFFER).get_column("offer_id")
    return universal, {str(o) for o in pairs.to_list()}


def _customer_index(inputs: Inputs, customer_id: str) -> int:
    ids = inputs.customers.get_column("customer_id").cast(pl.Utf8)
    hits = np.flatnonzero((ids == str(customer_id).strip()).to_numpy())
    if hits.size == 0:
        raise OptimizerError(f"customer {customer_id!r} is not in the customers table")
    return int(hits[0])


def _scores(inputs: Inputs, scored: Scored, c: int, n_offers: int
            ) -> tuple[np.ndarray, np.ndarray]:
    """p_redeem and value of every offer for customer index ``c`` (0 where not scored): the
    affinity model's compiled scorer that built the run's blocks, or the ``scores`` rows."""
    n = n_offers
    p, value = np.zeros(n), np.zeros(n)
    if scored.model is not None:
        every = scored.model.select(np.array([c], dtype=np.int64), np.ones((1, n), dtype=bool),
                                    None, scored.cats.table[:, 0])
        p[every.offer], value[every.offer] = every.p_redeem, every.value
        return p, value
    assert inputs.scores is not None  # the scores path
    rows = inputs.scores.filter(pl.col("c") == c)
    o = rows.get_column("o").to_numpy().astype(np.int64)
    p[o], value[o] = rows.get_column("p_redeem").to_numpy(), rows.get_column("value").to_numpy()
    return p, value


def _prices(manifest: Manifest, offer_ids: list[str]) -> tuple[np.ndarray, np.ndarray, float]:
    """The run's final prices of each offer (0 for all without ``dual_prices``)."""
    if "dual_prices" not in manifest.data:
        return np.zeros(len(offer_ids)), np.zeros(len(offer_ids)), 0.0
    saved = manifest.dual_prices
    budget, count = saved.for_offers(offer_ids)
    return budget, count, saved.global_budget


def _campaign_prices(manifest: Manifest, problem: AssignmentProblem, budget: np.ndarray,
                     count: np.ndarray, glob: float) -> Prices:
    """The run's final prices as the solver held them: the offers' (``dual_prices``) and, from
    the manifest's records, each shared budget's (``funders``, then ``group_flights``, matched by
    name; 0 for one the manifest lacks) and each channel's and the contact budget's."""
    data = manifest.data
    funder = funder_of = None
    shared = problem.funders
    if shared is not None:
        saved = {("funder", r["funded_by"]): r.get("shadow_price") or 0.0
                 for r in data.get("funders") or []}
        saved.update({("flight", r["flight_id"]): r.get("shadow_price") or 0.0
                      for r in data.get("group_flights") or []})
        kinds = ["funder"] * shared.n_listed + ["flight"] * shared.n_flights
        funder = np.array([float(saved.get((k, n), 0.0)) for k, n in zip(kinds, shared.names)])
        funder_of = shared.of_offer
    channel, contact = None, 0.0
    if problem.channels is not None:
        by_channel = {r["channel_id"]: r.get("shadow_price") or 0.0
                      for r in data.get("channels") or []}
        channel = np.array([float(by_channel.get(n, 0.0)) for n in problem.channels.names])
        contact = float((data.get("contact_budget") or {}).get("shadow_price") or 0.0)
    return Prices(budget, count, glob, None, funder, funder_of, channel, contact)


def _channel_charge(problem: AssignmentProblem, prices: Prices, c: int) -> float:
    """Customer ``c``'s charge per assignment: her cheapest consented channel's (0 without
    channels or consent), as the solver prices it (:meth:`ChannelData.charges`)."""
    channels = problem.channels
    if channels is None:
        return 0.0
    charge, best = channels.charges(np.array([c], dtype=np.int64), prices.channel, prices.contact)
    return float(charge[0, best[0]]) if best[0] >= 0 else 0.0


def _previous_run(manifest: Manifest, scenario: Scenario) -> Path | None:
    """The ``--previous-run`` folder the run read last week's lists from, where its rules use
    them (None: ``history``, or no rule reads last week's lists)."""
    if not scenario.rules.pin and scenario.rules.change_penalty <= 0:
        return None
    source = (manifest.data.get("stability") or {}).get("previous")
    return Path(source) if source and not str(source).startswith("history week") else None


def _her_pins(scenario: Scenario, inputs: Inputs, previous: Any, c: int) -> np.ndarray:
    """Per offer, whether her pair is pinned this week (:mod:`optimizer.model.pins`): on her
    list last week and its offer's flight covering the week; all False without ``rules.pin``."""
    pinned = np.zeros(inputs.n_offers, dtype=bool)
    if not scenario.rules.pin or previous is None or previous.keys.size == 0:
        return pinned
    n = max(previous.n_offers, 1)
    mine = previous.keys[(previous.keys // n) == c] % n
    pinned[mine[mine < inputs.n_offers]] = True
    return pinned & in_flight(inputs.offers, scenario.week, inputs.flights)


def _warnings(run: Path, differences: list[str], given: dict[str, Any], index: dict[str, int],
              given_idx: list[int], offer_ids: list[str], value: np.ndarray) -> list[str]:
    """What may make the explanation differ from the run: a run made from other settings or
    inputs (``differences``: check refuses such a run; explain answers against the ones given),
    given offers no longer in the offers table, and scores that changed since the run."""
    warnings = []
    if SETTINGS_UNKNOWN in differences:  # an older manifest: said once, not per setting
        differences = [d for d in differences if d != SETTINGS_UNKNOWN]
        warnings.append(f"{run}: the settings it was made with are unknown (its manifest.json "
                        "records no 'scenario': an older manifest); the statuses and numbers "
                        "read the settings given here")
    if differences:
        warnings.append(f"{run} was made with another scenario or other inputs than these; the "
                        "statuses and numbers read these, not the run's (give explain the run's "
                        "own --set and inputs): " + "; ".join(differences))
    warnings += [f"offer {oid} is in the run but no longer in the offers table"
                 for oid in given if oid not in index]
    for j in given_idx:
        if abs(given[offer_ids[j]]["score"] - value[j]) > 1e-6 * max(1.0, abs(value[j])):
            warnings.append(f"offer {offer_ids[j]}: score {given[offer_ids[j]]['score']:.6g} in "
                            f"the run, {value[j]:.6g} recomputed now (inputs, scenario or scoring "
                            "changed since the run)")
    return warnings


def explain_customer(scenario: Scenario, customer_id: str, run_dir: str | Path | None = None
                     ) -> Explanation:
    """Explain the plan of ``customer_id`` in ``run_dir`` (default: the scenario's output)."""
    run = Path(run_dir) if run_dir is not None else scenario.output
    if not (run / "manifest.json").is_file() or not (run / "assignments.parquet").is_file():
        raise OptimizerError(f"{run} is not a run folder of this scenario (run it first)")
    manifest = read_run_manifest(run)
    inputs = load_inputs(scenario.data, customer_columns=read_columns(
        [r.require for r in scenario.rules.eligibility]), scores_url=scenario.scores_url)
    c = _customer_index(inputs, customer_id)
    # the run's own steps: its scoring, then the problem built for this customer alone (each
    # customer's candidates depend on her row only)
    scored = score_inputs(inputs, scenario, scenario.week)
    cats = scored.cats
    rules_cfg = scenario.rules
    offer_ids = [str(x) for x in inputs.offers.get_column("offer_id").to_list()]
    p, value = _scores(inputs, scored, c, inputs.n_offers)
    built = build_problem(inputs, scenario, cats, scored.model, rows=(c, c + 1),
                          previous_run=_previous_run(manifest, scenario))
    offers, rules, caps = built.problem.offers, built.rules, built.caps
    cost = p * offers.discount

    customers = np.array([c], dtype=np.int64)
    offer_row = np.arange(inputs.n_offers, dtype=np.int64)[None, :]
    reasons = {k: v[0] for k, v in rules.reasons(customers, offer_row).items()}
    candidate = np.zeros(inputs.n_offers, dtype=bool)
    for block in built.problem.blocks:
        candidate[block.offer[block.offer >= 0]] = True

    budget_price, count_price, global_price = _prices(manifest, offer_ids)
    prices = _campaign_prices(manifest, built.problem, budget_price, count_price, global_price)
    shared_price = prices.cost_price - budget_price  # her offers' funder or group flight price
    charge = _channel_charge(built.problem, prices, c)
    # the run's formula (optimizer.model.reduced), over her row of every offer, less her
    # channel charge (optimizer.solve.lagrangian.channels)
    reduced = reduced_values(value[None, :], cost[None, :], offer_row, prices.cost_price,
                             count_price, global_price, np.zeros(inputs.n_offers))[0] - charge
    mine = (read_run_table(run / "assignments.parquet", ("customer_id", "offer_id", "rank", "score"))
            .filter(pl.col("customer_id").cast(pl.Utf8) == str(customer_id).strip()))
    given = {str(r["offer_id"]): r for r in mine.to_dicts()}
    index = {oid: j for j, oid in enumerate(offer_ids)}
    given_idx = [index[o] for o in given if o in index]
    warnings = _warnings(run, run_differences(manifest.data, scenario, inputs), given, index,
                         given_idx, offer_ids, value)
    cap = int(caps[c])
    ctx = _Context(cats.table, cats.names, rules_cfg.max_offers_per_category, cap,
                   rules_cfg.max_offers_per_customer, given_idx, reduced, offer_ids,
                   budget_price, count_price, global_price, cost, shared_price, charge,
                   built.problem.groups, _her_pins(scenario, inputs, built.previous, c),
                   _consents_to_none(built.problem, c))
    universal, held_pairs = _her_controls(run, customer_id, inputs)
    for j in (index[o] for o in sorted(held_pairs) if o in index):
        ctx.withhold(j, "withheld: a per-offer control pair (measurement.offer_holdout_share); "
                        "the plan chose it")
    if universal:
        ctx.fill_universal(reasons, value, candidate)
    rows = []
    for j in range(inputs.n_offers):
        status, why = ctx.classify(j, given.get(offer_ids[j]), reasons, value, candidate)
        rows.append({
            "offer_id": inputs.offers.get_column("offer_id")[j], "status": status, "why": why,
            "rank": given[offer_ids[j]]["rank"] if offer_ids[j] in given else None,
            "categories": [cats.names[k] for k in cats.table[j] if k >= 0],
            "score": float(value[j]), "p_redeem": float(p[j]), "expected_cost": float(cost[j]),
            "budget_price": float(budget_price[j]), "count_price": float(count_price[j]),
            "shared_price": float(shared_price[j]), "channel_charge": charge,
            "reduced_value": float(reduced[j]), "pinned": bool(ctx.pinned[j]),
        })
    # given first by rank, then the ones withheld as controls, then by score
    rows.sort(key=lambda r: (r["rank"] is None, r["status"] != "control", r["rank"] or 0,
                             -r["score"]))
    return Explanation(customer_id=inputs.customers.get_column("customer_id")[c], run_dir=str(run),
                       cap=cap, max_offers_per_customer=rules_cfg.max_offers_per_customer,
                       global_price=global_price, offers=rows, warnings=warnings,
                       control=UNIVERSAL if universal else None)



def _consents_to_none(problem: AssignmentProblem, c: int) -> bool:
    """With the channels tables: whether customer ``c`` consented to no channel."""
    return problem.channels is not None and not problem.channels.consent[c].any()

@dataclass
class _Context:
    categories: np.ndarray
    names: list[str]
    per_category: int | None
    cap: int
    max_offers: int
    given: list[int]
    reduced: np.ndarray
    offer_ids: list[str]
    budget_price: np.ndarray
    count_price: np.ndarray
    global_price: float
    cost: np.ndarray
    shared_price: np.ndarray
    charge: float
    groups: GroupData | None
    pinned: np.ndarray
    no_channel: bool = False  # with channels: she consented to none
    withheld: dict[int, str] = field(default_factory=dict)

    def withhold(self, j: int, why: str) -> None:
        """Offer ``j`` was planned for her and withheld as a control: status ``control``, and it
        holds its slot, category and groups as a given offer does."""
        self.withheld[j] = why
        self.given.append(j)

    def fill_universal(self, reasons: dict[str, np.ndarray], value: np.ndarray,
                       candidate: np.ndarray) -> None:
        """She is a universal control (nothing sent, the plan's choice for her unrecorded):
        withhold, best reduced value first, each offer that beats the threshold and fits her
        cap, categories and groups."""
        for j in np.argsort(-self.reduced, kind="stable"):
            if len(self.given) >= self.cap or self.reduced[j] <= EPS:
                break
            j = int(j)
            if (j in self.withheld or any(mask[j] for mask in reasons.values())
                    or value[j] <= 0 or not candidate[j]):
                continue
            if self._category_rival(j) is None and self._group_rival(j) is None:
                self.withhold(j, "withheld: she is in the universal control "
                                 "(measurement.holdout_share); the plan's offers to her are not "
                                 f"recorded, this one beats the threshold (reduced "
                                 f"{self.reduced[j]:.4f}) and fits her caps")

    def classify(self, j: int, given: dict[str, Any] | None, reasons: dict[str, np.ndarray],
                 value: np.ndarray, candidate: np.ndarray) -> tuple[str, str]:
        r = self.reduced[j]
        if given is not None:
            return "given", f"rank {given['rank']}" + (", pinned" if self.pinned[j] else "")
        if j in self.withheld:
            return "control", self.withheld[j]
        broken = [name for name, mask in reasons.items() if mask[j]]
        if self.pinned[j]:
            return "pin_released", ("on her list last week, its flight runs: released, " + (
                "forbidden by " + ", ".join(broken) if broken else
                "she consented to no channel (no_channel_consent)" if self.no_channel else
                "not a candidate" if not candidate[j] or value[j] <= 0 else
                "by the capacity pass (caps, budgets or channels, counted by reason in the "
                "manifest's stability.pins) or withheld as a measurement control"))
        if broken:
            return "ineligible", "forbidden by " + ", ".join(broken)
        if value[j] <= 0:
            return "no_value", "score 0: nothing to gain"
        if not candidate[j]:
            return "not_candidate", "not among her best-scoring eligible offers"
        if r <= EPS:
            shared = f" + {self.shared_price[j]:.4f}" if self.shared_price[j] else ""
            return "priced_out", (f"{value[j]:.4f} - ({self.budget_price[j]:.4f}{shared} + "
                                  f"{self.global_price:.4f}) x {self.cost[j]:.4f}"
                                  + (f" - {self.count_price[j]:.4f}" if self.count_price[j] else "")
                                  + (f" - {self.charge:.4f} (channel)" if self.charge else "")
                                  + f" = {r:.4f} <= 0")
        same = self._category_rival(j)
        if same is not None:
            k, rival = same
            return "category_cap", (f"{self.names[k]} taken by offer {self.offer_ids[rival]} "
                                    f"(reduced {self.reduced[rival]:.4f} >= {r:.4f})")
        group = self._group_rival(j)
        if group is not None:
            return "group_cap", group
        if len(self.given) >= self.cap:
            weakest = min((self.reduced[g] for g in self.given), default=np.inf)
            if r <= weakest + EPS:
                kind = "window_cap" if self.cap < self.max_offers else "customer_cap"
                what = "window room" if kind == "window_cap" else "cap"
                return kind, (f"{what} {self.cap} full; weakest given reduced "
                              f"{weakest:.4f} >= {r:.4f}")
        return "repair", (f"reduced {r:.4f} beats the threshold; the final repair (exact "
                          "budgets and caps) left it out")

    def _category_rival(self, j: int) -> tuple[int, int] | None:
        if self.per_category is None:
            return None
        for k in self.categories[j][self.categories[j] >= 0]:
            holders = [g for g in self.given if k in self.categories[g]]
            if holders and len(holders) >= self.per_category:
                rival = min(holders, key=lambda g: self.reduced[g])
                if self.reduced[rival] + EPS >= self.reduced[j]:
                    return int(k), rival
        return None

    def _group_rival(self, j: int) -> str | None:
        """Why an offer group of ``j`` has no room for it (``None``: every group has)."""
        if self.groups is None:
            return None
        for g in self.groups.members[j][self.groups.members[j] >= 0]:
            limit, name = int(self.groups.limit[g]), self.groups.names[g]
            if limit == 0:
                return f"group {name} allows 0 offers per customer"
            holders = [h for h in self.given if g in self.groups.members[h]]
            if len(holders) >= limit:
                rival = min(holders, key=lambda h: self.reduced[h])
                if self.reduced[rival] + EPS >= self.reduced[j]:
                    return (f"group {name} full ({limit} per customer) with offer "
                            f"{self.offer_ids[rival]} (reduced {self.reduced[rival]:.4f} >= "
                            f"{self.reduced[j]:.4f})")
        return None
