"""From loader tables to a prepared dataset: cleaning rules, drop counts, top-N medications.

Every MIMIC loader reads its tables into `Tables` and calls `assemble`. The rules, in order; a
visit is counted under the first rule it fails:

1. ``no_patient_row``: the admission's subject is not in the patients table.
2. ``no_admission_time``: the admission has no admittime.
3. ``no_codes``: no diagnosis and no procedure code.
4. ``no_prescription``: no prescription row at all.
5. ``no_mapped_medication``: prescriptions, but none maps to a medication label.
6. ``no_top_medication``: none of its medications is among the top-N labels.

Visits without medications are dropped, as LEADER, GAMENet and SafeDrug do: there is nothing to
learn from or to score on them. Patients left with no visit are dropped (``no_visit_left``);
patients without any admission are counted as ``no_admission``. The top-N labels are the N most
frequent by number of visits (after rules 1-5; ties by label), and that is their output order.

The profile comes from the patient's **first kept admission** (age at that admission, its
insurance, language, marital status, ethnicity and admission type), so no sample's profile
carries information from a later admission.
"""

from __future__ import annotations

import sys
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import polars as pl
from tqdm import tqdm

from leader.cohort import PROFILE_FIELDS, write_dataset
from leader.data.meds import label_titles
from leader.data.tables import log
from leader.errors import LeaderError

PROFILE_COLUMNS = PROFILE_FIELDS  # the MIMIC loaders build exactly the cohort's profile fields
VISIT_REASONS = (
    "no_patient_row",
    "no_admission_time",
    "no_codes",
    "no_prescription",
    "no_mapped_medication",
    "no_top_medication",
)


@dataclass
class Tables:
    """What a loader hands over. Ids are text; codes already carry their system prefix."""

    admissions: pl.DataFrame
    """subject_id, hadm_id (integers), time (datetime or null), year_group (text or null) and PROFILE_COLUMNS
    (age an int)."""
    diagnoses: pl.DataFrame
    """hadm_id, code: in the order MIMIC lists them (seq_num)."""
    procedures: pl.DataFrame
    """hadm_id, code."""
    medications: pl.DataFrame
    """hadm_id, label: one row per mapped prescription row (unmapped rows left out)."""
    prescribed: pl.Series
    """hadm_id of every admission with at least one prescription row."""
    patients: pl.Series
    """subject_id of every row in the patients table."""
    titles: dict[str, str] = field(default_factory=dict)
    """Titles of diagnosis and procedure codes (from D_ICD_*)."""
    notes: dict[int, dict] | None = None
    """hadm_id -> the four note sections, when notes were read."""
    profile_columns: tuple[str, ...] = PROFILE_COLUMNS
    """The admissions columns that make the profile (eICU: gender, age, ethnicity, unit type, admission source)."""
    visit_columns: tuple[str, ...] = ()
    """Further admissions columns copied onto each visit when not null (eICU: ``site``)."""


def top_labels(
    visits: dict[str, int], top_meds: int, patients: dict[str, int] | None = None, min_patients: int = 1
) -> tuple[list[str], dict[str, int]]:
    """The medication labels a dataset keeps, in output order: the `top_meds` most frequent by
    visits (`visits`: label -> visits that hold it; ties by label) among those that at least
    `min_patients` distinct patients received (`patients`: label -> patients; None: no such rule,
    as for MIMIC, eICU and OMOP). Also the manifest's counts of the cut: labels before it and,
    with `patients`, labels below --min-patients."""
    ranked = sorted(visits, key=lambda label: (-visits[label], label))
    common = [label for label in ranked if patients is None or patients[label] >= min_patients]
    counts = {"medication_labels_before_top": len(ranked)}
    if patients is not None:
        counts["medication_labels_below_min_patients"] = len(ranked) - len(common)
    return common[:top_meds], counts


def top_record_labels(records: list[dict], top_meds: int, min_patients: int, required: bool = True):
    """`top_labels` of cohort-format patients (their visits' medication lists, each label once
    per visit), with the --min-patients rule; refuses a cohort where no label passes it unless
    not `required` (a fixed label list is given)."""
    visits = Counter(m for p in records for v in p["visits"] for m in v["medications"])
    patients = Counter(m for p in records for m in {m for v in p["visits"] for m in v["medications"]})
    labels, counts = top_labels(visits, top_meds, patients, min_patients)
    if required and not labels:
        raise LeaderError(
            f"no medication label is received by {min_patients} or more patients; "
            "lower --min-patients (only for data that stays inside the hospital) or export more patients"
        )
    return labels, counts


def _lists(frame: pl.DataFrame, column: str, sort: bool = False) -> pl.DataFrame:
    values = pl.col(column).unique(maintain_order=True)
    return frame.drop_nulls().group_by("hadm_id", maintain_order=True).agg(values.sort() if sort else values)


def assemble(
    tables: Tables,
    out: Path,
    coding: str,
    top_meds: int,
    ddi: list[tuple[str, str]],
    source: str,
    options: dict,
    extra: dict,
    overwrite: bool = False,
) -> Path:
    """Apply the cleaning rules and write the prepared dataset; return its path."""
    adm = tables.admissions
    known = tables.patients.unique()
    reasons: Counter = Counter()
    adm = adm.with_columns(pl.col("subject_id").is_in(known.implode()).alias("_has_patient"))
    visits = (
        adm.join(_lists(tables.diagnoses, "code").rename({"code": "dx"}), on="hadm_id", how="left")
        .join(_lists(tables.procedures, "code").rename({"code": "px"}), on="hadm_id", how="left")
        .join(_lists(tables.medications, "label", sort=True).rename({"label": "meds"}), on="hadm_id", how="left")
        .with_columns(pl.col("hadm_id").is_in(tables.prescribed.unique().implode()).alias("_prescribed"))
    )
    n_codes = pl.col("dx").list.len().fill_null(0) + pl.col("px").list.len().fill_null(0)
    reason = (
        pl.when(~pl.col("_has_patient"))
        .then(pl.lit("no_patient_row"))
        .when(pl.col("time").is_null())
        .then(pl.lit("no_admission_time"))
        .when(n_codes == 0)
        .then(pl.lit("no_codes"))
        .when(~pl.col("_prescribed"))
        .then(pl.lit("no_prescription"))
        .when(pl.col("meds").list.len().fill_null(0) == 0)
        .then(pl.lit("no_mapped_medication"))
        .otherwise(None)
    )
    log("admissions joined with their codes and medications")
    visits = visits.with_columns(reason.alias("_drop"))
    reasons.update(visits["_drop"].drop_nulls().to_list())
    visits = visits.filter(pl.col("_drop").is_null())

    counts = visits["meds"].explode().value_counts(name="n")
    medications, cut = top_labels(dict(zip(counts["meds"].to_list(), counts["n"].to_list(), strict=True)), top_meds)
    keep = set(medications)
    visits = visits.with_columns(pl.col("meds").list.filter(pl.element().is_in(list(keep))))
    reasons["no_top_medication"] = int((visits["meds"].list.len() == 0).sum())
    visits = visits.filter(pl.col("meds").list.len() > 0)
    visits = visits.sort(["subject_id", "time", "hadm_id"], nulls_last=True)
    kept_subjects = visits["subject_id"].n_unique()
    with_visits = adm["subject_id"].unique()
    patient_drops = {
        "no_admission": int((~known.is_in(with_visits.implode())).sum()),
        "no_visit_left": int(with_visits.is_in(known.implode()).sum()) - kept_subjects,
    }
    log(
        f"kept {kept_subjects:,} patients, {visits.height:,} visits; dropped visits: "
        + (", ".join(f"{k} {v:,}" for k, v in reasons.items() if v) or "none")
    )

    used_codes = sorted(
        set(visits["dx"].explode().drop_nulls().to_list()) | set(visits["px"].explode().drop_nulls().to_list())
    )
    titles = {code: tables.titles.get(code, code) for code in used_codes}
    titles.update(label_titles(medications, coding))
    notes = tables.notes if tables.notes is not None else {}
    manifest_extra = {
        **extra,
        "medication_coding": coding,
        "top_meds": top_meds,
        **cut,
        "profile_from": "first kept admission",
        "drops": {"visits": {r: int(reasons.get(r, 0)) for r in VISIT_REASONS}, "patients": patient_drops},
        "codes_without_title": sum(1 for c in used_codes if c not in tables.titles),
        "visits_with_note": int(visits["hadm_id"].is_in(pl.Series(list(notes), dtype=pl.Int64).implode()).sum())
        if notes
        else 0,
    }
    log(f"writing {out}")
    return write_dataset(
        out,
        _patients(visits, kept_subjects, notes, tables.profile_columns, tables.visit_columns),
        medications,
        titles,
        ddi,
        source=source,
        options=options,
        extra=manifest_extra,
        overwrite=overwrite,
    )


def _patients(
    visits: pl.DataFrame,
    total: int,
    notes: dict,
    profile_columns: tuple[str, ...] = PROFILE_COLUMNS,
    visit_columns: tuple[str, ...] = (),
):
    """Yield patient records from visits sorted by patient, then time (a datetime, or text such as a year)."""
    columns = ["subject_id", "hadm_id", "time", "year_group", "dx", "px", "meds", *visit_columns, *profile_columns]
    rows = visits.select(columns)
    bar = tqdm(total=total, desc="patients", unit="pt", file=sys.stderr, mininterval=1.0, leave=False)
    record, current = None, None
    for subject, hadm, time, year_group, dx, px, meds, *rest in rows.iter_rows():
        extras, profile = rest[: len(visit_columns)], rest[len(visit_columns) :]
        if subject != current:
            if record is not None:
                bar.update()
                yield record
            current = subject
            record = {
                "patient_id": str(subject),
                "profile": dict(zip(profile_columns, profile, strict=True)),
                "visits": [],
            }
        visit = {"visit_id": str(hadm), "time": time if isinstance(time, str) else time.isoformat()}
        if year_group:
            visit["year_group"] = year_group
        visit.update({k: v for k, v in zip(visit_columns, extras, strict=True) if v is not None})
        visit.update(diagnoses=dx or [], procedures=px or [], medications=meds, note=notes.get(hadm))
        record["visits"].append(visit)
    if record is not None:
        bar.update()
        yield record
    bar.close()
