"""`leader baseline`, `leader evaluate`, `leader results` (registered on the shared app).

    leader baseline --data DIR --method logistic --out runs/base-logistic
    leader evaluate --baseline runs/base-logistic --data DIR --split test --out eval.json
    leader results runs/base-frequency runs/base-logistic --out RESULTS.md

Each option is a field of the command's config in `leader.config` (`BaselineConfig`,
`EvaluateConfig`, `ResultsConfig`): its default and help come from there (`leader.cli.options`).
Library code lives in leader.baseline / leader.evaluate / leader.metrics.
"""

from __future__ import annotations

import sys
from pathlib import Path

from leader.cli.app import app
from leader.cli.options import argument, option
from leader.config import BaselineConfig, EvaluateConfig, ResultsConfig
from leader.errors import LeaderError


@app.command()
def baseline(
    data: Path = option(BaselineConfig, "data"),
    out: Path = option(BaselineConfig, "out"),
    method: str = option(BaselineConfig, "method"),
    split: str = option(BaselineConfig, "split"),
    seed: int = option(BaselineConfig, "seed"),
    target: str = option(BaselineConfig, "target"),
    external_data: Path | None = option(BaselineConfig, "external_data"),
    history: str = option(BaselineConfig, "history"),
    notes: bool | None = option(BaselineConfig, "notes", "--notes/--no-notes"),
    per_med: bool = option(BaselineConfig, "per_med", "--per-med"),
    epochs: int = option(BaselineConfig, "epochs"),
    patience: int = option(BaselineConfig, "patience"),
    batch_size: int = option(BaselineConfig, "batch_size"),
    lr: float = option(BaselineConfig, "lr"),
    l2: float | None = option(BaselineConfig, "l2"),
    bootstrap: int = option(BaselineConfig, "bootstrap"),
    min_patients: int = option(BaselineConfig, "min_patients"),
    overwrite: bool = option(BaselineConfig, "overwrite", "--overwrite"),
) -> None:
    """Train a baseline (frequency or logistic regression); writes run.json, metrics.json, weights."""
    options = dict(locals())  # every parameter is a BaselineConfig field of the same name
    from leader.baseline import run
    from leader.io import read_json
    from leader.metrics import format_table

    cfg = BaselineConfig(**options)
    folder = run(cfg)
    name = read_json(folder / "run.json").get("name") or cfg.method
    print(format_table({name: read_json(folder / "metrics.json")}, "test"), end="")
    print(f"wrote {folder}", file=sys.stderr)


@app.command()
def evaluate(
    data: Path = option(EvaluateConfig, "data"),
    run: Path | None = option(EvaluateConfig, "run"),
    teacher: Path | None = option(EvaluateConfig, "teacher"),
    student: Path | None = option(EvaluateConfig, "student"),
    baseline: Path | None = option(EvaluateConfig, "baseline"),
    split: str = option(EvaluateConfig, "split"),
    out: Path | None = option(EvaluateConfig, "out"),
    bootstrap: int = option(EvaluateConfig, "bootstrap"),
) -> None:
    """Evaluate a run on a split with its own thresholds: overall / single-visit / multi-visit."""
    cfg = EvaluateConfig(**locals())  # every parameter is an EvaluateConfig field of the same name
    from leader.evaluate import evaluate_run
    from leader.metrics import format_table
    from leader.runinfo import read_run

    kind, folder = cfg.folder()
    read_run(folder, kind)  # checks the folder and its kind
    result = evaluate_run(folder, cfg.data, split=cfg.split, out=cfg.out, bootstrap=cfg.bootstrap)
    print(format_table({result["name"]: result["metrics"]}, cfg.split), end="")
    if cfg.out is not None:
        print(f"wrote {cfg.out}", file=sys.stderr)


@app.command()
def results(
    runs: list[Path] = argument(ResultsConfig, "runs"),
    split: str = option(ResultsConfig, "split"),
    out: Path | None = option(ResultsConfig, "out"),
) -> None:
    """One markdown table of several runs' stored metrics (bootstrap mean ± std), the strongest baseline first."""
    cfg = ResultsConfig(**locals())  # every parameter is a ResultsConfig field of the same name
    from leader.baseline import strongest_first
    from leader.io import read_json, write_text
    from leader.metrics import format_table
    from leader.runinfo import read_run

    rows: list[tuple[str, dict, dict]] = []
    for folder in cfg.runs:
        record = read_run(folder)
        if not (folder / "metrics.json").is_file():
            raise LeaderError(f"{folder} has no metrics.json: its run did not finish; train it again")
        metrics = read_json(folder / "metrics.json")
        if cfg.split not in metrics:
            raise LeaderError(f"{folder}/metrics.json has no '{cfg.split}' metrics; re-run that stage")
        name = str(record.get("name") or folder.name)
        if name in {row[0] for row in rows}:
            name = f"{name} ({folder.name})"
        rows.append((name, record, metrics))
    text = format_table({name: metrics for name, _, metrics in strongest_first(rows)}, cfg.split)
    print(text, end="")
    if cfg.out is not None:
        write_text(cfg.out, text)
        print(f"wrote {cfg.out}", file=sys.stderr)
