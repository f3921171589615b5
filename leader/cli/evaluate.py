"""`leader baseline`, `leader evaluate`, `leader results` (registered on the shared app).

    leader baseline --data DIR --method logistic --out runs/base-logistic
    leader evaluate --baseline runs/base-logistic --data DIR --split test --out eval.json
    leader results runs/base-frequency runs/base-logistic --out RESULTS.md

Library code lives in leader.baseline / leader.evaluate / leader.metrics; this module only turns
options into their calls.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Annotated

import typer

from leader.cli.app import app
from leader.encoding import MIN_PATIENTS
from leader.errors import LeaderError


@app.command()
def baseline(
    data: Annotated[Path, typer.Option(help="Prepared dataset folder (from `leader data ...`).")],
    out: Annotated[Path, typer.Option(help="Output run folder.")],
    method: Annotated[str, typer.Option(help="frequency (top-K training medications) or logistic.")] = "logistic",
    split: Annotated[str, typer.Option(help="random (by patient 8:1:1), temporal, site or external.")] = "random",
    seed: Annotated[int, typer.Option(help="Seed of the split and of training.")] = 0,
    target: Annotated[
        str, typer.Option(help="all (one sample per visit) or last (each patient's last visit).")
    ] = "all",
    external_data: Annotated[Path | None, typer.Option(help="With --split external: the dataset to test on.")] = None,
    history: Annotated[
        str,
        typer.Option(
            help="logistic: all (every earlier visit's diagnoses and medications), previous (visit) or auto "
            "(both fitted, the lower validation loss kept)."
        ),
    ] = "auto",
    notes: Annotated[
        bool | None,
        typer.Option(
            "--notes/--no-notes", help="logistic: words of the note sections (default: on when the data has notes)."
        ),
    ] = None,
    per_med: Annotated[bool, typer.Option("--per-med", help="logistic: one threshold per medication.")] = False,
    epochs: Annotated[int, typer.Option(help="logistic: most epochs (early stopping on validation loss).")] = 100,
    patience: Annotated[
        int, typer.Option(help="logistic: stop after this many epochs without a better validation loss.")
    ] = 5,
    batch_size: Annotated[
        int, typer.Option(help="logistic: samples per Adam step (at most 1/8 of the training split).")
    ] = 512,
    lr: Annotated[float, typer.Option(help="logistic: Adam learning rate.")] = 0.05,
    l2: Annotated[
        float | None, typer.Option(help="logistic: L2 weight (default: the lowest validation loss of a grid).")
    ] = None,
    bootstrap: Annotated[int, typer.Option(help="Bootstrap rounds (80% each) for mean ± std.")] = 10,
    min_patients: Annotated[
        int, typer.Option(help="logistic: a code or profile value is a feature only if this many patients carry it.")
    ] = MIN_PATIENTS,
    overwrite: Annotated[bool, typer.Option("--overwrite", help="Replace an existing --out folder.")] = False,
) -> None:
    """Train a baseline (frequency or logistic regression); writes run.json, metrics.json, weights."""
    from leader.baseline import BaselineConfig, run
    from leader.io import read_json
    from leader.metrics import format_table

    cfg = BaselineConfig(
        data=data, out=out, method=method, split=split, seed=seed, target=target, external_data=external_data,
        history=history, notes=notes, per_med=per_med, epochs=epochs, patience=patience, lr=lr, l2=l2,
        batch_size=batch_size, bootstrap=bootstrap, min_patients=min_patients, overwrite=overwrite,
    )  # fmt: skip
    folder = run(cfg)
    name = read_json(folder / "run.json").get("name") or method
    print(format_table({name: read_json(folder / "metrics.json")}, "test"), end="")
    print(f"wrote {folder}", file=sys.stderr)


@app.command()
def evaluate(
    data: Annotated[Path, typer.Option(help="Prepared dataset folder to evaluate on.")],
    run: Annotated[Path | None, typer.Option(help="Any run folder (kind read from its run.json).")] = None,
    teacher: Annotated[Path | None, typer.Option(help="A teacher run folder.")] = None,
    student: Annotated[Path | None, typer.Option(help="A student run folder.")] = None,
    baseline: Annotated[Path | None, typer.Option(help="A baseline run folder.")] = None,
    split: Annotated[str, typer.Option(help="train, val or test.")] = "test",
    out: Annotated[Path | None, typer.Option(help="Write the metrics here as JSON.")] = None,
    bootstrap: Annotated[int, typer.Option(help="Bootstrap rounds (80% each) for mean ± std.")] = 10,
) -> None:
    """Evaluate a run on a split with its own thresholds: overall / single-visit / multi-visit."""
    from leader.evaluate import evaluate_run
    from leader.metrics import format_table
    from leader.runinfo import read_run

    given = {k: v for k, v in (("run", run), ("teacher", teacher), ("student", student), ("baseline", baseline)) if v}
    if len(given) != 1:
        raise LeaderError("give exactly one of --run, --teacher, --student, --baseline")
    [(kind, folder)] = given.items()
    read_run(folder, None if kind == "run" else kind)  # checks the folder and its kind
    result = evaluate_run(folder, data, split=split, out=out, bootstrap=bootstrap)
    print(format_table({result["name"]: result["metrics"]}, split), end="")
    if out is not None:
        print(f"wrote {out}", file=sys.stderr)


@app.command()
def results(
    runs: Annotated[list[Path], typer.Argument(help="Run folders, one table row each (from their metrics.json).")],
    split: Annotated[str, typer.Option(help="val or test.")] = "test",
    out: Annotated[Path | None, typer.Option(help="Write the markdown table here.")] = None,
) -> None:
    """One markdown table of several runs' stored metrics (bootstrap mean ± std), the strongest baseline first."""
    from leader.baseline import strongest_first
    from leader.io import read_json, write_text
    from leader.metrics import format_table
    from leader.runinfo import read_run

    if split not in ("val", "test"):
        raise LeaderError(f"--split must be val or test, got '{split}'")
    rows: list[tuple[str, dict, dict]] = []
    for folder in runs:
        record = read_run(folder)
        if not (folder / "metrics.json").is_file():
            raise LeaderError(f"{folder} has no metrics.json: its run did not finish; train it again")
        metrics = read_json(folder / "metrics.json")
        if split not in metrics:
            raise LeaderError(f"{folder}/metrics.json has no '{split}' metrics; re-run that stage")
        name = str(record.get("name") or folder.name)
        if name in {row[0] for row in rows}:
            name = f"{name} ({folder.name})"
        rows.append((name, record, metrics))
    text = format_table({name: metrics for name, _, metrics in strongest_first(rows)}, split)
    print(text, end="")
    if out is not None:
        write_text(out, text)
        print(f"wrote {out}", file=sys.stderr)
