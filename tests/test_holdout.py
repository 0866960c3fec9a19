"""Control groups (issue 19): ``[measurement]`` holdouts, ``controls.*`` and ``offeropt check``.

The keyed hash is BLAKE2b as ``hashlib`` computes it; the plan is made for everyone and the
controls' sends withheld, so the treated customers get exactly what the plan without a control
group gives them, and the withheld budget is not spent elsewhere.
"""
from __future__ import annotations

import hashlib
import json
import shutil
from pathlib import Path

import numpy as np
import polars as pl
import pytest
from click.testing import CliRunner

from optimizer.cli import main
from optimizer.core.config import Measurement
from optimizer.core.keyed_hash import (
    PERSON_CUSTOMER,
    PERSON_PAIR,
    below,
    customer_hashes,
    pair_hashes,
)
from optimizer.model.holdout import universal_controls

SALT = "offeropt"


def id_text(value: int | str) -> bytes:
    """The canonical text of one ID, as the module docstring defines it."""
    return str(int(value)).encode() if isinstance(value, (int, np.integer)) else str(value).encode()


def _blake(message: bytes, person: bytes, salt: str) -> int:
    return int.from_bytes(hashlib.blake2b(message, digest_size=8, key=salt.encode(),
                                          person=person).digest(), "little")


def test_customer_hash_is_hashlib_blake2b():
    ints = [0, 1, -7, 42, 10**17, 2**62]
    texts = ["a", "C-0012", "é中", "x" * 127, "y" * 128, "z" * 300]
    for ids, salt in ((ints, "s"), (texts, "k" * 64)):
        got = customer_hashes(pl.Series(ids), salt)
        want = [_blake(id_text(v), PERSON_CUSTOMER, salt) for v in ids]
        assert got.tolist() == want


def test_pair_hash_is_length_prefixed_hashlib_blake2b():
    customers, offers = ["ab", "a", "q" * 200], ["c", "bc", "r"]
    got = pair_hashes(pl.Series(customers), pl.Series(offers), SALT)
    want = [_blake(len(c.encode()).to_bytes(8, "little") + c.encode() + o.encode(), PERSON_PAIR,
                   SALT) for c, o in zip(customers, offers)]
    assert got.tolist() == want
    assert got[0] != got[1]  # "ab"+"c" and "a"+"bc" differ thanks to the length prefix


def test_hash_does_not_depend_on_order_chunks_or_int_width():
    ids = np.arange(1, 5001, dtype=np.int64)
    whole = customer_hashes(pl.Series(ids), SALT)
    order = np.random.default_rng(0).permutation(ids.size)
    assert np.array_equal(customer_hashes(pl.Series(ids[order]), SALT), whole[order])
    parts = np.concatenate([customer_hashes(pl.Series(ids[s:s + 777]), SALT)
                            for s in range(0, ids.size, 777)])
    assert np.array_equal(parts, whole)
    assert np.array_equal(customer_hashes(pl.Series(ids.astype(np.int32)), SALT), whole)
    share = below(whole, 0.1).mean()
    assert 0.08 < share < 0.12
    assert not below(whole, 0.0).any() and below(whole, 1.0).all()
    other = customer_hashes(pl.Series(ids), "another salt")
    assert not np.array_equal(below(other, 0.1), below(whole, 0.1))


def test_measurement_knobs_are_validated():
    assert Measurement() == Measurement(holdout_share=0.0, offer_holdout_share=0.0, salt=SALT)
    assert Measurement.model_validate({"holdout_share": 1}).holdout_share == 1.0
    for bad in ({"holdout_share": 1.5}, {"offer_holdout_share": -0.1}, {"salt": ""},
                {"salt": "é" * 33}, {"holdout": 0.1}):
        with pytest.raises(ValueError):
            Measurement.model_validate(bad)


# ---------------------------------------------------------------------------------------------
# end to end on a small demo


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("holdout")
    result = CliRunner().invoke(main, ["demo-data", str(root / "data"), "--customers", "500",
                                       "--offers", "30", "--seed", "0"])
    assert result.exit_code == 0, result.output
    (root / "s.toml").write_text(
        'name = "h"\nweek = 40\ndata = "data"\noutput = "runs/plain"\n'
        "[rules]\nmax_offers_per_customer = 4\nmax_offers_per_category = 1\n"
        "cooldown_weeks = 4\nglobal_budget = 150\n"
        "[solver]\nmax_iterations = 5\n")
    return root


def _run(world: Path, name: str, *sets: str) -> Path:
    args = ["run", str(world / "s.toml"), "--quiet", "--set", f"output={world / 'runs' / name}"]
    for text in sets:
        args += ["--set", text]
    result = CliRunner().invoke(main, args)
    assert result.exit_code == 0, result.output
    return world / "runs" / name


HOLD = ("measurement.holdout_share=0.1", "measurement.offer_holdout_share=0.05")


@pytest.fixture(scope="module")
def runs(world: Path) -> dict[str, Path]:
    return {"plain": _run(world, "plain"), "held": _run(world, "held", *HOLD)}


def test_no_holdout_by_default(runs: dict[str, Path]):
    controls = pl.read_parquet(runs["plain"] / "controls.parquet")
    assert controls.height == 0 and controls.columns == ["customer_id", "offer_id", "week",
                                                         "reason"]
    manifest = json.loads((runs["plain"] / "manifest.json").read_text())
    assert manifest["measurement"]["withheld_sends"] == 0


def test_controls_are_the_plans_sends_withheld_and_nothing_re_spent(world: Path,
                                                                    runs: dict[str, Path]):
    plain = pl.read_parquet(runs["plain"] / "assignments.parquet")
    held = pl.read_parquet(runs["held"] / "assignments.parquet")
    controls = pl.read_parquet(runs["held"] / "controls.parquet")
    assert (runs["held"] / "controls.csv").is_file()
    universal = controls.filter(pl.col("reason") == "universal_holdout")
    per_offer = controls.filter(pl.col("reason") == "offer_holdout")
    assert universal.height > 0 and per_offer.height > 0
    assert universal.get_column("offer_id").null_count() == universal.height
    assert (controls.get_column("week") == 40).all()
    # the universal control: exactly the hashed-out customers the plan reached
    hashed = universal_controls(plain.get_column("customer_id").unique().sort(),
                                Measurement(holdout_share=0.1))
    reached = plain.get_column("customer_id").unique().sort()
    assert sorted(universal.get_column("customer_id").to_list()) == reached.filter(
        pl.Series(hashed)).to_list()
    # treated customers get exactly what the plan without controls gives them: sends withheld,
    # never replaced by others (the budget they would have used is not spent elsewhere)
    keys = ["customer_id", "offer_id"]
    expected = (plain.join(universal.select("customer_id"), on="customer_id", how="anti")
                .join(per_offer.select(keys), on=keys, how="anti"))
    assert held.select(keys).sort(keys).equals(expected.select(keys).sort(keys))
    manifest = json.loads((runs["held"] / "manifest.json").read_text())["measurement"]
    assert manifest["withheld_sends"] == plain.height - held.height
    assert manifest["universal_controls"] == universal.height
    assert manifest["offer_controls"] == per_offer.height
    assert held.get_column("expected_cost").sum() == pytest.approx(
        plain.get_column("expected_cost").sum() - manifest["withheld_expected_cost"])
    check = CliRunner().invoke(main, ["check", str(world / "s.toml"), str(runs["held"]),
                                      *[a for s in HOLD for a in ("--set", s)]])
    assert check.exit_code == 0, check.output


@pytest.mark.slow
def test_controls_identical_across_reruns_threads_chunks_and_weeks(world: Path,
                                                                  runs: dict[str, Path]):
    reference = (runs["held"] / "controls.parquet").read_bytes()
    for name, sets in (("again", ()), ("threads", ("solver.threads=1", "solver.chunk_size=64")),
                       ("chunks", ("solver.threads=2", "solver.chunk_size=7"))):
        run = _run(world, name, *HOLD, *sets)
        assert (run / "controls.parquet").read_bytes() == reference, name
    # next week, same salt: the same customers are the universal control
    week = _run(world, "week41", *HOLD, "week=41")
    customers = pl.read_parquet(world / "data" / "customers.parquet").get_column("customer_id")
    hashed = set(customers.filter(pl.Series(universal_controls(
        customers, Measurement(holdout_share=0.1)))).to_list())
    for run in (runs["held"], week):
        listed = pl.read_parquet(run / "controls.parquet").filter(
            pl.col("reason") == "universal_holdout").get_column("customer_id").to_list()
        sent = set(pl.read_parquet(run / "assignments.parquet").get_column("customer_id"))
        assert listed and set(listed) <= hashed and not sent & hashed


def test_check_catches_a_control_that_was_sent(world: Path, runs: dict[str, Path],
                                               tmp_path: Path):
    controls = pl.read_parquet(runs["held"] / "controls.parquet")
    args = ["check", str(world / "s.toml")]
    sets = [a for s in HOLD for a in ("--set", s)]
    for case in ("universal", "per_offer", "listed"):
        run = tmp_path / case
        shutil.copytree(runs["held"], run)
        a = pl.read_parquet(run / "assignments.parquet")
        if case == "listed":  # a listed universal control who is not hashed out
            everyone = set(a.get_column("customer_id").to_list())
            free = sorted(everyone - set(controls.get_column("customer_id").to_list()))[0]
            extra = pl.DataFrame({"customer_id": [free], "offer_id": [None], "week": [40],
                                  "reason": ["universal_holdout"]}, schema=controls.schema)
            edited = pl.concat([controls, extra])
            edited.write_parquet(run / "controls.parquet")
            edited.write_csv(run / "controls.csv")  # both copies, as a run writes them
            rule = "[controls]"
        else:
            reason = "universal_holdout" if case == "universal" else "offer_holdout"
            held = controls.filter(pl.col("reason") == reason).row(0, named=True)
            # the control's row takes the place of another customer's send (same offer, so
            # budgets and caps still hold): only the control rule can object
            target = a.filter(pl.col("customer_id") != held["customer_id"])
            if held["offer_id"] is not None:
                target = target.filter(pl.col("offer_id") == held["offer_id"])
            victim = target.row(0, named=True)
            a = a.with_columns(pl.when((pl.col("customer_id") == victim["customer_id"])
                                       & (pl.col("offer_id") == victim["offer_id"]))
                               .then(pl.lit(held["customer_id"]))
                               .otherwise(pl.col("customer_id")).alias("customer_id"))
            a.write_parquet(run / "assignments.parquet")
            a.write_csv(run / "assignments.csv")
            rule = "[holdout_sent]" if case == "universal" else "[offer_holdout_sent]"
        result = CliRunner().invoke(main, [*args, str(run), *sets])
        assert result.exit_code == 1, (case, result.output)
        assert rule in result.output, (case, result.output)
    # and the untampered run without the scenario's [measurement] (--force: check refuses a run
    # of other settings otherwise): its controls are not hashed out under a holdout share of 0
    result = CliRunner().invoke(main, [*args, str(runs["held"]), "--force"])
    assert result.exit_code == 1 and "[controls]" in result.output


def test_check_compares_the_two_copies_of_controls(world: Path, runs: dict[str, Path],
                                                   tmp_path: Path):
    """controls.csv must say what controls.parquet says (check read the Parquet copy only, so
    a CSV copy of another week passed)."""
    run = tmp_path / "held"
    shutil.copytree(runs["held"], run)
    args = ["check", str(world / "s.toml"), str(run), *[a for s in HOLD for a in ("--set", s)]]
    assert CliRunner().invoke(main, args).exit_code == 0
    controls = pl.read_parquet(run / "controls.parquet")
    assert controls.height > 0
    controls.with_columns(week=pl.when(pl.int_range(pl.len()) == 0).then(39)
                          .otherwise(pl.col("week"))).write_csv(run / "controls.csv")
    result = CliRunner().invoke(main, args)
    assert result.exit_code == 1 and "[published_files]" in result.output, result.output
    assert "controls.csv and controls.parquet disagree on 1 row(s)" in result.output


def test_check_verifies_the_controls_are_ordered_by_customer(world: Path, runs: dict[str, Path],
                                                             tmp_path: Path):
    """controls are "ordered by customer" (docs/contract.md), in the customers table's order as
    the run writes them: both copies rewritten in reverse order passed (exit 0)."""
    run = tmp_path / "held"
    shutil.copytree(runs["held"], run)
    args = ["check", str(world / "s.toml"), str(run), *[a for s in HOLD for a in ("--set", s)]]
    controls = pl.read_parquet(run / "controls.parquet")
    assert controls.get_column("customer_id").n_unique() > 1
    controls.reverse().write_parquet(run / "controls.parquet")
    controls.reverse().write_csv(run / "controls.csv")
    result = CliRunner().invoke(main, args)
    assert result.exit_code == 1, result.output
    assert "[controls]" in result.output and "out of the customers' order" in result.output


def test_check_lists_a_controls_file_that_cannot_be_read(world: Path, runs: dict[str, Path],
                                                         tmp_path: Path):
    """A truncated controls.parquet stopped check with exit 2 ("bad input"), where a summary or
    customers table that cannot be read is listed as a violation (exit 1)."""
    run = tmp_path / "held"
    shutil.copytree(runs["held"], run)
    path = run / "controls.parquet"
    path.write_bytes(path.read_bytes()[:100])
    args = ["check", str(world / "s.toml"), str(run), *[a for s in HOLD for a in ("--set", s)]]
    result = CliRunner().invoke(main, args)
    assert result.exit_code == 1, result.output
    assert "[controls] cannot read" in result.output and "controls.parquet" in result.output


def test_check_verifies_the_manifests_measurement_counts(world: Path, runs: dict[str, Path],
                                                         tmp_path: Path):
    """The manifest's measurement counts are recomputed from controls and assignments: an edited
    count, or a control row dropped from both copies, is a ``manifest`` violation (each
    passed)."""
    args = ["check", str(world / "s.toml"), *[a for s in HOLD for a in ("--set", s)]]
    record = json.loads((runs["held"] / "manifest.json").read_text())["measurement"]
    assert record["universal_controls"] > 0 and record["offer_controls"] > 0
    for key in ("universal_controls", "offer_controls", "planned_customers_reached",
                "withheld_sends"):
        run = tmp_path / key
        shutil.copytree(runs["held"], run)
        manifest = json.loads((run / "manifest.json").read_text())
        manifest["measurement"][key] += 1
        (run / "manifest.json").write_text(json.dumps(manifest))
        result = CliRunner().invoke(main, [*args, str(run)])
        assert result.exit_code == 1, (key, result.output)
        shown = "planned_sends - withheld_sends" if key == "withheld_sends" else key
        assert f"[manifest] manifest.json: measurement.{shown} is" in result.output, result.output
    run = tmp_path / "dropped"
    shutil.copytree(runs["held"], run)
    controls = pl.read_parquet(run / "controls.parquet")
    kept = controls.filter(pl.int_range(pl.len()) != pl.len() - 1)
    kept.write_parquet(run / "controls.parquet")
    kept.write_csv(run / "controls.csv")
    result = CliRunner().invoke(main, [*args, str(run)])
    assert result.exit_code == 1 and "[manifest]" in result.output, result.output


def test_bad_measurement_knob_exits_2(world: Path):
    for text in ("measurement.holdout_share=1.5", "measurement.salt=''", "measurement.share=0.1"):
        result = CliRunner().invoke(main, ["run", str(world / "s.toml"), "--quiet", "--set", text])
        assert result.exit_code == 2, (text, result.output)
        assert "measurement" in result.output


def test_published_figures_do_not_depend_on_the_chunk_size(tmp_path: Path):
    """The manifest's objective, gap and withheld figures are the same bits for any
    solver.chunk_size (sums over the plan in one order, not block by block)."""
    from tests.tiny_world import base_world, offer, score, write_scenario, write_world

    rng = np.random.default_rng(7)
    world = base_world(customers=300)
    world["offers"] = [offer(o, discount=1.0 + o / 7) for o in range(1, 4)]
    world["scores"] = [score(c, o, float(rng.uniform(0.01, 0.9)), float(rng.uniform(0.1, 9.7)))
                       for c in range(1, 301) for o in range(1, 4)]
    write_world(tmp_path / "data", world)
    figures = []
    for chunk in (7, 1000):
        path = write_scenario(tmp_path / "s.toml", output=f"run{chunk}",
                              rules={"max_offers_per_customer": 2},
                              solver={"chunk_size": chunk},
                              extra="[measurement]\nholdout_share = 0.3\n"
                                    "offer_holdout_share = 0.2\n")
        result = CliRunner().invoke(main, ["run", str(path), "--quiet"])
        assert result.exit_code == 0, result.output
        manifest = json.loads((tmp_path / f"run{chunk}" / "manifest.json").read_text())
        assert manifest["measurement"]["withheld_sends"] > 0
        figures.append({"objective": manifest["objective"], "gap": manifest["gap"],
                        **{k: v for k, v in manifest["measurement"].items()
                           if isinstance(v, float)}})
    assert figures[0] == figures[1]


def test_the_planned_objective_is_the_objective_the_status_judged(tmp_path: Path):
    """With channels that cost a contact, ``measurement.planned_objective`` is the objective of
    the plan before withholding (its scores less its contact costs, as ``objective`` is: what the
    status judged against ``upper_bound``), not its scores alone."""
    from tests.tiny_world import base_world, offer, score, write_scenario, write_world

    rng = np.random.default_rng(3)
    world = base_world(customers=200)
    world["offers"] = [offer(o, discount=1.0 + o / 7) for o in range(1, 4)]
    world["scores"] = [score(c, o, float(rng.uniform(0.01, 0.9)), float(rng.uniform(0.5, 9.7)))
                       for c in range(1, 201) for o in range(1, 4)]
    world["channels"] = [{"channel_id": "email", "capacity": None, "cost_per_contact": 0.25}]
    world["customer_channels"] = [{"customer_id": c, "channel_id": "email"}
                                  for c in range(1, 201)]
    write_world(tmp_path / "data", world)
    path = write_scenario(tmp_path / "s.toml", rules={"max_offers_per_customer": 2},
                          extra="[measurement]\nholdout_share = 0.3\n")
    result = CliRunner().invoke(main, ["run", str(path), "--quiet"])
    assert result.exit_code == 0, result.output
    manifest = json.loads((tmp_path / "run" / "manifest.json").read_text())
    held = manifest["measurement"]
    assert held["withheld_sends"] > 0
    made = manifest["objective"] + 0.25 * (held["planned_sends"] - held["withheld_sends"])
    assert held["planned_objective"] == pytest.approx(
        made + held["withheld_score"] - 0.25 * held["planned_sends"], rel=1e-12)
