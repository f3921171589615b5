"""The strongest cheap baseline: note words and full history as feature blocks, the min-patients
rule on note words, and the strongest baseline first in the demo's table."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest

from leader.baseline import BaselineConfig, predict_probs, run, strongest_first
from leader.baseline_blocks import Features, blocks_for
from leader.cohort import load_dataset, write_dataset
from leader.io import read_json
from leader.samples import make_samples, split_samples
from tests.conftest import MEDS, TITLES

PROFILE = {"gender": "F", "age": 60, "insurance": "Medicare"}


def _note(home: str, hpi: str = "Admitted with chest pain.") -> dict:
    return {
        "history_of_present_illness": hpi,
        "past_medical_history": "Hypertension.",
        "allergies": "None known.",
        "medications_on_admission": home,
    }


def _note_patients(n: int = 80, rare_word_patient: int | None = None) -> list[dict]:
    """Single visits with the same codes; B01A is prescribed exactly when the note's home
    medications list warfarin, so only the note tells who gets it."""
    patients = []
    for p in range(n):
        warfarin = p % 2 == 0
        hpi = "Admitted with chest pain." + (" Seen by Dr Zebulonski." if p == rare_word_patient else "")
        visit = {
            "visit_id": f"v{p}",
            "diagnoses": ["ICD9:4019"],
            "procedures": [],
            "medications": ["N02B", "B01A"] if warfarin else ["N02B"],
            "note": _note("warfarin 5 mg daily" if warfarin else "metoprolol 25 mg daily", hpi),
        }
        patients.append({"patient_id": f"n{p}", "profile": PROFILE, "visits": [visit]})
    return patients


def _history_patients(n: int = 60) -> list[dict]:
    """Three visits each; A10B is prescribed at the third visit exactly when it was at the first
    (two visits back); the second visit is the same for everyone."""
    patients = []
    for p in range(n):
        diabetic = p % 2 == 0
        meds = [["N02B", "A10B"] if diabetic else ["N02B"], ["N02B"], ["N02B", "A10B"] if diabetic else ["N02B"]]
        dx = ["ICD9:4019", "ICD9:4019", "ICD9:25000"]
        visits = [
            {"visit_id": f"v{p}-{v}", "diagnoses": [dx[v]], "procedures": [], "medications": meds[v], "note": None}
            for v in range(3)
        ]
        patients.append({"patient_id": f"h{p}", "profile": PROFILE, "visits": visits})
    return patients


def _files_text(folder) -> bytes:
    return b"".join(path.read_bytes() for path in sorted(folder.rglob("*")) if path.is_file())


def test_a_note_word_seen_in_training_moves_the_prediction(tmp_path):
    data = write_dataset(tmp_path / "notes", _note_patients(), MEDS, TITLES, source="test")
    with_notes = run(BaselineConfig(data, tmp_path / "lr-notes", notes=True, history="previous", bootstrap=0))
    without = run(BaselineConfig(data, tmp_path / "lr-plain", notes=False, history="previous", bootstrap=0))
    record = read_json(with_notes / "run.json")
    assert record["name"] == "logistic (+notes)" and record["config"]["notes"] is True
    assert "medications_on_admission:warfarin" in read_json(with_notes / "features.json")["tokens"]["notes"]
    assert read_json(without / "run.json")["name"] == "logistic"
    dataset = load_dataset(data)
    sample = make_samples(dataset)[1]  # an odd patient: metoprolol, no B01A
    on_warfarin = make_samples(dataset)[1]
    on_warfarin.visits = [{**sample.current, "note": _note("warfarin 5 mg daily")}]
    b01a = MEDS.index("B01A")
    moved = (
        predict_probs(with_notes, [on_warfarin], dataset)[0, b01a]
        - predict_probs(with_notes, [sample], dataset)[0, b01a]
    )
    assert moved > 0.4
    # without the notes block the same edit changes nothing
    plain = predict_probs(without, [on_warfarin], dataset) - predict_probs(without, [sample], dataset)
    assert np.abs(plain).max() == 0
    jaccard = {
        name: read_json(folder / "metrics.json")["test"]["overall"]["jaccard_samples"]["value"]
        for name, folder in (("notes", with_notes), ("plain", without))
    }
    assert jaccard["notes"] >= 0.95 and jaccard["plain"] <= 0.8, jaccard


def test_a_note_word_of_one_patient_never_enters_the_run_folder(tmp_path):
    dataset = load_dataset(
        write_dataset(tmp_path / "notes", _note_patients(rare_word_patient=0), MEDS, TITLES, source="test")
    )
    train = split_samples(dataset, "random", 0)["train"]
    assert any("zebulonski" in s.current["note"]["history_of_present_illness"].lower() for s in train)
    strict = run(BaselineConfig(dataset.path, tmp_path / "strict", notes=True, history="previous", bootstrap=0))
    assert b"zebulonski" not in _files_text(strict).lower()
    vocabulary = read_json(strict / "features.json")["tokens"]["notes"]
    assert "history_of_present_illness:chest" in vocabulary  # words of many patients do enter it
    # the control: with the rule relaxed to one patient the name would be written
    loose = run(BaselineConfig(dataset.path, tmp_path / "loose", notes=True, history="previous", min_patients=1))
    assert "history_of_present_illness:zebulonski" in read_json(loose / "features.json")["tokens"]["notes"]


def test_history_all_sees_a_drug_from_two_visits_back(tmp_path):
    data = write_dataset(tmp_path / "history", _history_patients(), MEDS, TITLES, source="test")
    dataset = load_dataset(data)
    samples = make_samples(dataset)
    third = [s for s in samples if s.sample_id.endswith(":2")]
    features = Features.fit(samples, MEDS, blocks=blocks_for("all", notes=False))
    indptr, indices = features.rows(third[:2])  # patient 0 had A10B two visits back, patient 1 not
    column = features.index["history_medications"]["A10B"]
    assert column in indices[indptr[0] : indptr[1]] and column not in indices[indptr[1] : indptr[2]]

    a10b = MEDS.index("A10B")
    gap = {}
    for history in ("previous", "all"):
        out = run(BaselineConfig(data, tmp_path / history, history=history, notes=False, bootstrap=0))
        assert read_json(out / "run.json")["config"]["history"] == history
        probs = predict_probs(out, third, dataset)[:, a10b]
        diabetic = np.array([int(s.sample_id.split(":")[0]) % 2 == 0 for s in third])
        gap[history] = probs[diabetic].min() - probs[~diabetic].max()
    assert gap["all"] > 0.5 and gap["previous"] < 0.05, gap
    assert read_json(tmp_path / "all" / "run.json")["name"] == "logistic (all history)"


def test_the_demo_table_lists_the_strongest_baseline_first(tmp_path):
    from leader.data.synth import synthesize
    from leader.demo import baseline_configs, results_table, verdict

    paths = {"data": synthesize(tmp_path / "synth", 200, seed=0)}
    paths.update({key: tmp_path / key for key in ("frequency", "logistic")})
    for config in baseline_configs(paths, seed=0).values():
        run(config)
    strong = read_json(paths["logistic"] / "run.json")
    assert strong["name"].startswith("logistic (+notes")  # the demo runs the strong logistic
    # stand-ins for the teacher and students: copies of the frequency run under their kinds
    for key, kind in (
        ("teacher", "teacher"),
        ("student-no-teacher", "student"),
        ("student-kd", "student"),
        ("student", "student"),
    ):
        paths[key] = tmp_path / key
        shutil.copytree(paths["frequency"], paths[key])
        record = read_json(paths[key] / "run.json")
        (paths[key] / "run.json").write_text(json.dumps({**record, "kind": kind, "name": key}))
    lines = results_table(paths).strip().splitlines()
    assert lines[2].startswith(f"| {strong['name']} · strongest baseline |")
    assert [line.split(" | ")[0] for line in lines[3:]] == [
        "| frequency",
        "| teacher",
        "| student-no-teacher",
        "| student-kd",
        "| student",
    ]
    # the copies of the frequency run sit far below the logistic: the demo says they are not results
    said = verdict(paths, quick=False).splitlines()
    assert said[0].startswith(f"Against the strongest baseline ({strong['name']}, test Jaccard ")
    assert [line.split(":")[0] for line in said[1:5]] == [
        "- teacher",
        "- student-no-teacher",
        "- student-kd",
        "- student",
    ]
    assert all(line.endswith("not yet meaningful, use the baseline instead") for line in said[1:5])
    assert "RESULTS.md" in said[5]
    assert "not results" in verdict(paths, quick=True).splitlines()[-1]


@pytest.mark.parametrize(
    "mean, std, expected",
    [(0.53, 0.004, "above"), (0.52, 0.004, "level"), (0.505, 0.004, "below"), (0.52, 0.001, "above")],
)
def test_standing_counts_the_gap_in_bootstrap_stds(mean, std, expected):
    from leader.baseline import standing, standings

    def metrics(m, s):
        return {"test": {"overall": {"jaccard_samples": {"mean": m, "std": s, "value": m}}}}

    bar = metrics(0.515, 0.002)
    gap, where = standing(metrics(mean, std), bar)
    assert where == expected and gap == pytest.approx((mean - 0.515) / max(std, 0.002))
    rows = [("lr · strongest baseline", {"kind": "baseline"}, bar), ("kd", {"kind": "student"}, metrics(mean, std))]
    assert standings(rows)[1].startswith(f"- kd: {gap:+.1f} std, {expected}")
    assert standings(rows[1:]) == []  # no strongest baseline in the table: nothing to say


@pytest.mark.parametrize("kinds", [("teacher", "baseline"), ("baseline", "baseline")])
def test_strongest_is_chosen_on_validation_not_test(kinds):
    def metrics(val, test):
        return {s: {"overall": {"jaccard_samples": {"value": v}}} for s, v in (("val", val), ("test", test))}

    rows = [
        ("a", {"kind": kinds[0]}, metrics(0.9, 0.9)),
        ("b", {"kind": "baseline"}, metrics(0.5, 0.8)),
        ("c", {"kind": "baseline"}, metrics(0.6, 0.4)),
    ]
    names = [name for name, _, _ in strongest_first(rows)]
    if kinds[0] == "teacher":  # only baselines compete; c wins on validation although b tests better
        assert names == ["c · strongest baseline", "a", "b"]
    else:
        assert names == ["a · strongest baseline", "b", "c"]


def test_cli_notes_on_data_without_notes_says_what_to_do(tmp_path, capsys):
    from leader.cli import main

    data = write_dataset(tmp_path / "history", _history_patients(), MEDS, TITLES, source="test")
    assert main(["baseline", "--data", str(data), "--out", str(tmp_path / "lr"), "--notes"]) == 2
    assert "has a note; leave out --notes" in capsys.readouterr().err
    assert not (tmp_path / "lr").exists()
    assert main(["baseline", "--data", str(data), "--out", str(tmp_path / "lr"), "--history", "some"]) == 2
    assert "--history must be previous, all or auto" in capsys.readouterr().err
