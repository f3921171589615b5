"""`leader distill` (registered on the shared app); the library code is `leader.student`.

    leader distill --data runs/data --teacher runs/teacher --out runs/student
    leader distill --data runs/data --teacher runs/teacher --out runs/student-bce --no-teacher
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Annotated

import typer

from leader.cli.app import app


@app.command()
def distill(
    data: Annotated[Path, typer.Option(help="Prepared dataset folder (from `leader data ...`).")],
    out: Annotated[Path, typer.Option(help="Output student folder.")],
    teacher: Annotated[Path | None, typer.Option(help="Teacher run folder (`leader teach`): split + feature cache.")] = None,
    no_teacher: Annotated[bool, typer.Option("--no-teacher", help="BCE alone (the ablation); --teacher only gives the split.")] = False,
    alpha: Annotated[float, typer.Option(help="Weight of feature KD: MSE(proj(mediator), teacher hidden).")] = 0.4,
    beta: Annotated[float, typer.Option(help="Weight of profile alignment: InfoNCE(profile, current medications).")] = 0.005,
    tau: Annotated[float, typer.Option(help="InfoNCE temperature.")] = 1.0,
    kd_standardize: Annotated[bool, typer.Option(help="Standardise teacher features per dimension (train mean/std).")] = True,
    epochs: Annotated[int, typer.Option(help="Most epochs.")] = 60,
    patience: Annotated[int, typer.Option(help="Early stopping: epochs without a better validation PR-AUC.")] = 8,
    batch_size: Annotated[int, typer.Option(help="Samples per step.")] = 64,
    lr: Annotated[float, typer.Option(help="Adam learning rate.")] = 1e-3,
    weight_decay: Annotated[float, typer.Option(help="Adam weight decay.")] = 0.0,
    seed: Annotated[int, typer.Option(help="Seed of initialisation, shuffling and dropout.")] = 0,
    split: Annotated[str | None, typer.Option(help="random | temporal | external (default: the teacher's).")] = None,
    split_seed: Annotated[int | None, typer.Option(help="Seed of a random split (default: the teacher's, else 0).")] = None,
    target: Annotated[str | None, typer.Option(help="all | last (default: the teacher's, else all).")] = None,
    external_data: Annotated[Path | None, typer.Option(help="With an external split: the dataset to test on.")] = None,
    per_med_threshold: Annotated[bool, typer.Option("--per-med-threshold", help="One threshold per medication.")] = False,
    dim: Annotated[int, typer.Option(help="Embedding width.")] = 64,
    hidden: Annotated[int, typer.Option(help="Mediator width (the head's hidden layer).")] = 128,
    heads: Annotated[int, typer.Option(help="Attention heads.")] = 4,
    dropout: Annotated[float, typer.Option(help="Dropout.")] = 0.1,
    max_visits: Annotated[int, typer.Option(help="Most recent visits kept per sample.")] = 8,
    max_codes: Annotated[int, typer.Option(help="Codes kept per visit and type.")] = 40,
    threads: Annotated[int, typer.Option(help="torch CPU threads (0 = default).")] = 0,
    resume: Annotated[bool, typer.Option("--resume", help="Continue an interrupted (or finished) run at --out.")] = False,
    overwrite: Annotated[bool, typer.Option("--overwrite", help="Replace an existing --out.")] = False,
    name: Annotated[str | None, typer.Option(help="Row label in result tables (default from the losses).")] = None,
    progress: Annotated[bool, typer.Option(help="Progress bars on stderr.")] = True,
) -> None:
    """Distil the teacher into the student: BCE + alpha * feature KD + beta * profile alignment."""
    from leader.io import read_json
    from leader.metrics import format_table
    from leader.student.config import DistillConfig
    from leader.student.distill import run

    cfg = DistillConfig(
        data=data, out=out, teacher=teacher, no_teacher=no_teacher, alpha=alpha, beta=beta, tau=tau,
        kd_standardize=kd_standardize, epochs=epochs, patience=patience, batch_size=batch_size, lr=lr,
        weight_decay=weight_decay, seed=seed, split=split, split_seed=split_seed, target=target,
        external_data=external_data, per_med_threshold=per_med_threshold, dim=dim, hidden=hidden, heads=heads,
        dropout=dropout, max_visits=max_visits, max_codes=max_codes, threads=threads, resume=resume,
        overwrite=overwrite, name=name, progress=progress,
    )  # fmt: skip
    folder = run(cfg)
    print(format_table({cfg.label: read_json(folder / "metrics.json")}, "test"), end="")
    print(f"wrote {folder}", file=sys.stderr)
