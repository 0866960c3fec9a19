"""The ``scores`` table at an fsspec URL (``scores_url``: optimizer/io/remote.py): a ``file://``
URL of a multi-file dataset and a ``memory://`` copy give the run folder of the same table in the
data folder, byte for byte (the same rows, in the same order, with the same checksum); workers'
rows read through a URL are the rows read from the path, reading only the row groups that can hold
their customers; bad URLs are exit code 2."""
from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

import fsspec
import fsspec.implementations.memory
import numpy as np
import polars as pl
import pyarrow.parquet as pq
import pytest
from click.testing import CliRunner

from optimizer.apps.synthetic import write_demo_data
from optimizer.cli import main
from optimizer.core.errors import InputError
from optimizer.io.load import read_table_rows
from optimizer.io.remote import row_groups_of
from optimizer.io.validate import load_inputs
from tests.test_reproducible import FILES, RULES, _diff, _without_timings
from tests.tiny_world import write_scenario


@pytest.fixture(scope="module")
def world(tmp_path_factory) -> dict[str, Path]:
    """A 300-customer scores world, and the same inputs with the scores table moved out of the
    folder into a dataset of three parts (one in a sub-folder, one skipped ``_SUCCESS``)."""
    root = tmp_path_factory.mktemp("remote")
    write_demo_data(root / "inside", customers=300, offers=20, seed=1, scores_per_customer=8)
    shutil.copytree(root / "inside", root / "outside")
    scores = pl.read_parquet(root / "outside" / "scores.parquet")
    (root / "outside" / "scores.parquet").unlink()
    dataset = root / "tables" / "scores"
    (dataset / "b").mkdir(parents=True)
    third = scores.height // 3
    scores[:third].write_parquet(dataset / "a-0.parquet")
    scores[third:2 * third].write_parquet(dataset / "a-1.parquet")
    scores[2 * third:].write_parquet(dataset / "b" / "a-2.parquet")
    (dataset / "_SUCCESS").write_text("")
    local = root / "local-dataset"  # the same dataset in a data folder
    shutil.copytree(root / "outside", local)
    shutil.copytree(dataset, local / "scores")
    return {"inside": root / "inside", "outside": root / "outside", "dataset": dataset,
            "local": local}


def _run(root: Path, data: Path, *args: str, extra: str = "") -> tuple[int, str, dict[str, bytes],
                                                                       dict]:
    path = write_scenario(root / "scenario.toml", data=str(data), output="run", rules=RULES,
                          solver={"seed": 3, "max_iterations": 12}, extra=extra)
    # a top-level key must come before the first [section]: put it on top
    text = path.read_text()
    if extra:
        path.write_text(extra + text.replace(extra, ""))
    done = CliRunner().invoke(main, ["run", str(path), "--json", *args])
    out = root / "run"
    if done.exit_code != 0:
        return done.exit_code, done.output, {}, {}
    return (0, done.output, {f: (out / f).read_bytes() for f in FILES},
            json.loads((out / "manifest.json").read_text()))


def _comparable(manifest: dict) -> Any:
    return _without_timings({k: v for k, v in manifest.items() if k != "scenario"})


def _same(files: dict[str, bytes], local: dict[str, bytes]) -> None:
    for f in FILES:
        assert files[f] == local[f], f"{f} differs: " + _diff(local[f], files[f], f)


def test_file_url_of_a_dataset_gives_the_local_bytes(world, tmp_path):
    code, _, local, manifest = _run(tmp_path / "local", world["local"])
    assert code == 0 and len(local["assignments.csv"].splitlines()) > 100
    url = world["dataset"].as_uri()  # file:///...
    code, out, files, other = _run(tmp_path / "url", world["outside"],
                                   extra=f'scores_url = "{url}"\n')
    assert code == 0, out
    _same(files, local)
    # the same checksum as the folder's dataset: the manifests agree but for the scenario
    assert _comparable(other) == _comparable(manifest)
    assert other["scenario"]["scores_url"] == url


def test_memory_url_gives_the_bytes_of_the_table_in_the_folder(world, tmp_path):
    code, _, local, _ = _run(tmp_path / "local", world["inside"])
    assert code == 0
    fs = fsspec.filesystem("memory")
    with fs.open("memory://offeropt-test/in/scores.parquet", "wb") as handle:
        handle.write((world["inside"] / "scores.parquet").read_bytes())
    try:
        url = "memory://offeropt-test/in/scores.parquet"
        code, out, files, manifest = _run(tmp_path / "url", world["outside"],
                                          extra=f'scores_url = "{url}"\n')
        assert code == 0, out
        _same(files, local)
        checked = CliRunner().invoke(main, ["check", str(tmp_path / "url" / "scenario.toml")])
        assert checked.exit_code == 0, checked.output
    finally:
        fs.rm("memory://offeropt-test", recursive=True)


def test_rows_of_customers_read_through_a_url_are_the_paths(world):
    customers = pl.read_parquet(world["inside"] / "customers.parquet").get_column("customer_id")
    some = customers.gather(list(range(0, customers.len(), 7)))
    from_path = read_table_rows(world["local"] / "scores", "scores", "customer_id", some)
    from_url = read_table_rows(world["dataset"].as_uri(), "scores", "customer_id", some)
    assert from_url.height > 0 and from_url.equals(from_path)
    assert set(from_url.get_column("customer_id")) == set(some)


@pytest.mark.parametrize("url, words", [
    ("memory://offeropt-test/none/scores.parquet", "nothing at memory://"),
    ("nosuchprotocol://x/scores.parquet", "cannot open nosuchprotocol://"),
])
def test_bad_scores_urls_exit_2(world, tmp_path, url, words):
    code, out, _, _ = _run(tmp_path, world["outside"], extra=f'scores_url = "{url}"\n')
    text = " ".join(out.split())
    assert code == 2 and "scores" in text and words in text, out
    assert not (tmp_path / "run").exists()


def test_scores_url_and_a_scores_table_in_the_folder_exit_2(world, tmp_path):
    url = world["dataset"].as_uri()
    code, out, _, _ = _run(tmp_path, world["inside"], extra=f'scores_url = "{url}"\n')
    assert code == 2 and "two forms of the table" in " ".join(out.split()), out


def test_scores_url_must_be_a_url(world, tmp_path):
    code, out, _, _ = _run(tmp_path, world["outside"], extra='scores_url = "tables/scores"\n')
    assert code == 2 and "scores_url" in out, out


def _dataset(root: Path, frames: list[pl.DataFrame]) -> Path:
    """A dataset folder of ``frames`` as parts, in order."""
    root.mkdir(parents=True)
    for k, frame in enumerate(frames):
        frame.write_parquet(root / f"part-{k}.parquet")
    return root


def test_an_empty_table_at_a_url_reads_as_the_same_table_in_the_folder(world, tmp_path):
    """A scores table of no rows (a part without rows) is read as the local one is: its columns
    and no rows, by the driver and by a worker's rows, not a crash on an empty list of batches."""
    empty = pl.read_parquet(world["inside"] / "scores.parquet").clear()
    dataset = _dataset(tmp_path / "scores", [empty])
    local = tmp_path / "local"
    shutil.copytree(world["outside"], local)
    shutil.copytree(dataset, local / "scores")
    from_folder = load_inputs(local)
    from_url = load_inputs(world["outside"], scores_url=dataset.as_uri())
    assert from_folder.scores is not None and from_url.scores is not None
    assert from_url.scores.height == 0 and from_url.scores.equals(from_folder.scores)
    assert from_url.sha256["scores"] == from_folder.sha256["scores"]
    some = pl.Series("customer_id", [1, 2, 3], dtype=empty["customer_id"].dtype)
    rows = read_table_rows(dataset.as_uri(), "scores", "customer_id", some)
    assert rows.equals(read_table_rows(local / "scores", "scores", "customer_id", some))


@pytest.mark.parametrize("change", ["type", "column"])
def test_parts_of_other_schemas_at_a_url_exit_2(world, tmp_path, change):
    """Parts that do not share columns and types are bad input (exit 2, the table and the URL
    named), as they are in a local dataset, not a crash in the concatenation."""
    scores = pl.read_parquet(world["inside"] / "scores.parquet")
    second = (scores[50:].with_columns(pl.col("customer_id").cast(pl.Int32)) if change == "type"
              else scores[50:].drop("value"))
    url = _dataset(tmp_path / "scores", [scores[:50], second]).as_uri()
    code, out, _, _ = _run(tmp_path / "run", world["outside"], extra=f'scores_url = "{url}"\n')
    text = " ".join(out.split())
    assert code == 2 and "table 'scores'" in text and url in text.replace(" ", ""), out
    assert not (tmp_path / "run" / "run").exists()
    with pytest.raises(InputError, match="do not have the same columns"):
        read_table_rows(url, "scores", "customer_id", scores.get_column("customer_id"))
    # customers of the first part only: the second part's row groups are not read, its types
    # and columns are still checked
    first = scores[:40].get_column("customer_id").unique()
    first = first.filter(~first.is_in(second.get_column("customer_id").cast(first.dtype)
                                      .implode()))
    assert first.len() > 0 and scores[:50].get_column("customer_id").is_sorted()
    with pytest.raises(InputError, match="do not have the same columns"):
        read_table_rows(url, "scores", "customer_id", first)


def test_a_missing_column_at_a_url_names_the_url(world, tmp_path):
    """A required column missing from the table at a URL: exit 2, the message names the table,
    the column and the whole URL (not its last component: ``scores`` says nowhere where)."""
    scores = pl.read_parquet(world["inside"] / "scores.parquet").drop("value")
    url = _dataset(tmp_path / "bucket" / "scores", [scores]).as_uri()
    code, out, _, _ = _run(tmp_path / "run", world["outside"], extra=f'scores_url = "{url}"\n')
    text = " ".join(out.split())
    assert code == 2 and "column 'value'" in text, out
    assert url in text.replace(" ", ""), out


def test_stream_scores_with_a_url_is_refused(world, tmp_path):
    """``solver.stream_scores = true`` cannot stream a table at a URL: exit 2 naming both knobs,
    not a silent read of the whole table (which the knob was set to avoid)."""
    url = world["dataset"].as_uri()
    code, out, _, _ = _run(tmp_path, world["outside"], "--set", "solver.stream_scores=true",
                           extra=f'scores_url = "{url}"\n')
    text = " ".join(out.split())
    assert code == 2 and "stream_scores" in text and "scores_url" in text, out
    assert not (tmp_path / "run").exists()


def test_a_relative_file_url_is_refused(world, tmp_path, monkeypatch):
    """``file://tables/scores`` would be read from the working directory (fsspec's reading),
    whatever the scenario's folder, and each Dask worker from its own: exit 2, not a table that
    depends on where the command was started."""
    monkeypatch.chdir(world["dataset"].parent.parent)  # where the relative URL finds the table
    code, out, _, _ = _run(tmp_path, world["outside"],
                           extra='scores_url = "file://tables/scores"\n')
    text = " ".join(out.split())
    assert code == 2 and "must be absolute" in text, out
    assert not (tmp_path / "run").exists()


class _CountingMemory(fsspec.implementations.memory.MemoryFileSystem):
    """``countmem://``: the memory filesystem (its files shared with ``memory://``), counting
    the bytes its readers read."""

    protocol = "countmem"
    read_bytes = 0

    @classmethod
    def _strip_protocol(cls, path: str) -> str:
        return super()._strip_protocol(path.replace("countmem://", "memory://", 1))

    def _open(self, path: str, mode: str = "rb", **kwargs: Any) -> Any:
        handle = super()._open(path, mode, **kwargs)
        if "r" in mode:
            plain = handle.read

            def counted(*args: Any) -> bytes:
                block = plain(*args)
                _CountingMemory.read_bytes += len(block)
                return block

            handle.read = counted
        return handle


@pytest.mark.parametrize("ids", ["integers", "text"])
def test_a_shard_reads_only_the_row_groups_of_its_customers(tmp_path, ids):
    """A scores table sorted by customer, three parts of many row groups each, at a URL: a
    shard's 100 customers are read from the row groups whose ``customer_id`` statistics can
    hold them (one of the 60) and give the rows, in order, that the
    whole table filtered gives (and the local path's read); shuffled, every row group is read
    and the rows are still those."""
    fsspec.register_implementation("countmem", _CountingMemory, clobber=True)
    n, k = 30_000, 4  # customers, offers each: 40,000 rows a part, 20 row groups of 2,000
    rng = np.random.default_rng(4)  # values that do not compress: footers are a small part
    scores = pl.DataFrame({"customer_id": np.repeat(np.arange(n), k),
                           "offer_id": np.tile(np.arange(k), n),
                           "p_redeem": rng.random(n * k), "value": rng.random(n * k)})
    if ids == "text":
        scores = scores.with_columns(pl.format("c{}", pl.col("customer_id").cast(pl.Utf8)
                                               .str.zfill(5)).alias("customer_id"))
    some = scores.get_column("customer_id").unique(maintain_order=True).slice(17_000, 100)
    fs = fsspec.filesystem("memory")
    try:
        for order, rows in (("sorted", scores), ("shuffled", scores.sample(fraction=1.0, seed=5, shuffle=True))):
            third = rows.height // 3
            folder = tmp_path / order
            folder.mkdir()
            for p in range(3):
                part = folder / f"part-{p}.parquet"
                rows[p * third:(p + 1) * third].write_parquet(part, row_group_size=2000)
                fs.pipe(f"/offeropt-groups/{order}/part-{p}.parquet", part.read_bytes())
            _CountingMemory.read_bytes = 0
            got = read_table_rows(f"countmem://offeropt-groups/{order}", "scores",
                                  "customer_id", some)
            expected = read_table_rows(folder, "scores", "customer_id", some)
            assert got.height == 100 * k and got.equals(expected)
            whole = rows.filter(pl.col("customer_id").is_in(some.implode()))
            assert got.get_column("value").to_list() == whole.get_column("value").to_list()
            picked = [row_groups_of(pq.ParquetFile(folder / f"part-{p}.parquet").metadata,
                                    "customer_id", some) for p in range(3)]
            size = sum(f.stat().st_size for f in folder.iterdir())
            if order == "sorted":  # customers 17,000-17,099: rows 68,000-68,399, 2nd part
                assert picked == [[], [14], []], picked
                assert _CountingMemory.read_bytes < size / 4, (_CountingMemory.read_bytes, size)
            else:
                assert picked == [list(range(20))] * 3, picked
                assert _CountingMemory.read_bytes > size / 2, (_CountingMemory.read_bytes, size)
    finally:
        fs.rm("memory://offeropt-groups", recursive=True)


def test_a_url_whose_ids_cannot_be_matched_is_bad_input_as_the_local_path(tmp_path):
    """A scores table whose ``customer_id`` is stored as a dictionary of text, read for integer
    customers: the local path's read refuses it as bad input (exit 2), and so does the URL's,
    instead of polars' cast error escaping the filter as a traceback."""
    import pyarrow as pa

    table = pa.table({"customer_id": pa.array(["1", "2", "3", "4"]).dictionary_encode(),
                      "offer_id": ["a", "b", "a", "b"], "p_redeem": [0.1, 0.2, 0.3, 0.4],
                      "value": [1.0, 2.0, 3.0, 4.0]})
    path = tmp_path / "scores.parquet"
    pq.write_table(table, path, row_group_size=2)
    fsspec.filesystem("memory").pipe("/offeropt-dict/scores.parquet", path.read_bytes())
    some = pl.Series("customer_id", [3])
    for source in (path, "memory://offeropt-dict/scores.parquet"):
        with pytest.raises(InputError, match="cannot cast categorical"):
            read_table_rows(source, "scores", "customer_id", some)


def test_padded_text_ids_are_read_trimmed_from_every_row_group(world, tmp_path):
    """Text customer IDs stored with surrounding spaces: the driver's read of the whole table
    (and of its batches) says so (``Inputs.scores_ids_trimmed``), and a worker's read of its
    customers' rows told to trim finds every one of them, at a URL and on a local path, in
    every row group (the statistics of the stored text would prune the padded ones away); the
    untrimmed read misses them. The demo's integer IDs need no trimming: row groups are pruned
    as before."""
    assert not load_inputs(world["inside"]).scores_ids_trimmed
    data = tmp_path / "padded"
    shutil.copytree(world["inside"], data)
    customers = pl.read_parquet(data / "customers.parquet").with_columns(
        pl.col("customer_id").cast(pl.Utf8))
    customers.write_parquet(data / "customers.parquet")
    text = pl.col("customer_id").cast(pl.Utf8)
    scores = pl.read_parquet(data / "scores.parquet").sort("customer_id", "offer_id").with_columns(
        customer_id=pl.when(pl.col("customer_id") % 3 == 0).then(pl.lit("\t") + text + " ")
        .otherwise(text))
    scores.write_parquet(data / "scores.parquet", row_group_size=40)
    assert load_inputs(data).scores_ids_trimmed
    streamed = load_inputs(data, stream_scores=True)
    assert streamed.scores_batches is not None and not streamed.scores_ids_trimmed
    for _ in streamed.scores_batches:  # known as the batches are read
        pass
    assert streamed.scores_ids_trimmed
    some = customers.get_column("customer_id").slice(30, 60)
    want = scores.filter(pl.col("customer_id").str.strip_chars().is_in(some.implode()))
    assert want.get_column("customer_id").str.starts_with("\t").any()
    fs = fsspec.filesystem("memory")
    fs.pipe("/offeropt-padded/scores.parquet", (data / "scores.parquet").read_bytes())
    try:
        for source in (data / "scores.parquet", "memory://offeropt-padded/scores.parquet"):
            got = read_table_rows(source, "scores", "customer_id", some, trim=True)
            assert got.get_column("value").to_list() == want.get_column("value").to_list()
            untrimmed = read_table_rows(source, "scores", "customer_id", some)
            assert untrimmed.height < want.height
    finally:
        fs.rm("memory://offeropt-padded", recursive=True)


@pytest.mark.parametrize("trim", [False, True])
@pytest.mark.parametrize("ids", ["integers", "text"])
def test_rows_of_keeps_the_listed_ids_only(tmp_path, ids, trim):
    """The read's filter states the values' range beside the membership (so polars skips row
    groups outside it): rows are kept exactly as by membership alone, for values listed out of
    order, text IDs of several lengths (whose order is the text's, not the numbers') and a
    table stored in another order than the values."""
    rng = np.random.default_rng(7)
    raw = rng.permutation(np.r_[np.arange(1, 40), [100, 905, 1000, 7]])
    stored = pl.Series("customer_id", raw)
    if ids == "text":
        stored = stored.cast(pl.Utf8)
        if trim:
            stored = stored.to_frame().select(pl.format(" {} ", "customer_id")).to_series()
    table = pl.DataFrame({"customer_id": stored, "offer_id": np.arange(raw.size) % 3,
                          "p_redeem": rng.random(raw.size), "value": rng.random(raw.size)})
    path = tmp_path / "scores.parquet"
    table.write_parquet(path, row_group_size=5)
    wanted = [905, 3, 100, 38] if ids == "integers" else ["905", "3", "100", "38"]
    values = pl.Series("customer_id", wanted)
    got = read_table_rows(path, "scores", "customer_id", values, trim=trim and ids == "text")
    key = pl.col("customer_id").cast(pl.Utf8).str.strip_chars()
    expected = table.filter(key.is_in(pl.Series([str(w) for w in wanted]).implode()))
    assert got.height == 4
    assert got.get_column("value").to_list() == expected.get_column("value").to_list()
