"""The scenario: one TOML file, read into frozen pydantic models that reject unknown keys.

Every knob has a documented default. Paths (`data`, `output`) are relative to the TOML file that
names them. A scenario may say ``extends = "other.toml"``: the other file is read first and this
file's keys override it, table by table. ``--set section.knob=value`` overrides come last; each
sets one knob to a scalar or a list (a whole table or ``extends`` is refused).
"""
from __future__ import annotations

import copy
import tomllib
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from optimizer.core.errors import ScenarioError


def _floats(data: Any, keys: tuple[str, ...]) -> Any:
    """TOML writes ``1`` for a float knob; strict mode would refuse it, so widen ints here."""
    if not isinstance(data, dict):
        return data
    out = dict(data)
    for key in keys:
        value = out.get(key)
        if isinstance(value, int) and not isinstance(value, bool):
            out[key] = float(value)
    return out


# the largest whole number any knob takes: arrays hold caps, weeks and seeds as 32-bit integers
# (a cap of 2**63 - 1 overflowed them); weeks stay far below, so week arithmetic cannot overflow
MAX_INT_KNOB = 2**31 - 1
MAX_WEEK = 10**6
_WEEK_KNOBS = frozenset({"week", "cooldown_weeks", "window_weeks", "clv_horizon_weeks",
                         "label_weeks", "train_weeks"})
# the documented range of amounts (docs/contract.md, "Values"; the input tables' too, checked in
# optimizer/io/validate.py) and of factors that multiply them: products of the two stay
# far from overflow even summed over billions of pairs
MAX_AMOUNT = 1e15
MAX_FACTOR = 1e6


class _Frozen(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid", strict=True, allow_inf_nan=False)

    @model_validator(mode="before")
    @classmethod
    def _whole_numbers_in_range(cls, data: Any) -> Any:
        if not isinstance(data, dict):
            return data
        for key, value in data.items():
            if isinstance(value, int) and not isinstance(value, bool):
                top = MAX_WEEK if key in _WEEK_KNOBS else MAX_INT_KNOB
                if abs(value) > top:
                    raise ValueError(f"{key} = {value} is out of range: whole-number knobs are "
                                     f"at most {top:,} in absolute value")
        return data


class EligibilityRule(_Frozen):
    """One ``[[rules.eligibility]]`` entry: offers of ``offer_category`` (every offer when
    omitted) go only to customers meeting ``require``, a predicate over customers' columns in
    the grammar of :mod:`optimizer.core.predicate` (parsed, never evaluated as Python)."""

    offer_category: str | None = Field(None, description="offers with this category (any of "
                                       "their categories); none = every offer")
    require: str = Field(description="predicate over customers columns, e.g. age_band >= 21")

    @model_validator(mode="after")
    def _parses(self) -> "EligibilityRule":
        from optimizer.core.predicate import PredicateError, parse

        try:
            parse(self.require)
        except PredicateError as exc:
            raise ValueError(f"require = {self.require!r} is not a valid predicate: {exc}"
                             ) from None
        return self


class Rules(_Frozen):
    """Hard rules of the plan (see docs/contract.md, "How each rule reads")."""

    max_offers_per_customer: int = Field(5, ge=0, description="offers per customer this week")
    max_offers_per_category: int | None = Field(
        None, ge=0, description="offers per customer per category; none = no cap"
    )
    cooldown_weeks: int = Field(
        0, ge=0, description="an offer is not re-sent to a customer within this many weeks"
    )
    max_offers_per_window: int | None = Field(
        None, ge=0, description="cap over a rolling window: this run plus history in the window"
    )
    window_weeks: int = Field(4, ge=1, description="length of the rolling window, this week included")
    global_budget: float | None = Field(None, ge=0, le=MAX_AMOUNT,
                                        description="cap on total expected spend")
    budget_scale: float = Field(1.0, ge=0, le=MAX_FACTOR,
                                description="multiplies every offer budget")
    sensitive_categories: tuple[str, ...] = Field((), description="categories under the policy")
    sensitive_policy: Literal["opt_in", "exclude", "allow"] = "opt_in"
    excluded_categories: tuple[str, ...] = Field(
        (), description="offers with any of these categories go to nobody this run"
    )
    pacing: Literal["even", "front_loaded", "forecast"] = Field(
        "even", description="how a flight's remaining budget is shared over its remaining weeks "
        "(optimizer/model/flights.py)")
    change_penalty: float = Field(
        0.0, ge=0, le=MAX_AMOUNT, description="value lost per slot of last week's list that this "
        "week's list drops (optimizer/model/stability.py); 0 = off")
    pin: bool = Field(
        False, description="keep each offer of last week's lists on the customer's list while "
        "its flight runs, unless a rule forbids it (optimizer/model/pins.py)")
    contact_budget: float | None = Field(
        None, ge=0, le=MAX_AMOUNT, description="cap on the plan's total contact cost (channels' "
        "cost_per_contact; optimizer/model/channels.py); needs the channels tables")
    eligibility: tuple[EligibilityRule, ...] = Field(
        (), description="rules on customers' columns: an offer category goes only to customers "
        "meeting a predicate ([[rules.eligibility]] offer_category, require)")

    @model_validator(mode="before")
    @classmethod
    def _coerce_lists(cls, data: Any) -> Any:
        for key in ("sensitive_categories", "excluded_categories", "eligibility"):
            if isinstance(data, dict) and isinstance(data.get(key), list):
                data = {**data, key: tuple(data[key])}
        return _floats(data, ("global_budget", "budget_scale", "change_penalty", "contact_budget"))


class Objective(_Frozen):
    """Weights of the score the solver maximises when affinity is computed by the optimizer.

    ``score = p_redeem * max(margin_weight * margin + redemption_value - discount_weight *
    discount, 0) * clv_factor`` where ``clv_factor = (clv / mean clv) ** clv_weight`` clipped to
    ``[clv_floor, clv_cap]`` and ``clv`` is the BG/NBD x Gamma-Gamma value over
    ``clv_horizon_weeks`` (see ``optimizer/scoring/clv.py``).
    With a ``scores`` table the table's ``value`` is the score and these weights are unused."""

    margin_weight: float = Field(1.0, ge=0, le=MAX_FACTOR,
                                 description="weight of the offer's incremental margin")
    redemption_value: float = Field(
        1.0, ge=0, le=MAX_AMOUNT, description="value of one redemption beyond its margin (engagement, traffic)"
    )
    clv_weight: float = Field(0.5, ge=0, le=MAX_FACTOR,
                              description="exponent on the customer's relative CLV")
    clv_floor: float = Field(0.1, gt=0, le=MAX_FACTOR, description="lowest relative CLV factor")
    clv_cap: float = Field(10.0, gt=0, le=MAX_FACTOR, description="highest relative CLV factor")
    clv_horizon_weeks: int = Field(
        52, ge=1, description="weeks of future purchases valued by the lifetime-value model")
    discount_weight: float = Field(
        0.0, ge=0, le=MAX_FACTOR, description="weight of the offer's discount, subtracted from a redemption's worth "
        "(0: the margin is already net of the discount)")
    clv_min_repeat_customers: int = Field(
        30, ge=1, description="fewest repeat customers to fit BG/NBD x Gamma-Gamma, else run rate")

    @model_validator(mode="before")
    @classmethod
    def _ints_to_floats(cls, data: Any) -> Any:
        return _floats(data, ("margin_weight", "redemption_value", "clv_weight", "clv_floor", "clv_cap",
                              "discount_weight"))


class Affinity(_Frozen):
    """Knobs of the built-in customer-first affinity model (see ``optimizer/scoring/affinity.py``)."""

    half_life_weeks: float = Field(8.0, gt=0, description="recency decay of purchases")
    category_weight: float = Field(1.0, ge=0)
    brand_weight: float = Field(0.5, ge=0)
    product_weight: float = Field(1.5, ge=0)
    p_floor: float = Field(0.005, ge=0, le=1, description="p_redeem of a customer with no affinity")
    p_max: float = Field(0.35, ge=0, le=1, description="p_redeem approached at full affinity")
    half_saturation: float = Field(0.15, gt=0, description="affinity at which p is halfway")
    candidates_per_customer: int = Field(
        50, ge=1, description="keep this many best-scoring eligible offers per customer")
    pricing_rounds: int = Field(
        0, ge=0, le=10, description="after the solve, at most this many rounds of column "
        "generation: left-out pairs with a positive reduced value at the final prices join the "
        "candidates and the solve goes on from those prices (optimizer/apps/solve_stage.py)")
    bound_all_candidates: bool = Field(
        True, description="after the solve, re-score every chunk to bound the plan over all "
        "eligible pairs (manifest candidates); costs one more scoring pass")
    model: Literal["repurchase", "fitted", "heuristic"] = Field(
        "repurchase", description="repurchase: logistic on product-level repurchase and response "
        "features (optimizer/scoring/repurchase.py), falling back to the heuristic formula, "
        "calibrated (Platt scaling), where it ranks the held-out sends better with confidence "
        "(paired bootstrap), and to fitted when it cannot be fitted; "
        "fitted: logistic propensity (optimizer/scoring/propensity.py); heuristic: the formula with the "
        "weights above")
    train_weeks: int = Field(
        52, ge=1, description="the repurchase model learns from the sends of this many weeks "
        "before the planning week, each with features as of its own week")
    label_weeks: int = Field(
        4, ge=1, description="the propensity learns from the sends (or purchases) of this many "
        "weeks before the planning week, with features as of their start")
    proxy_redemption_rate: float = Field(
        0.1, ge=0, le=1, description="without redemptions: p_redeem = this x P(buys the category)")
    max_training_pairs: int = Field(
        500_000, ge=100, description="pairs sampled to fit the propensity (seeded by solver.seed)")
    min_positives: int = Field(
        20, ge=1, description="fewest redemptions (or purchases) to fit; else the next fallback")

    @model_validator(mode="before")
    @classmethod
    def _ints_to_floats(cls, data: Any) -> Any:
        return _floats(
            data,
            ("half_life_weeks", "category_weight", "brand_weight", "product_weight", "p_floor",
             "p_max", "half_saturation", "proxy_redemption_rate"),
        )


class Solver(_Frozen):
    """How the plan is solved."""

    method: Literal["lagrangian", "exact"] = Field(
        "lagrangian", description="lagrangian (scales to millions) or exact (OR-Tools SCIP, small)"
    )
    gap_tolerance: float = Field(0.001, gt=0, description="stop at this relative gap")
    time_limit_s: float = Field(600.0, gt=0)
    seed: int = Field(0, ge=0)
    max_iterations: int = Field(60, ge=1, description="price-update passes of the lagrangian")
    chunk_size: int = Field(50_000, ge=1, description="customers per chunk")
    target_tolerance: float = Field(
        0.01, ge=0, le=1, description="min_customers are met first: a plan may fall short of "
        "all targets by this share of their total more than the best plan seen and still win on "
        "objective (0 = fewest shortfalls, whatever the value)")
    threads: int = Field(0, ge=0, le=1024, description="threads over chunks of customers in the "
                         "solver's passes (0 = one per core; at most 1024); any gives one answer")
    polish_pairs: int = Field(
        10_000, ge=0, description="candidate pairs re-solved exactly by CP-SAT after the "
        "lagrangian (the core of uncertain customers; the whole problem when it fits); 0 = off. "
        "Skipped when the passes already certified gap_tolerance, unless the whole problem fits, "
        "and on problems over 200 times this many pairs (it could not move the objective)")
    polish_time: float = Field(
        1.0, gt=0, description="CP-SAT's deterministic time limit for the polish, in its work "
        "units (about seconds of one core); deterministic, unlike a wall-clock limit")
    memory_limit_gb: float | None = Field(
        None, gt=0, le=1e6, description="memory the run may use (GB, at most 1e6); none = what "
        "is available at the start (MemAvailable). A run whose estimate exceeds it stops, exit 4")
    scores_per_customer: int | None = Field(
        None, ge=1, description="scores path: only each customer's best N allowed listed pairs "
        "enter the solve, ranked by reduced value at the LP prices of a sample of customers "
        "(less memory and time at millions of customers); none = all, or as many as fit when all "
        "would not fit a memory_limit_gb the scenario sets. The plan is then bounded "
        "over every listed pair too (manifest: candidates.bound_all_candidates)")
    stream_scores: bool | None = Field(
        None, description="read a parquet scores table in batches of rows instead of whole, so "
        "memory holds one chunk of customers' rows at a time; the table must then list each "
        "customer's rows together, customers in the customers table's order. none = when the "
        "whole table would take more than a quarter of the memory limit")

    backend: Literal["local", "dask"] = Field(
        "local", description="where the lagrangian's passes run: local (this process) or dask "
        "(shards of customers resident on Dask workers; pip install -e \".[dask]\"); the plan "
        "is the same bytes either way")
    scheduler: str | None = Field(
        None, description="dask backend: the scheduler's address (tcp://host:8786); none = a "
        "LocalCluster of solver.workers processes sharing memory_limit_gb")
    workers: int = Field(2, ge=1, le=1024, description="dask backend without a scheduler: "
                         "worker processes of the LocalCluster (at most 1024)")
    kernel_cache: str | None = Field(
        None, description="dask backend: the folder (NUMBA_CACHE_DIR) where the workers keep "
        "their compiled kernels, so each is compiled once; none = the package's __pycache__")
    shard_customers: int = Field(
        1 << 20, ge=1, description="customers per shard of the lagrangian: sums per shard, "
        "added in shard order, so the plan is the same on any number of workers")
    repair: Literal["driver", "shards"] = Field(
        "driver", description="where plans are repaired and refilled: driver (faster in one process) or "
        "shards (less traffic; not with funders or channels); unset: shards on dask, else driver")

    @model_validator(mode="after")
    def _backend_fits(self) -> "Solver":
        if "repair" not in self.model_fields_set and self.backend == "dask":  # resolved once here
            object.__setattr__(self, "repair", "shards")  # for every reader; still unset
        # a knob that would be ignored is refused, not dropped silently
        if self.scheduler is not None and self.backend != "dask":
            raise ValueError('scheduler applies only with backend = "dask"')
        if self.scheduler is not None and "workers" in self.model_fields_set:
            raise ValueError("workers applies only without a scheduler (the scheduler's own "
                             "workers hold the shards)")
        if self.kernel_cache is not None and self.backend != "dask":
            raise ValueError('kernel_cache applies only with backend = "dask"')
        if self.kernel_cache is not None:  # a NUL reached the workers' environment (exit 70)
            resolve_path(Path(self.kernel_cache), "solver.kernel_cache")
        if self.backend == "dask" and self.method != "lagrangian":
            raise ValueError('backend = "dask" runs the lagrangian method only')
        return self

    @model_validator(mode="before")
    @classmethod
    def _ints_to_floats(cls, data: Any) -> Any:
        return _floats(data, ("gap_tolerance", "time_limit_s", "memory_limit_gb", "polish_time",
                              "target_tolerance"))


class Measurement(_Frozen):
    """Control groups for measuring what the plan earned (see ``optimizer/model/holdout.py`` and
    docs/contract.md, "Measurement"). The plan is made for every customer, then the controls'
    sends are withheld (not re-planned: their budget stays unspent)."""

    holdout_share: float = Field(
        0.0, ge=0, le=1, description="universal control: the share of customers (by keyed hash "
        "of salt and customer_id) who get no offer this week; 0 = none")
    offer_holdout_share: float = Field(
        0.0, ge=0, le=1, description="per-offer control: the share of (customer, offer) pairs "
        "(by keyed hash of salt, customer_id and offer_id) withheld from the plan; 0 = none")
    salt: str = Field(
        "offeropt", min_length=1, description="key of the hash: the same salt holds out the same "
        "customers every week; change it to draw new control groups (1 to 64 bytes of UTF-8)")

    @model_validator(mode="before")
    @classmethod
    def _ints_to_floats(cls, data: Any) -> Any:
        return _floats(data, ("holdout_share", "offer_holdout_share"))

    @model_validator(mode="after")
    def _salt_fits(self) -> "Measurement":
        if len(self.salt.encode("utf-8")) > 64:
            raise ValueError("salt must be at most 64 bytes of UTF-8 (the hash key's limit)")
        return self


class Scenario(_Frozen):
    """A whole scenario. ``data`` and ``output`` are absolute once loaded."""

    name: str = Field(min_length=1)
    week: int
    data: Path
    output: Path
    extends: str | None = None
    # the scores table at an fsspec URL instead of in the data folder (optimizer/io/remote.py)
    scores_url: str | None = Field(default=None, pattern=r"^[A-Za-z][A-Za-z0-9+.-]*://.+")
    rules: Rules = Field(default_factory=Rules)
    objective: Objective = Field(default_factory=Objective)
    affinity: Affinity = Field(default_factory=Affinity)
    solver: Solver = Field(default_factory=Solver)
    measurement: Measurement = Field(default_factory=Measurement)

    @model_validator(mode="before")
    @classmethod
    def _paths(cls, data: Any) -> Any:
        if isinstance(data, dict):
            data = dict(data)
            for key in ("data", "output"):
                if isinstance(data.get(key), str):
                    data[key] = Path(data[key])
        return data

    @model_validator(mode="after")
    def _scores_url_usable(self) -> "Scenario":
        protocol, _, rest = (self.scores_url or "").partition("://")
        if protocol.lower() in ("file", "local") and not rest.startswith("/"):
            raise ValueError(f"scores_url = {self.scores_url!r}: a {protocol}:// URL must be "
                             f"absolute ({protocol}:///path/to/scores); a relative one would be "
                             "read from the working directory of each process, not beside the "
                             "scenario")
        if self.scores_url is not None and self.solver.stream_scores:
            raise ValueError("solver.stream_scores = true: a scores table at a URL (scores_url) "
                             "is read whole, never in batches; remove one of the two")
        # inverted ranges: every clv factor would be clv_cap, p_redeem would fall with affinity
        for low, high in (("objective.clv_floor", "objective.clv_cap"),
                          ("affinity.p_floor", "affinity.p_max")):
            values = [getattr(getattr(self, k.split(".")[0]), k.split(".")[1]) for k in (low, high)]
            if values[0] > values[1]:
                raise ValueError(f"{low} ({values[0]:g}) must be at most {high} ({values[1]:g})")
        return self


def parse_override(text: str) -> tuple[list[str], Any]:
    """Parse ``section.knob=value`` (value in TOML syntax, bare words read as strings; a bare
    ``none`` switches an optional knob off)."""
    if "=" not in text:
        raise ScenarioError(f"--set {text!r}: expected KEY=VALUE, for example rules.budget_scale=0.8")
    key, raw = text.split("=", 1)
    path = [part.strip() for part in key.strip().split(".") if part.strip()]
    if not path:
        raise ScenarioError(f"--set {text!r}: empty key")
    if raw.strip().lower() == "none":
        return path, None
    try:
        value = tomllib.loads(f"v = {raw.strip()}")["v"]
    except tomllib.TOMLDecodeError:
        value = raw.strip()
    return path, value


def _merge(base: dict[str, Any], top: dict[str, Any]) -> dict[str, Any]:
    out = copy.deepcopy(base)
    for key, value in top.items():
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = _merge(out[key], value)
        else:
            out[key] = copy.deepcopy(value)
    return out


# scenarios a chain of ``extends`` may hold: deeper ones are refused, not followed to the recursion limit
MAX_EXTENDS_DEPTH = 50


def resolve_path(path: Path, what: str) -> Path:
    """``path`` made absolute, links followed; a link loop or a NUL is a :class:`ScenarioError`."""
    try:
        return Path(path).resolve()
    except (RuntimeError, OSError, ValueError) as exc:
        raise ScenarioError(f"{what} {str(path)!r} cannot be resolved: {exc}") from None


def _read_toml(path: Path, seen: tuple[Path, ...] = ()) -> dict[str, Any]:
    path = resolve_path(path, "scenario")
    if path in seen:
        raise ScenarioError(f"scenario {path}: 'extends' forms a cycle")
    if len(seen) >= MAX_EXTENDS_DEPTH:
        raise ScenarioError(f"scenario {seen[0]}: 'extends' chains more than {MAX_EXTENDS_DEPTH} "
                            "scenarios; flatten the chain")
    if not path.is_file():
        raise ScenarioError(f"scenario file not found: {path}")
    try:
        raw = tomllib.loads(path.read_text(encoding="utf-8"))
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        raise ScenarioError(f"scenario {path} is not valid TOML: {exc}") from exc
    for key in ("data", "output"):
        if isinstance(raw.get(key), str):
            raw[key] = str(resolve_path(path.parent / raw[key], key))
    parent = raw.get("extends")
    if isinstance(parent, str):
        base = _read_toml(path.parent / parent, seen + (path,))
        raw = _merge(base, raw)
    return raw


def _tables() -> set[str]:
    """The scenario's tables (``rules``, ``objective``, ...): the fields that are models."""
    return {name for name, info in Scenario.model_fields.items()
            if isinstance(info.annotation, type) and issubclass(info.annotation, BaseModel)}


def _holds_table(value: Any) -> bool:
    return isinstance(value, dict) or (isinstance(value, list) and any(map(_holds_table, value)))


def _refuse_non_leaf(text: str, keys: list[str], value: Any) -> None:
    """``--set`` sets one leaf knob to a scalar or a list. Replacing a whole table would drop
    every knob of it the value does not repeat (the sensitive categories, say), and ``extends``
    is followed while the file is read, before any override, so neither is accepted."""
    if keys == ["extends"]:
        raise ScenarioError(f"--set {text!r}: 'extends' cannot be overridden (the scenario "
                            "it names is read before --set applies); write a scenario file with "
                            "extends = \"...\" instead")
    if keys[0] in _tables() and len(keys) == 1:
        raise ScenarioError(f"--set {text!r}: '{keys[0]}' is a table; set its knobs one by one, "
                            f"e.g. --set {keys[0]}.KNOB=VALUE")
    if keys[0] in _tables() and len(keys) > 2:
        raise ScenarioError(f"--set {text!r}: '{'.'.join(keys[:2])}' is a knob, not a table")
    if len(keys) > 1 and keys[0] not in _tables():
        raise ScenarioError(f"--set {text!r}: '{keys[0]}' is not a table of the scenario (its "
                            f"tables: {', '.join(sorted(_tables()))})")
    if _holds_table(value):
        raise ScenarioError(f"--set {text!r}: the value is a table; --set takes one knob and a "
                            "scalar or list value, e.g. --set rules.budget_scale=0.8")


def load_scenario(path: str | Path, overrides: list[str] | tuple[str, ...] = ()) -> Scenario:
    """Read a scenario TOML (following ``extends``), apply ``--set`` overrides and validate it."""
    raw = _read_toml(Path(path))
    for text in overrides:
        keys, value = parse_override(text)
        _refuse_non_leaf(text, keys, value)
        node = raw
        for key in keys[:-1]:
            node = node.setdefault(key, {})
            if not isinstance(node, dict):
                raise ScenarioError(f"--set {text!r}: '{key}' is not a table")
        if keys in (["data"], ["output"]) and isinstance(value, str):
            value = str(resolve_path(Path(value), keys[0]))
        node[keys[-1]] = value
    return scenario_from_dict(raw, source=str(path))


def scenario_from_dict(raw: dict[str, Any], source: str = "<dict>") -> Scenario:
    """Validate a scenario given as a dict (paths should already be absolute)."""
    try:
        return Scenario.model_validate(raw)
    except ValidationError as exc:
        problems = []
        for err in exc.errors():
            where = ".".join(str(p) for p in err["loc"]) or "(top level)"
            given = err.get("input")
            shown = "" if isinstance(given, dict) else f" (given: {given!r})"
            problems.append(f"  {where}: {err['msg']}{shown}")
        raise ScenarioError(f"scenario {source} is invalid:\n" + "\n".join(problems)) from None


def scenario_to_dict(scenario: Scenario) -> dict[str, Any]:
    """The resolved scenario as plain JSON-able data (for the manifest)."""
    data = scenario.model_dump(mode="json")
    if not data["rules"]["eligibility"]:  # a run without such rules keeps its manifest as before
        del data["rules"]["eligibility"]
    return data
