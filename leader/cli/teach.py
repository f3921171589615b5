"""`leader teach`: train the teacher; `leader teach features`: cache its features for distillation.

    leader teach --data runs/data/synth --out runs/teacher [--max-minutes 20]
    leader teach features --teacher runs/teacher --data runs/data/synth

Options map one to one onto `leader.teacher.config.TeachConfig` and `FeaturesConfig` (their
default and help are the field's, `leader.cli.options`). torch and transformers are imported only
when a command runs.
"""

from __future__ import annotations

import os
from pathlib import Path

import typer

from leader.cli.app import app
from leader.cli.options import option
from leader.errors import LeaderError
from leader.teacher.config import FeaturesConfig, RefitConfig, TeachConfig

teach_app = typer.Typer(
    help="Train the teacher (a LoRA-tuned LLM with a medication head) or cache its features (`features`).",
)
app.add_typer(teach_app, name="teach")


def _opt(name: str, **kwargs):
    return option(TeachConfig, name, **kwargs)


@teach_app.callback(invoke_without_command=True)
def teach(
    ctx: typer.Context,
    data: Path | None = _opt("data", default=None),
    out: Path | None = _opt("out", default=None),
    base_model: str = _opt("base_model"),
    quantize: str | None = _opt("quantize"),
    precision: str = _opt("precision"),
    lora_r: int = _opt("lora_r"),
    lora_alpha: int = _opt("lora_alpha"),
    lora_dropout: float = _opt("lora_dropout"),
    target_modules: str = _opt("target_modules", default=",".join(TeachConfig.target_modules)),
    pooling: str = _opt("pooling"),
    max_tokens: int = _opt("max_tokens"),
    max_history: int = _opt("max_history"),
    notes: bool = _opt("notes"),
    prior: Path | None = _opt("prior"),
    split: str = _opt("split"),
    seed: int = _opt("seed"),
    target: str = _opt("target"),
    external_data: Path | None = _opt("external_data"),
    epochs: float = _opt("epochs"),
    max_steps: int | None = _opt("max_steps"),
    batch_size: int = _opt("batch_size"),
    grad_accum: int = _opt("grad_accum"),
    lr: float = _opt("lr"),
    head_lr: float = _opt("head_lr"),
    weight_decay: float = _opt("weight_decay"),
    warmup: float = _opt("warmup"),
    calibration_samples: int = _opt("calibration_samples"),
    eval_samples: int = _opt("eval_samples"),
    eval_every: int = _opt("eval_every"),
    patience: int = _opt("patience"),
    max_minutes: float | None = _opt("max_minutes"),
    eval_batch_size: int = _opt("eval_batch_size"),
    threads: int = _opt("threads"),
    checkpointing: bool = _opt("checkpointing"),
    compile: bool = _opt("compile"),
    cache_features: bool = _opt("cache_features"),
    refit_head: bool = _opt("refit_head"),
    resume: bool = _opt("resume"),
    progress: bool = _opt("progress"),
) -> None:
    """Train a teacher on a prepared dataset (writes adapter, head, teacher.json, metrics, run.json)."""
    options = dict(locals())  # besides ctx, every parameter is a TeachConfig field of the same name
    del options["ctx"]
    if ctx.invoked_subcommand is not None:
        return
    if data is None or out is None:
        raise LeaderError("leader teach needs --data DIR (a prepared dataset) and --out DIR (the new run folder)")
    options["target_modules"] = tuple(m.strip() for m in target_modules.split(",") if m.strip())
    cfg = TeachConfig(**options)
    from leader.teacher.train import run

    folder = run(cfg)
    if os.environ.get("RANK", "0") == "0":  # under a launcher, one table
        from leader.io import read_json
        from leader.metrics import format_table

        print(format_table({"teacher": read_json(folder / "metrics.json")}, "test"), end="")


@teach_app.command("features")
def features(
    teacher: Path = option(FeaturesConfig, "teacher"),
    data: Path = option(FeaturesConfig, "data"),
    batch_size: int = option(FeaturesConfig, "batch_size"),
    progress: bool = option(FeaturesConfig, "progress"),
    threads: int = option(FeaturesConfig, "threads"),
    compile: bool = option(FeaturesConfig, "compile"),
) -> None:
    """Compute (once) the teacher's pooled hidden states and logits of every sample of a dataset."""
    cfg = FeaturesConfig(**locals())  # every parameter is a FeaturesConfig field of the same name
    from leader.cohort import load_dataset
    from leader.teacher.features import ensure_features

    if cfg.threads:
        import torch

        torch.set_num_threads(cfg.threads)

    folder = ensure_features(
        cfg.teacher, load_dataset(cfg.data), batch_size=cfg.batch_size, progress=cfg.progress, compile=cfg.compile
    )
    print(folder)


@teach_app.command("refit")
def refit(
    teacher: Path = option(RefitConfig, "teacher"),
    data: Path | None = option(RefitConfig, "data"),
    batch_size: int = option(RefitConfig, "batch_size"),
    progress: bool = option(RefitConfig, "progress"),
    threads: int = option(RefitConfig, "threads"),
) -> None:
    """Refit a trained teacher's medication head on its cached states (what `leader teach` does
    when training ends): kept only if validation PR-AUC improves, then validation and test are scored again."""
    cfg = RefitConfig(**locals())  # every parameter is a RefitConfig field of the same name
    from leader.teacher.refit import refit_run

    if cfg.threads:
        import torch

        torch.set_num_threads(cfg.threads)
    refit_run(cfg.teacher, cfg.data, batch_size=cfg.batch_size, progress=cfg.progress)
