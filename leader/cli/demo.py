"""`leader report` and `leader demo`: the pictures and the whole pipeline in one command.

Each option is a field of the command's config (`leader.config.ReportConfig`, `DemoConfig`): its
default and help come from there (`leader.cli.options`).
"""

from __future__ import annotations

from pathlib import Path

from leader.cli.app import app
from leader.cli.options import argument, option
from leader.config import DemoConfig, ReportConfig


@app.command()
def report(
    runs: list[Path] = argument(ReportConfig, "runs"),
    out: Path = option(ReportConfig, "out"),
    bench: Path | None = option(ReportConfig, "bench"),
    data: Path | None = option(ReportConfig, "data"),
    split: str = option(ReportConfig, "split"),
    with_teacher: bool = option(ReportConfig, "with_teacher"),
    title: str = option(ReportConfig, "title"),
):
    """One self-contained HTML report: curves, results table, model bars, counts, speed and size."""
    options = dict(locals())  # every parameter is a ReportConfig field of the same name
    from leader.report import run

    path = run(ReportConfig(**options))
    print(f"wrote {path}")


@app.command()
def demo(
    out: Path = option(DemoConfig, "out"),
    quick: bool = option(DemoConfig, "quick"),
    patients: int | None = option(DemoConfig, "patients"),
    teacher_minutes: float = option(DemoConfig, "teacher_minutes"),
    seed: int = option(DemoConfig, "seed"),
    progress: bool = option(DemoConfig, "progress"),
):
    """The whole pipeline on a synthetic cohort: data, baselines, teacher, students, ONNX, bench, report."""
    options = dict(locals())  # every parameter is a DemoConfig field of the same name
    from leader.demo import run

    run(DemoConfig(**options))
