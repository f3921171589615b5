"""Medication coding: NDC -> RXCUI -> ATC-3 (GAMENet / SafeDrug maps), drug names -> ATC-3, or normalised names.

- ``atc3`` with ``--ndc-map`` and ``--atc-map``: ``ndc2RXCUI.txt`` is a Python dict literal
  ``{NDC-11: RXCUI}`` (parsed pair by pair, never evaluated); ``RXCUI2atc4.csv`` has a header with at
  least ``RXCUI`` and ``ATC4`` (GAMENet: ``RXCUI,YEAR,MONTH,NDC,ATC4,...``). As in GAMENet the first
  row of each RXCUI wins; the label is the ATC code's first 4 characters (the ATC level-3 group).
- ``atc3`` without them: the drug name through `leader.data.atc.AtcCoder` (the shipped MIT name map with its
  reviewed corrections, or ``--drug-atc``); a name gets every ATC-3 class of its codes.
- ``name``: the generic name (`leader.data.atc.normalize_drug_name`: "Metoprolol Tartrate 25mg Tab" ->
  "metoprolol"; inorganic salts such as "potassium chloride" keep both words).

Titles of ATC labels are their WHO names (`leader.data.atc.atc_title`). A DDI file is a CSV with a
header and two columns of labels per row (SafeDrug's ``ddi_atc3_pairs_safedrug.csv``: ``atc3_a,atc3_b``).
"""

from __future__ import annotations

import re
from pathlib import Path

from leader.data.atc import atc_title, atc_titles, normalize_drug_name
from leader.errors import LeaderError
from leader.io import csv_rows

CODINGS = ("atc3", "name")
"""Medication codings: ATC-3 classes (from NDCs with --ndc-map/--atc-map, else from drug names), or names."""


def normalise_name(name: str | None) -> str | None:
    """A generic drug name for `name` coding, or None when nothing is left.

    The one normalisation of `leader.data.atc.normalize_drug_name` (strengths, forms, salts, package
    prefixes removed), with the components of a combination joined by "-" ("oxycodone-acetaminophen").
    """
    return normalize_drug_name(name or "").replace(" / ", "-") or None


def clean_ndc(ndc: str | None) -> str | None:
    """NDC-11 as text: digits only, left-padded to 11; None for missing or "0" (MIMIC's no-NDC)."""
    if ndc is None:
        return None
    if len(ndc) == 11 and ndc.isdigit():  # the common case, fast: NDC maps hold millions of these
        return ndc if ndc.strip("0") else None
    digits = re.sub(r"\.0+$", "", str(ndc).strip())
    digits = re.sub(r"\D", "", digits)
    if not digits or set(digits) == {"0"}:
        return None
    return digits.zfill(11)


def _text(path: Path, what: str, flag: str) -> str:
    path = Path(path)
    if not path.is_file():
        raise LeaderError(f"{what} not found: {path}; check {flag}")
    try:
        return path.read_text(encoding="utf-8-sig")
    except UnicodeDecodeError:
        raise LeaderError(f"{path}: not UTF-8 text; {flag} expects a UTF-8 text file") from None


_QUOTED = r"""[uU]?(?:'([^'\\\n]{0,64})'|"([^"\\\n]{0,64})")|(\d{1,20})"""
_PAIR = re.compile(rf"\s{{0,256}}(?:{_QUOTED})\s{{0,256}}:\s{{0,256}}(?:{_QUOTED})\s{{0,256}}([,}}])")
_CLOSE = re.compile(r"\s{0,256}}")
_CHUNK = 1 << 20  # characters read at a time; a pair is at most ~1,200


def _not_ndc_map(path: Path, why: str) -> LeaderError:
    return LeaderError(
        f"{path} is not a Python dict literal like {{'00338004904': '1807639', ...}} (GAMENet's ndc2RXCUI.txt: "
        f"a non-empty dict {{NDC: RXCUI}}): {why}; check --ndc-map"
    )


def _ndc_pairs(handle, path: Path):
    """Yield (NDC, RXCUI) text pairs of a ``{'NDC': 'RXCUI', ...}`` literal read from `handle` chunk by chunk.

    Only that shape is accepted (quoted or integer keys and values, an optional u prefix, a trailing
    comma); nothing is evaluated, and memory stays at one chunk plus the pairs.
    """
    buffer, pos, offset, eof = handle.read(_CHUNK).lstrip(), 1, 0, False
    if not buffer.startswith("{"):
        raise _not_ndc_map(path, "it does not start with {")
    count, closed = 0, False
    while not closed:
        if not eof and len(buffer) - pos < 4096:
            more = handle.read(_CHUNK)
            eof, offset, buffer, pos = not more, offset + pos, buffer[pos:] + more, 0
        safe = len(buffer) if eof else len(buffer) - 4096  # a pair starting before this is wholly in the buffer
        start = pos
        for match in _PAIR.finditer(buffer, pos):
            if match.start() != pos:
                break
            key, value = match[1] if match[1] is not None else match[2], match[4] if match[4] is not None else match[5]
            yield key if key is not None else match[3], value if value is not None else match[6]
            count, pos, closed = count + 1, match.end(), match[7] == "}"
            if closed or pos > safe:
                break
        if closed or (pos != start and pos > safe):
            continue
        close = _CLOSE.match(buffer, pos)
        if close is None:
            raise _not_ndc_map(path, f"unexpected text at character {offset + pos:,}")
        pos, closed = close.end(), True  # "{}" or a trailing comma before "}"
    if not count:
        raise _not_ndc_map(path, "the dict is empty")
    if buffer[pos:].strip() or handle.read(_CHUNK).strip():
        raise _not_ndc_map(path, "text after the closing brace")


def read_ndc_map(path: Path) -> dict[str, str]:
    """GAMENet's ``ndc2RXCUI.txt``: a Python dict literal {NDC: RXCUI}, parsed pair by pair (never evaluated)."""
    path = Path(path)
    if not path.is_file():
        raise LeaderError(f"NDC map not found: {path}; check --ndc-map")
    out: dict[str, str] = {}
    rxcuis: dict[str, str] = {}  # one string object per RXCUI: many NDCs share one
    try:
        with path.open(encoding="utf-8-sig", newline="") as handle:
            for ndc, rxcui in _ndc_pairs(handle, path):
                key, value = clean_ndc(ndc), rxcui.strip()
                if key and value:
                    out[key] = rxcuis.setdefault(value, value)
    except UnicodeDecodeError:
        raise LeaderError(f"{path}: not UTF-8 text; --ndc-map expects a UTF-8 text file") from None
    if not out:
        raise _not_ndc_map(path, "no entry maps an NDC to an RXCUI")
    return out


def read_atc_map(path: Path) -> dict[str, str]:
    """GAMENet's ``RXCUI2atc4.csv``: RXCUI -> ATC code (first row per RXCUI wins)."""
    text = _text(path, "ATC map", "--atc-map")
    rows = csv_rows(text, path, "--atc-map")
    header = [h.strip().upper() for h in next(rows, [])]
    if "RXCUI" not in header or "ATC4" not in header:
        raise LeaderError(
            f"{path} must be a CSV with columns RXCUI and ATC4 (GAMENet's RXCUI2atc4.csv: RXCUI,YEAR,MONTH,NDC,ATC4); "
            f"its header is {','.join(header)[:80] or 'empty'}"
        )
    i_rx, i_atc = header.index("RXCUI"), header.index("ATC4")
    out: dict[str, str] = {}
    for number, row in enumerate(rows, 2):
        if not row:
            continue
        if len(row) != len(header):
            raise LeaderError(f"{path}: line {number} has {len(row)} fields, the header has {len(header)}")
        rxcui, atc = row[i_rx].strip(), row[i_atc].strip().upper()
        if not rxcui or not atc:
            continue
        if not re.fullmatch(r"[A-Z]\d\d[A-Z][A-Z0-9]*", atc):
            raise LeaderError(f"{path}: line {number}: '{atc}' is not an ATC code (like C07AB); check --atc-map")
        rxcui = rxcui.split(".")[0]
        out.setdefault(rxcui, atc)
    if not out:
        raise LeaderError(f"{path} has no RXCUI -> ATC4 rows; check --atc-map")
    return out


def read_ddi_pairs(path: Path) -> list[tuple[str, str]]:
    """A CSV of interacting label pairs (header row, then two labels per row)."""
    text = _text(path, "DDI file", "--ddi")
    rows = list(csv_rows(text, path, "--ddi"))
    if not rows or len(rows[0]) != 2:
        raise LeaderError(f"{path} must be a two-column CSV with a header (e.g. atc3_a,atc3_b); check --ddi")
    pairs = []
    for number, row in enumerate(rows[1:], 2):
        if not row:
            continue
        if len(row) != 2 or not all(cell.strip() for cell in row):
            raise LeaderError(f"{path}: line {number} must hold two medication labels separated by a comma")
        pairs.append((row[0].strip(), row[1].strip()))
    return pairs


def atc3_names() -> dict[str, str]:
    """WHO names of the ATC level-3 groups, from the shipped ``maps/atc_coding.csv.gz`` (see `leader.data.atc`)."""
    return {code: title for code, title in atc_titles().items() if len(code) == 4}


def label_titles(labels: list[str], coding: str) -> dict[str, str]:
    """Titles of medication labels: the WHO ATC name ("C07A" -> "beta blocking agents"; the code if unknown),
    or the name itself."""
    if coding == "atc3":
        return {label: atc_title(label) or label for label in labels}
    return {label: label for label in labels}


def check_coding(coding: str) -> str:
    """The medication coding named by --coding, or a LeaderError naming the choices."""
    if coding not in CODINGS:
        raise LeaderError(f"--coding must be one of {', '.join(CODINGS)}, got '{coding}'")
    return coding


def unmapped_top(counts: dict[str | None, int], n: int = 30) -> list[list]:
    """The `n` most frequent unmapped drug names as [name, rows] (ties by name), for the manifest's coverage."""
    ranked = sorted(((name or "(no name)", rows) for name, rows in counts.items()), key=lambda kv: (-kv[1], kv[0]))
    return [[name, rows] for name, rows in ranked[:n]]
