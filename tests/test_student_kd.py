"""Distillation with a teacher: split taken from the teacher, KD + alignment in the loop, bad teachers.

The feature cache here is faked (`leader.teacher.features` patched) so these tests stay fast; the
end-to-end test with a real tiny teacher is in test_student_e2e.py.
"""

from __future__ import annotations

import json

import numpy as np
import pytest

import leader.teacher.features as features
from leader.cli import main
from leader.cohort import load_dataset
from leader.encoding import Encoder
from leader.errors import LeaderError
from leader.runinfo import write_run
from leader.samples import make_samples
from leader.student.config import DistillConfig
from leader.student.distill import run

SPLIT = {"how": "random", "seed": 3, "target": "all"}
HIDDEN = 24


def _teacher(folder, dataset, split=SPLIT):
    folder.mkdir(parents=True, exist_ok=True)
    write_run(folder, "teacher", "teacher (fake)", dataset, split, 0.5, {})
    return folder


def _fake_cache(monkeypatch, dataset, drop: int = 0):
    """Teacher hidden states that are a fixed function of the labels (what a good teacher knows)."""
    samples = make_samples(dataset, "all")[drop:]
    y = Encoder({}, dataset.medications).multi_hot([s.labels for s in samples])
    w = np.random.default_rng(0).normal(size=(y.shape[1], HIDDEN))
    hidden = (np.tanh(y @ w) * 3 + 5).astype(np.float16)  # offset and scale: standardisation matters
    logits = (y * 4 - 2).astype(np.float32)
    calls = []
    monkeypatch.setattr(features, "ensure_features", lambda t, d, **kw: calls.append(t))
    monkeypatch.setattr(features, "load_features", lambda t, d: ([s.sample_id for s in samples], hidden, logits))
    return calls


def _cfg(data, teacher, out, **kw) -> DistillConfig:
    base = dict(epochs=5, patience=50, batch_size=16, dim=16, hidden=32, heads=2, progress=False, threads=1)
    return DistillConfig(data=str(data), teacher=str(teacher), out=str(out), **{**base, **kw})


@pytest.mark.slow
def test_kd_and_alignment_train_on_the_teachers_split(rule_dataset_path, tmp_path, monkeypatch):
    dataset = load_dataset(rule_dataset_path)
    teacher = _teacher(tmp_path / "teacher", dataset)
    calls = _fake_cache(monkeypatch, dataset)
    out = run(_cfg(rule_dataset_path, teacher, tmp_path / "kd", alpha=1.0, beta=0.1, lr=3e-3, epochs=8))
    assert calls == [str(teacher)]
    record = json.loads((out / "run.json").read_text())
    assert record["name"] == "student (KD + align)" and record["split"] == SPLIT
    assert record["teacher"]["path"] == str(teacher) and record["teacher"]["kd_standardized"] is True
    assert json.loads((out / "config.json").read_text())["student"]["teacher_hidden"] == HIDDEN
    log = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    assert set(log[0]["train"]) == {"bce", "kd", "align", "loss"}
    assert log[-1]["train"]["kd"] < 0.6 * log[0]["train"]["kd"]
    assert log[-1]["train"]["align"] < log[0]["train"]["align"]


def test_names_follow_the_losses(rule_dataset_path, tmp_path, monkeypatch):
    dataset = load_dataset(rule_dataset_path)
    teacher = _teacher(tmp_path / "teacher", dataset)
    calls = _fake_cache(monkeypatch, dataset)
    kd = run(_cfg(rule_dataset_path, teacher, tmp_path / "kd", beta=0.0, epochs=1))
    assert json.loads((kd / "run.json").read_text())["name"] == "student (KD)"
    plain = run(_cfg(rule_dataset_path, teacher, tmp_path / "plain", no_teacher=True, epochs=1))
    record = json.loads((plain / "run.json").read_text())
    assert record["name"] == "student (no teacher)" and record["split"] == SPLIT  # the teacher's split
    assert len(calls) == 1  # --no-teacher reads no features
    log = json.loads((plain / "metrics.jsonl").read_text().splitlines()[0])
    assert set(log["train"]) == {"bce", "loss"}


def test_conflicting_split_and_foreign_teacher_are_refused(rule_dataset_path, hand_dataset, tmp_path, monkeypatch):
    dataset = load_dataset(rule_dataset_path)
    teacher = _teacher(tmp_path / "teacher", dataset)
    _fake_cache(monkeypatch, dataset)
    with pytest.raises(LeaderError, match="--split-seed 0 conflicts with the teacher's split"):
        run(_cfg(rule_dataset_path, teacher, tmp_path / "a", split_seed=0))
    with pytest.raises(LeaderError, match="--target last conflicts"):
        run(_cfg(rule_dataset_path, teacher, tmp_path / "a", target="last"))
    run(_cfg(rule_dataset_path, teacher, tmp_path / "same", split="random", split_seed=3, epochs=1))  # agreeing flags
    foreign = _teacher(tmp_path / "foreign", hand_dataset)
    with pytest.raises(LeaderError, match="other medication labels|another dataset"):
        run(_cfg(rule_dataset_path, foreign, tmp_path / "b"))
    assert not (tmp_path / "a").exists() and not (tmp_path / "b.partial").exists()


def test_cache_missing_training_samples_is_refused(rule_dataset_path, tmp_path, monkeypatch):
    dataset = load_dataset(rule_dataset_path)
    teacher = _teacher(tmp_path / "teacher", dataset)
    _fake_cache(monkeypatch, dataset, drop=len(make_samples(dataset)) // 2)
    with pytest.raises(LeaderError, match="feature cache lacks"):
        run(_cfg(rule_dataset_path, teacher, tmp_path / "x"))


def test_cli_teacher_errors_exit_2(rule_dataset_path, hand_dataset, tmp_path, capsys):
    """Real feature code: a teacher folder that cannot build its cache, a teacher of another dataset."""
    dataset = load_dataset(rule_dataset_path)
    broken = _teacher(tmp_path / "broken", dataset)  # run.json only: no adapter, head or teacher.json
    foreign = _teacher(tmp_path / "foreign", hand_dataset)
    base = [
        "distill",
        "--data",
        str(rule_dataset_path),
        "--out",
        str(tmp_path / "s"),
        "--no-progress",
        "--threads",
        "1",
    ]
    for teacher, message in ((broken, "not a finished teacher run"), (foreign, "trained on another dataset")):
        assert main(base + ["--teacher", str(teacher)]) == 2
        err = capsys.readouterr().err
        assert message in err and err.count("\n") == 1, err
    assert not (tmp_path / "s").exists() and not (tmp_path / "s.partial").exists()


def test_kd_from_the_visit_encoder_through_an_mlp(rule_dataset_path, tmp_path, monkeypatch):
    dataset = load_dataset(rule_dataset_path)
    teacher = _teacher(tmp_path / "teacher", dataset)
    _fake_cache(monkeypatch, dataset)
    out = run(_cfg(rule_dataset_path, teacher, tmp_path / "kd", kd_layer="patient", kd_proj="mlp", epochs=2))
    student = json.loads((out / "config.json").read_text())["student"]
    assert (student["kd_layer"], student["kd_proj"], student["teacher_hidden"]) == ("patient", "mlp", HIDDEN)
    with pytest.raises(LeaderError, match="--kd-layer"):
        _cfg(rule_dataset_path, teacher, tmp_path / "x", kd_layer="head")
