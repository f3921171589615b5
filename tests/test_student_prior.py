"""`leader distill --prior`: a student that starts from the logistic baseline's logits, in torch
and in the exported ONNX file."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from leader.baseline import predict_logits, predict_probs
from leader.cli import main
from leader.cohort import load_dataset, write_dataset
from leader.encoding import INPUTS, Encoder
from leader.io import sha256_file
from leader.samples import make_samples, split_samples
from leader.student.model import Student, StudentConfig
from leader.student.prior import baseline_tables, set_prior
from tests.conftest import MEDS, TITLES, rule_patients

WORDS = {"ICD9:486": "cough fever", "ICD9:7242": "back pain", "ICD9:42731": "palpitations"}


def noted_patients() -> list[dict]:
    """The rule patients with an admission note on every other visit: its words follow the
    diagnoses, and every fifth patient states a penicillin allergy."""
    patients = rule_patients(80, seed=3)
    for p, patient in enumerate(patients):
        for v, visit in enumerate(patient["visits"]):
            if (p + v) % 2:
                continue
            story = " ".join(WORDS.get(code, "tired") for code in visit["diagnoses"])
            visit["note"] = {
                "history_of_present_illness": f"presents with {story}",
                "past_medical_history": "none",
                "allergies": "penicillins" if p % 5 == 0 else "no known allergies",
                "medications_on_admission": "aspirin" if "B01A" in visit["medications"] else "",
            }
    return patients


@pytest.fixture(scope="module")
def noted(tmp_path_factory):
    """(dataset folder, logistic baseline folder with notes, --history previous) (read-only)."""
    root = tmp_path_factory.mktemp("prior-student")
    data = write_dataset(root / "data", noted_patients(), MEDS, TITLES, [("C07A", "B01A")], source="test")
    base = root / "logistic"
    args = ["baseline", "--data", str(data), "--out", str(base), "--method", "logistic", "--history", "previous"]
    assert main([*args, "--l2", "1e-4"]) == 0
    assert json.loads((base / "run.json").read_text())["config"]["notes"] is True
    return data, base


def _distill(data, out, *extra) -> int:
    args = ["distill", "--data", str(data), "--out", str(out), "--no-teacher", "--no-progress"]
    return main([*args, "--dim", "16", "--hidden", "24", "--heads", "2", "--epochs", "2", *extra])


def test_the_student_computes_the_baselines_logits_from_its_own_inputs(noted):
    data, base = noted
    dataset = load_dataset(data)
    train = split_samples(dataset, "random", 0, "all")["train"]
    encoder = Encoder.fit(train, dataset.medications, max_note_tokens=64)
    arrays, unmapped = baseline_tables(base, encoder)
    assert unmapped == 0  # every column of the baseline is an id of the student's vocabularies
    v = encoder.vocabs
    sizes = [len(v[k]) for k in ("diagnoses", "procedures", "medications", "profile")] + [len(dataset.medications)]
    torch.manual_seed(0)
    model = Student(StudentConfig(*sizes, dim=16, hidden=24, heads=2, n_notes=len(v["notes"]), prior=True)).eval()
    set_prior(model, arrays)
    samples = make_samples(dataset)  # every split, single visits and histories, with and without notes
    assert any(s.single_visit for s in samples) and any(not s.single_visit for s in samples)
    assert any(s.current.get("note") for s in samples) and any(not s.current.get("note") for s in samples)
    arrays_in = encoder.encode_samples(samples)
    with torch.no_grad():
        ours = model(*(torch.as_tensor(arrays_in[k]) for k in INPUTS)).numpy()
    theirs = predict_logits(base, samples)
    assert np.abs(theirs).max() > 1.0  # a fitted baseline, not zeros
    np.testing.assert_allclose(ours, theirs, atol=1e-4, rtol=0)
    # the head and the note's word weights start at zero; the rest of the student is untouched
    assert not model.head.weight.any() and not model.note_encoder.words.weight.any()
    assert model.diag_set.embedding.weight.std() > 0.1
    assert all(not t.requires_grad for t in model.prior.buffers())


def test_a_student_no_epoch_improves_on_is_the_baseline_in_onnx_too(noted, tmp_path):
    """With a vanishing learning rate no epoch beats epoch 0 on validation: the student kept is the
    baseline, in torch, in `leader evaluate` and in the exported file served by the runtime."""
    from leader.evaluate import predict_run
    from leader.export.runtime import Recommender

    data, base = noted
    out = tmp_path / "student"
    assert _distill(data, out, "--prior", str(base), "--lr", "1e-12") == 0
    run = json.loads((out / "run.json").read_text())
    assert run["prior"] == {"path": str(base.resolve()), "sha256": sha256_file(base / "model.npz"), "unmapped": 0}
    assert run["best_epoch"] == 0 and run["epochs_run"] == 2
    assert run["name"] == "student (no teacher) + baseline prior"
    dataset = load_dataset(data)
    test = split_samples(dataset, "random", 0, "all")["test"]
    expected = predict_probs(base, test, dataset)
    np.testing.assert_allclose(predict_run(out, test, dataset), expected, atol=1e-5)
    onnx = tmp_path / "model.onnx"
    assert main(["export", "--onnx", "--student", str(out), "--out", str(onnx)]) == 0
    served = Recommender(onnx).predict([{"profile": s.profile, "visits": s.visits} for s in test])
    np.testing.assert_allclose(served, expected, atol=1e-5)
    assert "include those of a logistic regression" in (tmp_path / "model.md").read_text()


def test_training_moves_the_student_off_the_baseline_and_records_it(noted, tmp_path):
    data, base = noted
    out = tmp_path / "student"
    assert _distill(data, out, "--prior", str(base), "--lr", "1e-2", "--epochs", "3") == 0
    run = json.loads((out / "run.json").read_text())
    assert run["config"]["prior"] == str(base)
    history = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    assert len(history) == 3
    dataset = load_dataset(data)
    from leader.evaluate import predict_run

    val = split_samples(dataset, "random", 0, "all")["val"]
    moved = np.abs(predict_run(out, val, dataset) - predict_probs(base, val, dataset)).max()
    assert (moved > 1e-3) == (run["best_epoch"] > 0)  # kept weights are trained ones exactly when an epoch won


@pytest.mark.parametrize("which", ["history all", "notes unread", "other split", "resume without it"])
def test_a_prior_the_student_cannot_use_is_refused(which, noted, tmp_path, capsys):
    data, base = noted
    out, extra = tmp_path / "student", ["--prior", str(base)]
    if which == "history all":
        wrong = tmp_path / "lr-all"
        args = ["baseline", "--data", str(data), "--out", str(wrong), "--method", "logistic", "--history", "all"]
        assert main([*args, "--l2", "1e-4"]) == 0
        extra, words = ["--prior", str(wrong)], "pass a baseline trained with --history previous"
    elif which == "notes unread":
        extra, words = [*extra, "--no-notes"], "drop --no-notes"
    elif which == "other split":
        wrong = tmp_path / "lr-seed1"
        args = ["baseline", "--data", str(data), "--out", str(wrong), "--method", "logistic", "--seed", "1"]
        assert main([*args, "--history", "previous", "--l2", "1e-4"]) == 0
        extra, words = ["--prior", str(wrong)], "another split"
    else:
        assert _distill(data, out, *extra, "--epochs", "1") == 0
        extra, words = ["--resume"], "--resume with other settings than the saved run (prior)"
    before = sorted(p.name for p in tmp_path.iterdir())
    capsys.readouterr()
    assert _distill(data, out, *extra) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error: ") and words in err[0], err
    assert sorted(p.name for p in tmp_path.iterdir()) == before  # nothing written
