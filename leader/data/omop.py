"""An OMOP CDM (v5.3 / v5.4) database -> prepared dataset (`leader data omop`).

    leader data omop --db eunomia.duckdb --out data/omop
    leader data omop --db postgresql://reader@warehouse/cdm --schema cdm --out data/omop

`--db` is a DuckDB file (a path, or ``duckdb:///path``), opened read-only, or any SQLAlchemy URL
(PostgreSQL tested; the driver of other databases must be installed). The queries are in
`leader.data.omop_sql`: the same SQL for every engine, joins and grouping done in the database.

- person -> profile: gender, age at the visit (visit year - year_of_birth), race and ethnicity
  (concept names, else the source values; joined as "race, ethnicity" in the ``ethnicity`` field
  as MIMIC's ethnicity column holds race); visit_occurrence -> visits (visit_start_date as time,
  the visit concept's name as ``admission_type``). The profile is the first kept visit's.
- condition_occurrence / procedure_occurrence -> diagnoses / procedures: ``SYSTEM:VALUE`` from the
  concept's vocabulary_id and concept_code (`SYSTEMS`: SNOMED -> ``SNOMED:``; ICD10CM -> ``ICD10:``
  and ICD9CM -> ``ICD9:`` so an OMOP site shares codes with the MIMIC loaders), titled by
  concept_name, ordered by first date in the visit. Concept id 0 ("no matching concept") is dropped.
- drug_exposure -> medication labels. ``--coding atc3``: the ATC classes the vocabulary links to
  the drug concept (concept_ancestor / concept_relationship); where it has none (Eunomia ships no
  ATC concepts), the ATC-3 classes of the drug's RxNorm ingredients by name through
  `leader.data.atc.AtcCoder` (the shipped map, or ``--drug-atc``); without ingredients (CVX
  vaccines), the drug concept's own name. ``--coding name``: the normalised ingredient names.
- Which visit an event belongs to, and what is dropped, is stated in `leader.data.omop_sql`; the
  counts go to the manifest (``omop.events``). The cleaning rules are `leader.data.assemble`'s.
"""

from __future__ import annotations

import re
import time
from collections import Counter
from datetime import datetime
from pathlib import Path

import polars as pl

from leader.cohort import PROFILE_FIELDS, code_fits_system, normalize_code
from leader.data import omop_sql as sql
from leader.data.assemble import Tables, assemble
from leader.data.config import OmopConfig
from leader.data.meds import read_ddi_pairs, unmapped_top
from leader.data.omop_db import Database
from leader.data.tables import log
from leader.errors import LeaderError
from leader.io import claim_out

SYSTEMS = {
    "SNOMED": "SNOMED",
    "ICD10CM": "ICD10",
    "ICD9CM": "ICD9",
    "ICD9Proc": "ICD9P",
    "ICD10PCS": "ICD10P",
    "CPT4": "CPT",
}
"""OMOP vocabulary_id -> code system of the cohort; other vocabularies keep their id, upper-cased."""


def run(cfg: OmopConfig) -> Path:
    """Read the CDM at cfg.db and write the prepared dataset to cfg.out; return its path."""
    from leader.data.atc import AtcCoder

    with claim_out(cfg.out, overwrite=cfg.overwrite, inputs=cfg.inputs(), marker="manifest.json"):
        coder = None
        if cfg.coding == "atc3":
            coder = AtcCoder.from_file(cfg.drug_atc) if cfg.drug_atc is not None else AtcCoder.default()
        ddi = read_ddi_pairs(cfg.ddi) if cfg.ddi is not None else []
        started = time.perf_counter()
        with Database(cfg.db) as db:
            schema = db.cdm_schema(cfg.schema, sql.TABLES)
            tables, summary = _read(db, schema + ".", cfg, coder)
        seconds = round(time.perf_counter() - started, 2)
        log(f"{db.engine} read in {seconds} s")
        coverage = summary.pop("coverage")
        extra = {"omop": {"engine": db.engine, "schema": schema, "query_seconds": seconds, **summary}}
        extra["coverage"] = coverage
        return assemble(tables, cfg.out, cfg.coding, cfg.top_meds, ddi, "omop", cfg.options(), extra, cfg.overwrite)


def _read(db: Database, s: str, cfg: OmopConfig, coder) -> tuple[Tables, dict]:
    dangling = cfg.dangling_visits
    admissions = _admissions(db.rows(sql.visits(s, dangling)))
    log(f"{admissions.height:,} visits")
    titles: dict[str, str] = {}
    frames, unusable = {}, Counter()
    for kind in ("conditions", "procedures"):
        frames[kind] = _codes(db.rows(sql.codes(s, kind, dangling)), titles, unusable)
        log(f"{kind}: {frames[kind].height:,} (visit, code) rows")
    drug_rows = db.rows(sql.drugs(s, dangling))
    concept_rows = db.rows(sql.drug_concepts(s))
    labels, sources = drug_labels(concept_rows, cfg.coding, coder)
    drug_names = {drug: name for drug, relation, _, _, name in concept_rows if relation == "self"}
    medications = pl.DataFrame(
        [(visit, label) for visit, drug, _ in drug_rows for label in labels.get(drug, ())],
        schema={"hadm_id": pl.Int64, "label": pl.String},
        orient="row",
    )
    placed = sum(n for _, _, n in drug_rows)
    mapped = sum(n for _, drug, n in drug_rows if labels.get(drug))
    by_source, unmapped = Counter(), Counter()
    for _, drug, n in drug_rows:
        by_source[sources.get(drug, "unmapped")] += n
        if not labels.get(drug):
            unmapped[drug_names.get(drug, f"concept {drug}")] += n
    log(f"drugs: {mapped:,} of {placed:,} exposures in visits mapped to a label ({cfg.coding})")
    events = {kind: _placement(db.rows(sql.placement(s, kind, dangling))) for kind in sql.EVENTS}
    summary = {
        "visits": {
            f"{origin}{'' if known else '_no_person'}": n for origin, known, n in db.rows(sql.visit_counts(s, dangling))
        },
        "events": events,
        "codes_unusable": dict(unusable),
        "coverage": {
            "prescription_rows": placed,
            "mapped_rows": mapped,
            "mapped_share": round(mapped / placed, 4) if placed else 0.0,
            "rows_by_label_source": dict(sorted(by_source.items())),
            "unmapped_top": unmapped_top(dict(unmapped)),
        },
        "drug_concepts_by_label_source": dict(sorted(Counter(sources.values()).items())),
    }
    tables = Tables(
        admissions=admissions,
        diagnoses=frames["conditions"],
        procedures=frames["procedures"],
        medications=medications,
        prescribed=pl.Series("hadm_id", sorted({visit for visit, _, _ in drug_rows}), dtype=pl.Int64),
        patients=pl.Series("subject_id", [row[0] for row in db.rows(sql.persons(s))], dtype=pl.Int64),
        titles=titles,
    )
    return tables, summary


def _admissions(rows: list[tuple]) -> pl.DataFrame:
    """Visit rows -> the admissions table of `assemble` (profile columns per visit)."""
    records = []
    for person, visit, start, visit_type, born, gender, race, ethnicity in rows:
        age = max(start.year - int(born), 0) if start is not None and born is not None else None
        origin = ", ".join(str(v).strip() for v in (race, ethnicity) if v is not None and str(v).strip())
        profile = {field: None for field in PROFILE_FIELDS}
        profile |= {"gender": gender, "age": age, "ethnicity": origin or None, "admission_type": visit_type}
        when = datetime(start.year, start.month, start.day) if start is not None else None
        records.append({"subject_id": person, "hadm_id": visit, "time": when, "year_group": None, **profile})
    schema = {"subject_id": pl.Int64, "hadm_id": pl.Int64, "time": pl.Datetime("us"), "year_group": pl.String}
    schema |= {field: (pl.Int64 if field == "age" else pl.String) for field in PROFILE_FIELDS}
    return pl.DataFrame(records, schema=schema, orient="row") if records else pl.DataFrame(schema=schema)


def cohort_code(vocabulary: str, value: str) -> str | None:
    """``SYSTEM:VALUE`` of an OMOP concept, or None when the vocabulary or value cannot form one."""
    system = SYSTEMS.get(vocabulary) or re.sub(r"[^A-Z0-9-]+", "-", vocabulary.strip().upper()).strip("-")
    try:
        code = normalize_code(f"{system}:{value}")
    except LeaderError:
        return None
    return code if code_fits_system(code) else None


def _codes(rows: list[tuple], titles: dict[str, str], unusable: Counter) -> pl.DataFrame:
    """(visit, vocabulary, code, name, day) rows in visit order -> (hadm_id, code) with titles collected."""
    out = []
    for visit, vocabulary, value, name, _ in rows:
        code = cohort_code(vocabulary or "", value or "")
        if code is None:
            unusable[vocabulary or "none"] += 1
            continue
        titles.setdefault(code, name or code)
        out.append((visit, code))
    return pl.DataFrame(out, schema={"hadm_id": pl.Int64, "code": pl.String}, orient="row")


def drug_labels(rows: list[tuple], coding: str, coder) -> tuple[dict[int, tuple[str, ...]], dict[int, str]]:
    """Per drug concept: its labels and where they came from (vocabulary_atc, ingredient_name, drug_name).

    `rows` are `omop_sql.drug_concepts` rows: (drug id, relation, vocabulary_id, concept_code, name).
    """
    from leader.data.atc import normalize_drug_name

    found: dict[int, dict[str, set]] = {}
    for drug, relation, vocabulary, code, name in rows:
        entry = found.setdefault(drug, {"atc": set(), "ingredients": set(), "self": set()})
        if vocabulary == "ATC" and code and len(code) >= 4:
            entry["atc"].add(code[:4].upper())
        elif relation == "self":
            entry["self"].add(name or "")
        elif name:
            entry["ingredients"].add(name)
    labels, sources = {}, {}
    for drug, entry in found.items():
        if coding == "atc3" and entry["atc"]:
            labels[drug], sources[drug] = tuple(sorted(entry["atc"])), "vocabulary_atc"
            continue
        names, source = (
            (entry["ingredients"], "ingredient_name") if entry["ingredients"] else (entry["self"], "drug_name")
        )
        if coding == "atc3":
            result = {atc for name in names for atc in coder.atc3(name)}
        else:
            result = {label for name in names if (label := normalize_drug_name(name))}
        labels[drug], sources[drug] = tuple(sorted(result)), (source if result else "unmapped")
    return labels, sources


def _placement(rows: list[tuple]) -> dict[str, int]:
    """Placement rows (how, known concept, n) -> counts of events by placement and of unknown concepts."""
    counts = {"total": 0, "by_id": 0, "by_date": 0, "no_visit": 0, "no_concept": 0}
    for how, known, n in rows:
        counts["total"] += n
        counts[how] += n
        if not known:
            counts["no_concept"] += n
    return counts
