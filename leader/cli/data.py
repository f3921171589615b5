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
    ddi: Path | None = typer.Option(None, help=_DDI),
    top_meds: int = typer.Option(300, "--top-meds", help="Keep the N most frequent medication labels."),
    overwrite: bool = typer.Option(False, help="Replace --out if it exists."),
) -> None:
    """MIMIC-III -> prepared dataset (NOTEEVENTS discharge summaries are read when present)."""
    from leader.data import mimic3 as loader
    from leader.data.common import MimicConfig

    cfg = MimicConfig(
        root=root, out=out, ndc_map=ndc_map, atc_map=atc_map, ddi=ddi, top_meds=top_meds, overwrite=overwrite
    )
    _done(loader.run(cfg))


@data_app.command("mimic4")
def mimic4(
    root: Path = typer.Option(..., help="MIMIC-IV v2.x folder holding hosp/ (.csv.gz or .csv)."),
    out: Path = typer.Option(..., help="Output folder for the prepared dataset."),
    notes: Path | None = typer.Option(None, help="MIMIC-IV-Note folder holding note/discharge.csv.gz."),
    ndc_map: Path | None = typer.Option(None, "--ndc-map", help=_NDC),
    atc_map: Path | None = typer.Option(None, "--atc-map", help=_ATC),
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
        ddi=ddi,
        top_meds=top_meds,
        notes=notes,
        overwrite=overwrite,
    )
    _done(loader.run(cfg))


@data_app.command("jsonl")
def jsonl(
    input: Path = typer.Option(..., "--input", help="Cohort JSONL export (.jsonl or .jsonl.gz), one patient per line."),
    out: Path = typer.Option(..., help="Output folder for the prepared dataset."),
    vocab: Path | None = typer.Option(
        None, help='JSON with optional "titles" {code: title} and "medications" [labels].'
    ),
    ddi: Path | None = typer.Option(None, help=_DDI),
    top_meds: int = typer.Option(300, "--top-meds", help="Keep the N most frequent medication labels."),
    overwrite: bool = typer.Option(False, help="Replace --out if it exists."),
) -> None:
    """A hospital's export in the cohort format -> validated prepared dataset."""
    from leader.data.jsonl import JsonlConfig, run

    _done(run(JsonlConfig(input=input, out=out, vocab=vocab, ddi=ddi, top_meds=top_meds, overwrite=overwrite)))


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
