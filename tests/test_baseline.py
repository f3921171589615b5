"""Baselines: features, gradient, top-K tuning, the run folder, and `leader baseline`."""

from __future__ import annotations

import json

import numpy as np
import pytest

from leader.baseline import BaselineConfig, Features, _batch, _bce, _logits, gradient, predict_probs, run, tune_top_k
from leader.cli import main
from leader.cohort import load_dataset, write_dataset
from leader.errors import LeaderError
from leader.io import read_json
from leader.metrics import jaccard_per_sample, labels_matrix
from leader.samples import make_samples, split_samples
from tests.conftest import MEDS, TITLES, hand_patients


@pytest.fixture(scope="module")
def runs(rule_dataset_path, tmp_path_factory):
    """Both baselines trained once on the rule dataset."""
    root = tmp_path_factory.mktemp("baselines")
    return {m: run(BaselineConfig(data=rule_dataset_path, out=root / m, method=m)) for m in ("frequency", "logistic")}


def test_run_folders_explain_themselves(runs, rule_dataset_path):
    assert sorted(p.name for p in runs["frequency"].iterdir()) == ["metrics.json", "model.npz", "run.json"]
    assert sorted(p.name for p in runs["logistic"].iterdir()) == [
        "features.json",
        "metrics.json",
        "model.npz",
        "run.json",
    ]
    record = read_json(runs["logistic"] / "run.json")
    manifest = read_json(rule_dataset_path / "manifest.json")
    assert record["kind"] == "baseline" and record["name"] == "logistic"
    assert record["dataset"]["sha256"] == manifest["cohort_sha256"]
    assert record["split"] == {"how": "random", "seed": 0, "target": "all"}
    assert record["medications"] == MEDS and 0 < record["thresholds"] < 1
    assert record["config"]["method"] == "logistic" and record["config"]["data"] == str(rule_dataset_path)
    assert record["training"]["best_epoch"] >= 1 and "numpy" in record["versions"]
    assert sum(record["samples"].values()) == len(make_samples(load_dataset(rule_dataset_path)))
    assert read_json(runs["frequency"] / "run.json")["k"] >= 1
    metrics = read_json(runs["logistic"] / "metrics.json")
    assert set(metrics) == {"val", "test"} and metrics["test"]["overall"]["n"] == record["samples"]["test"]
    with np.load(runs["logistic"] / "model.npz", allow_pickle=False) as weights:
        assert sorted(weights.files) == ["W", "b"] and weights["W"].shape[1] == len(MEDS)


def test_logistic_clearly_beats_frequency(runs):
    jac = {m: read_json(runs[m] / "metrics.json")["test"]["overall"]["jaccard_samples"]["value"] for m in runs}
    # the rule dataset's medications follow its diagnoses exactly: logistic learns it, frequency cannot
    assert jac["logistic"] >= 0.9
    assert jac["frequency"] <= 0.6
    counts = read_json(runs["logistic"] / "metrics.json")["test"]["overall"]
    assert abs(counts["pred_count"]["value"] - counts["true_count"]["value"]) <= 0.5


@pytest.mark.slow
def test_logistic_beats_frequency_on_the_synthetic_cohort(tmp_path):
    from leader.data.synth import synthesize

    data = synthesize(tmp_path / "synth", 600, seed=1)
    jac = {}
    for method in ("frequency", "logistic"):
        out = run(BaselineConfig(data=data, out=tmp_path / method, method=method))
        jac[method] = read_json(out / "metrics.json")["test"]["overall"]["jaccard_samples"]["value"]
    assert jac["logistic"] > jac["frequency"] + 0.05, jac


def test_frequency_probabilities_are_training_frequencies(runs, rule_dataset_path):
    dataset = load_dataset(rule_dataset_path)
    splits = split_samples(dataset)
    probs = predict_probs(runs["frequency"], splits["test"], dataset)
    expected = labels_matrix(splits["train"], MEDS).mean(0)
    np.testing.assert_allclose(probs, np.tile(expected, (len(splits["test"]), 1)))


def test_tune_top_k_by_hand():
    freq = np.array([0.5, 0.3, 0.3, 0.1])
    # truth {0} and {0, 1}: K=1 gives J = (1 + 1/2)/2 = 0.75; K=3 (the 0.3 tie enters whole) gives (1/3 + 2/3)/2
    cut, k = tune_top_k(freq, np.array([[1, 0, 0, 0], [1, 1, 0, 0]]))
    assert k == 1 and 0.3 < cut <= 0.5
    cut, k = tune_top_k(freq, np.array([[1, 1, 1, 0], [1, 1, 1, 0]]))
    assert k == 3 and 0.1 < cut <= 0.3
    cut, k = tune_top_k(freq, np.zeros((2, 4)))
    assert k == 0 and cut > 0.5


def test_features_by_hand(hand_dataset):
    samples = make_samples(hand_dataset)
    features = Features.fit(samples[:4], MEDS, min_patients=1)  # p1 v1, p2 v1-v3
    assert features.tokens["diagnoses"] == ["ICD9:25000", "ICD9:2724", "ICD9:4019", "ICD9:42731", "ICD9:486"]
    assert features.tokens["procedures"] == ["ICD9P:3893", "ICD9P:9904"]
    indptr, indices = features.rows(samples)
    row = {i: set(indices[indptr[i] : indptr[i + 1]].tolist()) for i in range(len(samples))}
    dx, med = features.index["diagnoses"], features.index["medications"]
    # p2's third visit: bias, its diagnosis, and the second visit's medications A10B and C10A
    third = next(i for i, s in enumerate(samples) if s.sample_id == "1:2")
    assert {0, dx["ICD9:42731"], med["A10B"], med["C10A"]} <= row[third] and 1 not in row[third]
    # p4's first visit has only unseen codes: bias, first-visit flag and profile tokens remain
    unseen = next(i for i, s in enumerate(samples) if s.sample_id == "3:0")
    assert {0, 1} <= row[unseen] and not row[unseen] & set(dx.values())


def test_gradient_matches_dense_formula():
    rng = np.random.default_rng(0)
    n, d, m = 7, 6, 3
    dense = (rng.random((n, d)) < 0.4).astype(float)
    dense[:, 0] = 1.0  # the bias feature is always on
    indptr = np.concatenate([[0], np.cumsum(dense.sum(1))]).astype(np.int64)
    indices = np.nonzero(dense)[1]
    y = (rng.random((n, m)) < 0.5).astype(float)
    W, b, l2 = rng.normal(size=(d, m)), rng.normal(size=m), 0.1
    gW, gb = gradient(indptr, indices, y, W, b, l2)
    err = (1 / (1 + np.exp(-(dense @ W + b))) - y) / (n * m)
    expected = dense.T @ err
    expected[2:] += l2 * W[2:]
    np.testing.assert_allclose(gW, expected)
    np.testing.assert_allclose(gb, err.sum(0))
    # and the loss decreases along the gradient
    z = _logits(indptr, indices, W, b)
    assert _bce(_logits(indptr, indices, W - 0.5 * gW, b - 0.5 * gb), y) < _bce(z, y)
    # a batch of rows is the same sub-matrix
    ptr, idx = _batch(indptr, indices, np.array([4, 1]))
    np.testing.assert_allclose(_logits(ptr, idx, W, b), (dense @ W + b)[[4, 1]])


def test_per_med_and_target_last(rule_dataset_path, tmp_path):
    out = run(BaselineConfig(data=rule_dataset_path, out=tmp_path / "pm", per_med=True, target="last"))
    record = read_json(out / "run.json")
    assert record["name"] == "logistic (per-med)"
    assert isinstance(record["thresholds"], list) and len(record["thresholds"]) == len(MEDS)
    assert record["split"]["target"] == "last"
    assert read_json(out / "metrics.json")["test"]["single"]["n"] >= 1


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"method": "knn"}, "--method must be frequency or logistic"),
        ({"method": "frequency", "per_med": True}, "--per-med goes with --method logistic"),
        ({"epochs": 0}, "--epochs must be at least 1"),
        ({"split": "sideways"}, "--split must be random, temporal, site or external"),
    ],
)
def test_bad_options(rule_dataset_path, tmp_path, kwargs, message):
    with pytest.raises(LeaderError, match=message):
        run(BaselineConfig(data=rule_dataset_path, out=tmp_path / "x", **kwargs))
    assert not (tmp_path / "x").exists()


def test_too_small_dataset_leaves_nothing(tmp_path):
    data = write_dataset(tmp_path / "two", hand_patients()[:2], MEDS, TITLES)
    with pytest.raises(LeaderError, match="at least 3 patients"):
        run(BaselineConfig(data=data, out=tmp_path / "x"))
    assert sorted(p.name for p in tmp_path.iterdir()) == ["two"]


def test_cli_baseline(rule_dataset_path, tmp_path, capsys):
    out = tmp_path / "freq"
    assert main(["baseline", "--data", str(rule_dataset_path), "--method", "frequency", "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    assert printed.startswith("| model | Jaccard (overall)") and "| frequency |" in printed
    assert (out / "run.json").is_file()
    # the folder exists now: refused, one line, exit 2
    assert main(["baseline", "--data", str(rule_dataset_path), "--method", "frequency", "--out", str(out)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "already exists" in err[0]
    assert main(["baseline", "--data", str(tmp_path / "nope"), "--out", str(tmp_path / "y")]) == 2
    assert "prepared dataset not found" in capsys.readouterr().err
    assert not (tmp_path / "y").exists()


def test_logistic_prediction_is_deterministic_per_sample(runs, rule_dataset_path):
    dataset = load_dataset(rule_dataset_path)
    test = split_samples(dataset)["test"]
    together = predict_probs(runs["logistic"], test, dataset)
    alone = np.vstack([predict_probs(runs["logistic"], [s], dataset) for s in test])
    np.testing.assert_allclose(together, alone)
    threshold = json.loads((runs["logistic"] / "run.json").read_text())["thresholds"]
    assert jaccard_per_sample(labels_matrix(test, MEDS), together >= threshold).mean() >= 0.9
