"""Input tables at fsspec URLs (``scenario.scores_url``): ``file://``, ``memory://`` and any
protocol fsspec knows whose package is installed (``s3://`` with ``s3fs``, ``gs://`` with
``gcsfs``...; credentials as that package reads them, e.g. its environment variables).

A table at a URL is a Parquet file or a folder of Parquet parts (in sub-folders too; names
starting with ``.`` or ``_`` skipped), as in the data folder (:mod:`.load`, which types what is
read here). Parts are taken in the order of their relative paths' components, as
:func:`.load.dataset_parts` orders a local folder's, and the digest is made as
:func:`.load.file_sha256` makes a local one, so the same table reads the same rows in the same
order, with the same checksum, from a local path or from a ``file://`` URL of it.
"""
from __future__ import annotations

import hashlib
from pathlib import PurePosixPath
from typing import Any, Callable, Iterator

import polars as pl
import pyarrow as pa
import pyarrow.parquet as pq

from optimizer.core.errors import InputError

_BATCH_ROWS = 1 << 20  # rows read at a time when only some are kept
_INT64 = (-(1 << 63), (1 << 63) - 1)
_Groups = Callable[[pq.FileMetaData], list[int]]  # a part's footer -> its row groups to read


def is_url(path: object) -> bool:
    """Whether ``path`` names a table by URL (``PROTOCOL://...``) rather than a local path."""
    return isinstance(path, str) and "://" in path


def url_parts(url: str, name: str) -> tuple[Any, str, list[str]]:
    """The filesystem of ``url``, its path there and the Parquet parts of table ``name``: the
    file, or a folder's parts in path order; bad input (nothing there, not Parquet, an unknown protocol)
    is an :class:`InputError` naming the table and the URL."""
    try:
        import fsspec

        fs, root = fsspec.core.url_to_fs(url)
        if fs.isdir(root):
            base = PurePosixPath(root)
            found = [(PurePosixPath(p).relative_to(base), p) for p in fs.find(root)]
            files = sorted((rel.parts, p) for rel, p in found
                           if not any(part.startswith((".", "_")) for part in rel.parts))
            others = [p for parts, p in files if not p.endswith(".parquet")]
            if others:
                raise InputError(name, None, f"{url} is a folder, read as a dataset of Parquet "
                                 f"parts, but it holds {others[0]} (and {len(others) - 1} more) "
                                 "that is not a Parquet file")
            if not files:
                raise InputError(name, None, f"{url} is a folder holding no .parquet parts")
            return fs, root, [p for _, p in files]
        if not fs.exists(root):
            raise InputError(name, None, f"nothing at {url}: the table's URL must name a Parquet "
                             "file or a folder of Parquet parts")
        if not root.endswith(".parquet"):
            raise InputError(name, None, f"{url} is not a .parquet file nor a folder of them")
        return fs, root, [root]
    except InputError:
        raise
    except (ImportError, ValueError, OSError) as exc:  # unknown protocol, its package missing
        raise InputError(name, None, f"cannot open {url}: {type(exc).__name__}: {exc}") from None


def _read(url: str, name: str, wanted: list[str], groups: _Groups | None = None
          ) -> Iterator[pl.DataFrame]:
    """The table's ``wanted`` columns (those it has), part by part in batches of rows; with
    ``groups``, of each part only the row groups it picks from the part's footer (a part none of
    whose rows is read still gives its columns, empty, so parts of other types are refused as
    when they are read)."""
    fs, _, parts = url_parts(url, name)
    try:
        schema = pq.read_schema(parts[0], filesystem=fs)
        cols = [c for c in wanted if c in schema.names]
        batches = 0
        for part in parts:
            with fs.open(part, "rb") as handle:
                parquet = pq.ParquetFile(handle)
                chosen = None if groups is None else groups(parquet.metadata)
                if chosen == [] and parquet.metadata.num_rows:
                    empty = parquet.schema_arrow.empty_table()
                    yield pl.from_arrow(  # type: ignore[misc]
                        empty.select([c for c in cols if c in empty.column_names]))
                    continue
                for batch in parquet.iter_batches(_BATCH_ROWS, row_groups=chosen, columns=cols):
                    batches += 1
                    yield pl.from_arrow(pa.Table.from_batches([batch]))  # type: ignore[misc]
        if not batches:  # a table of no rows: its columns, as a local one reads
            yield pl.from_arrow(schema.empty_table().select(cols))  # type: ignore[misc]
    except (pa.ArrowException, OSError, ValueError) as exc:
        first = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise InputError(name, None, f"cannot read {url}: {first}") from None


def rows_of(column: str, values: pl.Series, trim: bool = False) -> pl.Expr:
    """Keeps the rows whose ``column`` (cast to the type of ``values``; with ``trim``, text
    trimmed of surrounding whitespace first, as the run reads IDs) is one of ``values``."""
    stored = pl.col(column)
    if trim:
        stored = stored.cast(pl.Utf8).str.strip_chars()
    stored = stored.cast(values.dtype)
    keep = stored.is_in(values.implode())
    present = values.drop_nulls()
    if present.is_empty():
        return keep
    # the values' range, said apart: polars skips the row groups whose statistics lie outside
    # it (it does not for is_in alone), so a table sorted by ``column`` gives a stretch of
    # customers for the price of their row groups; every kept row is in the range anyway
    lo, hi = pl.lit(present.min(), dtype=values.dtype), pl.lit(present.max(), dtype=values.dtype)
    return (stored >= lo) & (stored <= hi) & keep


def row_groups_of(meta: pq.FileMetaData, column: str, values: pl.Series) -> list[int]:
    """The row groups of a Parquet file (its footer ``meta``) that may hold a row whose
    ``column`` is one of ``values`` (integers or text): every one but those whose ``column``
    statistics (min and max, of the values' kind) bound a range holding none of ``values``. A
    row group without such statistics is kept (it may hold any value)."""
    kind = int if values.dtype.is_integer() else str if values.dtype == pl.Utf8 else None
    where = [j for j in range(meta.num_columns)
             if meta.num_row_groups and meta.row_group(0).column(j).path_in_schema == column]
    if kind is None or not where:
        return list(range(meta.num_row_groups))
    wanted = values.drop_nulls().cast(pl.Int64 if kind is int else pl.Utf8).sort()
    kept = []
    for i in range(meta.num_row_groups):
        stats = meta.row_group(i).column(where[0]).statistics
        bounds = (stats.min, stats.max) if stats is not None and stats.has_min_max else None
        if bounds is None or any(type(b) is not kind for b in bounds):
            kept.append(i)
        elif _holds(wanted, kind, *bounds):
            kept.append(i)
    return kept


def _holds(wanted: pl.Series, kind: type, lo: Any, hi: Any) -> bool:
    """Whether sorted ``wanted`` holds a value in ``[lo, hi]`` (integers clamped to its type's
    range first)."""
    if kind is int:
        lo, hi = max(lo, _INT64[0]), min(hi, _INT64[1])
        if lo > hi:
            return False
    at = int(wanted.search_sorted(lo, side="left"))
    return at < wanted.len() and wanted[at] <= hi


def _joined(frames: list[pl.DataFrame], url: str, name: str) -> pl.DataFrame:
    """The batches one below the other; parts whose columns or types differ are bad input, as
    they are in a local dataset (an :class:`InputError` naming the table and the URL)."""
    try:
        return pl.concat(frames, how="vertical")
    except pl.exceptions.PolarsError as exc:
        first = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise InputError(name, None, f"cannot read {url}: its Parquet parts do not have the "
                         f"same columns and types ({first})") from None


def read_url(url: str, name: str, wanted: list[str]) -> pl.DataFrame:
    """Table ``name`` at ``url``, its ``wanted`` columns, as stored (untyped)."""
    return _joined(list(_read(url, name, wanted)), url, name)


def read_url_rows(url: str, name: str, wanted: list[str], column: str, values: pl.Series,
                  trim: bool = False) -> pl.DataFrame:
    """The rows of table ``name`` at ``url`` whose ``column`` is one of ``values``
    (:func:`rows_of`), its ``wanted`` columns, as stored, in the table's order. Only the row
    groups whose ``column`` statistics may hold one of ``values`` are read
    (:func:`row_groups_of`: a table sorted by ``column`` gives a few customers' rows for the
    price of their row groups and every part's footer), filtered batch by batch, so memory holds
    the rows kept and one batch. With ``trim`` (some stored text IDs have surrounding spaces)
    ``column`` is compared trimmed and every row group read: the statistics bound the stored
    text, not the trimmed IDs."""
    keep = rows_of(column, values, trim)

    def groups(meta: pq.FileMetaData) -> list[int]:
        return row_groups_of(meta, column, values)

    try:
        kept = [frame.filter(keep)
                for frame in _read(url, name, wanted, None if trim else groups)]
    except pl.exceptions.PolarsError as exc:  # a column ``values`` cannot be matched with
        first = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise InputError(name, None, f"cannot read {url}: {first}") from None
    return _joined(kept, url, name)


def url_sha256(url: str, name: str) -> str:
    """SHA-256 of the table at ``url``: of its bytes (a file), or of its parts' relative paths
    and digests in path order (a folder), as :func:`.load.file_sha256` digests a local one."""
    fs, root, parts = url_parts(url, name)

    def of_file(part: str) -> str:
        digest = hashlib.sha256()
        with fs.open(part, "rb") as handle:
            for block in iter(lambda: handle.read(1 << 22), b""):
                digest.update(block)
        return digest.hexdigest()

    if parts == [root]:
        return of_file(root)
    digest = hashlib.sha256()
    for part in parts:
        rel = PurePosixPath(part).relative_to(PurePosixPath(root)).as_posix()
        digest.update(f"{rel}\0{of_file(part)}\n".encode())
    return digest.hexdigest()

