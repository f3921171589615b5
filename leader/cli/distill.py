"""`leader distill` (registered on the shared app); the library code is `leader.student`.

leader distill --data runs/data --teacher runs/teacher --out runs/student
leader distill --data runs/data --teacher runs/teacher --out runs/student-bce --no-teacher
leader distill --data runs/data --teacher runs/teacher --prior runs/logistic --out runs/student-prior
"""

from __future__ import annotations

import sys
from pathlib import Path

from leader.cli.app import app
from leader.cli.options import option
from leader.student.config import DistillConfig


@app.command()
def distill(
    data: Path = option(DistillConfig, "data"),
    out: Path = option(DistillConfig, "out"),
    teacher: Path | None = option(DistillConfig, "teacher"),
    prior: Path | None = option(DistillConfig, "prior"),
    no_teacher: bool = option(DistillConfig, "no_teacher", "--no-teacher"),
    alpha: float = option(DistillConfig, "alpha"),
    beta: float = option(DistillConfig, "beta"),
    tau: float = option(DistillConfig, "tau"),
    gamma: float = option(DistillConfig, "gamma"),
    kd_layer: str = option(DistillConfig, "kd_layer"),
    kd_proj: str = option(DistillConfig, "kd_proj"),
    kd_standardize: bool = option(DistillConfig, "kd_standardize"),
    epochs: int = option(DistillConfig, "epochs"),
    patience: int = option(DistillConfig, "patience"),
    batch_size: int = option(DistillConfig, "batch_size"),
    lr: float = option(DistillConfig, "lr"),
    weight_decay: float = option(DistillConfig, "weight_decay"),
    seed: int = option(DistillConfig, "seed"),
    split: str | None = option(DistillConfig, "split"),
    split_seed: int | None = option(DistillConfig, "split_seed"),
    target: str | None = option(DistillConfig, "target"),
    external_data: Path | None = option(DistillConfig, "external_data"),
    per_med_threshold: bool = option(DistillConfig, "per_med_threshold", "--per-med-threshold"),
    dim: int = option(DistillConfig, "dim"),
    hidden: int = option(DistillConfig, "hidden"),
    heads: int = option(DistillConfig, "heads"),
    dropout: float = option(DistillConfig, "dropout"),
    max_visits: int = option(DistillConfig, "max_visits"),
    max_codes: int = option(DistillConfig, "max_codes"),
    notes: bool | None = option(DistillConfig, "notes", "--notes/--no-notes"),
    max_note_tokens: int = option(DistillConfig, "max_note_tokens"),
    min_patients: int = option(DistillConfig, "min_patients"),
    threads: int = option(DistillConfig, "threads"),
    resume: bool = option(DistillConfig, "resume", "--resume"),
    overwrite: bool = option(DistillConfig, "overwrite", "--overwrite"),
    name: str | None = option(DistillConfig, "name"),
    progress: bool = option(DistillConfig, "progress"),
) -> None:
    """Distil the teacher into the student: BCE + alpha * feature KD + beta * profile alignment (+ gamma * logit KD)."""
    options = dict(locals())  # every parameter is a DistillConfig field of the same name
    from leader.io import read_json
    from leader.metrics import format_table
    from leader.student.distill import run

    cfg = DistillConfig(**options)
    folder = run(cfg)
    print(format_table({cfg.label: read_json(folder / "metrics.json")}, "test"), end="")
    print(f"wrote {folder}", file=sys.stderr)
