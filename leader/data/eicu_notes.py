"""eICU's admission records -> LAMO's four note sections (see `leader.data.eicu`), and the integer-column check.

What was known at admission: only entries made (their ``*enteredoffset``) within `NOTE_WINDOW`
minutes of the hospital stay's first ICU admission (a unit's offsets are moved to that clock with
its ``shift``):
``admissiondx`` -> history of present illness (``"<parent>: <name>"`` per row, e.g.
``"Cardiovascular: Sepsis, pulmonary"``), ``pasthistory`` -> past medical history (the path after
"Past History"), ``allergy`` -> allergies, ``admissiondrug`` -> medications on admission (names).
Entries are de-duplicated in time order and joined by "; ".
"""

from __future__ import annotations

from pathlib import Path

import polars as pl

from leader.data.tables import log, read_table
from leader.errors import LeaderError

NOTE_WINDOW = 1440
"""Minutes after the stay's first ICU admission within which note entries count as admission knowledge."""


def int_columns(frame: pl.DataFrame, columns: list[str], table: str) -> pl.DataFrame:
    """Cast id / offset columns to integers; refuse a value that is not one."""
    out = frame.with_columns(pl.col(c).str.strip_chars().cast(pl.Int64, strict=False) for c in columns)
    for c in columns:
        bad = out[c].is_null() & frame[c].is_not_null() & (frame[c].str.strip_chars() != "")
        if bad.any():
            raise LeaderError(
                f"{table}: column '{c}' holds '{frame[c].filter(bad)[0][:40]}', not an integer; "
                "is it an unmodified eICU table?"
            )
    return out


def _joined(values) -> str:
    seen: list[str] = []
    for value in values:
        value = " ".join(str(value or "").split())
        if value and value not in seen:
            seen.append(value)
    return "; ".join(seen)


def _entries(root: Path, name: str, offset: str, cols: list[str], stays: pl.DataFrame) -> tuple[pl.DataFrame, int]:
    """A note table's rows within NOTE_WINDOW minutes of the stay's first ICU admission, in time order."""
    frame = int_columns(
        read_table(root, name, ["patientunitstayid", offset, *cols]), ["patientunitstayid", offset], name
    )
    frame = frame.with_row_index("_row").join(
        stays.select("patientunitstayid", "hadm_id", "shift"), on="patientunitstayid"
    )
    at = pl.col(offset) + pl.col("shift")
    kept = frame.filter(at.is_not_null() & (at <= NOTE_WINDOW)).sort(["hadm_id", at, "_row"])
    return kept, frame.height - kept.height


def read_notes(root: Path, stays: pl.DataFrame) -> tuple[dict[int, dict], dict]:
    """hadm_id -> the four LAMO sections (only the first 24 hours), and the entries left out per table."""
    from leader.cohort import NOTE_SECTIONS
    from leader.data.notes import MAX_CHARS

    sections: dict[int, dict[str, list[str]]] = {}
    counts = {}

    def add(section: str, frame: pl.DataFrame, text: pl.Expr) -> None:
        for hadm, values in frame.group_by("hadm_id", maintain_order=True).agg(text.alias("t")).iter_rows():
            sections.setdefault(hadm, {s: [] for s in NOTE_SECTIONS})[section].extend(values)

    dx, late = _entries(root, "admissiondx", "admitdxenteredoffset", ["admitdxpath", "admitdxname"], stays)
    counts["admissiondx_after_24h"] = late
    segments = pl.col("admitdxpath").str.split("|")
    add(
        "history_of_present_illness",
        dx,
        pl.when(segments.list.len() >= 3)
        .then(segments.list.get(-2, null_on_oob=True) + pl.lit(": ") + pl.col("admitdxname"))
        .otherwise(pl.col("admitdxname")),
    )
    past, late = _entries(root, "pasthistory", "pasthistoryenteredoffset", ["pasthistorypath"], stays)
    counts["pasthistory_after_24h"] = late
    tail = pl.col("pasthistorypath").str.split("/").list.slice(3)
    tail = tail.list.eval(pl.element().filter(~pl.element().is_in(["Organ Systems", "Past History Obtain Options"])))
    add("past_medical_history", past, tail.list.join(": "))
    allergy, late = _entries(root, "allergy", "allergyenteredoffset", ["allergyname", "drugname"], stays)
    counts["allergy_after_24h"] = late
    add("allergies", allergy, pl.coalesce("allergyname", "drugname"))
    home, late = _entries(root, "admissiondrug", "drugenteredoffset", ["drugname"], stays)
    counts["admissiondrug_after_24h"] = late
    add("medications_on_admission", home, pl.col("drugname"))
    notes: dict = {}
    for hadm, parts in sections.items():
        note = {s: _joined(parts[s])[:MAX_CHARS] for s in NOTE_SECTIONS}
        if any(note.values()):
            notes[hadm] = note
    log(f"notes: admission sections for {len(notes):,} hospital stays")
    return notes, counts
