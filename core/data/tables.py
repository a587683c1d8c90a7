"""Reading labelled text from local table files.

Supported: CSV (``.csv``), TSV (``.tsv``/``.tab``), JSON Lines (``.jsonl``/``.ndjson``), Parquet
(``.parquet``/``.pq``), each optionally compressed (``.gz``, ``.bz2``, ``.xz``, ``.zst`` where pandas reads it).
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

from tl.data.examples import Examples
from tl.errors import DataError

_COMPRESSIONS = (".gz", ".bz2", ".xz", ".zst", ".zip")
_FORMATS = {
    ".csv": "csv",
    ".tsv": "tsv",
    ".tab": "tsv",
    ".jsonl": "jsonl",
    ".ndjson": "jsonl",
    ".json": "jsonl",
    ".parquet": "parquet",
    ".pq": "parquet",
}



def show_names(names) -> str:
    """Column names for a one-line message: as written, or quoted when they hold odd characters."""
    return ", ".join(str(n) if str(n).isprintable() else repr(str(n)) for n in names)


def file_format(path: Path) -> str:
    suffixes = [s.lower() for s in path.suffixes]
    if suffixes and suffixes[-1] in _COMPRESSIONS:
        suffixes = suffixes[:-1]
    fmt = _FORMATS.get(suffixes[-1]) if suffixes else None
    if fmt is None:
        raise DataError(
            f"{path}: unknown file type; use .csv, .tsv, .jsonl or .parquet (optionally .gz/.bz2/.xz)"
        )
    return fmt


#: Rows per chunk read at once: a chunk's DataFrame, its Examples and the tokenizer's encodings of it
#: (the largest: ~4 KB a row) stay near 50 MB for texts of review length, whatever the file's size.
#: Measured building a 100k-row store: peak RSS 220 MB at 10,000 rows a chunk, 488 MB at 50,000.
CHUNK_ROWS = 10_000


def read_table(path: str | Path):  # -> pandas.DataFrame
    """Read a local data file into a DataFrame of strings, with errors a user can act on."""
    import pandas as pd

    chunks = list(iter_table(path))
    return chunks[0] if len(chunks) == 1 else pd.concat(chunks, ignore_index=True)


def iter_table(path: str | Path, columns: list[str] | None = None, chunk_rows: int | None = None):
    """The rows of a local data file as DataFrames of at most ``chunk_rows`` (default ``CHUNK_ROWS``) rows
    of strings (``columns``: only these, which must exist), read in bounded memory whatever its size. The
    errors are ``read_table``'s: one line naming the file (and the row or line where it is known). An empty
    file, or one with a header but no rows, yields one empty DataFrame."""
    import pandas as pd

    p = Path(path)
    if not p.exists():
        raise DataError(f"data file {p} not found")
    if p.is_dir():
        raise DataError(f"{p} is a directory; pass a .csv, .tsv, .jsonl or .parquet file")
    fmt = file_format(p)
    header = None
    try:
        if fmt in ("csv", "tsv"):  # pandas renames a repeated "text" to "text.1": look at the raw header
            header = pd.read_csv(p, sep="\t" if fmt == "tsv" else ",", header=None, nrows=1, dtype=str,
                                 keep_default_na=False, encoding="utf-8-sig").iloc[0].tolist()
        elif fmt == "parquet":
            import pyarrow.parquet as pq

            header = pq.read_schema(p).names
        if header is not None:
            _check_header(p, [str(c) for c in header], columns)
        yielded = False
        for df in _chunks(p, fmt, columns, chunk_rows or CHUNK_ROWS):
            if not yielded:
                _check_header(p, [str(c) for c in df.columns], columns)
            yielded = True
            yield df
        if not yielded:
            raise pd.errors.EmptyDataError
    except pd.errors.EmptyDataError:
        if header is None:
            raise DataError(f"{p} is empty") from None
        yield pd.DataFrame({c: pd.Series([], dtype=object) for c in (columns or header)})
    except UnicodeDecodeError:
        raise DataError(f"{p}{_first_bad_utf8_line(p)} is not valid UTF-8; re-save the file as UTF-8") from None
    except (ValueError, OSError, pd.errors.ParserError) as exc:
        if isinstance(exc, DataError):
            raise
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise DataError(f"cannot read {p} as {fmt}: {first}") from None
    except ImportError as exc:
        raise DataError(f"cannot read {p}: {exc}") from None


def _check_header(p: Path, header: list[str], columns: list[str] | None) -> None:
    dup = sorted({c for c in header if header.count(c) > 1})
    if dup:
        raise DataError(f"{p}: duplicate column names: {show_names(dup)}; rename them so each is unique")
    missing = [c for c in columns or [] if c not in header]
    if missing:
        raise MissingColumn(missing[0], header)


class MissingColumn(DataError):
    """A requested column is not in the file (``load_examples`` names the option that picks it)."""

    def __init__(self, column: str, header: list[str]) -> None:
        super().__init__(f"column {column!r} not found; columns are: {show_names(header)}")
        self.column, self.header = column, header


def _chunks(p: Path, fmt: str, columns: list[str] | None, chunk_rows: int):
    import pandas as pd

    if fmt in ("csv", "tsv"):
        with pd.read_csv(p, sep="\t" if fmt == "tsv" else ",", dtype=str, keep_default_na=False,
                         encoding="utf-8-sig", usecols=columns, chunksize=chunk_rows) as reader:
            yield from (df if columns is None else df[columns] for df in reader)
    elif fmt == "jsonl" and p.suffix.lower() not in _COMPRESSIONS:
        yield from _jsonl_chunks(p, chunk_rows)
    elif fmt == "jsonl":
        with pd.read_json(p, lines=True, dtype=False, encoding="utf-8-sig", chunksize=chunk_rows) as reader:
            yield from reader
    else:
        import pyarrow.parquet as pq

        for batch in pq.ParquetFile(p).iter_batches(batch_size=chunk_rows, columns=columns):
            yield batch.to_pandas()


def _first_bad_utf8_line(p: Path) -> str:
    """`` line N`` of the first line that is not UTF-8 (uncompressed files), else ``""``."""
    if p.suffix.lower() in _COMPRESSIONS:
        return ""
    with open(p, "rb") as f:
        for n, raw in enumerate(f, start=1):
            try:
                raw.decode("utf-8")
            except UnicodeDecodeError:
                return f" line {n}"
    return ""


def _jsonl_chunks(p: Path, chunk_rows: int):
    """JSON Lines in DataFrames of ``chunk_rows`` objects, with errors that name the line: one JSON object
    per non-blank line."""
    import pandas as pd

    records = []
    with open(p, encoding="utf-8-sig") as f:
        for n, line in enumerate(f, start=1):
            if not line.strip():
                continue
            try:
                obj = json.loads(line)
            except ValueError as exc:
                raise DataError(f"{p.name} line {n}: not valid JSON ({exc.msg}); one JSON object per line") from None
            if not isinstance(obj, dict):
                raise DataError(f"{p.name} line {n}: expected a JSON object, got {type(obj).__name__}")
            records.append(obj)
            if len(records) == chunk_rows:
                yield pd.DataFrame.from_records(records)
                records = []
    if records:
        yield pd.DataFrame.from_records(records)


def load_examples(
    path: str | Path, text_column: str, label_column: str, text_pair_column: str | None = None
) -> Examples:
    """Load (text, label) rows from a local file. Rows with an empty text or label are an error
    naming the row, so no example is silently dropped."""
    chunks = list(iter_examples(path, text_column, label_column, text_pair_column))
    out = chunks[0]
    for chunk in chunks[1:]:
        out = out + chunk
    return out


def iter_examples(path: str | Path, text_column: str, label_column: str, text_pair_column: str | None = None,
                  chunk_rows: int | None = None) -> Iterator[Examples]:
    """``load_examples`` in chunks of at most ``chunk_rows`` rows, each checked as it is read (an error
    names the file's row, counted from its first row)."""
    p = Path(path)
    wanted = [c for c in (text_column, label_column, text_pair_column) if c is not None]
    first = 2 if file_format(p) in ("csv", "tsv") else 1  # the header is row 1 of a CSV
    options = {text_column: "--text-column", label_column: "--label-column", text_pair_column: "--text-pair-column"}
    rows = 0
    try:
        for df in iter_table(p, wanted if file_format(p) != "jsonl" else None, chunk_rows):
            if rows == 0 and len(df) == 0:
                raise DataError(f"{p} has a header but no rows")
            start = rows + first
            texts = string_column(df, text_column, p, "text", start)
            labels = string_column(df, label_column, p, "label", start)
            pairs = string_column(df, text_pair_column, p, "text", start) if text_pair_column else None
            rows += len(df)
            yield Examples(texts, labels, pairs, source=str(p))
    except MissingColumn as exc:
        raise DataError(f"column {exc.column!r} not found in {p.name}; columns are: {show_names(exc.header)}. "
                        f"Pass {options[exc.column]}.") from None


def string_column(df, column: str, path: Path, what: str, first: int = 2) -> list[str]:
    """``column`` of a table as strings; a missing, null, empty (or non-scalar) cell is an error naming
    its row (``first``: the number of the first data row)."""
    if column not in df.columns:  # JSON Lines: a chunk where no object has the column
        raise MissingColumn(column, [str(c) for c in df.columns])
    values = df[column].tolist()
    out = []
    for i, v in enumerate(values):
        if not isinstance(v, (str, int, float, bool)) and v is not None:
            raise DataError(f"{path.name} row {i + first}: {what} in column {column!r} is a "
                            f"{type(v).__name__}, not a string or number")
        if v is None or (isinstance(v, float) and v != v):
            s = ""
        elif isinstance(v, float) and v.is_integer() and what == "label":
            s = str(int(v))
        else:
            s = str(v)
        s = s.strip() if what == "label" else s
        if not s.strip():
            # rows are 1-based; in CSV/TSV the header is row 1, as a spreadsheet shows it
            raise DataError(f"{path.name} row {i + first}: empty {what} in column {column!r}; fix or remove the row")
        out.append(s)
    return out
