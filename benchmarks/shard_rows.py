"""A worker's read of its shard's rows of a ``scores`` table sorted by customer (issue 21).

Usage:

    python benchmarks/shard_rows.py --customers 100000 --offers 40 --row-group 100000 --parts 1

Writes a seeded ``scores`` table of ``customers x offers`` rows sorted by customer (row groups of
``--row-group`` rows, in ``--parts`` Parquet files) to a temporary folder and to ``memory://``,
then reads the rows of ``--shard`` consecutive customers from its middle, as a Dask worker
building its shard does (``optimizer.io.load.read_table_rows``), from the local path, a
``file://`` URL and the ``memory://`` URL; and, at the URLs, the whole table read batch by batch
and filtered (the read before the row groups were chosen by their statistics). Each figure is the
median of ``--repeat`` reads; every read gives the same rows. Writes a stamped result
(``benchmarks/stamp.py``) to ``benchmarks/results/shard_rows_{instance}_{commit}.json``.
"""
from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, Callable

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from stamp import stamp, write_result  # noqa: E402


def _median_seconds(read: Callable[[], Any], repeat: int) -> tuple[float, Any]:
    """The median seconds of ``repeat`` calls of ``read``, and its last answer."""
    times, out = [], None
    for _ in range(repeat):
        start = time.perf_counter()
        out = read()
        times.append(time.perf_counter() - start)
    return round(statistics.median(times), 4), out


def _write(folder: Path, customers: int, offers: int, row_group: int, parts: int) -> Path:
    """The seeded table, sorted by customer, as ``parts`` files in ``folder/scores``."""
    import polars as pl

    rng = np.random.default_rng(21)
    n = customers * offers
    frame = pl.DataFrame({"customer_id": np.repeat(np.arange(customers, dtype=np.int64), offers),
                          "offer_id": np.tile(np.arange(offers, dtype=np.int64), customers),
                          "p_redeem": rng.beta(1.5, 15, n), "value": rng.gamma(2.0, 5.0, n)})
    table = folder / "scores"
    table.mkdir(parents=True)
    for p, cut in enumerate(np.array_split(np.arange(n), parts)):
        frame[int(cut[0]):int(cut[-1]) + 1].write_parquet(table / f"part-{p:03d}.parquet",
                                                          row_group_size=row_group)
    return table


def main() -> None:
    """Measure and write the stamped result."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--customers", type=int, default=100_000)
    parser.add_argument("--offers", type=int, default=40)
    parser.add_argument("--row-group", type=int, default=100_000)
    parser.add_argument("--parts", type=int, default=1)
    parser.add_argument("--shard", type=int, default=100, help="customers read")
    parser.add_argument("--repeat", type=int, default=5)
    args = parser.parse_args()
    stamped = stamp()

    import fsspec
    import polars as pl
    import pyarrow.parquet as pq

    from optimizer.core.schemas import INPUT_TABLES
    from optimizer.io import remote
    from optimizer.io.load import read_table_rows

    wanted = list(INPUT_TABLES["scores"].columns)
    first = args.customers // 2
    some = pl.Series("customer_id", np.arange(first, first + args.shard, dtype=np.int64))
    fs = fsspec.filesystem("memory")
    result: dict[str, Any] = {**stamped, "rows": args.customers * args.offers,
                              "customers": args.customers, "offers": args.offers,
                              "row_group_rows": args.row_group, "parts": args.parts,
                              "shard_customers": args.shard, "repeat": args.repeat}
    with tempfile.TemporaryDirectory() as tmp:
        table = _write(Path(tmp), args.customers, args.offers, args.row_group, args.parts)
        files = sorted(table.iterdir())
        for part in files:
            fs.pipe(f"/offeropt-bench/scores/{part.name}", part.read_bytes())
        metas = [pq.ParquetFile(part).metadata for part in files]
        result["row_groups"] = sum(m.num_row_groups for m in metas)
        result["row_groups_read"] = sum(len(remote.row_groups_of(m, "customer_id", some))
                                         for m in metas)
        sources = {"path": str(table), "file": table.as_uri(),
                   "memory": "memory://offeropt-bench/scores"}
        rows = None
        for name, source in sources.items():
            seconds, got = _median_seconds(
                lambda: read_table_rows(source, "scores", "customer_id", some), args.repeat)
            assert got.height == args.shard * args.offers and (rows is None or got.equals(rows))
            rows, result[f"{name}_s"] = got, seconds
            if name != "path":  # the whole table read and filtered, batch by batch
                keep = remote.rows_of("customer_id", some)
                seconds, whole = _median_seconds(lambda: pl.concat(
                    [f.filter(keep) for f in remote._read(source, "scores", wanted)]),
                    args.repeat)
                assert whole.height == got.height
                result[f"{name}_whole_table_s"] = seconds
        fs.rm("/offeropt-bench", recursive=True)
    instance = (f"c{args.customers}-o{args.offers}-g{args.row_group}-p{args.parts}"
                f"-s{args.shard}")
    print(result)
    print(write_result("shard_rows", instance, result))


if __name__ == "__main__":
    main()
