"""The typer application every command module registers on. Library code never imports this."""

from __future__ import annotations

import typer

app = typer.Typer(
    name="leader",
    help="Distil a LoRA-tuned LLM into a small medication recommender that runs on a CPU.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
data_app = typer.Typer(
    help="Prepare datasets: MIMIC-III, MIMIC-IV, eICU, OMOP, FHIR R4, a cohort JSONL, or a synthetic cohort.",
    no_args_is_help=True,
)
app.add_typer(data_app, name="data")
