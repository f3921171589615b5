"""End to end with a real (tiny, random) teacher: teach -> features -> distill -> evaluate."""

from __future__ import annotations

import json

import numpy as np

from leader.cli import main
from leader.cohort import load_dataset
from leader.samples import make_samples
from leader.student import load_student


def test_tiny_teacher_to_evaluated_student(rule_dataset_path, tiny_model, tmp_path, capsys):
    from leader.teacher.features import features_dir, load_features

    dataset = load_dataset(rule_dataset_path)
    backbone = tiny_model  # the session's (tests/conftest.py), read-only
    teacher = tmp_path / "teacher"
    code = main(
        [
            "teach",
            "--data",
            str(rule_dataset_path),
            "--out",
            str(teacher),
            "--base-model",
            str(backbone),
            "--max-steps",
            "2",
            "--batch-size",
            "8",
            "--seed",
            "1",
            "--no-progress",
            "--precision",
            "fp32",
            "--no-cache-features",
            "--no-compile",
        ]
    )
    assert code == 0, capsys.readouterr().err
    assert not features_dir(teacher, dataset).exists()  # distill builds the cache when it is missing

    student = tmp_path / "student"
    code = main(
        [
            "distill",
            "--data",
            str(rule_dataset_path),
            "--teacher",
            str(teacher),
            "--out",
            str(student),
            "--beta",
            "0.005",  # alignment is off by default (RESULTS.md): this run checks KD + align end to end
            "--epochs",
            "3",
            "--dim",
            "16",
            "--hidden",
            "32",
            "--heads",
            "2",
            "--batch-size",
            "16",
            "--no-progress",
            "--threads",
            "1",
        ]
    )
    assert code == 0, capsys.readouterr().err
    ids, hidden, _ = load_features(teacher, dataset)
    assert ids == [s.sample_id for s in make_samples(dataset)] and hidden.shape[1] == 16

    record = json.loads((student / "run.json").read_text())
    teacher_record = json.loads((teacher / "run.json").read_text())
    assert record["split"] == teacher_record["split"] and record["split"]["seed"] == 1
    assert record["name"] == "student (KD + align)"
    model, _, _ = load_student(student)
    assert model.cfg.teacher_hidden == 16
    log = [json.loads(line) for line in (student / "metrics.jsonl").read_text().splitlines()]
    assert all(np.isfinite(h["train"]["kd"]) and np.isfinite(h["train"]["align"]) for h in log)

    out = tmp_path / "eval.json"
    assert main(["evaluate", "--student", str(student), "--data", str(rule_dataset_path), "--out", str(out)]) == 0
    table = json.loads(out.read_text())["metrics"]["test"]
    assert set(table) == {"overall", "single", "multi"}
    assert table["overall"]["pred_count"]["value"] > 0
