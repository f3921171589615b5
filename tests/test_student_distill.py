"""`leader distill` without a teacher: the folder it writes, resume, evaluation, bad input."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from leader.cli import main
from leader.cohort import load_dataset
from leader.errors import LeaderError
from leader.samples import split_samples
from leader.student import load_student
from leader.student.config import DistillConfig
from leader.student.distill import predict_probs, run
from leader.student.io import load_weights

FILES = {
    "run.json",
    "config.json",
    "encoder.json",
    "model.safetensors",
    "ddi.csv",
    "metrics.json",
    "metrics.jsonl",
    "checkpoint",
}


def _cfg(data, out, **kw) -> DistillConfig:
    base = dict(
        no_teacher=True, epochs=6, patience=50, batch_size=16, dim=16, hidden=32, heads=2, progress=False, threads=1
    )
    return DistillConfig(data=str(data), out=str(out), **{**base, **kw})


@pytest.fixture(scope="module")
def trained(rule_dataset_path, tmp_path_factory):
    out = tmp_path_factory.mktemp("distill") / "student"
    run(_cfg(rule_dataset_path, out, epochs=25, lr=3e-3))
    return out


@pytest.mark.slow
def test_folder_has_exactly_the_documented_files(trained):
    assert {p.name for p in trained.iterdir()} == FILES
    assert [p.name for p in (trained / "checkpoint").iterdir()] == ["state.pt"]
    assert not trained.with_name("student.partial").exists()
    record = json.loads((trained / "run.json").read_text())
    assert record["kind"] == "student" and record["name"] == "student (no teacher)"
    assert record["split"] == {"how": "random", "seed": 0, "target": "all"}
    assert isinstance(record["thresholds"], float)
    config = json.loads((trained / "config.json").read_text())
    assert config["student"]["teacher_hidden"] == 0 and sorted(config) == ["student"]  # options: run.json only
    assert record["config"]["no_teacher"] is True
    log = [json.loads(line) for line in (trained / "metrics.jsonl").read_text().splitlines()]
    assert [h["epoch"] for h in log] == list(range(1, len(log) + 1))
    assert set(json.loads((trained / "metrics.json").read_text())) == {"val", "test"}


@pytest.mark.slow
def test_student_learns_the_rule(trained, rule_dataset_path):
    """The rule dataset's medications follow its diagnoses exactly: the student must find that."""
    metrics = json.loads((trained / "metrics.json").read_text())
    assert metrics["test"]["overall"]["jaccard_samples"]["value"] > 0.8
    log = [json.loads(line) for line in (trained / "metrics.jsonl").read_text().splitlines()]
    assert log[-1]["train"]["bce"] < log[0]["train"]["bce"]


@pytest.mark.slow
def test_load_student_and_predict_probs(trained, rule_dataset_path):
    model, encoder, record = load_student(trained)
    assert not model.training and record["kind"] == "student"
    dataset = load_dataset(rule_dataset_path)
    test = split_samples(dataset)["test"]
    probs = predict_probs(trained, test, dataset)
    assert probs.shape == (len(test), len(dataset.medications))
    assert ((probs >= 0) & (probs <= 1)).all()
    # batched prediction (sorted by visit count inside) keeps the samples' order
    one_by_one = np.concatenate([predict_probs(trained, [s], dataset) for s in test])
    np.testing.assert_allclose(probs, one_by_one, atol=1e-5)
    assert len({len(s.visits) for s in test}) > 1
    assert predict_probs(trained, [], dataset).shape == (0, len(dataset.medications))


@pytest.mark.slow
def test_evaluate_cli_matches_metrics_json(trained, rule_dataset_path, tmp_path, capsys):
    out = tmp_path / "eval.json"
    code = main(["evaluate", "--student", str(trained), "--data", str(rule_dataset_path), "--out", str(out)])
    assert code == 0
    got = json.loads(out.read_text())["metrics"]["test"]["overall"]["jaccard_samples"]["value"]
    expected = json.loads((trained / "metrics.json").read_text())["test"]["overall"]["jaccard_samples"]["value"]
    assert got == pytest.approx(expected, abs=1e-6)
    assert "#meds pred/true" in capsys.readouterr().out


@pytest.mark.slow
def test_corrupt_or_missing_weights_are_one_line_errors(trained, tmp_path, rule_dataset_path, capsys):
    import shutil

    broken = tmp_path / "broken"
    shutil.copytree(trained, broken)
    (broken / "model.safetensors").write_bytes(b"\x00garbage")
    with pytest.raises(LeaderError, match="corrupt"):
        load_student(broken)
    assert main(["evaluate", "--student", str(broken), "--data", str(rule_dataset_path)]) == 2
    assert "corrupt" in capsys.readouterr().err
    (broken / "model.safetensors").unlink()
    with pytest.raises(LeaderError, match="not found"):
        load_student(broken)
    with pytest.raises(LeaderError, match="not a leader run folder"):
        load_student(tmp_path)


@pytest.mark.slow
def test_interrupted_run_resumes_to_the_same_weights(rule_dataset_path, tmp_path, monkeypatch):
    import leader.student.distill as distill

    straight = tmp_path / "straight"
    run(_cfg(rule_dataset_path, straight))

    resumed = tmp_path / "resumed"
    real_predict, calls = distill.predict, {"n": 0}

    def crash_on_fourth_epoch(model, data, batch_size=512):
        calls["n"] += 1
        if calls["n"] == 4:
            raise KeyboardInterrupt
        return real_predict(model, data, batch_size)

    monkeypatch.setattr(distill, "predict", crash_on_fourth_epoch)
    with pytest.raises(KeyboardInterrupt):
        run(_cfg(rule_dataset_path, resumed))
    monkeypatch.setattr(distill, "predict", real_predict)
    partial = tmp_path / "resumed.partial"
    assert not resumed.exists() and (partial / "checkpoint" / "state.pt").is_file()
    assert len((partial / "metrics.jsonl").read_text().splitlines()) == 3
    with pytest.raises(LeaderError, match="interrupted run"):
        run(_cfg(rule_dataset_path, resumed))
    with pytest.raises(LeaderError, match="other settings than the saved run"):
        run(_cfg(rule_dataset_path, resumed, resume=True, lr=0.5))
    run(_cfg(rule_dataset_path, resumed, resume=True))

    a, _, _ = load_student(straight)
    b, _, _ = load_student(resumed)
    for (name, x), (_, y) in zip(a.state_dict().items(), b.state_dict().items(), strict=True):
        torch.testing.assert_close(x, y, msg=name)
    log = (resumed / "metrics.jsonl").read_text().splitlines()
    assert len(log) == 6 and not partial.exists()

    # a finished run continues with more epochs
    run(_cfg(rule_dataset_path, resumed, resume=True, epochs=8))
    assert len((resumed / "metrics.jsonl").read_text().splitlines()) == 8


@pytest.mark.slow
def test_cli_bad_input_exits_2(rule_dataset_path, hand_dataset, tmp_path, capsys, trained):
    base = ["distill", "--data", str(rule_dataset_path), "--epochs", "1", "--no-progress", "--threads", "1"]
    cases = [
        (base + ["--out", str(trained), "--no-teacher"], "already exists"),
        (base + ["--out", str(tmp_path / "x"), "--no-teacher", "--resume"], "nothing to resume"),
        (base + ["--out", str(tmp_path / "x")], "needs --teacher"),
        (base + ["--out", str(tmp_path / "x"), "--no-teacher", "--epochs", "0"], "--epochs"),
        (["distill", "--data", str(tmp_path / "nope"), "--out", str(tmp_path / "x"), "--no-teacher"], "not found"),
        (base + ["--out", str(tmp_path / "x"), "--teacher", str(tmp_path)], "not a leader run folder"),
        (base + ["--out", str(tmp_path / "x"), "--teacher", str(trained)], "holds a student run"),
    ]
    for argv, message in cases:
        assert main(argv) == 2, argv
        err = capsys.readouterr().err
        assert message in err and err.count("\n") == 1, err
    assert not (tmp_path / "x").exists() and not (tmp_path / "x.partial").exists()


def test_per_med_thresholds(rule_dataset_path, tmp_path):
    out = run(_cfg(rule_dataset_path, tmp_path / "per-med", epochs=2, per_med_threshold=True, name="per-med"))
    record = json.loads((out / "run.json").read_text())
    assert record["name"] == "per-med"
    assert len(record["thresholds"]) == len(record["medications"])
    assert np.all(np.asarray(record["thresholds"]) > 0)
    with pytest.raises(LeaderError, match="not found"):
        load_weights(torch.nn.Linear(1, 1), tmp_path / "none.safetensors")  # type: ignore[arg-type]
