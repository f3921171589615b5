"""Evaluation plumbing: score, predict_run, evaluate_run, and `leader evaluate` / `leader results`."""

from __future__ import annotations

import json
import sys
import types

import numpy as np
import pytest

from leader.baseline import BaselineConfig, run
from leader.cli import main
from leader.cohort import load_dataset, write_dataset
from leader.errors import LeaderError
from leader.evaluate import evaluate_run, predict_run, score
from leader.io import read_json
from leader.metrics import labels_matrix
from leader.runinfo import write_run
from leader.samples import make_samples, split_samples
from tests.conftest import MEDS, TITLES, rule_patients


@pytest.fixture(scope="module")
def runs(rule_dataset_path, tmp_path_factory):
    root = tmp_path_factory.mktemp("eval-runs")
    return {m: run(BaselineConfig(data=rule_dataset_path, out=root / m, method=m)) for m in ("frequency", "logistic")}


@pytest.fixture(scope="module")
def other_dataset_path(tmp_path_factory):
    """Same labels, other patients: another dataset (its sha256 differs)."""
    out = tmp_path_factory.mktemp("other") / "rule2"
    return write_dataset(out, rule_patients(30, seed=7), MEDS, TITLES, [("C07A", "B01A")], source="test")


def test_score_tunes_on_val_and_evaluates_both(hand_dataset):
    samples = make_samples(hand_dataset)
    val, test = samples[:4], samples[4:]
    y_val, y_test = labels_matrix(val, MEDS), labels_matrix(test, MEDS)
    # perfect scores on validation: the tuned threshold reproduces the labels exactly
    thresholds, metrics = score(0.1 + 0.8 * y_val, 0.1 + 0.8 * y_test, val, test, hand_dataset, bootstrap=2)
    assert isinstance(thresholds, float) and 0.1 < thresholds <= 0.9
    assert set(metrics) == {"val", "test"}
    assert metrics["val"]["overall"]["n"] == 4 and metrics["test"]["overall"]["n"] == 3
    assert metrics["val"]["overall"]["jaccard_samples"]["value"] == 1.0
    assert metrics["test"]["single"]["n"] == 2 and metrics["test"]["multi"]["n"] == 1
    # sample "1:2" predicts C07A and B01A, the dataset's one DDI pair: 1 pair out of 3
    assert metrics["val"]["overall"]["ddi_score"]["value"] == pytest.approx(1 / (1 + 1 + 3))
    per_med, _ = score(0.1 + 0.8 * y_val, 0.1 + 0.8 * y_test, val, test, hand_dataset, per_med=True, bootstrap=0)
    assert isinstance(per_med, list) and len(per_med) == len(MEDS)
    fixed, metrics = score(0.1 + 0.8 * y_val, 0.1 + 0.8 * y_test, val, test, hand_dataset, thresholds=0.95, bootstrap=0)
    assert fixed == 0.95 and metrics["test"]["overall"]["pred_count"]["value"] == 0.0


def test_evaluate_run_reproduces_training_metrics(runs, rule_dataset_path, tmp_path):
    for folder in runs.values():
        stored = read_json(folder / "metrics.json")
        for split in ("val", "test"):
            result = evaluate_run(folder, rule_dataset_path, split=split)
            assert result["metrics"][split] == stored[split]
    out = tmp_path / "eval" / "logistic.json"
    result = evaluate_run(runs["logistic"], rule_dataset_path, out=out, bootstrap=3)
    assert json.loads(out.read_text()) == result
    assert result["name"] == "logistic" and result["kind"] == "baseline" and result["split"] == "test"
    assert result["dataset"]["sha256"] == load_dataset(rule_dataset_path).sha256


def test_evaluate_run_refuses_another_dataset(runs, other_dataset_path, tmp_path):
    with pytest.raises(LeaderError, match="trained on another dataset"):
        evaluate_run(runs["logistic"], other_dataset_path, out=tmp_path / "e.json")
    assert not (tmp_path / "e.json").exists()
    with pytest.raises(LeaderError, match="not a leader run folder"):
        evaluate_run(tmp_path, other_dataset_path)
    with pytest.raises(LeaderError, match="--split must be one of"):
        evaluate_run(runs["logistic"], other_dataset_path, split="dev")


def test_external_run_evaluates_any_dataset_whole(rule_dataset_path, other_dataset_path, tmp_path):
    folder = run(
        BaselineConfig(data=rule_dataset_path, out=tmp_path / "ext", split="external", external_data=other_dataset_path)
    )
    assert read_json(folder / "run.json")["split"]["external"] == str(other_dataset_path)
    result = evaluate_run(folder, other_dataset_path)
    stored = read_json(folder / "metrics.json")["test"]
    for group, table in result["metrics"]["test"].items():
        # DDI pairs come from the dataset evaluated on (here 1 pair; the training dataset has 2)
        assert {k: v for k, v in table.items() if k != "ddi_score"} == {
            k: v for k, v in stored[group].items() if k != "ddi_score"
        }
    assert result["metrics"]["test"]["overall"]["n"] == len(make_samples(load_dataset(other_dataset_path)))
    with pytest.raises(LeaderError, match="needs the dataset it was trained on"):
        evaluate_run(folder, other_dataset_path, split="val")
    with pytest.raises(LeaderError, match="pass that dataset as --data"):
        evaluate_run(folder, rule_dataset_path, split="test")
    assert evaluate_run(folder, rule_dataset_path, split="val")["metrics"]["val"]["overall"]["n"] > 0


def test_predict_run_dispatches_on_kind(rule_dataset_path, tmp_path, monkeypatch):
    """A teacher run is served by leader.teacher.infer.predict_probs (a stand-in here)."""
    dataset = load_dataset(rule_dataset_path)
    test = split_samples(dataset)["test"]
    calls = []

    def predict_probs(run_dir, samples, ds):
        calls.append((run_dir, len(samples), ds.sha256))
        return labels_matrix(samples, ds.medications) * 0.8 + 0.1

    monkeypatch.setitem(sys.modules, "leader.teacher.infer", types.SimpleNamespace(predict_probs=predict_probs))
    folder = tmp_path / "teacher"
    folder.mkdir()
    write_run(folder, "teacher", "teacher (stand-in)", dataset, {"how": "random", "seed": 0, "target": "all"}, 0.5, {})
    probs = predict_run(folder, test, dataset)
    assert probs.shape == (len(test), len(MEDS)) and calls == [(folder, len(test), dataset.sha256)]
    result = evaluate_run(folder, rule_dataset_path)
    assert (
        result["name"] == "teacher (stand-in)"
        and result["metrics"]["test"]["overall"]["jaccard_samples"]["value"] == 1.0
    )

    def wrong_shape(run_dir, samples, ds):
        return np.zeros((len(samples), 2))

    monkeypatch.setitem(sys.modules, "leader.teacher.infer", types.SimpleNamespace(predict_probs=wrong_shape))
    with pytest.raises(RuntimeError, match="expected"):
        predict_run(folder, test, dataset)
    record = read_json(folder / "run.json")
    (folder / "run.json").write_text(json.dumps({**record, "kind": "oracle"}))
    with pytest.raises(LeaderError, match="unknown kind 'oracle'"):
        predict_run(folder, test, dataset)


def test_cli_evaluate(runs, rule_dataset_path, other_dataset_path, tmp_path, capsys):
    out = tmp_path / "eval.json"
    code = main(["evaluate", "--baseline", str(runs["logistic"]), "--data", str(rule_dataset_path), "--out", str(out)])
    assert code == 0
    printed = capsys.readouterr().out
    assert "| logistic |" in printed and "#meds pred/true (single)" in printed
    assert read_json(out)["metrics"]["test"] == read_json(runs["logistic"] / "metrics.json")["test"]
    assert main(["evaluate", "--run", str(runs["frequency"]), "--data", str(rule_dataset_path), "--split", "val"]) == 0
    capsys.readouterr()

    bad = [
        (["--run", str(tmp_path)], "not a leader run folder"),
        (["--baseline", str(runs["logistic"]), "--data", str(other_dataset_path)], "trained on another dataset"),
        (["--student", str(runs["logistic"])], "holds a baseline run, expected a student run"),
        (["--run", str(runs["logistic"]), "--baseline", str(runs["logistic"])], "exactly one of"),
    ]
    for args, message in bad:
        if "--data" not in args:
            args = [*args, "--data", str(rule_dataset_path)]
        assert main(["evaluate", *args, "--out", str(tmp_path / "bad.json")]) == 2
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and message in err[0], err
    assert not (tmp_path / "bad.json").exists()


def test_cli_results(runs, tmp_path, capsys):
    out = tmp_path / "RESULTS.md"
    assert main(["results", str(runs["frequency"]), str(runs["logistic"]), "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    assert out.read_text() == printed
    lines = printed.strip().splitlines()
    # the strongest baseline (best validation Jaccard) comes first, marked (leader.baseline.strongest_first)
    assert len(lines) == 4 and lines[2].startswith("| logistic · strongest baseline |")
    assert lines[3].startswith("| frequency |")
    stored = read_json(runs["logistic"] / "metrics.json")["test"]["overall"]["jaccard_samples"]
    assert f"{stored['mean']:.4f} ± {stored['std']:.4f}" in lines[2]
    # the same run twice: the second row is told apart by its folder name
    assert main(["results", str(runs["logistic"]), str(runs["logistic"]), "--split", "val"]) == 0
    assert "| logistic (logistic) |" in capsys.readouterr().out

    empty = tmp_path / "empty"
    empty.mkdir()
    assert main(["results", str(runs["logistic"]), str(empty), "--out", str(tmp_path / "R2.md")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "not a leader run folder" in err[0]
    assert not (tmp_path / "R2.md").exists()
    assert main(["results", str(runs["logistic"]), "--split", "train"]) == 2
    assert "--split must be val or test" in capsys.readouterr().err
