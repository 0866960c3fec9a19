"""Tests of the synthetic demo-data generator (optimizer/apps/synthetic.py)."""
from __future__ import annotations

from pathlib import Path

import polars as pl
import pytest

from optimizer.apps.synthetic import SENSITIVE_CATEGORIES, write_demo_data
from optimizer.core.schemas import ID, INPUT_TABLES, normalize_category

N, M = 500, 30
PLAN_WEEK = 40
TABLES = ["customers", "transactions", "products", "offers", "offer_products", "restrictions",
          "history", "redemptions"]


@pytest.fixture(scope="module")
def demo(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("demo")
    messages: list[str] = []
    counts = write_demo_data(out, N, M, seed=7, progress=messages.append)
    assert messages, "progress is reported through the callback"
    assert set(counts) == set(TABLES)
    for name, rows in counts.items():
        assert pl.read_parquet(out / f"{name}.parquet").height == rows
    return out


@pytest.fixture(scope="module")
def scores_demo(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("scores")
    counts = write_demo_data(out, N, M, seed=3, scores_per_customer=12)
    assert counts["scores"] == N * 12
    assert counts["transactions"] == 0
    return out


def read(folder: Path, name: str) -> pl.DataFrame:
    return pl.read_parquet(folder / f"{name}.parquet")


def _check_schema(df: pl.DataFrame, name: str) -> None:
    schema = INPUT_TABLES[name]
    for col in schema.required_columns:
        assert col in df.columns, f"{name}.{col} missing"
    for col, kind in schema.columns.items():
        if col not in df.columns:
            continue
        if kind == ID:
            assert df.schema[col] == pl.Int64, f"{name}.{col} is {df.schema[col]}"
        else:
            assert df.schema[col] == kind, f"{name}.{col} is {df.schema[col]}, expected {kind}"
    assert "clv" not in df.columns


@pytest.mark.parametrize("name", TABLES)
def test_columns_and_types(demo, name):
    df = read(demo, name)
    _check_schema(df, name)
    assert df.height > 0
    assert set(df.columns) <= set(INPUT_TABLES[name].columns)


def test_scores_mode_columns_and_empty_transactions(scores_demo):
    for name in TABLES + ["scores"]:
        _check_schema(read(scores_demo, name), name)
    assert read(scores_demo, "transactions").height == 0
    for name in TABLES:
        if name != "transactions":
            assert read(scores_demo, name).height > 0, name


def test_unique_ids(demo):
    cust, prod, off = read(demo, "customers"), read(demo, "products"), read(demo, "offers")
    assert cust.height == N and cust["customer_id"].n_unique() == N
    assert prod.height >= 2000 and prod["product_id"].n_unique() == prod.height
    assert off.height == M and off["offer_id"].n_unique() == M
    for df in (cust, prod, off):
        assert df.null_count().row(0)[0] == 0


def test_catalogue_realism(demo):
    prod = read(demo, "products")
    cats = prod["category"].unique()
    assert 35 <= len(cats) <= 50
    for c in list(SENSITIVE_CATEGORIES) + ["PORK", "BEERS/ALES", "SOFT DRINKS"]:
        assert c in cats.to_list()
    assert (prod["brand"] == "Private").sum() > 0
    assert prod["department"].n_unique() >= 4
    sizes = prod.group_by("category").len()["len"]
    assert sizes.max() > 3 * sizes.min()  # skewed


def test_transactions_values(demo):
    tx, prod = read(demo, "transactions"), read(demo, "products")
    assert 0.5 * 40 * N < tx.height < 1.5 * 40 * N
    assert tx["week"].min() >= PLAN_WEEK - 26 and tx["week"].max() <= PLAN_WEEK - 1
    assert (tx["sales_value"] >= 0).all() and (tx["discount"] >= 0).all()
    assert 0.05 < (tx["discount"] > 0).mean() < 0.6
    assert (tx["quantity"] >= 1).all()
    assert set(tx["customer_id"].unique().to_list()) <= set(range(1, N + 1))
    # dates agree with weeks: week 1 starts on Monday 2024-01-01
    start = pl.date(2024, 1, 1) + pl.duration(days=(pl.col("week") - 1) * 7)
    ok = tx.select(((pl.col("date") >= start) & (pl.col("date") < start + pl.duration(days=7)))
                   .all()).item()
    assert ok
    # a handful of lines name unknown products, and only a few
    unknown = tx.join(prod, on="product_id", how="anti").height
    assert unknown < 0.01 * tx.height
    # sensitive categories are bought by a minority only
    buyers = (tx.join(prod, on="product_id").filter(pl.col("category").is_in(SENSITIVE_CATEGORIES))
              ["customer_id"].n_unique())
    assert 0 < buyers < 0.5 * N


def test_offers_variety(demo):
    off = read(demo, "offers")
    assert (off["discount"] > 0).all()
    assert off["budget"].null_count() > 0
    assert (off["budget"].drop_nulls() >= 0).all()
    assert off["category"].null_count() > 0 and off["category"].drop_nulls().len() > 0
    assert off["margin"].is_between(0.2, 3.0).all()
    active = (off["start_week"].fill_null(-10**9) <= PLAN_WEEK) & (
        off["end_week"].fill_null(10**9) >= PLAN_WEEK)
    assert (~active).sum() > 0 and active.sum() > M / 2
    both = off.filter(pl.col("start_week").is_not_null() & pl.col("end_week").is_not_null())
    assert (both["start_week"] <= both["end_week"]).all()
    mm = off.filter(pl.col("min_customers").is_not_null() & pl.col("max_customers").is_not_null())
    assert (mm["min_customers"] <= mm["max_customers"]).all()
    assert off["funded_by"].null_count() == 0

    op, prod = read(demo, "offer_products"), read(demo, "products")
    assert set(op["offer_id"].to_list()) <= set(off["offer_id"].to_list())
    assert set(op["product_id"].to_list()) <= set(prod["product_id"].to_list())
    no_cat = off.filter(pl.col("category").is_null())["offer_id"]
    listed = op.join(prod, on="product_id")
    per_offer = listed.group_by("offer_id").agg(pl.col("category").n_unique().alias("n_cat"),
                                                pl.len().alias("n_prod"))
    # every offer without a category lists products
    assert set(no_cat.to_list()) <= set(per_offer["offer_id"].to_list())
    assert (per_offer.filter(pl.col("offer_id").is_in(no_cat.to_list()))["n_prod"] >= 2).all()
    assert (per_offer["n_cat"] >= 2).sum() >= 1  # multi-category offers

    cats = pl.concat([
        off.select("offer_id", "category").drop_nulls(),
        listed.select("offer_id", "category"),
    ])
    sensitive = cats.filter(pl.col("category").is_in(SENSITIVE_CATEGORIES))["offer_id"].n_unique()
    assert 1 <= sensitive < M / 2


def test_restrictions(demo):
    rs, cust = read(demo, "restrictions"), read(demo, "customers")
    assert set(rs["rule"].unique().to_list()) == {"exclude", "opt_in"}
    assert set(rs["customer_id"].to_list()) <= set(cust["customer_id"].to_list())
    norm = rs.with_columns(normalize_category(pl.col("category")).alias("c"))
    assert (norm["c"] != norm["category"]).any()  # some names differ in case or spaces
    excluded = norm.filter(pl.col("rule") == "exclude")["c"].unique().to_list()
    assert "PORK" in excluded and "BEERS/ALES" in excluded
    opt = norm.filter(pl.col("rule") == "opt_in")["c"].unique().to_list()
    assert set(opt) <= set(SENSITIVE_CATEGORIES)
    known = set(read(demo, "products")["category"].unique().to_list())
    assert set(norm["c"].to_list()) <= known


def test_history_and_redemptions(demo):
    h, r, off = read(demo, "history"), read(demo, "redemptions"), read(demo, "offers")
    assert h["week"].min() >= PLAN_WEEK - 6 and h["week"].max() <= PLAN_WEEK - 1
    assert h.select("customer_id", "offer_id", "week").is_unique().all()
    ghosts = h.join(off, on="offer_id", how="anti").height
    assert 0 < ghosts < 0.05 * h.height
    # the frequency window (weeks 37..39) already holds more than 3 sends for a good share
    window = h.filter(pl.col("week") >= PLAN_WEEK - 3).group_by("customer_id").len()
    assert (window["len"] >= 4).sum() > 0.2 * N
    assert 0.02 < r.height / h.height < 0.2
    assert r.join(h, on=["customer_id", "offer_id", "week"], how="anti").height == 0


def test_scores_mode(scores_demo):
    s = read(scores_demo, "scores")
    assert s.height == N * 12
    per = s.group_by("customer_id").len()
    assert per.height == N and (per["len"] == 12).all()
    assert s.select("customer_id", "offer_id").is_unique().all()
    assert s["p_redeem"].is_between(0.0, 1.0).all()
    assert 0.02 < s["p_redeem"].mean() < 0.2
    assert (s["value"] >= 0).all()
    assert set(s["offer_id"].to_list()) <= set(read(scores_demo, "offers")["offer_id"].to_list())


def _bytes(folder: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted(folder.iterdir())}


@pytest.mark.parametrize("kwargs", [{}, {"scores_per_customer": 5}, {"file_format": "csv"}])
def test_deterministic(tmp_path, kwargs):
    write_demo_data(tmp_path / "a", 300, 20, seed=11, **kwargs)
    write_demo_data(tmp_path / "b", 300, 20, seed=11, **kwargs)
    write_demo_data(tmp_path / "c", 300, 20, seed=12, **kwargs)
    a, b, c = _bytes(tmp_path / "a"), _bytes(tmp_path / "b"), _bytes(tmp_path / "c")
    assert a == b
    assert a.keys() == c.keys()
    assert a["customers" + (".csv" if kwargs.get("file_format") else ".parquet")] != \
        c["customers" + (".csv" if kwargs.get("file_format") else ".parquet")]
    assert any(a[k] != c[k] for k in a)


def test_csv_format(tmp_path):
    counts = write_demo_data(tmp_path, 200, 15, seed=1, file_format="csv", scores_per_customer=4)
    files = sorted(p.name for p in tmp_path.iterdir())
    assert files == sorted(f"{n}.csv" for n in TABLES + ["scores"])
    for name, rows in counts.items():
        df = pl.read_csv(tmp_path / f"{name}.csv", try_parse_dates=True)
        assert df.height == rows
        assert set(INPUT_TABLES[name].required_columns) <= set(df.columns)
    tx = pl.read_csv(tmp_path / "transactions.csv")
    assert tx.height == 0 and tx.columns == ["customer_id", "product_id", "week", "sales_value",
                                             "date", "quantity", "discount"]
    off = pl.read_csv(tmp_path / "offers.csv")
    assert off["budget"].null_count() > 0  # empty cells mean no cap


def test_rewrite_replaces_tables(tmp_path):
    write_demo_data(tmp_path, 100, 10, seed=1, scores_per_customer=3, file_format="csv")
    write_demo_data(tmp_path, 120, 10, seed=1)
    names = sorted(p.name for p in tmp_path.iterdir())
    assert names == sorted(f"{n}.parquet" for n in TABLES)  # no stale csv or scores left
    assert read(tmp_path, "customers").height == 120


def test_rewrite_removes_every_other_input_table(tmp_path):
    """A table demo-data does not write, left in the folder from before, would be read beside
    the new ones (a stale offer_groups or funders changes the plan silently; only a stale scores
    table was removed): every input table's file it does not write goes, other files stay."""
    write_demo_data(tmp_path, 100, 10, seed=1)
    stale = ["offer_groups.csv", "funders.parquet", "channels.csv", "customer_channels.csv",
             "flights.csv", "spend.parquet", "forecast.csv", "scores.csv"]
    for name in stale + ["notes.txt", "funders.csv.bak"]:
        (tmp_path / name).write_text("x\n")
    write_demo_data(tmp_path, 100, 10, seed=1)
    names = sorted(p.name for p in tmp_path.iterdir())
    assert names == sorted([f"{n}.parquet" for n in TABLES] + ["notes.txt", "funders.csv.bak"])
    assert set(stale) <= {f"{n}.{ext}" for n in INPUT_TABLES for ext in ("csv", "parquet")}


def _parts(folder: Path, frame: pl.DataFrame) -> None:
    """``frame`` as a table folder of two Parquet parts (the reader's dataset form)."""
    folder.mkdir(parents=True)
    half = frame.height // 2
    frame.head(half).write_parquet(folder / "part-0.parquet")
    frame.tail(frame.height - half).write_parquet(folder / "part-1.parquet")


def test_rewrite_removes_a_stale_scores_folder(tmp_path):
    """The silent case: ``scores/`` (parts) from a dataset with scores would replace the new
    folder's affinity scoring; demo-data without scores removes it as it removes
    ``scores.parquet``."""
    data = tmp_path / "data"
    write_demo_data(data, 100, 10, seed=1, scores_per_customer=3)
    scores = pl.read_parquet(data / "scores.parquet")
    (data / "scores.parquet").unlink()
    _parts(data / "scores", scores)
    write_demo_data(data, 100, 10, seed=1)
    assert sorted(p.name for p in data.iterdir()) == sorted(f"{n}.parquet" for n in TABLES)


def test_rewrite_removes_stale_table_folders(tmp_path):
    """A table given as a folder of Parquet parts from an earlier dataset (``scores/``, which
    would replace the affinity scoring; ``funders.parquet/``; ``transactions/`` beside the
    transactions written now) is removed as a table file is: the folder then holds exactly what
    a fresh demo-data writes. Folders and files that are no input table's form stay: other
    names, a bare ``offer_groups`` file, a ``channels/`` folder holding other files (the reader
    refuses it by name), and a link's target."""
    fresh = tmp_path / "fresh"
    write_demo_data(fresh, 100, 10, seed=1)
    data = tmp_path / "data"
    write_demo_data(data, 100, 10, seed=1, scores_per_customer=3)
    scores = pl.read_parquet(data / "scores.parquet")
    (data / "scores.parquet").unlink()
    _parts(data / "scores", scores)
    _parts(data / "funders.parquet", pl.DataFrame({"funded_by": ["a"], "budget": [1.0]}))
    _parts(data / "transactions", read(data, "transactions"))
    _parts(tmp_path / "elsewhere", pl.DataFrame({"funded_by": ["b"], "budget": [2.0]}))
    (data / "flights").symlink_to(tmp_path / "elsewhere", target_is_directory=True)
    _parts(data / "my_tables", scores)  # no input table's name
    (data / "offer_groups").write_text("a bare file is no table\n")
    (data / "channels").mkdir()
    (data / "channels" / "README.txt").write_text("not a dataset\n")
    kept = {"my_tables/part-0.parquet", "my_tables/part-1.parquet", "offer_groups",
            "channels/README.txt"}
    write_demo_data(data, 100, 10, seed=1)
    files = {str(p.relative_to(data)): p.read_bytes() for p in data.rglob("*") if p.is_file()}
    assert {k: v for k, v in files.items() if k not in kept} == {
        str(p.relative_to(fresh)): p.read_bytes() for p in fresh.rglob("*") if p.is_file()}
    assert kept <= set(files)
    assert not (data / "flights").exists() and len(list((tmp_path / "elsewhere").iterdir())) == 2


def test_bad_arguments(tmp_path):
    with pytest.raises(ValueError):
        write_demo_data(tmp_path, 10, 5, scores_per_customer=6)
    with pytest.raises(ValueError):
        write_demo_data(tmp_path, 0, 5)
    with pytest.raises(ValueError):
        write_demo_data(tmp_path, 10, 5, file_format="xlsx")


def test_multiple_chunks(tmp_path, monkeypatch):
    import optimizer.apps.synthetic as synthetic

    monkeypatch.setattr(synthetic, "CHUNK_CUSTOMERS", 70)
    counts = write_demo_data(tmp_path, 250, 12, seed=2, scores_per_customer=6)
    cust = read(tmp_path, "customers")
    assert cust["customer_id"].to_list() == list(range(1, 251))
    s = read(tmp_path, "scores")
    assert counts["scores"] == 250 * 6 and s.select("customer_id", "offer_id").is_unique().all()
    import pyarrow.parquet as pq

    assert pq.ParquetFile(tmp_path / "customers.parquet").num_row_groups == 4


@pytest.mark.parametrize("args, phrase", [
    (["--seed", "-1"], "seed"),
    (["--offers", "3", "--scores-per-customer", "5"], "scores_per_customer"),
    (["--week", "-2000000"], "week"),
    (["--customers", "0"], "--customers"),
    (["--customers", "-5"], "--customers"),
    (["--offers", "0"], "--offers"),
    (["--offers", "-1"], "--offers"),
    # sizes no machine holds: the catalogue of a billion offers, a chunk's lines of 10^8 weeks,
    # a chunk's scores rows, a folder of 10^13 customers on disk
    (["--offers", "1000000000"], "GB of memory"),
    (["--weeks", "100000000"], "GB of memory"),
    (["--customers", "1000000", "--offers", "100000", "--scores-per-customer", "100000"],
     "GB of memory"),
    (["--customers", "10000000000000"], "GB free there"),
    # a week no scenario can plan (week knobs are at most 1,000,000 in absolute value)
    (["--week", "1000001"], "within -1,000,000..1,000,000"),
    (["--week", "-999990"], "within -1,000,000..1,000,000"),
])
def test_bad_arguments_on_the_command_line_exit_2(tmp_path, args, phrase):
    from click.testing import CliRunner

    from optimizer.cli import main

    out = tmp_path / "demo"
    result = CliRunner().invoke(main, ["demo-data", str(out), "--customers", "10", *args])
    assert result.exit_code == 2, (result.exit_code, result.output, result.exception)
    assert isinstance(result.exception, SystemExit), result.exception   # no traceback
    assert phrase in result.output
    assert not out.exists()


def test_sizes_the_machine_cannot_hold_are_refused_before_anything_is_written(tmp_path,
                                                                              monkeypatch):
    """The estimate of the generator's peak memory is held against the memory the process may
    use (here 1 GB): a demo that fits is written, a larger one refused naming its size."""
    import optimizer.apps.synthetic_size as size

    monkeypatch.setattr(size, "available_memory", lambda: 1024 ** 3)
    monkeypatch.setattr(size, "process_memory_limits", lambda: [])
    memory, _ = size.demo_sizes(50, 10, None, 4, 100_000)
    assert memory < 1024 ** 3
    write_demo_data(tmp_path / "fits", 50, 10, seed=0, weeks=4)
    assert (tmp_path / "fits" / "customers.parquet").is_file()
    with pytest.raises(ValueError, match="needs about .* GB of memory .* more than the memory "
                                         "available \\(1.0 GB\\)"):
        write_demo_data(tmp_path / "big", 50, 200_000, seed=0, weeks=4)
    assert not (tmp_path / "big").exists()


@pytest.mark.parametrize("inside", ["", "data"])
def test_refuses_a_run_folder_or_one_inside_it(tmp_path, inside):
    """A run's folder holds its own customers.parquet (the lifetime values), which demo-data
    replaced with the input table; and a run replaces its folder whole, so tables written inside
    it are deleted by the next run. Exit 2, nothing written (audit29)."""
    from click.testing import CliRunner

    from optimizer.cli import main
    from tests.tiny_world import tree_bytes

    run = tmp_path / "run"
    run.mkdir()
    (run / "manifest.json").write_text('{"package_version": "0", "scenario": {}, "objective": 0}')
    (run / "customers.parquet").write_bytes(b"the run's lifetime values")
    before = tree_bytes(run)
    out = run / inside if inside else run
    result = CliRunner().invoke(main, ["demo-data", str(out), "--customers", "10", "--offers",
                                       "2"])
    assert result.exit_code == 2, (result.exit_code, result.output, result.exception)
    assert "a run's output (manifest.json)" in " ".join(result.output.split())
    assert tree_bytes(run) == before
