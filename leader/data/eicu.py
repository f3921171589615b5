"""eICU-CRD (v2.0, or its demo) -> prepared dataset (`leader data eicu`).

    leader data eicu --root eicu-crd-demo-2.0.1 --out data/eicu --ddi ddi_atc3_pairs_safedrug.csv

Reads patient, diagnosis, treatment, medication, infusiondrug, admissiondx, pasthistory, allergy
and admissiondrug (``.csv`` or ``.csv.gz``, any case). The rules:

- **patient** = ``uniquepid``; **visit** = hospital stay (``patienthealthsystemstayid``) with its
  ICU unit stays merged. eICU has no dates: a visit's ``time`` is its ``hospitaldischargeyear``
  (``"2015"``, ISO 8601 year precision; ``--split temporal`` reads it) and visits are ordered by
  that year, then by the hospital stay id. Within one year eICU records nothing that orders two
  hospital stays (offsets count from each unit's own admission), so that order is stable but not
  known to be chronological. The hospital is kept as ``"site": "eicu-hospital-<hospitalid>"``
  (``--split site``).
- **diagnoses**: every ICD code of the stay, ICD-9 or ICD-10 told apart by shape (``"401.9, I10"``
  -> ``ICD9:4019``, ``ICD10:I10``; ICD-9: 3 digits, ``V`` + 2 digits or ``E`` + 3 digits; ICD-10:
  a letter and 2 digits), ordered by priority (Primary, Major, Other) then offset; an ICD code is
  titled by the diagnosis path most often written with it. A row with a path and no ICD code
  becomes ``EICU-DX:<10 hex of sha256(path)>`` titled by its path (the id is the same in every
  eICU extract).
- **procedures**: treatment paths as ``EICU-TX:<10 hex>`` titled by their path, except every path
  that names a medication, a drug class or a fluid given as a drug (`leader.data.eicu_treat`).
- **medications** (the labels): non-cancelled ``medication`` orders and ``infusiondrug`` rows. An
  order without ``drugname`` takes the name most often written with its ``drughiclseqno``;
  infusion names lose their rate unit (``"Propofol (mcg/kg/min)"`` -> ``"Propofol"``). Names are
  coded by `leader.data.atc` (``--coding atc3``, every ATC-3 class of the name) or normalised
  (``--coding name``).
- **profile** (from the first unit stay of the patient's first kept visit): gender (M/F as
  MIMIC writes it), age (``> 89`` -> 90, empty -> missing), ethnicity, unit type, admission source.
- **note**: LAMO's four sections from what was known at admission, only entries made in the
  first 24 hours of the stay's first ICU admission: ``admissiondx`` -> history of present
  illness, ``pasthistory`` -> past medical history, ``allergy`` -> allergies, ``admissiondrug``
  -> medications on admission (names only; `leader.data.eicu_notes`). Home medications, drug
  allergies and past history ("insulin dependent diabetes") may name the visit's own drugs: that
  is admission knowledge, as in MIMIC's admission notes.

No leak: tests/test_data_eicu.py searches every diagnosis and procedure code with its title and
the admission diagnosis of every prepared demo visit for the names of the visit's drugs and the
titles of its labels, and finds none (diagnosis wording that names the condition, such as an
overdose's agent, is listed there).

The cleaning rules and drop reasons after that are `leader.data.assemble`'s.
"""

from __future__ import annotations

import hashlib
from collections import Counter
from pathlib import Path

import polars as pl

from leader.cohort import normalize_code
from leader.data import meds
from leader.data.assemble import Tables, assemble
from leader.data.config import EicuConfig
from leader.data.eicu_notes import int_columns, read_notes
from leader.data.eicu_treat import drug_words, names_drug
from leader.data.tables import collect, find_table, log, read_table, scan_table

TABLES = (
    "patient",
    "diagnosis",
    "treatment",
    "medication",
    "infusiondrug",
    "admissiondx",
    "pasthistory",
    "allergy",
    "admissiondrug",
)
PROFILE = ("gender", "age", "ethnicity", "unit_type", "admission_source")
ICD9 = r"^(?:\d{3}(?:\.\d{1,2})?|V\d{2}(?:\.\d{1,2})?|E\d{3}(?:\.\d)?)$"
ICD10 = r"^[A-Z]\d{2}(?:\.[0-9A-Z]{1,4})?$"
_PRIORITY = {"primary": 0, "major": 1, "other": 2}


def short_id(text: str) -> str:
    """A stable 10-hex id of a path (the same in every eICU extract)."""
    return hashlib.sha256(text.encode("utf-8")).hexdigest()[:10].upper()


def run(cfg: EicuConfig) -> Path:
    """Prepare eICU at cfg.root into cfg.out and return the output path."""
    from leader.io import claim_out

    with claim_out(cfg.out, overwrite=cfg.overwrite, inputs=cfg.inputs(), marker="manifest.json"):
        return _prepare(cfg)


def _prepare(cfg: EicuConfig) -> Path:
    from leader.data.atc import AtcCoder, normalize_drug_name

    coder = AtcCoder.from_file(cfg.drug_atc) if cfg.drug_atc is not None else AtcCoder.default()
    ddi = meds.read_ddi_pairs(cfg.ddi) if cfg.ddi is not None else []
    for name in TABLES:  # fail fast on a missing table
        find_table(cfg.root, name)
    log(f"eICU tables found in {cfg.root}")
    unit, admissions = read_stays(cfg.root)
    extra: dict = {"unit_stays": unit.height, "hospital_stays": admissions.height}

    diagnoses, titles, dx_counts = read_diagnoses(cfg.root, unit)
    orders, rx_coverage = read_orders(cfg.root, unit)
    names = sorted(set(orders["name"].drop_nulls().to_list()))
    if cfg.coding == "atc3":
        coded = {n: list(coder.atc3(n)) for n in names}
    else:
        coded = {n: [normal] if (normal := normalize_drug_name(n)) else [] for n in names}
    medications = (
        orders.with_columns(pl.col("name").replace_strict(coded, default=[], return_dtype=pl.List(pl.String)))
        .explode("name")
        .drop_nulls("name")
        .select("hadm_id", pl.col("name").alias("label"))
        .unique()
    )
    coverage = _coverage(orders, coded, rx_coverage)
    words = drug_words([n for n in names if coder.atc3(n)], normalize_drug_name)
    procedures, tx_titles, tx_counts = read_treatments(cfg.root, unit, lambda s: coder.atc3(s), words)
    titles.update(tx_titles)
    notes, note_counts = read_notes(cfg.root, unit)
    extra.update(dx_counts, **tx_counts, note_entries=note_counts)
    log(f"medication coding '{cfg.coding}': {coverage['mapped_share']:.1%} of medication rows coded")
    tables = Tables(
        admissions,
        diagnoses,
        procedures,
        medications,
        orders["hadm_id"].unique(),
        admissions["subject_id"],
        titles,
        notes,
        profile_columns=PROFILE,
        visit_columns=("site",),
    )
    return assemble(
        tables,
        cfg.out,
        cfg.coding,
        cfg.top_meds,
        ddi,
        source="eicu",
        options=cfg.options(),
        extra={"coverage": coverage, "eicu": extra},
        overwrite=cfg.overwrite,
    )


def read_stays(root: Path) -> tuple[pl.DataFrame, pl.DataFrame]:
    """Unit stays (id, hospital stay, minutes from the stay's first ICU admission) and one row per hospital stay."""
    ids = ["patientunitstayid", "patienthealthsystemstayid", "hospitalid", "hospitaladmitoffset", "unitvisitnumber"]
    text = ["uniquepid", "gender", "age", "ethnicity", "unittype", "hospitaladmitsource", "hospitaldischargeyear"]
    frame = int_columns(read_table(root, "patient", ids + text), ids, "patient")
    frame = frame.filter(pl.col("patientunitstayid").is_not_null() & pl.col("patienthealthsystemstayid").is_not_null())
    # unit admission in minutes after hospital admission = -hospitaladmitoffset; 0 when not recorded
    since_admit = -pl.col("hospitaladmitoffset").fill_null(0)
    frame = frame.with_columns(
        pl.col("patienthealthsystemstayid").alias("hadm_id"),
        (since_admit - since_admit.min().over("patienthealthsystemstayid")).alias("shift"),
    )
    year = pl.col("hospitaldischargeyear").str.strip_chars()
    age = pl.col("age").str.strip_chars()
    gender = pl.col("gender").str.strip_chars()
    first = (
        frame.sort(["hadm_id", "shift", "unitvisitnumber", "patientunitstayid"], nulls_last=True)
        .group_by("hadm_id", maintain_order=True)
        .agg(
            pl.col("uniquepid").str.strip_chars().drop_nulls().first().alias("subject_id"),
            year.filter(year.str.contains(r"^\d{4}$")).first().alias("time"),
            pl.col("hospitalid").drop_nulls().first().alias("hospitalid"),
            pl.col("gender", "age", "ethnicity", "unittype", "hospitaladmitsource").first(),
        )
        .filter(pl.col("subject_id").is_not_null())
    )
    admissions = first.select(
        "subject_id",
        "hadm_id",
        "time",
        pl.lit(None, pl.String).alias("year_group"),
        pl.when(gender.str.to_lowercase() == "male")
        .then(pl.lit("M"))
        .when(gender.str.to_lowercase() == "female")
        .then(pl.lit("F"))
        .otherwise(pl.when(gender != "").then(gender))
        .alias("gender"),
        pl.when(age.str.starts_with(">"))
        .then(pl.lit(90))
        .otherwise(age.cast(pl.Int64, strict=False).clip(0, 90))
        .cast(pl.Int64)
        .alias("age"),
        pl.col("ethnicity").str.strip_chars().alias("ethnicity"),
        pl.col("unittype").str.strip_chars().alias("unit_type"),
        pl.col("hospitaladmitsource").str.strip_chars().alias("admission_source"),
        pl.when(pl.col("hospitalid").is_not_null())
        .then(pl.lit("eicu-hospital-") + pl.col("hospitalid").cast(pl.String))
        .alias("site"),
    )
    log(f"patient: {frame.height:,} unit stays in {admissions.height:,} hospital stays")
    return frame.select("patientunitstayid", "hadm_id", "shift"), admissions


def _icd(part: pl.Expr) -> pl.Expr:
    code = part.str.strip_chars().str.to_uppercase()
    bare = code.str.replace_all(".", "", literal=True)
    return (
        pl.when(code.str.contains(ICD9))
        .then(pl.lit("ICD9:") + bare)
        .when(code.str.contains(ICD10))
        .then(pl.lit("ICD10:") + bare)
    )


def read_diagnoses(root: Path, unit: pl.DataFrame) -> tuple[pl.DataFrame, dict[str, str], dict]:
    """(hadm_id, code) in priority then offset order, code titles, and what was left out."""
    cols = ["patientunitstayid", "diagnosisoffset", "diagnosisstring", "icd9code", "diagnosispriority"]
    frame = int_columns(read_table(root, "diagnosis", cols), ["patientunitstayid", "diagnosisoffset"], "diagnosis")
    frame = (
        frame.with_row_index("_row")
        .join(unit, on="patientunitstayid", how="inner")
        .with_columns(
            pl.col("diagnosisstring").str.strip_chars().alias("path"),
            pl.col("diagnosispriority")
            .str.strip_chars()
            .str.to_lowercase()
            .replace_strict(_PRIORITY, default=3, return_dtype=pl.Int64)
            .alias("_priority"),
            (pl.col("diagnosisoffset") + pl.col("shift")).alias("_at"),
        )
    )
    parts = (
        frame.with_columns(pl.col("icd9code").fill_null("").str.split(",").alias("part"))
        .explode("part")
        .with_columns(_icd(pl.col("part")).alias("code"), pl.col("part").str.strip_chars().alias("part"))
    )
    unrecognised = int(parts.filter(pl.col("code").is_null() & (pl.col("part") != "")).height)
    icd = parts.filter(pl.col("code").is_not_null())
    no_icd = frame.filter(~pl.col("_row").is_in(icd["_row"].implode()))
    local = no_icd.filter(pl.col("path").is_not_null() & (pl.col("path") != "")).with_columns(
        pl.col("path").map_elements(lambda p: "EICU-DX:" + short_id(p), return_dtype=pl.String).alias("code")
    )
    columns = ["hadm_id", "code", "path", "_priority", "_at", "_row"]
    codes = pl.concat([icd.select(columns), local.select(columns)]).sort(["hadm_id", "_priority", "_at", "_row"])
    normal = {code: normalize_code(code) for code in codes["code"].unique().to_list()}  # once per distinct code
    codes = codes.with_columns(pl.col("code").replace_strict(normal, return_dtype=pl.String))
    named = (
        codes.drop_nulls("path")
        .group_by("code", "path")
        .len()
        .sort(["code", "len", "path"], descending=[False, True, False])
    )
    titles = dict(named.unique("code", keep="first").select("code", "path").iter_rows())
    counts = {
        "diagnosis_rows": frame.height,
        "diagnosis_rows_icd": int(icd["_row"].n_unique()),
        "diagnosis_rows_path_only": local.height,
        "diagnosis_rows_without_code_or_path": no_icd.height - local.height,
        "icd_values_not_icd_shaped": unrecognised,
    }
    return codes.select("hadm_id", "code"), titles, counts


def read_treatments(root: Path, unit: pl.DataFrame, coder, words: frozenset[str]):
    """(hadm_id, code), titles, and how many treatment rows were left out for naming a drug."""
    cols = ["patientunitstayid", "treatmentoffset", "treatmentstring"]
    frame = int_columns(read_table(root, "treatment", cols), ["patientunitstayid", "treatmentoffset"], "treatment")
    frame = (
        frame.with_row_index("_row")
        .join(unit, on="patientunitstayid", how="inner")
        .with_columns(pl.col("treatmentstring").str.strip_chars().alias("path"))
        .filter(pl.col("path").is_not_null() & (pl.col("path") != ""))
    )
    paths = sorted(set(frame["path"].to_list()))
    drug = {p for p in paths if names_drug(p, coder, words)}
    kept = frame.filter(~pl.col("path").is_in(sorted(drug)))
    ids = {p: normalize_code("EICU-TX:" + short_id(p)) for p in paths if p not in drug}
    codes = (
        kept.with_columns(pl.col("path").replace_strict(ids, return_dtype=pl.String).alias("code"))
        .with_columns((pl.col("treatmentoffset") + pl.col("shift")).alias("_at"))
        .sort(["hadm_id", "_at", "_row"])
        .select("hadm_id", "code")
    )
    counts = {
        "treatment_rows": frame.height,
        "treatment_rows_naming_a_drug_left_out": frame.height - kept.height,
        "treatment_paths_naming_a_drug_left_out": len(drug),
        "treatment_paths_kept": len(ids),
    }
    log(f"treatment: kept {kept.height:,} of {frame.height:,} rows ({len(drug):,} drug-naming paths left out)")
    return codes, {code: path for path, code in ids.items()}, counts


def read_orders(root: Path, unit: pl.DataFrame) -> tuple[pl.DataFrame, dict]:
    """(hadm_id, name, table) of every non-cancelled medication order and infusion row, and row counts."""
    path = find_table(root, "medication")
    cols = ["patientunitstayid", "drugordercancelled", "drugname", "drughiclseqno"]
    rx = int_columns(collect(scan_table(path, cols), path), ["patientunitstayid"], "medication")
    name = pl.col("drugname").str.strip_chars()
    rx = rx.with_columns(pl.when(name != "").then(name).alias("drugname"), pl.col("drughiclseqno").str.strip_chars())
    by_hicl = (
        rx.drop_nulls(["drugname", "drughiclseqno"])
        .group_by("drughiclseqno", "drugname")
        .len()
        .sort(["drughiclseqno", "len", "drugname"], descending=[False, True, False])
        .unique("drughiclseqno", keep="first")
    )
    hicl = dict(by_hicl.select("drughiclseqno", "drugname").iter_rows())
    cancelled = pl.col("drugordercancelled").str.strip_chars().str.to_lowercase().is_in(["yes", "true", "1"])
    given = rx.filter(~cancelled.fill_null(False))
    filled = given.with_columns(
        pl.coalesce(
            "drugname", pl.col("drughiclseqno").replace_strict(hicl, default=None, return_dtype=pl.String)
        ).alias("name")
    )
    inf_path = find_table(root, "infusiondrug")
    infusions = int_columns(
        collect(scan_table(inf_path, ["patientunitstayid", "drugname"]), inf_path),
        ["patientunitstayid"],
        "infusiondrug",
    )
    infusions = infusions.with_columns(
        pl.col("drugname")
        .str.replace(r"(?i)^\s*volume\s*\(ml\)\s*", "")
        .str.replace(r"\s*\([^()]*\)\s*$", "")
        .str.strip_chars()
        .alias("name")
    ).with_columns(pl.when(pl.col("name") != "").then(pl.col("name")).alias("name"))
    orders = pl.concat(
        [
            filled.select("patientunitstayid", "name", pl.lit("medication").alias("table")),
            infusions.select("patientunitstayid", "name", pl.lit("infusiondrug").alias("table")),
        ]
    ).join(unit.select("patientunitstayid", "hadm_id"), on="patientunitstayid", how="inner")
    counts = {
        "medication_rows": rx.height,
        "medication_rows_cancelled": rx.height - given.height,
        "medication_rows_named_by_hicl": int((filled["drugname"].is_null() & filled["name"].is_not_null()).sum()),
        "medication_rows_without_name": int(filled["name"].is_null().sum()),
        "infusion_rows": infusions.height,
    }
    return orders.select("hadm_id", "name", "table"), counts


def _coverage(orders: pl.DataFrame, coded: dict[str, list[str]], counts: dict) -> dict:
    """Shares of order rows coded, overall and per table, and the 30 most frequent unmapped names."""
    mapped = orders["name"].replace_strict(
        {n: bool(v) for n, v in coded.items()}, default=False, return_dtype=pl.Boolean
    )
    frame = orders.with_columns(mapped.alias("mapped"))
    out = dict(counts)
    for table in ("medication", "infusiondrug"):
        part = frame.filter(pl.col("table") == table)
        out[f"{table}_rows_coded_share"] = round(float(part["mapped"].mean() or 0.0), 4)
    unmapped = Counter(frame.filter(~pl.col("mapped"))["name"].to_list())
    out.update(
        prescription_rows=frame.height,
        mapped_rows=int(frame["mapped"].sum()),
        mapped_share=round(float(frame["mapped"].mean() or 0.0), 4),
        unmapped_top=meds.unmapped_top(dict(unmapped)),
    )
    return out
