"""The synthetic retailer's world (``offeropt demo-data``): its categories, catalogue, customer
segments and latent tastes, and its offers (see :mod:`optimizer.apps.synthetic`).
"""
from __future__ import annotations

import numpy as np
import pyarrow as pa

# power: the C library's pow, as the fits' (numpy's ``**`` on arrays rounds by CPU, and the
# demo data must be the same bytes on every machine: tests/test_cpu_rounding.py)
from optimizer.core.numerics import fixed_dot, power

# (commodity, department, typical shelf price) roughly in order of popularity (rank -> Zipf weight).
# The sensitive categories and the niche ones sit in the tail.
CATEGORIES: list[tuple[str, str, float]] = [
    ("SOFT DRINKS", "GROCERY", 3.5),
    ("FLUID MILK PRODUCTS", "GROCERY", 2.8),
    ("BAKED BREAD/BUNS/ROLLS", "GROCERY", 2.6),
    ("CHEESE", "GROCERY", 3.8),
    ("BAG SNACKS", "GROCERY", 3.0),
    ("BEEF", "MEAT", 7.5),
    ("TROPICAL FRUIT", "PRODUCE", 1.8),
    ("COLD CEREAL", "GROCERY", 3.6),
    ("VEGETABLES - ALL OTHERS", "PRODUCE", 1.9),
    ("FROZEN PIZZA", "GROCERY", 4.5),
    ("YOGURT", "GROCERY", 1.6),
    ("LUNCHMEAT", "MEAT-PCKGD", 3.9),
    ("BEERS/ALES", "GROCERY", 11.0),
    ("EGGS", "GROCERY", 2.2),
    ("CHICKEN", "MEAT", 6.5),
    ("SOUP", "GROCERY", 1.7),
    ("FRZN MEAT/MEAT DINNERS", "GROCERY", 3.4),
    ("CANDY - PACKAGED", "GROCERY", 2.9),
    ("COOKIES/CONES", "GROCERY", 3.1),
    ("CRACKERS/MISC BKD FD", "GROCERY", 2.9),
    ("ICE CREAM/MILK/SHERBTS", "GROCERY", 4.2),
    ("PORK", "MEAT", 6.0),
    ("VEGETABLES - SHELF STABLE", "GROCERY", 1.1),
    ("DRY BN/VEG/POTATO/RICE", "GROCERY", 1.9),
    ("CONDIMENTS/SAUCES", "GROCERY", 2.7),
    ("COFFEE", "GROCERY", 7.0),
    ("CANNED JUICES", "GROCERY", 2.6),
    ("POTATOES", "PRODUCE", 3.2),
    ("BERRIES", "PRODUCE", 3.5),
    ("HOT DOGS", "MEAT-PCKGD", 3.3),
    ("DELI MEATS", "DELI", 5.5),
    ("BATH TISSUES", "GROCERY", 6.5),
    ("LAUNDRY DETERGENTS", "GROCERY", 8.5),
    ("DOG FOODS", "GROCERY", 9.0),
    ("CAT FOOD", "GROCERY", 6.0),
    ("SEAFOOD - FROZEN", "SEAFOOD", 7.0),
    ("ORAL HYGIENE PRODUCTS", "DRUG GM", 3.9),
    ("HAIR CARE PRODUCTS", "DRUG GM", 5.5),
    ("COLD AND FLU", "DRUG GM", 7.5),
    ("VITAMINS", "DRUG GM", 9.5),
    ("BABY FOODS", "GROCERY", 1.4),
    ("DIETARY AID PRODUCTS", "DRUG GM", 8.0),
    ("INFANT FORMULA", "GROCERY", 22.0),
    ("FAMILY PLANNING", "DRUG GM", 11.0),
]


SENSITIVE_CATEGORIES = ("FAMILY PLANNING", "DIETARY AID PRODUCTS", "INFANT FORMULA")


# Share of customers who buy each sensitive category at all (INFANT FORMULA depends on segment).
_SENSITIVE_BUYERS = {"FAMILY PLANNING": 0.08, "DIETARY AID PRODUCTS": 0.10}


SEGMENTS = ["YOUNG SINGLES", "YOUNG FAMILIES", "ESTABLISHED FAMILIES", "MATURE COUPLES", "RETIREES"]


_SEGMENT_SHARE = np.array([0.18, 0.20, 0.22, 0.22, 0.18])


_SEGMENT_ACTIVITY = np.array([0.7, 1.2, 1.35, 1.0, 0.85])  # relative number of lines


_SEGMENT_TILT = {  # category preference multipliers per segment
    "YOUNG SINGLES": {"BEERS/ALES": 2.5, "FROZEN PIZZA": 2.0, "SOFT DRINKS": 1.5, "BAG SNACKS": 1.6,
                      "BABY FOODS": 0.05, "COFFEE": 1.3, "DOG FOODS": 0.6},
    "YOUNG FAMILIES": {"BABY FOODS": 8.0, "FLUID MILK PRODUCTS": 1.5, "COLD CEREAL": 1.6,
                       "YOGURT": 1.6, "BEERS/ALES": 0.7, "CANDY - PACKAGED": 1.2},
    "ESTABLISHED FAMILIES": {"COLD CEREAL": 1.4, "FROZEN PIZZA": 1.4, "BAG SNACKS": 1.3,
                             "BEEF": 1.3, "BABY FOODS": 0.3, "SOFT DRINKS": 1.3},
    "MATURE COUPLES": {"COFFEE": 1.5, "CHEESE": 1.2, "BEERS/ALES": 1.2, "BABY FOODS": 0.1,
                       "BERRIES": 1.3},
    "RETIREES": {"SOUP": 2.0, "COFFEE": 1.7, "VITAMINS": 2.5, "COLD AND FLU": 1.5,
                 "BABY FOODS": 0.1, "FROZEN PIZZA": 0.5, "BEERS/ALES": 0.6, "SOFT DRINKS": 0.6},
}


_BRAND_PREFIX = ["Sun", "Golden", "Blue", "Green", "Happy", "Royal", "Fresh", "Maple", "River",
                 "Silver", "Lucky", "Mountain", "Prairie", "Ocean", "Harvest", "Country", "Valley",
                 "Crystal", "Sweet", "Morning", "Red", "Oak", "Pine", "Star", "Bright", "Heritage",
                 "Northern", "Summit", "Meadow", "Cedar", "Hill", "Liberty", "Eagle", "Sunny",
                 "Prime", "Orchard", "Lake", "Willow"]


_BRAND_SUFFIX = ["field", "crest", "brook", "dale", "wood", "ridge", "land", "vale", "stone",
                 "gate", " Farms", " Foods", " Kitchen", " & Co", " Naturals", " Select", "'s",
                 " Brothers", " Pantry", " Classic"]


PRIVATE_LABEL = "Private"


def _ensure_counts(name: str, value: int, minimum: int) -> int:
    if isinstance(value, bool) or int(value) != value or value < minimum:
        raise ValueError(f"{name} must be an integer >= {minimum}, got {value!r}")
    return int(value)


# --------------------------------------------------------------------------------------------
# Catalogue: categories, brands, products
# --------------------------------------------------------------------------------------------
class _Catalog:
    """Categories, brand groups and products (internal index order = grouped by category, brand)."""

    def __init__(self, rng: np.random.Generator, n_products: int):
        names = [c[0] for c in CATEGORIES]
        self.names = names
        self.departments = [c[1] for c in CATEGORIES]
        C = len(names)
        self.C = C
        rank = np.arange(1, C + 1, dtype=np.float64)
        pop = 1.0 / power(rank, 0.9)
        self.popularity = pop / pop.sum()
        self.index = {n: i for i, n in enumerate(names)}
        self.sensitive = np.array([n in SENSITIVE_CATEGORIES for n in names])

        # products per category: at least 8, the rest in proportion to popularity^0.6
        base = 8
        weights = power(self.popularity, 0.6)
        extra = max(n_products - base * C, 0)
        share = weights / weights.sum() * extra
        n_cat = base + np.floor(share).astype(np.int64)
        rest = n_products - int(n_cat.sum())
        if rest > 0:
            order = np.argsort(-(share - np.floor(share)), kind="stable")
            n_cat[order[:rest]] += 1
        self.n_cat = n_cat

        brand_pool = [p + s for p in _BRAND_PREFIX for s in _BRAND_SUFFIX]
        group_cat: list[int] = []
        group_brand: list[str] = []
        group_size: list[int] = []
        group_weight: list[float] = []
        for k in range(C):
            nk = int(n_cat[k])
            n_brands = int(min(nk, 3 + nk // 20, 30))
            national = rng.choice(len(brand_pool), size=n_brands - 1, replace=False)
            brands = [PRIVATE_LABEL] + [brand_pool[i] for i in national]
            # Zipf-like brand shares in a random order; the private label is usually a top-3 brand
            w = 1.0 / power(np.arange(1.0, n_brands + 1), 1.1)
            w = w[rng.permutation(n_brands)]
            w[0] = max(w[0], np.sort(w)[-min(3, n_brands)])
            w = w / w.sum()
            # SKUs per brand: one each, the rest in proportion to sqrt(share)
            sizes = np.ones(n_brands, dtype=np.int64)
            if nk > n_brands:
                sw = np.sqrt(w)
                sizes += rng.multinomial(nk - n_brands, sw / sw.sum())
            group_cat += [k] * n_brands
            group_brand += brands
            group_size += sizes.tolist()
            group_weight += w.tolist()
        self.group_cat = np.array(group_cat, dtype=np.int64)
        self.group_brand = group_brand
        self.group_size = np.array(group_size, dtype=np.int64)
        self.group_start = np.concatenate([[0], np.cumsum(self.group_size)[:-1]])
        gw = np.array(group_weight)
        # flat cumulative brand shares: category k occupies (k, k+1]; searchsorted(k + u) -> group
        cum = np.empty(len(gw))
        for k in range(C):
            sel = self.group_cat == k
            cum[sel] = k + np.cumsum(gw[sel])
            cum[np.flatnonzero(sel)[-1]] = k + 1.0
        self.group_cum = cum
        self.group_weight = gw

        P = int(self.group_size.sum())
        self.P = P
        self.prod_group = np.repeat(np.arange(len(gw)), self.group_size)
        self.prod_cat = self.group_cat[self.prod_group]
        base_price = np.array([c[2] for c in CATEGORIES])
        private = np.array([b == PRIVATE_LABEL for b in group_brand])[self.prod_group]
        price = base_price[self.prod_cat] * rng.lognormal(0.0, 0.35, P) * np.where(private, 0.75, 1.0)
        self.prod_price = np.maximum(np.round(price, 2), 0.19)
        # product ids: increasing integers with gaps, assigned in a random order
        ids = 100_000 + np.cumsum(rng.integers(1, 60, size=P))
        self.prod_id = ids[rng.permutation(P)].astype(np.int64)
        self.max_product_id = int(ids[-1])

    def sample_group(self, cat: np.ndarray, u: np.ndarray) -> np.ndarray:
        """Brand group of category ``cat`` drawn by brand share (vectorised)."""
        g = np.searchsorted(self.group_cum, cat + u, side="right")
        return np.minimum(g, len(self.group_cum) - 1)

    def products_table(self) -> pa.Table:
        order = np.argsort(self.prod_id, kind="stable")
        cats = pa.array(self.names)
        deps = pa.array(self.departments)
        brands = pa.array(self.group_brand)
        return pa.table({
            "product_id": pa.array(self.prod_id[order], pa.int64()),
            "category": cats.take(pa.array(self.prod_cat[order])),
            "department": deps.take(pa.array(self.prod_cat[order])),
            "brand": brands.take(pa.array(self.prod_group[order])),
        })


# --------------------------------------------------------------------------------------------
# Customers' latent traits
# --------------------------------------------------------------------------------------------
def _customer_latents(rng: np.random.Generator, n: int, cat: _Catalog, weeks: int) -> dict:
    C = cat.C
    seg = np.searchsorted(np.cumsum(_SEGMENT_SHARE), rng.random(n), side="right")
    seg = np.minimum(seg, len(SEGMENTS) - 1)
    # activity: lognormal with mean 1 (heavy tail), times the segment's level
    sigma = 1.0
    act = rng.lognormal(-sigma * sigma / 2, sigma, n) * _SEGMENT_ACTIVITY[seg]
    mean_lines = 40.0 * weeks / 26.0 * act / fixed_dot(_SEGMENT_ACTIVITY, _SEGMENT_SHARE)

    tilt = np.ones((len(SEGMENTS), C))
    for s, name in enumerate(SEGMENTS):
        for cname, f in _SEGMENT_TILT[name].items():
            tilt[s, cat.index[cname]] = f
    alpha = 8.0 * cat.popularity[None, :] * tilt[seg]
    g = rng.standard_gamma(alpha)

    # sensitive categories: bought by a minority only
    buyers = {}
    for name in SENSITIVE_CATEGORIES:
        if name == "INFANT FORMULA":
            share: np.ndarray | float = np.where(seg == 1, 0.30, np.where(seg == 2, 0.04, 0.01))
        else:
            share = _SENSITIVE_BUYERS[name]
        b = rng.random(n) < share
        k = cat.index[name]
        g[:, k] = np.where(b, rng.standard_gamma(2.0, n) * 0.05 * 8.0 / 2.0, 0.0)
        buyers[name] = b

    # category excludes (religion, abstinence, ...): such customers do not buy PORK / BEERS/ALES
    ex_pork = rng.random(n) < 0.04
    ex_beer = rng.random(n) < 0.03
    ex_other = rng.random(n) < 0.01
    nonsensitive = np.flatnonzero(~cat.sensitive & ~np.isin(np.arange(C), [cat.index["PORK"],
                                                                          cat.index["BEERS/ALES"]]))
    ex_other_cat = nonsensitive[rng.integers(0, len(nonsensitive), n)]
    g[ex_pork, cat.index["PORK"]] = 0.0
    g[ex_beer, cat.index["BEERS/ALES"]] = 0.0
    tot = g.sum(axis=1, keepdims=True)
    empty = tot[:, 0] <= 0
    g[empty] = cat.popularity * ~cat.sensitive
    tot[empty] = g[empty].sum(axis=1, keepdims=True)
    pref = g / tot

    fav_group = cat.sample_group(np.arange(C)[None, :], rng.random((n, C))).astype(np.int32)
    return {
        "seg": seg, "act": act, "mean_lines": mean_lines, "pref": pref, "fav_group": fav_group,
        "loyalty": rng.beta(4.0, 2.0, n), "price_sens": rng.beta(1.5, 4.0, n),
        "buyers": buyers, "ex_pork": ex_pork, "ex_beer": ex_beer, "ex_other": ex_other,
        "ex_other_cat": ex_other_cat,
        "value_factor": act ** 0.5 * rng.lognormal(-0.18, 0.6, n),
    }


# --------------------------------------------------------------------------------------------
# Offers
# --------------------------------------------------------------------------------------------
class _Offers:
    def __init__(self, rng: np.random.Generator, M: int, N: int, cat: _Catalog, buyers: np.ndarray,
                 planning_week: int):
        C = cat.C
        self.M = M
        self.ids = np.arange(1001, 1001 + M, dtype=np.int64)
        # retired offers (ids below the current range) still appear in history
        self.ghost_ids = np.arange(901, 1001, dtype=np.int64)
        perm = rng.permutation(M)
        n_nocat = int(round(0.4 * M))
        nocat = np.zeros(M, bool)
        nocat[perm[:n_nocat]] = True
        multi = np.zeros(M, bool)
        if n_nocat:
            multi[perm[:max(1, int(round(0.1 * n_nocat)))]] = True
        catpos = perm[n_nocat:]
        sens_idx = np.flatnonzero(cat.sensitive)
        n_sens = min(len(catpos), max(1, int(round(0.03 * M)))) if M >= 5 else 0

        w_cat = power(cat.popularity, 0.7) * ~cat.sensitive
        w_cat = w_cat / w_cat.sum()
        primary = rng.choice(C, size=M, p=w_cat)
        primary[catpos[:n_sens]] = sens_idx[rng.integers(0, len(sens_idx), n_sens)]
        self.primary = primary

        category, brand, funded, cats_of, op_offer, op_prod = self._products(
            rng, cat, primary, nocat, multi, w_cat)
        self.category, self.brand, self.funded = category, brand, funded
        self.cats_of = cats_of
        self.nocat, self.multi = nocat, multi
        self.sensitive = np.array([any(cat.sensitive[k] for k in cs) for cs in cats_of])

        self._windows(rng, M, planning_week, perm)
        self._money(rng, M, N, buyers, cats_of)
        # how often campaigns used each offer (for history) and its appeal (for scores)
        self.appeal = rng.lognormal(0.0, 0.5, M)
        self.op_offer = np.concatenate(op_offer) if op_offer else np.zeros(0, np.int64)
        self.op_prod = np.concatenate(op_prod) if op_prod else np.zeros(0, np.int64)

    def _products(self, rng: np.random.Generator, cat: _Catalog, primary: np.ndarray,
                  nocat: np.ndarray, multi: np.ndarray, w_cat: np.ndarray) -> tuple[
                      list[str | None], list[str | None], list[str], list[set[int]],
                      list[np.ndarray], list[np.ndarray]]:
        """Each offer's category (or none), brand and funder, its categories and the products
        it lists (offer, product pairs)."""
        M, C = self.M, cat.C
        category: list[str | None] = [None] * M
        brand: list[str | None] = [None] * M
        funded: list[str] = ["retailer"] * M
        op_offer: list[np.ndarray] = []
        op_prod: list[np.ndarray] = []
        cats_of: list[set[int]] = [set() for _ in range(M)]
        group_brand = cat.group_brand
        for j in range(M):
            k = int(primary[j])
            groups = np.flatnonzero(cat.group_cat == k)
            if not nocat[j]:
                category[j] = cat.names[k]
                cats_of[j].add(k)
                if rng.random() < 0.4 and len(groups) > 1:  # a national brand's offer
                    g = int(groups[1 + rng.integers(0, len(groups) - 1)])
                    brand[j] = group_brand[g]
                    if rng.random() < 0.7:
                        funded[j] = group_brand[g]
                    if rng.random() < 0.5:  # lists the brand's products too
                        s, z = cat.group_start[g], cat.group_size[g]
                        op_prod.append(np.arange(s, s + z))
                        op_offer.append(np.full(z, j))
                continue
            n_p = int(rng.integers(2, 21))
            ks = [k]
            if multi[j]:  # a second, different (non-sensitive) category
                w2 = w_cat.copy()
                w2[k] = 0.0
                ks.append(int(rng.choice(C, p=w2 / w2.sum())))
            chosen = []
            for i, kk in enumerate(ks):
                pool = np.flatnonzero(cat.prod_cat == kk)
                take = min(len(pool), n_p if len(ks) == 1 else max(1, n_p // 2 + (i == 0) * (n_p % 2)))
                chosen.append(rng.choice(pool, size=take, replace=False))
                cats_of[j].add(kk)
            prods = np.sort(np.concatenate(chosen))
            op_prod.append(prods)
            op_offer.append(np.full(len(prods), j))
            gs = np.unique(cat.prod_group[prods])
            if len(gs) == 1 and group_brand[gs[0]] != PRIVATE_LABEL:
                funded[j] = group_brand[gs[0]]
        return category, brand, funded, cats_of, op_offer, op_prod

    def _windows(self, rng: np.random.Generator, M: int, planning_week: int,
                 perm: np.ndarray) -> None:
        """Eligibility windows (start and end weeks, open bounds) and which offers are active."""
        # ~10% inactive in the planning week, some open bounds
        start = planning_week - rng.integers(0, 5, M)
        end = planning_week + rng.integers(0, 7, M)
        state = rng.random(M)
        ended = state < 0.05
        future = (state >= 0.05) & (state < 0.10)
        end = np.where(ended, planning_week - rng.integers(1, 5, M), end)
        start = np.where(ended, end - rng.integers(1, 6, M), start)
        start = np.where(future, planning_week + rng.integers(1, 5, M), start)
        end = np.where(future, start + rng.integers(1, 6, M), end)
        if M >= 10:  # at least one of each kind in small demos
            ended[perm[-1]], future[perm[-1]] = True, False
            end[perm[-1]], start[perm[-1]] = planning_week - 2, planning_week - 5
        self.active = ~(ended | future)
        open_start = self.active & (rng.random(M) < 0.12)
        open_end = self.active & (rng.random(M) < 0.12)
        self.start = np.where(open_start, -1, start)
        self.end = np.where(open_end, -1, end)
        self.open_start, self.open_end = open_start, open_end

    def _money(self, rng: np.random.Generator, M: int, N: int, buyers: np.ndarray,
               cats_of: list[set[int]]) -> None:
        """Discounts, margins, budgets, targets and caps."""
        # money: discount (cost of one redemption), margin (incremental margin of one redemption)
        levels = np.array([0.5, 0.75, 1.0, 1.25, 1.5, 2.0, 2.5, 3.0, 4.0, 5.0])
        lw = np.array([6, 8, 14, 8, 10, 12, 7, 6, 4, 3], float)
        self.discount = rng.choice(levels, size=M, p=lw / lw.sum())
        self.margin = np.round(np.clip(self.discount * rng.uniform(0.4, 1.6, M)
                                       + rng.normal(0, 0.15, M), 0.2, 3.0), 2)

        # Budgets. With up to 5 offers per customer the typical offer reaches about
        # fair = 5 * N / (active offers) customers, more for offers in popular categories
        # (relative number of category buyers), and costs p * discount per customer with a
        # typical p_redeem of ~0.1. budget = U(0.3, 2.0) x that expected demand, so offers drawn
        # below ~1x (about 40%) -- and popular offers drawn a bit above -- bind. ~15% have no cap.
        n_active = max(int(self.active.sum()), 1)
        fair = 5.0 * N / n_active
        b_off = np.array([max(buyers[k] for k in cs) for cs in cats_of])
        rel = np.clip(b_off / max(b_off.mean(), 1e-9), 0.2, 3.0)
        demand = fair * rel * 0.1 * self.discount
        budget = np.round(rng.uniform(0.3, 2.0, M) * demand, 2)
        self.no_budget = rng.random(M) < 0.15
        self.budget = budget
        # targets and caps
        self.min_c = np.where(self.active & (rng.random(M) < 0.05),
                              np.maximum(1, np.round(rng.uniform(0.05, 0.25, M) * fair * rel)), -1)
        self.max_c = np.where(rng.random(M) < 0.10,
                              np.maximum(1, np.round(rng.uniform(0.3, 1.0, M) * fair * rel)), -1)
        both = (self.min_c >= 0) & (self.max_c >= 0)
        self.max_c = np.where(both, np.maximum(self.max_c, self.min_c), self.max_c)
        self.min_c = self.min_c.astype(np.int64)
        self.max_c = self.max_c.astype(np.int64)

    def offers_table(self) -> pa.Table:
        def opt_int(a, missing):
            return pa.array(a, pa.int64(), mask=missing)
        return pa.table({
            "offer_id": pa.array(self.ids, pa.int64()),
            "discount": pa.array(self.discount, pa.float64()),
            "budget": pa.array(self.budget, pa.float64(), mask=self.no_budget),
            "category": pa.array(self.category, pa.string()),
            "brand": pa.array(self.brand, pa.string()),
            "margin": pa.array(self.margin, pa.float64()),
            "min_customers": opt_int(self.min_c, self.min_c < 0),
            "max_customers": opt_int(self.max_c, self.max_c < 0),
            "start_week": opt_int(self.start, self.open_start),
            "end_week": opt_int(self.end, self.open_end),
            "funded_by": pa.array(self.funded, pa.string()),
        })

    def offer_products_table(self, cat: _Catalog) -> pa.Table:
        return pa.table({
            "offer_id": pa.array(self.ids[self.op_offer], pa.int64()),
            "product_id": pa.array(cat.prod_id[self.op_prod], pa.int64()),
        })
