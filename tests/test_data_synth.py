"""The synthetic cohort: clinical table, determinism, MIMIC layouts, signals, learnability."""

from __future__ import annotations

import gzip
import json
import re
from collections import Counter

import numpy as np
import pytest

from leader.cli import main
from leader.cohort import NOTE_SECTIONS, load_dataset
from leader.data import clinical
from leader.data.meds import atc3_names, read_atc_map, read_ddi_pairs, read_ndc_map
from leader.data.synth import simulate, synthesize


@pytest.fixture(scope="module")
def synth3(tmp_path_factory):
    return load_dataset(synthesize(tmp_path_factory.mktemp("synth") / "s3", 400, seed=3))


def _cohort_text(path) -> str:
    return gzip.decompress((path / "cohort.jsonl.gz").read_bytes()).decode()


def test_clinical_table_is_well_formed():
    conditions = clinical.CONDITIONS
    assert len(conditions) >= 40
    assert len({c.key for c in conditions}) == len(conditions)
    assert sum(c.chronic for c in conditions) >= 20 and sum(not c.chronic for c in conditions) >= 20
    for c in conditions:
        assert re.fullmatch(r"(\d{3,5}|V\d{2,4}|E\d{3,4})", c.icd9), c.key
        assert re.fullmatch(r"[A-Z]\d{2}[0-9A-Z]{0,4}", c.icd10), c.key
        assert c.title9 and c.title10 and c.words and c.rate > 0
        assert all(d in clinical.DRUGS for _, options in c.drugs for d in options), c.key
        assert all(p in clinical.PROCEDURES for p, _ in c.procedures), c.key
        assert not c.needs or c.needs in {x.key for x in conditions if x.chronic}
    for code9, title9, code10, title10, drugs in clinical.PROCEDURES.values():
        assert re.fullmatch(r"\d{3,4}", code9) and re.fullmatch(r"[0-9A-Z]{7}", code10) and title9 and title10
        assert all(d in clinical.DRUGS for d, _ in drugs)
    names = atc3_names()
    for ndc, rxcui, atc, dose in clinical.DRUGS.values():
        assert re.fullmatch(r"\d{11}", ndc) and rxcui.isdigit() and dose
        assert re.fullmatch(r"[A-Z]\d\d[A-Z]{2}\d\d", atc) and atc[:4] in names
    assert len({d[0] for d in clinical.DRUGS.values()}) == len(clinical.DRUGS)  # one NDC per drug
    assert all(a in names and b in names for a, b, _ in clinical.DDI_PAIRS)


def test_same_seed_same_cohort_other_seed_other_cohort(tmp_path):
    a = synthesize(tmp_path / "a", 60, seed=7)
    b = synthesize(tmp_path / "b", 60, seed=7)
    c = synthesize(tmp_path / "c", 60, seed=8)
    assert _cohort_text(a) == _cohort_text(b)
    assert (a / "vocab.json").read_text() == (b / "vocab.json").read_text()
    assert _cohort_text(a) != _cohort_text(c)


def test_prepared_cohort_shape(synth3):
    patients = synth3.patients
    assert synth3.manifest["source"] == "synth-mimic3" and synth3.manifest["medication_coding"] == "atc3"
    assert synth3.manifest["synth"] == {
        "patients": 400,
        "seed": 3,
        "format": "mimic3",
        "raw": "temporary folder, deleted",
    }
    assert sum(len(p["visits"]) == 1 for p in patients) / len(patients) >= 0.5
    assert any(len(p["visits"]) >= 3 for p in patients)
    assert all(re.fullmatch(r"[A-Z]\d\d[A-Z]", m) for m in synth3.medications)
    assert all(synth3.titles[m] != m for m in synth3.medications)  # ATC-3 class names
    visits = [v for p in patients for v in p["visits"]]
    assert all(c.startswith("ICD9:") for v in visits for c in v["diagnoses"])
    assert 0.8 < sum(v["note"] is not None for v in visits) / len(visits) < 0.97
    assert len(synth3.ddi) >= 10
    ages = [p["profile"]["age"] for p in patients]
    assert min(ages) >= 18 and max(ages) == 90  # birth dates of the over-89s are shifted 300 years, then capped
    assert {p["profile"]["gender"] for p in patients} == {"F", "M"}


def test_notes_hold_history_but_never_the_answer(synth3):
    notes = [v["note"] for p in synth3.patients for v in p["visits"] if v["note"]]
    assert all(set(n) == set(NOTE_SECTIONS) for n in notes)
    text = json.dumps(notes)
    for leak in ("treated with", "Discharge", "Brief Hospital Course", "Followup", "Chief Complaint"):
        assert leak not in text
    assert any("Metoprolol Tartrate 25 mg PO BID" in n["medications_on_admission"] for n in notes)
    assert any("hypertension" in n["past_medical_history"] for n in notes)
    assert any("presents with" in n["history_of_present_illness"] for n in notes)
    assert any(n["allergies"] == "Penicillins" for n in notes)


def test_home_medications_in_notes_predict_chronic_classes(synth3):
    visits = [v for p in synth3.patients for v in p["visits"] if v["note"]]
    for drug, label in (
        ("metoprolol", "C07A"),
        ("lisinopril", "C09A"),
        ("amlodipine", "C08C"),
        ("atorvastatin", "C10A"),
    ):
        listed = [label in v["medications"] for v in visits if drug in v["note"]["medications_on_admission"].lower()]
        absent = [
            label in v["medications"] for v in visits if drug not in v["note"]["medications_on_admission"].lower()
        ]
        assert len(listed) >= 20 and np.mean(listed) > 0.7 and np.mean(absent) < 0.3, drug


def test_allergy_signal(synth3):
    """No penicillin (J01C) at a visit whose note lists a penicillin allergy, though other visits get
    one often enough that its absence in 30+ allergic visits is no accident (0.87^30 < 2%)."""
    visits = [v for p in synth3.patients for v in p["visits"] if v["note"]]
    allergic = [v for v in visits if "Penicillins" in v["note"]["allergies"]]
    others = [v for v in visits if "Penicillins" not in v["note"]["allergies"]]
    assert len(allergic) >= 30 and len(others) >= 300
    assert [v["visit_id"] for v in allergic if "J01C" in v["medications"]] == []
    assert np.mean(["J01C" in v["medications"] for v in others]) > 0.08


def test_chronic_drugs_persist_across_visits(synth3):
    """A medication given at a visit is far more likely at the patient's next visit than in general."""
    base, repeat, pairs = {}, {}, {}
    visits = [v for p in synth3.patients for v in p["visits"]]
    for m in synth3.medications:
        base[m] = sum(m in v["medications"] for v in visits) / len(visits)
    lifts = []
    for m in synth3.medications:
        pairs[m] = repeat[m] = 0
        for p in synth3.patients:
            for prev, nxt in zip(p["visits"], p["visits"][1:]):
                if m in prev["medications"]:
                    pairs[m] += 1
                    repeat[m] += m in nxt["medications"]
        if pairs[m] >= 15 and base[m] < 0.3:
            lifts.append(repeat[m] / pairs[m] / base[m])
    assert len(lifts) >= 5 and np.median(lifts) > 2


def test_simulation_truth():
    people = simulate(300, seed=1)
    assert sum(len(p.visits) == 1 for p in people) >= 150
    for p in people:
        first = p.visits[0]
        assert not first.new_chronic
        for v in p.visits[1:]:
            assert set(first.chronic_all) <= set(v.chronic_all)  # chronic conditions never go away
        if p.age >= 75:
            assert "zolpidem" not in {d for v in p.visits for d in v.home_drugs}
    assert not any("bph" in v.chronic_all for p in people if p.gender == "F" for v in p.visits)


def test_mimic4_layout_and_kept_raw(tmp_path):
    raw = tmp_path / "raw"
    data = load_dataset(synthesize(tmp_path / "s4", 80, seed=2, fmt="mimic4", raw=raw))
    for name in (
        "patients",
        "admissions",
        "diagnoses_icd",
        "procedures_icd",
        "prescriptions",
        "d_icd_diagnoses",
        "d_icd_procedures",
    ):
        assert (raw / "hosp" / f"{name}.csv.gz").is_file()
    assert (raw / "note" / "discharge.csv.gz").is_file()
    assert len(read_ndc_map(raw / "ndc2RXCUI.txt")) == len(clinical.DRUGS)
    assert read_atc_map(raw / "RXCUI2atc4.csv")["866924"] == "C07AB"
    assert len(read_ddi_pairs(raw / "ddi_atc3_pairs.csv")) == len(clinical.DDI_PAIRS)
    visits = [v for p in data.patients for v in p["visits"]]
    prefixes = {c.split(":")[0] for v in visits for c in v["diagnoses"]}
    assert prefixes == {"ICD9", "ICD10"}
    assert all(re.fullmatch(r"20\d\d - 20\d\d", v["year_group"]) for v in visits)
    assert data.manifest["source"] == "synth-mimic4" and data.manifest["visits_with_note"] > 0


def test_cli_synth_and_stats(tmp_path, capsys):
    out = tmp_path / "cli"
    assert main(["data", "synth", "--patients", "40", "--out", str(out), "--seed", "1"]) == 0
    assert "wrote" in capsys.readouterr().out
    assert sorted(p.name for p in out.iterdir()) == ["cohort.jsonl.gz", "ddi.csv", "manifest.json", "vocab.json"]
    assert main(["data", "stats", str(out), "--json"]) == 0
    stats = json.loads(capsys.readouterr().out)
    assert stats["patients"] == load_dataset(out).manifest["counts"]["patients"]
    assert 0 < stats["medication_mapping_coverage"] < 1 and stats["medication_coding"] == "atc3"
    assert main(["data", "stats", str(out)]) == 0
    assert "| single visit share |" in capsys.readouterr().out


# -- learnability: a multi-label logistic regression must clearly beat "top-K frequent" ------------


def _features(patient, v, with_history_and_notes):
    visit = patient["visits"][v]
    feats = [f"dx:{c}" for c in visit["diagnoses"]] + [f"px:{c}" for c in visit["procedures"]]
    if v:
        feats += [f"prev:{m}" for m in patient["visits"][v - 1]["medications"]]
    if with_history_and_notes:
        note = visit["note"] or {}
        for section in ("medications_on_admission", "allergies", "past_medical_history"):
            feats += [f"{section}:{w}" for w in re.findall(r"[a-z]+", note.get(section, "").lower())]
        feats += [f"hist:{m}" for h in patient["visits"][:v] for m in h["medications"]]
        feats.append(f"old:{patient['profile']['age'] >= 75}")
    return feats


def _jaccard(pred, true):
    return float(np.mean([len(p & t) / max(1, len(p | t)) for p, t in zip(pred, true, strict=True)]))


def _logistic(data, train, test, rich):
    meds = data.medications
    rows = [(p, v) for p in train for v in range(len(p["visits"]))]
    seen = Counter(f for p, v in rows for f in set(_features(p, v, rich)))
    vocab = {f: i for i, f in enumerate(sorted(f for f, n in seen.items() if n >= 3))}

    def matrix(samples):
        x = np.zeros((len(samples), len(vocab) + 1), dtype=np.float32)
        x[:, -1] = 1
        for i, (p, v) in enumerate(samples):
            for f in _features(p, v, rich):
                if f in vocab:
                    x[i, vocab[f]] = 1
        return x

    x = matrix(rows)
    y = np.array([[m in p["visits"][v]["medications"] for m in meds] for p, v in rows], dtype=np.float32)
    w = np.zeros((x.shape[1], len(meds)), dtype=np.float32)
    for _ in range(200):  # full-batch gradient descent on the mean BCE, small L2
        prob = 1 / (1 + np.exp(-(x @ w)))
        w -= 3.0 * (x.T @ (prob - y) / len(rows) + 1e-4 * w)
    tests = [(p, v) for p in test for v in range(len(p["visits"]))]
    prob = 1 / (1 + np.exp(-(matrix(tests) @ w)))
    pred = [{meds[j] for j in np.flatnonzero(r >= 0.4)} for r in prob]
    return _jaccard(pred, [set(p["visits"][v]["medications"]) for p, v in tests])


@pytest.mark.slow
def test_task_is_learnable_but_not_trivial(tmp_path):
    data = load_dataset(synthesize(tmp_path / "learn", 1200, seed=11))
    patients = data.patients
    train, test = patients[: int(0.8 * len(patients))], patients[int(0.8 * len(patients)) :]
    counts = {m: sum(m in v["medications"] for p in train for v in p["visits"]) for m in data.medications}
    ranked = sorted(counts, key=lambda m: -counts[m])
    true_train = [set(v["medications"]) for p in train for v in p["visits"]]
    k = max(range(1, 15), key=lambda k: _jaccard([set(ranked[:k])] * len(true_train), true_train))
    true_test = [set(v["medications"]) for p in test for v in p["visits"]]
    frequency = _jaccard([set(ranked[:k])] * len(true_test), true_test)
    logistic = _logistic(data, train, test, rich=False)
    rich = _logistic(data, train, test, rich=True)
    assert frequency < 0.35
    assert logistic > frequency + 0.1
    assert rich > logistic + 0.01  # history and notes (home medications, allergies) carry more signal
    assert rich < 0.8  # not trivial: noise and random choices cap what any model can reach
