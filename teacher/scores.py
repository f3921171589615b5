"""A teacher run's name and scores: validation and test logits -> the decision threshold
(teacher.json), metrics.json and the printed test line. Shared by the end of `leader teach`
(`teacher/folder.py`) and `leader teach refit` (`teacher/refit.py`)."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np

from leader.io import read_json, write_json
from leader.scoring import score, write_metrics

from .infer import sigmoid


def run_name(backbone_name: str, prior=None, refitted: bool = False) -> str:
    """A teacher run's name in result tables: its base model, its prior, whether its head was refitted."""
    parts = [backbone_name] + ([f"prior {prior.path.name}"] if prior is not None else [])
    return f"teacher ({', '.join(parts + (['head refitted'] if refitted else []))})"


def write_scores(out: Path, dataset, splits: dict, logits: dict) -> tuple:
    """Tune the decision threshold on validation and score validation and test from their logits
    (`leader.scoring.score`); the threshold goes into teacher.json, the tables into metrics.json.
    Returns (thresholds, metrics)."""
    probs = {name: sigmoid(logits[name]) for name in ("val", "test")}
    thresholds, metrics = score(probs["val"], probs["test"], splits["val"], splits["test"], dataset)
    info = read_json(out / "teacher.json", "teacher.json")
    info["threshold"] = thresholds
    write_json(out / "teacher.json", info)
    write_metrics(out, metrics)
    return thresholds, metrics


def print_test_line(out: Path, metrics: dict, thresholds) -> None:
    overall = metrics["test"]["overall"]
    print(
        f"teacher: test Jaccard {overall['jaccard_samples']['value']:.4f}, PR-AUC {overall['pr_auc_samples']['value'] or 0:.4f} "
        f"(threshold {thresholds:.3f}) -> {out}",
        file=sys.stderr,
    )


def cached_split_logits(out: Path, dataset, splits: dict) -> dict[str, np.ndarray]:
    """Validation and test logits of the teacher in `out`, read from its feature cache of `dataset`."""
    from .features import load_features

    ids, _, logits = load_features(out, dataset)
    row = {sample_id: k for k, sample_id in enumerate(ids)}
    return {name: logits[[row[s.sample_id] for s in splits[name]]] for name in ("val", "test")}
