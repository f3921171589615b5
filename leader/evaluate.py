"""Evaluation plumbing shared by every stage (baseline, teacher, student).

At the end of training a stage calls `leader.scoring.score` and `write_metrics` (re-exported
here) and writes ``run.json`` with `leader.runinfo.write_run`. Later, `evaluate_run` re-creates a
run's split from its ``run.json`` (`leader.samples.rebuild_split`), asks the stage for
probabilities (`predict_run`) and evaluates them with the run's thresholds. Stages never import
this module (it loads their predictors by name), so there is no import cycle.

numpy only at import time; a stage's predictor (and torch) is imported when it is needed.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from leader.cohort import Dataset, load_dataset
from leader.errors import LeaderError
from leader.io import check_out_file, write_json
from leader.metrics import ddi_index, evaluate, labels_matrix, single_mask
from leader.runinfo import read_run
from leader.samples import SPLITS, Sample, rebuild_split
from leader.scoring import score, thresholds_json, write_metrics

__all__ = ["evaluate_run", "predict_run", "score", "thresholds_json", "write_metrics"]

# where each kind of run keeps its `predict_probs(run_dir, samples, dataset) -> [N, M]`
PREDICTORS = {
    "baseline": "leader.baseline",
    "teacher": "leader.teacher.infer",
    "student": "leader.student.distill",
}
_TRAIN_STACK = ("torch", "transformers", "peft", "accelerate", "safetensors", "bitsandbytes")


def _predictor(kind: str, folder: Path):
    if kind not in PREDICTORS:
        raise LeaderError(f"{folder}/run.json has unknown kind '{kind}'; expected one of {', '.join(PREDICTORS)}")
    import importlib

    try:
        module = importlib.import_module(PREDICTORS[kind])
    except ModuleNotFoundError as err:
        if (err.name or "").split(".")[0] in _TRAIN_STACK:
            raise LeaderError(
                f"evaluating a {kind} run needs '{err.name}': install the training stack (pip install 'leader[train]')"
            ) from None
        raise
    return module.predict_probs


def predict_run(run_dir: str | Path, samples: list[Sample], dataset: Dataset) -> np.ndarray:
    """Probabilities [N, M] of a run (any kind) for `samples`, M = the run's medication labels."""
    run_dir = Path(run_dir)
    record = read_run(run_dir)
    predict_probs = _predictor(record.get("kind"), run_dir)
    probs = np.asarray(predict_probs(run_dir, samples, dataset), dtype=np.float64)
    expected = (len(samples), len(record.get("medications", [])))
    if probs.shape != expected:
        raise RuntimeError(f"{record.get('kind')} predictor returned shape {probs.shape}, expected {expected}")
    return probs


def evaluate_run(
    run_dir: str | Path,
    data_dir: str | Path,
    split: str = "test",
    out: str | Path | None = None,
    bootstrap: int = 10,
) -> dict:
    """Evaluate a run folder on one split of a prepared dataset, with the run's own thresholds.

    The dataset must be the one the run was trained on (same labels and cohort sha256), except
    for a run with ``--split external``: any dataset given to it is evaluated whole, as its
    test split (medications outside the run's labels ignored). DDI pairs come from `data_dir`.

    Returns ``{"name", "kind", "split", "dataset": {"path", "sha256"}, "metrics": {split: table}}``
    and writes it as JSON (atomically) when `out` is given.
    """
    run_dir = Path(run_dir)
    if out is not None:  # a metrics file is rewritten freely, but never over the run's own files or a folder
        check_out_file(out, overwrite=True, inputs=[run_dir / "run.json", run_dir / "metrics.json"])
    if split not in SPLITS:
        raise LeaderError(f"--split must be one of {', '.join(SPLITS)}, got '{split}'")
    if bootstrap < 0:
        raise LeaderError(f"--bootstrap must be 0 or more, got {bootstrap}")
    record = read_run(run_dir)
    for key in ("kind", "medications", "thresholds", "split"):
        if key not in record:
            raise LeaderError(f"{run_dir}/run.json lacks '{key}'; the run folder is incomplete, train it again")
    dataset = load_dataset(data_dir)
    samples = rebuild_split(record, dataset, split, run_dir)
    if not samples:
        raise LeaderError(f"split '{split}' of {dataset.path} has no samples; choose another --split")
    meds = record["medications"]
    thresholds = np.asarray(record["thresholds"], dtype=np.float64)
    if thresholds.ndim == 1 and thresholds.shape[0] != len(meds):
        raise LeaderError(f"{run_dir}/run.json has {thresholds.shape[0]} thresholds for {len(meds)} medications")
    probs = predict_run(run_dir, samples, dataset)
    table = evaluate(
        labels_matrix(samples, meds), probs, thresholds, single_mask(samples), ddi_index(dataset.ddi, meds), bootstrap
    )
    result = {
        "name": record.get("name", run_dir.name),
        "kind": record["kind"],
        "split": split,
        "dataset": {"path": str(dataset.path), "sha256": dataset.sha256},
        "metrics": {split: table},
    }
    if out is not None:
        write_json(out, result)
    return result
