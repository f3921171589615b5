"""`leader teach --prior`: a teacher that starts from the logistic baseline's logits (tiny random Llama)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from leader.baseline import predict_logits
from leader.cli import main
from leader.cohort import load_dataset, write_dataset
from leader.evaluate import predict_run
from leader.samples import split_samples
from tests.conftest import MEDS, TITLES, crash_teacher_after_step, rule_patients, teach_args

pytestmark = pytest.mark.usefixtures("fp32_teacher_inference")


def _baseline(data, out, *extra, l2: str = "1e-4") -> str:
    args = ["baseline", "--data", str(data), "--out", str(out), "--method", "logistic"]
    assert main([*args, "--history", "previous", "--l2", l2, *extra]) == 0
    return str(out)


@pytest.fixture(scope="module")
def prior(tmp_path_factory, rule_dataset_path):
    """A logistic baseline on the rule dataset and split of the tiny teachers (read-only)."""
    return _baseline(rule_dataset_path, tmp_path_factory.mktemp("prior") / "logistic")


@pytest.fixture(scope="module")
def prior_teacher(tmp_path_factory, rule_dataset_path, tiny_model, prior):
    """4 steps of `leader teach --prior` (teach_args), read-only."""
    out = tmp_path_factory.mktemp("teach-prior") / "teacher"
    with pytest.MonkeyPatch.context() as patch:
        import leader.teacher.backbone

        patch.setattr(leader.teacher.backbone, "bf16_supported", lambda: False)
        assert main(teach_args(rule_dataset_path, out, tiny_model, "--prior", prior)) == 0
    return out


def _bce(logits: np.ndarray, y: np.ndarray) -> float:
    return float(np.mean(np.logaddexp(0, logits) - y * logits))


@pytest.mark.parametrize("cache", ["--cache-features", "--no-cache-features"])
def test_the_untrained_teacher_is_the_baseline(cache, rule_dataset_path, tiny_model, prior, tmp_path, monkeypatch):
    """At a learning rate of 1e-12 one step leaves the head at zero (to ~1e-12): the training loss,
    the validation during training, the final scoring (from the feature cache, or a pass of its
    own), `leader evaluate` and the thresholds all see the baseline's logits."""
    import torch

    import leader.teacher.train as train

    seen = []
    real_bce = torch.nn.functional.binary_cross_entropy_with_logits

    def spy(logits, target, *args, **kwargs):
        seen.append(logits.detach().numpy().copy())
        return real_bce(logits, target, *args, **kwargs)

    monkeypatch.setattr(torch.nn.functional, "binary_cross_entropy_with_logits", spy)
    monkeypatch.setattr(train, "calibrate_head", None)  # a prior teacher's head is never fitted as a probe
    out = tmp_path / "teacher"
    tiny_lr = (
        "--max-steps",
        "1",
        "--eval-every",
        "1",
        "--lr",
        "1e-12",
        "--head-lr",
        "1e-12",
        "--eval-samples",
        "0",
        cache,
    )
    assert main([*teach_args(rule_dataset_path, out, tiny_model, "--prior", prior), *tiny_lr]) == 0

    dataset = load_dataset(rule_dataset_path)
    splits = split_samples(dataset)
    base = {name: predict_logits(prior, splits[name]) for name in splits}
    # the first training batch's logits are baseline rows
    assert seen and seen[0].shape[1] == len(MEDS)
    for row in seen[0]:
        assert np.abs(base["train"] - row).max(1).min() < 1e-5, "a training logit row is not the baseline's"
    # the validation during training scored the baseline
    log = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    val = [r for r in log if r.get("split") == "val"]
    y_val = np.array([[m in s.labels for m in MEDS] for s in splits["val"]], dtype=np.float64)
    assert val and val[0]["val_loss"] == pytest.approx(_bce(base["val"].astype(np.float64), y_val), abs=1e-5)
    # inference (the feature cache written at the end, then `leader evaluate`) equals the baseline
    for name in ("val", "test"):
        ours = predict_run(out, splits[name], dataset)
        theirs = predict_run(prior, splits[name], dataset)
        np.testing.assert_allclose(ours, theirs, atol=1e-6, err_msg=name)
    ours, theirs = (json.loads((d / "metrics.json").read_text()) for d in (out, Path(prior)))
    for split in ("val", "test"):
        a, b = ours[split]["overall"], theirs[split]["overall"]
        assert a["jaccard_samples"]["value"] == pytest.approx(b["jaccard_samples"]["value"], abs=1e-9)
        assert a["pr_auc_samples"]["value"] == pytest.approx(b["pr_auc_samples"]["value"], abs=1e-6)


def test_run_records_the_prior(prior_teacher, prior, rule_dataset_path):
    from leader.io import sha256_file
    from leader.teacher.features import load_features

    run = json.loads((prior_teacher / "run.json").read_text())
    info = json.loads((prior_teacher / "teacher.json").read_text())
    record = {"path": str(prior), "sha256": sha256_file(f"{prior}/model.npz")}
    assert run["prior"] == record == info["prior"]
    assert run["config"]["prior"] == str(prior)
    assert run["name"].endswith(", prior logistic)")
    # the baseline validates perfectly on the rule dataset, so no step beat the untrained teacher
    # (test_a_teacher_that_never_beats...): the kept teacher, and its cached logits, are the baseline
    assert info["training"]["best_step"] == 0
    dataset = load_dataset(rule_dataset_path)
    ids, _, logits = load_features(prior_teacher, dataset)
    samples = {s.sample_id: s for name, part in split_samples(dataset).items() for s in part}
    base = predict_logits(prior, [samples[i] for i in ids])
    np.testing.assert_allclose(logits, base, atol=1e-6)


def test_a_changed_prior_is_refused_when_scoring(prior_teacher, prior, rule_dataset_path, tmp_path, capsys):
    import shutil

    moved = tmp_path / "teacher"
    shutil.copytree(prior_teacher, moved)
    changed = tmp_path / "logistic"
    shutil.copytree(prior, changed)
    record = json.loads((moved / "teacher.json").read_text())
    record["prior"]["path"] = str(changed)
    (moved / "teacher.json").write_text(json.dumps(record))
    dataset = load_dataset(rule_dataset_path)
    test = split_samples(dataset)["test"]
    predict_run(moved, test, dataset)  # the copy is the same baseline: fine
    with np.load(changed / "model.npz") as weights:
        arrays = {k: weights[k] for k in weights.files}
    arrays["b"] = arrays["b"] + 1
    np.savez(changed / "model.npz", **arrays)
    from leader.errors import LeaderError

    with pytest.raises(LeaderError, match="changed since"):
        predict_run(moved, test, dataset)
    assert main(["evaluate", "--run", str(moved), "--data", str(rule_dataset_path)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "changed since" in err[0] and "train the teacher again" in err[0]


@pytest.mark.parametrize("which", ["frequency", "teacher", "other data", "other labels", "other split"])
def test_a_wrong_prior_is_refused(which, prior_teacher, rule_dataset_path, tiny_model, tmp_path, capsys):
    if which == "frequency":
        assert (
            main(["baseline", "--data", str(rule_dataset_path), "--method", "frequency", "--out", str(tmp_path / "f")])
            == 0
        )
        wrong, words = tmp_path / "f", "is a frequency run, not a logistic baseline"
    elif which == "teacher":
        wrong, words = prior_teacher, "is a teacher run, not a logistic baseline"
    elif which in ("other data", "other labels"):
        patients = rule_patients()[:-1] if which == "other data" else rule_patients()
        meds = MEDS if which == "other data" else MEDS[::-1]  # the same patients, labels in another order
        data = write_dataset(tmp_path / "d", patients, meds, TITLES, [], source="test")
        wrong, words = _baseline(data, tmp_path / "lr"), "other data or labels"
    else:
        wrong, words = _baseline(rule_dataset_path, tmp_path / "lr", "--seed", "1"), "another split"
    capsys.readouterr()
    out = tmp_path / "teacher"
    assert main(teach_args(rule_dataset_path, out, tiny_model, "--prior", str(wrong))) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error: ") and words in err[0], err
    assert "leader baseline --method logistic" in err[0]  # names the fix
    assert not out.exists()


def test_resume_keeps_the_prior(prior_teacher, prior, rule_dataset_path, tiny_model, tmp_path, monkeypatch, capsys):
    """A run with --prior that crashed after step 2 resumes to the same weights and logits as
    the uninterrupted run; resuming without the prior, or after the prior changed, is refused."""
    import leader.teacher.train as train
    from leader.teacher.config import TeachConfig

    real_save = crash_teacher_after_step(monkeypatch)
    out = tmp_path / "resumed"
    options = dict(max_steps=4, eval_every=2, batch_size=4, precision="fp32", progress=False, compile=False)
    cfg = TeachConfig(data=rule_dataset_path, out=out, base_model=str(tiny_model), prior=prior, **options)
    with pytest.raises(RuntimeError, match="simulated crash"):
        train.run(cfg)
    monkeypatch.setattr(train, "save_checkpoint", real_save)
    capsys.readouterr()
    assert main(teach_args(rule_dataset_path, out, tiny_model, "--resume")) == 2  # the prior is part of the run
    assert "--prior differ" in capsys.readouterr().err
    assert main(teach_args(rule_dataset_path, out, tiny_model, "--resume", "--prior", prior)) == 0
    from safetensors.numpy import load_file

    for name in ("adapter_model.safetensors", "head.safetensors"):
        ours, straight = load_file(out / name), load_file(prior_teacher / name)
        for key in ours:
            np.testing.assert_array_equal(ours[key], straight[key], err_msg=key)
    ours, straight = (json.loads((d / "metrics.json").read_text()) for d in (out, prior_teacher))
    assert ours == straight
    drop = ("elapsed_s", "tokens_per_s")  # steps 3-4 (losses, validation) were trained on the same logits
    logs = [
        [
            {k: v for k, v in json.loads(line).items() if k not in drop}
            for line in (d / "metrics.jsonl").read_text().splitlines()
        ]
        for d in (out, prior_teacher)
    ]
    assert logs[0] == logs[1]
    assert (
        json.loads((out / "run.json").read_text())["prior"]
        == json.loads((prior_teacher / "run.json").read_text())["prior"]
    )


def test_resume_refuses_a_prior_changed_mid_run(prior, rule_dataset_path, tiny_model, tmp_path, monkeypatch, capsys):
    import shutil

    import leader.teacher.train as train
    from leader.teacher.config import TeachConfig

    mine = tmp_path / "logistic"
    shutil.copytree(prior, mine)
    real_save = crash_teacher_after_step(monkeypatch)
    out = tmp_path / "resumed"
    options = dict(max_steps=4, eval_every=2, batch_size=4, precision="fp32", progress=False, compile=False)
    with pytest.raises(RuntimeError, match="simulated crash"):
        train.run(TeachConfig(data=rule_dataset_path, out=out, base_model=str(tiny_model), prior=mine, **options))
    monkeypatch.setattr(train, "save_checkpoint", real_save)
    _baseline(rule_dataset_path, mine, "--overwrite", l2="1e-3")  # retrained in place
    capsys.readouterr()
    assert main(teach_args(rule_dataset_path, out, tiny_model, "--resume", "--prior", str(mine))) == 2
    assert "changed since" in capsys.readouterr().err


def test_a_teacher_that_never_beats_the_baseline_is_the_baseline(rule_dataset_path, tiny_model, prior, tmp_path):
    """The untrained teacher (the baseline) is validated before the first step and kept as the
    best weights until a step validates better (here none can: the baseline's validation PR-AUC on
    the rule dataset is already 1, and a head learning rate of 1 spoils the steps anyway)."""
    out = tmp_path / "teacher"
    assert main(teach_args(rule_dataset_path, out, tiny_model, "--prior", prior, "--head-lr", "1")) == 0
    log = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    val = [r for r in log if r.get("split") == "val"]
    assert [r["step"] for r in val] == [0, 2, 4] and val[0].get("best") and not any(r.get("best") for r in val[1:])
    info = json.loads((out / "teacher.json").read_text())
    assert info["training"]["best_step"] == 0 and info["training"]["steps"] == 4
    dataset = load_dataset(rule_dataset_path)
    test = split_samples(dataset)["test"]
    np.testing.assert_allclose(predict_run(out, test, dataset), predict_run(prior, test, dataset), atol=1e-6)
