"""Medication coding: NDC -> RXCUI -> ATC-3 (GAMENet / SafeDrug maps) or normalised generic names.

- ``atc3``: ``ndc2RXCUI.txt`` is a Python dict literal ``{NDC-11: RXCUI}`` (read with
  `ast.literal_eval`, never `eval`); ``RXCUI2atc4.csv`` has a header with at least ``RXCUI`` and
  ``ATC4`` (GAMENet: ``RXCUI,YEAR,MONTH,NDC,ATC4,...``). As in GAMENet the first row of each RXCUI
  wins; the label is the ATC code's first 4 characters (the ATC level-3 group, e.g. ``C07A``).
- ``name``: the generic name, lowercased, without strengths, dosage forms, bracketed notes and
  trailing salt words ("Metoprolol Tartrate 25mg Tab" -> "metoprolol"); inorganic salts such as
  "potassium chloride" or "magnesium sulfate" keep both words.

A DDI file is a CSV with a header and two columns of labels per row (SafeDrug's
``ddi_atc3_pairs_safedrug.csv``: ``atc3_a,atc3_b``).
"""

from __future__ import annotations

import ast
import csv
import functools
import io
import json
import re
from importlib import resources
from pathlib import Path

from leader.errors import LeaderError

_SALTS = {
    "tartrate",
    "succinate",
    "hcl",
    "hydrochloride",
    "sodium",
    "potassium",
    "calcium",
    "maleate",
    "mesylate",
    "besylate",
    "citrate",
    "sulfate",
    "sulphate",
    "phosphate",
    "acetate",
    "bromide",
    "hydrobromide",
    "fumarate",
    "bisulfate",
    "magnesium",
    "dihydrate",
    "monohydrate",
    "hyclate",
    "na",
    "sod",
    "succ",
    "disodium",
    "decanoate",
}
_CATIONS = {"sodium", "potassium", "calcium", "magnesium", "ferrous", "zinc", "aluminum", "lithium", "ammonium"}
_FORMS = {
    "tab",
    "tabs",
    "tablet",
    "tablets",
    "cap",
    "caps",
    "capsule",
    "capsules",
    "inj",
    "injection",
    "soln",
    "solution",
    "susp",
    "suspension",
    "oral",
    "liquid",
    "syrup",
    "elixir",
    "cream",
    "ointment",
    "oint",
    "gel",
    "patch",
    "neb",
    "inhaler",
    "mdi",
    "hfa",
    "ec",
    "er",
    "xr",
    "xl",
    "sr",
    "cr",
    "la",
    "dr",
    "odt",
    "iv",
    "po",
    "pr",
    "sc",
    "im",
    "syringe",
    "vial",
    "bag",
    "premix",
    "powder",
    "rectal",
    "ophth",
    "ophthalmic",
    "drops",
    "spray",
    "sl",
    "chewable",
    "extended",
    "release",
    "immediate",
    "delayed",
    "disintegrating",
    "pca",
    "drip",
    "infusion",
    "flush",
}
_STRENGTH = re.compile(r"\b\d[\d.,/]*\s*(%|mg|mcg|g|gm|ml|units?|meq|mmol|l)?\b")


def normalise_name(name: str | None) -> str | None:
    """A generic drug name for `name` coding, or None when nothing is left."""
    if not name:
        return None
    text = name.lower()
    text = re.sub(r"\(.*?\)|\[.*?\]|\*\w+\*", " ", text)
    text = _STRENGTH.sub(" ", text)
    words = [w for w in re.split(r"[^a-z0-9\-]+", text) if w and w.strip("-")]
    words = [w for w in words if w not in _FORMS]
    while len(words) > 1 and words[-1] in _SALTS and words[-2] not in _CATIONS:
        words.pop()
    return " ".join(words) or None


def clean_ndc(ndc: str | None) -> str | None:
    """NDC-11 as text: digits only, left-padded to 11; None for missing or "0" (MIMIC's no-NDC)."""
    if ndc is None:
        return None
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


def read_ndc_map(path: Path) -> dict[str, str]:
    """GAMENet's ``ndc2RXCUI.txt``: a Python dict literal {NDC: RXCUI}."""
    text = _text(path, "NDC map", "--ndc-map")
    try:
        mapping = ast.literal_eval(text.strip())
    except (ValueError, SyntaxError, MemoryError, RecursionError):
        raise LeaderError(
            f"{path} is not a Python dict literal like {{'00338004904': '1807639', ...}} (GAMENet's ndc2RXCUI.txt); "
            "check --ndc-map"
        ) from None
    if not isinstance(mapping, dict) or not mapping:
        raise LeaderError(f"{path} must hold a non-empty dict {{NDC: RXCUI}}; check --ndc-map")
    out = {}
    for ndc, rxcui in mapping.items():
        if not isinstance(ndc, (str, int)) or not isinstance(rxcui, (str, int)):
            raise LeaderError(f"{path}: entry {ndc!r}: {rxcui!r} is not NDC text -> RXCUI; check --ndc-map")
        key, value = clean_ndc(str(ndc)), str(rxcui).strip()
        if key and value:
            out[key] = value
    return out


def read_atc_map(path: Path) -> dict[str, str]:
    """GAMENet's ``RXCUI2atc4.csv``: RXCUI -> ATC code (first row per RXCUI wins)."""
    text = _text(path, "ATC map", "--atc-map")
    rows = csv.reader(io.StringIO(text))
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
    rows = list(csv.reader(io.StringIO(text)))
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


@functools.lru_cache(maxsize=1)
def atc3_names() -> dict[str, str]:
    """Names of ATC level-3 groups (WHO ATC index) shipped in ``atc3_names.json``."""
    names = json.loads(resources.files("leader.data").joinpath("atc3_names.json").read_text(encoding="utf-8"))
    return {k: v for k, v in names.items() if not k.startswith("_")}


def label_titles(labels: list[str], coding: str) -> dict[str, str]:
    """Titles of medication labels: the ATC-3 group name (or the code itself if unknown), or the name."""
    if coding == "atc3":
        names = atc3_names()
        return {label: names.get(label, label) for label in labels}
    return {label: label for label in labels}
