"""The teacher's head refitted on its cached states (`leader.teacher.refit`)."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest

from leader.cohort import load_dataset
from leader.evaluate import predict_run
from leader.metrics import labels_matrix, pr_auc_samples
from leader.samples import split_samples

pytestmark = pytest.mark.usefixtures("fp32_teacher_inference")


def test_fit_head_is_the_penalised_optimum():
    """The gradient of the penalised loss vanishes at what `fit_head` returns, with and without
    offsets (the problem is convex: a stationary point is the optimum)."""
    import torch

    from leader.teacher.refit import fit_head

    rng = np.random.default_rng(0)
    x = rng.normal(size=(300, 6)).astype(np.float32)
    truth = rng.normal(size=(6, 4))
    labels = (rng.random((300, 4)) < 1 / (1 + np.exp(-(x @ truth)))).astype(np.float32)
    for offsets, l2 in ((np.zeros((300, 4), np.float32), 1e-3), (rng.normal(size=(300, 4)).astype(np.float32), 1e-2)):
        weight, bias = fit_head(x, offsets, labels, l2)
        w, b = weight.clone().requires_grad_(True), bias.clone().requires_grad_(True)
        logits = torch.from_numpy(x) @ w.T + b + torch.from_numpy(offsets)
        loss = torch.nn.functional.binary_cross_entropy_with_logits(logits, torch.from_numpy(labels))
        (loss + l2 * w.square().sum()).backward()
        assert float(w.grad.abs().max()) < 1e-4 and float(b.grad.abs().max()) < 1e-4
        assert float(weight.abs().max()) > 0.05  # not the zero start


@pytest.fixture
def teacher_copy(tiny_teacher, tmp_path):
    out = tmp_path / "teacher"
    shutil.copytree(tiny_teacher, out)
    return out


def _set_cached_logits(teacher, dataset, logits_of):
    """Replace the cache's logits (same teacher sha256: the cache stays valid)."""
    from leader.teacher.features import INDEX_FILE, features_dir, load_features, write_features

    ids, hidden, logits = load_features(teacher, dataset)
    folder = features_dir(teacher, dataset)
    index = json.loads((folder / INDEX_FILE).read_text())
    new = logits_of(ids, logits)
    write_features(folder, ids, hidden, new, index["teacher_sha256"], dataset, index["target"], index["precision"])
    return new


def test_a_better_head_is_kept_and_served_everywhere(teacher_copy, rule_dataset_path):
    """A trained head that knows nothing (cached logits all zero) loses to the refit: the new head
    is written, the cache's logits are the new head's, and a reloaded teacher (`leader evaluate`'s
    path) computes the same probabilities from the model as the cache holds."""
    from safetensors.numpy import load_file

    from leader.teacher.features import load_features
    from leader.teacher.refit import refit_head

    dataset = load_dataset(rule_dataset_path)
    splits = split_samples(dataset)
    _set_cached_logits(teacher_copy, dataset, lambda ids, logits: np.zeros_like(logits))
    record = refit_head(teacher_copy, dataset, splits)
    assert record["kept"] and record["l2"] in (1e-2, 3e-3, 1e-3, 3e-4, 1e-4)
    assert max(record["val_pr_auc"].values()) > record["val_pr_auc_trained"]
    info = json.loads((teacher_copy / "teacher.json").read_text())
    assert info["training"]["refit"] == record
    ids, hidden, logits = load_features(teacher_copy, dataset)  # valid under the new teacher sha256
    head = load_file(teacher_copy / "head.safetensors")
    states = (hidden.astype(np.float32) - head["center"]) / head["scale"]
    np.testing.assert_allclose(logits, states @ head["weight"].T + head["bias"], atol=1e-4)
    row = {sample_id: k for k, sample_id in enumerate(ids)}
    val = splits["val"]
    cached_val = 1 / (1 + np.exp(-logits[[row[s.sample_id] for s in val]]))
    assert pr_auc_samples(labels_matrix(val, dataset.medications), cached_val) == pytest.approx(
        record["val_pr_auc"][str(record["l2"])], abs=1e-6
    )
    # the reloaded teacher's probabilities differ from the cache's only by the cache's fp16 rounding
    # of the states (half a unit in the 11th bit), carried through the new head's weights
    rows = [row[s.sample_id] for s in val]
    bound = (np.abs(hidden[rows].astype(np.float32)) * 2.0**-11 / head["scale"]) @ np.abs(head["weight"]).T
    live = predict_run(teacher_copy, val, dataset)
    assert np.all(np.abs(live - cached_val) <= bound / 4 + 1e-5)
    assert np.abs(live - cached_val).max() > 0  # the states were rounded: the bound is what is tested


def test_a_worse_refit_changes_nothing(teacher_copy, rule_dataset_path):
    """A trained head that validates perfectly cannot be beaten: head, cache and scores stay."""
    from leader.teacher.refit import refit_head

    dataset = load_dataset(rule_dataset_path)
    splits = split_samples(dataset)
    everyone = {s.sample_id: s for part in splits.values() for s in part}
    perfect = _set_cached_logits(
        teacher_copy,
        dataset,
        lambda ids, logits: 20.0 * labels_matrix([everyone[i] for i in ids], dataset.medications) - 10.0,
    )
    head = (teacher_copy / "head.safetensors").read_bytes()
    record = refit_head(teacher_copy, dataset, splits)
    assert not record["kept"] and record["l2"] is None and record["val_pr_auc_trained"] == pytest.approx(1.0)
    assert (teacher_copy / "head.safetensors").read_bytes() == head
    from leader.teacher.features import load_features

    np.testing.assert_array_equal(load_features(teacher_copy, dataset)[2], perfect.astype(np.float32))


def test_leader_teach_refits_and_records_it(rule_dataset_path, tiny_model, tmp_path, capsys):
    """`leader teach` refits by default: teacher.json records it and the run's name says so."""
    from leader.cli import main
    from tests.conftest import teach_args

    out = tmp_path / "teacher"
    assert main([*teach_args(rule_dataset_path, out, tiny_model), "--refit-head"]) == 0
    refit = json.loads((out / "teacher.json").read_text())["training"]["refit"]
    assert set(refit) == {"val_pr_auc_trained", "val_pr_auc", "l2", "kept"}
    assert list(refit["val_pr_auc"]) == ["0.01", "0.003", "0.001", "0.0003", "0.0001"]
    assert "teacher head refit on cached states: validation PR-AUC" in capsys.readouterr().err
    name = json.loads((out / "run.json").read_text())["name"]
    assert refit["kept"] and name.endswith(", head refitted)")  # the tiny model's 4 steps leave room


def test_leader_teach_refit_on_a_finished_teacher(tiny_teacher, rule_dataset_path, tmp_path, capsys):
    """`leader teach refit` on a teacher trained without it: refitted, scored again, named; a second
    call changes nothing."""
    from leader.cli import main

    assert main(["teach", "refit", "--teacher", str(tmp_path / "missing")]) == 2
    assert "run folder not found" in capsys.readouterr().err
    out = tmp_path / "teacher"
    shutil.copytree(tiny_teacher, out)
    before = json.loads((out / "metrics.json").read_text())
    assert main(["teach", "refit", "--teacher", str(out), "--data", str(rule_dataset_path)]) == 0
    refit = json.loads((out / "teacher.json").read_text())["training"]["refit"]
    run = json.loads((out / "run.json").read_text())
    assert refit["kept"] and run["name"].endswith(", head refitted)")
    assert json.loads((out / "metrics.json").read_text()) != before
    files = {p.name: p.read_bytes() for p in out.iterdir() if p.is_file()}
    capsys.readouterr()
    assert main(["teach", "refit", "--teacher", str(out)]) == 0
    assert {p.name: p.read_bytes() for p in out.iterdir() if p.is_file()} == files
    assert "refitted already; nothing to do" in capsys.readouterr().err
