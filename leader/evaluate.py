"""Evaluation plumbing shared by every stage (baseline, teacher, student).

At the end of training a stage calls `score` (thresholds tuned on validation, metrics on
validation and test), writes ``metrics.json`` with `write_metrics` and ``run.json`` with
`leader.runinfo.write_run`. Later, `evaluate_run` re-creates a run's split from its ``run.json``,
asks the stage for probabilities (`predict_run`) and evaluates them with the run's thresholds.

numpy only at import time; a stage's predictor (and torch) is imported when it is needed.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from leader.cohort import Dataset, load_dataset
from leader.errors import LeaderError
from leader.io import check_out_file, write_json
from leader.metrics import ddi_index, evaluate, labels_matrix, single_mask, tune_threshold
from leader.runinfo import check_same_dataset, read_run
from leader.samples import SPLITS, Sample, make_samples, split_samples

# where each kind of run keeps its `predict_probs(run_dir, samples, dataset) -> [N, M]`
PREDICTORS = {
    "baseline": "leader.baseline",
    "teacher": "leader.teacher.infer",
    "student": "leader.student.distill",
}
_TRAIN_STACK = ("torch", "transformers", "peft", "accelerate", "safetensors", "bitsandbytes")


def thresholds_json(thresholds) -> float | list[float]:
    """A threshold (float) or thresholds (one per medication) as plain JSON values."""
    array = np.asarray(thresholds, dtype=np.float64)
    return float(array) if array.ndim == 0 else [float(t) for t in array]


def score(
    probs_val,
    probs_test,
    val_samples: list[Sample],
    test_samples: list[Sample],
    dataset: Dataset,
    per_med: bool = False,
    bootstrap: int = 10,
    seed: int = 0,
    thresholds=None,
) -> tuple[float | list[float], dict]:
    """Tune the decision threshold(s) on validation, then evaluate validation and test.

    `thresholds`, when given (a float or one per medication), is used as is instead of tuned.
    Returns ``(thresholds, {"val": table, "test": table})``; thresholds are a float or a list
    (one per medication, ``per_med=True``) ready for run.json, tables are
    `leader.metrics.evaluate` results. Labels outside ``dataset.medications`` are ignored.
    """
    meds = dataset.medications
    y_val = labels_matrix(val_samples, meds)
    probs_val = np.asarray(probs_val, dtype=np.float64).reshape(len(val_samples), len(meds))
    probs_test = np.asarray(probs_test, dtype=np.float64).reshape(len(test_samples), len(meds))
    if thresholds is None:
        thresholds = tune_threshold(y_val, probs_val, per_med=per_med)
    ddi = ddi_index(dataset.ddi, meds)
    metrics = {
        "val": evaluate(y_val, probs_val, thresholds, single_mask(val_samples), ddi, bootstrap, seed=seed),
        "test": evaluate(
            labels_matrix(test_samples, meds),
            probs_test,
            thresholds,
            single_mask(test_samples),
            ddi,
            bootstrap,
            seed=seed,
        ),
    }
    return thresholds_json(thresholds), metrics


def write_metrics(folder: str | Path, metrics: dict) -> None:
    """Write a run's ``metrics.json`` ({"val": table, "test": table}) atomically."""
    write_json(Path(folder) / "metrics.json", metrics)


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


def _samples_for(record: dict, dataset: Dataset, run_dir: Path, split: str) -> list[Sample]:
    """The samples of `split`, re-created from run.json's split; see `evaluate_run`."""
    how = record.get("split", {}).get("how", "random")
    seed = int(record.get("split", {}).get("seed", 0))
    target = record.get("split", {}).get("target", "all")
    same = record.get("dataset", {}).get("sha256") == dataset.sha256
    if how == "external" and not same:
        if split != "test":
            raise LeaderError(f"--split {split} of an external run needs the dataset it was trained on as --data")
        labels = set(record.get("medications", []))
        samples = make_samples(dataset, target)
        for sample in samples:
            sample.labels = [m for m in sample.labels if m in labels]
            sample.sample_id = "ext:" + sample.sample_id
        return samples
    check_same_dataset(record, dataset, run_dir)
    if how == "external":
        if split == "test":
            raise LeaderError(f"{run_dir} was tested on an external dataset: pass that dataset as --data")
        return split_samples(dataset, how, seed, target, external=dataset)[split]
    return split_samples(dataset, how, seed, target)[split]


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
    samples = _samples_for(record, dataset, run_dir, split)
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
