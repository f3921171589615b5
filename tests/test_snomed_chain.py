"""Issue 10, open code systems: a hospital whose problem list is coded in SNOMED CT uses the
whole chain as it is: `leader data jsonl` -> `leader baseline` -> `leader distill` -> `leader
export` -> `leader predict`, with SNOMED and CPT codes from the first file to the last answer."""

from __future__ import annotations

import json

import pytest

from leader.cli import main
from tests.conftest import RULES, rule_patients

pytestmark = pytest.mark.slow

SNOMED = {  # the fixture's ICD-9 conditions as their SNOMED CT concepts
    "ICD9:4019": "SNOMED:38341003",  # hypertensive disorder
    "ICD9:25000": "SNOMED:44054006",  # diabetes mellitus type 2
    "ICD9:2724": "SNOMED:55822004",  # hyperlipidemia
    "ICD9:42731": "SNOMED:49436004",  # atrial fibrillation
    "ICD9:486": "SNOMED:233604007",  # pneumonia
    "ICD9:7242": "SNOMED:279039007",  # low back pain
}


def _snomed(patients: list[dict]) -> list[dict]:
    for patient in patients:
        for visit in patient["visits"]:
            visit["diagnoses"] = [SNOMED[code] for code in visit["diagnoses"]]
            visit["procedures"] = ["CPT:71045" for _ in visit["procedures"]]  # chest x-ray
    return patients


def _write(path, patients):
    path.write_text("".join(json.dumps(p) + "\n" for p in patients), encoding="utf-8")
    return path


def test_a_snomed_cohort_runs_the_whole_chain(tmp_path):
    source = _write(tmp_path / "export.jsonl", _snomed(rule_patients(200, seed=11)))
    data, student, model = tmp_path / "data", tmp_path / "student", tmp_path / "model.onnx"
    assert main(["data", "jsonl", "--input", str(source), "--out", str(data)]) == 0
    cohort_codes = {
        c for line in source.read_text().splitlines() for v in json.loads(line)["visits"] for c in v["diagnoses"]
    }
    assert cohort_codes == set(SNOMED.values())
    baseline = ["baseline", "--data", str(data), "--method", "logistic", "--out", str(tmp_path / "logistic")]
    assert main(baseline) == 0
    distill = ["distill", "--data", str(data), "--out", str(student), "--no-teacher", "--epochs", "25"]
    assert main([*distill, "--dim", "16", "--hidden", "32", "--heads", "2", "--no-progress"]) == 0
    assert main(["export", "--onnx", "--student", str(student), "--out", str(model)]) == 0
    vocab = json.loads((student / "encoder.json").read_text())["vocabs"]["diagnoses"]
    assert (
        set(SNOMED.values()) <= set(vocab)
        and "CPT:71045" in json.loads((student / "encoder.json").read_text())["vocabs"]["procedures"]
    )

    hypertensive_af = {
        "patient_id": "q1",
        "profile": {"gender": "F", "age": 71},
        "visits": [
            {"diagnoses": ["SNOMED:38341003"], "procedures": [], "medications": ["C07A"]},
            {"diagnoses": ["SNOMED:49436004", "SNOMED:38341003", "SNOMED:999999999"], "procedures": []},
        ],
    }
    patients = _write(tmp_path / "patients.jsonl", [hypertensive_af])
    out = tmp_path / "recs.jsonl"
    assert main(["predict", "--model", str(model), "--input", str(patients), "--out", str(out)]) == 0
    (rec,) = [json.loads(line) for line in out.read_text().splitlines()]
    assert set(RULES["ICD9:42731"]) <= set(rec["recommended"]), rec  # AF -> antithrombotic and beta blocker
    assert "J01C" not in rec["recommended"]  # no pneumonia, no antibiotic
    assert "SNOMED:999999999" in rec["unknown_codes"] and "SNOMED:38341003" not in rec["unknown_codes"]
