"""`leader data ...`: prepare datasets (MIMIC-III, MIMIC-IV, eICU, OMOP, FHIR, a cohort JSONL, a
synthetic cohort) and describe them.

Each option is a field of the command's config in `leader.data.config`: its default and help come
from there (`leader.cli.options`). The loaders (polars) are imported inside the commands so
`leader --help` stays instant.
"""

from __future__ import annotations

import json
from pathlib import Path

import typer

from leader.cli.app import data_app
from leader.cli.options import argument, option
from leader.data.config import (
    EicuConfig,
    FhirConfig,
    JsonlConfig,
    MimicConfig,
    OmopConfig,
    StatsConfig,
    SynthConfig,
)


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
    root: Path = option(MimicConfig, "root"),
    out: Path = option(MimicConfig, "out"),
    ndc_map: Path | None = option(MimicConfig, "ndc_map"),
    atc_map: Path | None = option(MimicConfig, "atc_map"),
    coding: str = option(MimicConfig, "coding"),
    drug_atc: Path | None = option(MimicConfig, "drug_atc"),
    ddi: Path | None = option(MimicConfig, "ddi"),
    top_meds: int = option(MimicConfig, "top_meds"),
    overwrite: bool = option(MimicConfig, "overwrite"),
) -> None:
    """MIMIC-III -> prepared dataset (NOTEEVENTS discharge summaries are read when present)."""
    cfg = MimicConfig(**locals())  # every parameter is a MimicConfig field of the same name
    from leader.data import mimic3 as loader

    _done(loader.run(cfg))


@data_app.command("mimic4")
def mimic4(
    root: Path = option(MimicConfig, "root"),
    out: Path = option(MimicConfig, "out"),
    notes: Path | None = option(MimicConfig, "notes"),
    ndc_map: Path | None = option(MimicConfig, "ndc_map"),
    atc_map: Path | None = option(MimicConfig, "atc_map"),
    coding: str = option(MimicConfig, "coding"),
    drug_atc: Path | None = option(MimicConfig, "drug_atc"),
    ddi: Path | None = option(MimicConfig, "ddi"),
    top_meds: int = option(MimicConfig, "top_meds"),
    overwrite: bool = option(MimicConfig, "overwrite"),
) -> None:
    """MIMIC-IV -> prepared dataset (ICD-9 and ICD-10 kept apart; anchor_year_group kept)."""
    cfg = MimicConfig(**locals())  # every parameter is a MimicConfig field of the same name
    from leader.data import mimic4 as loader

    _done(loader.run(cfg))


@data_app.command("eicu")
def eicu(
    root: Path = option(EicuConfig, "root"),
    out: Path = option(EicuConfig, "out"),
    coding: str = option(EicuConfig, "coding"),
    drug_atc: Path | None = option(EicuConfig, "drug_atc"),
    ddi: Path | None = option(EicuConfig, "ddi"),
    top_meds: int = option(EicuConfig, "top_meds"),
    overwrite: bool = option(EicuConfig, "overwrite"),
) -> None:
    """eICU-CRD -> prepared dataset (hospital stays as visits, the hospital kept for --split site)."""
    cfg = EicuConfig(**locals())  # every parameter is an EicuConfig field of the same name
    from leader.data.eicu import run

    _done(run(cfg))


@data_app.command("omop")
def omop(
    db: str = option(OmopConfig, "db"),
    out: Path = option(OmopConfig, "out"),
    schema: str | None = option(OmopConfig, "schema"),
    coding: str = option(OmopConfig, "coding"),
    drug_atc: Path | None = option(OmopConfig, "drug_atc"),
    ddi: Path | None = option(OmopConfig, "ddi"),
    top_meds: int = option(OmopConfig, "top_meds"),
    dangling_visits: str = option(OmopConfig, "dangling_visits"),
    overwrite: bool = option(OmopConfig, "overwrite"),
) -> None:
    """OMOP CDM v5.3/v5.4 database -> prepared dataset (queries run in the database)."""
    cfg = OmopConfig(**locals())  # every parameter is an OmopConfig field of the same name
    from leader.data.omop import run

    _done(run(cfg))


@data_app.command("fhir")
def fhir(
    input: Path = option(FhirConfig, "input"),
    out: Path = option(FhirConfig, "out"),
    coding: str = option(FhirConfig, "coding"),
    drug_atc: Path | None = option(FhirConfig, "drug_atc"),
    visits: str = option(FhirConfig, "visits"),
    active_conditions: bool = option(FhirConfig, "active_conditions"),
    top_meds: int = option(FhirConfig, "top_meds"),
    min_patients: int = option(FhirConfig, "min_patients"),
    ddi: Path | None = option(FhirConfig, "ddi"),
    overwrite: bool = option(FhirConfig, "overwrite"),
    workers: int | None = option(FhirConfig, "workers"),
) -> None:
    """FHIR R4 (Bulk Data NDJSON or Bundles) -> prepared dataset; SNOMED/ICD codes kept with their system."""
    cfg = FhirConfig(**locals())  # every parameter is a FhirConfig field of the same name
    from leader.data.fhir import run

    _done(run(cfg))


@data_app.command("jsonl")
def jsonl(
    input: Path = option(JsonlConfig, "input"),
    out: Path = option(JsonlConfig, "out"),
    vocab: Path | None = option(JsonlConfig, "vocab"),
    ddi: Path | None = option(JsonlConfig, "ddi"),
    top_meds: int = option(JsonlConfig, "top_meds"),
    min_patients: int = option(JsonlConfig, "min_patients"),
    overwrite: bool = option(JsonlConfig, "overwrite"),
) -> None:
    """A hospital's export in the cohort format -> validated prepared dataset."""
    cfg = JsonlConfig(**locals())  # every parameter is a JsonlConfig field of the same name
    from leader.data.jsonl import run

    _done(run(cfg))


@data_app.command("synth")
def synth(
    patients: int = option(SynthConfig, "patients"),
    out: Path = option(SynthConfig, "out"),
    seed: int = option(SynthConfig, "seed"),
    format: str = option(SynthConfig, "format"),
    raw: Path | None = option(SynthConfig, "raw"),
    overwrite: bool = option(SynthConfig, "overwrite"),
) -> None:
    """A synthetic cohort in the MIMIC layout, prepared through the same loader as real data."""
    cfg = SynthConfig(**locals())  # every parameter is a SynthConfig field of the same name
    from leader.data.synth import synthesize

    _done(synthesize(cfg.out, cfg.patients, seed=cfg.seed, fmt=cfg.format, raw=cfg.raw, overwrite=cfg.overwrite))


@data_app.command("stats")
def stats(
    data: Path = argument(StatsConfig, "data"),
    as_json: bool = option(StatsConfig, "as_json", "--json"),
) -> None:
    """Patients, visits, single-visit share, codes and medications per visit, mapping coverage."""
    cfg = StatsConfig(**locals())  # every parameter is a StatsConfig field of the same name
    from leader.data.stats import dataset_stats, format_stats

    result = dataset_stats(cfg.data)
    typer.echo(json.dumps(result, indent=2) if cfg.as_json else format_stats(result))
