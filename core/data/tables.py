"""Reading labelled text from local table files.

Supported: CSV (``.csv``), TSV (``.tsv``/``.tab``), JSON Lines (``.jsonl``/``.ndjson``), Parquet
(``.parquet``/``.pq``), each optionally compressed (``.gz``, ``.bz2``, ``.xz``, ``.zst`` where pandas reads it).
"""

from __future__ import annotations

import json
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


def read_table(path: str | Path):  # -> pandas.DataFrame
    """Read a local data file into a DataFrame of strings, with errors a user can act on."""
    import pandas as pd

    p = Path(path)
    if not p.exists():
        raise DataError(f"data file {p} not found")
    if p.is_dir():
        raise DataError(f"{p} is a directory; pass a .csv, .tsv, .jsonl or .parquet file")
    fmt = file_format(p)
    try:
        if fmt == "csv":
            df = pd.read_csv(p, dtype=str, keep_default_na=False, encoding="utf-8-sig")
        elif fmt == "tsv":
            df = pd.read_csv(p, sep="\t", dtype=str, keep_default_na=False, encoding="utf-8-sig")
        elif fmt == "jsonl" and p.suffix.lower() not in _COMPRESSIONS:
            df = _read_jsonl(p)
        elif fmt == "jsonl":
            df = pd.read_json(p, lines=True, dtype=False, encoding="utf-8-sig")
        else:
            df = pd.read_parquet(p)
    except pd.errors.EmptyDataError:
        raise DataError(f"{p} is empty") from None
    except UnicodeDecodeError:
        raise DataError(f"{p}{_first_bad_utf8_line(p)} is not valid UTF-8; re-save the file as UTF-8") from None
    except (ValueError, OSError, pd.errors.ParserError) as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise DataError(f"cannot read {p} as {fmt}: {first}") from None
    except ImportError as exc:
        raise DataError(f"cannot read {p}: {exc}") from None
    header = [str(c) for c in df.columns]
    if fmt in ("csv", "tsv"):  # pandas renames a repeated "text" to "text.1": look at the raw header
        header = pd.read_csv(p, sep="\t" if fmt == "tsv" else ",", header=None, nrows=1, dtype=str,
                             keep_default_na=False, encoding="utf-8-sig").iloc[0].tolist()
    dup = sorted({c for c in header if header.count(c) > 1})
    if dup:
        raise DataError(f"{p}: duplicate column names: {show_names(dup)}; rename them so each is unique")
    return df


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


def _read_jsonl(p: Path):
    """JSON Lines with errors that name the line: one JSON object per non-blank line."""
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
    if not records:
        raise pd.errors.EmptyDataError
    return pd.DataFrame.from_records(records)


def load_examples(
    path: str | Path, text_column: str, label_column: str, text_pair_column: str | None = None
) -> Examples:
    """Load (text, label) rows from a local file. Rows with an empty text or label are an error
    naming the row, so no example is silently dropped."""
    p = Path(path)
    df = read_table(p)
    if len(df) == 0:
        raise DataError(f"{p} has a header but no rows")
    columns = [str(c) for c in df.columns]
    for option, column in (("--text-column", text_column), ("--label-column", label_column),
                           ("--text-pair-column", text_pair_column)):
        if column is not None and column not in columns:
            raise DataError(
                f"column {column!r} not found in {p.name}; columns are: {show_names(columns)}. Pass {option}."
            )
    first = 2 if file_format(p) in ("csv", "tsv") else 1  # the header is row 1 of a CSV
    texts = string_column(df, text_column, p, "text", first)
    labels = string_column(df, label_column, p, "label", first)
    pairs = string_column(df, text_pair_column, p, "text", first) if text_pair_column else None
    return Examples(texts, labels, pairs, source=str(p))


def string_column(df, column: str, path: Path, what: str, first: int = 2) -> list[str]:
    """``column`` of a table as strings; a missing, null, empty (or non-scalar) cell is an error naming
    its row (``first``: the number of the first data row)."""
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
