"""Scoring at the end of training, shared by every stage (baseline, teacher, student).

A stage calls `score` (thresholds tuned on validation, metrics on validation and test) and writes
``metrics.json`` with `write_metrics`. This module imports no stage, so stages import it without
a cycle; `leader.evaluate` (which loads a stage's predictor by name) builds on it.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from leader.cohort import Dataset
from leader.io import write_json
from leader.metrics import ddi_index, evaluate, labels_matrix, single_mask, tune_threshold
from leader.samples import Sample


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
