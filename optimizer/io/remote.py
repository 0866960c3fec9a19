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
from typing import Any, Iterator

import polars as pl
import pyarrow as pa
import pyarrow.parquet as pq

from optimizer.core.errors import InputError

_BATCH_ROWS = 1 << 20  # rows read at a time when only some are kept


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


def _read(url: str, name: str, wanted: list[str]) -> Iterator[pl.DataFrame]:
    """The table's ``wanted`` columns (those it has), part by part in batches of rows."""
    fs, _, parts = url_parts(url, name)
    try:
        schema = pq.read_schema(parts[0], filesystem=fs)
        cols = [c for c in wanted if c in schema.names]
        batches = 0
        for part in parts:
            with fs.open(part, "rb") as handle:
                for batch in pq.ParquetFile(handle).iter_batches(_BATCH_ROWS, columns=cols):
                    batches += 1
                    yield pl.from_arrow(pa.Table.from_batches([batch]))  # type: ignore[misc]
        if not batches:  # a table of no rows: its columns, as a local one reads
            yield pl.from_arrow(schema.empty_table().select(cols))  # type: ignore[misc]
    except (pa.ArrowException, OSError, ValueError) as exc:
        first = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise InputError(name, None, f"cannot read {url}: {first}") from None


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


def read_url_rows(url: str, name: str, wanted: list[str], keep: pl.Expr) -> pl.DataFrame:
    """The rows of table ``name`` at ``url`` that ``keep`` keeps, its ``wanted`` columns, as
    stored: filtered batch by batch, so memory holds the rows kept and one batch."""
    return _joined([frame.filter(keep) for frame in _read(url, name, wanted)], url, name)


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

