"""MIMIC-IV v2.x -> prepared dataset (`leader data mimic4`).

    leader data mimic4 --root mimiciv/2.2 --notes mimic-iv-note/2.2 --out data/mimic4 \\
        --ndc-map ndc2RXCUI.txt --atc-map RXCUI2atc4.csv --ddi ddi_atc3_pairs_safedrug.csv

Reads hosp/patients, admissions, diagnoses_icd, procedures_icd, prescriptions, d_icd_diagnoses
and d_icd_procedures (``.csv.gz`` or ``.csv``). ``icd_version`` 9 and 10 stay apart by prefix
(``ICD9:``/``ICD10:``, ``ICD9P:``/``ICD10P:``). Age at admission is anchor_age + (admission year -
anchor_year), capped at 90; every visit keeps the patient's ``anchor_year_group`` as its
``year_group`` (the only real-time information MIMIC-IV gives, used by temporal splits). Race
fills the ``ethnicity`` profile key (MIMIC-IV v1 called the column ethnicity; both are read);
MIMIC-IV has no religion. With ``--notes``, discharge summaries come from MIMIC-IV-Note's
``note/discharge.csv.gz`` (the lowest note_seq per admission). Cleaning rules: `leader.data.assemble`.
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
from leader.data.tables import clean_code, collect, find_table, log, parse_times, read_header, read_table, scan_table
from leader.errors import LeaderError
from leader.io import claim_out

TABLES = (
    "patients",
    "admissions",
    "diagnoses_icd",
    "procedures_icd",
    "prescriptions",
    "d_icd_diagnoses",
    "d_icd_procedures",
)


def _prefix(dx: bool) -> pl.Expr:
    version = pl.col("icd_version").str.strip_chars()
    tag = "" if dx else "P"
    return (
        pl.when(version == "9")
        .then(pl.lit(f"ICD9{tag}"))
        .when(version == "10")
        .then(pl.lit(f"ICD10{tag}"))
        .otherwise(None)
    )


def _check_versions(frame: pl.DataFrame, path) -> None:
    bad = frame.filter(~pl.col("icd_version").str.strip_chars().is_in(["9", "10"]))
    if bad.height:
        raise LeaderError(f"{path.name}: icd_version must be 9 or 10, found '{bad['icd_version'][0]}'")


def run(cfg: MimicConfig, source: str = "mimic4", extra: dict | None = None):
    """Prepare MIMIC-IV at cfg.root into cfg.out and return the output path."""
    with claim_out(cfg.out, overwrite=cfg.overwrite, inputs=cfg.inputs(), marker="manifest.json"):
        return _prepare(cfg, source, extra)


def _prepare(cfg: MimicConfig, source: str, extra: dict | None):
    ndc_map, atc_map, ddi = load_maps(cfg)
    coder = load_coder(cfg)  # a bad --drug-atc fails here, before any table is read
    paths = {name: find_table(cfg.root, f"hosp/{name}") for name in TABLES}  # fail fast on a missing table
    note_path = _note_path(cfg.notes) if cfg.notes is not None else None
    log(f"MIMIC-IV tables found in {cfg.root}")

    patients = read_table(
        cfg.root, "hosp/patients", ["subject_id", "gender", "anchor_age", "anchor_year", "anchor_year_group"]
    )
    header = {h.strip().lower() for h in read_header(paths["admissions"])}
    race = "race" if "race" in header else "ethnicity"
    admissions = read_table(
        cfg.root,
        "hosp/admissions",
        ["subject_id", "hadm_id", "admittime", "admission_type", "insurance", "language", "marital_status", race],
    )
    admissions = admissions.rename({race: "ethnicity"}).with_columns(
        parse_times(admissions, "admittime", paths["admissions"]).alias("time"),
        pl.lit(None, pl.String).alias("religion"),
    )
    anchors = patients.unique("subject_id", keep="first").with_columns(
        pl.col("anchor_age").cast(pl.Int64, strict=False), pl.col("anchor_year").cast(pl.Int64, strict=False)
    )
    admissions = (
        admissions.join(anchors, on="subject_id", how="left")
        .with_columns(
            cap_age(pl.col("anchor_age") + pl.col("time").dt.year() - pl.col("anchor_year")).alias("age"),
            pl.col("anchor_year_group").str.strip_chars().alias("year_group"),
        )
        .select(["subject_id", "hadm_id", "time", "year_group", "age", *PROFILE_TEXT])
    )

    coded_tables = {}
    for name, dx in (("diagnoses_icd", True), ("procedures_icd", False)):
        table = read_table(cfg.root, f"hosp/{name}", ["hadm_id", "seq_num", "icd_code", "icd_version"])
        _check_versions(table.drop_nulls("icd_version"), paths[name])
        coded_tables[name] = ordered_codes(table.with_columns(clean_code("icd_code").alias("code")), _prefix(dx))

    titles = {}
    for name, dx in (("d_icd_diagnoses", True), ("d_icd_procedures", False)):
        table = read_table(cfg.root, f"hosp/{name}", ["icd_code", "icd_version", "long_title"])
        table = table.with_columns(clean_code("icd_code").alias("code"), _prefix(dx).alias("prefix"))
        table = table.drop_nulls(["code", "prefix", "long_title"])
        titles.update(
            {
                normalize_code(f"{p}:{c}"): t
                for p, c, t in zip(table["prefix"], table["code"], table["long_title"], strict=True)
            }
        )

    path = paths["prescriptions"]
    scan = scan_table(path, ["hadm_id", "ndc", "drug"]).select("hadm_id", "ndc", pl.col("drug").alias("name"))
    coded = code_prescriptions(scan, path, cfg.coding, ndc_map, atc_map, coder)

    notes = read_notes(note_path, set(admissions["hadm_id"].to_list())) if note_path is not None else None
    tables = Tables(
        admissions,
        coded_tables["diagnoses_icd"],
        coded_tables["procedures_icd"],
        coded.medications,
        coded.prescribed,
        patients["subject_id"],
        titles,
        notes,
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


def _note_path(folder):
    if not folder.is_dir():
        raise LeaderError(
            f"--notes {folder} is not a folder; point it at MIMIC-IV-Note (holding note/discharge.csv.gz)"
        )
    path = find_table(folder, "note/discharge", required=False) or find_table(folder, "discharge", required=False)
    if path is None:
        raise LeaderError(f"no note/discharge.csv.gz under --notes {folder}; point it at the MIMIC-IV-Note folder")
    return path


def read_notes(path, hadm_ids: set[int]) -> dict[int, dict]:
    """hadm_id -> LAMO sections of its discharge summary (the lowest note_seq)."""
    scan = scan_table(path, ["hadm_id", "text"], optional=("note_type", "note_seq"))
    scan = (
        scan.filter(pl.col("hadm_id").is_not_null() & (pl.col("note_type").is_null() | (pl.col("note_type") == "DS")))
        .with_columns(pl.col("note_seq").cast(pl.Int64, strict=False).alias("_seq"))
        .with_row_index("_row")
        .sort(["hadm_id", "_seq", "_row"], nulls_last=True)
        .unique("hadm_id", keep="first", maintain_order=True)
        .select(["hadm_id", "text"])
    )
    frame = collect(scan, path, "discharge notes")
    notes = {}
    for hadm, text in frame.iter_rows():
        if hadm in hadm_ids and (sections := extract_sections(text)) is not None:
            notes[hadm] = sections
    log(f"notes: sections found for {len(notes):,} admissions")
    return notes
