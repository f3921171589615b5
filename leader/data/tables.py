"""Reading PhysioNet CSV tables: find the file, check its columns, read lazily with polars.

Tables come as PhysioNet ships them: ``NAME.csv`` or ``NAME.csv.gz``, with upper- or lowercase
file names and headers (one of the two: both is refused as ambiguous; a UTF-8 byte-order mark is
accepted; a header naming a column twice, case ignored, is refused). Every column is read as text (ICD codes such as ``01716`` and NDCs keep
their leading zeros) and renamed to lowercase. Only the columns a loader asks for are kept, and
tables are collected with polars' streaming engine. Whatever can be wrong with a file (it is
missing, empty, not UTF-8, lacks a column, has a malformed row) becomes one LeaderError line.

Malformed rows: every row is parsed in full (projection pushdown off), so a row with more fields
than the header or a broken quote is refused in any table. Files under `FULL_CHECK_BYTES` on
disk are also checked row by row for rows with too few fields (polars would read the missing
fields as empty); for larger files (MIMIC-IV's prescriptions) that check would cost more than the
load itself, and a short row there reads as missing values.
"""

from __future__ import annotations

import csv
import gzip
import sys
import time
import zlib
from pathlib import Path

import polars as pl

from leader.errors import LeaderError

FULL_CHECK_BYTES = 16 << 20
ID_COLUMNS = ("subject_id", "hadm_id")
"""Read as integers (MIMIC's ids are): joins and group-bys on them are much faster than on text."""
_OPTS = pl.QueryOptFlags(projection_pushdown=False)


_START = time.perf_counter()


def log(message: str) -> None:
    """One progress line on stderr (loaders report each stage), stamped with seconds since start."""
    print(f"[leader data {time.perf_counter() - _START:6.1f}s] {message}", file=sys.stderr, flush=True)


def find_table(root: Path, name: str, required: bool = True) -> Path | None:
    """The file holding table `name` (e.g. "PATIENTS" or "hosp/patients") under `root`, any case."""
    folder = Path(root)
    *dirs, stem = name.split("/")
    for part in dirs:
        matches = (
            [p for p in folder.iterdir() if p.is_dir() and p.name.lower() == part.lower()] if folder.is_dir() else []
        )
        if not matches:
            if required:
                raise LeaderError(f"{root} has no '{part}/' folder; --root must be the MIMIC folder that holds it")
            return None
        folder = matches[0]
    wanted = {f"{stem.lower()}.csv", f"{stem.lower()}.csv.gz"}
    found = sorted(p for p in folder.iterdir() if p.is_file() and p.name.lower() in wanted)
    if not found:
        if required:
            raise LeaderError(f"table {name} not found in {folder} (looked for {stem}.csv or {stem}.csv.gz, any case)")
        return None
    if len(found) > 1:
        raise LeaderError(f"{folder} holds both {found[0].name} and {found[1].name} for table {name}; keep only one")
    return found[0]


def read_header(path: Path) -> list[str]:
    """The header row of a CSV (plain or gzipped), checked to be UTF-8 and non-empty."""
    opener = gzip.open if path.name.lower().endswith(".gz") else open
    try:
        with opener(path, "rb") as handle:
            first = handle.readline()
            second = handle.read(1)
    except (OSError, EOFError, zlib.error) as err:
        raise LeaderError(f"{path}: cannot read ({err}); is it a complete .csv or .csv.gz file?") from None
    try:
        text = first.decode("utf-8-sig")
    except UnicodeDecodeError:
        raise LeaderError(f"{path}: header is not UTF-8 text; re-export the file as UTF-8") from None
    if not text.strip():
        raise LeaderError(f"{path} is empty; download the table again")
    try:
        header = next(csv.reader([text]))
    except csv.Error as err:
        raise LeaderError(f"{path}: the header is not a CSV row ({err}); is it an unmodified MIMIC table?") from None
    if not second:
        raise LeaderError(f"{path} has a header but no rows; download the table again")
    seen: dict[str, str] = {}
    for name in header:
        key = name.strip().lower()
        if key in seen:
            raise LeaderError(
                f"{path}: column '{key}' appears twice in the header ('{seen[key]}' and '{name}', case ignored); "
                "rename or drop one of them"
            )
        seen[key] = name
    return header


def scan_table(path: Path, columns: list[str], optional: tuple[str, ...] = ()) -> pl.LazyFrame:
    """Lazily read `columns` (text, but ids as integers; lowercase names) from the CSV at `path`.

    Raises LeaderError naming the file and the missing column. Optional columns that are absent
    come back as nulls.
    """
    header = read_header(path)
    by_lower = {h.strip().lower(): h for h in header}
    missing = [c for c in columns if c not in by_lower]
    if missing:
        raise LeaderError(
            f"{path.name} has no column '{missing[0]}' (it has: {', '.join(h.strip().lower() for h in header)}); "
            "is it the right MIMIC table and version?"
        )
    if path.stat().st_size < FULL_CHECK_BYTES:
        check_field_counts(path, len(header))
    frame = pl.scan_csv(path, infer_schema=False, quote_char='"', encoding="utf8")
    exprs = [
        pl.col(by_lower[c]).cast(pl.Int64).alias(c) if c in ID_COLUMNS else pl.col(by_lower[c]).alias(c)
        for c in columns
    ]
    exprs += [pl.col(by_lower[c]).alias(c) if c in by_lower else pl.lit(None, pl.String).alias(c) for c in optional]
    return frame.select(exprs)


def collect(frame: pl.LazyFrame, path: Path, stage: str = "") -> pl.DataFrame:
    """Collect a lazy query over the table at `path` (streaming), turning read errors into LeaderError."""
    start = time.perf_counter()
    try:
        out = frame.collect(engine="streaming", optimizations=_OPTS)
    except pl.exceptions.PolarsError as err:
        raise LeaderError(f"{path}: {_describe(err)}") from None
    out = _strip_nul(out, path)
    log(f"{stage or path.name}: {out.height:,} rows ({time.perf_counter() - start:.1f} s)")
    return out


def _strip_nul(frame: pl.DataFrame, path: Path) -> pl.DataFrame:
    """Remove NUL bytes from text values (a code "40\\x0019" becomes "4019"), saying how many values had them."""
    text = [name for name, dtype in frame.schema.items() if dtype == pl.String]
    if not text:
        return frame
    counts = frame.select(pl.col(text).str.contains("\x00", literal=True).sum()).row(0)
    if not any(counts):
        return frame
    found = ", ".join(f"{n:,} in '{c}'" for c, n in zip(text, counts, strict=True) if n)
    log(f"{path.name}: removed NUL bytes from {sum(counts):,} values ({found})")
    dirty = [c for c, n in zip(text, counts, strict=True) if n]
    return frame.with_columns(pl.col(dirty).str.replace_all("\x00", "", literal=True))


def check_field_counts(path: Path, expected: int) -> None:
    """Refuse a row whose field count differs from the header's (a truncated or shifted row)."""
    opener = gzip.open if path.name.lower().endswith(".gz") else open
    try:
        with opener(path, "rt", encoding="utf-8", newline="") as handle:
            reader = csv.reader(handle)
            next(reader, None)
            for row in reader:
                if len(row) != expected and row:
                    raise LeaderError(
                        f"{path}: malformed row at line {reader.line_num} ({len(row)} fields, the header has {expected}); "
                        "each row must have the header's columns"
                    )
    except UnicodeDecodeError:
        raise LeaderError(f"{path}: not UTF-8 text; re-export the file as UTF-8") from None
    except (OSError, EOFError, zlib.error, csv.Error) as err:
        raise LeaderError(f"{path}: cannot read ({err}); is it a complete .csv or .csv.gz file?") from None


def _describe(err: Exception) -> str:
    text = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
    low = text.lower()
    if "utf-8" in low or "utf8" in low:
        return "not UTF-8 text; re-export the file as UTF-8"
    if "more fields" in low or "ragged" in low or "unterminated" in low or "quote" in low:
        return f"malformed row ({text}); each row must have the header's columns"
    if "conversion" in low and "i64" in low:
        return f"an id column holds a value that is not an integer ({text[:160]}); MIMIC ids are integers"
    if "empty" in low:
        return "no data; download the table again"
    return f"cannot parse as CSV ({text}); check the file is an unmodified MIMIC table"


def read_table(root: Path, name: str, columns: list[str], optional: tuple[str, ...] = ()) -> pl.DataFrame:
    """Find, scan and collect a (small) table in one call."""
    path = find_table(root, name)
    return collect(scan_table(path, columns, optional), path)


def clean_code(column: str) -> pl.Expr:
    """An ICD code column without spaces or dots, uppercase; empty becomes null."""
    code = pl.col(column).str.strip_chars().str.replace_all(".", "", literal=True).str.to_uppercase()
    return pl.when(code.str.len_chars() > 0).then(code).otherwise(None)


def parse_times(frame: pl.DataFrame, column: str, path: Path) -> pl.Series:
    """Parse an ISO-like timestamp column (``2164-10-23 21:09:00`` or a date); refuse unparseable values."""
    raw = frame[column].str.strip_chars()
    parsed = raw.str.to_datetime(strict=False, time_unit="us")
    bad = parsed.is_null() & raw.is_not_null() & (raw.str.len_chars() > 0)
    if bad.any():
        parsed = raw.str.to_datetime("%Y-%m-%d", strict=False, time_unit="us").fill_null(parsed)
        bad = parsed.is_null() & raw.is_not_null() & (raw.str.len_chars() > 0)
    if bad.any():
        example = raw.filter(bad)[0]
        raise LeaderError(
            f"{path.name}: column '{column}' has {int(bad.sum())} value(s) that are not dates (first: '{example}'); "
            "use ISO timestamps like 2150-01-31 08:00:00"
        )
    return parsed
