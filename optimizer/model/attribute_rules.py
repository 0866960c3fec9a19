"""Rules on customers' columns (``[[rules.eligibility]]``): offers of a category go only to the
customers meeting a predicate (``require = "age_band >= 21"``).

Each rule is compiled once into two masks: the offers it covers (any of their categories is the
rule's ``offer_category``; every offer when it names none) and the customers who do NOT meet its
predicate (evaluated by polars from the parsed tree of :mod:`optimizer.core.predicate`, never by
Python's ``eval``). A pair is then forbidden when some rule covers the offer and the customer
fails it: a gather of two masks per chunk. The eligibility audit counts these pairs under
``customer_attribute``.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import polars as pl

from optimizer.core.config import Rules
from optimizer.core.predicate import parse, prepared, read_columns, to_polars
from optimizer.core.schemas import normalize_category_name
from optimizer.io.validate import Inputs
from optimizer.scoring.features import OfferCategories

REASON = "customer_attribute"


@dataclass(frozen=True)
class AttributeRules:
    """fails: ``(rules, n_customers)`` whether each customer fails each rule; covers:
    ``(rules, n_offers)`` whether each rule covers each offer."""

    fails: np.ndarray
    covers: np.ndarray

    def forbidden(self, customers: np.ndarray, offer: np.ndarray) -> np.ndarray:
        """Mask of a chunk's candidates some rule forbids (empty slots never forbidden)."""
        safe = np.maximum(offer, 0)
        out = np.zeros(offer.shape, dtype=bool)
        for fails, covers in zip(self.fails, self.covers):
            out |= fails[customers][:, None] & covers[safe]
        return out & (offer >= 0)


def attribute_columns(rules: Rules) -> tuple[str, ...]:
    """The customers columns the scenario's ``rules.eligibility`` read (to load them)."""
    return read_columns([rule.require for rule in rules.eligibility])


def compile_attribute_rules(inputs: Inputs, rules: Rules, cats: OfferCategories
                            ) -> AttributeRules | None:
    """The masks of the scenario's rules (``None`` without any)."""
    if not rules.eligibility:
        return None
    attributes = inputs.customer_attributes
    assert attributes is not None, "load_inputs(customer_columns=attribute_columns(...))"
    fails, covers = [], []
    for rule in rules.eligibility:
        node = parse(rule.require)  # parsed when the scenario was read: it parses
        frame = prepared(attributes, node)
        meets = frame.select(to_polars(node)).to_series().to_numpy()
        fails.append(~meets.astype(bool))
        cover = np.zeros(inputs.n_offers, dtype=bool)
        if rule.offer_category is None:
            cover[:] = True
        else:
            name = normalize_category_name(rule.offer_category)
            cover[cats.pairs.filter(pl.col("category") == name).get_column("o").to_numpy()] = True
        covers.append(cover)
    return AttributeRules(np.stack(fails), np.stack(covers))
