"""`leader data ...`: prepare datasets (MIMIC-III, MIMIC-IV, a cohort JSONL, a synthetic cohort) and describe them.

The loaders (polars) are imported inside the commands so `leader --help` stays instant.
"""

from __future__ import annotations

import json
from pathlib import Path

import typer

from leader.cli.app import data_app

_NDC = "GAMENet's ndc2RXCUI.txt (dict literal NDC -> RXCUI); alone, it keeps only rows with a known NDC (name coding)"
_ATC = "GAMENet's RXCUI2atc4.csv (RXCUI,YEAR,MONTH,NDC,ATC4); with --ndc-map, medications become ATC-3 classes"
_DDI = "CSV of interacting medication-label pairs with a header (e.g. ddi_atc3_pairs_safedrug.csv)"
_CODING = "atc3 (ATC-3 classes: from NDCs with --atc-map, else from drug names via the shipped map) or name"
_DRUG_ATC = "Drug name map (csv or csv.gz, columns drug,atc_code) replacing the shipped one (--coding atc3)"


def _done(path: Path) -> None:
    """One summary line from the manifest (cheap: the cohort is not read again)."""
    from leader.io import read_json

    manifest = read_json(path / "manifest.json", "manifest")
    counts = manifest["counts"]
    typer.echo(
        f"wrote {path}: {counts['patients']:,} patients, {counts['visits']:,} visits, "
        f"{counts['medications']} medication labels ({manifest.get('medication_coding', '')})"
    )


@data_app.command("mimic3")
def mimic3(
    root: Path = typer.Option(..., help="Folder with the MIMIC-III v1.4 CSVs (.csv or .csv.gz, any case)."),
    out: Path = typer.Option(..., help="Output folder for the prepared dataset."),
    ndc_map: Path | None = typer.Option(None, "--ndc-map", help=_NDC),
    atc_map: Path | None = typer.Option(None, "--atc-map", help=_ATC),
    coding: str = typer.Option("", help=_CODING + " (default: atc3 with --atc-map, else name)."),
    drug_atc: Path | None = typer.Option(None, "--drug-atc", help=_DRUG_ATC),
    ddi: Path | None = typer.Option(None, help=_DDI),
    top_meds: int = typer.Option(300, "--top-meds", help="Keep the N most frequent medication labels."),
    overwrite: bool = typer.Option(False, help="Replace --out if it exists."),
) -> None:
    """MIMIC-III -> prepared dataset (NOTEEVENTS discharge summaries are read when present)."""
    from leader.data import mimic3 as loader
    from leader.data.common import MimicConfig

    cfg = MimicConfig(
        root=root,
        out=out,
        ndc_map=ndc_map,
        atc_map=atc_map,
        coding=coding,
        drug_atc=drug_atc,
        ddi=ddi,
        top_meds=top_meds,
        overwrite=overwrite,
    )
    _done(loader.run(cfg))


@data_app.command("mimic4")
def mimic4(
    root: Path = typer.Option(..., help="MIMIC-IV v2.x folder holding hosp/ (.csv.gz or .csv)."),
    out: Path = typer.Option(..., help="Output folder for the prepared dataset."),
    notes: Path | None = typer.Option(None, help="MIMIC-IV-Note folder holding note/discharge.csv.gz."),
    ndc_map: Path | None = typer.Option(None, "--ndc-map", help=_NDC),
    atc_map: Path | None = typer.Option(None, "--atc-map", help=_ATC),
    coding: str = typer.Option("", help=_CODING + " (default: atc3 with --atc-map, else name)."),
    drug_atc: Path | None = typer.Option(None, "--drug-atc", help=_DRUG_ATC),
    ddi: Path | None = typer.Option(None, help=_DDI),
    top_meds: int = typer.Option(300, "--top-meds", help="Keep the N most frequent medication labels."),
    overwrite: bool = typer.Option(False, help="Replace --out if it exists."),
) -> None:
    """MIMIC-IV -> prepared dataset (ICD-9 and ICD-10 kept apart; anchor_year_group kept)."""
    from leader.data import mimic4 as loader
    from leader.data.common import MimicConfig

    cfg = MimicConfig(
        root=root,
        out=out,
        ndc_map=ndc_map,
        atc_map=atc_map,
        coding=coding,
        drug_atc=drug_atc,
        ddi=ddi,
        top_meds=top_meds,
        notes=notes,
        overwrite=overwrite,
    )
    _done(loader.run(cfg))


@data_app.command("eicu")
def eicu(
    root: Path = typer.Option(..., help="Folder with the eICU-CRD tables (patient.csv.gz, ...; the demo works)."),
    out: Path = typer.Option(..., help="Output folder for the prepared dataset."),
    coding: str = typer.Option("atc3", help="atc3 (drug names -> ATC-3 classes) or name (normalised names)."),
    drug_atc: Path | None = typer.Option(
        None, "--drug-atc", help="Name map csv (drug,atc_code) instead of the shipped one."
    ),
    ddi: Path | None = typer.Option(None, help=_DDI),
    top_meds: int = typer.Option(300, "--top-meds", help="Keep the N most frequent medication labels."),
    overwrite: bool = typer.Option(False, help="Replace --out if it exists."),
) -> None:
    """eICU-CRD -> prepared dataset (hospital stays as visits, the hospital kept for --split site)."""
    from leader.data.eicu import EicuConfig, run

    cfg = EicuConfig(
        root=root, out=out, coding=coding, drug_atc=drug_atc, ddi=ddi, top_meds=top_meds, overwrite=overwrite
    )
    _done(run(cfg))


@data_app.command("omop")
def omop(
    db: str = typer.Option(..., help="DuckDB file (path or duckdb:///path) or SQLAlchemy URL (postgresql://...)."),
    out: Path = typer.Option(..., help="Output folder for the prepared dataset."),
    schema: str | None = typer.Option(None, help="Schema of the CDM tables (default: the current schema)."),
    coding: str = typer.Option("atc3", help="atc3 (vocabulary ATC, else ingredient names -> ATC-3) or name."),
    drug_atc: Path | None = typer.Option(
        None, "--drug-atc", help="Name map csv (drug,atc_code) instead of the shipped one."
    ),
    ddi: Path | None = typer.Option(None, help=_DDI),
    top_meds: int = typer.Option(300, "--top-meds", help="Keep the N most frequent medication labels."),
    dangling_visits: str = typer.Option(
        "drop", "--dangling-visits", help="Visit ids events carry but visit_occurrence lacks: drop or keep as visits."
    ),
    overwrite: bool = typer.Option(False, help="Replace --out if it exists."),
) -> None:
    """OMOP CDM v5.3/v5.4 database -> prepared dataset (queries run in the database)."""
    from leader.data.omop import OmopConfig, run

    cfg = OmopConfig(
        db=db,
        out=out,
        schema=schema,
        coding=coding,
        drug_atc=drug_atc,
        ddi=ddi,
        top_meds=top_meds,
        dangling_visits=dangling_visits,
        overwrite=overwrite,
    )
    _done(run(cfg))


@data_app.command("fhir")
def fhir(
    input: Path = typer.Option(
        ..., "--input", help="FHIR R4: Bulk Data export folder (Type.ndjson[.gz]), an NDJSON file, a Bundle or Bundles."
    ),
    out: Path = typer.Option(..., help="Output folder for the prepared dataset."),
    coding: str = typer.Option("atc3", help="atc3 (RxNorm drug name -> ATC-3 classes) or name (generic name)."),
    drug_atc: Path | None = typer.Option(
        None, "--drug-atc", help="Name map csv (drug,atc_code) instead of the shipped one."
    ),
    visits: str = typer.Option(
        "encounters-with-medication", help="encounters-with-medication (any encounter with an order) or inpatient."
    ),
    active_conditions: bool = typer.Option(
        True, "--active-conditions/--no-active-conditions", help="Add conditions active at the encounter's start."
    ),
    top_meds: int = typer.Option(300, "--top-meds", help="Keep the N most frequent medication labels."),
    min_patients: int = typer.Option(  # 5 = leader.encoding.MIN_PATIENTS (not imported: --help stays instant)
        5, "--min-patients", help="Keep labels that at least this many distinct patients received."
    ),
    ddi: Path | None = typer.Option(None, help=_DDI),
    overwrite: bool = typer.Option(False, help="Replace --out if it exists."),
) -> None:
    """FHIR R4 (Bulk Data NDJSON or Bundles) -> prepared dataset; SNOMED/ICD codes kept with their system."""
    from leader.data.fhir import FhirConfig, run

    cfg = FhirConfig(
        input=input,
        out=out,
        coding=coding,
        drug_atc=drug_atc,
        visits=visits,
        active_conditions=active_conditions,
        top_meds=top_meds,
        min_patients=min_patients,
        ddi=ddi,
        overwrite=overwrite,
    )
    _done(run(cfg))


@data_app.command("jsonl")
def jsonl(
    input: Path = typer.Option(..., "--input", help="Cohort JSONL export (.jsonl or .jsonl.gz), one patient per line."),
    out: Path = typer.Option(..., help="Output folder for the prepared dataset."),
    vocab: Path | None = typer.Option(
        None, help='JSON with optional "titles" {code: title} and "medications" [labels].'
    ),
    ddi: Path | None = typer.Option(None, help=_DDI),
    top_meds: int = typer.Option(300, "--top-meds", help="Keep the N most frequent medication labels."),
    min_patients: int = typer.Option(  # 5 = leader.encoding.MIN_PATIENTS (not imported: --help stays instant)
        5, "--min-patients", help="Keep labels that at least this many distinct patients received."
    ),
    overwrite: bool = typer.Option(False, help="Replace --out if it exists."),
) -> None:
    """A hospital's export in the cohort format -> validated prepared dataset."""
    from leader.data.jsonl import JsonlConfig, run

    cfg = JsonlConfig(
        input=input, out=out, vocab=vocab, ddi=ddi, top_meds=top_meds, min_patients=min_patients, overwrite=overwrite
    )
    _done(run(cfg))


@data_app.command("synth")
def synth(
    patients: int = typer.Option(2000, help="Number of synthetic patients."),
    out: Path = typer.Option(..., help="Output folder for the prepared dataset."),
    seed: int = typer.Option(0, help="Random seed (same seed, same cohort)."),
    format: str = typer.Option("mimic3", "--format", help="Raw layout to write and load: mimic3 or mimic4."),
    raw: Path | None = typer.Option(
        None, help="Keep the raw MIMIC tables and maps here (default: a temporary folder)."
    ),
    overwrite: bool = typer.Option(False, help="Replace --out if it exists."),
) -> None:
    """A synthetic cohort in the MIMIC layout, prepared through the same loader as real data."""
    from leader.data.synth import synthesize

    _done(synthesize(out, patients, seed=seed, fmt=format, raw=raw, overwrite=overwrite))


@data_app.command("stats")
def stats(
    data: Path = typer.Argument(..., help="A prepared dataset folder."),
    as_json: bool = typer.Option(False, "--json", help="Print JSON instead of a table."),
) -> None:
    """Patients, visits, single-visit share, codes and medications per visit, mapping coverage."""
    from leader.data.stats import dataset_stats, format_stats

    result = dataset_stats(data)
    typer.echo(json.dumps(result, indent=2) if as_json else format_stats(result))
