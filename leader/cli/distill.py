"""`leader distill` (registered on the shared app); the library code is `leader.student`.

leader distill --data runs/data --teacher runs/teacher --out runs/student
leader distill --data runs/data --teacher runs/teacher --out runs/student-bce --no-teacher
"""

from __future__ import annotations

import sys
from dataclasses import fields
from pathlib import Path
from typing import Annotated

import typer

from leader.cli.app import app
from leader.student.config import DistillConfig

_D = {f.name: f.default for f in fields(DistillConfig)}  # one source of defaults: the dataclass


@app.command()
def distill(
    data: Annotated[Path, typer.Option(help="Prepared dataset folder (from `leader data ...`).")],
    out: Annotated[Path, typer.Option(help="Output student folder.")],
    teacher: Annotated[
        Path | None, typer.Option(help="Teacher run folder (`leader teach`): split + feature cache.")
    ] = _D["teacher"],
    no_teacher: Annotated[
        bool, typer.Option("--no-teacher", help="BCE alone (the ablation); --teacher only gives the split.")
    ] = _D["no_teacher"],
    alpha: Annotated[float, typer.Option(help="Weight of feature KD: MSE(proj(mediator), teacher hidden).")] = _D[
        "alpha"
    ],
    beta: Annotated[
        float, typer.Option(help="Weight of profile alignment: InfoNCE(profile, current medications).")
    ] = _D["beta"],
    tau: Annotated[float, typer.Option(help="InfoNCE temperature.")] = _D["tau"],
    kd_layer: Annotated[str, typer.Option(help="Student layer KD reads: mediator (LEADER) or patient.")] = _D[
        "kd_layer"
    ],
    kd_proj: Annotated[str, typer.Option(help="KD projection: linear (LEADER) or mlp.")] = _D["kd_proj"],
    kd_standardize: Annotated[
        bool, typer.Option(help="Standardise teacher features per dimension (train mean/std).")
    ] = _D["kd_standardize"],
    epochs: Annotated[int, typer.Option(help="Most epochs.")] = _D["epochs"],
    patience: Annotated[int, typer.Option(help="Early stopping: epochs without a better validation PR-AUC.")] = _D[
        "patience"
    ],
    batch_size: Annotated[int, typer.Option(help="Samples per step.")] = _D["batch_size"],
    lr: Annotated[float, typer.Option(help="Adam learning rate.")] = _D["lr"],
    weight_decay: Annotated[float, typer.Option(help="Adam weight decay.")] = _D["weight_decay"],
    seed: Annotated[int, typer.Option(help="Seed of initialisation, shuffling and dropout.")] = _D["seed"],
    split: Annotated[
        str | None, typer.Option(help="random | temporal | site | external (default: the teacher's).")
    ] = _D["split"],
    split_seed: Annotated[
        int | None, typer.Option(help="Seed of a random split (default: the teacher's, else 0).")
    ] = _D["split_seed"],
    target: Annotated[str | None, typer.Option(help="all | last (default: the teacher's, else all).")] = _D["target"],
    external_data: Annotated[Path | None, typer.Option(help="With an external split: the dataset to test on.")] = _D[
        "external_data"
    ],
    per_med_threshold: Annotated[bool, typer.Option("--per-med-threshold", help="One threshold per medication.")] = _D[
        "per_med_threshold"
    ],
    dim: Annotated[int, typer.Option(help="Embedding width.")] = _D["dim"],
    hidden: Annotated[int, typer.Option(help="Mediator width (the head's hidden layer).")] = _D["hidden"],
    heads: Annotated[int, typer.Option(help="Attention heads.")] = _D["heads"],
    dropout: Annotated[float, typer.Option(help="Dropout.")] = _D["dropout"],
    max_visits: Annotated[int, typer.Option(help="Most recent visits kept per sample.")] = _D["max_visits"],
    max_codes: Annotated[int, typer.Option(help="Codes kept per visit and type.")] = _D["max_codes"],
    min_patients: Annotated[
        int, typer.Option(help="A code or profile value enters the vocabularies only if this many patients carry it.")
    ] = _D["min_patients"],
    threads: Annotated[
        int, typer.Option(help="torch CPU threads (0 = torch's default; 1 is fastest for this small model).")
    ] = _D["threads"],
    resume: Annotated[bool, typer.Option("--resume", help="Continue an interrupted (or finished) run at --out.")] = _D[
        "resume"
    ],
    overwrite: Annotated[bool, typer.Option("--overwrite", help="Replace an existing --out.")] = _D["overwrite"],
    name: Annotated[str | None, typer.Option(help="Row label in result tables (default from the losses).")] = _D[
        "name"
    ],
    progress: Annotated[bool, typer.Option(help="Progress bars on stderr.")] = _D["progress"],
) -> None:
    """Distil the teacher into the student: BCE + alpha * feature KD + beta * profile alignment."""
    options = dict(locals())  # every parameter is a DistillConfig field of the same name
    from leader.io import read_json
    from leader.metrics import format_table
    from leader.student.distill import run

    cfg = DistillConfig(**options)
    folder = run(cfg)
    print(format_table({cfg.label: read_json(folder / "metrics.json")}, "test"), end="")
    print(f"wrote {folder}", file=sys.stderr)
