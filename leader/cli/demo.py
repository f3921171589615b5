"""`leader report` and `leader demo`: the pictures and the whole pipeline in one command."""

from __future__ import annotations

from pathlib import Path

import typer

from leader.cli.app import app


@app.command()
def report(
    runs: list[Path] = typer.Argument(..., help="Run folders (baseline, teacher, student) to compare."),
    out: Path = typer.Option(Path("report.html"), help="HTML file to write (self-contained, images embedded)."),
    bench: Path = typer.Option(None, help="A `leader bench --out` JSON for the speed and size section."),
    data: Path = typer.Option(None, help="Prepared dataset for the count histogram (default: each run's own)."),
    split: str = typer.Option("test", help="Which split's metrics to show."),
    with_teacher: bool = typer.Option(
        False, help="Recompute the teacher's predictions for the count histogram (slow)."
    ),
):
    """One self-contained HTML report: curves, results table, model bars, counts, speed and size."""
    from leader.report import ReportConfig, run

    path = run(ReportConfig(list(runs), out, bench, data, split, with_teacher))
    print(f"wrote {path}")


@app.command()
def demo(
    out: Path = typer.Option(Path("runs/demo"), help="Folder for every stage's output; finished stages are skipped."),
    quick: bool = typer.Option(False, help="Tiny random teacher and 300 patients: the whole chain in a few minutes."),
    patients: int = typer.Option(None, help="Synthetic patients (default 2000; 300 with --quick)."),
    teacher_minutes: float = typer.Option(
        8.0, help="Training budget of the SmolLM2 teacher, in minutes (its feature pass comes on top)."
    ),
    seed: int = typer.Option(0, help="Seed of the cohort, the split and the models."),
    progress: bool = typer.Option(False, help="Also show each stage's own progress bars."),
):
    """The whole pipeline on a synthetic cohort: data, baselines, teacher, students, ONNX, bench, report."""
    from leader.demo import DemoConfig, run

    run(DemoConfig(out, quick, patients, teacher_minutes, seed, progress))
