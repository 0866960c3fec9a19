"""Read the input folder's tables: the only module that opens input files.

Each table is ``NAME.parquet`` or ``NAME.csv``, or a folder of Parquet parts (a dataset, as Spark
or pyarrow write it): ``NAME.parquet/`` or ``NAME/`` holding ``*.parquet`` files (in sub-folders
too; names starting with ``.`` or ``_``, such as ``_SUCCESS``, are skipped), read as one table
whose parts must share its columns. A table that is present but cannot be read as one of these (a
dangling symbolic link, a link loop, a ``.csv`` folder, a folder without parts, a device) is bad
input, never taken for an absent table; two forms of one table are refused. CSV files are read as text and typed here against
:mod:`optimizer.core.schemas`, so a bad value is reported with its row instead of silently becoming null;
ID columns of a CSV become integers only when every value is a plain integer (``00123`` stays a
string, because that is what the user wrote).
"""
from __future__ import annotations

import csv
import errno
import hashlib
import os
import stat
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Iterator

import polars as pl
import pyarrow as pa
import pyarrow.parquet as pq

from optimizer.core.errors import AccessError, InputError, os_problem
from optimizer.core.schemas import ID, INPUT_TABLES, TableSchema
from optimizer.core.typed import typed_values
from optimizer.io.remote import is_url, read_url, read_url_rows, rows_of, url_sha256

_PLAIN_INT = r"^-?(0|[1-9][0-9]{0,17})$"


@dataclass(frozen=True)
class RawTable:
    """A table as read from disk, columns typed but not yet checked against the others."""

    name: str
    path: Path
    frame: pl.DataFrame
    sha256: str


def _present(path: Path, name: str) -> bool:
    """Whether ``path`` (a candidate for table ``name``) is there; raises when it is there but
    cannot be read as a table (see the module docstring)."""
    if not os.path.lexists(path):
        return False
    try:
        info = path.stat()
    except FileNotFoundError:
        raise InputError(name, None, f"{path.name} is a symbolic link to {os.readlink(path)}, "
                         "which does not exist; fix the link or remove it") from None
    except OSError as exc:
        if exc.errno == errno.ELOOP:
            raise InputError(name, None, f"{path.name} is a symbolic link loop; fix the link or "
                             "remove it") from None
        raise AccessError(f"table '{name}': cannot read {path}: {os_problem(exc)}") from None
    if stat.S_ISREG(info.st_mode):
        return path.suffix in (".parquet", ".csv")  # a bare NAME file is not a table's form
    if stat.S_ISDIR(info.st_mode):
        if path.suffix == ".csv":
            raise InputError(name, None, f"{path.name} is a folder, not a CSV file")
        dataset_parts(path, name)  # refuses a folder that holds no parts
        return True
    raise InputError(name, None, f"{path.name} is not a regular file or a folder of Parquet "
                     "parts")


def dataset_parts(folder: Path, name: str) -> list[Path]:
    """The Parquet parts of a dataset folder, in path order; refuses a folder without parts or
    with files that are not parts (hidden and ``_`` names, such as ``_SUCCESS``, are skipped)."""
    try:
        files = sorted(p for p in folder.rglob("*") if not any(
            part.startswith((".", "_")) for part in p.relative_to(folder).parts)
            and not p.is_dir())
    except OSError as exc:
        raise AccessError(f"table '{name}': cannot read {folder}: {os_problem(exc)}") from None
    others = [p for p in files if p.suffix != ".parquet" or not p.is_file()]
    if others:
        raise InputError(name, None, f"{folder.name} is a folder, read as a dataset of Parquet "
                         f"parts, but it holds {others[0].relative_to(folder)} (and "
                         f"{len(others) - 1} more) that is not a Parquet file")
    if not files:
        raise InputError(name, None, f"{folder.name} is a folder holding no .parquet parts; "
                         "a table is a file NAME.parquet or NAME.csv, or a folder of Parquet parts")
    return files


def table_forms(folder: Path, name: str) -> tuple[Path, Path, Path]:
    """Where table ``name`` may be in ``folder``, in the order :func:`table_path` looks:
    ``NAME.parquet`` (a file, or a folder of Parquet parts), ``NAME.csv`` and ``NAME`` (a folder
    of Parquet parts; a bare file of that name is no table)."""
    return folder / f"{name}.parquet", folder / f"{name}.csv", folder / name


def table_path(folder: Path, name: str) -> Path | None:
    """The file (or dataset folder) holding table ``name`` in ``folder``, or ``None`` when there
    is none; refuses one that is present but unreadable, and two forms of one table."""
    found = [p for p in table_forms(folder, name) if _present(p, name)]
    if len(found) > 1:
        raise InputError(name, None, f"both {found[0].name} and {found[1].name} exist in {folder}; "
                         "keep one")
    return found[0] if found else None


def file_sha256(path: Path) -> str:
    """SHA-256 of a file, read in blocks so large tables cost no memory; of a dataset folder,
    the digest of its parts' relative paths and digests, in path order."""
    digest = hashlib.sha256()
    if path.is_dir():
        for part in dataset_parts(path, path.stem):
            digest.update(f"{part.relative_to(path).as_posix()}\0{file_sha256(part)}\n"
                          .encode())
        return digest.hexdigest()
    with path.open("rb") as handle:
        for block in iter(lambda: handle.read(1 << 22), b""):
            digest.update(block)
    return digest.hexdigest()


def _parquet_source(path: Path, name: str) -> Path | list[Path]:
    return dataset_parts(path, name) if path.is_dir() else path


def _read_file(schema: TableSchema, path: Path) -> pl.DataFrame:
    wanted = list(schema.columns)
    try:
        if path.suffix == ".parquet" or path.is_dir():
            source = _parquet_source(path, schema.name)
            # pyarrow reads the schema of the path as written (polars would expand "[...]")
            available = pq.read_schema(source[0] if isinstance(source, list) else source).names
            cols = [c for c in wanted if c in available]
            # glob=False: a folder named "week [40]" is a path, not a pattern
            return pl.read_parquet(source, columns=cols, hive_partitioning=False, glob=False)
        with path.open("rb") as handle:
            header = handle.readline()
        try:
            header_text = header.decode("utf-8-sig")
        except UnicodeDecodeError as exc:
            raise InputError(schema.name, None, f"{path.name} is not UTF-8 text ({exc.reason}); "
                             "save it as UTF-8") from None
        _refuse_repeated_columns(schema, path, header_text)
        # header names compare trimmed ("discount " is "discount"), as the user would expect
        names = pl.read_csv(path, n_rows=0, infer_schema=False, encoding="utf8",
                            raise_if_empty=False).columns
        clean = {n: n.lstrip("\ufeff").strip() for n in names}
        cols = [n for n in names if clean[n] in wanted]
        frame = pl.read_csv(path, infer_schema=False, columns=cols or None, encoding="utf8",
                            raise_if_empty=False)
        return frame.rename({n: clean[n] for n in frame.columns if clean.get(n, n) != n})
    except InputError:
        raise
    except (pl.exceptions.ComputeError, pl.exceptions.PolarsError, pa.ArrowException,
            OSError) as exc:
        if isinstance(exc, PermissionError):
            raise AccessError(f"table '{schema.name}': cannot read {path}: "
                              f"{os_problem(exc)}") from None
        first = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        if path.suffix == ".csv" and "utf-8" in first.lower():
            first += "; save it as UTF-8"
        raise InputError(schema.name, None, f"cannot read {path.name}: {first}") from None


def padded_ids(ids: pl.Series) -> bool:
    """Whether any stored text ID has surrounding whitespace, which the run trims
    (:func:`unify_id_type`); integer IDs have none."""
    return ids.dtype == pl.Utf8 and bool(ids.str.contains(r"^\s|\s$").any())


def read_table_rows(path: Path | str, name: str, column: str, values: pl.Series,
                    trim: bool = False) -> pl.DataFrame:
    """The rows of table ``name`` at ``path`` (a Parquet file or a dataset folder of parts, or
    an fsspec URL of one: :mod:`.remote`) whose ``column`` is one of ``values``, typed as a
    whole table is: a Dask worker reads its own customers' rows of a table too large to be read
    whole by any one process (:mod:`optimizer.solve.backends`). The filter is applied as the
    row groups are read, so memory holds the rows kept and one row group, not the table, and
    row groups (and parts) whose ``column`` statistics hold none of ``values`` are not read:
    polars' scan skips them on a local path, :func:`.remote.read_url_rows` at a URL. ``trim``
    (the reader of the whole table found stored text IDs with surrounding spaces,
    :func:`padded_ids`): ``column`` is compared trimmed, as the run reads IDs, and no row group
    is skipped (its statistics bound the stored text, not the trimmed IDs)."""
    schema = INPUT_TABLES[name]
    keep = rows_of(column, values, trim)
    if is_url(path):
        url = str(path)
        frame = read_url_rows(url, name, list(schema.columns), column, values, trim)
        return _typed(schema, frame, url)
    path = Path(path)
    if path.suffix == ".csv":
        raise InputError(name, None, f"{path.name}: a worker reads its rows of a Parquet table "
                         "(a file or a folder of parts), not of a CSV file")
    try:
        source = _parquet_source(path, name)
        available = pq.read_schema(source[0] if isinstance(source, list) else source).names
        cols = [c for c in schema.columns if c in available]
        # glob=False: a folder named "week [40]" is a path, not a pattern
        frame = (pl.scan_parquet(source, hive_partitioning=False, glob=False).select(cols)
                 .filter(keep).collect())
    except InputError:
        raise
    except (pl.exceptions.PolarsError, pa.ArrowException, OSError) as exc:
        first = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise InputError(name, None, f"cannot read {path.name}: {first}") from None
    return _typed(schema, frame, path)


def read_url_table(url: str, name: str) -> RawTable:
    """Table ``name`` read and typed from the fsspec ``url`` (:mod:`.remote`) as
    :func:`read_table` reads one of the data folder, with its checksum (read after the table,
    not beside it: some filesystems, ``memory://``, hand every opener one shared file object)."""
    schema = INPUT_TABLES[name]
    typed = _typed(schema, read_url(url, name, list(schema.columns)), url)
    return RawTable(name, Path(url), typed, url_sha256(url, name))


def _refuse_repeated_columns(schema: TableSchema, path: Path, header: str) -> None:
    """Two columns of one name leave it unclear which one the user meant: refuse the file.

    polars would rename the second one (``x_duplicated_0``) and read the first, silently.
    """
    names = [n.strip() for n in next(csv.reader([header.rstrip("\r\n")]), [])]
    repeated = sorted({n for n in names if n and names.count(n) > 1})
    if repeated:
        raise InputError(schema.name, repeated[0],
                         f"{path.name} has more than one column named "
                         f"{', '.join(repr(n) for n in repeated)}; keep one of each")


def _check_columns(schema: TableSchema, frame: pl.DataFrame, path: Path | str) -> None:
    missing = [c for c in schema.required_columns if c not in frame.columns]
    if not missing:
        return
    hint = ""
    if frame.width == 1 and any(sep in frame.columns[0] for sep in (";", "\t", "|")):
        hint = "; the file seems to use another separator than ',' (CSV must be comma-separated)"
    raise InputError(
        schema.name, missing[0],
        f"required column{'s' if len(missing) > 1 else ''} {', '.join(missing)} missing from "
        f"{path if is_url(path) else Path(path).name} (it has: "
        f"{', '.join(frame.columns) or 'no columns'}){hint}",
    )


def _cast_column(schema: TableSchema, frame: pl.DataFrame, column: str, dtype: object) -> pl.Series:
    series = frame.get_column(column)
    if dtype == ID:
        if series.dtype.is_integer():
            ids = series.cast(pl.Int64, strict=False)
            bad = ids.is_null() & series.is_not_null()
            if bad.any():  # an unsigned 64-bit ID above the signed range
                raise InputError(schema.name, column, "integer IDs must fit a signed 64-bit "
                                 f"integer (at most {2**63 - 1}); store larger ones as text",
                                 sample=frame.filter(bad).head(5).rows(named=True),
                                 count=int(bad.sum()))
            return ids
        if isinstance(series.dtype, (pl.Categorical, pl.Enum)):
            # a dictionary-encoded text column (pandas' category dtype) holds text IDs
            return series.cast(pl.Utf8)
        if series.dtype == pl.Utf8:
            return series
        raise InputError(schema.name, column, f"IDs must be integers or text, not {series.dtype}",
                         sample=frame.head(3).rows(named=True))
    return typed_values(frame, series, schema.name, column, dtype)


def _typed(schema: TableSchema, frame: pl.DataFrame, path: Path | str) -> pl.DataFrame:
    _check_columns(schema, frame, path)
    return pl.DataFrame([_cast_column(schema, frame, c, t) for c, t in schema.columns.items()
                         if c in frame.columns])


@dataclass
class TableBatches:
    """A parquet table read in batches of rows instead of whole: each batch is typed as
    :func:`read_table` types a whole table, so a table too large for memory can be streamed.

    ``rows`` comes from the file's metadata; the checksum is computed on a thread from the
    moment the table is opened (``sha256`` waits for it). ``padded_customer_ids``: whether a
    batch read so far stored a text ``customer_id`` with surrounding spaces (:func:`padded_ids`).
    """

    name: str
    path: Path
    rows: int
    batch_rows: int = 5_000_000
    _digest: Future[str] | None = field(default=None, repr=False)
    padded_customer_ids: bool = False

    @classmethod
    def open(cls, folder: Path, name: str, batch_rows: int = 5_000_000) -> "TableBatches":
        path = table_path(folder, name)
        if path is None or path.suffix != ".parquet" or not path.is_file():
            raise ValueError(f"{name}: only a parquet file can be read in batches")
        try:
            rows = pq.ParquetFile(path).metadata.num_rows
        except (OSError, ValueError) as exc:  # pyarrow raises ArrowInvalid, a ValueError
            raise InputError(name, None, f"cannot read {path.name}: {exc}") from None
        pool = ThreadPoolExecutor(1)
        digest = pool.submit(file_sha256, path)
        pool.shutdown(wait=False)
        return cls(name, path, rows, batch_rows, digest)

    @property
    def sha256(self) -> str:
        return self._digest.result() if self._digest is not None else file_sha256(self.path)

    def __iter__(self) -> Iterator[pl.DataFrame]:
        return self.read()

    def read(self, only: tuple[str, ...] | None = None) -> Iterator[pl.DataFrame]:
        """The batches in order (:meth:`__iter__`), of the columns ``only`` (typed, the
        others unread; every column by default)."""
        schema = INPUT_TABLES[self.name]
        try:
            metadata = pq.ParquetFile(self.path).metadata
            columns = [c for c in schema.columns if c in pq.read_schema(self.path).names]
            scan = pl.scan_parquet(self.path, glob=False).select(columns)
            if only is not None:  # columns read alone (the others not required)
                schema = replace(schema, columns={c: t for c, t in schema.columns.items()
                                                  if c in only})
                scan = scan.select([c for c in columns if c in only])
            start = 0
            for group in range(metadata.num_row_groups):
                rows = metadata.row_group(group).num_rows
                # polars reads a slice that matches row groups without touching the others;
                # pyarrow's batches went through a memory pool that kept 1 GB after a 1 M
                # customer table had been read
                pieces = max(1, -(-rows // self.batch_rows))
                for k in range(pieces):
                    lo, hi = rows * k // pieces, rows * (k + 1) // pieces
                    batch = _typed(schema, scan.slice(start + lo, hi - lo).collect(),
                                   self.path)
                    if "customer_id" in batch.columns and not self.padded_customer_ids:
                        self.padded_customer_ids = padded_ids(batch.get_column("customer_id"))
                    yield batch
                start += rows
        except (OSError, ValueError, pl.exceptions.PolarsError) as exc:
            raise InputError(self.name, None, f"cannot read {self.path.name}: {exc}") from None


def parquet_rows(folder: Path, name: str) -> int | None:
    """Rows of table ``name`` from its parquet metadata (``None``: absent, or not parquet)."""
    path = table_path(folder, name)
    if path is None or not (path.suffix == ".parquet" or path.is_dir()):
        return None
    try:
        parts = dataset_parts(path, name) if path.is_dir() else [path]
        return sum(int(pq.ParquetFile(part).metadata.num_rows) for part in parts)
    except (OSError, ValueError):
        return None


def read_table(folder: Path, name: str) -> RawTable | None:
    """Read and type one table; ``None`` when an optional table is absent."""
    schema = INPUT_TABLES[name]
    path = table_path(folder, name)
    if path is None:
        if schema.required_table:
            raise InputError(name, None, f"required table missing: no {name}.parquet or {name}.csv "
                             f"in {folder}")
        return None
    # the checksum is read on another thread while polars reads the table (both release the GIL)
    with ThreadPoolExecutor(1) as hasher:
        digest = hasher.submit(file_sha256, path)
        typed = _typed(schema, _read_file(schema, path), path)
        return RawTable(name, path, typed, digest.result())


def read_required(folder: Path, name: str, why: str = "") -> RawTable:
    """Read and type table ``name``, which this caller needs even where the contract makes it
    optional: a missing table is an :class:`InputError` naming it (and ``why`` it is needed)."""
    table = read_table(folder, name)
    if table is None:
        reason = f" ({why})" if why else ""
        raise InputError(name, None, f"table missing: no {name}.parquet or {name}.csv in "
                         f"{folder}{reason}")
    return table


def read_table_as_stored(folder: Path, name: str) -> RawTable | None:
    """Read table ``name`` with every column as stored, for rewriting it (``None`` when absent).

    Parquet keeps its own column types; CSV is read as text, header names as written (a byte-order
    mark dropped), so that values such as ``00123`` survive a rewrite. Nothing is checked or typed:
    use :func:`read_table` for that.
    """
    path = table_path(folder, name)
    if path is None:
        return None
    if path.is_dir():
        raise InputError(name, None, f"{path.name} is a folder of Parquet parts; it is read as "
                         "the table but cannot be rewritten: merge it into one file "
                         f"{name}.parquet to update it")
    try:
        if path.suffix == ".parquet":
            frame = pl.read_parquet(path, glob=False)
        else:
            frame = pl.read_csv(path, infer_schema=False, encoding="utf8", raise_if_empty=False)
    except (pl.exceptions.PolarsError, OSError) as exc:
        first = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise InputError(name, None, f"cannot read {path.name}: {first}") from None
    return RawTable(name, path, frame, file_sha256(path))


def unify_id_type(ids: pl.Series, master_is_int: bool) -> pl.Series:
    """Read an ID column of a referencing table as its master's type (unparseable -> null)."""
    if not master_is_int:
        return ids.cast(pl.Utf8).str.strip_chars()
    if ids.dtype != pl.Utf8:
        return ids.cast(pl.Int64)
    text = pl.DataFrame({"v": ids.str.strip_chars()})
    return text.select(
        pl.when(pl.col("v").str.contains(_PLAIN_INT)).then(pl.col("v").cast(pl.Int64, strict=False))
    ).to_series().alias(ids.name)


def master_id_type(series: pl.Series, from_csv: bool) -> pl.Series:
    """A master table's IDs, text trimmed of surrounding spaces (as :func:`unify_id_type` reads
    the referencing tables): CSV text becomes integers only when every value is a plain integer."""
    if series.dtype != pl.Utf8:
        return series
    text = series.str.strip_chars()
    if from_csv and len(text) and text.str.contains(_PLAIN_INT).fill_null(False).all():
        return text.cast(pl.Int64)
    return text


def read_inputs(folder: Path, skip: tuple[str, ...] = ()) -> dict[str, RawTable]:
    """Read every table present in ``folder`` except ``skip``; required tables must exist."""
    if not folder.is_dir():
        raise InputError("customers", None, f"input folder not found: {folder}")
    try:  # an unreadable folder is an environment error (exit 3), not a missing table
        os.listdir(folder)
    except OSError as exc:
        raise AccessError(f"cannot read the input folder {folder}: {os_problem(exc)}") from None
    tables = {}
    for name in INPUT_TABLES:
        if name in skip:
            continue
        table = read_table(folder, name)
        if table is not None:
            tables[name] = table
    return tables


def read_tables(folder: Path, stream_scores: bool, scores_url: str | None
                 ) -> tuple[dict[str, RawTable], TableBatches | None]:
    """The input folder's tables as read (:func:`.validate.load_inputs` checks them), with the
    ``scores`` table's batches when it is streamed, or the table read from ``scores_url``."""
    batches = None
    scores_path = table_path(folder, "scores") or Path()
    if scores_url is not None and scores_path != Path():
        raise InputError("scores", None, f"the scenario's scores_url ({scores_url}) and "
                         f"{scores_path.name} in {folder} are two forms of the table; keep one")
    if stream_scores and scores_path.suffix == ".parquet" and scores_path.is_file():
        batches = TableBatches.open(folder, "scores")
    raw = read_inputs(folder, skip=("scores",) if batches is not None else ())
    if scores_url is not None:
        raw["scores"] = read_url_table(scores_url, "scores")
        raw = {name: raw[name] for name in INPUT_TABLES if name in raw}  # the folder's order
    return raw, batches


__all__ = ["RawTable", "TableBatches", "dataset_parts", "parquet_rows", "read_inputs", "read_required", "read_table",
           "read_table_as_stored", "read_tables", "read_url_table", "table_path", "file_sha256", "master_id_type", "unify_id_type"]
