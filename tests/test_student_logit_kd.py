"""Logit-level KD (`leader distill --gamma`): BCE of the student's logits against the teacher's probabilities."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

import leader.teacher.features as features
from leader.cohort import load_dataset
from leader.samples import make_samples, split_samples
from leader.student.distill import predict_probs, run
from leader.student.losses import logit_kd_loss, total_loss
from tests.test_student_kd import HIDDEN, _cfg, _teacher

TEACHER_LOGIT = 2.0
"""The fake teacher gives every medication of every sample this logit (probability 0.88)."""


def test_logit_kd_is_bce_against_soft_targets():
    z = torch.tensor([[0.3, -1.2], [2.0, 0.0]], requires_grad=True)
    p = torch.tensor([[0.9, 0.1], [0.5, 0.5]])
    expected = -(p * torch.log(torch.sigmoid(z)) + (1 - p) * torch.log(1 - torch.sigmoid(z))).mean()
    assert float(logit_kd_loss(z, p)) == pytest.approx(float(expected), rel=1e-6)
    # its gradient is (σ(z) - p) / (N·M): zero where the student agrees with the teacher
    logit_kd_loss(z, p).backward()
    torch.testing.assert_close(z.grad, (torch.sigmoid(z) - p).detach() / 4)
    out = {"logits": z.detach()}
    y = torch.tensor([[1.0, 0.0], [1.0, 1.0]])
    total, parts = total_loss(out, y, teacher_probs=p, gamma=0.5)
    assert parts["logit_kd"] == pytest.approx(float(expected), rel=1e-6)
    assert parts["loss"] == pytest.approx(parts["bce"] + 0.5 * parts["logit_kd"], rel=1e-6)


def _confident_teacher(monkeypatch, dataset):
    samples = make_samples(dataset, "all")
    hidden = np.ones((len(samples), HIDDEN), dtype=np.float16)
    logits = np.full((len(samples), len(dataset.medications)), TEACHER_LOGIT, dtype=np.float32)
    monkeypatch.setattr(features, "ensure_features", lambda t, d, **kw: None)
    monkeypatch.setattr(features, "load_features", lambda t, d: ([s.sample_id for s in samples], hidden, logits))


def test_gamma_pulls_the_student_towards_the_teachers_probabilities(rule_dataset_path, tmp_path, monkeypatch):
    dataset = load_dataset(rule_dataset_path)
    teacher = _teacher(tmp_path / "teacher", dataset)
    _confident_teacher(monkeypatch, dataset)
    options = dict(alpha=0.0, beta=0.0, lr=3e-3, epochs=6)
    soft = run(_cfg(rule_dataset_path, teacher, tmp_path / "soft", gamma=5.0, **options))
    plain = run(_cfg(rule_dataset_path, teacher, tmp_path / "plain", **options))
    record = json.loads((soft / "run.json").read_text())
    assert record["name"] == "student (logit KD)" and record["config"]["gamma"] == 5.0
    assert json.loads((soft / "config.json").read_text())["student"]["teacher_hidden"] == 0  # no feature KD
    log = [json.loads(line) for line in (soft / "metrics.jsonl").read_text().splitlines()]
    assert set(log[0]["train"]) == {"bce", "logit_kd", "loss"}
    val = split_samples(dataset, "random", 3, "all")["val"]
    mean = {name: float(predict_probs(d, val, dataset).mean()) for name, d in (("soft", soft), ("plain", plain))}
    # the teacher says 0.88 for everything, the labels far less: the student with gamma sits between
    assert mean["plain"] + 0.2 < mean["soft"] < 0.9, mean
