"""MIMIC-III v1.4 -> prepared dataset (`leader data mimic3`).

    leader data mimic3 --root mimic-iii-clinical-database-1.4 --out data/mimic3 \\
        --ndc-map ndc2RXCUI.txt --atc-map RXCUI2atc4.csv --ddi ddi_atc3_pairs_safedrug.csv

Reads PATIENTS, ADMISSIONS, DIAGNOSES_ICD, PROCEDURES_ICD, PRESCRIPTIONS, D_ICD_DIAGNOSES,
D_ICD_PROCEDURES and, when the file is there, NOTEEVENTS (discharge summaries: the "Report",
else the first one; ISERROR rows skipped). Codes become ``ICD9:<code>`` and ``ICD9P:<code>``.
Age is taken at admission from DOB and capped at 90: MIMIC-III moves the birth date of patients
over 89 back by ~300 years. The cleaning rules and drop reasons are in `leader.data.assemble`.
"""

from __future__ import annotations

import polars as pl

from leader.cohort import normalize_code
from leader.data.assemble import Tables, assemble
from leader.data.common import (
    PROFILE_TEXT,
    MimicConfig,
    cap_age,
    code_prescriptions,
    load_coder,
    load_maps,
    ordered_codes,
)
from leader.data.notes import extract_sections
from leader.data.tables import clean_code, collect, find_table, log, parse_times, read_table, scan_table
from leader.io import claim_out

TABLES = (
    "PATIENTS",
    "ADMISSIONS",
    "DIAGNOSES_ICD",
    "PROCEDURES_ICD",
    "PRESCRIPTIONS",
    "D_ICD_DIAGNOSES",
    "D_ICD_PROCEDURES",
)


def run(cfg: MimicConfig, source: str = "mimic3", extra: dict | None = None):
    """Prepare MIMIC-III at cfg.root into cfg.out and return the output path."""
    with claim_out(cfg.out, overwrite=cfg.overwrite, inputs=cfg.inputs(), marker="manifest.json"):
        return _prepare(cfg, source, extra)


def _prepare(cfg: MimicConfig, source: str, extra: dict | None):
    ndc_map, atc_map, ddi = load_maps(cfg)
    coder = load_coder(cfg)  # a bad --drug-atc fails here, before any table is read
    paths = {name: find_table(cfg.root, name) for name in TABLES}  # fail fast on a missing table
    log(f"MIMIC-III tables found in {cfg.root}")

    patients = read_table(cfg.root, "PATIENTS", ["subject_id", "gender", "dob"])
    admissions = read_table(
        cfg.root,
        "ADMISSIONS",
        [
            "subject_id",
            "hadm_id",
            "admittime",
            "admission_type",
            "insurance",
            "language",
            "religion",
            "marital_status",
            "ethnicity",
        ],
    )
    dob = patients.select("subject_id", parse_times(patients, "dob", paths["PATIENTS"]).alias("dob"), "gender")
    admissions = admissions.with_columns(parse_times(admissions, "admittime", paths["ADMISSIONS"]).alias("time"))
    admissions = (
        admissions.join(dob.unique("subject_id", keep="first"), on="subject_id", how="left")
        .with_columns(
            cap_age(((pl.col("time") - pl.col("dob")).dt.total_days() / 365.25).floor()).alias("age"),
            pl.lit(None, pl.String).alias("year_group"),
        )
        .select(["subject_id", "hadm_id", "time", "year_group", "age", *PROFILE_TEXT])
    )

    diagnoses = read_table(cfg.root, "DIAGNOSES_ICD", ["hadm_id", "seq_num", "icd9_code"])
    procedures = read_table(cfg.root, "PROCEDURES_ICD", ["hadm_id", "seq_num", "icd9_code"])
    diagnoses = ordered_codes(diagnoses.with_columns(clean_code("icd9_code").alias("code")), pl.lit("ICD9"))
    procedures = ordered_codes(procedures.with_columns(clean_code("icd9_code").alias("code")), pl.lit("ICD9P"))

    titles = {}
    for name, prefix in (("D_ICD_DIAGNOSES", "ICD9"), ("D_ICD_PROCEDURES", "ICD9P")):
        table = read_table(cfg.root, name, ["icd9_code", "long_title"])
        table = table.with_columns(clean_code("icd9_code").alias("code")).drop_nulls(["code", "long_title"])
        titles.update(
            {normalize_code(f"{prefix}:{c}"): t for c, t in zip(table["code"], table["long_title"], strict=True)}
        )

    path = paths["PRESCRIPTIONS"]
    scan = scan_table(path, ["hadm_id", "ndc", "drug"], optional=("drug_name_generic",))
    scan = scan.select("hadm_id", "ndc", pl.coalesce("drug_name_generic", "drug").alias("name"))
    coded = code_prescriptions(scan, path, cfg.coding, ndc_map, atc_map, coder)

    notes = read_notes(cfg.root, set(admissions["hadm_id"].to_list()))
    tables = Tables(
        admissions, diagnoses, procedures, coded.medications, coded.prescribed, patients["subject_id"], titles, notes
    )
    return assemble(
        tables,
        cfg.out,
        cfg.coding,
        cfg.top_meds,
        ddi,
        source=source,
        options=cfg.options(),
        extra={"coverage": coded.coverage, **(extra or {})},
        overwrite=cfg.overwrite,
    )


def read_notes(root, hadm_ids: set[int]) -> dict[int, dict] | None:
    """hadm_id -> LAMO sections of its discharge summary, or None when NOTEEVENTS is absent."""
    path = find_table(root, "NOTEEVENTS", required=False)
    if path is None:
        log("NOTEEVENTS not found: no notes")
        return None
    scan = scan_table(path, ["hadm_id", "category", "text"], optional=("description", "iserror", "chartdate"))
    scan = (
        scan.filter(
            (pl.col("category").str.strip_chars().str.to_lowercase() == "discharge summary")
            & pl.col("hadm_id").is_not_null()
            & (pl.col("iserror").is_null() | (pl.col("iserror").str.strip_chars().is_in(["", "0"])))
        )
        .with_row_index("_row")
        .with_columns(
            (pl.col("description").str.strip_chars().str.to_lowercase() != "report").fill_null(True).alias("_addendum")
        )
        .sort(["hadm_id", "_addendum", "chartdate", "_row"], nulls_last=True)
        .unique("hadm_id", keep="first", maintain_order=True)
        .select(["hadm_id", "text"])
    )
    frame = collect(scan, path, "NOTEEVENTS discharge summaries")
    notes = {}
    for hadm, text in frame.iter_rows():
        if hadm in hadm_ids and (sections := extract_sections(text)) is not None:
            notes[hadm] = sections
    log(f"notes: sections found for {len(notes):,} admissions")
    return notes
